/*
 * s_loss.c — shape rules of ulc's fused loss ops (domain "ulc", ir/ops_ulc.def):
 * SoftmaxCrossEntropy and SoftmaxCrossEntropyGrad. z is float32 [..., V]; y (int32/int64, optional)
 * has z's leading dims, as do the per-row results (ce, lse, sce); the gradient has z's shape.
 * SquaredDistance and SquaredDistanceGrad: a and b of one float32 shape [..., P]; d and dd have
 * the leading dims; da and db the shape of a.
 * The CPU kernels: runtime/cpu/k_loss.c.
 */
#include <stdint.h>
#include <string.h>

#include "runtime/shape/rules.h"

/* y's shape must be z's without its last dim. */
static ulc_status rows_match(ulc_kctx *k, const ulc_rt_tensor *z, const ulc_rt_tensor *y,
                             const char *what, int slot) {
    char s1[96], s2[96];
    int ok = y->rank == z->rank - 1;
    for (int d = 0; ok && d < y->rank; d++) ok = y->dims[d] == z->dims[d];
    if (!ok)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is %s; z %s needs z's shape without "
                          "its class axis", slot, what, ulc_rt_shape_str(y, s1, sizeof s1),
                          ulc_rt_shape_str(z, s2, sizeof s2));
    return ULC_OK;
}

ulc_status ulc_sh_sce_geom(ulc_kctx *k, int grad, ulc_sh_sce *g) {
    memset(g, 0, sizeof *g);
    ULC_TRY(ulc_grad_f32(k, 0, "z"));
    const ulc_rt_tensor *z = k->in[0];
    const ulc_rt_tensor *y = k->n_in > 1 ? k->in[1] : NULL;
    if (z->rank < 1) return ulc_k_fail(k, ULC_ERR_INVALID, "z must have a class axis (rank >= 1)");
    if (y && y->dtype != ULC_DT_I64 && y->dtype != ULC_DT_I32)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input 1 (y) must be int32 or int64 labels");
    if (y) ULC_TRY(rows_match(k, z, y, "y", 1));
    g->z = z;
    g->y = y;
    g->V = z->dims[z->rank - 1];
    g->R = 1;
    for (int d = 0; d + 1 < z->rank; d++) g->R *= z->dims[d];
    int p_slot = grad ? 6 : 2;
    if (grad) {
        static const char *const names[] = {"z", "y", "lse", "dce", "dlse", "dsce"};
        for (int s = 2; s < 6; s++) {
            if (s >= k->n_in || !k->in[s]) {
                if (s == 2) return ulc_k_fail(k, ULC_ERR_INVALID, "input 2 (lse) is required");
                continue;
            }
            ULC_TRY(ulc_grad_f32(k, s, names[s]));
            ULC_TRY(rows_match(k, z, k->in[s], names[s], s));
        }
    }
    const ulc_rt_tensor *p = p_slot < k->n_in ? k->in[p_slot] : NULL;
    if (p) {
        ULC_TRY(ulc_grad_f32(k, p_slot, "p"));
        char s1[96], s2[96];
        int one_row = p->rank >= 1 && p->dims[p->rank - 1] == g->V;
        for (int d = 0; one_row && d + 1 < p->rank; d++) one_row = p->dims[d] == 1;
        if (one_row) g->p_rows = 1;
        else if (ulc_rt_same_shape(p, z)) g->p_rows = g->R;
        else
            return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (p) is %s; soft targets are one row "
                              "of the %lld classes ([%lld], leading dims 1) or z's shape %s",
                              p_slot, ulc_rt_shape_str(p, s1, sizeof s1), (long long)g->V,
                              (long long)g->V, ulc_rt_shape_str(z, s2, sizeof s2));
        g->p = p;
    }
    if (grad && k->n_in > 5 && k->in[5] && !p)
        return ulc_k_fail(k, ULC_ERR_INVALID, "dsce (input 5) is given without p (input 6)");
    return ULC_OK;
}

static ulc_status sce_infer(ulc_kctx *k) {
    ulc_sh_sce g;
    ULC_TRY(ulc_sh_sce_geom(k, 0, &g));
    for (int i = 0; i < k->n_out && i < 3; i++) {
        if (!k->out[i]) continue;
        if (i == 2 && !g.p)
            return ulc_k_fail(k, ULC_ERR_INVALID, "output 2 (sce) needs soft targets p (input 2)");
        ulc_k_set(k->out[i], ULC_DT_F32, g.z->rank - 1, g.z->dims);
    }
    return ULC_OK;
}

static ulc_status sce_grad_infer(ulc_kctx *k) {
    ulc_sh_sce g;
    ULC_TRY(ulc_sh_sce_geom(k, 1, &g));
    ulc_k_set(k->out[0], ULC_DT_F32, g.z->rank, g.z->dims);
    return ULC_OK;
}

ulc_status ulc_sh_sqdist_geom(ulc_kctx *k, int grad, int64_t *R, int64_t *P) {
    ULC_TRY(ulc_grad_f32(k, 0, "a"));
    ULC_TRY(ulc_grad_f32(k, 1, "b"));
    const ulc_rt_tensor *a = k->in[0], *b = k->in[1];
    char s1[96], s2[96];
    if (a->rank < 1) return ulc_k_fail(k, ULC_ERR_INVALID, "a must have a feature axis (rank >= 1)");
    if (!ulc_rt_same_shape(a, b))
        return ulc_k_fail(k, ULC_ERR_INVALID, "input 1 (b) is %s; it must have a's shape %s",
                          ulc_rt_shape_str(b, s1, sizeof s1), ulc_rt_shape_str(a, s2, sizeof s2));
    if (grad) {
        if (k->n_in < 3 || !k->in[2]) return ulc_k_fail(k, ULC_ERR_INVALID, "input 2 (dd) is required");
        ULC_TRY(ulc_grad_f32(k, 2, "dd"));
        ULC_TRY(rows_match(k, a, k->in[2], "dd", 2));
    }
    *P = a->dims[a->rank - 1];
    *R = 1;
    for (int d = 0; d + 1 < a->rank; d++) *R *= a->dims[d];
    return ULC_OK;
}

static ulc_status sqdist_infer(ulc_kctx *k) {
    int64_t R, P;
    ULC_TRY(ulc_sh_sqdist_geom(k, 0, &R, &P));
    ulc_k_set(k->out[0], ULC_DT_F32, k->in[0]->rank - 1, k->in[0]->dims);
    return ULC_OK;
}

static ulc_status sqdist_grad_infer(ulc_kctx *k) {
    int64_t R, P;
    ULC_TRY(ulc_sh_sqdist_geom(k, 1, &R, &P));
    for (int i = 0; i < k->n_out && i < 2; i++)
        if (k->out[i]) ulc_k_set(k->out[i], ULC_DT_F32, k->in[0]->rank, k->in[0]->dims);
    return ULC_OK;
}

void ulc_shape_register_loss(ulc_shape_rule *t) {
    t[ULC_OP_SquaredDistance].infer = sqdist_infer;
    t[ULC_OP_SquaredDistanceGrad].infer = sqdist_grad_infer;
    t[ULC_OP_SoftmaxCrossEntropy].infer = sce_infer;
    t[ULC_OP_SoftmaxCrossEntropyGrad].infer = sce_grad_infer;
}
