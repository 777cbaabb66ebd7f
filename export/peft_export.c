/* peft_export.c — see peft_export.h. */
#include "export/peft_export.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "export/safetensors_export.h"
#include "ir/lora.h"

#define PREFIX "base_model.model."

ulc_status ulc_peft_export_check_dir(const char *dir, ulc_ctx *ctx) {
    if (ulc_path_exists(dir) && !ulc_path_is_dir(dir))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: exists and is not a directory (the adapter "
                        "goes into a directory)", dir);
    static const char *const files[] = {ULC_PEFT_CONFIG_FILE, ULC_PEFT_WEIGHTS_FILE};
    for (int i = 0; i < 2; i++) {
        char *p = ulc_path_join(dir, files[i]);
        if (!p) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        int there = ulc_path_exists(p);
        ulc_status s = there ? ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: already exists; refusing to "
                                        "overwrite an adapter (remove it or choose another "
                                        "directory)", p)
                             : ULC_OK;
        free(p);
        if (s != ULC_OK) return s;
    }
    return ULC_OK;
}

/* The (r, alpha) most modules have: the config's r and lora_alpha. */
static void common_params(const ulc_model *m, int *r, double *alpha) {
    int best = 0;
    for (size_t i = 0; i < m->lora.len; i++) {
        const ulc_lora_record *a = m->lora.items[i];
        int n = 0;
        for (size_t j = 0; j < m->lora.len; j++) {
            const ulc_lora_record *b = m->lora.items[j];
            n += a->r == b->r && a->alpha == b->alpha;
        }
        if (n > best) {
            best = n;
            *r = a->r;
            *alpha = a->alpha;
        }
    }
}

static ulc_status check_records(const ulc_model *m, ulc_ctx *ctx) {
    const ulc_lora_record *first = m->lora.items[0];
    for (size_t i = 0; i < m->lora.len; i++) {
        const ulc_lora_record *r = m->lora.items[i];
        if (!r->peft_ok)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                            "module '%s' (node '%s', weight '%s'): a PEFT adapter for this module "
                            "name would not adapt this weight (it is not the module's own weight "
                            "- e.g. torch folded a BatchNorm into it - or the module's scope holds "
                            "several weights); leave it out with lora-inject{exclude=%s}",
                            r->module, r->node, r->weight, r->module);
        if (r->rslora != first->rslora)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "modules '%s' and '%s' differ in use_rslora, "
                            "which a PEFT adapter sets once for all its modules", first->module,
                            r->module);
        for (size_t j = 0; j < i; j++)
            if (strcmp(((const ulc_lora_record *)m->lora.items[j])->module, r->module) == 0)
                return ulc_fail(ctx, ULC_ERR_INVALID, "module '%s' is adapted twice (nodes '%s' "
                                "and '%s')", r->module,
                                ((const ulc_lora_record *)m->lora.items[j])->node, r->node);
    }
    return ULC_OK;
}

/* adapter_config.json, in PEFT's key order (sorted). */
static char *config_json(const ulc_model *m, const char *base_model, ulc_ctx *ctx) {
    int r = 0;
    double alpha = 0;
    common_params(m, &r, &alpha);
    int n_linear = 0, all_conv1d = 1;
    for (size_t i = 0; i < m->lora.len; i++) {
        const ulc_lora_record *rec = m->lora.items[i];
        if (rec->kind == ULC_LORA_CONV) continue;
        n_linear++;
        /* GPT2's Conv1D: the module's own weight stored [in, out] */
        size_t k = strlen(rec->module);
        all_conv1d &= rec->kind == ULC_LORA_LINEAR_IN_OUT &&
                      strncmp(rec->weight, rec->module, k) == 0 &&
                      strcmp(rec->weight + k, ".weight") == 0;
    }
    const ulc_lora_record *first = m->lora.items[0];
    cJSON *j = cJSON_CreateObject();
    cJSON *ap = cJSON_AddObjectToObject(j, "alpha_pattern");
    for (size_t i = 0; ap && i < m->lora.len; i++) {
        const ulc_lora_record *rec = m->lora.items[i];
        if (rec->alpha != alpha) cJSON_AddNumberToObject(ap, rec->module, rec->alpha);
    }
    cJSON_AddNullToObject(j, "auto_mapping");
    if (base_model) cJSON_AddStringToObject(j, "base_model_name_or_path", base_model);
    else cJSON_AddNullToObject(j, "base_model_name_or_path");
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", n_linear > 0 && all_conv1d);
    cJSON_AddTrueToObject(j, "inference_mode");
    cJSON_AddTrueToObject(j, "init_lora_weights");
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddNumberToObject(j, "lora_alpha", alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", 0.0);
    cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", r);
    cJSON *rp = cJSON_AddObjectToObject(j, "rank_pattern");
    for (size_t i = 0; rp && i < m->lora.len; i++) {
        const ulc_lora_record *rec = m->lora.items[i];
        if (rec->r != r) cJSON_AddNumberToObject(rp, rec->module, rec->r);
    }
    cJSON_AddNullToObject(j, "revision");
    cJSON *tm = cJSON_AddArrayToObject(j, "target_modules");
    for (size_t i = 0; tm && i < m->lora.len; i++)
        cJSON_AddItemToArray(tm, cJSON_CreateString(
                                     ((const ulc_lora_record *)m->lora.items[i])->module));
    cJSON_AddNullToObject(j, "task_type");
    cJSON_AddBoolToObject(j, "use_rslora", first->rslora);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (adapter config)");
    return text;
}

/* Every module must get its own r and alpha back from the config by PEFT's pattern rule (a
 * pattern key K matches the modules ending in ".K", so one module's full name can catch
 * another's). */
static ulc_status check_patterns(const ulc_model *m, ulc_ctx *ctx) {
    int r = 0;
    double alpha = 0;
    common_params(m, &r, &alpha);
    size_t n = m->lora.len;
    ulc_lora_pattern *rp = calloc(n + 1, sizeof *rp), *ap = calloc(n + 1, sizeof *ap);
    if (!rp || !ap) {
        free(rp), free(ap);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    ulc_lora_config cfg = {0};
    cfg.r = r;
    cfg.alpha = alpha;
    cfg.rank_pattern = rp;
    cfg.alpha_pattern = ap;
    for (size_t i = 0; i < n; i++) {
        const ulc_lora_record *rec = m->lora.items[i];
        if (rec->r != r) rp[cfg.n_rank_pattern++] = (ulc_lora_pattern){rec->module, rec->r};
        if (rec->alpha != alpha)
            ap[cfg.n_alpha_pattern++] = (ulc_lora_pattern){rec->module, rec->alpha};
    }
    ulc_status s = ULC_OK;
    for (size_t i = 0; s == ULC_OK && i < n; i++) {
        const ulc_lora_record *rec = m->lora.items[i];
        int gr = 0;
        double ga = 0, scale = 0;
        s = ulc_lora_module_params(&cfg, rec->module, &gr, &ga, &scale, ctx);
        if (s == ULC_OK && (gr != rec->r || ga != rec->alpha))
            s = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "module '%s' (r %d, alpha %g) would read r %d, "
                         "alpha %g from the adapter's rank_pattern/alpha_pattern (PEFT matches "
                         "their keys as name suffixes); inject modules with different ranks in "
                         "separate adapters", rec->module, rec->r, rec->alpha, gr, ga);
    }
    free(rp), free(ap);
    return s;
}

/* The weights-only model of the adapter: PEFT's key names and layouts. */
static ulc_status build_weights(const ulc_model *m, ulc_model *w, ulc_ctx *ctx) {
    ulc_graph *g = w->graph;
    for (size_t i = 0; i < m->lora.len; i++) {
        const ulc_lora_record *rec = m->lora.items[i];
        float *f[2] = {NULL, NULL};
        int64_t dims[2][8];
        int rank[2];
        ULC_TRY(ulc_lora_record_peft_factors(m, rec, &f[0], dims[0], &rank[0], &f[1], dims[1],
                                             &rank[1], ctx));
        ulc_status s = ULC_OK;
        for (int k = 0; k < 2; k++) {
            size_t n = strlen(PREFIX) + strlen(rec->module) + 32;
            char *name = malloc(n);
            uint64_t numel = 1;
            for (int d = 0; d < rank[k]; d++) numel *= (uint64_t)dims[k][d];
            if (!name) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
            if (s == ULC_OK)
                snprintf(name, n, PREFIX "%s.lora_%c.weight", rec->module, k ? 'B' : 'A');
            ulc_tensor *t =
                s == ULC_OK ? ulc_tensor_new(g, name, ULC_DT_F32, rank[k], dims[k], ctx) : NULL;
            ulc_value *v = t ? ulc_graph_add_value(g, name, ctx) : NULL;
            if (s == ULC_OK && !v) s = ctx->status;
            if (s == ULC_OK) {
                s = ulc_tensor_set_owned(g, t, f[k], (size_t)numel * 4, ctx);
                f[k] = NULL;
            }
            if (s == ULC_OK) s = ulc_value_set_init(g, v, t, ctx);
            free(name);
        }
        free(f[0]), free(f[1]);
        if (s != ULC_OK) return ulc_fail(ctx, s, "module '%s'", rec->module);
    }
    return ULC_OK;
}

ulc_status ulc_peft_export(ulc_model *m, const char *dir, const ulc_peft_export_opts *opts,
                           ulc_ctx *ctx) {
    ULC_TRY(ulc_lora_records_load(m, ctx));
    if (!m->lora.len)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the model has no LoRA adapters to write (add "
                        "them with --passes lora-inject)", dir);
    ULC_TRY(ulc_peft_export_check_dir(dir, ctx));
    ULC_TRY(check_records(m, ctx));
    ULC_TRY(check_patterns(m, ctx));
    const char *base = opts && opts->base_model ? opts->base_model : m->source_path;
    ulc_model *w = ulc_model_create();
    char *cfg = NULL, *cfg_path = ulc_path_join(dir, ULC_PEFT_CONFIG_FILE);
    char *st_path = ulc_path_join(dir, ULC_PEFT_WEIGHTS_FILE);
    ulc_status s = w && cfg_path && st_path ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (s == ULC_OK) s = build_weights(m, w, ctx);
    if (s == ULC_OK && !(cfg = config_json(m, base, ctx))) s = ctx->status;
    int made_dir = 0, wrote = 0;
    if (s == ULC_OK && !ulc_path_is_dir(dir)) {
        if (mkdir(dir, 0777) != 0)
            s = ulc_fail(ctx, ULC_ERR_IO, "%s: cannot create the adapter directory: %s", dir,
                         strerror(errno));
        else made_dir = 1;
    }
    ulc_safetensors_export_opts so = {.format_pt = 1};
    if (s == ULC_OK) wrote = (s = ulc_safetensors_export(w, st_path, &so, ctx)) == ULC_OK;
    ulc_outfile *o = NULL;
    if (s == ULC_OK) s = ulc_outfile_open(cfg_path, &o, ctx);
    if (s == ULC_OK) s = ulc_outfile_write(o, cfg, strlen(cfg), ctx);
    if (s == ULC_OK) s = ulc_outfile_write(o, "\n", 1, ctx);
    if (s == ULC_OK) {
        s = ulc_outfile_commit(o, ctx);
        o = NULL;
    }
    ulc_outfile_abort(o);
    if (s != ULC_OK && wrote) unlink(st_path); /* ours, and useless without its config */
    if (s != ULC_OK && made_dir) rmdir(dir);
    free(cfg); /* cJSON_Print's buffer: cJSON's allocator is malloc */
    free(cfg_path);
    free(st_path);
    ulc_model_free(w);
    return s;
}

void ulc_peft_export_remove(const char *dir) {
    char *p = ulc_path_join(dir, ULC_PEFT_CONFIG_FILE);
    char *q = ulc_path_join(dir, ULC_PEFT_WEIGHTS_FILE);
    if (p) unlink(p);
    if (q) unlink(q);
    free(p);
    free(q);
}
