/*
 * k_reduce_norm.c — normalisations along rows: Softmax, LogSoftmax, LayerNormalization
 * (registered by ulc_cpu_register_reduce in k_reduce.c through ulc_cpu_register_norm).
 *
 *   Softmax     y = exp(x - m) / Σ exp(x - m)       m = max over the normalised elements
 *   LogSoftmax  y = x - m - log Σ exp(x - m)
 *       Subtracting m changes nothing mathematically and keeps exp in (0, 1]: no overflow.
 *       Opset >= 13: along `axis` (default -1), as [O, A, I] with A = dims[axis].
 *       Opset < 13: the input is read as 2-D [prod(dims[:axis]), prod(dims[axis:])] (axis
 *       default 1) and each row of that matrix is normalised: A = the whole trailing block.
 *
 *   LayerNormalization (opset 17), normalised dims D = dims[axis:] (axis default -1):
 *       μ = mean(x[r, D]),  σ² = mean((x - μ)²),  s = 1 / sqrt(σ² + epsilon)
 *       Y[r, D] = (x - μ) · s · Scale + B          Scale, B broadcast (unidirectionally) to D
 *       Mean = μ, InvStdDev = s (optional outputs): X's dims with D set to 1, dtype stash_type.
 *       μ and σ² take two passes over the row (in cache for the second): the portable loop sums
 *       x and (x - μ)² in double; the AVX2 one sums deviations from a first-pass mean in float
 *       lanes (ln_row_avx2 says why that stays accurate). The output subtracts μ as two floats
 *       (hi + lo), so rows with |μ| >> σ keep their precision (plain float μ loses ~1e-3 at 1e4).
 *
 * Layouts: Softmax's I == 1 (attention scores over keys: ViT, GPT2) and LayerNorm rows are the
 * hot paths; on AVX2 machines both run 8 floats at a time (softmax with a vectorised exp: Cephes'
 * polynomial, max relative error 7e-8 for the arguments ≤ 0 that softmax passes), with portable
 * scalar twins (forced by ULC_NO_SIMD=1). Softmax with I > 1 works on blocks of columns so its
 * inner loops stay contiguous. Rows are split across threads (ulc_k_parallel) once a call has
 * more than ~8k elements. Measured on a 2-core AVX2 EPYC against oneDNN 2.6's softmax (jit:avx2)
 * and layer_normalization primitives on the ViT-S / DistilGPT2 shapes: this softmax is faster,
 * this LayerNorm is on par, so oneDNN is not used here.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ULC_NORM_X86 1
#else
#define ULC_NORM_X86 0
#endif

#include "runtime/cpu/cpu.h"
#include "runtime/shape/params.h"

void ulc_cpu_register_norm(const ulc_kernel **table);

enum { NORM_COLS = 64 };

/* AVX2+FMA kernels are used when the CPU has them, unless ULC_NO_SIMD=1 (set by tests to check
 * the portable twins against the same data). */
static int have_avx2(void) { return ulc_k_avx2(); }

/* ---- AVX2 row kernels ------------------------------------------------------------------------- */

#if ULC_NORM_X86
#define AVX2 __attribute__((target("avx2,fma")))

/* exp of 8 floats ≤ 0, for softmax: e^x = 2^n · e^r with n = round(x / ln2) and |r| ≤ ln2/2,
 * e^r by Cephes' degree-7 polynomial (max relative error 7e-8 over [-87, 0]). Rounding uses
 * the magic bias 1.5·2^23 + 127: after the fma, the low mantissa bits of `biased` hold n + 127,
 * which shifted left by 23 is the float 2^n. Arguments below -87.34 give 0 (exp(-inf) = 0
 * exactly, as masked attention scores need; the true value there is a denormal or 0); NaN stays
 * NaN (max returns its second operand when either is NaN, so x is passed second). */
AVX2 static inline __m256 exp8_neg(__m256 x) {
    const __m256 bias = _mm256_set1_ps(12582912.0f + 127.0f), lo = _mm256_set1_ps(-87.33654f);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ); /* x >= lo or NaN: not flushed to 0 */
    x = _mm256_max_ps(lo, x);
    __m256 biased = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), bias);
    __m256 n = _mm256_sub_ps(biased, bias);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); /* ln2 in two parts */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_castps_si256(biased), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

AVX2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

AVX2 static inline double hsum4d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* Σ of 8 float lanes, in double. */
AVX2 static inline double hsum8(__m256 v) {
    return hsum4d(_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                                _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
}

/* Lanes 0..r-1 set (0 < r < 8), for masked loads and stores of a row's tail. */
AVX2 static inline __m256i tail_mask(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Softmax (or LogSoftmax) of one contiguous row of n floats. */
AVX2 static void softmax_row_avx2(const float *x, float *y, int64_t n, int log_out) {
    int64_t i = 0;
    float m = -INFINITY;
    if (n >= 8) {
        __m256 m0 = _mm256_loadu_ps(x), m1 = m0, m2 = m0, m3 = m0;
        for (i = 8; i + 32 <= n; i += 32) {
            m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
            m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
            m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + i + 16));
            m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + i + 24));
        }
        for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
        m = hmax8(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    if (m == -INFINITY) m = 0.0f; /* all -inf: exp(x - 0) = 0, then 0 · (1/0) = NaN */
    __m256 vm = _mm256_set1_ps(m);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 e0 = exp8_neg(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        __m256 e1 = exp8_neg(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm));
        if (!log_out) {
            _mm256_storeu_ps(y + i, e0);
            _mm256_storeu_ps(y + i + 8, e1);
        }
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 e0 = exp8_neg(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        if (!log_out) _mm256_storeu_ps(y + i, e0);
        s0 = _mm256_add_ps(s0, e0);
    }
    if (i < n) { /* the last 1..7 elements, masked (lanes past the end load 0 and add 0) */
        __m256i mask = tail_mask(n - i);
        __m256 e0 = exp8_neg(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), vm));
        e0 = _mm256_and_ps(e0, _mm256_castsi256_ps(mask));
        if (!log_out) _mm256_maskstore_ps(y + i, mask, e0);
        s0 = _mm256_add_ps(s0, e0);
    }
    double sum = hsum8(_mm256_add_ps(s0, s1));
    if (log_out) {
        __m256 sh = _mm256_set1_ps(m + (float)log(sum));
        for (i = 0; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
        float shs = m + (float)log(sum);
        for (; i < n; i++) y[i] = x[i] - shs;
    } else {
        __m256 r = _mm256_set1_ps((float)(1.0 / sum));
        for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), r));
        float rs = (float)(1.0 / sum);
        for (; i < n; i++) y[i] *= rs;
    }
}

/* LayerNorm of one contiguous row of n floats; g, b: n scale / bias values (b may be NULL).
 * Statistics in float lanes with a shift: pass 1 gives a rough mean m0 (32 partial sums), pass 2
 * sums d = x - m0 and d²; then μ = m0 + Σd/n and σ² = Σd²/n - (Σd/n)². The deviations from m0
 * are small, so this keeps float sums accurate even when |μ| >> σ (where Σx² - nμ² would
 * cancel catastrophically). */
AVX2 static void ln_row_avx2(const float *x, float *y, int64_t n, const float *g, const float *b,
                             double eps, double *mean_out, double *inv_out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    double sum = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += x[i];
    float m0 = (float)(sum / (double)n);
    __m256 vm0 = _mm256_set1_ps(m0);
    __m256 d0 = _mm256_setzero_ps(), d1 = d0, q0 = d0, q1 = d0;
    for (i = 0; i + 16 <= n; i += 16) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm0);
        __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm0);
        d0 = _mm256_add_ps(d0, t0);
        d1 = _mm256_add_ps(d1, t1);
        q0 = _mm256_fmadd_ps(t0, t0, q0);
        q1 = _mm256_fmadd_ps(t1, t1, q1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm0);
        d0 = _mm256_add_ps(d0, t0);
        q0 = _mm256_fmadd_ps(t0, t0, q0);
    }
    double sd = hsum8(_mm256_add_ps(d0, d1)), sq = hsum8(_mm256_add_ps(q0, q1));
    for (; i < n; i++) {
        double t = (double)x[i] - m0;
        sd += t;
        sq += t * t;
    }
    double dm = sd / (double)n, var = sq / (double)n - dm * dm;
    double mean = m0 + dm, inv = 1.0 / sqrt((var > 0 ? var : 0) + eps);
    *mean_out = mean;
    *inv_out = inv;
    /* μ = mf + ml in two floats: x - mf is exact for x near μ, so (x - mf) - ml keeps the
     * deviation accurate when |μ| >> σ */
    float mf = (float)mean, ml = (float)(mean - mf), sf = (float)inv;
    __m256 vm = _mm256_set1_ps(mf), vl = _mm256_set1_ps(ml), vs = _mm256_set1_ps(sf);
    i = 0;
    if (b) {
        for (; i + 8 <= n; i += 8) {
            __m256 t = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vl);
            t = _mm256_mul_ps(t, vs);
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i)));
        }
        for (; i < n; i++) y[i] = ((x[i] - mf) - ml) * sf * g[i] + b[i];
    } else {
        for (; i + 8 <= n; i += 8) {
            __m256 t = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vl);
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(t, vs), _mm256_loadu_ps(g + i)));
        }
        for (; i < n; i++) y[i] = ((x[i] - mf) - ml) * sf * g[i];
    }
}
#undef AVX2
#endif

/* ---- portable kernels, f32 and f64 ------------------------------------------------------------ */

/* Softmax / LogSoftmax over A of one [A, I] slab (element (a, i) at p[a·I + i]), in blocks of
 * NORM_COLS columns so each inner loop walks contiguous memory; I == 1 is one row. */
#define SOFTMAX_SLAB(NAME, T, EXP)                                                             \
    static void NAME(const T *x, T *y, int64_t A, int64_t I, int log_out) {                    \
        double m[NORM_COLS], s[NORM_COLS];                                                     \
        for (int64_t c0 = 0; c0 < I; c0 += NORM_COLS) {                                        \
            int nb = (int)(I - c0 < NORM_COLS ? I - c0 : NORM_COLS);                           \
            const T *p = x + c0;                                                               \
            T *q = y + c0;                                                                     \
            for (int j = 0; j < nb; j++) {                                                     \
                m[j] = -INFINITY;                                                              \
                s[j] = 0;                                                                      \
            }                                                                                  \
            for (int64_t a = 0; a < A; a++)                                                    \
                for (int j = 0; j < nb; j++) {                                                 \
                    double v = p[a * I + j];                                                   \
                    m[j] = (v > m[j] || v != v) ? v : m[j];                                    \
                }                                                                              \
            for (int j = 0; j < nb; j++)                                                       \
                if (m[j] == -INFINITY) m[j] = 0; /* all -inf: exp(-inf) = 0, then NaN */       \
            for (int64_t a = 0; a < A; a++)                                                    \
                for (int j = 0; j < nb; j++) {                                                 \
                    T e = EXP((T)(p[a * I + j] - (T)m[j]));                                    \
                    if (!log_out) q[a * I + j] = e;                                            \
                    s[j] += e;                                                                 \
                }                                                                              \
            for (int j = 0; j < nb; j++)                                                       \
                s[j] = log_out ? m[j] + log(s[j]) : 1.0 / s[j];                                \
            for (int64_t a = 0; a < A; a++)                                                    \
                for (int j = 0; j < nb; j++) {                                                 \
                    if (log_out) q[a * I + j] = (T)(p[a * I + j] - (T)s[j]);                   \
                    else q[a * I + j] = (T)(q[a * I + j] * (T)s[j]);                           \
                }                                                                              \
        }                                                                                      \
    }

SOFTMAX_SLAB(softmax_slab_f32, float, expf)
SOFTMAX_SLAB(softmax_slab_f64, double, exp)
#undef SOFTMAX_SLAB

/* LayerNorm of one row of n elements; g, b: n values (b may be NULL). */
#define LN_ROW(NAME, T)                                                                        \
    static void NAME(const T *x, T *y, int64_t n, const T *g, const T *b, double eps,          \
                     double *mean_out, double *inv_out) {                                      \
        double sum = 0, ss = 0;                                                                \
        for (int64_t i = 0; i < n; i++) sum += x[i];                                           \
        double mean = sum / (double)n;                                                         \
        for (int64_t i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);                   \
        double inv = 1.0 / sqrt(ss / (double)n + eps);                                         \
        *mean_out = mean;                                                                      \
        *inv_out = inv;                                                                        \
        T mt = (T)mean, ml = (T)(mean - mt), st = (T)inv; /* μ = mt + ml, as in the AVX2 row */ \
        if (b)                                                                                 \
            for (int64_t i = 0; i < n; i++) y[i] = ((x[i] - mt) - ml) * st * g[i] + b[i];      \
        else                                                                                   \
            for (int64_t i = 0; i < n; i++) y[i] = ((x[i] - mt) - ml) * st * g[i];             \
    }

LN_ROW(ln_row_f32, float)
LN_ROW(ln_row_f64, double)
#undef LN_ROW

/* ---- Softmax / LogSoftmax ------------------------------------------------------------------- */

typedef struct sm_job {
    const void *x;
    void *y;
    int64_t A, I;
    int log_out, dtype, avx2;
} sm_job;

static void sm_body(int64_t o0, int64_t o1, void *arg) {
    const sm_job *jb = arg;
    int64_t slab = jb->A * jb->I;
    if (jb->dtype == ULC_DT_F64) {
        for (int64_t o = o0; o < o1; o++)
            softmax_slab_f64((const double *)jb->x + o * slab, (double *)jb->y + o * slab, jb->A,
                             jb->I, jb->log_out);
        return;
    }
    const float *x = jb->x;
    float *y = jb->y;
#if ULC_NORM_X86
    if (jb->avx2 && jb->I == 1) {
        for (int64_t o = o0; o < o1; o++) softmax_row_avx2(x + o * slab, y + o * slab, jb->A, jb->log_out);
        return;
    }
#endif
    for (int64_t o = o0; o < o1; o++)
        softmax_slab_f32(x + o * slab, y + o * slab, jb->A, jb->I, jb->log_out);
}

void ulc_cpu_softmax_rows_f32(float *x, int64_t rows, int64_t n) {
#if ULC_NORM_X86
    if (have_avx2()) {
        for (int64_t r = 0; r < rows; r++) softmax_row_avx2(x + r * n, x + r * n, n, 0);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++) softmax_slab_f32(x + r * n, x + r * n, n, 1, 0);
}

static ulc_status sm_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    sm_job jb = {.x = x->data, .y = k->out[0]->data, .dtype = x->dtype,
                 .log_out = k->node->op == ULC_OP_LogSoftmax, .avx2 = have_avx2()};
    int64_t O;
    ulc_status st = ulc_sh_softmax_layout(k, x, &O, &jb.A, &jb.I);
    if (st != ULC_OK) return st;
    if (ulc_rt_numel(x) == 0) return ULC_OK;
    int64_t slab = jb.A * jb.I;
    ulc_k_parallel(O, 8192 / slab + 1, sm_body, &jb);
    return ULC_OK;
}

/* ---- LayerNormalization ------------------------------------------------------------------------ */

typedef struct ln_job {
    const void *x, *g, *b; /* g, b: N values each (b may be NULL) */
    void *y;
    int64_t N;
    double eps;
    ulc_rt_tensor *mean, *inv; /* optional outputs, f32 or f64 */
    int dtype, avx2;
} ln_job;

static void ln_store(ulc_rt_tensor *t, int64_t r, double v) {
    if (!t) return;
    if (t->dtype == ULC_DT_F64) ((double *)t->data)[r] = v;
    else ((float *)t->data)[r] = (float)v;
}

static void ln_body(int64_t r0, int64_t r1, void *arg) {
    const ln_job *jb = arg;
    int64_t N = jb->N;
    for (int64_t r = r0; r < r1; r++) {
        double mean, inv;
        if (jb->dtype == ULC_DT_F64) {
            ln_row_f64((const double *)jb->x + r * N, (double *)jb->y + r * N, N, jb->g, jb->b,
                       jb->eps, &mean, &inv);
        }
#if ULC_NORM_X86
        else if (jb->avx2) {
            ln_row_avx2((const float *)jb->x + r * N, (float *)jb->y + r * N, N, jb->g, jb->b,
                        jb->eps, &mean, &inv);
        }
#endif
        else {
            ln_row_f32((const float *)jb->x + r * N, (float *)jb->y + r * N, N, jb->g, jb->b,
                       jb->eps, &mean, &inv);
        }
        ln_store(jb->mean, r, mean);
        ln_store(jb->inv, r, inv);
    }
}

/* Writes p (Scale or B) broadcast to the normalised dims D (nd dims, N elements) into dst. */
static void ln_expand(const ulc_rt_tensor *p, int nd, const int64_t *D, int64_t N, void *dst) {
    int64_t st[ULC_RT_MAX_RANK], idx[ULC_RT_MAX_RANK] = {0};
    ulc_k_bcast_strides(p, nd, D, st);
    size_t es = ulc_k_dtype_size(p->dtype);
    int64_t off = 0;
    for (int64_t j = 0; j < N; j++) {
        memcpy((char *)dst + (size_t)j * es, (const char *)p->data + (size_t)off * es, es);
        for (int d = nd - 1; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < D[d]) break;
            off -= st[d] * idx[d];
            idx[d] = 0;
        }
    }
}

/* Bytes of the buffer that holds Scale and B broadcast to D, 0 when both are already N long. */
static size_t ln_expand_bytes(const ulc_kctx *k, int64_t N) {
    const ulc_rt_tensor *b = k->n_in > 2 ? k->in[2] : NULL;
    int need = (int64_t)ulc_rt_numel(k->in[1]) != N || (b && (int64_t)ulc_rt_numel(b) != N);
    return need ? 2 * (size_t)N * ulc_k_dtype_size(k->in[0]->dtype) : 0;
}

static ulc_status ln_geometry(ulc_kctx *k, int *axis, int64_t *rows, int64_t *N) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_status st = ulc_k_axis(k, ulc_k_attr_int(k, "axis", -1), x->rank, axis);
    if (st != ULC_OK) return st;
    *rows = *N = 1;
    for (int d = 0; d < x->rank; d++) {
        if (d < *axis) *rows *= x->dims[d];
        else *N *= x->dims[d];
    }
    return ULC_OK;
}

/* The state is the broadcast buffer, when Scale or B need broadcasting. */
static ulc_status ln_prepare(ulc_kctx *k) {
    int axis;
    int64_t rows, N;
    ulc_status st = ln_geometry(k, &axis, &rows, &N);
    if (st != ULC_OK) return st;
    size_t bytes = ln_expand_bytes(k, N);
    if (bytes) {
        k->state = malloc(bytes);
        if (!k->state)
            return ulc_k_fail(k, ULC_ERR_NOMEM, "cannot allocate %zu bytes for Scale/B", bytes);
    }
    return ULC_OK;
}

static void ln_release(void *state) { free(state); }

static ulc_status ln_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0], *g = k->in[1];
    const ulc_rt_tensor *b = k->n_in > 2 ? k->in[2] : NULL;
    int axis;
    int64_t rows, N;
    ulc_status st = ln_geometry(k, &axis, &rows, &N);
    if (st != ULC_OK) return st;
    ln_job jb = {.x = x->data, .g = g->data, .b = b ? b->data : NULL, .y = k->out[0]->data,
                 .N = N, .eps = ulc_k_attr_float(k, "epsilon", 1e-5f), .dtype = x->dtype,
                 .avx2 = have_avx2(),
                 .mean = k->n_out > 1 ? k->out[1] : NULL,
                 .inv = k->n_out > 2 ? k->out[2] : NULL};
    if (rows == 0) return ULC_OK;
    if (N == 0) { /* nothing to normalise: μ and s are undefined */
        for (int64_t r = 0; r < rows; r++) {
            ln_store(jb.mean, r, NAN);
            ln_store(jb.inv, r, NAN);
        }
        return ULC_OK;
    }
    size_t bytes = ln_expand_bytes(k, N);
    void *buf = NULL;
    if (bytes) {
        buf = k->state ? k->state : malloc(bytes); /* no prepare (a plan-time evaluation) */
        if (!buf) return ulc_k_fail(k, ULC_ERR_NOMEM, "cannot allocate %zu bytes for Scale/B", bytes);
        size_t half = bytes / 2;
        ln_expand(g, x->rank - axis, x->dims + axis, N, buf);
        jb.g = buf;
        if (b) {
            ln_expand(b, x->rank - axis, x->dims + axis, N, (char *)buf + half);
            jb.b = (char *)buf + half;
        }
    }
    ulc_k_parallel(rows, 8192 / N + 1, ln_body, &jb);
    if (buf && buf != k->state) free(buf);
    return ULC_OK;
}

/* ---- registration -------------------------------------------------------------------------- */

static const ulc_kernel k_softmax = {
    .run = sm_run,
};

static const ulc_kernel k_layernorm = {
    .prepare = ln_prepare,
    .run = ln_run,
    .release = ln_release,
};

void ulc_cpu_register_norm(const ulc_kernel **table) {
    table[ULC_OP_Softmax] = &k_softmax;
    table[ULC_OP_LogSoftmax] = &k_softmax;
    table[ULC_OP_LayerNormalization] = &k_layernorm;
}
