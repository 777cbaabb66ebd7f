/*
 * baselines.c — the methods users compare against (unlearn.h): finetune and retrain (cross-entropy
 * on the retain rows; retrain re-initialises every weight first), neggrad (gradient ascent on the
 * forget rows), random-label (the forget rows trained to seeded random other labels).
 */
#include "methods/unlearn_internal.h"

/* Cross-entropy on the retain rows (want = 0) or its negative on the forget rows. */
static ulc_status plain(const ulc_unlearn_call *c, int want, int kind, ulc_ctx *ctx) {
    ulc_row_subset s = {0};
    ulc_status st = ulc_row_subset_make(c->data, c->forget, want, NULL, NULL, 0, &s, ctx);
    if (st == ULC_OK) st = ulc_unlearn_train(c->model, &s.d, kind, c->o, c->u, c->stats, ctx);
    ulc_row_subset_free(&s);
    return st;
}

ulc_status ulc_finetune_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    return plain(c, 0, L_CE, ctx);
}

ulc_status ulc_retrain_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    ULC_TRY(ulc_unlearn_reinit(c->model, c->o->seed, ctx));
    return plain(c, 0, L_CE, ctx);
}

ulc_status ulc_neggrad_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    return plain(c, 1, L_NEG_CE, ctx);
}

ulc_status ulc_random_label_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    ulc_row_subset sf = {0};
    ULC_TRY(ulc_row_subset_make(c->data, c->forget, 1, NULL, NULL, 0, &sf, ctx));
    int lc = ulc_dataset_find(&sf.d, "label");
    int64_t classes = ulc_unlearn_classes(c->teacher, c->u->output);
    ulc_status s = ULC_OK;
    if (lc < 0 || sf.t[lc].dtype != ULC_DT_I64 || classes < 2) {
        s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "random-label: needs int64 labels and a fixed "
                     "class count of at least 2");
    } else {
        int64_t *y = sf.bufs[lc];
        uint64_t st = c->o->seed ^ 0x7A6E1ull;
        for (int64_t i = 0; i < sf.d.n_rows; i++) { /* uniform over the other classes */
            int64_t r = (int64_t)(ulc_unlearn_splitmix(&st) % (uint64_t)(classes - 1));
            y[i] = r >= y[i] ? r + 1 : r;
        }
        s = ulc_unlearn_train(c->model, &sf.d, L_CE, c->o, c->u, c->stats, ctx);
    }
    ulc_row_subset_free(&sf);
    return s;
}
