/* hf_import.c — config.json dispatch to the architecture builders; see hf_import.h. */
#include "import/hf/hf_import.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/json.h"
#include "import/hf/hf_internal.h"
#include "import/safetensors_import.h"

/* Every config number is a size, a count, an id or a small float: beyond 2^53 (or not finite)
 * it is mistyped, and the builders' int64 casts stay defined. */
static int hf_number_ok(const cJSON *v) {
    return cJSON_IsNumber(v) && fabs(v->valuedouble) <= 9007199254740992.0;
}

double hf_num(const cJSON *cfg, const char *key, double def, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (!hf_number_ok(v)) {
        *bad = 1;
        return def;
    }
    return v->valuedouble;
}

int hf_bool(const cJSON *cfg, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

const char *hf_str(const cJSON *cfg, const char *key, const char *def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsString(v) ? v->valuestring : def;
}

void hf_size2(const cJSON *cfg, const char *key, int64_t def, int64_t out[2], int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    out[0] = out[1] = def;
    if (!v || cJSON_IsNull(v)) return;
    if (hf_number_ok(v)) {
        out[0] = out[1] = (int64_t)v->valuedouble;
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
               hf_number_ok(cJSON_GetArrayItem(v, 0)) && hf_number_ok(cJSON_GetArrayItem(v, 1))) {
        out[0] = (int64_t)cJSON_GetArrayItem(v, 0)->valuedouble;
        out[1] = (int64_t)cJSON_GetArrayItem(v, 1)->valuedouble;
    } else {
        *bad = 1;
    }
}

int hf_ints(const cJSON *cfg, const char *key, const int64_t *def, int n_def, int64_t *out,
            int max, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) {
        memcpy(out, def, (size_t)n_def * sizeof *out);
        return n_def;
    }
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 0 || n > max) {
        *bad = 1;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!hf_number_ok(e)) *bad = 1;
        out[i] = hf_number_ok(e) ? (int64_t)e->valuedouble : 0;
    }
    return n;
}

typedef ulc_status (*builder_fn)(ulc_gb *, const cJSON *);

static const struct {
    const char *model_type;
    builder_fn build;
} k_builders[] = {
    {"clip", hf_build_clip},
    {"gpt2", hf_build_gpt2},
    {"resnet", hf_build_resnet},
    {"vit", hf_build_vit},
};

static builder_fn find_builder(const char *model_type) {
    for (size_t i = 0; model_type && i < sizeof k_builders / sizeof *k_builders; i++)
        if (strcmp(k_builders[i].model_type, model_type) == 0) return k_builders[i].build;
    return NULL;
}

cJSON *ulc_hf_read_config(const char *dir, char **text, ulc_ctx *ctx) {
    char *p = ulc_path_join(dir, "config.json");
    if (!p) {
        ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ulc_mapping *m = NULL;
    cJSON *j = NULL;
    if (!ulc_path_exists(p)) {
        ulc_fail(ctx, ULC_ERR_IO, "%s: no config.json", dir);
    } else if (ulc_mapping_open(p, "config", &m, ctx) == ULC_OK) {
        if (ulc_json_parse((const char *)m->data, m->size, ULC_JSON_UNIQUE_KEYS, &j, ctx) !=
            ULC_OK) {
            ulc_fail(ctx, ctx->status, "%s", p);
        } else if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            j = NULL;
            ulc_fail(ctx, ULC_ERR_PARSE, "%s: not a valid JSON object", p);
        } else if (text && !(*text = strndup((const char *)m->data, m->size))) {
            cJSON_Delete(j);
            j = NULL;
            ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        }
        ulc_mapping_unref(m);
    }
    free(p);
    return j;
}

int ulc_hf_is_supported(const char *dir) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    cJSON *j = ulc_hf_read_config(dir, NULL, &ctx);
    /* a config.json that is there but malformed (bad JSON, a NUL in a string, a repeated key)
     * is not silently taken for "no architecture": ulc_hf_import reports it */
    int yes = j ? find_builder(hf_str(j, "model_type", NULL)) != NULL
                : ctx.status == ULC_ERR_PARSE;
    cJSON_Delete(j);
    return yes;
}

ulc_status ulc_hf_import(const char *dir, ulc_model **out, ulc_ctx *ctx) {
    *out = NULL;
    char *text = NULL;
    cJSON *cfg = ulc_hf_read_config(dir, &text, ctx);
    if (!cfg) return ctx->status;
    const char *mt = hf_str(cfg, "model_type", NULL);
    builder_fn build = find_builder(mt);
    if (!build) {
        ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: config.json model_type '%s' has no graph "
                 "builder (supported: clip, gpt2, resnet, vit)", dir, mt ? mt : "(none)");
        cJSON_Delete(cfg);
        free(text);
        return ctx->status;
    }
    ulc_model *m = NULL;
    ulc_status s = ulc_safetensors_import(dir, &m, ctx);
    if (s == ULC_OK) {
        ulc_gb b;
        hf_begin(&b, m, 17, "ulc", ctx);
        s = b.status == ULC_OK ? build(&b, cfg) : b.status;
        if (s != ULC_OK) ulc_fail(ctx, s, "%s (model_type %s)", dir, mt);
    }
    if (s == ULC_OK) s = ulc_model_add_metadata(m, ULC_META_HF_CONFIG, text, ctx);
    cJSON_Delete(cfg);
    free(text);
    if (s != ULC_OK) {
        ulc_model_free(m);
        return s;
    }
    m->source_format = ULC_FORMAT_HF;
    *out = m;
    return ULC_OK;
}

ulc_status ulc_hf_build_from_names(ulc_model *m, int *built, ulc_ctx *ctx) {
    *built = 0;
    if (!hf_is_torchvision_resnet(m->graph)) return ULC_OK;
    ulc_gb b;
    hf_begin(&b, m, 17, "ulc", ctx);
    ulc_status s = b.status == ULC_OK ? hf_build_torchvision_resnet(&b) : b.status;
    if (s == ULC_OK) s = ulc_model_add_metadata(m, ULC_META_ARCH, "torchvision.resnet", ctx);
    if (s != ULC_OK) return ulc_fail(ctx, s, "%s (torchvision ResNet)", m->source_path ? m->source_path : "model");
    *built = 1;
    return ULC_OK;
}

/* A new model whose initializers are src's weights (the tensors shared, as ir/clone.h does). */
static ulc_status share_weights(const ulc_model *src, ulc_model **out, ulc_ctx *ctx) {
    ulc_model *m = ulc_model_create();
    if (!m) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    const ulc_graph *sg = src->graph;
    ulc_graph *g = m->graph;
    for (size_t i = 0; i < sg->inits.len; i++) {
        const ulc_value *sv = sg->inits.items[i];
        if (sv->flags & ULC_VALUE_CONSTANT) continue; /* the builder's own, made again */
        ulc_value *v = ulc_graph_add_value(g, sv->name, ctx);
        if (!v || ulc_ptrvec_push(&g->inits, v) != 0 ||
            (sv->rank > 0 && !(v->dims = ulc_arena_calloc(g->arena, (size_t)sv->rank, sizeof *v->dims)))) {
            ulc_model_free(m);
            return v ? ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory") : ctx->status;
        }
        v->flags = ULC_VALUE_INITIALIZER | (sv->flags & ULC_VALUE_HAS_TYPE);
        v->dtype = sv->dtype;
        v->rank = sv->rank;
        if (sv->rank > 0) memcpy(v->dims, sv->dims, (size_t)sv->rank * sizeof *v->dims);
        v->init = sv->init;
    }
    m->source_format = src->source_format;
    m->source_path = src->source_path;
    *out = m;
    return ULC_OK;
}

ulc_status ulc_hf_build_decoder(const ulc_model *m, ulc_model **out, ulc_ctx *ctx) {
    *out = NULL;
    const char *text = ulc_model_metadata(m, ULC_META_HF_CONFIG);
    cJSON *cfg = NULL;
    if (!text) return ULC_OK;
    if (ulc_json_parse(text, strlen(text), 0, &cfg, ctx) != ULC_OK || !cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return ulc_fail(ctx, ULC_ERR_PARSE, "metadata '%s' is not a JSON object", ULC_META_HF_CONFIG);
    }
    const char *mt = hf_str(cfg, "model_type", NULL);
    ulc_model *d = NULL;
    ulc_status s = ULC_OK;
    if (mt && strcmp(mt, "gpt2") == 0 && ulc_graph_get_value(m->graph, "transformer.wte.weight") &&
        ulc_graph_get_value(m->graph, "logits") && (s = share_weights(m, &d, ctx)) == ULC_OK) {
        ulc_gb b;
        hf_begin(&b, d, 17, "ulc", ctx);
        s = b.status == ULC_OK ? hf_build_gpt2_decoder(&b, cfg) : b.status;
        if (s != ULC_OK) ulc_fail(ctx, s, "the cached decoder of gpt2 (config.json in metadata '%s')",
                                  ULC_META_HF_CONFIG);
    }
    cJSON_Delete(cfg);
    /* the model's metadata too (config.json, history): the decoder written by convert
     * --with-past is a model ulc built, its constants flagged again when it is read back
     * (onnx_import's mark_builder_constants), so training leaves them alone */
    for (int i = 0; s == ULC_OK && d && i < m->n_metadata; i++)
        s = ulc_model_add_metadata(d, m->metadata[i].key, m->metadata[i].value, ctx);
    if (s != ULC_OK) {
        ulc_model_free(d);
        return s;
    }
    *out = d;
    return ULC_OK;
}
