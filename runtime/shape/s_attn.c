/*
 * s_attn.c — shape rules of ulc's attention ops (domain "ulc", ir/ops_ulc.def): Attention
 * (q, kt, v [, masks]) -> o and AttentionGrad (q, kt, v, do [, masks]) -> dq, dkt, dv. q is
 * [..., Tq, D], kt [..., D, Tk], v [..., Tk, Dv], all float32 with the same leading dims (no
 * broadcasting between them); each mask broadcasts to the scores' shape [..., Tq, Tk]. o and do
 * are [..., Tq, Dv]; each gradient has its input's shape. The CPU kernels: runtime/cpu/k_attn.c
 * (which also runs the attention the planner fuses from ONNX nodes, runtime/attn.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/shape/rules.h"

static ulc_status same_lead(ulc_kctx *k, const ulc_rt_tensor *q, int slot, const char *name) {
    const ulc_rt_tensor *t = k->in[slot];
    char s1[96], s2[96];
    int ok = t->rank == q->rank;
    for (int d = 0; ok && d < q->rank - 2; d++) ok = t->dims[d] == q->dims[d];
    if (!ok)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is %s; it must have q's rank and "
                          "leading dims (q is %s)", slot, name, ulc_rt_shape_str(t, s1, sizeof s1),
                          ulc_rt_shape_str(q, s2, sizeof s2));
    return ULC_OK;
}

ulc_status ulc_sh_attn_geom(ulc_kctx *k, int grad, ulc_sh_attn *g) {
    memset(g, 0, sizeof *g);
    static const char *const names[] = {"q", "kt", "v", "do"};
    int fixed = grad ? 4 : 3;
    for (int s = 0; s < fixed; s++) ULC_TRY(ulc_grad_f32(k, s, names[s]));
    const ulc_rt_tensor *q = k->in[0], *kt = k->in[1], *v = k->in[2];
    char s1[96], s2[96];
    if (q->rank < 2)
        return ulc_k_fail(k, ULC_ERR_INVALID, "q is %s; expected [..., Tq, D]",
                          ulc_rt_shape_str(q, s1, sizeof s1));
    for (int s = 1; s < fixed; s++) ULC_TRY(same_lead(k, q, s, names[s]));
    int r = q->rank;
    ulc_attn *a = &g->a;
    a->rank = r;
    g->tq = q->dims[r - 2];
    a->d = q->dims[r - 1];
    g->tk = kt->dims[r - 1];
    a->dv = v->dims[r - 1];
    if (kt->dims[r - 2] != a->d)
        return ulc_k_fail(k, ULC_ERR_INVALID, "kt is %s; its dim %d must be q's D = %lld",
                          ulc_rt_shape_str(kt, s1, sizeof s1), r - 2, (long long)a->d);
    if (v->dims[r - 2] != g->tk)
        return ulc_k_fail(k, ULC_ERR_INVALID, "v is %s; its dim %d must be kt's Tk = %lld",
                          ulc_rt_shape_str(v, s1, sizeof s1), r - 2, (long long)g->tk);
    if (grad && (k->in[3]->dims[r - 2] != g->tq || k->in[3]->dims[r - 1] != a->dv))
        return ulc_k_fail(k, ULC_ERR_INVALID, "do is %s; it must be the output's shape [..., %lld, %lld]",
                          ulc_rt_shape_str(k->in[3], s1, sizeof s1), (long long)g->tq, (long long)a->dv);
    g->batch = 1;
    for (int d = 0; d < r - 2; d++) {
        g->batch *= q->dims[d];
        a->sdims[d] = q->dims[d];
    }
    a->sdims[r - 2] = g->tq;
    a->sdims[r - 1] = g->tk;
    ulc_attn_dense_view(a, g->tq, a->d, &a->q);
    ulc_attn_dense_view(a, a->d, g->tk, &a->kt);
    ulc_attn_dense_view(a, g->tk, a->dv, &a->v);
    ulc_attn_dense_view(a, g->tq, a->dv, &a->o);
    const int64_t *ops = NULL;
    const ulc_attr *im = ulc_k_attr(k, "imms");
    int n = ulc_k_attr_ints(k, "ops", &ops);
    if (n < 0) n = 0;
    if (n > ULC_ATTN_MAX_OPS)
        return ulc_k_fail(k, ULC_ERR_INVALID, "%d score transforms (at most %d)", n, ULC_ATTN_MAX_OPS);
    if (n && (!im || im->type != ULC_ATTR_FLOATS || (int)im->n != n))
        return ulc_k_fail(k, ULC_ERR_INVALID, "attribute imms must hold %d floats, one per op", n);
    int next = fixed;
    a->n_ops = n;
    for (int i = 0; i < n; i++) {
        g->a.ops[i].imm = im->floats[i];
        switch (ops[i]) {
        case 0: g->a.ops[i].op = ULC_ATTN_MUL; continue;
        case 1: g->a.ops[i].op = ULC_ATTN_DIV; continue;
        case 2: case 3: g->a.ops[i].op = ULC_ATTN_WHERE; g->a.ops[i].s_is_x = ops[i] == 2; break;
        case 4: g->a.ops[i].op = ULC_ATTN_ADD; break;
        default:
            return ulc_k_fail(k, ULC_ERR_INVALID, "ops[%d] = %lld; expected 0 (Mul), 1 (Div), 2/3 "
                              "(Where) or 4 (Add)", i, (long long)ops[i]);
        }
        const ulc_rt_tensor *m = next < k->n_in ? k->in[next] : NULL;
        int want_dt = g->a.ops[i].op == ULC_ATTN_WHERE ? ULC_DT_BOOL : ULC_DT_F32;
        if (!m)
            return ulc_k_fail(k, ULC_ERR_INVALID, "ops[%d] reads input %d (a mask), which is missing", i, next);
        if (m->dtype != want_dt || !ulc_rt_broadcasts_to(m, r, a->sdims))
            return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (the mask of ops[%d]) is %s %s; expected "
                              "%s broadcasting to the scores' shape %s", next, i, ulc_dtype_name(m->dtype),
                              ulc_rt_shape_str(m, s1, sizeof s1), ulc_dtype_name(want_dt),
                              ulc_k_dims_str(r, a->sdims, s2, sizeof s2));
        g->a.ops[i].input = (uint8_t)next++;
    }
    if (next != k->n_in)
        return ulc_k_fail(k, ULC_ERR_INVALID, "%d inputs; the ops read %d masks, so %d inputs are expected",
                          k->n_in, next - fixed, next);
    return ULC_OK;
}

void ulc_sh_attn_take(ulc_kctx *k, ulc_sh_attn *g) {
    ulc_attn *a = k->state;
    memset(g, 0, sizeof *g);
    g->a = *a;
    free(a);
    k->state = NULL;
    int r = g->a.rank;
    if (r < 2 || r > ULC_RT_MAX_RANK) return;
    g->tq = g->a.sdims[r - 2];
    g->tk = g->a.sdims[r - 1];
    g->batch = 1;
    for (int d = 0; d < r - 2; d++) g->batch *= g->a.sdims[d];
}

static ulc_status attn_infer(ulc_kctx *k) {
    ulc_sh_attn g;
    ULC_TRY(ulc_sh_attn_geom(k, 0, &g));
    int64_t dims[ULC_RT_MAX_RANK];
    memcpy(dims, k->in[0]->dims, sizeof dims);
    dims[g.a.rank - 1] = g.a.dv;
    ulc_k_set(k->out[0], ULC_DT_F32, g.a.rank, dims);
    return ULC_OK;
}

static ulc_status attn_grad_infer(ulc_kctx *k) {
    ulc_sh_attn g;
    ULC_TRY(ulc_sh_attn_geom(k, 1, &g));
    if (k->n_out > 3) return ulc_k_fail(k, ULC_ERR_INVALID, "%d outputs (at most 3: dq, dkt, dv)", k->n_out);
    for (int i = 0; i < k->n_out; i++)
        if (k->out[i]) ulc_k_set(k->out[i], ULC_DT_F32, k->in[i]->rank, k->in[i]->dims);
    return ULC_OK;
}

void ulc_shape_register_attn(ulc_shape_rule *t) {
    t[ULC_OP_Attention].infer = attn_infer;
    t[ULC_OP_AttentionGrad].infer = attn_grad_infer;
}
