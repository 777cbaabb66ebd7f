/*
 * grad_rules.c — backward rules, one function per op family, and the table autodiff looks
 * them up in. Conventions in grad.h. Gradients keep the forward value's shape; sizes that
 * depend on the batch are computed at run time (Shape/Size of a forward value), so the same
 * backward graph runs on a partial last batch.
 */
#include <math.h>
#include <string.h>

#include "train/grad.h"

#define IN(i) (n->inputs[i].value)
#define OUT(i) (n->outputs[i])
/* Evaluate a builder expression; a NULL result means the builder failed (status in ctx). */
#define NN(e)                                                                                  \
    do {                                                                                       \
        if (!(e)) return b->ctx->status ? b->ctx->status : ULC_ERR_NOMEM;                      \
    } while (0)

static ulc_value *mul(ulc_gb *b, ulc_value *x, ulc_value *y) { return x && y ? ulc_gb_op2(b, "Mul", x, y) : NULL; }
static ulc_value *sub(ulc_gb *b, ulc_value *x, ulc_value *y) { return x && y ? ulc_gb_op2(b, "Sub", x, y) : NULL; }
static ulc_value *dv(ulc_gb *b, ulc_value *x, ulc_value *y) { return x && y ? ulc_gb_op2(b, "Div", x, y) : NULL; }
static ulc_value *neg(ulc_gb *b, ulc_value *x) { return x ? ulc_gb_op1(b, "Neg", x) : NULL; }
static ulc_value *cf(ulc_gb *b, float v, const ulc_value *like) { return ulc_grad_const_like(b, v, like); }

/* ---- elementwise, with broadcasting ------------------------------------------------------- */

static ulc_status g_add(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                        ulc_value **dx) {
    for (int i = 0; i < n->n_inputs; i++) /* Add, and Sum with any number of inputs */
        if (want[i]) NN(dx[i] = ulc_grad_sum_to(b, dy[0], OUT(0), IN(i)));
    return ULC_OK;
}

static ulc_status g_sub(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                        ulc_value **dx) {
    if (want[0]) NN(dx[0] = ulc_grad_sum_to(b, dy[0], OUT(0), IN(0)));
    if (want[1]) NN(dx[1] = ulc_grad_sum_to(b, neg(b, dy[0]), OUT(0), IN(1)));
    return ULC_OK;
}

static ulc_status g_mul(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                        ulc_value **dx) {
    if (want[0]) NN(dx[0] = ulc_grad_sum_to(b, mul(b, dy[0], IN(1)), OUT(0), IN(0)));
    if (want[1]) NN(dx[1] = ulc_grad_sum_to(b, mul(b, dy[0], IN(0)), OUT(0), IN(1)));
    return ULC_OK;
}

static ulc_status g_div(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                        ulc_value **dx) {
    if (want[0]) NN(dx[0] = ulc_grad_sum_to(b, dv(b, dy[0], IN(1)), OUT(0), IN(0)));
    /* d(a/b)/db = -y/b */
    if (want[1]) NN(dx[1] = ulc_grad_sum_to(b, neg(b, dv(b, mul(b, dy[0], OUT(0)), IN(1))), OUT(0), IN(1)));
    return ULC_OK;
}

static ulc_status g_pow(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                        ulc_value **dx) {
    if (want[0]) { /* e · a^(e-1) */
        ulc_value *e = IN(1);
        ulc_value *t = mul(b, e, ulc_gb_op2(b, "Pow", IN(0), sub(b, e, cf(b, 1.0f, e))));
        NN(dx[0] = ulc_grad_sum_to(b, mul(b, dy[0], t), OUT(0), IN(0)));
    }
    if (want[1]) /* y · ln a */
        NN(dx[1] = ulc_grad_sum_to(b, mul(b, dy[0], mul(b, OUT(0), ulc_gb_op1(b, "Log", IN(0)))), OUT(0), IN(1)));
    return ULC_OK;
}

static ulc_status g_where(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                          ulc_value **dx) {
    ulc_value *zero = cf(b, 0.0f, OUT(0));
    NN(zero);
    for (int i = 1; i <= 2; i++) {
        if (!want[i]) continue;
        ulc_value *in[3] = {IN(0), i == 1 ? dy[0] : zero, i == 1 ? zero : dy[0]};
        NN(dx[i] = ulc_grad_sum_to(b, ulc_gb_opn(b, NULL, "Where", 3, in, 1, NULL), OUT(0), IN(i)));
    }
    return ULC_OK;
}

static ulc_status g_expand(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                           ulc_value **dx) {
    if (want[0]) NN(dx[0] = ulc_grad_sum_to(b, dy[0], OUT(0), IN(0)));
    return ULC_OK;
}

/* ---- elementwise, unary ------------------------------------------------------------------- */

static ulc_status g_unary(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                          ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    ulc_value *x = IN(0), *y = OUT(0), *g = dy[0], *r = NULL;
    switch (n->op) {
    case ULC_OP_Identity: r = g; break;
    case ULC_OP_Dropout: /* inference: identity (training_mode is refused below) */
        if (n->n_inputs > 2 && IN(2))
            return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "Dropout with a training_mode input");
        r = g;
        break;
    case ULC_OP_Neg: r = neg(b, g); break;
    case ULC_OP_Exp: r = mul(b, g, y); break;
    case ULC_OP_Log: r = dv(b, g, x); break;
    case ULC_OP_Sqrt: r = dv(b, mul(b, g, cf(b, 0.5f, y)), y); break;
    case ULC_OP_Reciprocal: r = neg(b, mul(b, g, mul(b, y, y))); break;
    case ULC_OP_Abs: r = mul(b, g, ulc_gb_op1(b, "Sign", x)); break;
    case ULC_OP_Tanh: r = mul(b, g, sub(b, cf(b, 1.0f, y), mul(b, y, y))); break;
    case ULC_OP_Sigmoid: r = mul(b, g, mul(b, y, sub(b, cf(b, 1.0f, y), y))); break;
    case ULC_OP_Erf: /* 2/√π · e^(−x²) */
        r = mul(b, g, mul(b, cf(b, 1.1283791670955126f, x), ulc_gb_op1(b, "Exp", neg(b, mul(b, x, x)))));
        break;
    case ULC_OP_Relu: {
        ulc_value *in[2] = {g, y};
        r = ulc_gb_opn(b, ULC_DOMAIN, "ReluGrad", 2, in, 1, NULL);
        break;
    }
    case ULC_OP_Gelu: {
        ulc_value *in[2] = {g, x};
        r = ulc_gb_opn(b, ULC_DOMAIN, "GeluGrad", 2, in, 1, NULL);
        if (r) ulc_gb_attr_copy(b, r, n, NULL);
        break;
    }
    case ULC_OP_FastGelu: {
        ulc_value *in[2] = {g, x};
        const ulc_attr *ap = ulc_node_attr(n, "approximate");
        int erf = ap && ap->type == ULC_ATTR_STRING && ap->s.data && strcmp((const char *)ap->s.data, "none") == 0;
        r = ulc_gb_opn(b, ULC_DOMAIN, "GeluGrad", 2, in, 1, NULL);
        if (r) ulc_gb_attr_string(b, r, "approximate", erf ? "none" : "tanh");
        break;
    }
    case ULC_OP_LeakyRelu: { /* where(x > 0, g, alpha·g) */
        ulc_value *c = ulc_gb_op2(b, "Greater", x, cf(b, 0.0f, x));
        ulc_value *in[3] = {c, g, mul(b, g, cf(b, ulc_grad_attr_f(n, "alpha", 0.01f), x))};
        r = c && in[2] ? ulc_gb_opn(b, NULL, "Where", 3, in, 1, NULL) : NULL;
        break;
    }
    case ULC_OP_Cast: case ULC_OP_CastLike:
        r = ulc_grad_cast_like(b, g, x);
        break;
    default: return ulc_grad_fail(b, ULC_ERR_INTERNAL, "no unary rule");
    }
    NN(dx[0] = r);
    return ULC_OK;
}

/* ---- matrix products ---------------------------------------------------------------------- */

static ulc_value *swap_last2(ulc_gb *b, ulc_value *v, int rank) {
    int64_t perm[ULC_RT_MAX_RANK];
    for (int i = 0; i < rank; i++) perm[i] = i;
    perm[rank - 2] = rank - 1;
    perm[rank - 1] = rank - 2;
    return ulc_gb_transpose(b, v, rank, perm);
}

/* Sums v (shaped batch(vb) + [p, q], vb broadcast over rank rv) down to the batch dims of x. */
static ulc_value *sum_batch_to(ulc_gb *b, ulc_value *v, int rv, const int64_t *vd,
                               const ulc_value *x) {
    int rx = ulc_grad_rank(b, x);
    const int64_t *xd = ulc_grad_dims(b, x);
    int64_t axes[ULC_RT_MAX_RANK];
    int na = 0, lead = rv - rx;
    for (int i = 0; i < rv - 2; i++)
        if (i < lead || (xd[i - lead] == 1 && vd[i] != 1)) axes[na++] = i;
    if (!na) return v;
    ulc_value *s = ulc_gb_reduce_sum(b, v, na, axes, 1);
    return s ? ulc_gb_reshape_like(b, s, (ulc_value *)x) : NULL;
}

static ulc_status g_matmul(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                           ulc_value **dx) {
    ulc_value *A = IN(0), *B = IN(1);
    int ra = ulc_grad_rank(b, A), rb = ulc_grad_rank(b, B), ry = ulc_grad_rank(b, OUT(0));
    if (ra < 2 || rb < 2)
        return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED,
                       "MatMul with a 1-D operand (ranks %d and %d) has no backward rule", ra, rb);
    const int64_t *yd = ulc_grad_dims(b, OUT(0)), *ad = ulc_grad_dims(b, A), *bd = ulc_grad_dims(b, B);
    if (!yd || !ad || !bd) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "MatMul shapes are unknown");
    int64_t vd[ULC_RT_MAX_RANK];
    memcpy(vd, yd, (size_t)ry * sizeof *vd);
    if (want[0]) { /* dA = dy · Bᵀ, batch dims summed to A's */
        ulc_value *t = ulc_gb_op2(b, "MatMul", dy[0], swap_last2(b, B, rb));
        NN(dx[0] = t ? sum_batch_to(b, t, ry, vd, A) : NULL);
    }
    if (want[1]) {
        if (rb == 2 && ra > 2) { /* a shared weight: one GEMM over every row */
            int64_t k = ad[ra - 1], m = yd[ry - 1];
            int64_t sa[2] = {-1, k}, sy[2] = {-1, m};
            ulc_value *a2 = ulc_gb_op2(b, "Reshape", A, ulc_gb_vec_i64(b, 2, sa));
            ulc_value *y2 = ulc_gb_op2(b, "Reshape", dy[0], ulc_gb_vec_i64(b, 2, sy));
            ulc_value *t = a2 && y2 ? ulc_gb_gemm(b, a2, y2) : NULL;
            if (t) ulc_gb_attr_int(b, t, "transA", 1);
            NN(dx[1] = t);
        } else { /* dB = Aᵀ · dy */
            ulc_value *t = ulc_gb_op2(b, "MatMul", swap_last2(b, A, ra), dy[0]);
            NN(dx[1] = t ? sum_batch_to(b, t, ry, vd, B) : NULL);
        }
    }
    return ULC_OK;
}

static ulc_status g_gemm(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                         ulc_value **dx) {
    int64_t ta = ulc_grad_attr_i(n, "transA", 0), tb = ulc_grad_attr_i(n, "transB", 0);
    float alpha = ulc_grad_attr_f(n, "alpha", 1.0f), beta = ulc_grad_attr_f(n, "beta", 1.0f);
    ulc_value *A = IN(0), *B = IN(1), *g = dy[0];
    if (want[0]) { /* op(A) = g·op(B)ᵀ·alpha */
        ulc_value *t = ta ? ulc_gb_gemm(b, B, g) : ulc_gb_gemm(b, g, B);
        NN(t);
        ulc_gb_attr_int(b, t, "transA", ta ? tb : 0);
        ulc_gb_attr_int(b, t, "transB", ta ? 1 : !tb);
        ulc_gb_attr_float(b, t, "alpha", alpha);
        dx[0] = t;
    }
    if (want[1]) { /* op(B) = op(A)ᵀ·g·alpha */
        ulc_value *t = tb ? ulc_gb_gemm(b, g, A) : ulc_gb_gemm(b, A, g);
        NN(t);
        ulc_gb_attr_int(b, t, "transA", tb ? 1 : !ta);
        ulc_gb_attr_int(b, t, "transB", tb ? ta : 0);
        ulc_gb_attr_float(b, t, "alpha", alpha);
        dx[1] = t;
    }
    if (n->n_inputs > 2 && want[2]) {
        ulc_value *t = beta == 1.0f ? g : mul(b, g, cf(b, beta, OUT(0)));
        NN(dx[2] = t ? ulc_grad_sum_to(b, t, OUT(0), IN(2)) : NULL);
    }
    return ULC_OK;
}

/* ---- convolution, pooling, normalisation -------------------------------------------------- */

static ulc_status g_conv(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                         ulc_value **dx) {
    ulc_value *X = IN(0), *W = IN(1);
    int rx = ulc_grad_rank(b, X);
    if (rx < 3) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "Conv input of unknown rank");
    if (want[0]) {
        ulc_value *in[3] = {dy[0], W, ulc_gb_shape(b, X)};
        NN(in[2]);
        NN(dx[0] = ulc_gb_opn(b, ULC_DOMAIN, "ConvGradData", 3, in, 1, NULL));
        ulc_gb_attr_copy(b, dx[0], n, NULL);
    }
    int want_b = n->n_inputs > 2 && IN(2) && want[2];
    if (want[1]) {
        int64_t ks[ULC_RT_MAX_RANK];
        const int64_t *wd = ulc_grad_dims(b, W);
        int has_ks = ulc_node_attr(n, "kernel_shape") != NULL;
        if (!has_ks && !wd) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "Conv kernel shape unknown");
        ulc_value *in[2] = {dy[0], X}, *outs[2];
        NN(ulc_gb_opn(b, ULC_DOMAIN, "ConvGradWeight", 2, in, want_b ? 2 : 1, outs));
        ulc_gb_attr_copy(b, outs[0], n, NULL);
        if (!has_ks) {
            for (int i = 0; i < rx - 2; i++) ks[i] = wd[i + 2];
            ulc_gb_attr_ints(b, outs[0], "kernel_shape", rx - 2, ks);
        }
        dx[1] = outs[0];
        if (want_b) dx[2] = outs[1];
    } else if (want_b) {
        int64_t axes[ULC_RT_MAX_RANK];
        int na = 0;
        for (int i = 0; i < rx; i++)
            if (i != 1) axes[na++] = i;
        NN(dx[2] = ulc_gb_reduce_sum(b, dy[0], na, axes, 0));
    }
    return ULC_OK;
}

static ulc_status g_maxpool(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                            ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    if (!dy[0]) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "gradient through MaxPool's indices");
    ulc_value *in[2] = {dy[0], IN(0)};
    NN(dx[0] = ulc_gb_opn(b, ULC_DOMAIN, "MaxPoolGrad", 2, in, 1, NULL));
    ulc_gb_attr_copy(b, dx[0], n, NULL);
    return ULC_OK;
}

static ulc_status g_avgpool(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                            ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    ulc_value *in[2] = {dy[0], ulc_gb_shape(b, IN(0))};
    NN(in[1]);
    NN(dx[0] = ulc_gb_opn(b, ULC_DOMAIN, "AveragePoolGrad", 2, in, 1, NULL));
    ulc_gb_attr_copy(b, dx[0], n, NULL);
    return ULC_OK;
}

static ulc_status g_global_avgpool(ulc_gb *b, const ulc_node *n, ulc_value *const *dy,
                                   const int *want, ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    int r = ulc_grad_rank(b, IN(0));
    const int64_t *d = ulc_grad_dims(b, IN(0));
    if (r < 3 || !d) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "input shape unknown");
    double area = 1;
    for (int i = 2; i < r; i++) area *= (double)d[i];
    ulc_value *s = mul(b, dy[0], cf(b, (float)(1.0 / area), OUT(0)));
    NN(dx[0] = s ? ulc_gb_op2(b, "Expand", s, ulc_gb_shape(b, IN(0))) : NULL);
    return ULC_OK;
}

/* [C] → [C, 1, ...] to broadcast over an [N, C, spatial...] tensor of rank r. */
static ulc_value *per_channel(ulc_gb *b, ulc_value *v, int r) {
    int64_t axes[ULC_RT_MAX_RANK];
    for (int i = 0; i < r - 2; i++) axes[i] = i + 1;
    return r > 2 ? ulc_gb_unsqueeze(b, v, r - 2, axes) : v;
}

static ulc_status g_batchnorm(ulc_gb *b, const ulc_node *n, ulc_value *const *dy,
                              const int *want, ulc_value **dx) {
    if (ulc_grad_attr_i(n, "training_mode", 0) || n->n_outputs > 1)
        return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED,
                       "BatchNormalization in training mode (ulc trains with eval-mode "
                       "BatchNorm: running statistics)");
    if (want[3] || want[4])
        return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "gradient for the running mean/variance");
    int r = ulc_grad_rank(b, IN(0));
    if (r < 2) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "input shape unknown");
    ulc_value *sd = ulc_gb_op1(b, "Sqrt", ulc_gb_op2(b, "Add", IN(4), cf(b, ulc_grad_attr_f(n, "epsilon", 1e-5f), IN(4))));
    NN(sd);
    int64_t axes[ULC_RT_MAX_RANK];
    int na = 0;
    for (int i = 0; i < r; i++)
        if (i != 1) axes[na++] = i;
    if (want[0]) NN(dx[0] = mul(b, dy[0], per_channel(b, dv(b, IN(1), sd), r)));
    if (want[1]) {
        ulc_value *xhat = dv(b, sub(b, IN(0), per_channel(b, IN(3), r)), per_channel(b, sd, r));
        NN(dx[1] = xhat ? ulc_gb_reduce_sum(b, mul(b, dy[0], xhat), na, axes, 0) : NULL);
    }
    if (want[2]) NN(dx[2] = ulc_gb_reduce_sum(b, dy[0], na, axes, 0));
    return ULC_OK;
}

static ulc_status g_layernorm(ulc_gb *b, const ulc_node *n, ulc_value *const *dy,
                              const int *want, ulc_value **dx) {
    if (!dy[0]) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "gradient through LayerNormalization's mean/inv_std_dev outputs");
    ulc_value *in[3] = {dy[0], IN(0), IN(1)}, *outs[3];
    NN(ulc_gb_opn(b, ULC_DOMAIN, "LayerNormGrad", 3, in, 3, outs));
    ulc_gb_attr_int(b, outs[0], "axis", ulc_grad_attr_i(n, "axis", -1));
    ulc_gb_attr_float(b, outs[0], "epsilon", ulc_grad_attr_f(n, "epsilon", 1e-5f));
    for (int i = 0; i < 3 && i < n->n_inputs; i++)
        if (want[i]) dx[i] = outs[i];
    return ULC_OK;
}

static ulc_status g_softmax(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                            ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    int r = ulc_grad_rank(b, IN(0));
    int64_t axis = ulc_grad_attr_i(n, "axis", b->opset >= 13 ? -1 : 1);
    if (axis < 0) axis += r;
    if (b->opset < 13 && axis != r - 1)
        return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED,
                       "opset-%d softmax over the flattened axes %lld.. has no backward rule",
                       (int)b->opset, (long long)axis);
    ulc_value *in[2] = {dy[0], OUT(0)};
    NN(dx[0] = ulc_gb_opn(b, ULC_DOMAIN, n->op == ULC_OP_Softmax ? "SoftmaxGrad" : "LogSoftmaxGrad",
                       2, in, 1, NULL));
    ulc_gb_attr_int(b, dx[0], "axis", axis);
    return ULC_OK;
}

/* SoftmaxCrossEntropy (ulc's fused loss, ir/ops_ulc.def): one SoftmaxCrossEntropyGrad reads z,
 * y, lse and whichever of dce, dlse, dsce flow back (missing: 0). Soft targets get no gradient. */
static ulc_status g_sce(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                       ulc_value **dx) {
    if (n->n_inputs > 2 && IN(2) && want[2])
        return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "the soft targets p (input 2) have no "
                             "gradient: they must not depend on a trained weight");
    if (!want[0]) return ULC_OK;
    if (n->n_outputs < 2 || !OUT(1))
        return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "the backward pass needs output 1 (lse)");
    ulc_value *in[7] = {IN(0), IN(1), OUT(1), dy[0], dy[1], n->n_outputs > 2 ? dy[2] : NULL,
                        n->n_inputs > 2 ? IN(2) : NULL};
    int k = 7;
    while (k > 3 && !in[k - 1]) k--;
    NN(dx[0] = ulc_gb_opn(b, ULC_DOMAIN, "SoftmaxCrossEntropyGrad", k, in, 1, NULL));
    return ULC_OK;
}

/* SquaredDistance (ulc's fused feature distance, ir/ops_ulc.def): one SquaredDistanceGrad gives
 * da and, when b is trained too, db. */
static ulc_status g_sqdist(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                           ulc_value **dx) {
    if (!want[0] && !want[1]) return ULC_OK;
    ulc_value *in[3] = {IN(0), IN(1), dy[0]}, *outs[2] = {NULL, NULL};
    ulc_gb_opn(b, ULC_DOMAIN, "SquaredDistanceGrad", 3, in, want[1] ? 2 : 1, outs);
    NN(outs[0] && (outs[1] || !want[1]));
    if (want[0]) dx[0] = outs[0];
    if (want[1]) dx[1] = outs[1];
    return ULC_OK;
}

/* Attention (ulc's fused attention, ir/ops_ulc.def): one AttentionGrad gives dq, dkt and dv from
 * q, kt, v, dO and the masks (the probabilities recomputed there). Masks get no gradient. */
static ulc_status g_attention(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                              ulc_value **dx) {
    for (int i = 3; i < n->n_inputs; i++)
        if (want[i])
            return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "attention mask (input %d) depends on a "
                                 "trained weight; ULC_NO_ATTENTION_FUSION=1 trains the nodes unfused", i);
    if (!want[0] && !want[1] && !want[2]) return ULC_OK;
    ulc_value *in[3 + 1 + ULC_ATTENTION_MAX_OPS], *outs[3] = {NULL, NULL, NULL};
    int k = 0;
    for (int i = 0; i < 3; i++) in[k++] = IN(i);
    in[k++] = dy[0];
    for (int i = 3; i < n->n_inputs && k < (int)(sizeof in / sizeof *in); i++) in[k++] = IN(i);
    NN(ulc_gb_opn(b, ULC_DOMAIN, "AttentionGrad", k, in, 3, outs));
    ulc_gb_attr_copy(b, outs[0], n, NULL);
    for (int i = 0; i < 3; i++)
        if (want[i]) dx[i] = outs[i];
    return ULC_OK;
}

/* ---- reductions -------------------------------------------------------------------------- */

static ulc_status g_reduce(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                           ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    int r = ulc_grad_rank(b, IN(0));
    if (r < 0) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "input shape unknown");
    int64_t axes[ULC_RT_MAX_RANK];
    int na = ulc_grad_attr_is(n, "axes", axes, ULC_RT_MAX_RANK);
    if (na < 0 && n->n_inputs > 1 && IN(1)) {
        na = ulc_grad_const_ints(b, IN(1), axes, ULC_RT_MAX_RANK);
        if (na < 0) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "reduction axes are not constant");
    }
    if (na <= 0) {
        if (na == 0 && ulc_grad_attr_i(n, "noop_with_empty_axes", 0)) {
            NN(dx[0] = dy[0]);
            return ULC_OK;
        }
        for (int i = 0; i < r; i++) axes[i] = i;
        na = r;
    }
    for (int i = 0; i < na; i++) axes[i] = axes[i] < 0 ? axes[i] + r : axes[i];
    for (int i = 1; i < na; i++) /* sorted, for Unsqueeze */
        for (int j = i; j > 0 && axes[j - 1] > axes[j]; j--) {
            int64_t t = axes[j];
            axes[j] = axes[j - 1];
            axes[j - 1] = t;
        }
    ulc_value *g = dy[0];
    if (!ulc_grad_attr_i(n, "keepdims", 1)) NN(g = ulc_gb_unsqueeze(b, g, na, axes));
    NN(g = ulc_gb_op2(b, "Expand", g, ulc_gb_shape(b, IN(0))));
    if (n->op == ULC_OP_ReduceMean) { /* · numel(y)/numel(x), at run time (the batch varies) */
        ulc_value *to_f[2];
        for (int i = 0; i < 2; i++) {
            to_f[i] = ulc_gb_op1(b, "Size", i ? IN(0) : OUT(0));
            NN(to_f[i]);
            NN(to_f[i] = ulc_grad_cast_like(b, to_f[i], IN(0))); /* g's dtype */
        }
        NN(g = mul(b, g, dv(b, to_f[0], to_f[1])));
    }
    dx[0] = g;
    return ULC_OK;
}

/* ---- data movement ---------------------------------------------------------------------- */

static ulc_status g_reshape(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                            ulc_value **dx) {
    if (want[0]) NN(dx[0] = ulc_gb_reshape_like(b, dy[0], IN(0)));
    return ULC_OK;
}

static ulc_status g_transpose(ulc_gb *b, const ulc_node *n, ulc_value *const *dy,
                              const int *want, ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    int r = ulc_grad_rank(b, IN(0));
    int64_t perm[ULC_RT_MAX_RANK], inv[ULC_RT_MAX_RANK];
    int np = ulc_grad_attr_is(n, "perm", perm, ULC_RT_MAX_RANK);
    if (np < 0)
        for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
    else if (np != r) return ulc_grad_fail(b, ULC_ERR_INVALID, "perm has %d entries for rank %d", np, r);
    for (int i = 0; i < r; i++) inv[perm[i]] = i;
    NN(dx[0] = ulc_gb_transpose(b, dy[0], r, inv));
    return ULC_OK;
}

static ulc_status g_slice(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                          ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    if (b->opset < 11) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "Slice backward needs opset >= 11");
    int r = ulc_grad_rank(b, IN(0));
    const int64_t *d = ulc_grad_dims(b, IN(0));
    if (r < 0 || !d) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "input shape unknown");
    int64_t st[ULC_RT_MAX_RANK], en[ULC_RT_MAX_RANK], ax[ULC_RT_MAX_RANK], sp[ULC_RT_MAX_RANK];
    int ns = ulc_grad_const_ints(b, IN(1), st, r), ne = ulc_grad_const_ints(b, IN(2), en, r);
    int nax = n->n_inputs > 3 && IN(3) ? ulc_grad_const_ints(b, IN(3), ax, r) : ns;
    int nsp = n->n_inputs > 4 && IN(4) ? ulc_grad_const_ints(b, IN(4), sp, r) : ns;
    if (ns < 0 || ne != ns || nax != ns || nsp != ns)
        return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "Slice starts/ends/axes/steps are not constant");
    if (!(n->n_inputs > 3 && IN(3)))
        for (int i = 0; i < ns; i++) ax[i] = i;
    int64_t pads[2 * ULC_RT_MAX_RANK] = {0};
    for (int i = 0; i < ns; i++) {
        if (n->n_inputs > 4 && IN(4) && sp[i] != 1)
            return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "Slice with step %lld has no backward rule",
                           (long long)sp[i]);
        int64_t a = ax[i] < 0 ? ax[i] + r : ax[i], dim = d[a];
        int64_t s = st[i] < 0 ? st[i] + dim : st[i], e = en[i] < 0 ? en[i] + dim : en[i];
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        if (e < s) e = s;
        pads[a] = s;
        pads[r + a] = dim - e;
    }
    ulc_value *in[2] = {dy[0], ulc_gb_vec_i64(b, 2 * r, pads)};
    NN(in[1]);
    NN(dx[0] = ulc_gb_opn(b, NULL, "Pad", 2, in, 1, NULL));
    return ULC_OK;
}

static ulc_status g_gather(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                           ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    ulc_value *in[3] = {dy[0], IN(1), ulc_gb_shape(b, IN(0))};
    NN(in[2]);
    NN(dx[0] = ulc_gb_opn(b, ULC_DOMAIN, "GatherGrad", 3, in, 1, NULL));
    ulc_gb_attr_int(b, dx[0], "axis", ulc_grad_attr_i(n, "axis", 0));
    return ULC_OK;
}

static ulc_status g_concat(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                           ulc_value **dx) {
    int r = ulc_grad_rank(b, OUT(0));
    int64_t axis = ulc_grad_attr_i(n, "axis", 0);
    if (axis < 0) axis += r;
    int64_t off = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        const int64_t *d = ulc_grad_dims(b, IN(i));
        if (!d) return ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "input %d shape unknown", i);
        int64_t len = d[axis];
        if (want[i]) {
            int64_t s = off, e = off + len;
            ulc_value *in[4] = {dy[0], ulc_gb_vec_i64(b, 1, &s), ulc_gb_vec_i64(b, 1, &e),
                                ulc_gb_vec_i64(b, 1, &axis)};
            NN(in[1] && in[2] && in[3] ? in[3] : NULL);
            NN(dx[i] = ulc_gb_opn(b, NULL, "Slice", 4, in, 1, NULL));
        }
        off += len;
    }
    return ULC_OK;
}

static ulc_status g_split(ulc_gb *b, const ulc_node *n, ulc_value *const *dy, const int *want,
                          ulc_value **dx) {
    if (!want[0]) return ULC_OK;
    ulc_value *parts[16];
    for (int i = 0; i < n->n_outputs; i++) {
        parts[i] = dy[i];
        if (!parts[i]) NN(parts[i] = ulc_gb_op1(b, "ConstantOfShape", ulc_gb_shape(b, OUT(i))));
    }
    int r = ulc_grad_rank(b, IN(0));
    int64_t axis = ulc_grad_attr_i(n, "axis", 0);
    NN(dx[0] = ulc_gb_opn(b, NULL, "Concat", n->n_outputs, parts, 1, NULL));
    ulc_gb_attr_int(b, dx[0], "axis", axis < 0 ? axis + r : axis);
    return ULC_OK;
}

/* ---- the table ---------------------------------------------------------------------------- */

ulc_grad_rule ulc_grad_rule_for(ulc_op op) {
    switch (op) {
    case ULC_OP_Add: case ULC_OP_Sum: return g_add;
    case ULC_OP_Sub: return g_sub;
    case ULC_OP_Mul: return g_mul;
    case ULC_OP_Div: return g_div;
    case ULC_OP_Pow: return g_pow;
    case ULC_OP_Where: return g_where;
    case ULC_OP_Expand: return g_expand;
    case ULC_OP_Identity: case ULC_OP_Dropout: case ULC_OP_Neg: case ULC_OP_Exp:
    case ULC_OP_Log: case ULC_OP_Sqrt: case ULC_OP_Reciprocal: case ULC_OP_Abs:
    case ULC_OP_Tanh: case ULC_OP_Sigmoid: case ULC_OP_Erf: case ULC_OP_Relu:
    case ULC_OP_Gelu: case ULC_OP_LeakyRelu: case ULC_OP_Cast: case ULC_OP_CastLike:
    case ULC_OP_FastGelu:
        return g_unary;
    case ULC_OP_MatMul: return g_matmul;
    case ULC_OP_Gemm: return g_gemm;
    case ULC_OP_Conv: return g_conv;
    case ULC_OP_MaxPool: return g_maxpool;
    case ULC_OP_AveragePool: return g_avgpool;
    case ULC_OP_GlobalAveragePool: return g_global_avgpool;
    case ULC_OP_BatchNormalization: return g_batchnorm;
    case ULC_OP_LayerNormalization: return g_layernorm;
    case ULC_OP_Softmax: case ULC_OP_LogSoftmax: return g_softmax;
    case ULC_OP_SoftmaxCrossEntropy: return g_sce;
    case ULC_OP_SquaredDistance: return g_sqdist;
    case ULC_OP_Attention: return g_attention;
    case ULC_OP_ReduceMean: case ULC_OP_ReduceSum: return g_reduce;
    case ULC_OP_Reshape: case ULC_OP_Flatten: case ULC_OP_Squeeze: case ULC_OP_Unsqueeze:
        return g_reshape;
    case ULC_OP_Transpose: return g_transpose;
    case ULC_OP_Slice: return g_slice;
    case ULC_OP_Gather: return g_gather;
    case ULC_OP_Concat: return g_concat;
    case ULC_OP_Split: return g_split;
    default: return NULL;
    }
}
