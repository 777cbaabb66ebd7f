/*
 * k_elementwise_unary.c — the CPU backend's unary elementwise ops and Clip (ONNX default
 * domain, opsets 1–21); binary, variadic and Where are in k_elementwise.c.
 *
 * Unary (same shape; float ops on f32/f64):
 *   Abs Neg Sign (numeric) Relu (float, signed ints) Floor Ceil Round (half to even)
 *   Sqrt Reciprocal Exp Log Erf Tanh Sigmoid Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh
 *   Atanh Softsign x/(1+|x|) Softplus log(1+e^x) Elu x<0 ? α(e^x-1) : x (α=1)
 *   Selu γ·(x≤0 ? α(e^x-1) : x) LeakyRelu x<0 ? αx : x (α=0.01)
 *   HardSigmoid max(0,min(1,αx+β))
 *   (α=0.2, β=0.5) HardSwish x·max(0,min(1,x/6+1/2)) Celu max(0,x)+min(0,α(e^(x/α)-1))
 *   ThresholdedRelu x>α ? x : 0 (α=1) Mish x·tanh(softplus(x)) Shrink
 *   x<-λ ? x+bias : x>λ ? x-bias : 0 (λ=0.5, bias=0) Gelu (opset 20; approximate "none":
 *   x/2·(1+erf(x/√2)), "tanh": x/2·(1+tanh(√(2/π)(x+0.044715x³))))
 *   Not (bool) BitwiseNot (integers) IsNaN IsInf (detect_negative/detect_positive) → bool
 *   Clip(x, min, max): min(max(x, min), max) (min > max gives max); min/max are optional scalar
 *   inputs from opset 11 (absent = the dtype's lowest/highest), float attributes before.
 *
 * Each op runs one typed loop over the elements (same shape in and out), split across the
 * OpenMP pool by element range from 64K elements; the simple f32 loops are also compiled for
 * AVX2 and chosen when the CPU has it.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "runtime/cpu/k_elementwise_loops.h"

static int ew_avx2; /* set once at registration */

/* ---- typed unary loops ----------------------------------------------------------------------- */

typedef void (*ew_un_fn)(const void *x, void *y, int64_t n, const ew_upar *p);

#define EW_UN_BODY(T, TO, EXPR)                                                                   \
    const T *X = (const T *)px;                                                                   \
    TO *Y = (TO *)py;                                                                             \
    const T al = (T)p->alpha, be = (T)p->beta, ga = (T)p->gamma;                                  \
    (void)al;                                                                                     \
    (void)be;                                                                                     \
    (void)ga;                                                                                     \
    for (int64_t i = 0; i < n; i++) {                                                             \
        T x = X[i];                                                                               \
        Y[i] = (TO)(EXPR);                                                                        \
    }
#define EW_UN(name, T, TO, EXPR)                                                                  \
    static void name(const void *px, void *py, int64_t n, const ew_upar *p) {                     \
        EW_UN_BODY(T, TO, EXPR)                                                                   \
    }
#define EW_UN2(name, T, TO, EXPR)                                                                 \
    EW_UN(name, T, TO, EXPR)                                                                      \
    EW_AVX2_ATTR static void name##_avx2(const void *px, void *py, int64_t n,                     \
                                         const ew_upar *p) {                                      \
        EW_UN_BODY(T, TO, EXPR)                                                                   \
    }

/* float ops: F32 with the float libm, F64 with the double one */
#define EW_UNF(name, E32, E64)                                                                    \
    EW_UN(name##_F32, float, float, E32) EW_UN(name##_F64, double, double, E64)
#define EW_UNF2(name, E32, E64)                                                                   \
    EW_UN2(name##_F32, float, float, E32) EW_UN(name##_F64, double, double, E64)

EW_UNF2(abs, fabsf(x), fabs(x))
EW_UNF2(neg, -x, -x)
EW_UNF2(relu, x > 0 ? x : (x != x ? x : 0.0f), x > 0 ? x : (x != x ? x : 0.0))
EW_UNF2(sign, x > 0 ? 1.0f : x < 0 ? -1.0f : x, x > 0 ? 1.0 : x < 0 ? -1.0 : x)
EW_UNF2(recip, 1.0f / x, 1.0 / x)
EW_UNF2(leaky, x < 0 ? al * x : x, x < 0 ? al * x : x)
EW_UNF2(hsig, EW_FMAX(0.0f, EW_FMIN(1.0f, al * x + be)), EW_FMAX(0.0, EW_FMIN(1.0, al * x + be)))
EW_UNF2(hswish, x * EW_FMAX(0.0f, EW_FMIN(1.0f, x * (1.0f / 6.0f) + 0.5f)),
        x * EW_FMAX(0.0, EW_FMIN(1.0, x * (1.0 / 6.0) + 0.5)))
EW_UNF2(softsign, x / (1.0f + fabsf(x)), x / (1.0 + fabs(x)))
EW_UNF2(threlu, x > al ? x : 0.0f, x > al ? x : 0.0)
EW_UNF2(shrink, x < -ga ? x + be : x > ga ? x - be : 0.0f, x < -ga ? x + be : x > ga ? x - be : 0.0)
EW_UN(sqrt_F64, double, double, sqrt(x))
EW_UNF2(floor, floorf(x), floor(x))
EW_UNF2(ceil, ceilf(x), ceil(x))
EW_UNF2(round, rintf(x), rint(x)) /* default rounding mode: half to even */
EW_UNF(log, logf(x), log(x))
EW_UNF(sin, sinf(x), sin(x))
EW_UNF(cos, cosf(x), cos(x))
EW_UNF(tan, tanf(x), tan(x))
EW_UNF(asin, asinf(x), asin(x))
EW_UNF(acos, acosf(x), acos(x))
EW_UNF(atan, atanf(x), atan(x))
EW_UNF(sinh, sinhf(x), sinh(x))
EW_UNF(cosh, coshf(x), cosh(x))
EW_UNF(asinh, asinhf(x), asinh(x))
EW_UNF(acosh, acoshf(x), acosh(x))
EW_UNF(atanh, atanhf(x), atanh(x))
/* log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|) */
EW_UNF(softplus, fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))), fmax(x, 0.0) + log1p(exp(-fabs(x))))
EW_UNF(elu, x < 0 ? al * expm1f(x) : x, x < 0 ? al * expm1(x) : x)
EW_UNF(selu, x <= 0 ? ga * (al * expm1f(x)) : ga * x, x <= 0 ? ga * (al * expm1(x)) : ga * x)
EW_UNF(celu, x > 0 ? x : x != x ? x : al * expm1f(x / al),
       x > 0 ? x : x != x ? x : al * expm1(x / al))
EW_UNF(mish, x * tanhf(fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)))),
       x * tanh(fmax(x, 0.0) + log1p(exp(-fabs(x)))))
EW_UN(exp_F64, double, double, exp(x))
EW_UN(erf_F64, double, double, erf(x))
EW_UN(tanh_F64, double, double, tanh(x))
EW_UN(sigmoid_F64, double, double, 1.0 / (1.0 + exp(-x)))
EW_UN(gelu_F64, double, double, 0.5 * x * erfc(-x * 0.70710678118654752440))
EW_UN(gelu_tanh_F64, double, double,
      x / (1.0 + exp(-2.0 * 0.79788456080286535588 * (x + 0.044715 * x * x * x))))
EW_UN(isnan_F32, float, uint8_t, x != x)
EW_UN(isnan_F64, double, uint8_t, x != x)

/* float32 array functions from k_elementwise_math.c */
#define EW_UN_ARRAY(name, fn)                                                                     \
    static void name(const void *px, void *py, int64_t n, const ew_upar *p) {                     \
        (void)p;                                                                                  \
        fn((const float *)px, (float *)py, n);                                                    \
    }
EW_UN_ARRAY(sqrt_F32, ulc_cpu_vsqrt_f32)
EW_UN_ARRAY(exp_F32, ulc_cpu_vexp_f32)
EW_UN_ARRAY(erf_F32, ulc_cpu_verf_f32)
EW_UN_ARRAY(tanh_F32, ulc_cpu_vtanh_f32)
EW_UN_ARRAY(sigmoid_F32, ulc_cpu_vsigmoid_f32)
EW_UN_ARRAY(gelu_F32, ulc_cpu_vgelu_erf_f32)
EW_UN_ARRAY(gelu_tanh_F32, ulc_cpu_vgelu_tanh_f32)

static void isinf_F32(const void *px, void *py, int64_t n, const ew_upar *p) {
    const float *x = px;
    uint8_t *y = py;
    int neg = p->flags & 1, pos = p->flags & 2;
    for (int64_t i = 0; i < n; i++)
        y[i] = (uint8_t)((pos && x[i] == INFINITY) || (neg && x[i] == -INFINITY));
}
static void isinf_F64(const void *px, void *py, int64_t n, const ew_upar *p) {
    const double *x = px;
    uint8_t *y = py;
    int neg = p->flags & 1, pos = p->flags & 2;
    for (int64_t i = 0; i < n; i++)
        y[i] = (uint8_t)((pos && x[i] == INFINITY) || (neg && x[i] == -INFINITY));
}

/* integers */
#define EW_DEF_UN_SINT(D, T, W)                                                                   \
    EW_UN(abs_##D, T, T, x < 0 ? (W)0 - (W)x : (W)x)                                              \
    EW_UN(neg_##D, T, T, (W)0 - (W)x)                                                             \
    EW_UN(relu_##D, T, T, x > 0 ? x : 0)                                                          \
    EW_UN(sign_##D, T, T, x > 0 ? 1 : x < 0 ? -1 : 0)
EW_SINTS(EW_DEF_UN_SINT)
#define EW_DEF_UN_UINT(D, T, W)                                                                   \
    EW_UN(abs_##D, T, T, x)                                                                       \
    EW_UN(sign_##D, T, T, x > 0 ? 1 : 0)
EW_UINTS(EW_DEF_UN_UINT)
#define EW_DEF_UN_INT(D, T, W) EW_UN(bnot_##D, T, T, ~(W)x)
EW_INTS(EW_DEF_UN_INT)
EW_UN(not_BOOL, uint8_t, uint8_t, x == 0)

/* Clip: bounds in p->lo / p->hi as T */
#define EW_DEF_CLIP(D, T, W)                                                                      \
    static void clip_##D(const void *px, void *py, int64_t n, const ew_upar *p) {                 \
        const T *x = px;                                                                          \
        T *y = py, lo, hi;                                                                        \
        memcpy(&lo, p->lo, sizeof lo);                                                            \
        memcpy(&hi, p->hi, sizeof hi);                                                            \
        for (int64_t i = 0; i < n; i++) {                                                         \
            T v = x[i] < lo ? lo : x[i];                                                          \
            y[i] = v > hi ? hi : v;                                                               \
        }                                                                                         \
    }
EW_NUMS(EW_DEF_CLIP)

/* ---- unary op table ----------------------------------------------------------------------- */

static ew_un_fn g_un[U_COUNT_][ULC_DT_COUNT_];

static ew_un_fn un_fn(int u, int dt) { return dt > 0 && dt < ULC_DT_COUNT_ ? g_un[u][dt] : NULL; }

static void ew_fill_unary(void) {
    int v = ew_avx2;
#define SETF(u, name) g_un[u][ULC_DT_F32] = name##_F32, g_un[u][ULC_DT_F64] = name##_F64;
#define SETF2(u, name)                                                                            \
    g_un[u][ULC_DT_F32] = v ? name##_F32_avx2 : name##_F32, g_un[u][ULC_DT_F64] = name##_F64;
    SETF2(U_ABS, abs) SETF2(U_NEG, neg) SETF2(U_SIGN, sign) SETF2(U_RELU, relu)
    SETF2(U_FLOOR, floor) SETF2(U_CEIL, ceil) SETF2(U_ROUND, round) SETF(U_SQRT, sqrt)
    SETF2(U_RECIP, recip) SETF2(U_SOFTSIGN, softsign) SETF2(U_LEAKY, leaky) SETF2(U_HSIG, hsig)
    SETF2(U_HSWISH, hswish) SETF2(U_THRELU, threlu) SETF2(U_SHRINK, shrink)
    SETF(U_EXP, exp) SETF(U_LOG, log) SETF(U_ERF, erf) SETF(U_TANH, tanh)
    SETF(U_SIGMOID, sigmoid) SETF(U_SIN, sin) SETF(U_COS, cos) SETF(U_TAN, tan)
    SETF(U_ASIN, asin) SETF(U_ACOS, acos) SETF(U_ATAN, atan) SETF(U_SINH, sinh)
    SETF(U_COSH, cosh) SETF(U_ASINH, asinh) SETF(U_ACOSH, acosh) SETF(U_ATANH, atanh)
    SETF(U_SOFTPLUS, softplus) SETF(U_ELU, elu) SETF(U_SELU, selu) SETF(U_CELU, celu)
    SETF(U_MISH, mish) SETF(U_GELU, gelu) SETF(U_GELU_TANH, gelu_tanh) SETF(U_ISNAN, isnan)
    SETF(U_ISINF, isinf)
#undef SETF
#undef SETF2
#define SETS(D, T, W)                                                                             \
    g_un[U_ABS][ULC_DT_##D] = abs_##D, g_un[U_NEG][ULC_DT_##D] = neg_##D,                         \
    g_un[U_RELU][ULC_DT_##D] = relu_##D, g_un[U_SIGN][ULC_DT_##D] = sign_##D;
    EW_SINTS(SETS)
#undef SETS
#define SETU(D, T, W) g_un[U_ABS][ULC_DT_##D] = abs_##D, g_un[U_SIGN][ULC_DT_##D] = sign_##D;
    EW_UINTS(SETU)
#undef SETU
#define SETI(D, T, W) g_un[U_BNOT][ULC_DT_##D] = bnot_##D;
    EW_INTS(SETI)
#undef SETI
#define SETC(D, T, W) g_un[U_CLIP][ULC_DT_##D] = clip_##D;
    EW_NUMS(SETC)
#undef SETC
    g_un[U_NOT][ULC_DT_BOOL] = not_BOOL;
}

typedef struct un_job {
    ew_un_fn fn;
    const char *x;
    char *y;
    size_t ex, ey;
    const ew_upar *p;
} un_job;

static void un_body(int64_t i0, int64_t i1, void *arg) {
    const un_job *j = arg;
    j->fn(j->x + i0 * (int64_t)j->ex, j->y + i0 * (int64_t)j->ey, i1 - i0, j->p);
}

static void ew_unary(ew_un_fn fn, const ulc_rt_tensor *x, ulc_rt_tensor *y, const ew_upar *p) {
    un_job j = {fn, x->data, y->data, ulc_k_dtype_size(x->dtype), ulc_k_dtype_size(y->dtype), p};
    int64_t n = (int64_t)ulc_rt_numel(x);
    if (n > 0) ulc_k_parallel(n, EW_GRAIN, un_body, &j);
}

static ulc_status unary_run(ulc_kctx *k) {
    int u = 0;
    ew_upar p;
    ULC_TRY(ulc_sh_ew_unop(k, &u, &p));
    ew_un_fn fn = un_fn(u, k->in[0]->dtype);
    if (!k->out[0] || !fn) return ULC_OK; /* the shape rule reported it */
    ew_unary(fn, k->in[0], k->out[0], &p);
    return ULC_OK;
}

static const ulc_kernel k_unary = {.run = unary_run};

/* ---- Clip ----------------------------------------------------------------------------------- */

static ulc_status clip_run(ulc_kctx *k) {
    ew_upar p;
    memset(&p, 0, sizeof p);
    ULC_TRY(ulc_sh_clip_bounds(k, 1, &p));
    ew_un_fn fn = un_fn(U_CLIP, k->in[0]->dtype);
    if (k->out[0] && fn) ew_unary(fn, k->in[0], k->out[0], &p);
    return ULC_OK;
}

static const ulc_kernel k_clip = {.run = clip_run};

/* ---- registration ---------------------------------------------------------------------------- */

void ulc_cpu_register_unary(const ulc_kernel **table) {
#if EW_X86
    ew_avx2 = ulc_k_avx2();
#endif
    ew_fill_unary();
    /* the shape rules (runtime/shape/s_elementwise.c) accept exactly the dtypes with a loop */
    for (int op = 0; op < U_COUNT_; op++)
        for (int dt = 1; dt < ULC_DT_COUNT_; dt++)
            ULC_ASSERT((un_fn(op, dt) != NULL) == ulc_sh_unary_dtype_ok(op, dt));
    for (size_t i = 0; i < ulc_ew_n_unary; i++) table[ulc_ew_unary_ops[i]] = &k_unary;
    table[ULC_OP_Clip] = &k_clip;
}
