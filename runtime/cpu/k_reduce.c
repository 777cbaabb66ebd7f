/*
 * k_reduce.c — reductions over axes (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
 * ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp) and ArgMax / ArgMin.
 * Softmax, LogSoftmax and LayerNormalization (normalisations along rows) live in
 * k_reduce_norm.c; ulc_cpu_register_reduce, at the end of this file, registers the whole family.
 *
 * For data X and a set S of reduced axes, each output element y[k] reduces the slice X[k, S] of
 * n = prod(dims[S]) elements (the value over an empty slice, n = 0, in brackets):
 *
 *   ReduceSum        Σ x                                  [0]
 *   ReduceMean       Σ x / n                              [NaN; integers: 0]
 *   ReduceProd       Π x                                  [1]
 *   ReduceMax        max x                                [-inf; integers: the type's minimum]
 *   ReduceMin        min x                                [+inf; integers: the type's maximum]
 *   ReduceL1         Σ |x|                                [0]
 *   ReduceL2         sqrt(Σ x²)                           [0]
 *   ReduceSumSquare  Σ x²                                 [0]
 *   ReduceLogSum     log Σ x                              [-inf]
 *   ReduceLogSumExp  m + log Σ exp(x - m), m = max of the finite x (so exp cannot overflow)  [-inf]
 *
 * Axes: the `axes` attribute before opset 18 (ReduceSum: before 13), an optional int64 input
 * from then on. No axes (or an empty list) reduces every axis, except that with the input form
 * and noop_with_empty_axes=1 the op is the identity, Y = X. Negative axes count from the end.
 * keepdims=1 (default) keeps each reduced axis as size 1, keepdims=0 drops it.
 * Max and Min take bool from opset 20 (max = any, min = all).
 *
 *   ArgMax / ArgMin  y = the int64 index along `axis` (default 0) of the maximum / minimum; the
 *                    first such index, the last with select_last_index=1; NaN counts as the
 *                    extreme, as in numpy. keepdims as above.
 *
 * Precision: float sums accumulate in double, so ReduceMean over a 50k row of f32 loses nothing
 * to summation order. Integer types reduce exactly in 64-bit arithmetic (wrapping like the
 * type's own arithmetic would) except L2, LogSum and LogSumExp, computed in double.
 *
 * Layout: with the reduced axes known, adjacent axes of the same role (kept / reduced) merge and
 * size-1 axes drop out, so nearly every reduction is [O, R, I]: O kept, R reduced, I kept.
 *   I == 1  a row reduction over contiguous memory (ReduceMean over the hidden size);
 *   I > 1   a middle axis (spatial means, axis-0 sums), reduced in blocks of columns so the
 *           inner loop runs over contiguous memory;
 *   other   patterns (R K R, K R K R, ...) walk the reduced axes with an odometer.
 * f32, the hot dtype, has dedicated loops for the first two (AVX2 twins of the sum family when
 * the CPU has AVX2, unless ULC_NO_SIMD=1); every dtype goes through the odometer walker, which
 * loads strided runs into a double (or int64) block and reduces those.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ULC_RED_X86 1
#else
#define ULC_RED_X86 0
#endif

#include "runtime/cpu/cpu.h"
#include "runtime/shape/params.h"

/* k_reduce_norm.c: Softmax, LogSoftmax, LayerNormalization. */
void ulc_cpu_register_norm(const ulc_kernel **table);

typedef enum red_kind {
    RK_SUM,
    RK_MEAN,
    RK_PROD,
    RK_MAX,
    RK_MIN,
    RK_L1,
    RK_L2,
    RK_SUMSQ,
    RK_LOGSUM,
    RK_LSE,
    /* internal phases of ReduceLogSumExp: the max of the finite values, then Σ exp(x - m) */
    RK_FMAX,
    RK_SUMEXP
} red_kind;

static red_kind red_kind_of(ulc_op op) {
    switch (op) {
    case ULC_OP_ReduceMean: return RK_MEAN;
    case ULC_OP_ReduceProd: return RK_PROD;
    case ULC_OP_ReduceMax: return RK_MAX;
    case ULC_OP_ReduceMin: return RK_MIN;
    case ULC_OP_ReduceL1: return RK_L1;
    case ULC_OP_ReduceL2: return RK_L2;
    case ULC_OP_ReduceSumSquare: return RK_SUMSQ;
    case ULC_OP_ReduceLogSum: return RK_LOGSUM;
    case ULC_OP_ReduceLogSumExp: return RK_LSE;
    default: return RK_SUM;
    }
}

/* The accumulator's starting value for float reductions: the result over an empty slice before
 * finalisation. */
static double red_init(red_kind kind) {
    switch (kind) {
    case RK_PROD: return 1.0;
    case RK_MAX:
    case RK_FMAX: return -INFINITY;
    case RK_MIN: return INFINITY;
    default: return 0.0;
    }
}

/* ---- shapes -------------------------------------------------------------------------------- */

/* The input's axes after merging adjacent axes of the same role and dropping size-1 axes. */
typedef struct red_shape {
    int n;                            /* merged groups */
    int64_t dims[ULC_RT_MAX_RANK];    /* group sizes */
    int64_t stride[ULC_RT_MAX_RANK];  /* element stride of each group in the input */
    int red[ULC_RT_MAX_RANK];         /* 1: reduced group */
    int64_t count;                    /* reduced elements per output element */
    int64_t O, R, I;                  /* the [O, R, I] form, when `form3` */
    int form3;
} red_shape;

static void red_merge(const ulc_rt_tensor *x, unsigned mask, red_shape *s) {
    s->n = ulc_sh_reduce_groups(x, mask, s->dims, s->stride, s->red, &s->count);
    int g = 0;
    s->O = s->R = s->I = 1;
    if (g < s->n && !s->red[g]) s->O = s->dims[g++];
    if (g < s->n && s->red[g]) s->R = s->dims[g++];
    if (g < s->n && !s->red[g]) s->I = s->dims[g++];
    s->form3 = g == s->n;
}

/* ---- typed loads and stores ---------------------------------------------------------------- */

/* dst[j] = x[off + j·stride] for j < n, as double. */
static void load_f64(const ulc_rt_tensor *x, int64_t off, int64_t stride, int n, double *dst) {
    switch (x->dtype) {
    case ULC_DT_F32: {
        const float *p = (const float *)x->data + off;
        for (int j = 0; j < n; j++) dst[j] = p[j * stride];
        break;
    }
    case ULC_DT_F64: {
        const double *p = (const double *)x->data + off;
        for (int j = 0; j < n; j++) dst[j] = p[j * stride];
        break;
    }
    default:
        for (int j = 0; j < n; j++) dst[j] = ulc_k_f64_at(x, (uint64_t)(off + j * stride));
        break;
    }
}

#define LOAD_INT_CASE(DT, T)                                                                   \
    case DT: {                                                                                 \
        const T *p = (const T *)x->data + off;                                                 \
        for (int j = 0; j < n; j++) dst[j] = (int64_t)p[j * stride];                           \
        break;                                                                                 \
    }

/* dst[j] = x[off + j·stride] for j < n, as int64 (uint64 bits reinterpreted). */
static void load_i64(const ulc_rt_tensor *x, int64_t off, int64_t stride, int n, int64_t *dst) {
    switch (x->dtype) {
        LOAD_INT_CASE(ULC_DT_I8, int8_t)
        LOAD_INT_CASE(ULC_DT_I16, int16_t)
        LOAD_INT_CASE(ULC_DT_I32, int32_t)
        LOAD_INT_CASE(ULC_DT_I64, int64_t)
        LOAD_INT_CASE(ULC_DT_U8, uint8_t)
        LOAD_INT_CASE(ULC_DT_BOOL, uint8_t)
        LOAD_INT_CASE(ULC_DT_U16, uint16_t)
        LOAD_INT_CASE(ULC_DT_U32, uint32_t)
        LOAD_INT_CASE(ULC_DT_U64, uint64_t)
    default:
        for (int j = 0; j < n; j++) dst[j] = 0;
        break;
    }
}
#undef LOAD_INT_CASE

/* Stores the 64-bit pattern v into element i of an integer or bool tensor (truncating, like a
 * C conversion to the narrower type). */
static void store_i64(ulc_rt_tensor *t, uint64_t i, uint64_t v) {
    switch (t->dtype) {
    case ULC_DT_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case ULC_DT_I16: ((int16_t *)t->data)[i] = (int16_t)v; break;
    case ULC_DT_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case ULC_DT_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
    case ULC_DT_U8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case ULC_DT_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    case ULC_DT_U16: ((uint16_t *)t->data)[i] = (uint16_t)v; break;
    case ULC_DT_U32: ((uint32_t *)t->data)[i] = (uint32_t)v; break;
    case ULC_DT_U64: ((uint64_t *)t->data)[i] = v; break;
    default: break;
    }
}

/* The smallest / largest value of an integer dtype, as the 64-bit pattern store_i64 takes. */
static uint64_t int_min_of(int dt) {
    switch (dt) {
    case ULC_DT_I8: return (uint64_t)(int64_t)INT8_MIN;
    case ULC_DT_I16: return (uint64_t)(int64_t)INT16_MIN;
    case ULC_DT_I32: return (uint64_t)(int64_t)INT32_MIN;
    case ULC_DT_I64: return (uint64_t)INT64_MIN;
    default: return 0; /* unsigned, bool */
    }
}

static uint64_t int_max_of(int dt) {
    switch (dt) {
    case ULC_DT_I8: return INT8_MAX;
    case ULC_DT_I16: return INT16_MAX;
    case ULC_DT_I32: return INT32_MAX;
    case ULC_DT_I64: return INT64_MAX;
    case ULC_DT_U8: return UINT8_MAX;
    case ULC_DT_U16: return UINT16_MAX;
    case ULC_DT_U32: return UINT32_MAX;
    case ULC_DT_BOOL: return 1;
    default: return UINT64_MAX;
    }
}

/* ---- float accumulation -------------------------------------------------------------------- */

/* One accumulator of a float reduction: `v` is the running sum / product / extreme; LSE's
 * second phase sums exp(x - m) with m found by its first phase. */
typedef struct facc {
    double v;
    double m;
} facc;

/* a->v ⊕= x[j] for j < n (double values). NaN propagates through Max and Min. */
static void facc_block(red_kind kind, const double *x, int n, facc *a) {
    double v = a->v;
    switch (kind) {
    case RK_SUM:
    case RK_MEAN:
    case RK_LOGSUM:
        for (int j = 0; j < n; j++) v += x[j];
        break;
    case RK_L1:
        for (int j = 0; j < n; j++) v += fabs(x[j]);
        break;
    case RK_L2:
    case RK_SUMSQ:
        for (int j = 0; j < n; j++) v += x[j] * x[j];
        break;
    case RK_PROD:
        for (int j = 0; j < n; j++) v *= x[j];
        break;
    case RK_MAX:
        for (int j = 0; j < n; j++) v = (x[j] > v || x[j] != x[j]) ? x[j] : v;
        break;
    case RK_MIN:
        for (int j = 0; j < n; j++) v = (x[j] < v || x[j] != x[j]) ? x[j] : v;
        break;
    case RK_FMAX:
        for (int j = 0; j < n; j++)
            if (x[j] > v && x[j] != INFINITY) v = x[j];
        break;
    case RK_SUMEXP:
        for (int j = 0; j < n; j++) v += exp(x[j] - a->m);
        break;
    case RK_LSE: break; /* never accumulated directly: FMAX, then SUMEXP */
    }
    a->v = v;
}

/* The output value of a float reduction from its accumulator over `count` elements. */
static double facc_final(red_kind kind, const facc *a, int64_t count) {
    switch (kind) {
    case RK_MEAN: return a->v / (double)count; /* 0/0 = NaN over an empty slice */
    case RK_L2: return sqrt(a->v);
    case RK_LOGSUM: return log(a->v);
    case RK_LSE: return a->m + log(a->v);
    default: return a->v;
    }
}

/* LSE's shift after its first phase: the max of the finite values, 0 when there are none (all
 * ±inf: exp(x - 0) is then exactly 0 or inf, and log gives -inf or inf). */
static double lse_shift(double fmax) { return fmax == -INFINITY ? 0.0 : fmax; }

/* ---- f32 fast loops ------------------------------------------------------------------------ */

/* Σ f(p[i]) over a contiguous f32 row, in 8 independent double lanes (vectorisable without
 * reassociation). */
#define F32_ROW_SUM(EXPR)                                                                      \
    do {                                                                                       \
        double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                \
        int64_t i = 0;                                                                         \
        for (; i + 8 <= n; i += 8)                                                             \
            for (int j = 0; j < 8; j++) {                                                      \
                double x = p[i + j];                                                           \
                l[j] += (EXPR);                                                                \
            }                                                                                  \
        double s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));          \
        for (; i < n; i++) {                                                                   \
            double x = p[i];                                                                   \
            s += (EXPR);                                                                       \
        }                                                                                      \
        v += s;                                                                                \
    } while (0)

/* Max or min of a contiguous f32 row (starting from e); NaN propagates. SSE2 (baseline on x86-64)
 * keeps 8 lanes and a NaN mask apart, since max/min instructions drop NaN operands. */
static float f32_row_ext(const float *p, int64_t n, float e, int is_max) {
    int64_t i = 0;
#if ULC_RED_X86 && defined(__SSE2__)
    if (n >= 8) {
        __m128 a0 = _mm_loadu_ps(p), a1 = _mm_loadu_ps(p + 4);
        __m128 bad = _mm_or_ps(_mm_cmpunord_ps(a0, a0), _mm_cmpunord_ps(a1, a1));
        for (i = 8; i + 8 <= n; i += 8) {
            __m128 x0 = _mm_loadu_ps(p + i), x1 = _mm_loadu_ps(p + i + 4);
            bad = _mm_or_ps(bad, _mm_or_ps(_mm_cmpunord_ps(x0, x0), _mm_cmpunord_ps(x1, x1)));
            a0 = is_max ? _mm_max_ps(a0, x0) : _mm_min_ps(a0, x0);
            a1 = is_max ? _mm_max_ps(a1, x1) : _mm_min_ps(a1, x1);
        }
        if (_mm_movemask_ps(bad)) return NAN;
        float l[8];
        _mm_storeu_ps(l, a0);
        _mm_storeu_ps(l + 4, a1);
        for (int j = 0; j < 8; j++) e = (is_max ? l[j] > e : l[j] < e) ? l[j] : e;
    }
#endif
    for (; i < n; i++) {
        float x = p[i];
        if (x != x) return NAN;
        e = (is_max ? x > e : x < e) ? x : e;
    }
    return e;
}

/* 1 when the AVX2 row sums below may run: the CPU has AVX2+FMA and ULC_NO_SIMD is not set (tests
 * set it to check the portable loops on the same data). */
static int red_avx2(void) { return ulc_k_avx2(); }

#if ULC_RED_X86
/* out[r] = Σ f(p[r·n + i]) over i < n for `rows` contiguous rows, f(x) = x, |x| or x² (kind RK_SUM,
 * RK_L1, RK_SUMSQ). One call for many rows keeps short rows (spatial means: n = 49) cheap; the
 * last 1..7 elements of a row are a masked load (lanes past the end read 0, which adds 0). */
__attribute__((target("avx2,fma"))) static void f32_rowsums_avx2(red_kind kind, const float *p,
                                                                 int64_t n, int64_t rows,
                                                                 double *out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n % 8)),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int64_t r = 0; r < rows; r++, p += n) {
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256 v = _mm256_loadu_ps(p + i);
            if (kind == RK_L1) v = _mm256_andnot_ps(sign, v);
            __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            __m256d v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            if (kind == RK_SUMSQ) {
                if (i & 8) {
                    a2 = _mm256_fmadd_pd(v0, v0, a2);
                    a3 = _mm256_fmadd_pd(v1, v1, a3);
                } else {
                    a0 = _mm256_fmadd_pd(v0, v0, a0);
                    a1 = _mm256_fmadd_pd(v1, v1, a1);
                }
            } else if (i & 8) {
                a2 = _mm256_add_pd(a2, v0);
                a3 = _mm256_add_pd(a3, v1);
            } else {
                a0 = _mm256_add_pd(a0, v0);
                a1 = _mm256_add_pd(a1, v1);
            }
        }
        if (i < n) {
            __m256 v = _mm256_maskload_ps(p + i, tail);
            if (kind == RK_L1) v = _mm256_andnot_ps(sign, v);
            __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            __m256d v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            if (kind == RK_SUMSQ) {
                a0 = _mm256_fmadd_pd(v0, v0, a0);
                a1 = _mm256_fmadd_pd(v1, v1, a1);
            } else {
                a0 = _mm256_add_pd(a0, v0);
                a1 = _mm256_add_pd(a1, v1);
            }
        }
        __m256d a = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
        __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
        out[r] = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    }
}
#endif

/* a->v ⊕= p[i] over a contiguous f32 row of n elements. */
static void f32_row(red_kind kind, const float *p, int64_t n, facc *a) {
    double v = a->v;
    switch (kind) {
    case RK_SUM:
    case RK_MEAN:
    case RK_LOGSUM: F32_ROW_SUM(x); break;
    case RK_L1: F32_ROW_SUM(fabs(x)); break;
    case RK_L2:
    case RK_SUMSQ: F32_ROW_SUM(x * x); break;
    case RK_MAX: v = f32_row_ext(p, n, (float)v, 1); break;
    case RK_MIN: v = f32_row_ext(p, n, (float)v, 0); break;
    case RK_PROD:
        for (int64_t i = 0; i < n; i++) v *= p[i];
        break;
    case RK_FMAX:
        for (int64_t i = 0; i < n; i++)
            if (p[i] > v && p[i] != INFINITY) v = p[i];
        break;
    case RK_SUMEXP: {
        double m = a->m;
        F32_ROW_SUM(exp(x - m));
        break;
    }
    case RK_LSE: break;
    }
    a->v = v;
}
#undef F32_ROW_SUM

/* Column block of the [O, R, I] middle-axis form for f32: a[j] ⊕= p[r·I + j] for j < nb, r < R,
 * where p points at [o, 0, i0]. The inner loop runs along contiguous memory. */
#define F32_COLS(STMT)                                                                         \
    do {                                                                                       \
        for (int64_t r = 0; r < R; r++) {                                                      \
            const float *row = p + r * I;                                                      \
            for (int j = 0; j < nb; j++) {                                                     \
                double x = row[j];                                                             \
                STMT;                                                                          \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Defined twice: portable, and compiled for AVX2 (the same loops, auto-vectorised 4 doubles wide),
 * chosen at run time. */
#define F32_COLS_FN(NAME, ATTR)                                                                \
    ATTR static void NAME(red_kind kind, const float *restrict p, int64_t R, int64_t I, int nb, \
                          double *restrict a, const double *restrict m) {                      \
        switch (kind) {                                                                        \
        case RK_SUM:                                                                           \
        case RK_MEAN:                                                                          \
        case RK_LOGSUM: F32_COLS(a[j] += x); break;                                            \
        case RK_L1: F32_COLS(a[j] += fabs(x)); break;                                          \
        case RK_L2:                                                                            \
        case RK_SUMSQ: F32_COLS(a[j] += x * x); break;                                         \
        case RK_PROD: F32_COLS(a[j] *= x); break;                                              \
        case RK_MAX: F32_COLS(a[j] = (x > a[j] || x != x) ? x : a[j]); break;                  \
        case RK_MIN: F32_COLS(a[j] = (x < a[j] || x != x) ? x : a[j]); break;                  \
        case RK_FMAX: F32_COLS(if (x > a[j] && x != INFINITY) a[j] = x); break;                \
        case RK_SUMEXP: F32_COLS(a[j] += exp(x - m[j])); break;                                \
        case RK_LSE: break;                                                                    \
        }                                                                                      \
    }

F32_COLS_FN(f32_cols_portable, )
#if ULC_RED_X86
F32_COLS_FN(f32_cols_avx2, __attribute__((target("avx2,fma"))))
#endif
#undef F32_COLS_FN

#if ULC_RED_X86
/* The sum family (RK_SUM, RK_L1, RK_SUMSQ) over whole groups of 16 columns, accumulating in 4
 * double vectors that stay in registers for all R rows; returns how many columns it did. */
__attribute__((target("avx2,fma"))) static int f32_cols16_avx2(red_kind kind, const float *p,
                                                                int64_t R, int64_t I, int nb,
                                                                double *a) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    int j = 0;
    for (; j + 16 <= nb; j += 16) {
        __m256d s0 = _mm256_loadu_pd(a + j), s1 = _mm256_loadu_pd(a + j + 4);
        __m256d s2 = _mm256_loadu_pd(a + j + 8), s3 = _mm256_loadu_pd(a + j + 12);
        const float *row = p + j;
        for (int64_t r = 0; r < R; r++, row += I) {
            __m256 v = _mm256_loadu_ps(row), w = _mm256_loadu_ps(row + 8);
            if (kind == RK_L1) {
                v = _mm256_andnot_ps(sign, v);
                w = _mm256_andnot_ps(sign, w);
            }
            __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            __m256d v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            __m256d w0 = _mm256_cvtps_pd(_mm256_castps256_ps128(w));
            __m256d w1 = _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1));
            if (kind == RK_SUMSQ) {
                s0 = _mm256_fmadd_pd(v0, v0, s0);
                s1 = _mm256_fmadd_pd(v1, v1, s1);
                s2 = _mm256_fmadd_pd(w0, w0, s2);
                s3 = _mm256_fmadd_pd(w1, w1, s3);
            } else {
                s0 = _mm256_add_pd(s0, v0);
                s1 = _mm256_add_pd(s1, v1);
                s2 = _mm256_add_pd(s2, w0);
                s3 = _mm256_add_pd(s3, w1);
            }
        }
        _mm256_storeu_pd(a + j, s0);
        _mm256_storeu_pd(a + j + 4, s1);
        _mm256_storeu_pd(a + j + 8, s2);
        _mm256_storeu_pd(a + j + 12, s3);
    }
    return j;
}
#endif

static void f32_cols(red_kind kind, const float *p, int64_t R, int64_t I, int nb, double *a,
                     const double *m) {
#if ULC_RED_X86
    if (red_avx2()) {
        red_kind sk = kind == RK_L2 ? RK_SUMSQ : kind == RK_MEAN || kind == RK_LOGSUM ? RK_SUM : kind;
        int done = 0;
        if (sk == RK_SUM || sk == RK_L1 || sk == RK_SUMSQ) done = f32_cols16_avx2(sk, p, R, I, nb, a);
        if (done < nb) f32_cols_avx2(kind, p + done, R, I, nb - done, a + done, m ? m + done : NULL);
        return;
    }
#endif
    f32_cols_portable(kind, p, R, I, nb, a, m);
}
#undef F32_COLS

/* ---- the reduction run --------------------------------------------------------------------- */

enum { RED_BLOCK = 256, RED_COLS = 64 };

typedef struct red_job {
    red_kind kind;
    const ulc_rt_tensor *x;
    ulc_rt_tensor *y;
    const red_shape *s;
    int kept[ULC_RT_MAX_RANK], nkept; /* group indices of kept / reduced groups */
    int redg[ULC_RT_MAX_RANK], nred;
} red_job;

/* Input offset of output element o: its kept-group coordinates times their strides. */
static int64_t red_base(const red_job *jb, int64_t o) {
    int64_t off = 0;
    for (int g = jb->nkept - 1; g >= 0; g--) {
        int gi = jb->kept[g];
        int64_t len = jb->s->dims[gi];
        off += (o % len) * jb->s->stride[gi];
        o /= len;
    }
    return off;
}

/* Walks the reduced elements of the slice at `base` (an odometer over every reduced group but the
 * last, a strided run over the last), handing each run of up to RED_BLOCK elements to `fn`. */
typedef void (*red_visit)(const double *xd, const int64_t *xi, int n, void *acc, red_kind kind);

static void red_walk(const red_job *jb, int64_t base, red_kind kind, int as_int, red_visit fn,
                     void *acc) {
    double bd[RED_BLOCK];
    int64_t bi[RED_BLOCK];
    const red_shape *s = jb->s;
    if (jb->nred == 0) { /* nothing reduced (all reduced axes have size 1): one element */
        if (as_int) load_i64(jb->x, base, 1, 1, bi);
        else load_f64(jb->x, base, 1, 1, bd);
        fn(bd, bi, 1, acc, kind);
        return;
    }
    int last = jb->redg[jb->nred - 1];
    int64_t run = s->dims[last], rstride = s->stride[last];
    int64_t idx[ULC_RT_MAX_RANK] = {0};
    for (;;) {
        int64_t off = base;
        for (int g = 0; g + 1 < jb->nred; g++) off += idx[g] * s->stride[jb->redg[g]];
        for (int64_t r0 = 0; r0 < run; r0 += RED_BLOCK) {
            int n = (int)(run - r0 < RED_BLOCK ? run - r0 : RED_BLOCK);
            if (as_int) load_i64(jb->x, off + r0 * rstride, rstride, n, bi);
            else load_f64(jb->x, off + r0 * rstride, rstride, n, bd);
            fn(bd, bi, n, acc, kind);
        }
        int g = jb->nred - 2;
        for (; g >= 0; g--) {
            if (++idx[g] < s->dims[jb->redg[g]]) break;
            idx[g] = 0;
        }
        if (g < 0) break;
    }
}

static void visit_f(const double *xd, const int64_t *xi, int n, void *acc, red_kind kind) {
    (void)xi;
    facc_block(kind, xd, n, (facc *)acc);
}

/* Integer accumulator: `u` for the exact kinds (two's-complement wrap), `d` for L2 / LogSum /
 * LogSumExp, computed in double. */
typedef struct iacc {
    uint64_t u;
    double d, m;
    int is_u64; /* compare Max/Min unsigned */
} iacc;

static void visit_i(const double *xd, const int64_t *xi, int n, void *accp, red_kind kind) {
    (void)xd;
    iacc *a = (iacc *)accp;
    uint64_t u = a->u;
    switch (kind) {
    case RK_SUM:
    case RK_MEAN:
        for (int j = 0; j < n; j++) u += (uint64_t)xi[j];
        break;
    case RK_L1:
        for (int j = 0; j < n; j++) u += xi[j] < 0 && !a->is_u64 ? 0 - (uint64_t)xi[j] : (uint64_t)xi[j];
        break;
    case RK_SUMSQ:
        for (int j = 0; j < n; j++) u += (uint64_t)xi[j] * (uint64_t)xi[j];
        break;
    case RK_PROD:
        for (int j = 0; j < n; j++) u *= (uint64_t)xi[j];
        break;
    case RK_MAX:
        for (int j = 0; j < n; j++)
            if (a->is_u64 ? (uint64_t)xi[j] > u : xi[j] > (int64_t)u) u = (uint64_t)xi[j];
        break;
    case RK_MIN:
        for (int j = 0; j < n; j++)
            if (a->is_u64 ? (uint64_t)xi[j] < u : xi[j] < (int64_t)u) u = (uint64_t)xi[j];
        break;
    case RK_L2:
        for (int j = 0; j < n; j++) {
            double x = a->is_u64 ? (double)(uint64_t)xi[j] : (double)xi[j];
            a->d += x * x;
        }
        break;
    case RK_LOGSUM:
        for (int j = 0; j < n; j++) a->d += a->is_u64 ? (double)(uint64_t)xi[j] : (double)xi[j];
        break;
    case RK_FMAX:
        for (int j = 0; j < n; j++) {
            double x = a->is_u64 ? (double)(uint64_t)xi[j] : (double)xi[j];
            if (x > a->d) a->d = x;
        }
        break;
    case RK_SUMEXP:
        for (int j = 0; j < n; j++) {
            double x = a->is_u64 ? (double)(uint64_t)xi[j] : (double)xi[j];
            a->d += exp(x - a->m);
        }
        break;
    case RK_LSE: break;
    }
    a->u = u;
}

/* Output element o of a non-f32-fast-path reduction (any dtype). */
static void red_one(const red_job *jb, int64_t o) {
    int64_t base = red_base(jb, o);
    red_kind kind = jb->kind;
    int64_t count = jb->s->count;
    int dt = jb->x->dtype;
    if (ulc_k_is_float(dt)) {
        facc a = {red_init(kind), 0};
        if (kind == RK_LSE) {
            a.v = -INFINITY;
            if (count) red_walk(jb, base, RK_FMAX, 0, visit_f, &a);
            a.m = lse_shift(a.v);
            a.v = 0;
            if (count) red_walk(jb, base, RK_SUMEXP, 0, visit_f, &a);
        } else if (count) {
            red_walk(jb, base, kind, 0, visit_f, &a);
        }
        ulc_k_store_f64(jb->y, (uint64_t)o, facc_final(kind, &a, count));
        return;
    }
    /* integers and bool */
    iacc a = {0, 0, 0, dt == ULC_DT_U64};
    switch (kind) {
    case RK_PROD: a.u = 1; break;
    case RK_MAX: a.u = int_min_of(dt); break;
    case RK_MIN: a.u = int_max_of(dt); break;
    default: break;
    }
    if (kind == RK_LSE) {
        if (count == 0) {
            ulc_k_store_f64(jb->y, (uint64_t)o, -INFINITY);
            return;
        }
        a.d = -INFINITY;
        red_walk(jb, base, RK_FMAX, 1, visit_i, &a);
        a.m = a.d;
        a.d = 0;
        red_walk(jb, base, RK_SUMEXP, 1, visit_i, &a);
        ulc_k_store_f64(jb->y, (uint64_t)o, a.m + log(a.d));
        return;
    }
    if (count) red_walk(jb, base, kind, 1, visit_i, &a);
    switch (kind) {
    case RK_MEAN:
        if (count == 0) a.u = 0;
        else if (a.is_u64) a.u /= (uint64_t)count;
        else a.u = (uint64_t)((int64_t)a.u / count);
        break;
    case RK_L2: ulc_k_store_f64(jb->y, (uint64_t)o, sqrt(a.d)); return;
    case RK_LOGSUM: ulc_k_store_f64(jb->y, (uint64_t)o, log(a.d)); return;
    default: break;
    }
    store_i64(jb->y, (uint64_t)o, a.u);
}

static void red_body_generic(int64_t i0, int64_t i1, void *arg) {
    const red_job *jb = arg;
    for (int64_t o = i0; o < i1; o++) red_one(jb, o);
}

/* f32, I == 1: one contiguous row of R per output element. */
static void red_body_f32_rows(int64_t i0, int64_t i1, void *arg) {
    const red_job *jb = arg;
    const float *x = jb->x->data;
    float *y = jb->y->data;
    int64_t R = jb->s->R;
    red_kind kind = jb->kind;
#if ULC_RED_X86
    /* the sum family, in batches of rows */
    red_kind sk = kind == RK_L2 ? RK_SUMSQ : kind == RK_MEAN || kind == RK_LOGSUM ? RK_SUM : kind;
    if ((sk == RK_SUM || sk == RK_L1 || sk == RK_SUMSQ) && red_avx2()) {
        double sums[RED_COLS];
        for (int64_t o0 = i0; o0 < i1; o0 += RED_COLS) {
            int64_t nr = i1 - o0 < RED_COLS ? i1 - o0 : RED_COLS;
            f32_rowsums_avx2(sk, x + o0 * R, R, nr, sums);
            for (int64_t r = 0; r < nr; r++) {
                facc a = {sums[r], 0};
                y[o0 + r] = (float)facc_final(kind, &a, R);
            }
        }
        return;
    }
#endif
    for (int64_t o = i0; o < i1; o++) {
        const float *p = x + o * R;
        facc a = {red_init(kind), 0};
        if (kind == RK_LSE) {
            a.v = -INFINITY;
            f32_row(RK_FMAX, p, R, &a);
            a.m = lse_shift(a.v);
            a.v = 0;
            f32_row(RK_SUMEXP, p, R, &a);
        } else {
            f32_row(kind, p, R, &a);
        }
        y[o] = (float)facc_final(kind, &a, R);
    }
}

/* f32, I > 1: items are (o, column block) pairs. */
static void red_body_f32_cols(int64_t i0, int64_t i1, void *arg) {
    const red_job *jb = arg;
    const float *x = jb->x->data;
    float *y = jb->y->data;
    int64_t R = jb->s->R, I = jb->s->I;
    int64_t nblk = (I + RED_COLS - 1) / RED_COLS;
    red_kind kind = jb->kind;
    double a[RED_COLS], m[RED_COLS];
    for (int64_t it = i0; it < i1; it++) {
        int64_t o = it / nblk, c0 = (it % nblk) * RED_COLS;
        int nb = (int)(I - c0 < RED_COLS ? I - c0 : RED_COLS);
        const float *p = x + o * R * I + c0;
        if (kind == RK_LSE) {
            for (int j = 0; j < nb; j++) a[j] = -INFINITY;
            f32_cols(RK_FMAX, p, R, I, nb, a, NULL);
            for (int j = 0; j < nb; j++) {
                m[j] = lse_shift(a[j]);
                a[j] = 0;
            }
            f32_cols(RK_SUMEXP, p, R, I, nb, a, m);
        } else {
            double init = red_init(kind);
            for (int j = 0; j < nb; j++) a[j] = init;
            f32_cols(kind, p, R, I, nb, a, NULL);
        }
        float *q = y + o * I + c0;
        for (int j = 0; j < nb; j++) {
            facc f = {a[j], kind == RK_LSE ? m[j] : 0};
            q[j] = (float)facc_final(kind, &f, R);
        }
    }
}

/* ---- kernels: Reduce* ---------------------------------------------------------------------- */

static ulc_status red_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    unsigned mask;
    int noop;
    ulc_status st = ulc_sh_reduce_axes(k, x->rank, &mask, &noop);
    if (st != ULC_OK) return st;
    uint64_t n_out = ulc_rt_numel(y);
    if (noop) {
        size_t nb = (size_t)ulc_rt_numel(x) * ulc_k_dtype_size(x->dtype);
        if (nb && y->data != x->data) memmove(y->data, x->data, nb);
        return ULC_OK;
    }
    if (n_out == 0) return ULC_OK;

    red_shape s;
    red_job jb = {.kind = red_kind_of(k->node->op), .x = x, .y = y, .s = &s};
    if (ulc_rt_numel(x) == 0) {
        /* Empty slices: every output element is the reduction's value over nothing. Kept dims
         * are nonzero here (the output has elements), so count = 0. */
        s.count = 0;
        s.n = 0;
        for (uint64_t o = 0; o < n_out; o++) red_one(&jb, (int64_t)o);
        return ULC_OK;
    }
    red_merge(x, mask, &s);
    for (int g = 0; g < s.n; g++) {
        if (s.red[g]) jb.redg[jb.nred++] = g;
        else jb.kept[jb.nkept++] = g;
    }
    int64_t work = s.count > 0 ? s.count : 1;
    int64_t grain = 16384 / work + 1;
    if (x->dtype == ULC_DT_F32 && s.form3 && s.I == 1) {
        ulc_k_parallel(s.O, grain, red_body_f32_rows, &jb);
    } else if (x->dtype == ULC_DT_F32 && s.form3) {
        int64_t nblk = (s.I + RED_COLS - 1) / RED_COLS;
        int64_t per = s.R * (s.I < RED_COLS ? s.I : RED_COLS);
        ulc_k_parallel(s.O * nblk, 16384 / per + 1, red_body_f32_cols, &jb);
    } else {
        ulc_k_parallel((int64_t)n_out, grain, red_body_generic, &jb);
    }
    return ULC_OK;
}

/* ---- kernels: ArgMax / ArgMin ----------------------------------------------------------------- */

typedef struct arg_job {
    const void *x;
    int64_t *y;
    int64_t O, A, I;
    int is_max, last;
} arg_job;

/* Items are (o, column block) pairs; each block keeps the best value and index of up to
 * RED_COLS columns while walking the axis, so the inner loop runs over contiguous memory.
 * better(v, best): v replaces best. NaN is the extreme (numpy): a NaN best is kept unless
 * select_last_index meets another NaN. */
#define ARG_BODY(NAME, T, ISNAN)                                                              \
    static void NAME(int64_t i0, int64_t i1, void *arg) {                                    \
        const arg_job *jb = arg;                                                              \
        const T *x = jb->x;                                                                   \
        int64_t A = jb->A, I = jb->I, nblk = (I + RED_COLS - 1) / RED_COLS;                   \
        T best[RED_COLS];                                                                     \
        int64_t bi[RED_COLS];                                                                 \
        for (int64_t it = i0; it < i1; it++) {                                                \
            int64_t o = it / nblk, c0 = (it % nblk) * RED_COLS;                               \
            int nb = (int)(I - c0 < RED_COLS ? I - c0 : RED_COLS);                            \
            const T *p = x + o * A * I + c0;                                                  \
            if (I == 1) { /* one contiguous row */                                            \
                T b = p[0];                                                                   \
                int64_t k = 0;                                                                \
                for (int64_t a = 1; a < A && !ISNAN(b); a++) {                                \
                    T v = p[a];                                                               \
                    if (ISNAN(v) || (jb->is_max ? (jb->last ? v >= b : v > b)                 \
                                                : (jb->last ? v <= b : v < b))) {             \
                        b = v;                                                                \
                        k = a;                                                                \
                    }                                                                         \
                }                                                                             \
                if (ISNAN(b) && jb->last)                                                     \
                    for (int64_t a = k + 1; a < A; a++)                                       \
                        if (ISNAN(p[a])) k = a;                                               \
                jb->y[o] = k;                                                                 \
                continue;                                                                     \
            }                                                                                 \
            for (int j = 0; j < nb; j++) {                                                    \
                best[j] = p[j];                                                               \
                bi[j] = 0;                                                                    \
            }                                                                                 \
            for (int64_t a = 1; a < A; a++) {                                                 \
                const T *row = p + a * I;                                                     \
                for (int j = 0; j < nb; j++) {                                                \
                    T v = row[j], b = best[j];                                                \
                    int better;                                                               \
                    if (ISNAN(b)) better = jb->last && ISNAN(v);                              \
                    else if (ISNAN(v)) better = 1;                                            \
                    else if (jb->is_max) better = jb->last ? v >= b : v > b;                  \
                    else better = jb->last ? v <= b : v < b;                                  \
                    if (better) {                                                             \
                        best[j] = v;                                                          \
                        bi[j] = a;                                                            \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
            memcpy(jb->y + o * I + c0, bi, (size_t)nb * sizeof(int64_t));                     \
        }                                                                                     \
    }

#define ARG_FNAN(v) ((v) != (v))
#define ARG_INAN(v) 0
ARG_BODY(arg_f32, float, ARG_FNAN)
ARG_BODY(arg_f64, double, ARG_FNAN)
ARG_BODY(arg_i8, int8_t, ARG_INAN)
ARG_BODY(arg_i16, int16_t, ARG_INAN)
ARG_BODY(arg_i32, int32_t, ARG_INAN)
ARG_BODY(arg_i64, int64_t, ARG_INAN)
ARG_BODY(arg_u8, uint8_t, ARG_INAN)
ARG_BODY(arg_u16, uint16_t, ARG_INAN)
ARG_BODY(arg_u32, uint32_t, ARG_INAN)
ARG_BODY(arg_u64, uint64_t, ARG_INAN)
#undef ARG_BODY
#undef ARG_FNAN
#undef ARG_INAN

static void (*arg_body_of(int dt))(int64_t, int64_t, void *) {
    switch (dt) {
    case ULC_DT_F32: return arg_f32;
    case ULC_DT_F64: return arg_f64;
    case ULC_DT_I8: return arg_i8;
    case ULC_DT_I16: return arg_i16;
    case ULC_DT_I32: return arg_i32;
    case ULC_DT_I64: return arg_i64;
    case ULC_DT_U8: return arg_u8;
    case ULC_DT_U16: return arg_u16;
    case ULC_DT_U32: return arg_u32;
    case ULC_DT_U64: return arg_u64;
    default: return NULL;
    }
}

static ulc_status arg_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    int axis;
    ulc_status st = ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), x->rank, &axis);
    if (st != ULC_OK) return st;
    if (ulc_rt_numel(k->out[0]) == 0) return ULC_OK;
    arg_job jb = {.x = x->data, .y = k->out[0]->data, .O = 1, .A = x->dims[axis], .I = 1,
                  .is_max = k->node->op == ULC_OP_ArgMax,
                  .last = ulc_k_attr_int(k, "select_last_index", 0) != 0};
    for (int d = 0; d < axis; d++) jb.O *= x->dims[d];
    for (int d = axis + 1; d < x->rank; d++) jb.I *= x->dims[d];
    int64_t nblk = (jb.I + RED_COLS - 1) / RED_COLS;
    int64_t per = jb.A * (jb.I < RED_COLS ? jb.I : RED_COLS);
    ulc_k_parallel(jb.O * nblk, 16384 / (per ? per : 1) + 1, arg_body_of(x->dtype), &jb);
    return ULC_OK;
}

/* ---- registration ---------------------------------------------------------------------------- */

static const ulc_kernel k_reduce = {
    .run = red_run,
};

static const ulc_kernel k_arg = {
    .run = arg_run,
};

void ulc_cpu_register_reduce(const ulc_kernel **table) {
    static const ulc_op reductions[] = {
        ULC_OP_ReduceSum, ULC_OP_ReduceMean, ULC_OP_ReduceMax, ULC_OP_ReduceMin,
        ULC_OP_ReduceProd, ULC_OP_ReduceL1, ULC_OP_ReduceL2, ULC_OP_ReduceSumSquare,
        ULC_OP_ReduceLogSum, ULC_OP_ReduceLogSumExp,
    };
    for (size_t i = 0; i < sizeof reductions / sizeof reductions[0]; i++)
        table[reductions[i]] = &k_reduce;
    table[ULC_OP_ArgMax] = &k_arg;
    table[ULC_OP_ArgMin] = &k_arg;
    ulc_cpu_register_norm(table);
}
