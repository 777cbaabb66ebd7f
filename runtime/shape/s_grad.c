/*
 * s_grad.c — shape rules of ulc's own gradient ops (domain "ulc", ir/ops_ulc.def, which states
 * each op's inputs and attributes): ReluGrad, GeluGrad, SoftmaxGrad/LogSoftmaxGrad,
 * LayerNormGrad, GatherGrad, MaxPoolGrad/AveragePoolGrad, ConvGradData/ConvGradWeight. Every
 * one computes in float32 and gives each gradient its forward input's shape (the x_shape /
 * data_shape inputs of the ops that do not read x). The CPU kernels: runtime/cpu/k_grad*.c.
 */
#include <stdint.h>
#include <string.h>

#include "runtime/shape/rules.h"

ulc_status ulc_grad_f32(ulc_kctx *k, int slot, const char *name) {
    const ulc_rt_tensor *t = slot < k->n_in ? k->in[slot] : NULL;
    if (!t) return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is required", slot, name);
    if (t->dtype != ULC_DT_F32)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "input %d (%s) has dtype %s; ulc's gradient kernels compute float32 only",
                          slot, name, ulc_dtype_name(t->dtype));
    return ULC_OK;
}

/* Two float32 inputs of one shape (dy and y or x); dx gets that shape. */
static ulc_status grad_pair_infer(ulc_kctx *k, const char *second) {
    ULC_TRY(ulc_grad_f32(k, 0, "dy"));
    ULC_TRY(ulc_grad_f32(k, 1, second));
    char s1[96], s2[96];
    if (!ulc_rt_same_shape(k->in[0], k->in[1]))
        return ulc_k_fail(k, ULC_ERR_INVALID, "dy %s and %s %s must have the same shape",
                          ulc_rt_shape_str(k->in[0], s1, sizeof s1), second,
                          ulc_rt_shape_str(k->in[1], s2, sizeof s2));
    ulc_k_set(k->out[0], ULC_DT_F32, k->in[0]->rank, k->in[0]->dims);
    return ULC_OK;
}

/* An int64 shape input (x_shape, data_shape) whose data the planner knows: rank-1, values >= 0,
 * at least min_rank of them. */
static ulc_status grad_shape_input(ulc_kctx *k, int slot, const char *name, int min_rank,
                                   int *rank, int64_t *dims) {
    const ulc_rt_tensor *t = slot < k->n_in ? k->in[slot] : NULL;
    char s1[96];
    if (!t) return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is required", slot, name);
    if (!ulc_k_is_int(t->dtype) || t->rank != 1)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is %s; expected a 1-D int64 shape",
                          slot, name, ulc_rt_shape_str(t, s1, sizeof s1));
    int64_t r = t->dims[0];
    if (r < min_rank || r > ULC_RT_MAX_RANK)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) has %lld values; expected %d to %d",
                          slot, name, (long long)r, min_rank, ULC_RT_MAX_RANK);
    for (int64_t i = 0; i < r; i++) {
        dims[i] = ulc_k_int_at(t, (uint64_t)i);
        if (dims[i] < 0)
            return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s)[%lld] = %lld is negative", slot,
                              name, (long long)i, (long long)dims[i]);
    }
    if (!ulc_k_dims_ok((int)r, dims)) /* the walk's invariant, for the shape it stands for */
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) %s has more than 2^48 elements",
                          slot, name, ulc_k_dims_str((int)r, dims, s1, sizeof s1));
    *rank = (int)r;
    return ULC_OK;
}

static ulc_status relu_grad_infer(ulc_kctx *k) { return grad_pair_infer(k, "y"); }

ulc_status ulc_sh_gelu_grad_mode(ulc_kctx *k, int *tanh_form) {
    const char *ap = ulc_k_attr_str(k, "approximate", "none");
    if (strcmp(ap, "none") != 0 && strcmp(ap, "tanh") != 0)
        return ulc_k_fail(k, ULC_ERR_INVALID, "approximate = '%s'; expected 'none' or 'tanh'", ap);
    *tanh_form = strcmp(ap, "tanh") == 0;
    return ULC_OK;
}

static ulc_status gelu_grad_infer(ulc_kctx *k) {
    int t;
    ULC_TRY(ulc_sh_gelu_grad_mode(k, &t));
    return grad_pair_infer(k, "x");
}

/* The [O, A, I] view that the node normalises over A (axis, default -1). */
ulc_status ulc_sh_softmax_grad_layout(ulc_kctx *k, int64_t *O, int64_t *A, int64_t *I) {
    const ulc_rt_tensor *y = k->in[1];
    *O = *A = *I = 1;
    if (y->rank == 0) return ULC_OK;
    int axis;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", -1), y->rank, &axis));
    for (int d = 0; d < y->rank; d++) {
        if (d < axis) *O *= y->dims[d];
        else if (d == axis) *A *= y->dims[d];
        else *I *= y->dims[d];
    }
    return ULC_OK;
}

static ulc_status smg_infer(ulc_kctx *k) {
    ULC_TRY(grad_pair_infer(k, "y"));
    int64_t O, A, I;
    return ulc_sh_softmax_grad_layout(k, &O, &A, &I);
}

/* Rows R and row length N of X for the node's axis. */
ulc_status ulc_sh_layernorm_grad_geom(ulc_kctx *k, int *axis, int64_t *R, int64_t *N) {
    const ulc_rt_tensor *x = k->in[1];
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", -1), x->rank, axis));
    *R = *N = 1;
    for (int d = 0; d < x->rank; d++) {
        if (d < *axis) *R *= x->dims[d];
        else *N *= x->dims[d];
    }
    return ULC_OK;
}

static ulc_status lng_infer(ulc_kctx *k) {
    ULC_TRY(ulc_grad_f32(k, 0, "dy"));
    ULC_TRY(ulc_grad_f32(k, 1, "x"));
    ULC_TRY(ulc_grad_f32(k, 2, "scale"));
    const ulc_rt_tensor *dy = k->in[0], *x = k->in[1], *g = k->in[2];
    char s1[96], s2[96];
    if (!ulc_rt_same_shape(dy, x))
        return ulc_k_fail(k, ULC_ERR_INVALID, "dy %s and x %s must have the same shape",
                          ulc_rt_shape_str(dy, s1, sizeof s1), ulc_rt_shape_str(x, s2, sizeof s2));
    if (x->rank == 0) return ulc_k_fail(k, ULC_ERR_INVALID, "x must have rank >= 1");
    int axis;
    int64_t R, N;
    ULC_TRY(ulc_sh_layernorm_grad_geom(k, &axis, &R, &N));
    /* scale broadcasts unidirectionally to the normalised dims, as LayerNormalization's */
    int ok = g->rank <= x->rank - axis;
    for (int d = 0; ok && d < g->rank; d++) {
        int64_t gd = g->dims[d], xd = x->dims[x->rank - g->rank + d];
        ok = gd == xd || gd == 1;
    }
    if (!ok)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "scale %s does not broadcast to the normalised dims of x %s (axis %d)",
                          ulc_rt_shape_str(g, s1, sizeof s1), ulc_rt_shape_str(x, s2, sizeof s2),
                          axis);
    ulc_k_set(k->out[0], ULC_DT_F32, x->rank, x->dims);
    for (int i = 1; i < 3 && i < k->n_out; i++)
        if (k->out[i]) ulc_k_set(k->out[i], ULC_DT_F32, g->rank, g->dims);
    return ULC_OK;
}

ulc_status ulc_sh_gather_grad_geom(ulc_kctx *k, ulc_sh_gather_grad *g) {
    ULC_TRY(ulc_grad_f32(k, 0, "dy"));
    const ulc_rt_tensor *dy = k->in[0], *ind = k->n_in > 1 ? k->in[1] : NULL;
    char s1[96], s2[96], s3[96];
    if (!ind) return ulc_k_fail(k, ULC_ERR_INVALID, "input 1 (indices) is required");
    if (ind->dtype != ULC_DT_I64 && ind->dtype != ULC_DT_I32)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "input 1 (indices) has dtype %s; expected int32 or int64",
                          ulc_dtype_name(ind->dtype));
    ULC_TRY(grad_shape_input(k, 2, "data_shape", 1, &g->rank, g->dims));
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), g->rank, &g->axis));
    int er = g->rank - 1 + ind->rank;
    int64_t want[2 * ULC_RT_MAX_RANK];
    int n = 0;
    for (int d = 0; d < g->axis; d++) want[n++] = g->dims[d];
    for (int d = 0; d < ind->rank; d++) want[n++] = ind->dims[d];
    for (int d = g->axis + 1; d < g->rank; d++) want[n++] = g->dims[d];
    int ok = dy->rank == er;
    for (int d = 0; ok && d < er; d++) ok = dy->dims[d] == want[d];
    if (!ok) {
        ulc_rt_tensor wt = {.dtype = ULC_DT_F32, .rank = er <= ULC_RT_MAX_RANK ? er : 0};
        memcpy(wt.dims, want, sizeof wt.dims);
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "dy is %s; Gather on axis %d of data_shape (%d dims) with indices %s "
                          "gives %s (data_shape[:axis] + indices' shape + data_shape[axis+1:])",
                          ulc_rt_shape_str(dy, s1, sizeof s1), g->axis, g->rank,
                          ulc_rt_shape_str(ind, s2, sizeof s2),
                          er <= ULC_RT_MAX_RANK ? ulc_rt_shape_str(&wt, s3, sizeof s3) : "a rank above 8");
    }
    g->O = g->I = 1;
    for (int d = 0; d < g->rank; d++) {
        if (d < g->axis) g->O *= g->dims[d];
        else if (d > g->axis) g->I *= g->dims[d];
    }
    g->A = g->dims[g->axis];
    g->P = (int64_t)ulc_rt_numel(ind);
    return ULC_OK;
}

static ulc_status gg_infer(ulc_kctx *k) {
    ulc_sh_gather_grad g;
    ULC_TRY(ulc_sh_gather_grad_geom(k, &g));
    ulc_k_set(k->out[0], ULC_DT_F32, g.rank, g.dims);
    return ULC_OK;
}

ulc_status ulc_sh_pool_grad_geom(ulc_kctx *k, int avg, ulc_sh_pool_grad *g) {
    memset(g, 0, sizeof *g);
    ULC_TRY(ulc_grad_f32(k, 0, "dy"));
    const ulc_rt_tensor *dy = k->in[0];
    char s1[96];
    if (avg) {
        ULC_TRY(grad_shape_input(k, 1, "x_shape", 3, &g->rank, g->xdims));
    } else {
        ULC_TRY(ulc_grad_f32(k, 1, "x"));
        const ulc_rt_tensor *x = k->in[1];
        if (x->rank < 3)
            return ulc_k_fail(k, ULC_ERR_INVALID, "x is %s; pooling needs [N, C, D1, ...]",
                              ulc_rt_shape_str(x, s1, sizeof s1));
        g->rank = x->rank;
        memcpy(g->xdims, x->dims, sizeof g->xdims);
    }
    int nsp = g->rank - 2;
    const int64_t *ks;
    int nk = ulc_k_attr_ints(k, "kernel_shape", &ks);
    if (nk < 0) return ulc_k_fail(k, ULC_ERR_INVALID, "attribute kernel_shape is required");
    if (nk != nsp)
        return ulc_k_fail(k, ULC_ERR_INVALID, "kernel_shape has %d values; x has %d spatial dims",
                          nk, nsp);
    if (avg && k->opset < 19 && ulc_k_attr(k, "dilations"))
        return ulc_k_fail(k, ULC_ERR_INVALID, "AveragePool has no dilations before opset 19");
    int ceil_mode = (int)ulc_k_attr_int(k, "ceil_mode", 0);
    ULC_TRY(ulc_nn_window_init(k, nsp, g->xdims + 2, ks, ceil_mode, &g->w));
    g->planes = g->xdims[0] * g->xdims[1];
    g->isz = (int64_t)dims_numel(nsp, g->w.in); /* x's dims: checked like every shape */
    if (!ulc_k_numel(nsp, g->w.out, &g->osz) || !ulc_k_numel(nsp, g->w.k, &g->kprod))
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "the pooling's output or kernel_shape has more than 2^48 elements");
    g->include_pad = avg && ulc_k_attr_int(k, "count_include_pad", 0) != 0;
    int ok = dy->rank == g->rank && dy->dims[0] == g->xdims[0] && dy->dims[1] == g->xdims[1];
    for (int i = 0; ok && i < nsp; i++) ok = dy->dims[2 + i] == g->w.out[i];
    if (!ok) {
        int64_t want[ULC_RT_MAX_RANK];
        want[0] = g->xdims[0];
        want[1] = g->xdims[1];
        for (int i = 0; i < nsp; i++) want[2 + i] = g->w.out[i];
        ulc_rt_tensor wt = {.dtype = ULC_DT_F32, .rank = g->rank};
        memcpy(wt.dims, want, sizeof want);
        char s2[96];
        return ulc_k_fail(k, ULC_ERR_INVALID, "dy is %s; the pooling's output is %s",
                          ulc_rt_shape_str(dy, s1, sizeof s1), ulc_rt_shape_str(&wt, s2, sizeof s2));
    }
    return ULC_OK;
}

static ulc_status pg_infer_common(ulc_kctx *k, int avg) {
    ulc_sh_pool_grad g;
    ULC_TRY(ulc_sh_pool_grad_geom(k, avg, &g));
    ulc_k_set(k->out[0], ULC_DT_F32, g.rank, g.xdims);
    return ULC_OK;
}

static ulc_status maxpool_grad_infer(ulc_kctx *k) { return pg_infer_common(k, 0); }

static ulc_status avgpool_grad_infer(ulc_kctx *k) { return pg_infer_common(k, 1); }

ulc_status ulc_sh_conv_grad_geom(ulc_kctx *k, int weight, ulc_sh_conv_grad *g) {
    memset(g, 0, sizeof *g);
    g->weight = weight;
    ULC_TRY(ulc_grad_f32(k, 0, "dy"));
    const ulc_rt_tensor *dy = k->in[0];
    char s1[96], s2[96];
    int rank;
    int64_t kernel[ULC_NN_MAX_SP];
    const int64_t *ks;
    int nk = ulc_k_attr_ints(k, "kernel_shape", &ks);
    if (!weight) {
        ULC_TRY(ulc_grad_f32(k, 1, "W"));
        const ulc_rt_tensor *t = k->n_in > 2 ? k->in[2] : NULL;
        if (!t) return ulc_k_fail(k, ULC_ERR_INVALID, "input 2 (x_shape) is required");
        if (!ulc_k_is_int(t->dtype) || t->rank != 1 || t->dims[0] < 3 ||
            t->dims[0] > ULC_RT_MAX_RANK)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "input 2 (x_shape) is %s; expected a 1-D int64 shape of 3 to %d values",
                              ulc_rt_shape_str(t, s1, sizeof s1), ULC_RT_MAX_RANK);
        rank = (int)t->dims[0];
        for (int i = 0; i < rank; i++) {
            g->xdims[i] = ulc_k_int_at(t, (uint64_t)i);
            if (g->xdims[i] < 0)
                return ulc_k_fail(k, ULC_ERR_INVALID, "x_shape[%d] = %lld is negative", i,
                                  (long long)g->xdims[i]);
        }
        if (!ulc_k_dims_ok(rank, g->xdims))
            return ulc_k_fail(k, ULC_ERR_INVALID, "input 2 (x_shape) %s has more than 2^48 elements",
                              ulc_k_dims_str(rank, g->xdims, s1, sizeof s1));
        const ulc_rt_tensor *w = k->in[1];
        if (w->rank != rank)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "W %s must have x_shape's rank %d ([M, C/group, k1..])",
                              ulc_rt_shape_str(w, s1, sizeof s1), rank);
        g->m = w->dims[0];
        if (nk >= 0 && nk != rank - 2)
            return ulc_k_fail(k, ULC_ERR_INVALID, "kernel_shape has %d values; x has %d spatial dims",
                              nk, rank - 2);
        for (int i = 0; i < rank - 2; i++) {
            kernel[i] = w->dims[2 + i];
            if (nk >= 0 && ks[i] != kernel[i])
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "kernel_shape[%d] = %lld but W's spatial dim %d is %lld", i,
                                  (long long)ks[i], i, (long long)kernel[i]);
        }
    } else {
        ULC_TRY(ulc_grad_f32(k, 1, "x"));
        const ulc_rt_tensor *x = k->in[1];
        rank = x->rank;
        if (rank < 3)
            return ulc_k_fail(k, ULC_ERR_INVALID, "x is %s; Conv needs [N, C, D1, ...]",
                              ulc_rt_shape_str(x, s1, sizeof s1));
        memcpy(g->xdims, x->dims, sizeof g->xdims);
        if (nk < 0) return ulc_k_fail(k, ULC_ERR_INVALID, "attribute kernel_shape is required");
        if (nk != rank - 2)
            return ulc_k_fail(k, ULC_ERR_INVALID, "kernel_shape has %d values; x has %d spatial dims",
                              nk, rank - 2);
        for (int i = 0; i < rank - 2; i++) kernel[i] = ks[i];
        g->m = dy->rank >= 2 ? dy->dims[1] : 0;
        g->bias = k->n_out > 1 && k->out[1];
    }
    g->nsp = rank - 2;
    g->n = g->xdims[0];
    g->c = g->xdims[1];
    g->g = ulc_k_attr_int(k, "group", 1);
    if (g->g < 1 || g->c % g->g != 0 || g->m % g->g != 0)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "group = %lld must divide x's %lld channels and dy's %lld channels",
                          (long long)g->g, (long long)g->c, (long long)g->m);
    int64_t wc = 0;
    if (!weight && (ulc_i64_mul(k->in[1]->dims[1], g->g, &wc) || wc != g->c))
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "W %s does not fit x's %lld channels with group %lld (need W[1]·group = C)",
                          ulc_rt_shape_str(k->in[1], s1, sizeof s1), (long long)g->c,
                          (long long)g->g);
    ULC_TRY(ulc_nn_window_init(k, g->nsp, g->xdims + 2, kernel, 0, &g->w));
    int ok = dy->rank == rank && dy->dims[0] == g->n && dy->dims[1] == g->m;
    for (int i = 0; ok && i < g->nsp; i++) ok = dy->dims[2 + i] == g->w.out[i];
    if (!ok) {
        ulc_rt_tensor want = {.dtype = ULC_DT_F32, .rank = rank};
        want.dims[0] = g->n;
        want.dims[1] = g->m;
        for (int i = 0; i < g->nsp; i++) want.dims[2 + i] = g->w.out[i];
        return ulc_k_fail(k, ULC_ERR_INVALID, "dy is %s; the convolution's output is %s",
                          ulc_rt_shape_str(dy, s1, sizeof s1),
                          ulc_rt_shape_str(&want, s2, sizeof s2));
    }
    return ULC_OK;
}

static ulc_status cg_infer_common(ulc_kctx *k, int weight) {
    ulc_sh_conv_grad g;
    ULC_TRY(ulc_sh_conv_grad_geom(k, weight, &g));
    if (!weight) {
        ulc_k_set(k->out[0], ULC_DT_F32, g.nsp + 2, g.xdims);
        return ULC_OK;
    }
    int64_t wd[ULC_RT_MAX_RANK];
    wd[0] = g.m;
    wd[1] = g.c / g.g;
    for (int i = 0; i < g.nsp; i++) wd[2 + i] = g.w.k[i];
    ulc_k_set(k->out[0], ULC_DT_F32, g.nsp + 2, wd);
    if (g.bias) ulc_k_set(k->out[1], ULC_DT_F32, 1, &g.m);
    return ULC_OK;
}

static ulc_status cgd_infer(ulc_kctx *k) { return cg_infer_common(k, 0); }

static ulc_status cgw_infer(ulc_kctx *k) { return cg_infer_common(k, 1); }

void ulc_shape_register_grad(ulc_shape_rule *t) {
    t[ULC_OP_ReluGrad].infer = relu_grad_infer;
    t[ULC_OP_GeluGrad].infer = gelu_grad_infer;
    t[ULC_OP_SoftmaxGrad].infer = smg_infer;
    t[ULC_OP_LogSoftmaxGrad].infer = smg_infer;
    t[ULC_OP_LayerNormGrad].infer = lng_infer;
    t[ULC_OP_GatherGrad].infer = gg_infer;
    t[ULC_OP_MaxPoolGrad].infer = maxpool_grad_infer;
    t[ULC_OP_AveragePoolGrad].infer = avgpool_grad_infer;
    t[ULC_OP_ConvGradData].infer = cgd_infer;
    t[ULC_OP_ConvGradWeight].infer = cgw_infer;
}
