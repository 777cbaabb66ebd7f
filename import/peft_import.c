/* peft_import.c — see peft_import.h. */
#include "import/peft_import.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/json.h"
#include "import/safetensors_import.h"

static ulc_status read_json(const char *path, cJSON **out, ulc_ctx *ctx) {
    ulc_mapping *m;
    ULC_TRY(ulc_mapping_open(path, "adapter config", &m, ctx));
    ulc_status s = ULC_OK;
    if (m->size > 16u << 20) s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: too large for a config", path);
    else if ((s = ulc_json_parse((const char *)m->data, m->size, ULC_JSON_UNIQUE_KEYS, out,
                                 ctx)) != ULC_OK)
        s = ulc_fail(ctx, s, "%s", path);
    else if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        s = ulc_fail(ctx, ULC_ERR_PARSE, "%s: not a valid JSON object", path);
    }
    ulc_mapping_unref(m);
    return s;
}

#define RANK_MAX 65536 /* as a spec's lora.rank */

/* A rank: an integer in [1, RANK_MAX]; the value as written when it is not (no int overflow). */
static ulc_status rank_of(const cJSON *v, const char *path, const char *key, int *out,
                          ulc_ctx *ctx) {
    if (!cJSON_IsNumber(v))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' must be an integer in [1, %d], got %s",
                        path, key, RANK_MAX, v ? "a non-number" : "nothing");
    double d = v->valuedouble;
    if (!(d >= 1 && d <= RANK_MAX) || floor(d) != d)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' is %.17g, expected an integer in [1, %d]",
                        path, key, d, RANK_MAX);
    *out = (int)d;
    return ULC_OK;
}

/* An alpha: a finite number > 0. */
static ulc_status alpha_of(const cJSON *v, const char *path, const char *key, double *out,
                           ulc_ctx *ctx) {
    if (!cJSON_IsNumber(v))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' must be a number > 0", path, key);
    if (!(v->valuedouble > 0) || !isfinite(v->valuedouble))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' is %.17g, expected a finite number > 0",
                        path, key, v->valuedouble);
    *out = v->valuedouble;
    return ULC_OK;
}

/* A flag: absent, null, true or false. */
static ulc_status flag_of(const cJSON *j, const char *path, const char *key, int *out,
                          ulc_ctx *ctx) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (v && !cJSON_IsBool(v) && !cJSON_IsNull(v))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return ULC_OK;
}

/* A string field: absent or null (NULL), else a string. */
static ulc_status str_of(const cJSON *j, const char *path, const char *key, const char **out,
                         ulc_ctx *ctx) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (v && !cJSON_IsString(v) && !cJSON_IsNull(v))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' must be a string", path, key);
    *out = cJSON_IsString(v) ? v->valuestring : NULL;
    return ULC_OK;
}

static ulc_status patterns(ulc_arena *a, const cJSON *obj, const char *path, const char *what,
                           ulc_lora_pattern **out, int *n, int integral, ulc_ctx *ctx) {
    *out = NULL;
    *n = 0;
    if (!obj || cJSON_IsNull(obj)) return ULC_OK;
    if (!cJSON_IsObject(obj))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' must be an object of module pattern -> "
                        "number", path, what);
    int k = cJSON_GetArraySize(obj);
    *out = ulc_arena_calloc(a, (size_t)k + 1, sizeof **out);
    if (!*out) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (const cJSON *e = obj->child; e; e = e->next) {
        char key[300];
        snprintf(key, sizeof key, "%s.%s", what, e->string);
        int r = 0;
        double alpha = 0;
        ULC_TRY(integral ? rank_of(e, path, key, &r, ctx) : alpha_of(e, path, key, &alpha, ctx));
        (*out)[*n].key = ulc_arena_strdup(a, e->string);
        (*out)[*n].value = integral ? r : alpha;
        (*n)++;
    }
    return ULC_OK;
}

/* PEFT's config fields whose adapters do not merge as W + scale * B @ A (with DoRA's and
 * lora_bias's additions, which ulc merges): LoRA variants with their own forward or merge, and
 * fields that change the model's structure. Set to anything but their default, they are refused
 * by name rather than merged wrongly. Fields that only steer initialisation or which modules
 * were adapted (init_lora_weights, loftq_config, eva_config, corda_config, lora_ga_config,
 * layers_to_transform, layers_pattern, exclude_modules, ensure_weight_tying, ...) do not
 * change what the stored tensors mean and are read past. */
static const struct {
    const char *key, *what;
} k_unmergeable[] = {
    {"use_qalora", "QALoRA (its lora_A acts on pooled inputs)"},
    {"alora_invocation_tokens", "activated LoRA (aLoRA acts only after its invocation tokens)"},
    {"velora_config", "VeLoRA"},
    {"monteclora_config", "MonteCLoRA"},
    {"use_bdlora", "block-diagonal LoRA (BD-LoRA)"},
    {"arrow_config", "Arrow routing"},
    {"kasa_config", "KaSA"},
    {"layer_replication", "layer replication (it changes the model's layers)"},
    {"target_parameters", "LoRA on parameters (target_parameters)"},
    {"trainable_token_indices", "trainable tokens (trainable_token_indices)"},
};

static int json_is_set(const cJSON *v) {
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 0;
    if ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child) return 0;
    return 1;
}

static ulc_status refuse_variants(const cJSON *j, const char *path, ulc_ctx *ctx) {
    for (size_t i = 0; i < sizeof k_unmergeable / sizeof *k_unmergeable; i++)
        if (json_is_set(cJSON_GetObjectItemCaseSensitive(j, k_unmergeable[i].key)))
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: '%s' is set: %s adapters do not merge "
                            "as LoRA does, and ulc does not merge them", path,
                            k_unmergeable[i].key, k_unmergeable[i].what);
    const cJSON *init = cJSON_GetObjectItemCaseSensitive(j, "init_lora_weights");
    if (cJSON_IsString(init) && strncmp(init->valuestring, "mica", 4) == 0)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: init_lora_weights '%s' is MiCA, whose "
                        "adapters do not merge as LoRA does; ulc does not merge them", path,
                        init->valuestring);
    return ULC_OK;
}

static ulc_status parse_config(ulc_lora_adapter *ad, const cJSON *j, const char *path, ulc_ctx *ctx) {
    ulc_arena *a = ad->weights->graph->arena;
    ulc_lora_config *c = &ad->cfg;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "LORA") == 0))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: peft_type %s is not supported (only LORA)",
                        path, cJSON_IsString(v) ? v->valuestring : "?");
    ULC_TRY(flag_of(j, path, "use_dora", &c->use_dora, ctx));
    ULC_TRY(flag_of(j, path, "lora_bias", &c->lora_bias, ctx));
    ULC_TRY(refuse_variants(j, path, ctx));
    ULC_TRY(rank_of(cJSON_GetObjectItemCaseSensitive(j, "r"), path, "r", &c->r, ctx));
    v = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    c->alpha = 8.0; /* PEFT's default */
    if (v) ULC_TRY(alpha_of(v, path, "lora_alpha", &c->alpha, ctx));
    ULC_TRY(flag_of(j, path, "use_rslora", &c->use_rslora, ctx));
    ULC_TRY(flag_of(j, path, "fan_in_fan_out", &c->fan_in_fan_out, ctx));
    ULC_TRY(patterns(a, cJSON_GetObjectItemCaseSensitive(j, "rank_pattern"), path, "rank_pattern",
                     &c->rank_pattern, &c->n_rank_pattern, 1, ctx));
    ULC_TRY(patterns(a, cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern"), path,
                     "alpha_pattern", &c->alpha_pattern, &c->n_alpha_pattern, 0, ctx));
    const char *str = NULL;
    ULC_TRY(str_of(j, path, "bias", &str, ctx));
    if (str && strcmp(str, "none") != 0 && strcmp(str, "all") != 0 && strcmp(str, "lora_only") != 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: 'bias' is '%s' (expected none, all or "
                        "lora_only)", path, str);
    c->bias = ulc_arena_strdup(a, str ? str : "none");
    ULC_TRY(str_of(j, path, "base_model_name_or_path", &str, ctx));
    c->base_model = str ? ulc_arena_strdup(a, str) : NULL;
    v = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    int i = 0;
    for (const cJSON *e = cJSON_IsArray(v) ? v->child : NULL; e; e = e->next, i++)
        if (!cJSON_IsString(e))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: 'target_modules[%d]' must be a module "
                            "name (a string)", path, i);
    if (v && !cJSON_IsString(v) && !cJSON_IsArray(v) && !cJSON_IsNull(v))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: 'target_modules' must be a string (a regular "
                        "expression) or a list of module names", path);
    if (cJSON_IsString(v)) {
        c->n_targets = 1;
        c->target_modules = ulc_arena_calloc(a, 1, sizeof *c->target_modules);
        if (c->target_modules) c->target_modules[0] = ulc_arena_strdup(a, v->valuestring);
    } else if (cJSON_IsArray(v)) {
        c->target_modules = ulc_arena_calloc(a, (size_t)cJSON_GetArraySize(v) + 1,
                                             sizeof *c->target_modules);
        for (const cJSON *e = v->child; c->target_modules && e; e = e->next)
            if (cJSON_IsString(e)) c->target_modules[c->n_targets++] = ulc_arena_strdup(a, e->valuestring);
    }
    return ULC_OK;
}

ulc_status ulc_peft_import(const char *path, ulc_lora_adapter **out, ulc_ctx *ctx) {
    *out = NULL;
    char *dir = ulc_path_is_dir(path) ? strdup(path) : ulc_path_dirname(path);
    char *cfg = dir ? ulc_path_join(dir, "adapter_config.json") : NULL;
    char *st = ulc_path_is_dir(path) ? ulc_path_join(dir, "adapter_model.safetensors") : strdup(path);
    char *bin = dir ? ulc_path_join(dir, "adapter_model.bin") : NULL;
    ulc_lora_adapter *ad = calloc(1, sizeof *ad);
    cJSON *j = NULL;
    ulc_status s = ULC_OK;
    if (!dir || !cfg || !st || !bin || !ad) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    else if (!ulc_path_exists(cfg))
        s = ulc_fail(ctx, ULC_ERR_IO, "%s: no adapter_config.json beside the adapter", path);
    else if (!ulc_path_exists(st) && ulc_path_exists(bin))
        s = ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                     "%s: only a pickled adapter_model.bin is there; ulc reads "
                     "adapter_model.safetensors (save with safe_serialization=True)", path);
    if (s == ULC_OK) s = ulc_safetensors_import(st, &ad->weights, ctx);
    if (s == ULC_OK) s = read_json(cfg, &j, ctx);
    if (s == ULC_OK) s = parse_config(ad, j, cfg, ctx);
    if (s == ULC_OK) ad->path = ulc_arena_strdup(ad->weights->graph->arena, path);
    cJSON_Delete(j);
    free(dir), free(cfg), free(st), free(bin);
    if (s != ULC_OK) {
        ulc_lora_adapter_free(ad);
        return s;
    }
    *out = ad;
    return ULC_OK;
}
