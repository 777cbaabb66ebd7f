/*
 * k_gemm_avx2.h — float32 C[M,N] = alpha · A[M,K] · B[K,N] + beta · bias[N] for a B that is a
 * plan constant, packed once (at prepare) into column panels, on AVX2+FMA.
 *
 *   ulc_gemm_pb pb;
 *   if (ulc_gemm_avx2_usable() && ulc_gemm_pack_b(&pb, b, K, N, N, 1) == 0)   // prepare
 *       ulc_gemm_avx2_run(&pb, M, a, K, c, N, 1.0f, NULL, 0.0f, threads);       // run
 *   ulc_gemm_pb_free(&pb);                                                     // release
 *
 * Callers keep another path for CPUs without AVX2/FMA (and for ULC_NO_SIMD=1, which tests set to
 * check that path on the same data).
 */
#ifndef ULC_RUNTIME_CPU_K_GEMM_AVX2_H
#define ULC_RUNTIME_CPU_K_GEMM_AVX2_H

#include <stdint.h>

/* B packed into ceil(N / 16) panels; panel p is a dense [K, 16] block of columns 16p..16p+15,
 * row-major (K-major), columns past N zero. */
typedef struct ulc_gemm_pb {
    int64_t k, n;
    int64_t panels;
    float *data; /* panels · K · 16 floats, 64-byte aligned (NULL: not packed) */
} ulc_gemm_pb;

/* 1 when the CPU has AVX2 and FMA and ULC_NO_SIMD is not set. */
int ulc_gemm_avx2_usable(void);

/* Packs B, element (r, j) read at b[r·rs + j·cs] (rs = N, cs = 1 for row-major [K, N]; rs = 1,
 * cs = K for a transposed [N, K]). 0 on success, -1 when out of memory. */
int ulc_gemm_pack_b(ulc_gemm_pb *pb, const float *b, int64_t k, int64_t n, int64_t rs, int64_t cs);
void ulc_gemm_pb_free(ulc_gemm_pb *pb);

/* c[i·ldc + j] = alpha · Σ_r a[i·lda + r] · B[r, j] + (bias ? beta · bias[j] : 0), i < m, j < N,
 * on up to `threads` OpenMP threads (pb->k >= 1). */
void ulc_gemm_avx2_run(const ulc_gemm_pb *pb, int64_t m, const float *a, int64_t lda, float *c,
                       int64_t ldc, float alpha, const float *bias, float beta, int threads);

#endif
