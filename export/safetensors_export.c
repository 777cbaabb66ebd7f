/* safetensors_export.c — see safetensors_export.h. */
#include "export/safetensors_export.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"

/* The reference writer's order: dtypes by descending rank below (which never increases the
 * element size, so each tensor stays aligned to it), then names. */
static int dtype_rank(int dt) {
    static const int order[] = {ULC_DT_U64, ULC_DT_I64, ULC_DT_F64, ULC_DT_F32, ULC_DT_U32,
                                ULC_DT_I32, ULC_DT_BF16, ULC_DT_F16, ULC_DT_U16, ULC_DT_I16,
                                ULC_DT_F8E4M3FN, ULC_DT_F8E5M2, ULC_DT_I8, ULC_DT_U8, ULC_DT_BOOL};
    for (int i = 0; i < (int)(sizeof order / sizeof *order); i++)
        if (order[i] == dt) return i;
    return (int)(sizeof order / sizeof *order);
}

static int cmp_init(const void *a, const void *b) {
    const ulc_tensor *x = (*(const ulc_value *const *)a)->init;
    const ulc_tensor *y = (*(const ulc_value *const *)b)->init;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return rx < ry ? -1 : 1;
    return strcmp((*(const ulc_value *const *)a)->name, (*(const ulc_value *const *)b)->name);
}

static int own_key(const char *k) {
    return strncmp(k, ULC_META_PREFIX, strlen(ULC_META_PREFIX)) == 0;
}

static ulc_status build_header(const ulc_model *m, const ulc_value **order, size_t n,
                               int format_pt, char **out, ulc_ctx *ctx) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    int n_meta = format_pt;
    for (int i = 0; i < m->n_metadata; i++) n_meta += m->metadata[i].key && !own_key(m->metadata[i].key);
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && i < m->n_metadata; i++)
            if (m->metadata[i].key && !own_key(m->metadata[i].key) &&
                !cJSON_GetObjectItemCaseSensitive(meta, m->metadata[i].key))
                cJSON_AddStringToObject(meta, m->metadata[i].key,
                                        m->metadata[i].value ? m->metadata[i].value : "");
        if (meta && format_pt && !cJSON_GetObjectItemCaseSensitive(meta, "format"))
            cJSON_AddStringToObject(meta, "format", "pt");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const ulc_tensor *t = order[i]->init;
        cJSON *e = cJSON_AddObjectToObject(root, order[i]->name);
        if (!e) break;
        cJSON_AddStringToObject(e, "dtype", ulc_dtype_safetensors_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; shape && d < t->rank; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->dims[d]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        if (offs) {
            cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
            cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t->nbytes)));
        }
        off += t->nbytes;
    }
    *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*out) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (safetensors header)");
    return ULC_OK;
}

static int copied_in_kernel(const ulc_tensor *t) {
    return t->storage == ULC_STORAGE_BORROWED && t->map && t->map->fd >= 0;
}

static ulc_status out_sink(void *o, const void *p, size_t n, ulc_ctx *ctx) {
    return ulc_outfile_write(o, p, n, ctx);
}

static ulc_status out_skip(void *o, uint64_t n, ulc_ctx *ctx) {
    return ulc_outfile_skip(o, n, ctx);
}

static ulc_status write_all(const ulc_value **order, size_t n, const char *hdr,
                            ulc_outfile *o, ulc_ctx *ctx) {
    size_t hlen = strlen(hdr);
    size_t padded = (hlen + 7) / 8 * 8;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    ULC_TRY(ulc_outfile_write(o, len8, 8, ctx));
    ULC_TRY(ulc_outfile_write(o, hdr, hlen, ctx));
    ULC_TRY(ulc_outfile_write(o, "        ", padded - hlen, ctx));
    /* Tensors still in a file are copied file-to-file by the outfile's copier thread, all queued
     * first, while this thread writes the others (merged weights are produced as they go) and
     * skips the copied regions: the kernel's copying and the producing overlap. */
    const uint64_t data0 = 8 + padded;
    uint64_t off = data0;
    for (size_t i = 0; i < n; i++) {
        const ulc_tensor *t = order[i]->init;
        if (t->nbytes && copied_in_kernel(t))
            ULC_TRY(ulc_outfile_copy_at(o, off, t->map->fd, ulc_tensor_file_offset(t), t->nbytes, ctx));
        off += t->nbytes;
    }
    ULC_TRY(ulc_outfile_flush(o, ctx)); /* the outfile is the writer thread's from here */
    ulc_stream *st;
    ULC_TRY(ulc_stream_open(out_sink, out_skip, o, &st, ctx));
    ulc_status s = ULC_OK;
    for (size_t i = 0; s == ULC_OK && i < n; i++) {
        const ulc_tensor *t = order[i]->init;
        s = copied_in_kernel(t) ? ulc_stream_skip(st, t->nbytes, ctx) : ulc_stream_put(st, t, ctx);
    }
    ulc_status cs = ulc_stream_close(st, s == ULC_OK ? ctx : NULL);
    return s != ULC_OK ? s : cs;
}

ulc_status ulc_safetensors_export(const ulc_model *m, const char *path,
                                  const ulc_safetensors_export_opts *opts, ulc_ctx *ctx) {
    const ulc_graph *g = m->graph;
    if (!(opts && opts->allow_overwrite_input) && ulc_model_reads_file(m, path))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                        "%s: refusing to overwrite a file the input model reads from (use "
                        "--in-place)", path);
    size_t n = 0;
    const ulc_value **order = malloc((g->inits.len ? g->inits.len : 1) * sizeof *order);
    if (!order) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->inits.len; i++) {
        const ulc_value *v = g->inits.items[i];
        if (v->flags & ULC_VALUE_CONSTANT) continue;
        order[n++] = v;
        const ulc_tensor *t = v->init;
        if (!ulc_dtype_safetensors_name(t->dtype) || t->form == ULC_FORM_NONE ||
            t->storage == ULC_STORAGE_DEVICE) {
            ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                     "%s: initializer '%s' is %s, which safetensors cannot hold", path,
                     v->name, ulc_dtype_name(t->dtype));
            free(order);
            return ctx->status;
        }
    }
    qsort(order, n, sizeof *order, cmp_init);
    char *hdr = NULL;
    ulc_outfile *o = NULL;
    ulc_status s = build_header(m, order, n, opts && opts->format_pt, &hdr, ctx);
    if (s == ULC_OK) s = ulc_outfile_open(path, &o, ctx);
    if (s == ULC_OK) s = write_all(order, n, hdr, o, ctx);
    if (s == ULC_OK) {
        s = ulc_outfile_commit(o, ctx);
        o = NULL;
    }
    ulc_outfile_abort(o);
    free(hdr);
    free(order);
    return s;
}
