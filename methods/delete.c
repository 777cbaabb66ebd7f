/*
 * delete.c — DELETE, decoupled distillation (shared/methods/delete.md): on the forget rows only,
 * KL(p ‖ student) with p = softmax of the frozen teacher's logits (over a temperature) with the
 * row's own label — or every forget class (mask all_forget) — set to −∞. The teacher's logits
 * are computed once for the forget rows, or handed in (a cache: unlearn_opts.teacher_logits).
 * On a text model DELETE runs per next-token position through lm.c instead.
 */
#include <stdlib.h>

#include "methods/unlearn_internal.h"

ulc_status ulc_delete_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    const ulc_unlearn_opts *u = c->u;
    ulc_row_subset sf = {0};
    float *zt = NULL;
    int64_t nt = 0, C = 0;
    ulc_status s = ULC_OK;
    if (u->teacher_logits) {
        /* the classes come from the model output, checked when the graph is built */
        C = ulc_unlearn_classes(c->teacher, u->output);
        if (C <= 0)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "delete: the model's output has no fixed "
                            "class count; cached teacher logits cannot be checked");
        s = ulc_row_subset_make(c->data, c->forget, 1, TEACHER_COL, u->teacher_logits, C, &sf, ctx);
    } else {
        s = ulc_teacher_logits(c->teacher, c->data, c->forget, u->input, u->output, c->o->threads,
                               &zt, &nt, &C, ctx);
        if (s == ULC_OK) s = ulc_row_subset_make(c->data, c->forget, 1, TEACHER_COL, zt, C, &sf, ctx);
    }
    if (s == ULC_OK) s = ulc_unlearn_train(c->model, &sf.d, L_DELETE, c->o, u, c->stats, ctx);
    ulc_row_subset_free(&sf);
    free(zt);
    return s;
}
