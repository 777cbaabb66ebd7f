/*
 * k_elementwise_unary.cu — the CUDA backend's unary elementwise ops (Abs … IsInf, Gelu and ulc's
 * FastGelu), Clip, Cast and CastLike; binary, variadic and Where are in k_elementwise.cu, the
 * scalar math in ew_math.h. Semantics: runtime/cpu/k_elementwise_unary.c and
 * k_elementwise_cast.c.
 *
 * Every op maps x[0..n) to y[0..n) (same shape): a grid-stride loop four elements at a time
 * (one aligned vector load and store) when both pointers are aligned, the last n % 4 one by one.
 * Clip reads its bounds on the device from the optional scalar inputs (opset >= 11), so they
 * need not be plan constants; absent, the dtype's range (or the attributes before opset 11).
 */
#include "runtime/cuda/k_elementwise.h"

#include <stdlib.h>
#include <string.h>

UCU_BEGIN

/* A unary op's parameters (params_ew.h's ew_upar) as the kernels take them. */
typedef struct EwUpar {
    double alpha, beta, gamma;
    int flags;
} EwUpar;

typedef ulc_status (*ew_un_fn)(ulc_kctx *k, const void *x, void *y, int64_t n, const EwUpar *p);
typedef ulc_status (*ew_clip_fn)(ulc_kctx *k, const void *x, void *y, int64_t n, const void *lo,
                                 const void *hi, const unsigned char *dlo, const unsigned char *dhi);

typedef struct EwUState {
    ew_un_fn un; /* unary, Cast */
    ew_clip_fn clip;
    EwUpar up;
    unsigned char lo[8], hi[8]; /* Clip's bounds when no input gives them */
} EwUState;

static ulc_status ew_ustate(ulc_kctx *k, EwUState **out) {
    EwUState *st = (EwUState *)calloc(1, sizeof *st);
    if (!st) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = st;
    *out = st;
    return ULC_OK;
}

/* ---- unary ops -------------------------------------------------------------------------------- */

#define EW_UFN template <class T> static __device__ __forceinline__

/* float ops: al, be, ga are the attributes in T */
#define EW_UNF(Name, EXPR)                                                                         \
    struct Name {                                                                                  \
        EW_UFN T f(T x, const EwUpar &p) {                                                         \
            const T al = (T)p.alpha, be = (T)p.beta, ga = (T)p.gamma;                              \
            (void)al;                                                                              \
            (void)be;                                                                              \
            (void)ga;                                                                              \
            return (T)(EXPR);                                                                      \
        }                                                                                          \
    };
EW_UNF(UAbsF, m_fabs(x))
EW_UNF(UNegF, -x)
EW_UNF(UReluF, x > 0 ? x : (x != x ? x : (T)0))
EW_UNF(USignF, x > 0 ? (T)1 : x < 0 ? (T)-1 : x)
EW_UNF(URecip, (T)1 / x)
EW_UNF(ULeaky, x < 0 ? al * x : x)
EW_UNF(UHsig, EW_FMAX((T)0, EW_FMIN((T)1, al * x + be)))
EW_UNF(UHswish, x * EW_FMAX((T)0, EW_FMIN((T)1, x * ((T)1 / (T)6) + (T)0.5)))
EW_UNF(USoftsign, x / ((T)1 + m_fabs(x)))
EW_UNF(UThrelu, x > al ? x : (T)0)
EW_UNF(UShrink, x < -ga ? x + be : x > ga ? x - be : (T)0)
EW_UNF(USqrt, m_sqrt(x))
EW_UNF(UFloor, m_floor(x))
EW_UNF(UCeil, m_ceil(x))
EW_UNF(URound, m_rint(x))
EW_UNF(ULog, m_log(x))
EW_UNF(USin, m_sin(x))
EW_UNF(UCos, m_cos(x))
EW_UNF(UTan, m_tan(x))
EW_UNF(UAsin, m_asin(x))
EW_UNF(UAcos, m_acos(x))
EW_UNF(UAtan, m_atan(x))
EW_UNF(USinh, m_sinh(x))
EW_UNF(UCosh, m_cosh(x))
EW_UNF(UAsinh, m_asinh(x))
EW_UNF(UAcosh, m_acosh(x))
EW_UNF(UAtanh, m_atanh(x))
EW_UNF(USoftplus, m_fmax(x, (T)0) + m_log1p(m_exp(-m_fabs(x))))
EW_UNF(UElu, x < 0 ? al * m_expm1(x) : x)
EW_UNF(USelu, x <= 0 ? ga * (al * m_expm1(x)) : ga * x)
EW_UNF(UCelu, x > 0 ? x : x != x ? x : al * m_expm1(x / al))
EW_UNF(UMish, x * m_tanh(m_fmax(x, (T)0) + m_log1p(m_exp(-m_fabs(x)))))
EW_UNF(UExp, m_exp(x))
EW_UNF(UErf, m_erf(x))
EW_UNF(UTanh, m_tanh(x))
EW_UNF(USigmoid, ew_sigmoid(x))
EW_UNF(UGelu, ew_gelu_erf(x))
EW_UNF(UGeluTanh, ew_gelu_tanh(x))
#undef EW_UNF

struct UIsNan {
    EW_UFN uint8_t f(T x, const EwUpar &p) { (void)p; return (uint8_t)(x != x); }
};
struct UIsInf {
    EW_UFN uint8_t f(T x, const EwUpar &p) {
        return (uint8_t)(((p.flags & 2) && x == (T)INFINITY) || ((p.flags & 1) && x == -(T)INFINITY));
    }
};
/* signed integers (the W-typed arithmetic wraps: -MIN = MIN) */
struct UAbsI {
    EW_UFN T f(T x, const EwUpar &p) { (void)p; typedef typename EwWide<T>::type W; return x < 0 ? (T)((W)0 - (W)x) : x; }
};
struct UNegI {
    EW_UFN T f(T x, const EwUpar &p) { (void)p; typedef typename EwWide<T>::type W; return (T)((W)0 - (W)x); }
};
struct UReluI {
    EW_UFN T f(T x, const EwUpar &p) { (void)p; return x > 0 ? x : (T)0; }
};
struct USignI {
    EW_UFN T f(T x, const EwUpar &p) { (void)p; return x > 0 ? (T)1 : x < 0 ? (T)-1 : (T)0; }
};
struct UBnot {
    EW_UFN T f(T x, const EwUpar &p) { (void)p; typedef typename EwWide<T>::type W; return (T)~(W)x; }
};
struct UNot {
    EW_UFN uint8_t f(T x, const EwUpar &p) { (void)p; return (uint8_t)(x == 0); }
};

template <class Op, class T, class TO>
__global__ void k_unary(const T *x, TO *y, int64_t n, int64_t nvec, EwUpar p) {
    UCU_FOR(g, nvec / 4) {
        V4<T> v = reinterpret_cast<const V4<T> *>(x)[g];
        V4<TO> r;
        for (int j = 0; j < 4; j++) r.v[j] = (TO)Op::f(v.v[j], p);
        reinterpret_cast<V4<TO> *>(y)[g] = r;
    }
    UCU_FOR(t, n - nvec) y[nvec + t] = (TO)Op::f(x[nvec + t], p);
}

template <class Op, class T, class TO>
static ulc_status un_launch(ulc_kctx *k, const void *x, void *y, int64_t n, const EwUpar *p) {
    if (n <= 0) return ULC_OK;
    int64_t nvec = ew_aligned(x, sizeof(V4<T>)) && ew_aligned(y, sizeof(V4<TO>)) ? n & ~(int64_t)3 : 0;
    auto f = k_unary<Op, T, TO>;
    UCU_LAUNCH(f, ew_grid(n, nvec), UCU_THREADS, 0, ucu_stream(k), (const T *)x, (TO *)y, n, nvec, *p);
    UCU_TRY_LAUNCH(k, "elementwise unary");
    return ULC_OK;
}

static ew_un_fn g_un[U_COUNT_][ULC_DT_COUNT_];

#define EW_SET_UN(D, T, U, FN) g_un[U][ULC_DT_##D] = un_launch<FN, T, T>;
#define EW_SET_UNB(D, T, U, FN) g_un[U][ULC_DT_##D] = un_launch<FN, T, uint8_t>;
#define EW_SET_UNI(D, T, U, FN) g_un[U][ULC_DT_I32] = un_launch<FN, int32_t, int32_t>; \
    g_un[U][ULC_DT_I64] = un_launch<FN, int64_t, int64_t>;

static void ew_fill_unary(void) {
    EW_FLT2(EW_SET_UN, U_ABS, UAbsF)
    EW_FLT2(EW_SET_UN, U_NEG, UNegF)
    EW_FLT2(EW_SET_UN, U_SIGN, USignF)
    EW_FLT2(EW_SET_UN, U_RELU, UReluF)
    EW_SET_UNI(_, _, U_ABS, UAbsI)
    EW_SET_UNI(_, _, U_NEG, UNegI)
    EW_SET_UNI(_, _, U_SIGN, USignI)
    EW_SET_UNI(_, _, U_RELU, UReluI)
    EW_FLT2(EW_SET_UN, U_FLOOR, UFloor)
    EW_FLT2(EW_SET_UN, U_CEIL, UCeil)
    EW_FLT2(EW_SET_UN, U_ROUND, URound)
    EW_FLT2(EW_SET_UN, U_SQRT, USqrt)
    EW_FLT2(EW_SET_UN, U_RECIP, URecip)
    EW_FLT2(EW_SET_UN, U_EXP, UExp)
    EW_FLT2(EW_SET_UN, U_LOG, ULog)
    EW_FLT2(EW_SET_UN, U_ERF, UErf)
    EW_FLT2(EW_SET_UN, U_TANH, UTanh)
    EW_FLT2(EW_SET_UN, U_SIGMOID, USigmoid)
    EW_FLT2(EW_SET_UN, U_SIN, USin)
    EW_FLT2(EW_SET_UN, U_COS, UCos)
    EW_FLT2(EW_SET_UN, U_TAN, UTan)
    EW_FLT2(EW_SET_UN, U_ASIN, UAsin)
    EW_FLT2(EW_SET_UN, U_ACOS, UAcos)
    EW_FLT2(EW_SET_UN, U_ATAN, UAtan)
    EW_FLT2(EW_SET_UN, U_SINH, USinh)
    EW_FLT2(EW_SET_UN, U_COSH, UCosh)
    EW_FLT2(EW_SET_UN, U_ASINH, UAsinh)
    EW_FLT2(EW_SET_UN, U_ACOSH, UAcosh)
    EW_FLT2(EW_SET_UN, U_ATANH, UAtanh)
    EW_FLT2(EW_SET_UN, U_SOFTSIGN, USoftsign)
    EW_FLT2(EW_SET_UN, U_SOFTPLUS, USoftplus)
    EW_FLT2(EW_SET_UN, U_ELU, UElu)
    EW_FLT2(EW_SET_UN, U_SELU, USelu)
    EW_FLT2(EW_SET_UN, U_CELU, UCelu)
    EW_FLT2(EW_SET_UN, U_LEAKY, ULeaky)
    EW_FLT2(EW_SET_UN, U_HSIG, UHsig)
    EW_FLT2(EW_SET_UN, U_HSWISH, UHswish)
    EW_FLT2(EW_SET_UN, U_THRELU, UThrelu)
    EW_FLT2(EW_SET_UN, U_MISH, UMish)
    EW_FLT2(EW_SET_UN, U_SHRINK, UShrink)
    EW_FLT2(EW_SET_UN, U_GELU, UGelu)
    EW_FLT2(EW_SET_UN, U_GELU_TANH, UGeluTanh)
    EW_FLT2(EW_SET_UNB, U_ISNAN, UIsNan)
    EW_FLT2(EW_SET_UNB, U_ISINF, UIsInf)
    EW_INT8(EW_SET_UN, U_BNOT, UBnot)
    g_un[U_NOT][ULC_DT_BOOL] = un_launch<UNot, uint8_t, uint8_t>;
}

static ulc_status unary_prepare(ulc_kctx *k) {
    int u = 0;
    ew_upar p;
    ULC_TRY(ulc_sh_ew_unop(k, &u, &p));
    int dt = k->in[0]->dtype;
    ew_un_fn fn = dt > 0 && dt < ULC_DT_COUNT_ ? g_un[u][dt] : NULL;
    if (!fn) return ucu_refuse_dtype(k, dt);
    EwUState *st = NULL;
    ULC_TRY(ew_ustate(k, &st));
    st->un = fn;
    st->up.alpha = p.alpha;
    st->up.beta = p.beta;
    st->up.gamma = p.gamma;
    st->up.flags = p.flags;
    return ULC_OK;
}

static ulc_status unary_run(ulc_kctx *k) {
    EwUState *st = (EwUState *)k->state;
    if (!k->out[0]) return ULC_OK;
    return st->un(k, k->in[0]->data, k->out[0]->data, (int64_t)ulc_rt_numel(k->in[0]), &st->up);
}

static const ulc_kernel k_unary_k = {0, 0, unary_prepare, unary_run, ucu_free_state, NULL};

/* ---- Clip: min(max(x, lo), hi); lo / hi read on the device from the optional scalar inputs ----- */

template <class T>
__global__ void k_clip(const T *x, T *y, int64_t n, int64_t nvec, const T *plo, const T *phi, T dlo, T dhi) {
    const T lo = plo ? *plo : dlo, hi = phi ? *phi : dhi;
    UCU_FOR(g, nvec / 4) {
        V4<T> v = reinterpret_cast<const V4<T> *>(x)[g];
        for (int j = 0; j < 4; j++) {
            T t = v.v[j] < lo ? lo : v.v[j];
            v.v[j] = t > hi ? hi : t;
        }
        reinterpret_cast<V4<T> *>(y)[g] = v;
    }
    UCU_FOR(t, n - nvec) {
        T v = x[nvec + t] < lo ? lo : x[nvec + t];
        y[nvec + t] = v > hi ? hi : v;
    }
}

template <class T>
static ulc_status clip_launch(ulc_kctx *k, const void *x, void *y, int64_t n, const void *lo, const void *hi,
                              const unsigned char *dlo, const unsigned char *dhi) {
    if (n <= 0) return ULC_OK;
    T l, h;
    memcpy(&l, dlo, sizeof l);
    memcpy(&h, dhi, sizeof h);
    int64_t nvec = ew_aligned(x, sizeof(V4<T>)) && ew_aligned(y, sizeof(V4<T>)) ? n & ~(int64_t)3 : 0;
    auto f = k_clip<T>;
    UCU_LAUNCH(f, ew_grid(n, nvec), UCU_THREADS, 0, ucu_stream(k), (const T *)x, (T *)y, n, nvec, (const T *)lo,
               (const T *)hi, l, h);
    UCU_TRY_LAUNCH(k, "Clip");
    return ULC_OK;
}

static ulc_status clip_prepare(ulc_kctx *k) {
    int dt = k->in[0]->dtype;
    ew_clip_fn fn = dt == ULC_DT_F32   ? clip_launch<float>
                    : dt == ULC_DT_F64 ? clip_launch<double>
                    : dt == ULC_DT_I32 ? clip_launch<int32_t>
                    : dt == ULC_DT_I64 ? clip_launch<int64_t>
                                       : NULL;
    if (!fn) return ucu_refuse_dtype(k, dt);
    ew_upar p;
    memset(&p, 0, sizeof p);
    ULC_TRY(ulc_sh_clip_bounds(k, 0, &p)); /* the dtype's range, or the attributes before opset 11 */
    EwUState *st = NULL;
    ULC_TRY(ew_ustate(k, &st));
    st->clip = fn;
    memcpy(st->lo, p.lo, sizeof st->lo);
    memcpy(st->hi, p.hi, sizeof st->hi);
    return ULC_OK;
}

static ulc_status clip_run(ulc_kctx *k) {
    EwUState *st = (EwUState *)k->state;
    if (!k->out[0]) return ULC_OK;
    const void *lo = NULL, *hi = NULL;
    if (k->opset >= 11) {
        if (k->n_in > 1 && k->in[1]) lo = k->in[1]->data;
        if (k->n_in > 2 && k->in[2]) hi = k->in[2]->data;
    }
    return st->clip(k, k->in[0]->data, k->out[0]->data, (int64_t)ulc_rt_numel(k->in[0]), lo, hi, st->lo, st->hi);
}

static const ulc_kernel k_clip_k = {0, 0, clip_prepare, clip_run, ucu_free_state, NULL};

/* ---- Cast / CastLike -------------------------------------------------------------------------- */

/* Destination codes beyond ulc_dtype: float32 storage, rounded to half / bfloat16. */
enum { EW_H16 = ULC_DT_COUNT_, EW_B16, EW_NDST };

template <int D> struct EwT;
template <> struct EwT<ULC_DT_F32> { typedef float type; };
template <> struct EwT<ULC_DT_F64> { typedef double type; };
template <> struct EwT<ULC_DT_I8> { typedef int8_t type; };
template <> struct EwT<ULC_DT_I16> { typedef int16_t type; };
template <> struct EwT<ULC_DT_I32> { typedef int32_t type; };
template <> struct EwT<ULC_DT_I64> { typedef int64_t type; };
template <> struct EwT<ULC_DT_U8> { typedef uint8_t type; };
template <> struct EwT<ULC_DT_U16> { typedef uint16_t type; };
template <> struct EwT<ULC_DT_U32> { typedef uint32_t type; };
template <> struct EwT<ULC_DT_U64> { typedef uint64_t type; };
template <> struct EwT<ULC_DT_BOOL> { typedef uint8_t type; };
template <> struct EwT<EW_H16> { typedef float type; };
template <> struct EwT<EW_B16> { typedef float type; };

/* a float source (as double) to D: truncation, saturation as the CPU (k_elementwise_cast.c) */
template <int D> __device__ __forceinline__ typename EwT<D>::type ew_cast_f(double v) {
    typedef typename EwT<D>::type TD;
    if constexpr (D == ULC_DT_F32 || D == ULC_DT_F64) return (TD)v;
    else if constexpr (D == ULC_DT_I32) return ew_sat_i32(v);
    else if constexpr (D == ULC_DT_I64) return ew_sat_i64(v);
    else if constexpr (D == ULC_DT_U64) return ew_f2u64(v);
    else if constexpr (D == ULC_DT_BOOL) return (TD)(v != 0);
    else if constexpr (D == EW_H16) return ew_round_h16(ew_f32_odd(v));
    else if constexpr (D == EW_B16) return ew_round_b16(ew_f32_odd(v));
    else return (TD)ew_sat_i64(v); /* narrower integers and u32: modulo 2^bits */
}

/* an integer source to D: C conversions; halves through float32 rounded to odd */
template <int D, class TS> __device__ __forceinline__ typename EwT<D>::type ew_cast_i(TS v) {
    typedef typename EwT<D>::type TD;
    if constexpr (D == ULC_DT_BOOL) return (TD)(v != 0);
    else if constexpr (D == EW_H16 || D == EW_B16) {
        float f = EW_SIGNED(TS) ? ew_f32_odd(ew_i64_odd((int64_t)v)) : ew_f32_odd(ew_u64_odd((uint64_t)v));
        return D == EW_H16 ? ew_round_h16(f) : ew_round_b16(f);
    } else {
        return (TD)v;
    }
}

template <int S, int D> __device__ __forceinline__ typename EwT<D>::type ew_cast(typename EwT<S>::type v) {
    if constexpr (S == ULC_DT_F32 || S == ULC_DT_F64) return ew_cast_f<D>((double)v);
    else if constexpr (S == ULC_DT_BOOL) return ew_cast_i<D, int64_t>((int64_t)(v != 0));
    else return ew_cast_i<D, typename EwT<S>::type>(v);
}

template <int S, int D>
__global__ void k_cast(const typename EwT<S>::type *x, typename EwT<D>::type *y, int64_t n, int64_t nvec) {
    typedef typename EwT<S>::type TS;
    typedef typename EwT<D>::type TD;
    UCU_FOR(g, nvec / 4) {
        V4<TS> v = reinterpret_cast<const V4<TS> *>(x)[g];
        V4<TD> r;
        for (int j = 0; j < 4; j++) r.v[j] = ew_cast<S, D>(v.v[j]);
        reinterpret_cast<V4<TD> *>(y)[g] = r;
    }
    UCU_FOR(t, n - nvec) y[nvec + t] = ew_cast<S, D>(x[nvec + t]);
}

template <int S, int D> static ulc_status cast_launch(ulc_kctx *k, const void *x, void *y, int64_t n, const EwUpar *p) {
    (void)p;
    typedef typename EwT<S>::type TS;
    typedef typename EwT<D>::type TD;
    if (n <= 0) return ULC_OK;
    int64_t nvec = ew_aligned(x, sizeof(V4<TS>)) && ew_aligned(y, sizeof(V4<TD>)) ? n & ~(int64_t)3 : 0;
    auto f = k_cast<S, D>;
    UCU_LAUNCH(f, ew_grid(n, nvec), UCU_THREADS, 0, ucu_stream(k), (const TS *)x, (TD *)y, n, nvec);
    UCU_TRY_LAUNCH(k, "Cast");
    return ULC_OK;
}

static ew_un_fn g_cast[ULC_DT_COUNT_][EW_NDST];

#define EW_CAST_SRCS(X)                                                                            \
    X(F32) X(F64) X(I8) X(I16) X(I32) X(I64) X(U8) X(U16) X(U32) X(U64) X(BOOL)
#define EW_CAST_SET(S, D) g_cast[ULC_DT_##S][D] = cast_launch<ULC_DT_##S, D>;
#define EW_CAST_ROW(S)                                                                             \
    EW_CAST_SET(S, ULC_DT_F32) EW_CAST_SET(S, ULC_DT_F64) EW_CAST_SET(S, ULC_DT_I8)                \
    EW_CAST_SET(S, ULC_DT_I16) EW_CAST_SET(S, ULC_DT_I32) EW_CAST_SET(S, ULC_DT_I64)               \
    EW_CAST_SET(S, ULC_DT_U8) EW_CAST_SET(S, ULC_DT_U16) EW_CAST_SET(S, ULC_DT_U32)                \
    EW_CAST_SET(S, ULC_DT_U64) EW_CAST_SET(S, ULC_DT_BOOL) EW_CAST_SET(S, EW_H16)                  \
    EW_CAST_SET(S, EW_B16)

static void ew_fill_cast(void) { EW_CAST_SRCS(EW_CAST_ROW) }

static ulc_status cast_prepare(ulc_kctx *k) {
    int to = ULC_DT_UNDEFINED, dt = ULC_DT_UNDEFINED;
    ULC_TRY(ulc_sh_cast_target(k, &to, &dt));
    int src = k->in[0]->dtype;
    int dst = to == ULC_DT_F16 ? EW_H16 : to == ULC_DT_BF16 ? EW_B16 : to;
    ew_un_fn fn = src > 0 && src < ULC_DT_COUNT_ && dst > 0 && dst < EW_NDST ? g_cast[src][dst] : NULL;
    if (!fn)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "cast from %s to %s is not supported by backend cuda",
                          ulc_dtype_name(src), ulc_dtype_name(to));
    EwUState *st = NULL;
    ULC_TRY(ew_ustate(k, &st));
    st->un = fn;
    return ULC_OK;
}

static const ulc_kernel k_cast_k = {0, 0, cast_prepare, unary_run, ucu_free_state, NULL};

/* ---- registration ------------------------------------------------------------------------------ */

void ucu_reg_elementwise_unary(ucu_table t) {
    ew_fill_unary();
    ew_fill_cast();
    for (size_t i = 0; i < ulc_ew_n_unary; i++) t[ulc_ew_unary_ops[i]] = &k_unary_k;
    t[ULC_OP_Clip] = &k_clip_k;
    t[ULC_OP_Cast] = &k_cast_k;
    t[ULC_OP_CastLike] = &k_cast_k;
}

UCU_END
