/* rows.c — a model over the rows of data columns, in batches (runtime.h, "rows"). Every place
 * that scores a model on a data file runs through here: the forget evaluation (eval/), plain
 * `ulc eval`, and DELETE's teacher logits (methods/). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

static size_t col_row_bytes(const ulc_tensor *t) {
    return t->rank >= 1 && t->dims[0] > 0 ? t->nbytes / (size_t)t->dims[0] : 0;
}

int64_t ulc_rows_batch(const ulc_rows *r) {
    size_t row = 0;
    for (int k = 0; k < r->n_feeds; k++) row += col_row_bytes(r->cols[k]);
    int64_t cap = r->max_rows > 0 ? r->max_rows : ULC_ROWS_BATCH;
    int64_t b = row ? (int64_t)(ULC_ROWS_BYTES / row) : cap;
    return b < 1 ? 1 : b > cap ? cap : b;
}

/* Rows [r0, r0 + rn) of the run (idx[r0..] or r0..) of every column, copied into bufs (the
 * mapped file's bytes may be unaligned; malloc'd on first use for cap rows), bound to s. */
static ulc_status bind(ulc_session *s, const ulc_rows *r, int64_t r0, int64_t rn, int64_t cap,
                       uint8_t **bufs, ulc_ctx *ctx) {
    for (int k = 0; k < r->n_feeds; k++) {
        const ulc_tensor *t = r->cols[k];
        size_t row = col_row_bytes(t);
        if (!bufs[k] && !(bufs[k] = malloc(row * (size_t)cap + 1)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (evaluation batch)");
        const uint8_t *src = t->data;
        if (r->idx)
            for (int64_t i = 0; i < rn; i++)
                memcpy(bufs[k] + (size_t)i * row, src + row * (size_t)r->idx[r0 + i], row);
        else
            memcpy(bufs[k], src + row * (size_t)r0, row * (size_t)rn);
        ulc_rt_tensor rt;
        ULC_TRY(ulc_rt_tensor_view(t, r->file ? r->file : "data", &rt, ctx));
        rt.dims[0] = rn;
        rt.data = bufs[k];
        rt.nbytes = row * (size_t)rn;
        ULC_TRY(ulc_session_set_input(s, r->names[k], &rt, ctx));
    }
    return ULC_OK;
}

ulc_status ulc_rows_run(ulc_session *s, const ulc_rows *r, ulc_rows_fn fn, void *arg,
                        int64_t *failed_at, ulc_ctx *ctx) {
    uint8_t *bufs[ULC_ROWS_MAX_FEEDS] = {0};
    ulc_status st = ULC_OK;
    if (failed_at) *failed_at = -1;
    if (r->n_feeds < 0 || r->n_feeds > ULC_ROWS_MAX_FEEDS)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "rows: %d inputs fed (at most %d)", r->n_feeds,
                        ULC_ROWS_MAX_FEEDS);
    int64_t eb = ulc_rows_batch(r);
    for (int64_t r0 = 0; r0 < r->n && st == ULC_OK; r0 += eb) {
        int64_t rn = r->n - r0 < eb ? r->n - r0 : eb;
        if ((st = bind(s, r, r0, rn, eb, bufs, ctx)) != ULC_OK ||
            (st = ulc_session_run(s, ctx)) != ULC_OK) {
            if (failed_at) *failed_at = r0;
            break;
        }
        if (fn) st = fn(arg, s, r0, rn, ctx);
    }
    for (int k = 0; k < ULC_ROWS_MAX_FEEDS; k++) free(bufs[k]);
    return st;
}

/* ---- logits ---------------------------------------------------------------------------------- */

typedef struct collect {
    const ulc_rows *r;
    const char *out;
    ulc_rows_check_fn check;
    void *check_arg;
    int64_t *classes;
    float *z;
} collect;

static ulc_status collect_batch(void *arg, ulc_session *s, int64_t r0, int64_t rn, ulc_ctx *ctx) {
    collect *c = arg;
    const ulc_rt_tensor *o = ulc_session_output(s, c->out);
    if (!o || o->dtype != ULC_DT_F32 || o->rank != 2 || o->dims[0] != rn || o->dims[1] < 1 ||
        (*c->classes > 0 && o->dims[1] != *c->classes)) {
        if (c->check) return c->check(c->check_arg, o, rn, *c->classes, ctx);
        char sh[128];
        return ulc_fail(ctx, ULC_ERR_INVALID, "output '%s' is %s for %lld rows (float32 [rows, "
                        "classes] expected)", c->out, o ? ulc_rt_shape_str(o, sh, sizeof sh)
                                                        : "missing", (long long)rn);
    }
    int64_t C = o->dims[1];
    if (!c->z) {
        *c->classes = C;
        if (!(c->z = malloc((size_t)(c->r->n * C) * sizeof *c->z + 1)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (scores)");
    }
    memcpy(c->z + r0 * C, o->data, (size_t)(rn * C) * sizeof *c->z);
    return ULC_OK;
}

ulc_status ulc_rows_logits(ulc_session *s, const ulc_rows *r, const char *out,
                           ulc_rows_check_fn check, void *check_arg, int64_t *classes, float **z,
                           int64_t *failed_at, ulc_ctx *ctx) {
    collect c = {.r = r, .out = out, .check = check, .check_arg = check_arg, .classes = classes};
    ulc_status st = ulc_rows_run(s, r, collect_batch, &c, failed_at, ctx);
    if (st != ULC_OK) {
        free(c.z);
        c.z = NULL;
    }
    *z = c.z;
    return st;
}
