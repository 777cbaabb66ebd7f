/* lora_merge_kernels.c — see lora_merge_kernels.h. */
#include "passes/lora_merge_kernels.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "ir/dtype.h"

static uint64_t load_half_fast(const uint8_t *p, int f16, uint64_t n, float *dst);

void ulc_merge_load(const uint8_t *p, int dtype, uint64_t at, uint64_t n, float *dst) {
    if (dtype == ULC_DT_F32) {
        memcpy(dst, p + 4 * at, (size_t)n * 4);
        return;
    }
    for (uint64_t i = load_half_fast(p + 2 * at, dtype == ULC_DT_F16, n, dst); i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * (at + i), 2);
        dst[i] = dtype == ULC_DT_F16 ? ulc_f16_to_f32(h) : ulc_bf16_to_f32(h);
    }
}

#define DELTA_ROWS ULC_MERGE_DELTA_ROWS

static void delta_rows_scalar(const float *U, const float *V, uint64_t r, uint64_t n,
                              uint64_t nrows, float *out) {
    for (uint64_t k = 0; k < nrows; k++) {
        float *o = out + k * n;
        memset(o, 0, (size_t)n * sizeof *o);
        for (uint64_t q = 0; q < r; q++) {
            const float u = U[k * r + q], *v = V + q * n;
            for (uint64_t j = 0; j < n; j++) o[j] += u * v[j];
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
__attribute__((target("avx2"))) static void delta_rows_avx2(const float *U, const float *V,
                                                            uint64_t r, uint64_t n,
                                                            uint64_t nrows, float *out) {
    if (nrows != DELTA_ROWS) {
        delta_rows_scalar(U, V, r, n, nrows, out);
        return;
    }
    uint64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (uint64_t q = 0; q < r; q++) {
            __m256 v = _mm256_loadu_ps(V + q * n + j), w = _mm256_loadu_ps(V + q * n + j + 8);
            __m256 u0 = _mm256_set1_ps(U[q]), u1 = _mm256_set1_ps(U[r + q]);
            __m256 u2 = _mm256_set1_ps(U[2 * r + q]), u3 = _mm256_set1_ps(U[3 * r + q]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(u0, v));
            b0 = _mm256_add_ps(b0, _mm256_mul_ps(u0, w));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(u1, v));
            b1 = _mm256_add_ps(b1, _mm256_mul_ps(u1, w));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(u2, v));
            b2 = _mm256_add_ps(b2, _mm256_mul_ps(u2, w));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(u3, v));
            b3 = _mm256_add_ps(b3, _mm256_mul_ps(u3, w));
        }
        _mm256_storeu_ps(out + j, a0);
        _mm256_storeu_ps(out + j + 8, b0);
        _mm256_storeu_ps(out + n + j, a1);
        _mm256_storeu_ps(out + n + j + 8, b1);
        _mm256_storeu_ps(out + 2 * n + j, a2);
        _mm256_storeu_ps(out + 2 * n + j + 8, b2);
        _mm256_storeu_ps(out + 3 * n + j, a3);
        _mm256_storeu_ps(out + 3 * n + j + 8, b3);
    }
    for (; j + 8 <= n; j += 8) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (uint64_t q = 0; q < r; q++) {
            __m256 v = _mm256_loadu_ps(V + q * n + j);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(U[q]), v));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_set1_ps(U[r + q]), v));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(_mm256_set1_ps(U[2 * r + q]), v));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(_mm256_set1_ps(U[3 * r + q]), v));
        }
        _mm256_storeu_ps(out + j, a0);
        _mm256_storeu_ps(out + n + j, a1);
        _mm256_storeu_ps(out + 2 * n + j, a2);
        _mm256_storeu_ps(out + 3 * n + j, a3);
    }
    for (; j < n; j++)
        for (uint64_t k = 0; k < DELTA_ROWS; k++) {
            float acc = 0;
            for (uint64_t q = 0; q < r; q++) acc += U[k * r + q] * V[q * n + j];
            out[k * n + j] = acc;
        }
}
#endif

/* ULC_NO_SIMD=1 forces the scalar loops (tests compare both: they must give the same bits). */
static int simd_disabled(void) {
    const char *e = getenv("ULC_NO_SIMD");
    return e && *e && strcmp(e, "0") != 0;
}

static int use_avx2(void) {
#ifdef HAVE_AVX2_PATH
    static int avx2 = -1; /* benign race: every thread computes the same value */
    if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2") && !simd_disabled();
    return avx2;
#else
    return 0;
#endif
}

/* o = base + delta * scale over whole vectors of 8; returns how many elements it did, and
 * folds max |o - base| and finiteness into *rowmax / *finite (the same bits as the scalar
 * loop in merge_row). */
#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2"))) static uint64_t merge_f32_avx2(float *o, const float *base,
                                                               const float *delta, float scale,
                                                               uint64_t n, float *rowmax,
                                                               int *finite) {
    const __m256 vs = _mm256_set1_ps(scale), sign = _mm256_set1_ps(-0.0f);
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    __m256 mx = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    uint64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 b = _mm256_loadu_ps(base + j);
        __m256 nv = _mm256_add_ps(b, _mm256_mul_ps(_mm256_loadu_ps(delta + j), vs));
        __m256 ad = _mm256_andnot_ps(sign, _mm256_sub_ps(nv, b));
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(ad, big, _CMP_NLE_UQ)); /* NaN or > FLT_MAX */
        mx = _mm256_max_ps(mx, ad);
        _mm256_storeu_ps(o + j, nv);
    }
    float m[8];
    _mm256_storeu_ps(m, mx);
    for (int k = 0; k < 8; k++) *rowmax = m[k] > *rowmax ? m[k] : *rowmax;
    if (_mm256_movemask_ps(bad)) *finite = 0;
    return j;
}
#endif

/* The same for f16 / bf16 bases: the sum rounded once to nearest-even (F16C for f16; bf16 by
 * the bit trick ulc_f32_to_bf16 uses), max |rounded - base| and finiteness folded in. Lanes
 * holding NaN are flagged (and fail the merge), so their bits do not matter. */
#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2,f16c"))) static uint64_t merge_half_avx2(uint8_t *o, const float *base,
                                                                    const float *delta, float scale,
                                                                    uint64_t n, int f16,
                                                                    float *rowmax, int *finite) {
    const __m256 vs = _mm256_set1_ps(scale), sign = _mm256_set1_ps(-0.0f);
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    __m256 mx = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    uint64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 b = _mm256_loadu_ps(base + j);
        __m256 nv = _mm256_add_ps(b, _mm256_mul_ps(_mm256_loadu_ps(delta + j), vs));
        __m128i h;
        __m256 back;
        if (f16) {
            h = _mm256_cvtps_ph(nv, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            back = _mm256_cvtph_ps(h);
        } else {
            __m256i u = _mm256_castps_si256(nv);
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
            back = _mm256_castsi256_ps(_mm256_slli_epi32(r, 16));
            __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
            h = _mm256_castsi256_si128(packed);
        }
        _mm_storeu_si128((__m128i *)(void *)(o + 2 * j), h);
        __m256 ad = _mm256_andnot_ps(sign, _mm256_sub_ps(back, b));
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(ad, big, _CMP_NLE_UQ));
        mx = _mm256_max_ps(mx, ad);
    }
    float m[8];
    _mm256_storeu_ps(m, mx);
    for (int k = 0; k < 8; k++) *rowmax = m[k] > *rowmax ? m[k] : *rowmax;
    if (_mm256_movemask_ps(bad)) *finite = 0;
    return j;
}

/* f16 / bf16 -> f32 for whole vectors of 8; returns how many it did. */
__attribute__((target("avx2,f16c"))) static uint64_t load_half_avx2(const uint8_t *p, int f16,
                                                                   uint64_t n, float *dst) {
    uint64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(p + 2 * j));
        __m256 f = f16 ? _mm256_cvtph_ps(h)
                       : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        _mm256_storeu_ps(dst + j, f);
    }
    return j;
}
#endif

static int use_f16c(void) {
#ifdef HAVE_AVX2_PATH
    static int yes = -1;
    if (yes < 0) {
        /* F16C through cpuid: clang 14's __builtin_cpu_supports does not know "f16c" */
        unsigned eax, ebx, ecx = 0, edx;
        int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
        yes = __builtin_cpu_supports("avx2") && f16c && !simd_disabled();
    }
    return yes;
#else
    return 0;
#endif
}

static uint64_t load_half_fast(const uint8_t *p, int f16, uint64_t n, float *dst) {
#ifdef HAVE_AVX2_PATH
    if (use_f16c()) return load_half_avx2(p, f16, n, dst);
#endif
    (void)p, (void)f16, (void)n, (void)dst;
    return 0;
}

void ulc_merge_delta_rows(const float *U, const float *V, uint64_t r, uint64_t n, uint64_t nrows,
                          float *out) {
#ifdef HAVE_AVX2_PATH
    if (use_avx2()) {
        delta_rows_avx2(U, V, r, n, nrows, out);
        return;
    }
#endif
    delta_rows_scalar(U, V, r, n, nrows, out);
}

uint64_t ulc_merge_add_f32(float *o, const float *base, const float *delta, float scale,
                           uint64_t n, float *rowmax, int *finite) {
#ifdef HAVE_AVX2_PATH
    if (use_avx2()) return merge_f32_avx2(o, base, delta, scale, n, rowmax, finite);
#endif
    (void)o, (void)base, (void)delta, (void)scale, (void)n, (void)rowmax, (void)finite;
    return 0;
}

uint64_t ulc_merge_add_half(uint8_t *o, const float *base, const float *delta, float scale,
                            uint64_t n, int f16, float *rowmax, int *finite) {
#ifdef HAVE_AVX2_PATH
    if (use_f16c()) return merge_half_avx2(o, base, delta, scale, n, f16, rowmax, finite);
#endif
    (void)o, (void)base, (void)delta, (void)scale, (void)n, (void)f16, (void)rowmax, (void)finite;
    return 0;
}
