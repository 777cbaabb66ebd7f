/* ir/dataset.c — named tensor columns (dataset.h). */
#include "ir/dataset.h"

#include <stdlib.h>
#include <string.h>

const char *ulc_dataset_path(const ulc_dataset *d) {
    return d->path ? d->path : "dataset";
}

ulc_status ulc_dataset_check(ulc_dataset *d, ulc_ctx *ctx) {
    if (d->n_cols < 1) return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the dataset has no columns", ulc_dataset_path(d));
    d->n_rows = 0;
    for (int i = 0; i < d->n_cols; i++) {
        const ulc_tensor *t = d->cols[i];
        const char *name = d->names[i] ? d->names[i] : "?";
        if (!t) return ulc_fail(ctx, ULC_ERR_INVALID, "%s: column '%s' has no tensor", ulc_dataset_path(d), name);
        if (t->rank < 1)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s: column '%s' is a scalar (expected rows: rank >= 1)", ulc_dataset_path(d), name);
        if (i > 0 && t->dims[0] != d->n_rows)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s: column '%s' has %lld rows, column '%s' has %lld (expected the same)",
                            ulc_dataset_path(d), name, (long long)t->dims[0],
                            d->names[0] ? d->names[0] : "?", (long long)d->n_rows);
        d->n_rows = t->dims[0];
        int overflow = 0;
        size_t want = ulc_dtype_nbytes(t->dtype, t->numel, &overflow);
        if (overflow || (want && !t->data) || t->nbytes != want ||
            (t->storage != ULC_STORAGE_OWNED && t->storage != ULC_STORAGE_BORROWED && want))
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s: column '%s': %zu bytes in memory, its dims and dtype %s need %zu",
                            ulc_dataset_path(d), name, t->data ? t->nbytes : (size_t)0,
                            ulc_dtype_name(t->dtype), want);
    }
    return ULC_OK;
}

int ulc_dataset_find(const ulc_dataset *d, const char *name) {
    for (int i = 0; i < d->n_cols; i++)
        if (d->names[i] && strcmp(d->names[i], name) == 0) return i;
    return -1;
}

void ulc_row_subset_free(ulc_row_subset *s) {
    for (int i = 0; s->bufs && i < s->d.n_cols; i++) free(s->bufs[i]);
    free(s->bufs);
    free(s->t);
    free(s->dims);
    free((void *)s->d.names);
    free((void *)s->d.cols);
    memset(s, 0, sizeof *s);
}

/* The rows with forget[i] == want (every row with want < 0), every column, plus `extra` (a
 * float32 [rows, w] column already in subset order, copied) named extra_name. */
ulc_status ulc_row_subset_make(const ulc_dataset *d, const uint8_t *forget, int want,
                               const char *extra_name, const float *extra, int64_t w,
                               ulc_row_subset *s, ulc_ctx *ctx) {
    memset(s, 0, sizeof *s);
    int64_t n = 0;
    for (int64_t i = 0; i < d->n_rows; i++) n += want < 0 || (forget[i] != 0) == want;
    if (!n)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: no %s rows to train on",
                        d->path ? d->path : "data", want ? "forget" : "retain");
    int nc = d->n_cols + (extra ? 1 : 0);
    s->d.names = calloc((size_t)nc, sizeof *s->d.names);
    s->d.cols = calloc((size_t)nc, sizeof *s->d.cols);
    s->t = calloc((size_t)nc, sizeof *s->t);
    s->dims = calloc((size_t)nc * ULC_DATASET_MAX_RANK, sizeof *s->dims);
    s->bufs = calloc((size_t)nc, sizeof *s->bufs);
    if (!s->d.names || !s->d.cols || !s->t || !s->dims || !s->bufs)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (row subset)");
    for (int c = 0; c < nc; c++) {
        int is_extra = c == d->n_cols;
        const ulc_tensor *src = is_extra ? NULL : d->cols[c];
        int rank = is_extra ? 2 : src->rank;
        if (rank > ULC_DATASET_MAX_RANK) return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "column of rank %d", rank);
        int64_t *dims = s->dims + (size_t)c * ULC_DATASET_MAX_RANK;
        size_t row = is_extra ? (size_t)w * sizeof(float) : src->nbytes / (size_t)d->n_rows;
        dims[0] = n;
        if (is_extra) dims[1] = w;
        else
            for (int k = 1; k < rank; k++) dims[k] = src->dims[k];
        uint8_t *buf = malloc(row * (size_t)n + 1);
        if (!buf) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (row subset)");
        s->bufs[c] = buf;
        s->d.n_cols = c + 1;
        if (is_extra) memcpy(buf, extra, row * (size_t)n);
        else
            for (int64_t i = 0, k = 0; i < d->n_rows; i++)
                if (want < 0 || (forget[i] != 0) == want)
                    memcpy(buf + (size_t)k++ * row, (const uint8_t *)src->data + (size_t)i * row, row);
        ulc_tensor *t = &s->t[c];
        t->name = is_extra ? extra_name : d->names[c];
        t->dtype = is_extra ? ULC_DT_F32 : src->dtype;
        t->rank = rank;
        t->dims = dims;
        t->numel = (uint64_t)n * (uint64_t)(row / (t->dtype == ULC_DT_I64 ? 8 : 4));
        t->storage = ULC_STORAGE_OWNED;
        t->data = buf;
        t->nbytes = row * (size_t)n;
        s->d.names[c] = t->name;
        s->d.cols[c] = t;
    }
    s->d.n_rows = n;
    s->d.path = d->path;
    return ULC_OK;
}
