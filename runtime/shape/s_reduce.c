/*
 * s_reduce.c — shape rules of the reductions (Reduce*: axes from input 1 from opset 13 for
 * ReduceSum and 18 for the others, before as an attribute; keepdims; noop_with_empty_axes),
 * ArgMax/ArgMin (int64 indices), Softmax/LogSoftmax (opset < 13: coerced to 2-D at axis) and
 * LayerNormalization (Mean and InvStdDev outputs in stash_type). The CPU kernels:
 * runtime/cpu/k_reduce.c, k_reduce_norm.c.
 */
#include <stdint.h>

#include "runtime/shape/rules.h"

/* The reduced axes of node k over a rank-`rank` input as a bit mask (bit d = axis d reduced);
 * *noop = 1 when the op is the identity (input-form axes empty and noop_with_empty_axes=1). */
ulc_status ulc_sh_reduce_axes(ulc_kctx *k, int rank, unsigned *mask, int *noop) {
    int input_form = k->opset >= (k->node->op == ULC_OP_ReduceSum ? 13 : 18);
    int64_t axes[ULC_RT_MAX_RANK];
    int n = 0;
    *mask = 0;
    *noop = 0;
    if (input_form) {
        if (ulc_k_attr(k, "axes"))
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "attribute axes is not part of this op at opset %lld (axes is input 1 "
                              "from opset %d)",
                              (long long)k->opset, k->node->op == ULC_OP_ReduceSum ? 13 : 18);
        const ulc_rt_tensor *a = k->n_in > 1 ? k->in[1] : NULL;
        if (a) {
            if (!ulc_k_is_int(a->dtype) || a->rank > 1)
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "input 1 (axes) must be a 1-D int64 tensor, got %s rank %d",
                                  ulc_dtype_name(a->dtype), a->rank);
            uint64_t cnt = ulc_rt_numel(a);
            if (cnt > (uint64_t)rank)
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "input 1 (axes) has %llu entries for a rank-%d input",
                                  (unsigned long long)cnt, rank);
            if (cnt && !a->data)
                return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                                  "input 1 (axes) must be known when the plan is made");
            for (uint64_t i = 0; i < cnt; i++) axes[n++] = ulc_k_int_at(a, i);
        }
        if (n == 0 && ulc_k_attr_int(k, "noop_with_empty_axes", 0)) {
            *noop = 1;
            return ULC_OK;
        }
    } else {
        const int64_t *v = NULL;
        int cnt = ulc_k_attr_ints(k, "axes", &v);
        if (cnt > rank)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute axes has %d entries for a rank-%d input",
                              cnt, rank);
        for (int i = 0; i < cnt; i++) axes[n++] = v[i];
    }
    if (n == 0) {
        *mask = rank ? (1u << rank) - 1 : 0;
        return ULC_OK;
    }
    for (int i = 0; i < n; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
        if (a < 0 || a >= rank)
            return ulc_k_fail(k, ULC_ERR_INVALID, "axis %lld is out of range for a rank-%d input",
                              (long long)axes[i], rank);
        if (*mask & (1u << a))
            return ulc_k_fail(k, ULC_ERR_INVALID, "axis %lld is listed twice", (long long)axes[i]);
        *mask |= 1u << a;
    }
    return ULC_OK;
}

static ulc_status red_check_dtype(ulc_kctx *k, int dt) {
    ulc_op op = k->node->op;
    if (ulc_k_is_float(dt) || ulc_k_is_int(dt)) return ULC_OK;
    if (dt == ULC_DT_BOOL && (op == ULC_OP_ReduceMax || op == ULC_OP_ReduceMin)) return ULC_OK;
    return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "input 0 (data) of dtype %s is not supported",
                      ulc_dtype_name(dt));
}

static ulc_status red_infer(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->n_in > 0 ? k->in[0] : NULL;
    if (!x) return ulc_k_fail(k, ULC_ERR_INVALID, "input 0 (data) is missing");
    ulc_status st = red_check_dtype(k, x->dtype);
    if (st != ULC_OK) return st;
    unsigned mask;
    int noop;
    if ((st = ulc_sh_reduce_axes(k, x->rank, &mask, &noop)) != ULC_OK) return st;
    int keep = ulc_k_attr_int(k, "keepdims", 1) != 0;
    int64_t dims[ULC_RT_MAX_RANK];
    int rank = 0;
    for (int d = 0; d < x->rank; d++) {
        if (noop || !(mask & (1u << d))) dims[rank++] = x->dims[d];
        else if (keep) dims[rank++] = 1;
    }
    ulc_k_set(k->out[0], x->dtype, rank, dims);
    return ULC_OK;
}

static ulc_status arg_infer(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->n_in > 0 ? k->in[0] : NULL;
    if (!x) return ulc_k_fail(k, ULC_ERR_INVALID, "input 0 (data) is missing");
    if (!ulc_k_is_float(x->dtype) && !ulc_k_is_int(x->dtype)) /* every numeric dtype */
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "input 0 (data) of dtype %s is not supported",
                          ulc_dtype_name(x->dtype));
    if (x->rank == 0)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input 0 (data) must have rank >= 1");
    int axis;
    ulc_status st = ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), x->rank, &axis);
    if (st != ULC_OK) return st;
    if (x->dims[axis] == 0 && ulc_rt_numel(x) == 0) {
        int other = 0; /* the output has elements iff every other dim is nonzero */
        for (int d = 0; d < x->rank; d++)
            if (d != axis && x->dims[d] == 0) other = 1;
        if (!other)
            return ulc_k_fail(k, ULC_ERR_INVALID, "axis %d has size 0: no index to return", axis);
    }
    int keep = ulc_k_attr_int(k, "keepdims", 1) != 0;
    int64_t dims[ULC_RT_MAX_RANK];
    int rank = 0;
    for (int d = 0; d < x->rank; d++) {
        if (d != axis) dims[rank++] = x->dims[d];
        else if (keep) dims[rank++] = 1;
    }
    ulc_k_set(k->out[0], ULC_DT_I64, rank, dims);
    return ULC_OK;
}

/* The [O, A, I] view of x that the node normalises over A. */
int ulc_sh_reduce_groups(const ulc_rt_tensor *x, unsigned mask, int64_t *dims, int64_t *str,
                         int *red, int64_t *count) {
    int n = 0;
    *count = 1;
    for (int d = 0; d < x->rank; d++) {
        int64_t len = x->dims[d];
        int r = (int)((mask >> d) & 1u);
        if (r) *count *= len;
        if (len == 1) continue;
        if (n && red[n - 1] == r) {
            dims[n - 1] *= len;
        } else {
            dims[n] = len;
            red[n] = r;
            n++;
        }
    }
    ulc_k_strides(n, dims, str);
    return n;
}

ulc_status ulc_sh_softmax_layout(ulc_kctx *k, const ulc_rt_tensor *x, int64_t *O, int64_t *A,
                            int64_t *I) {
    *O = *A = *I = 1;
    if (x->rank == 0) return ULC_OK;
    int coerce = k->opset < 13;
    int64_t axis = ulc_k_attr_int(k, "axis", coerce ? 1 : -1);
    int64_t a = axis < 0 ? axis + x->rank : axis;
    /* before 13, axis = rank is the coercion to [N, 1]: each element alone */
    if (a < 0 || a > x->rank || (a == x->rank && !coerce))
        return ulc_k_fail(k, ULC_ERR_INVALID, "axis %lld is out of range for a rank-%d input",
                          (long long)axis, x->rank);
    for (int d = 0; d < x->rank; d++) {
        if (d < a) *O *= x->dims[d];
        else if (d == a || coerce) *A *= x->dims[d];
        else *I *= x->dims[d];
    }
    return ULC_OK;
}

static ulc_status sm_infer(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->n_in > 0 ? k->in[0] : NULL;
    if (!x) return ulc_k_fail(k, ULC_ERR_INVALID, "input 0 is missing");
    if (!ulc_k_is_float(x->dtype))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "input 0 of dtype %s is not supported (float only)",
                          ulc_dtype_name(x->dtype));
    int64_t O, A, I;
    ulc_status st = ulc_sh_softmax_layout(k, x, &O, &A, &I);
    if (st != ULC_OK) return st;
    ulc_k_set(k->out[0], x->dtype, x->rank, x->dims);
    return ULC_OK;
}

/* Scale and B must broadcast unidirectionally to the normalised dims D = x->dims[axis:]. */
static ulc_status ln_check_param(ulc_kctx *k, int slot, const char *what, const ulc_rt_tensor *x,
                                 int axis) {
    const ulc_rt_tensor *p = k->in[slot];
    char s1[96], s2[96];
    if (p->dtype != x->dtype)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is %s, input 0 (X) is %s", slot, what,
                          ulc_dtype_name(p->dtype), ulc_dtype_name(x->dtype));
    int nr = x->rank - axis, ok = p->rank <= nr;
    for (int d = 0; ok && d < p->rank; d++) {
        int64_t pd = p->dims[d], xd = x->dims[x->rank - p->rank + d];
        ok = pd == xd || pd == 1;
    }
    if (!ok)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "input %d (%s) %s does not broadcast to the normalised dims of X %s (axis %d)",
                          slot, what, ulc_rt_shape_str(p, s1, sizeof s1),
                          ulc_rt_shape_str(x, s2, sizeof s2), axis);
    return ULC_OK;
}

static ulc_status ln_stash_dtype(ulc_kctx *k, int *dt) {
    int64_t s = ulc_k_attr_int(k, "stash_type", ULC_DT_F32);
    if (s != ULC_DT_F32 && s != ULC_DT_F64 && s != ULC_DT_F16 && s != ULC_DT_BF16)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "stash_type %lld is not supported", (long long)s);
    *dt = ulc_k_compute_dtype((int)s);
    return ULC_OK;
}

static ulc_status ln_infer(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->n_in > 0 ? k->in[0] : NULL;
    if (!x || k->n_in < 2 || !k->in[1])
        return ulc_k_fail(k, ULC_ERR_INVALID, "inputs 0 (X) and 1 (Scale) are required");
    if (!ulc_k_is_float(x->dtype))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "input 0 (X) of dtype %s is not supported",
                          ulc_dtype_name(x->dtype));
    if (x->rank == 0) return ulc_k_fail(k, ULC_ERR_INVALID, "input 0 (X) must have rank >= 1");
    int axis = 0, stash = ULC_DT_F32;
    ulc_status st = ulc_k_axis(k, ulc_k_attr_int(k, "axis", -1), x->rank, &axis);
    if (st == ULC_OK) st = ln_check_param(k, 1, "Scale", x, axis);
    if (st == ULC_OK && k->n_in > 2 && k->in[2]) st = ln_check_param(k, 2, "B", x, axis);
    if (st == ULC_OK) st = ln_stash_dtype(k, &stash);
    if (st != ULC_OK) return st;
    ulc_k_set(k->out[0], x->dtype, x->rank, x->dims);
    int64_t dims[ULC_RT_MAX_RANK];
    for (int d = 0; d < x->rank; d++) dims[d] = d < axis ? x->dims[d] : 1;
    for (int i = 1; i < 3 && i < k->n_out; i++)
        if (k->out[i]) ulc_k_set(k->out[i], stash, x->rank, dims);
    return ULC_OK;
}

void ulc_shape_register_reduce(ulc_shape_rule *t) {
    static const ulc_op reductions[] = {
        ULC_OP_ReduceSum, ULC_OP_ReduceMean, ULC_OP_ReduceMax, ULC_OP_ReduceMin,
        ULC_OP_ReduceProd, ULC_OP_ReduceL1, ULC_OP_ReduceL2, ULC_OP_ReduceSumSquare,
        ULC_OP_ReduceLogSum, ULC_OP_ReduceLogSumExp,
    };
    for (size_t i = 0; i < sizeof reductions / sizeof reductions[0]; i++)
        t[reductions[i]].infer = red_infer;
    t[ULC_OP_ArgMax].infer = arg_infer;
    t[ULC_OP_ArgMin].infer = arg_infer;
    t[ULC_OP_Softmax].infer = sm_infer;
    t[ULC_OP_LogSoftmax].infer = sm_infer;
    t[ULC_OP_LayerNormalization].infer = ln_infer;
}
