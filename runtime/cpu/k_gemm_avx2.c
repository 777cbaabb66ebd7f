/*
 * k_gemm_avx2.c — packed-B float32 GEMM on AVX2+FMA (see k_gemm_avx2.h).
 *
 *   C[M,N] = alpha · A[M,K] · B[K,N] + beta · bias[N]
 *
 * B is a plan constant (Gemm/MatMul weights), packed once into panels of 16 columns, each a
 * dense [K, 16] block. The microkernel computes a 6×16 tile of C in 12 ymm accumulators: per k
 * it loads one panel row (2 ymm) and broadcasts 6 elements of A (read in place, row stride lda).
 * Blocking: K in blocks of GB_KC (the 6×KC slice of A stays in L1 while it sweeps GB_NP panels,
 * whose KC×16·GB_NP block of B stays in L2); the threads split the panels (N) into contiguous
 * ranges, each thread sweeping all M rows, so no two threads write the same C.
 * K blocks after the first accumulate into C; the last one applies alpha and the bias.
 */
#include "runtime/cpu/k_gemm_avx2.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ULC_GB_X86 1
#else
#define ULC_GB_X86 0
#endif

#define GB_MR 6
#define GB_NR 16
#define GB_KC 256 /* K block: a panel's KC×16 slice is 16 KiB */
#define GB_NP 8   /* panels per L2 block: 128 KiB of B */

int ulc_gemm_avx2_usable(void) {
#if ULC_GB_X86
    static int cached = -1; /* benign race: every thread computes the same value */
    if (cached < 0) {
        const char *e = getenv("ULC_NO_SIMD");
        int off = e && *e && strcmp(e, "0") != 0;
        cached = !off && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

int ulc_gemm_pack_b(ulc_gemm_pb *pb, const float *b, int64_t k, int64_t n, int64_t rs,
                    int64_t cs) {
    memset(pb, 0, sizeof *pb);
    int64_t panels = (n + GB_NR - 1) / GB_NR;
    size_t bytes = (size_t)(panels * k * GB_NR) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    if (bytes == 0) return -1;
    float *d = aligned_alloc(64, bytes);
    if (!d) return -1;
    for (int64_t p = 0; p < panels; p++) {
        int64_t j0 = p * GB_NR, nj = n - j0 < GB_NR ? n - j0 : GB_NR;
        float *dp = d + p * k * GB_NR;
        for (int64_t r = 0; r < k; r++) {
            float *row = dp + r * GB_NR;
            const float *src = b + r * rs + j0 * cs;
            int64_t j = 0;
            if (cs == 1)
                for (; j < nj; j++) row[j] = src[j];
            else
                for (; j < nj; j++) row[j] = src[j * cs];
            for (; j < GB_NR; j++) row[j] = 0.0f;
        }
    }
    pb->k = k;
    pb->n = n;
    pb->panels = panels;
    pb->data = d;
    return 0;
}

void ulc_gemm_pb_free(ulc_gemm_pb *pb) {
    if (!pb) return;
    free(pb->data);
    pb->data = NULL;
}

#if ULC_GB_X86

/* What the microkernel does with its tile after the K block. */
typedef struct gb_epi {
    int first;         /* C holds nothing yet: store (else add to C) */
    int last;          /* apply alpha and the bias */
    float alpha, beta;
    const float *bias; /* bias + this panel's first column, or NULL */
} gb_epi;

/* The MR×16 tile C[0..MR, 0..nr) (row stride ldc) from A[0..MR, 0..kc) (row stride lda) and one
 * panel's kc×16 slice b. MR is a constant at every call, so the row loops unroll and acc stays
 * in registers. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
gb_tile(const int MR, int64_t kc, const float *a, int64_t lda, const float *b, float *c,
        int64_t ldc, int nr, const gb_epi *e) {
    __m256 acc[GB_MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < kc; kk++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * lda + kk);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
        b += GB_NR;
    }
    __m256 bi0 = _mm256_setzero_ps(), bi1 = _mm256_setzero_ps();
    __m256 al = _mm256_set1_ps(e->alpha);
    int scale = e->last && e->alpha != 1.0f;
    if (e->last && e->bias) {
        float t[GB_NR] = {0};
        for (int j = 0; j < nr; j++) t[j] = e->beta * e->bias[j];
        bi0 = _mm256_loadu_ps(t);
        bi1 = _mm256_loadu_ps(t + 8);
    }
    if (nr == GB_NR) {
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            float *cr = c + r * ldc;
            __m256 v0 = acc[r][0], v1 = acc[r][1];
            if (!e->first) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));
            }
            if (scale) {
                v0 = _mm256_mul_ps(v0, al);
                v1 = _mm256_mul_ps(v1, al);
            }
            if (e->last && e->bias) {
                v0 = _mm256_add_ps(v0, bi0);
                v1 = _mm256_add_ps(v1, bi1);
            }
            _mm256_storeu_ps(cr, v0);
            _mm256_storeu_ps(cr + 8, v1);
        }
        return;
    }
    /* The last panel of a ragged N: through a 16-wide buffer. */
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        float t[GB_NR];
        float *cr = c + r * ldc;
        __m256 v0 = acc[r][0], v1 = acc[r][1];
        if (!e->first) {
            for (int j = 0; j < GB_NR; j++) t[j] = j < nr ? cr[j] : 0.0f;
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(t));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(t + 8));
        }
        if (scale) {
            v0 = _mm256_mul_ps(v0, al);
            v1 = _mm256_mul_ps(v1, al);
        }
        if (e->last && e->bias) {
            v0 = _mm256_add_ps(v0, bi0);
            v1 = _mm256_add_ps(v1, bi1);
        }
        _mm256_storeu_ps(t, v0);
        _mm256_storeu_ps(t + 8, v1);
        for (int j = 0; j < nr; j++) cr[j] = t[j];
    }
}

#define GB_TILE_FN(MR)                                                                             \
    __attribute__((target("avx2,fma"))) static void gb_tile_##MR(                                  \
        int64_t kc, const float *a, int64_t lda, const float *b, float *c, int64_t ldc, int nr,    \
        const gb_epi *e) {                                                                         \
        gb_tile(MR, kc, a, lda, b, c, ldc, nr, e);                                                 \
    }
GB_TILE_FN(1)
GB_TILE_FN(2)
GB_TILE_FN(3)
GB_TILE_FN(4)
GB_TILE_FN(5)
GB_TILE_FN(6)

typedef void (*gb_tile_fn)(int64_t kc, const float *a, int64_t lda, const float *b, float *c,
                           int64_t ldc, int nr, const gb_epi *e);
static const gb_tile_fn gb_tiles[GB_MR + 1] = {NULL,     gb_tile_1, gb_tile_2, gb_tile_3,
                                               gb_tile_4, gb_tile_5, gb_tile_6};

/* Panels [p0, p1) of C: all M rows. */
static void gb_range(const ulc_gemm_pb *pb, int64_t m, const float *a, int64_t lda, float *c,
                     int64_t ldc, float alpha, const float *bias, float beta, int64_t p0,
                     int64_t p1) {
    int64_t K = pb->k, N = pb->n;
    for (int64_t pg = p0; pg < p1; pg += GB_NP) {
        int64_t pe = pg + GB_NP < p1 ? pg + GB_NP : p1;
        for (int64_t k0 = 0; k0 < K; k0 += GB_KC) {
            int64_t kc = K - k0 < GB_KC ? K - k0 : GB_KC;
            gb_epi e = {k0 == 0, k0 + kc >= K, alpha, beta, NULL};
            for (int64_t i = 0; i < m; i += GB_MR) {
                int mr = m - i < GB_MR ? (int)(m - i) : GB_MR;
                gb_tile_fn fn = gb_tiles[mr];
                const float *ai = a + i * lda + k0;
                for (int64_t p = pg; p < pe; p++) {
                    int64_t j0 = p * GB_NR;
                    int nr = N - j0 < GB_NR ? (int)(N - j0) : GB_NR;
                    e.bias = bias ? bias + j0 : NULL;
                    fn(kc, ai, lda, pb->data + (p * K + k0) * GB_NR, c + i * ldc + j0, ldc, nr,
                       &e);
                }
            }
        }
    }
}

void ulc_gemm_avx2_run(const ulc_gemm_pb *pb, int64_t m, const float *a, int64_t lda, float *c,
                       int64_t ldc, float alpha, const float *bias, float beta, int threads) {
    if (m <= 0 || pb->n <= 0) return;
    int64_t nt = threads > 1 ? threads : 1;
    /* Below ~2 MFLOP a thread's start costs more than it saves; each thread needs a panel. */
    if (m * pb->n * pb->k < ((int64_t)1 << 20)) nt = 1;
    if (nt > pb->panels) nt = pb->panels;
    if (nt == 1) {
        gb_range(pb, m, a, lda, c, ldc, alpha, bias, beta, 0, pb->panels);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads((int)nt) schedule(static, 1)
#endif
    for (int64_t t = 0; t < nt; t++)
        gb_range(pb, m, a, lda, c, ldc, alpha, bias, beta, pb->panels * t / nt,
                 pb->panels * (t + 1) / nt);
}

#else /* not x86: ulc_gemm_avx2_usable() is 0, so this is never called */

void ulc_gemm_avx2_run(const ulc_gemm_pb *pb, int64_t m, const float *a, int64_t lda, float *c,
                       int64_t ldc, float alpha, const float *bias, float beta, int threads) {
    (void)pb, (void)m, (void)a, (void)lda, (void)c, (void)ldc, (void)alpha, (void)bias,
        (void)beta, (void)threads;
}

#endif
