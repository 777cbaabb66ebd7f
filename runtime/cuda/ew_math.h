/*
 * ew_math.h — the scalar math the CUDA backend's elementwise ops (k_elementwise.cu) and fused
 * chains (k_chain.cu) share, as __host__ __device__ functions: the chain's host evaluation
 * (ucu_chain_eval, which the planner probes to recognise GELU) runs the very functions the
 * device runs.
 *
 * The semantics are the CPU kernels' (runtime/cpu/k_elementwise*.c, k_chain.c):
 *   exp, tanh, erf, sqrt: CUDA's accurate functions (expf, tanhf, erff: ≤ 2 ulp; no __expf
 *     intrinsics), so results differ from the CPU's vector functions by a few ulp at most;
 *   sigmoid 1 / (1 + e^-x); GELU (erf) x - x/2·erfc(|x|/√2) for x > 0, x/2·erfc(|x|/√2) below
 *     (no cancellation in the negative tail), x or -0 from |x|/√2 = 3.925 on, as the CPU's;
 *     GELU (tanh) x / (1 + e^(-2u)),
 *     u = √(2/π)(x + 0.044715x³);
 *   Pow x^2 as x·x, x^3 as x·x·x, x^1 as x, like the CPU's Pow for a scalar exponent;
 *   integer arithmetic wraps (computed in the unsigned type); Cast's conversions saturate and
 *     round to half precision exactly as k_elementwise_cast.c (to odd first, then to nearest even).
 * Also: V4, four elements moved as one aligned load or store.
 */
#ifndef ULC_RUNTIME_CUDA_EW_MATH_H
#define ULC_RUNTIME_CUDA_EW_MATH_H

#include "runtime/cuda/cu.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#ifndef __host__
#define __host__
#endif

#define EW_HD static __host__ __device__ __forceinline__

UCU_BEGIN

/* Four elements of T, loaded or stored at once (pointer aligned to sizeof(V4<T>)). */
template <class T> struct alignas(4 * sizeof(T)) V4 {
    T v[4];
};

/* ---- float math, overloaded on float / double ------------------------------------------------ */

#define EW_M1(name, ffn, dfn)                                                                      \
    EW_HD float name(float x) { return ffn(x); }                                                  \
    EW_HD double name(double x) { return dfn(x); }
EW_M1(m_fabs, fabsf, fabs)
EW_M1(m_sqrt, sqrtf, sqrt)
EW_M1(m_floor, floorf, floor)
EW_M1(m_ceil, ceilf, ceil)
EW_M1(m_rint, rintf, rint)
EW_M1(m_exp, expf, exp)
EW_M1(m_expm1, expm1f, expm1)
EW_M1(m_log, logf, log)
EW_M1(m_log1p, log1pf, log1p)
EW_M1(m_sin, sinf, sin)
EW_M1(m_cos, cosf, cos)
EW_M1(m_tan, tanf, tan)
EW_M1(m_asin, asinf, asin)
EW_M1(m_acos, acosf, acos)
EW_M1(m_atan, atanf, atan)
EW_M1(m_sinh, sinhf, sinh)
EW_M1(m_cosh, coshf, cosh)
EW_M1(m_asinh, asinhf, asinh)
EW_M1(m_acosh, acoshf, acosh)
EW_M1(m_atanh, atanhf, atanh)
EW_M1(m_tanh, tanhf, tanh)
EW_M1(m_erf, erff, erf)
EW_M1(m_erfc, erfcf, erfc)
#undef EW_M1
EW_HD float m_fmax(float a, float b) { return fmaxf(a, b); }
EW_HD double m_fmax(double a, double b) { return fmax(a, b); }
EW_HD float m_fmod(float a, float b) { return fmodf(a, b); }
EW_HD double m_fmod(double a, double b) { return fmod(a, b); }

/* numpy's NaN-propagating maximum / minimum (also right for integers) */
#define EW_FMAX(a, b) (((a) > (b) || (a) != (a)) ? (a) : (b))
#define EW_FMIN(a, b) (((a) < (b) || (a) != (a)) ? (a) : (b))

EW_HD float ew_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
EW_HD double ew_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

EW_HD float ew_gelu_erf(float x) {
    float au = fabsf(x * 0.70710678118654752f);
    if (au >= 3.925f) return x > 0.0f ? x : 0.0f * x; /* erfc(|u|) < 3e-8: x or -0 (NaN at -inf) */
    float q = erfcf(au);                               /* erfc(|x|/√2) */
    return x > 0.0f ? x - 0.5f * x * q : 0.5f * x * q; /* -0 stays -0 */
}
EW_HD double ew_gelu_erf(double x) { return 0.5 * x * erfc(-x * 0.70710678118654752440); }

EW_HD float ew_gelu_tanh(float x) {
    float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return x / (1.0f + expf(-2.0f * u));
}
EW_HD double ew_gelu_tanh(double x) {
    return x / (1.0 + exp(-2.0 * 0.79788456080286535588 * (x + 0.044715 * x * x * x)));
}

EW_HD float ew_pow(float a, float b) {
    if (b == 2.0f) return a * a;
    if (b == 3.0f) return a * a * a;
    if (b == 1.0f) return a;
    return powf(a, b);
}
EW_HD double ew_pow(double a, double b) {
    if (b == 2.0) return a * a;
    if (b == 3.0) return a * a * a;
    if (b == 1.0) return a;
    return pow(a, b);
}

/* ---- integers ----------------------------------------------------------------------------- */

/* The type integer arithmetic wraps in (floats: themselves). */
template <class T> struct EwWide { typedef T type; };
template <> struct EwWide<int8_t> { typedef uint32_t type; };
template <> struct EwWide<int16_t> { typedef uint32_t type; };
template <> struct EwWide<int32_t> { typedef uint32_t type; };
template <> struct EwWide<int64_t> { typedef uint64_t type; };
template <> struct EwWide<uint8_t> { typedef uint32_t type; };
template <> struct EwWide<uint16_t> { typedef uint32_t type; };
template <> struct EwWide<uint32_t> { typedef uint32_t type; };
template <> struct EwWide<uint64_t> { typedef uint64_t type; };

/* x^y for integers, exact with wrapping; y < 0 gives 1/x^|y| truncated (0 unless |x| = 1) */
EW_HD int64_t ew_ipow(int64_t x, int64_t y) {
    if (y < 0) {
        if (x == 1) return 1;
        if (x == -1) return (y & 1) ? -1 : 1;
        return 0;
    }
    uint64_t r = 1, b = (uint64_t)x, e = (uint64_t)y;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* double → integer, truncating, saturating at the type's range (NaN → 0) */
EW_HD int64_t ew_sat_i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}
EW_HD int32_t ew_sat_i32(double v) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    return (int32_t)v;
}
EW_HD uint64_t ew_f2u64(double v) {
    if (v != v) return 0;
    if (v >= 18446744073709551616.0) return UINT64_MAX;
    if (v < 0) return (uint64_t)ew_sat_i64(v);
    return (uint64_t)v;
}

/* ---- half precision (common/half.c's conversions) ----------------------------------------- */

EW_HD uint32_t ew_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
EW_HD float ew_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

EW_HD uint16_t ew_f32_to_f16(float f) {
    uint32_t u = ew_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (a < 0x33000000u) return sign;
        uint32_t exp = a >> 23;
        uint32_t man = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - exp; /* 14..24 */
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
    return (uint16_t)(sign | (r >> 13));
}

EW_HD float ew_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return ew_f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return ew_f32_from_bits(sign);
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    return ew_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

EW_HD float ew_round_h16(float f) { return ew_f16_to_f32(ew_f32_to_f16(f)); }

EW_HD float ew_round_b16(float f) {
    uint32_t u = ew_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return ew_f32_from_bits(((u >> 16) | 0x40u) << 16);
    u += 0x7fffu + ((u >> 16) & 1u);
    return ew_f32_from_bits((u >> 16) << 16);
}

/* double → float rounded to odd (truncate, then set the last bit when inexact) */
EW_HD float ew_f32_odd(double d) {
    float f = (float)d;
    if ((double)f != d && d == d) {
        uint32_t u = ew_f32_bits(f);
        if (fabs((double)f) > fabs(d)) u -= 1; /* truncate toward zero */
        f = ew_f32_from_bits(u | 1u);
    }
    return f;
}

EW_HD int ew_clz64(uint64_t u) {
#ifdef __CUDA_ARCH__
    return __clzll((long long)u);
#else
    return __builtin_clzll(u);
#endif
}

/* uint64 → double rounded to odd */
EW_HD double ew_u64_odd(uint64_t u) {
    if (u < ((uint64_t)1 << 53)) return (double)u;
    int sh = 11 - ew_clz64(u); /* bit length - 53 */
    uint64_t m = u >> sh;
    if (u & (((uint64_t)1 << sh) - 1)) m |= 1;
    return ldexp((double)m, sh);
}
EW_HD double ew_i64_odd(int64_t v) {
    if (v >= 0) return ew_u64_odd((uint64_t)v);
    return -ew_u64_odd((uint64_t)0 - (uint64_t)v);
}

/* ---- the chain's instructions (kernel.h's ulc_chain_op), as k_chain.c computes them --------- */

EW_HD float ew_chain_binary(int op, float a, float b) {
    switch (op) {
    case ULC_CH_ADD: return a + b;
    case ULC_CH_SUB: return a - b;
    case ULC_CH_MUL: return a * b;
    case ULC_CH_DIV: return a / b;
    default: return ew_pow(a, b);
    }
}

EW_HD float ew_chain_unary(int op, float a) {
    switch (op) {
    case ULC_CH_NEG: return -a;
    case ULC_CH_RELU: return a > 0.0f ? a : 0.0f;
    case ULC_CH_EXP: return expf(a);
    case ULC_CH_LOG: return logf(a);
    case ULC_CH_SQRT: return sqrtf(a);
    case ULC_CH_RECIP: return 1.0f / a;
    case ULC_CH_ABS: return fabsf(a);
    case ULC_CH_TANH: return tanhf(a);
    case ULC_CH_ERF: return erff(a);
    case ULC_CH_SIGMOID: return ew_sigmoid(a);
    case ULC_CH_GELU_ERF: return ew_gelu_erf(a);
    default: return ew_gelu_tanh(a);
    }
}

UCU_END

#endif
