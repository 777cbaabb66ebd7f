/* safetensors_import.c — see safetensors_import.h for the format and the rules enforced. */
#include "import/safetensors_import.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/json.h"
#include "common/strmap.h"
#include "common/utf8.h"

#define HEADER_MAX 100000000ull
#define MAX_EXACT 9007199254740992.0 /* 2^53: JSON numbers are doubles */

int ulc_safetensors_sniff(const unsigned char *head, size_t n) {
    if (n < 9) return 0;
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = (len << 8) | head[i];
    return len >= 2 && len <= HEADER_MAX && head[8] == '{';
}

static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d > MAX_EXACT || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

typedef struct entry {
    const char *name;
    int dtype;
    int rank;
    int64_t dims[64];
    uint64_t begin, end;
} entry;

static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static ulc_status add_metadata(ulc_model *m, const cJSON *meta, ulc_ctx *ctx) {
    if (!cJSON_IsObject(meta))
        return ulc_fail(ctx, ULC_ERR_INVALID, "__metadata__ must be an object of strings");
    ulc_strmap *seen = ulc_strmap_create();
    if (!seen) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ulc_status s = ULC_OK;
    for (const cJSON *e = meta->child; e && s == ULC_OK; e = e->next) {
        if (!cJSON_IsString(e))
            s = ulc_fail(ctx, ULC_ERR_INVALID, "__metadata__ entry '%s' is not a string",
                         e->string);
        else if (ulc_strmap_get(seen, e->string)) /* serde's map would keep the last */
            s = ulc_fail(ctx, ULC_ERR_INVALID, "__metadata__ key '%s' appears twice", e->string);
        else if (ulc_strmap_put(seen, e->string, (void *)e) != 0)
            s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        else /* shards repeat their metadata; the first wins */
            s = ulc_model_add_metadata(m, e->string, e->valuestring, ctx);
    }
    ulc_strmap_free(seen);
    return s;
}

static ulc_status parse_entry(const cJSON *e, entry *out, ulc_ctx *ctx) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s': expected an object", name);
    const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *f = e->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dt
                             : strcmp(f->string, "shape") == 0        ? &shape
                             : strcmp(f->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (slot && *slot) /* the reference refuses it (serde: duplicate field) */
            return ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s': field '%s' appears twice", name,
                            f->string);
        if (slot) *slot = f;
        else
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "tensor '%s': unexpected key '%s' (expected dtype, shape, data_offsets)",
                            name, f->string);
    }
    if (!cJSON_IsString(dt))
        return ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s': 'dtype' is missing or not a string",
                        name);
    out->name = name;
    out->dtype = ulc_dtype_from_safetensors_name(dt->valuestring);
    if (out->dtype == ULC_DT_UNDEFINED)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "tensor '%s': unknown dtype '%s'", name,
                        dt->valuestring);
    if (!cJSON_IsArray(shape))
        return ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s': 'shape' is missing or not a list",
                        name);
    out->rank = cJSON_GetArraySize(shape);
    if (out->rank > 64)
        return ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s': rank %d, at most 64 supported", name,
                        out->rank);
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (json_u64(d, &v) != 0 || v > (uint64_t)INT64_MAX)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "tensor '%s': shape[%d] is not a size (expected an integer >= 0)",
                            name, i);
        out->dims[i] = (int64_t)v;
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        json_u64(offs->child, &out->begin) != 0 || json_u64(offs->child->next, &out->end) != 0)
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "tensor '%s': 'data_offsets' must be [begin, end] with integers >= 0",
                        name);
    if (out->end < out->begin)
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "tensor '%s': data_offsets [%llu, %llu] end before they begin", name,
                        (unsigned long long)out->begin, (unsigned long long)out->end);
    return ULC_OK;
}

static ulc_status load_mapped(ulc_model *m, ulc_mapping *map, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    if (map->size < 8)
        return ulc_fail(ctx, ULC_ERR_PARSE,
                        "%zu bytes is too short for a safetensors file (8-byte header length "
                        "expected)", map->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | map->data[i];
    if (hlen > HEADER_MAX)
        return ulc_fail(ctx, ULC_ERR_PARSE,
                        "header length %llu exceeds the 100 MB limit (not a safetensors file?)",
                        (unsigned long long)hlen);
    if (hlen > map->size - 8)
        return ulc_fail(ctx, ULC_ERR_PARSE,
                        "header length %llu goes beyond the end of the file (%zu bytes)",
                        (unsigned long long)hlen, map->size);
    const unsigned char *h = map->data + 8;
    if (hlen < 2 || h[0] != '{')
        return ulc_fail(ctx, ULC_ERR_PARSE, "the header does not start with a JSON object");
    size_t bad = ulc_utf8_invalid_at(h, (size_t)hlen);
    if (bad != (size_t)-1)
        return ulc_fail(ctx, ULC_ERR_PARSE, "the header is not valid UTF-8 (byte %zu)", bad + 8);
    ULC_TRY(ulc_json_check_strings((const char *)h, (size_t)hlen, ctx));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)h, (size_t)hlen, &end, 0);
    if (!root)
        return ulc_fail(ctx, ULC_ERR_PARSE, "the header is not valid JSON (near byte %zu)",
                        (size_t)((end ? (const unsigned char *)end : h) - map->data));
    for (const unsigned char *p = (const unsigned char *)end; p < h + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return ulc_fail(ctx, ULC_ERR_PARSE, "unexpected bytes after the header's JSON object");
        }
    }
    ulc_status s = ULC_OK;
    int n = cJSON_IsObject(root) ? cJSON_GetArraySize(root) : -1;
    entry *ents = n > 0 ? calloc((size_t)n, sizeof *ents) : NULL;
    ulc_strmap *seen = ulc_strmap_create();
    int ne = 0;
    if (n < 0) s = ulc_fail(ctx, ULC_ERR_PARSE, "the header is not a JSON object");
    else if ((n > 0 && !ents) || !seen) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (const cJSON *e = n > 0 ? root->child : NULL; e && s == ULC_OK; e = e->next) {
        if (ulc_strmap_get(seen, e->string)) {
            s = ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s' appears twice in the header", e->string);
            break;
        }
        if (ulc_strmap_put(seen, e->string, (void *)e) != 0) {
            s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
            break;
        }
        if (strcmp(e->string, "__metadata__") == 0) s = add_metadata(m, e, ctx);
        else s = parse_entry(e, &ents[ne++], ctx);
    }
    uint64_t data_len = map->size - 8 - hlen;
    if (s == ULC_OK && ne > 0) qsort(ents, (size_t)ne, sizeof *ents, cmp_entry);
    uint64_t pos = 0;
    for (int i = 0; i < ne && s == ULC_OK; i++) {
        entry *e = &ents[i];
        if (e->begin != pos) {
            s = ulc_fail(ctx, ULC_ERR_INVALID,
                         e->begin < pos ? "tensor '%s': data_offsets [%llu, %llu] overlap the "
                                          "previous tensor, which ends at %llu"
                                        : "tensor '%s': data_offsets [%llu, %llu] leave a gap "
                                          "after the previous tensor, which ends at %llu",
                         e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)pos);
            break;
        }
        if (e->end > data_len) {
            s = ulc_fail(ctx, ULC_ERR_INVALID,
                         "tensor '%s': data_offsets end at %llu, beyond the %llu bytes of data",
                         e->name, (unsigned long long)e->end, (unsigned long long)data_len);
            break;
        }
        pos = e->end;
        ulc_tensor *t = ulc_tensor_new(g, e->name, e->dtype, e->rank, e->dims, ctx);
        if (!t) {
            s = ulc_fail(ctx, ctx->status, "tensor '%s'", e->name);
            break;
        }
        int of = 0;
        size_t need = ulc_dtype_nbytes(e->dtype, t->numel, &of);
        if (of || need != e->end - e->begin) {
            s = ulc_fail(ctx, ULC_ERR_INVALID,
                         "tensor '%s': data_offsets span %llu bytes, but %llu elements of %s "
                         "need %zu", e->name, (unsigned long long)(e->end - e->begin),
                         (unsigned long long)t->numel, ulc_dtype_safetensors_name(e->dtype),
                         need);
            break;
        }
        s = ulc_tensor_set_borrowed(g, t, map, map->data + 8 + hlen + e->begin, need, ctx);
        t->form = ULC_FORM_RAW;
        if (s != ULC_OK) break;
        if (ulc_graph_get_value(g, e->name)) {
            s = ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s' is defined in more than one file",
                         e->name);
            break;
        }
        ulc_value *v = ulc_graph_add_value(g, e->name, ctx);
        s = v ? ulc_value_set_init(g, v, t, ctx) : ctx->status;
    }
    if (s == ULC_OK && pos != data_len)
        s = ulc_fail(ctx, ULC_ERR_INVALID,
                     "the data buffer has %llu bytes, but the tensors cover %llu (file length "
                     "does not match the header)", (unsigned long long)data_len,
                     (unsigned long long)pos);
    ulc_strmap_free(seen);
    free(ents);
    cJSON_Delete(root);
    return s;
}

ulc_status ulc_safetensors_load_file(ulc_model *m, const char *path, ulc_ctx *ctx) {
    ulc_mapping *map;
    ULC_TRY(ulc_mapping_open(path, "safetensors file", &map, ctx));
    ulc_status s = load_mapped(m, map, ctx);
    ulc_mapping_unref(map); /* borrowed tensors hold their own reference */
    if (s != ULC_OK) return ulc_fail(ctx, s, "%s", path);
    return ULC_OK;
}

static ulc_status read_small_file(const char *path, char **out, size_t *len, ulc_ctx *ctx) {
    ulc_mapping *map;
    ULC_TRY(ulc_mapping_open(path, "index file", &map, ctx));
    if (map->size > HEADER_MAX) {
        ulc_mapping_unref(map);
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %zu bytes is too large for an index file",
                        path, map->size);
    }
    char *p = malloc(map->size + 1);
    if (!p) {
        ulc_mapping_unref(map);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    if (map->size) memcpy(p, map->data, map->size);
    p[map->size] = '\0';
    *len = map->size;
    *out = p;
    ulc_mapping_unref(map);
    return ULC_OK;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {"tensor": "shard"}} */
static ulc_status load_index(ulc_model *m, const char *path, ulc_ctx *ctx) {
    char *text = NULL;
    size_t len = 0;
    ULC_TRY(read_small_file(path, &text, &len, ctx));
    ulc_status s = ULC_OK;
    cJSON *root = NULL;
    char *dir = ulc_path_dirname(path);
    ulc_strmap *loaded = ulc_strmap_create();
    if (!dir || !loaded) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    else if (ulc_json_parse(text, len, ULC_JSON_UNIQUE_KEYS, &root, ctx) != ULC_OK)
        s = ulc_fail(ctx, ctx->status, "%s", path);
    else if (!cJSON_IsObject(root))
        s = ulc_fail(ctx, ULC_ERR_PARSE, "%s: not a valid JSON object", path);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (s == ULC_OK && !cJSON_IsObject(wm))
        s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: 'weight_map' is missing or not an object", path);
    /* Load each shard once, in order of first mention. */
    for (const cJSON *e = wm ? wm->child : NULL; e && s == ULC_OK; e = e->next) {
        if (!cJSON_IsString(e)) {
            s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: weight_map['%s'] is not a file name", path,
                         e->string);
            break;
        }
        if (ulc_strmap_get(loaded, e->valuestring)) continue;
        const char *why = ulc_path_unsafe_reason(e->valuestring);
        if (why) {
            s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: shard '%s' is not allowed: %s", path,
                         e->valuestring, why);
            break;
        }
        char *full = ulc_path_join(dir, e->valuestring);
        if (!full || ulc_strmap_put(loaded, e->valuestring, (void *)e) != 0) {
            free(full);
            s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
            break;
        }
        size_t before = m->graph->inits.len;
        s = ulc_safetensors_load_file(m, full, ctx);
        /* every tensor of this shard must be mapped to it */
        for (size_t i = before; s == ULC_OK && i < m->graph->inits.len; i++) {
            const ulc_value *v = m->graph->inits.items[i];
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(wm, v->name);
            if (!cJSON_IsString(w) || strcmp(w->valuestring, e->valuestring) != 0)
                s = ulc_fail(ctx, ULC_ERR_INVALID,
                             "%s: tensor '%s' is in shard '%s', but the index maps it to %s%s%s",
                             path, v->name, e->valuestring, w ? "'" : "",
                             cJSON_IsString(w) ? w->valuestring : "nothing", w ? "'" : "");
        }
        free(full);
    }
    for (const cJSON *e = wm ? wm->child : NULL; e && s == ULC_OK; e = e->next)
        if (!ulc_graph_get_value(m->graph, e->string))
            s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: tensor '%s' is not in its shard '%s'", path,
                         e->string, e->valuestring);
    const cJSON *meta = root ? cJSON_GetObjectItemCaseSensitive(root, "metadata") : NULL;
    if (s == ULC_OK && meta && cJSON_IsObject(meta)) {
        /* total_size is a number in the index; keep only string entries */
        cJSON *strs = cJSON_CreateObject();
        for (const cJSON *e = meta->child; strs && e; e = e->next)
            if (cJSON_IsString(e)) cJSON_AddStringToObject(strs, e->string, e->valuestring);
        if (strs) s = add_metadata(m, strs, ctx);
        cJSON_Delete(strs);
    }
    cJSON_Delete(root);
    ulc_strmap_free(loaded);
    free(dir);
    free(text);
    return s;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

ulc_status ulc_safetensors_import(const char *path, ulc_model **out, ulc_ctx *ctx) {
    *out = NULL;
    ulc_model *m = ulc_model_create();
    if (!m) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    m->source_format = ULC_FORMAT_SAFETENSORS;
    m->source_path = ulc_arena_strdup(m->graph->arena, path);
    ulc_status s;
    if (ulc_path_is_dir(path)) {
        char *idx = ulc_path_join(path, "model.safetensors.index.json");
        char *single = ulc_path_join(path, "model.safetensors");
        if (!idx || !single) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        else if (ulc_path_exists(idx)) s = load_index(m, idx, ctx);
        else if (ulc_path_exists(single)) s = ulc_safetensors_load_file(m, single, ctx);
        else
            s = ulc_fail(ctx, ULC_ERR_IO,
                         "%s: no model.safetensors or model.safetensors.index.json in this "
                         "directory", path);
        free(idx);
        free(single);
    } else if (ends_with(path, ".json")) {
        s = load_index(m, path, ctx);
    } else {
        s = ulc_safetensors_load_file(m, path, ctx);
    }
    if (s != ULC_OK) {
        ulc_model_free(m);
        return s;
    }
    *out = m;
    return ULC_OK;
}
