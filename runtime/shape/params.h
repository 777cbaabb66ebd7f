/*
 * params.h — what an op's attributes and value inputs mean, decoded in one place for its shape
 * rule (runtime/shape/) and for every backend's kernel of the op (which must agree with the
 * rule on it): Slice's first/step/count per axis, Pad's pads and mode, Split's sizes, … Each
 * decoder reports attribute errors naming the node (the rule calls it first, so a kernel's call
 * at run time does not fail).
 */
#ifndef ULC_RUNTIME_SHAPE_PARAMS_H
#define ULC_RUNTIME_SHAPE_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/kutil.h"

/* ---- small helpers ------------------------------------------------------------------------- */

static inline const ulc_rt_tensor *in_opt(const ulc_kctx *k, int i) {
    return i < k->n_in ? k->in[i] : NULL;
}

static inline ulc_rt_tensor *out_opt(const ulc_kctx *k, int i) {
    return i < k->n_out ? k->out[i] : NULL;
}

static inline uint64_t dims_numel(int rank, const int64_t *dims) {
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) n *= (uint64_t)dims[i];
    return n;
}

static inline const char *shape_of(const ulc_rt_tensor *t, char *buf, size_t size) {
    return ulc_rt_shape_str(t, buf, size);
}

/* ---- shape and data-movement ops (runtime/shape/s_movement.c) ------------------------------- */

#define CAT_MAX 1024 /* Concat inputs / Split outputs (pointers and sizes live on the stack) */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP }; /* Pad's modes */

/* Shape's start and end (opset 15 attributes, clamped to [0, rank]). */
void ulc_sh_shape_range(const ulc_kctx *k, int rank, int64_t *start, int64_t *end);

/* Transpose's perm (default reversed), checked to be a permutation of [0, rank). */
ulc_status ulc_sh_transpose_perm(ulc_kctx *k, int rank, int *perm);

/* Split sizes along axis for the n_out outputs. */
ulc_status ulc_sh_split_sizes(ulc_kctx *k, int *axis_out, int64_t *sizes);

/* Per axis of the input: first index, step and count of the slice. */
ulc_status ulc_sh_slice_params(ulc_kctx *k, int64_t *first, int64_t *step, int64_t *count);

/* Begin/end pads per input axis, and the mode. */
ulc_status ulc_sh_pad_params(ulc_kctx *k, int64_t *pb, int64_t *pe, int *mode);

/* Pad's source index along an axis of n elements for position i (the output's position minus
 * the begin pad), or -1 for the constant: edge repeats the edge, wrap is periodic, reflect
 * mirrors without repeating the edge. A device kernel calls it too (nvcc: host and device). */
#ifdef __CUDACC__
#define ULC_SH_HD __host__ __device__
#else
#define ULC_SH_HD
#endif
static inline ULC_SH_HD int64_t ulc_sh_pad_src(int64_t i, int64_t n, int mode) {
    if (i >= 0 && i < n) return i;
    switch (mode) {
    case PAD_EDGE: return i < 0 ? 0 : n - 1;
    case PAD_WRAP: return ((i % n) + n) % n;
    case PAD_REFLECT: {
        if (n == 1) return 0;
        int64_t per = 2 * (n - 1), m = ((i % per) + per) % per;
        return m < n ? m : per - m;
    }
    default: return -1;
    }
}

/* Gather's and GatherElements' indices (int32 or int64, their values at `vals`: the host's
 * bytes) checked against [-dim, dim): the first one out of range is an error naming its flat
 * position and the axis. */
ulc_status ulc_sh_check_indices(ulc_kctx *k, const ulc_rt_tensor *idx, const void *vals,
                                int64_t dim, int axis);

/* ---- reductions and normalisations (runtime/shape/s_reduce.c) ------------------------------ */

/* The reduced axes of node k over a rank-`rank` input as a bit mask (bit d = axis d reduced);
 * *noop = 1 when the op is the identity (input-form axes empty and noop_with_empty_axes=1). */
ulc_status ulc_sh_reduce_axes(ulc_kctx *k, int rank, unsigned *mask, int *noop);

/* x's axes grouped for a reduction over the axes in mask: adjacent axes of the same role (kept /
 * reduced) merged and size-1 axes dropped, so n groups (the result) of dims[i] elements with dense
 * strides str[i], red[i] = 1 for a reduced group; *count = the reduced elements per output. */
int ulc_sh_reduce_groups(const ulc_rt_tensor *x, unsigned mask, int64_t *dims, int64_t *str,
                         int *red, int64_t *count);

/* The [O, A, I] view of x that the node normalises over A. */
ulc_status ulc_sh_softmax_layout(ulc_kctx *k, const ulc_rt_tensor *x, int64_t *O, int64_t *A,
                                 int64_t *I);

/* ---- convolutions, products, pooling (runtime/shape/s_nn.c) -------------------------------- */

#define ULC_NN_MAX_SP (ULC_RT_MAX_RANK - 2)

/* Geometry of a window sliding over the spatial dims of an [N, C, D1..Dn] tensor. Pads are
 * resolved (auto_pad applied), so out[i] = (in[i] + pb[i] + pe[i] - ext[i]) / s[i] + 1 with the
 * rounding the op asked for, where ext[i] = (k[i] - 1) * d[i] + 1 is the dilated window. */
typedef struct ulc_nn_window {
    int nsp; /* number of spatial dims */
    int64_t in[ULC_NN_MAX_SP]; /* input spatial dims */
    int64_t k[ULC_NN_MAX_SP]; /* kernel */
    int64_t s[ULC_NN_MAX_SP]; /* strides */
    int64_t d[ULC_NN_MAX_SP]; /* dilations */
    int64_t pb[ULC_NN_MAX_SP]; /* padding before (top/left) */
    int64_t pe[ULC_NN_MAX_SP]; /* padding after */
    int64_t out[ULC_NN_MAX_SP];
} ulc_nn_window;

/* Reads strides, dilations, pads and auto_pad (NOTSET, SAME_UPPER, SAME_LOWER, VALID) from the
 * node, with kernel already known (kernel_shape or W's dims), and computes the output dims.
 * ceil_mode (pooling) rounds the output up, dropping a last window that would start in the
 * padding after the input (PyTorch's rule, which ONNX adopted). Errors name the attribute. */
ulc_status ulc_nn_window_init(ulc_kctx *k, int nsp, const int64_t *in, const int64_t *kernel,
                              int ceil_mode, ulc_nn_window *w);

/* Reads an ints attribute of exactly n values (absent → every value is def). */
ulc_status ulc_nn_attr_spatial(ulc_kctx *k, const char *name, int n, int64_t def, int64_t min,
                               int64_t *out);

/* Conv and ConvTranspose. */
typedef struct ulc_sh_conv {
    int transpose; /* ConvTranspose */
    int dtype;
    int nsp;
    int64_t n, c, m, g; /* batch, input channels, output channels, groups */
    ulc_nn_window w; /* in, k, s, d, pb, pe, out */
    int has_bias;
} ulc_sh_conv;

/* MatMul (numpy semantics: batch dims broadcast, 1-D operands promoted). */
typedef struct ulc_sh_matmul {
    int dtype;
    int64_t m, n, k;
    int64_t batch; /* product of the broadcast batch dims */
    int nb; /* number of batch dims */
    int64_t bdims[ULC_RT_MAX_RANK]; /* broadcast batch dims */
    int64_t a_bs[ULC_RT_MAX_RANK],
        b_bs[ULC_RT_MAX_RANK]; /* batch strides in elements (0 = bcast) */
    int fold; /* B has no batch: one [batch·M, K] x [K, N] product */
} ulc_sh_matmul;

/* Gemm: Y = alpha·op(A)·op(B) + beta·C. */
typedef struct ulc_sh_gemm {
    int dtype;
    int ta, tb;
    int64_t m, n, k;
    float alpha, beta;
    int has_c;
    int64_t c_rs, c_cs; /* C's element strides when broadcast to [M, N] (0 = broadcast) */
} ulc_sh_gemm;

enum { POOL_MAX, POOL_AVG };

/* MaxPool and AveragePool. */
typedef struct ulc_sh_pool {
    int kind;
    int dtype;
    int nsp;
    int64_t planes; /* N·C */
    int64_t isz, osz; /* spatial sizes of one plane */
    ulc_nn_window w;
    int include_pad; /* AveragePool count_include_pad */
    int col_major; /* MaxPool storage_order = 1 */
    int indices; /* MaxPool's second output requested */
} ulc_sh_pool;

/* BatchNormalization's kernels (after the rule's checks): X as [n, p, inner] (p = C, or
 * C·spatial in opset < 9's spatial = 0: the scale's numel), epsilon, momentum, and the training
 * form (training_mode from opset 14, or running_mean / running_var requested). */
typedef struct ulc_sh_bn {
    int64_t n, p, inner;
    int training;
    double eps, momentum;
} ulc_sh_bn;
void ulc_sh_bn_params(const ulc_kctx *k, ulc_sh_bn *b);

/* Conv (transpose 0) / ConvTranspose (1): validates X, W and B and computes the geometry. */
ulc_status ulc_sh_conv_geom(ulc_kctx *k, int transpose, ulc_sh_conv *g);

/* Works out the numpy matmul geometry of A x B; fills s when non-NULL, out dims when non-NULL. */
ulc_status ulc_sh_matmul_geom(ulc_kctx *k, ulc_sh_matmul *s, int64_t *odims, int *orank);

/* Gemm: validates A, B, C and the attributes; op(A)·op(B) dims and C's broadcast. */
ulc_status ulc_sh_gemm_geom(ulc_kctx *k, ulc_sh_gemm *s);

/* MaxPool / AveragePool (kind POOL_*): dtype, rank, kernel_shape, window, storage_order. */
ulc_status ulc_sh_pool_geom(ulc_kctx *k, int kind, ulc_sh_pool *s);

/* ---- ulc's gradient ops, domain "ulc" (runtime/shape/s_grad.c) ---------------------------- */

/* GatherGrad. */
typedef struct ulc_sh_gather_grad {
    int axis, rank;
    int64_t dims[ULC_RT_MAX_RANK]; /* data_shape */
    int64_t O, A, I, P; /* ddata [O, A, I], dy [O, P, I], P = numel(indices) */
} ulc_sh_gather_grad;

/* MaxPoolGrad / AveragePoolGrad: the forward's geometry (as ulc_sh_pool_geom): kernel_shape required, strides, dilations,
 * pads, auto_pad and ceil_mode through ulc_nn_window_init on X's dims. */
typedef struct ulc_sh_pool_grad {
    ulc_nn_window w;
    int rank;
    int64_t xdims[ULC_RT_MAX_RANK];
    int64_t planes, isz, osz, kprod;
    int include_pad;
} ulc_sh_pool_grad;

/* ConvGradData and ConvGradWeight. */
typedef struct ulc_sh_conv_grad {
    int weight;                    /* 1: ConvGradWeight, 0: ConvGradData */
    int nsp;
    int64_t n, c, m, g;            /* batch, input channels, output channels, groups */
    int64_t xdims[ULC_RT_MAX_RANK]; /* X's shape [N, C, in...] */
    ulc_nn_window w;
    int bias;                      /* ConvGradWeight: dB requested */
} ulc_sh_conv_grad;

/* The gradient ops' input check: slot present and float32, else an error naming it. */
ulc_status ulc_grad_f32(ulc_kctx *k, int slot, const char *name);

/* GeluGrad's approximate attribute: *tanh_form = 1 for "tanh", 0 for "none". */
ulc_status ulc_sh_gelu_grad_mode(ulc_kctx *k, int *tanh_form);

/* The [O, A, I] view that the node normalises over A (axis, default -1). */
ulc_status ulc_sh_softmax_grad_layout(ulc_kctx *k, int64_t *O, int64_t *A, int64_t *I);

/* Rows R and row length N of X for the node's axis. */
ulc_status ulc_sh_layernorm_grad_geom(ulc_kctx *k, int *axis, int64_t *R, int64_t *N);

/* SoftmaxCrossEntropy and its gradient (ir/ops_ulc.def): R rows of V classes (z's last axis),
 * the label tensor y (int32/int64, the rows' shape; NULL: no hard labels), and the soft targets p when given: one row
 * broadcast over every row (p_rows 1) or one per row (p_rows R). */
typedef struct ulc_sh_sce {
    int64_t R, V;
    const ulc_rt_tensor *z, *y, *p; /* p: NULL without soft targets */
    int64_t p_rows;
} ulc_sh_sce;
/* grad 0: the forward op (z, y, p at 0, 1, 2); 1: the gradient (z, y, lse, dce, dlse, dsce, p). */
ulc_status ulc_sh_sce_geom(ulc_kctx *k, int grad, ulc_sh_sce *g);

/* SquaredDistance and its gradient (ir/ops_ulc.def): a and b of one float32 shape, R rows of P
 * (the last axis); grad 1 also checks dd (the rows' shape). */
ulc_status ulc_sh_sqdist_geom(ulc_kctx *k, int grad, int64_t *R, int64_t *P);

/* GatherGrad: dy, indices and data_shape checked against each other and the axis. */
ulc_status ulc_sh_gather_grad_geom(ulc_kctx *k, ulc_sh_gather_grad *g);

/* MaxPoolGrad (avg 0) / AveragePoolGrad (avg 1). */
ulc_status ulc_sh_pool_grad_geom(ulc_kctx *k, int avg, ulc_sh_pool_grad *g);

/* ConvGradData (weight 0) / ConvGradWeight (weight 1): Conv's geometry from X's shape and W. */
ulc_status ulc_sh_conv_grad_geom(ulc_kctx *k, int weight, ulc_sh_conv_grad *g);

/* Attention and AttentionGrad (ir/ops_ulc.def): the score program (kernel.h's ulc_attn, its mask
 * inputs as indices into k->in) from the ops/imms attributes, its geometry (every operand dense)
 * and the batch entries (the product of the scores' leading dims), Tq and Tk. grad 1: the
 * gradient op (do at input 3, masks after it). */
typedef struct ulc_sh_attn {
    ulc_attn a;
    int64_t batch, tq, tk;
} ulc_sh_attn;
ulc_status ulc_sh_attn_geom(ulc_kctx *k, int grad, ulc_sh_attn *g);
/* The planner's fused attention step (runtime/attn.c): its program, which the planner left at
 * k->state, taken into g (freed, k->state NULL) with the batch entries, Tq and Tk from the
 * scores' dims (left 0 for a rank outside [2, ULC_RT_MAX_RANK]: the kernel refuses it). */
void ulc_sh_attn_take(ulc_kctx *k, ulc_sh_attn *g);

#endif
