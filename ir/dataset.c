/* ir/dataset.c — named tensor columns (dataset.h). */
#include "ir/dataset.h"

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

