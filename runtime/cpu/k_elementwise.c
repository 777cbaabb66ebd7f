/*
 * k_elementwise.c — the CPU backend's elementwise ops (ONNX default domain, opsets 1–21).
 *
 * Binary, numpy multidirectional broadcasting (opset < 7: legacy `broadcast`/`axis`, B aligned
 * to A at `axis`); x = input 0, y = input 1:
 *   Add x + y   Sub x - y   Mul x·y          integers wrap (two's complement), as onnxruntime
 *   Div x / y   integers truncate toward zero (C), x / 0 = 0 and MIN / -1 = MIN instead of a trap
 *   Pow x^y     output dtype = x's; y may be any numeric dtype (opset ≥ 12). float^float: powf /
 *               pow (y = 2, 3 as x·x, x·x·x like onnxruntime); int^int: exact, by squaring,
 *               wrapping; mixed: pow in double, converted to x's dtype
 *   Mod         fmod = 0: sign of the divisor (Python %); fmod = 1: sign of the dividend (C fmod);
 *               x mod 0 = 0 for integers
 *   BitShift    unsigned; direction LEFT / RIGHT; shifts ≥ the bit width give 0
 *   BitwiseAnd/Or/Xor (integers)   And/Or/Xor (bool)
 *   Equal Less Greater LessOrEqual GreaterOrEqual → bool (IEEE: NaN compares false)
 *   PRelu       x < 0 ? slope·x : x, slope broadcast to x (unidirectional)
 * Variadic (1..N inputs, broadcast together): Max Min (NaN propagates, as numpy) Sum Mean.
 * Where(cond, x, y) = cond ? x : y, the three broadcast together; any dtype.
 * Unary ops and Clip: k_elementwise_unary.c. Cast and CastLike: k_elementwise_cast.c.
 * f32 exp/tanh/erf/sigmoid/GELU: k_elementwise_math.c.
 *
 * How the loops run. Every typed loop takes (a, b, out, n, mode) where mode says which operand
 * is a scalar for this run of n elements (VV, SV, VS, SS). A broadcast is planned once per call:
 * the output's dims of 1 are dropped and adjacent dims merged wherever every operand stays
 * contiguous (or stays broadcast) across them, e.g. [N,C,H,W] + [C,1,1] becomes [N·C, H·W]
 * with y strided (1, 0), [B,T,D] + [D] becomes [B·T, D] with y strided (0, 1), same shapes
 * become one run. The output is then walked in runs of the innermost collapsed dim, each one
 * loop call. Tensors of 64K elements or more are split across the OpenMP pool by element range.
 * f32 Add/Sub/Mul/Div/Max/Min/PRelu and the simple f32 unary loops are also compiled for AVX2 and
 * chosen when the CPU has it.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "runtime/cpu/k_elementwise_loops.h"

#define EW_MAX_OPS 3

static int ew_avx2; /* set once at registration */

/* ---- broadcast plans and the walk ----------------------------------------------------------- */

enum { EW_VV = 0, EW_SV = 1, EW_VS = 2, EW_SS = 3 }; /* SV: a is a scalar for the run */

typedef struct ew_plan {
    int rank, nops;                          /* collapsed rank (≥ 1), operand count */
    int64_t numel;                           /* elements of the output */
    int64_t dims[ULC_RT_MAX_RANK];           /* collapsed output dims */
    int64_t st[EW_MAX_OPS][ULC_RT_MAX_RANK]; /* element strides of each operand; the innermost
                                                is 0 (broadcast) or 1 */
} ew_plan;

static void ew_plan_make(ew_plan *p, const ulc_rt_tensor *out, const ulc_rt_tensor *const *ops,
                         int nops) {
    p->nops = nops;
    p->numel = (int64_t)ulc_rt_numel(out);
    int r = ulc_k_bcast_collapse(out, ops, nops, p->dims, p->st);
    if (r == 0) { /* one element */
        p->dims[0] = 1;
        for (int k = 0; k < nops; k++) p->st[k][0] = 1;
        r = 1;
    }
    p->rank = r;
}

/* One run: n output elements from out_off on; off[k] = operand k's element offset. */
typedef void (*ew_seg_fn)(void *job, const int64_t *off, int64_t out_off, int64_t n);

/* Walks output elements [i0, i1) in runs of the innermost collapsed dim. */
static void ew_walk(const ew_plan *p, int64_t i0, int64_t i1, ew_seg_fn seg, void *job) {
    const int r = p->rank, nops = p->nops;
    const int64_t inner = p->dims[r - 1];
    int64_t idx[ULC_RT_MAX_RANK] = {0}, base[EW_MAX_OPS] = {0}, off[EW_MAX_OPS];
    int64_t row = i0 / inner, col = i0 % inner;
    for (int d = r - 2; d >= 0; d--) {
        idx[d] = row % p->dims[d];
        row /= p->dims[d];
        for (int k = 0; k < nops; k++) base[k] += idx[d] * p->st[k][d];
    }
    for (int64_t i = i0; i < i1;) {
        int64_t len = inner - col < i1 - i ? inner - col : i1 - i;
        for (int k = 0; k < nops; k++) off[k] = base[k] + col * p->st[k][r - 1];
        seg(job, off, i, len);
        i += len;
        col = 0;
        for (int d = r - 2; d >= 0; d--) {
            for (int k = 0; k < nops; k++) base[k] += p->st[k][d];
            if (++idx[d] < p->dims[d]) break;
            for (int k = 0; k < nops; k++) base[k] -= p->st[k][d] * p->dims[d];
            idx[d] = 0;
        }
    }
}

typedef struct ew_task {
    const ew_plan *p;
    ew_seg_fn seg;
    void *job;
} ew_task;

static void ew_task_body(int64_t i0, int64_t i1, void *arg) {
    const ew_task *t = arg;
    ew_walk(t->p, i0, i1, t->seg, t->job);
}

static void ew_exec(const ew_plan *p, ew_seg_fn seg, void *job) {
    if (p->numel <= 0) return;
    ew_task t = {p, seg, job};
    ulc_k_parallel(p->numel, EW_GRAIN, ew_task_body, &t);
}

/* ---- typed binary loops --------------------------------------------------------------------- */

typedef void (*ew_bin_fn)(const void *a, const void *b, void *o, int64_t n, int mode);

#define EW_BIN_BODY(TA, TB, TO, EXPR)                                                             \
    const TA *A = (const TA *)pa;                                                                 \
    const TB *B = (const TB *)pb;                                                                 \
    TO *O = (TO *)po;                                                                             \
    switch (mode) {                                                                               \
    case EW_VV:                                                                                   \
        for (int64_t i = 0; i < n; i++) {                                                         \
            TA a = A[i];                                                                          \
            TB b = B[i];                                                                          \
            (void)b;                                                                              \
            O[i] = (TO)(EXPR);                                                                    \
        }                                                                                         \
        break;                                                                                    \
    case EW_SV: {                                                                                 \
        TA a = A[0];                                                                              \
        for (int64_t i = 0; i < n; i++) {                                                         \
            TB b = B[i];                                                                          \
            (void)b;                                                                              \
            O[i] = (TO)(EXPR);                                                                    \
        }                                                                                         \
        break;                                                                                    \
    }                                                                                             \
    case EW_VS: {                                                                                 \
        TB b = B[0];                                                                              \
        (void)b;                                                                                  \
        for (int64_t i = 0; i < n; i++) {                                                         \
            TA a = A[i];                                                                          \
            O[i] = (TO)(EXPR);                                                                    \
        }                                                                                         \
        break;                                                                                    \
    }                                                                                             \
    default: {                                                                                    \
        TA a = A[0];                                                                              \
        TB b = B[0];                                                                              \
        (void)b;                                                                                  \
        TO v = (TO)(EXPR);                                                                        \
        for (int64_t i = 0; i < n; i++) O[i] = v;                                                 \
    }                                                                                             \
    }

#define EW_BIN(name, TA, TB, TO, EXPR)                                                            \
    static void name(const void *pa, const void *pb, void *po, int64_t n, int mode) {             \
        EW_BIN_BODY(TA, TB, TO, EXPR)                                                             \
    }
/* the same loop compiled for AVX2 as name##_avx2 (f32 hot ops) */
#define EW_BIN2(name, TA, TB, TO, EXPR)                                                           \
    EW_BIN(name, TA, TB, TO, EXPR)                                                                \
    EW_AVX2_ATTR static void name##_avx2(const void *pa, const void *pb, void *po, int64_t n,     \
                                         int mode) {                                              \
        EW_BIN_BODY(TA, TB, TO, EXPR)                                                             \
    }

/* arithmetic */
EW_BIN2(add_F32, float, float, float, a + b)
EW_BIN2(sub_F32, float, float, float, a - b)
EW_BIN2(mul_F32, float, float, float, a *b)
EW_BIN2(div_F32, float, float, float, a / b)
EW_BIN2(max_F32, float, float, float, EW_FMAX(a, b))
EW_BIN2(min_F32, float, float, float, EW_FMIN(a, b))
EW_BIN2(prelu_F32, float, float, float, a < 0 ? a * b : a)
EW_BIN(add_F64, double, double, double, a + b)
EW_BIN(sub_F64, double, double, double, a - b)
EW_BIN(mul_F64, double, double, double, a *b)
EW_BIN(div_F64, double, double, double, a / b)
EW_BIN(max_F64, double, double, double, EW_FMAX(a, b))
EW_BIN(min_F64, double, double, double, EW_FMIN(a, b))
EW_BIN(prelu_F64, double, double, double, a < 0 ? a * b : a)

#define EW_DEF_INT_ARITH(D, T, W)                                                                 \
    EW_BIN(add_##D, T, T, T, (W)a + (W)b)                                                         \
    EW_BIN(sub_##D, T, T, T, (W)a - (W)b)                                                         \
    EW_BIN(mul_##D, T, T, T, (W)a *(W)b)                                                          \
    EW_BIN(max_##D, T, T, T, a > b ? a : b)                                                       \
    EW_BIN(min_##D, T, T, T, a < b ? a : b)                                                       \
    EW_BIN(band_##D, T, T, T, a &b)                                                               \
    EW_BIN(bor_##D, T, T, T, a | b)                                                               \
    EW_BIN(bxor_##D, T, T, T, a ^ b)
EW_INTS(EW_DEF_INT_ARITH)

#define EW_DEF_SINT(D, T, W)                                                                      \
    EW_BIN(div_##D, T, T, T, b == 0 ? (W)0 : b == -1 ? (W)0 - (W)a : (W)(a / b))                  \
    EW_BIN(fmod_##D, T, T, T, (b == 0 || b == -1) ? 0 : a % b)                                    \
    EW_BIN(mod_##D, T, T, T,                                                                      \
           (b == 0 || b == -1) ? 0 : (a % b != 0 && ((a % b < 0) != (b < 0))) ? a % b + b : a % b) \
    EW_BIN(prelu_##D, T, T, T, a < 0 ? (W)a * (W)b : (W)a)
EW_SINTS(EW_DEF_SINT)

#define EW_DEF_UINT(D, T, W)                                                                      \
    EW_BIN(div_##D, T, T, T, b == 0 ? 0 : a / b)                                                  \
    EW_BIN(fmod_##D, T, T, T, b == 0 ? 0 : a % b)                                                 \
    EW_BIN(prelu_##D, T, T, T, a)                                                                 \
    EW_BIN(shl_##D, T, T, T, b >= 8 * sizeof(T) ? (W)0 : (W)a << b)                               \
    EW_BIN(shr_##D, T, T, T, b >= 8 * sizeof(T) ? (W)0 : (W)a >> b)
EW_UINTS(EW_DEF_UINT)

/* float Mod: fmod = 1 is C fmod; fmod = 0 gives the divisor's sign (numpy mod) */
EW_BIN(fmod_F32, float, float, float, fmodf(a, b))
EW_BIN(fmod_F64, double, double, double, fmod(a, b))
static inline float ew_pymodf(float a, float b) {
    float r = fmodf(a, b);
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
static inline double ew_pymod(double a, double b) {
    double r = fmod(a, b);
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
EW_BIN(mod_F32, float, float, float, ew_pymodf(a, b))
EW_BIN(mod_F64, double, double, double, ew_pymod(a, b))

/* comparisons → bool; Equal also on bool */
#define EW_DEF_CMP(D, T, W)                                                                       \
    EW_BIN(eq_##D, T, T, uint8_t, a == b)                                                         \
    EW_BIN(lt_##D, T, T, uint8_t, a < b)                                                          \
    EW_BIN(gt_##D, T, T, uint8_t, a > b)                                                          \
    EW_BIN(le_##D, T, T, uint8_t, a <= b)                                                         \
    EW_BIN(ge_##D, T, T, uint8_t, a >= b)
EW_NUMS(EW_DEF_CMP)
EW_BIN(eq_BOOL, uint8_t, uint8_t, uint8_t, (a != 0) == (b != 0))
EW_BIN(and_BOOL, uint8_t, uint8_t, uint8_t, (a != 0) & (b != 0))
EW_BIN(or_BOOL, uint8_t, uint8_t, uint8_t, (a != 0) | (b != 0))
EW_BIN(xor_BOOL, uint8_t, uint8_t, uint8_t, (a != 0) ^ (b != 0))

/* ---- Pow ------------------------------------------------------------------------------------- */

/* x^y for integers, exact with wrapping; y < 0 gives 1/x^|y| truncated (0 unless |x| = 1) */
static inline int64_t ew_ipow(int64_t x, int64_t y) {
    if (y < 0) {
        if (x == 1) return 1;
        if (x == -1) return (y & 1) ? -1 : 1;
        return 0;
    }
    uint64_t r = 1, b = (uint64_t)x;
    uint64_t e = (uint64_t)y;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* double → integer, truncating, saturating at the type's range (NaN → 0) */
static inline int64_t ew_f2i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}
static inline int32_t ew_f2i32(double v) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    return (int32_t)v;
}

EW_BIN(pow_F32, float, float, float, powf(a, b))
EW_BIN(pow_F64, double, double, double, pow(a, b))
EW_BIN(pow_I32, int32_t, int32_t, int32_t, (uint32_t)ew_ipow(a, b))
EW_BIN(pow_I64, int64_t, int64_t, int64_t, ew_ipow(a, b))

/* mixed dtypes: base F32/F64/I32/I64 × any numeric exponent */
#define EW_POWF_F32(a, b) (float)pow((double)(a), (double)(b))
#define EW_POWF_F64(a, b) pow((double)(a), (double)(b))
#define EW_POWF_I32(a, b) ew_f2i32(pow((double)(a), (double)(b)))
#define EW_POWF_I64(a, b) ew_f2i64(pow((double)(a), (double)(b)))
#define EW_POWI_F32(a, b) (float)pow((double)(a), (double)(b))
#define EW_POWI_F64(a, b) pow((double)(a), (double)(b))
#define EW_POWI_I32(a, b) (uint32_t)ew_ipow((a), (int64_t)(b))
#define EW_POWI_I64(a, b) ew_ipow((a), (int64_t)(b))
#define EW_POW_EXP_F(BD, BT, ED, ET, W) EW_BIN(pow_##BD##_##ED, BT, ET, BT, EW_POWF_##BD(a, b))
#define EW_POW_EXP_I(BD, BT, ED, ET, W) EW_BIN(pow_##BD##_##ED, BT, ET, BT, EW_POWI_##BD(a, b))
#define EW_POW_BASE(BD, BT)                                                                       \
    EW_POW_EXP_F(BD, BT, F32, float, 0)                                                           \
    EW_POW_EXP_F(BD, BT, F64, double, 0)                                                          \
    EW_POW_EXP_I(BD, BT, I8, int8_t, 0)                                                           \
    EW_POW_EXP_I(BD, BT, I16, int16_t, 0)                                                         \
    EW_POW_EXP_I(BD, BT, I32, int32_t, 0)                                                         \
    EW_POW_EXP_I(BD, BT, I64, int64_t, 0)                                                         \
    EW_POW_EXP_I(BD, BT, U8, uint8_t, 0)                                                          \
    EW_POW_EXP_I(BD, BT, U16, uint16_t, 0)                                                        \
    EW_POW_EXP_I(BD, BT, U32, uint32_t, 0)                                                        \
    EW_POW_EXP_I(BD, BT, U64, uint64_t, 0)
EW_POW_BASE(F32, float)
EW_POW_BASE(F64, double)
EW_POW_BASE(I32, int32_t)
EW_POW_BASE(I64, int64_t)

#define EW_POW_ROW(BD)                                                                            \
    [ULC_DT_F32] = pow_##BD##_F32, [ULC_DT_F64] = pow_##BD##_F64, [ULC_DT_I8] = pow_##BD##_I8,    \
    [ULC_DT_I16] = pow_##BD##_I16, [ULC_DT_I32] = pow_##BD##_I32, [ULC_DT_I64] = pow_##BD##_I64,  \
    [ULC_DT_U8] = pow_##BD##_U8, [ULC_DT_U16] = pow_##BD##_U16, [ULC_DT_U32] = pow_##BD##_U32,    \
    [ULC_DT_U64] = pow_##BD##_U64
static const ew_bin_fn g_pow_mixed[ULC_DT_COUNT_][ULC_DT_COUNT_] = {
    [ULC_DT_F32] = {EW_POW_ROW(F32)},
    [ULC_DT_F64] = {EW_POW_ROW(F64)},
    [ULC_DT_I32] = {EW_POW_ROW(I32)},
    [ULC_DT_I64] = {EW_POW_ROW(I64)},
};

/* float base, float scalar exponent: the common x^2 (LayerNorm and GELU decompositions) as x·x,
 * x^3 as x·x·x, x^1 as x, like onnxruntime; else powf. */
EW_BIN2(sq_F32, float, float, float, a *a)
EW_BIN2(cube_F32, float, float, float, a *a *a)
EW_BIN(sq_F64, double, double, double, a *a)
EW_BIN(cube_F64, double, double, double, a *a *a)
EW_BIN(copy_F32, float, float, float, a)
EW_BIN(copy_F64, double, double, double, a)

/* ---- binary op table ------------------------------------------------------------------------- */

static ew_bin_fn g_bin[B_COUNT_][ULC_DT_COUNT_];

static void ew_fill_binary(void) {
#define SET(op, D, fn) g_bin[op][ULC_DT_##D] = fn;
#define SET_INT(D, T, W)                                                                          \
    SET(B_ADD, D, add_##D) SET(B_SUB, D, sub_##D) SET(B_MUL, D, mul_##D) SET(B_DIV, D, div_##D)   \
    SET(B_MAX, D, max_##D) SET(B_MIN, D, min_##D) SET(B_BAND, D, band_##D)                        \
    SET(B_BOR, D, bor_##D) SET(B_BXOR, D, bxor_##D) SET(B_FMOD, D, fmod_##D)                      \
    SET(B_PRELU, D, prelu_##D)
    EW_INTS(SET_INT)
#define SET_SINT(D, T, W) SET(B_MOD, D, mod_##D)
    EW_SINTS(SET_SINT)
#define SET_UINT(D, T, W) SET(B_MOD, D, fmod_##D) SET(B_SHL, D, shl_##D) SET(B_SHR, D, shr_##D)
    EW_UINTS(SET_UINT)
#define SET_CMP(D, T, W)                                                                          \
    SET(B_EQ, D, eq_##D) SET(B_LT, D, lt_##D) SET(B_GT, D, gt_##D) SET(B_LE, D, le_##D)           \
    SET(B_GE, D, ge_##D)
    EW_NUMS(SET_CMP)
    SET(B_EQ, BOOL, eq_BOOL)
    SET(B_AND, BOOL, and_BOOL)
    SET(B_OR, BOOL, or_BOOL)
    SET(B_XOR, BOOL, xor_BOOL)
    SET(B_ADD, F64, add_F64)
    SET(B_SUB, F64, sub_F64)
    SET(B_MUL, F64, mul_F64)
    SET(B_DIV, F64, div_F64)
    SET(B_MAX, F64, max_F64)
    SET(B_MIN, F64, min_F64)
    SET(B_PRELU, F64, prelu_F64)
    SET(B_MOD, F32, mod_F32)
    SET(B_MOD, F64, mod_F64)
    SET(B_FMOD, F32, fmod_F32)
    SET(B_FMOD, F64, fmod_F64)
    SET(B_POW, F32, pow_F32)
    SET(B_POW, F64, pow_F64)
    SET(B_POW, I32, pow_I32)
    SET(B_POW, I64, pow_I64)
    int v = ew_avx2;
    SET(B_ADD, F32, v ? add_F32_avx2 : add_F32)
    SET(B_SUB, F32, v ? sub_F32_avx2 : sub_F32)
    SET(B_MUL, F32, v ? mul_F32_avx2 : mul_F32)
    SET(B_DIV, F32, v ? div_F32_avx2 : div_F32)
    SET(B_MAX, F32, v ? max_F32_avx2 : max_F32)
    SET(B_MIN, F32, v ? min_F32_avx2 : min_F32)
    SET(B_PRELU, F32, v ? prelu_F32_avx2 : prelu_F32)
#undef SET
#undef SET_INT
#undef SET_SINT
#undef SET_UINT
#undef SET_CMP
}

/* Table lookups that tolerate any dtype code. */
static ew_bin_fn bin_fn(int op, int dt) {
    return dt > 0 && dt < ULC_DT_COUNT_ ? g_bin[op][dt] : NULL;
}
static ew_bin_fn pow_mixed_fn(int a, int b) {
    return a > 0 && a < ULC_DT_COUNT_ && b > 0 && b < ULC_DT_COUNT_ ? g_pow_mixed[a][b] : NULL;
}

/* ---- binary and variadic kernels ---------------------------------------------------------- */

typedef struct bin_job {
    ew_bin_fn fn;
    const char *a, *b;
    char *o;
    size_t ea, eb, eo;
    int mode;
} bin_job;

static void bin_seg(void *jv, const int64_t *off, int64_t o, int64_t n) {
    const bin_job *j = jv;
    j->fn(j->a + off[0] * (int64_t)j->ea, j->b + off[1] * (int64_t)j->eb, j->o + o * (int64_t)j->eo,
          n, j->mode);
}

/* out = a ⊕ b, broadcast; out has the broadcast shape (it may be a itself, same shape). */
static void ew_binary(ew_bin_fn fn, const ulc_rt_tensor *a, const ulc_rt_tensor *b,
                      ulc_rt_tensor *out) {
    ew_plan p;
    const ulc_rt_tensor *ops[2] = {a, b};
    ew_plan_make(&p, out, ops, 2);
    int r = p.rank - 1;
    bin_job j = {fn,
                 a->data,
                 b->data,
                 out->data,
                 ulc_k_dtype_size(a->dtype),
                 ulc_k_dtype_size(b->dtype),
                 ulc_k_dtype_size(out->dtype),
                 (p.st[0][r] ? 0 : EW_SV) | (p.st[1][r] ? 0 : EW_VS)};
    ew_exec(&p, bin_seg, &j);
}

/* Pow's loop: specialised for a constant-looking scalar float exponent. */
static ew_bin_fn ew_pow_fn(const ulc_rt_tensor *a, const ulc_rt_tensor *b) {
    if (a->dtype != b->dtype) return pow_mixed_fn(a->dtype, b->dtype);
    if (ulc_rt_numel(b) == 1 && b->data && (a->dtype == ULC_DT_F32 || a->dtype == ULC_DT_F64)) {
        double e = a->dtype == ULC_DT_F32 ? *(const float *)b->data : *(const double *)b->data;
        int f32 = a->dtype == ULC_DT_F32;
        if (e == 1.0) return f32 ? copy_F32 : copy_F64;
        if (e == 2.0) return f32 ? (ew_avx2 ? sq_F32_avx2 : sq_F32) : sq_F64;
        if (e == 3.0) return f32 ? (ew_avx2 ? cube_F32_avx2 : cube_F32) : cube_F64;
    }
    return bin_fn(B_POW, a->dtype);
}

static ulc_status binary_run(ulc_kctx *k) {
    int op = 0;
    ULC_TRY(ulc_sh_ew_binop(k, &op));
    const ulc_rt_tensor *a = k->in[0], *b = k->in[1];
    ulc_rt_tensor bv;
    ULC_TRY(ulc_sh_ew_legacy_view(k, a, b, &bv));
    ew_bin_fn fn = op == B_POW ? ew_pow_fn(a, b) : bin_fn(op, a->dtype);
    if (!fn || !k->out[0]) return ULC_OK; /* the shape rule reported it */
    ew_binary(fn, a, &bv, k->out[0]);
    return ULC_OK;
}

static const ulc_kernel k_binary = {.run = binary_run};

EW_BIN(first_1, uint8_t, uint8_t, uint8_t, a)
EW_BIN(first_2, uint16_t, uint16_t, uint16_t, a)
EW_BIN(first_4, uint32_t, uint32_t, uint32_t, a)
EW_BIN(first_8, uint64_t, uint64_t, uint64_t, a)

static ew_bin_fn ew_copy_fn(size_t esz) {
    switch (esz) {
    case 1: return first_1;
    case 2: return first_2;
    case 4: return first_4;
    default: return first_8;
    }
}

static ulc_status variadic_run(ulc_kctx *k) {
    int op = 0;
    ULC_TRY(ulc_sh_ew_binop(k, &op));
    ulc_rt_tensor *o = k->out[0];
    if (!o) return ULC_OK;
    int dt = k->in[0]->dtype;
    ew_bin_fn fn = bin_fn(op, dt);
    if (!fn) return ULC_OK; /* the shape rule reported it */
    if (k->n_in == 1) {
        ew_binary(ew_copy_fn(ulc_k_dtype_size(dt)), k->in[0], k->in[0], o);
    } else {
        ew_binary(fn, k->in[0], k->in[1], o);
        for (int i = 2; i < k->n_in; i++) ew_binary(fn, o, k->in[i], o);
    }
    if (k->node->op == ULC_OP_Mean && k->n_in > 1) {
        int64_t n = (int64_t)ulc_rt_numel(o);
        if (dt == ULC_DT_F32) {
            float d = (float)k->n_in, *y = o->data;
            for (int64_t i = 0; i < n; i++) y[i] /= d;
        } else {
            double d = (double)k->n_in, *y = o->data;
            for (int64_t i = 0; i < n; i++) y[i] /= d;
        }
    }
    return ULC_OK;
}

static const ulc_kernel k_variadic = {.run = variadic_run};

/* ---- Where ----------------------------------------------------------------------------------- */

typedef struct where_job {
    const uint8_t *c;
    const char *x, *y;
    char *o;
    size_t es;
    int64_t sc, sx, sy; /* inner strides, 0 or 1 */
} where_job;

/* The run's common shapes get their own loops (vectorisable): everything dense; one of X, Y a
 * scalar (a mask fill, GPT-2's Where(mask, scores, -inf)); the condition a scalar (a copy). */
#define EW_WHERE_LOOP(T)                                                                          \
    {                                                                                             \
        const T *X = (const T *)x, *Y = (const T *)y;                                             \
        T *O = (T *)o;                                                                            \
        if (j->sc && j->sx && j->sy) {                                                            \
            for (int64_t i = 0; i < n; i++) O[i] = C[i] ? X[i] : Y[i];                            \
        } else if (j->sc && j->sx) {                                                              \
            const T yv = Y[0];                                                                    \
            for (int64_t i = 0; i < n; i++) O[i] = C[i] ? X[i] : yv;                              \
        } else if (j->sc && j->sy) {                                                              \
            const T xv = X[0];                                                                    \
            for (int64_t i = 0; i < n; i++) O[i] = C[i] ? xv : Y[i];                              \
        } else if (!j->sc) {                                                                      \
            const T *S = C[0] ? X : Y;                                                            \
            int64_t ss = C[0] ? j->sx : j->sy;                                                    \
            if (ss)                                                                               \
                memcpy(O, S, (size_t)n * sizeof(T));                                              \
            else                                                                                  \
                for (int64_t i = 0; i < n; i++) O[i] = S[0];                                      \
        } else {                                                                                  \
            for (int64_t i = 0; i < n; i++) O[i] = C[i * j->sc] ? X[i * j->sx] : Y[i * j->sy];    \
        }                                                                                         \
        break;                                                                                    \
    }

static void where_seg(void *jv, const int64_t *off, int64_t oo, int64_t n) {
    const where_job *j = jv;
    const uint8_t *C = j->c + off[0];
    const char *x = j->x + off[1] * (int64_t)j->es, *y = j->y + off[2] * (int64_t)j->es;
    char *o = j->o + oo * (int64_t)j->es;
    switch (j->es) {
    case 1: EW_WHERE_LOOP(uint8_t)
    case 2: EW_WHERE_LOOP(uint16_t)
    case 4: EW_WHERE_LOOP(uint32_t)
    default: EW_WHERE_LOOP(uint64_t)
    }
}

static ulc_status where_run(ulc_kctx *k) {
    ulc_rt_tensor *o = k->out[0];
    if (!o) return ULC_OK;
    ew_plan p;
    ew_plan_make(&p, o, (const ulc_rt_tensor *const *)k->in, 3);
    int r = p.rank - 1;
    where_job j = {k->in[0]->data, k->in[1]->data, k->in[2]->data, o->data,
                   ulc_k_dtype_size(o->dtype), p.st[0][r], p.st[1][r], p.st[2][r]};
    ew_exec(&p, where_seg, &j);
    return ULC_OK;
}

static const ulc_kernel k_where = {.run = where_run};

/* ---- registration ---------------------------------------------------------------------------- */

void ulc_cpu_register_elementwise(const ulc_kernel **table) {
#if EW_X86
    ew_avx2 = ulc_k_avx2();
#endif
    ew_fill_binary();
    /* the shape rules (runtime/shape/s_elementwise.c) accept exactly the dtypes with a loop */
    for (int op = 0; op < B_COUNT_; op++)
        for (int dt = 1; dt < ULC_DT_COUNT_; dt++)
            ULC_ASSERT((bin_fn(op, dt) != NULL) == ulc_sh_binary_dtype_ok(op, dt));
    for (int a = 1; a < ULC_DT_COUNT_; a++)
        for (int b = 1; b < ULC_DT_COUNT_; b++)
            ULC_ASSERT((pow_mixed_fn(a, b) != NULL) == ulc_sh_pow_dtypes_ok(a, b));
    for (size_t i = 0; i < ulc_ew_n_binary; i++) table[ulc_ew_binary_ops[i]] = &k_binary;
    for (size_t i = 0; i < ulc_ew_n_variadic; i++)
        table[ulc_ew_variadic_ops[i]] = &k_variadic;
    table[ULC_OP_Where] = &k_where;
    ulc_cpu_register_unary(table);
    ulc_cpu_register_cast(table);
}

