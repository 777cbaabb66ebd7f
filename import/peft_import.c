/* peft_import.c — see peft_import.h. */
#include "import/peft_import.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/utf8.h"
#include "import/safetensors_import.h"

static ulc_status read_json(const char *path, cJSON **out, ulc_ctx *ctx) {
    ulc_mapping *m;
    ULC_TRY(ulc_mapping_open(path, "adapter config", &m, ctx));
    ulc_status s = ULC_OK;
    if (m->size > 16u << 20) s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: too large for a config", path);
    else if (ulc_utf8_invalid_at(m->data, m->size) != (size_t)-1 ||
             !(*out = cJSON_ParseWithLength((const char *)m->data, m->size)) ||
             !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        s = ulc_fail(ctx, ULC_ERR_PARSE, "%s: not a valid JSON object", path);
    }
    ulc_mapping_unref(m);
    return s;
}

static ulc_status patterns(ulc_arena *a, const cJSON *obj, const char *what, ulc_lora_pattern **out,
                           int *n, int integral, ulc_ctx *ctx) {
    *out = NULL;
    *n = 0;
    if (!obj || cJSON_IsNull(obj)) return ULC_OK;
    if (!cJSON_IsObject(obj))
        return ulc_fail(ctx, ULC_ERR_INVALID, "'%s' must be an object of module pattern -> number", what);
    int k = cJSON_GetArraySize(obj);
    *out = ulc_arena_calloc(a, (size_t)k + 1, sizeof **out);
    if (!*out) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (const cJSON *e = obj->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || (integral && (e->valuedouble != floor(e->valuedouble) ||
                                                e->valuedouble < 1 || e->valuedouble > 1e6)))
            return ulc_fail(ctx, ULC_ERR_INVALID, "'%s'['%s'] must be a %s", what, e->string,
                            integral ? "positive integer" : "number");
        (*out)[*n].key = ulc_arena_strdup(a, e->string);
        (*out)[*n].value = e->valuedouble;
        (*n)++;
    }
    return ULC_OK;
}

static ulc_status parse_config(ulc_lora_adapter *ad, const cJSON *j, const char *path, ulc_ctx *ctx) {
    ulc_arena *a = ad->weights->graph->arena;
    ulc_lora_config *c = &ad->cfg;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "LORA") == 0))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: peft_type %s is not supported (only LORA)",
                        path, cJSON_IsString(v) ? v->valuestring : "?");
    v = cJSON_GetObjectItemCaseSensitive(j, "use_dora");
    if (cJSON_IsTrue(v))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: DoRA adapters (use_dora) are not supported", path);
    v = cJSON_GetObjectItemCaseSensitive(j, "r");
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > 1e6) /* rank_pattern's bound */
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: 'r' must be a positive integer (at most 1000000)",
                        path);
    c->r = (int)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    if (v && !cJSON_IsNumber(v))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: 'lora_alpha' must be a number", path);
    c->alpha = v ? v->valuedouble : 8.0; /* PEFT's default */
    c->use_rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_rslora"));
    c->fan_in_fan_out = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out"));
    ULC_TRY(patterns(a, cJSON_GetObjectItemCaseSensitive(j, "rank_pattern"), "rank_pattern",
                     &c->rank_pattern, &c->n_rank_pattern, 1, ctx));
    ULC_TRY(patterns(a, cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern"), "alpha_pattern",
                     &c->alpha_pattern, &c->n_alpha_pattern, 0, ctx));
    v = cJSON_GetObjectItemCaseSensitive(j, "bias");
    c->bias = ulc_arena_strdup(a, cJSON_IsString(v) ? v->valuestring : "none");
    v = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
    c->base_model = cJSON_IsString(v) ? ulc_arena_strdup(a, v->valuestring) : NULL;
    v = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
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
