/*
 * scrub.c — SCRUB (Kurmanji et al.): the teacher's logits for every row once, then per epoch a
 * max pass over the forget rows (loss = −KL(t ‖ s)) and a min pass over the retain rows
 * (α·KL(t ‖ s) + γ·CE to the labels); the two phases' curves make the run's.
 */
#include <stdlib.h>
#include <string.h>

#include "methods/unlearn_internal.h"

/* One epoch: the max pass, then the min pass. */
static ulc_status epoch(const ulc_unlearn_call *c, const ulc_row_subset *sf, const ulc_row_subset *sr,
                        int e, ulc_ctx *ctx) {
    ulc_train_opts po = *c->o;
    po.epochs = 1;
    po.seed = c->o->seed + (uint64_t)e;
    static const struct { const char *label; int kind; } phases[] = {
        {"scrub max", L_NEG_KL}, {"scrub min", L_KL_CE}};
    for (int k = 0; k < 2; k++) {
        ulc_train_stats ph = {0};
        po.label = phases[k].label;
        ulc_status s = ulc_unlearn_train(c->model, k ? &sr->d : &sf->d, phases[k].kind, &po, c->u,
                                         &ph, ctx);
        if (s == ULC_OK || ph.steps) s = ulc_unlearn_stats_add(c->stats, &ph, ctx) == ULC_OK ? s : ctx->status;
        ulc_train_stats_clear(&ph);
        ULC_TRY(s);
    }
    return ULC_OK;
}

ulc_status ulc_scrub_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    const ulc_dataset *data = c->data;
    const ulc_unlearn_opts *u = c->u;
    ulc_row_subset sf = {0}, sr = {0};
    float *zt = NULL, *zall = NULL;
    int64_t nt = 0, C = 0;
    uint8_t *all = malloc((size_t)data->n_rows + 1);
    ulc_status s = all ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (s == ULC_OK) {
        memset(all, 1, (size_t)data->n_rows);
        s = ulc_teacher_logits(c->teacher, data, all, u->input, u->output, c->o->threads, &zall,
                               &nt, &C, ctx);
    }
    /* split the logits by forget flag, in row order */
    int64_t nf = 0;
    for (int64_t i = 0; i < data->n_rows; i++) nf += c->forget[i] != 0;
    if (s == ULC_OK && !(zt = malloc((size_t)(data->n_rows * C) * sizeof *zt + 1)))
        s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0, a = 0, b = nf; s == ULC_OK && i < data->n_rows; i++)
        memcpy(zt + (c->forget[i] ? a++ : b++) * C, zall + i * C, (size_t)C * sizeof *zt);
    if (s == ULC_OK) s = ulc_row_subset_make(data, c->forget, 1, TEACHER_COL, zt, C, &sf, ctx);
    if (s == ULC_OK) s = ulc_row_subset_make(data, c->forget, 0, TEACHER_COL, zt + nf * C, C, &sr, ctx);
    for (int e = 0; s == ULC_OK && e < c->o->epochs; e++) s = epoch(c, &sf, &sr, e, ctx);
    ulc_row_subset_free(&sf);
    ulc_row_subset_free(&sr);
    free(zt);
    free(zall);
    free(all);
    return s;
}
