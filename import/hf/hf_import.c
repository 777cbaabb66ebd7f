/* hf_import.c — config.json dispatch to the architecture builders; see hf_import.h. */
#include "import/hf/hf_import.h"

#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/utf8.h"
#include "import/hf/hf_internal.h"
#include "import/safetensors_import.h"

double hf_num(const cJSON *cfg, const char *key, double def, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (!cJSON_IsNumber(v)) {
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

typedef ulc_status (*builder_fn)(hb *, const cJSON *);

static const struct {
    const char *model_type;
    builder_fn build;
} k_builders[] = {
    {"gpt2", hf_build_gpt2},
};

static builder_fn find_builder(const char *model_type) {
    for (size_t i = 0; model_type && i < sizeof k_builders / sizeof *k_builders; i++)
        if (strcmp(k_builders[i].model_type, model_type) == 0) return k_builders[i].build;
    return NULL;
}

static cJSON *read_config(const char *dir, ulc_ctx *ctx) {
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
        if (ulc_utf8_invalid_at(m->data, m->size) != (size_t)-1 ||
            !(j = cJSON_ParseWithLength((const char *)m->data, m->size)) || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            j = NULL;
            ulc_fail(ctx, ULC_ERR_PARSE, "%s: not a valid JSON object", p);
        }
        ulc_mapping_unref(m);
    }
    free(p);
    return j;
}

int ulc_hf_is_supported(const char *dir) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    cJSON *j = read_config(dir, &ctx);
    int yes = j && find_builder(hf_str(j, "model_type", NULL)) != NULL;
    cJSON_Delete(j);
    return yes;
}

ulc_status ulc_hf_import(const char *dir, ulc_model **out, ulc_ctx *ctx) {
    *out = NULL;
    cJSON *cfg = read_config(dir, ctx);
    if (!cfg) return ctx->status;
    const char *mt = hf_str(cfg, "model_type", NULL);
    builder_fn build = find_builder(mt);
    if (!build) {
        cJSON_Delete(cfg);
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: config.json model_type '%s' has no graph "
                        "builder (supported: gpt2)", dir, mt ? mt : "(none)");
    }
    ulc_model *m = NULL;
    ulc_status s = ulc_safetensors_import(dir, &m, ctx);
    if (s == ULC_OK) {
        hb b;
        hb_init(&b, m, 17, "ulc", ctx);
        s = b.status == ULC_OK ? build(&b, cfg) : b.status;
        if (s != ULC_OK) ulc_fail(ctx, s, "%s (model_type %s)", dir, mt);
    }
    cJSON_Delete(cfg);
    if (s != ULC_OK) {
        ulc_model_free(m);
        return s;
    }
    m->source_format = ULC_FORMAT_HF;
    *out = m;
    return ULC_OK;
}
