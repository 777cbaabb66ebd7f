/*
 * k_elementwise.h — what the elementwise family's files share (k_elementwise.c registers the
 * family; k_elementwise_cast.c: Cast and CastLike; k_elementwise_math.c: float32 exp, sigmoid,
 * tanh, erf and GELU over arrays, which any other CPU kernel may use too — Softmax's exp).
 *
 * The array functions map x[0..n) to y[0..n) (y may equal x). They dispatch at run time to an
 * AVX2+FMA implementation when the CPU has it, else to a portable C twin of the same algorithm.
 * Accuracy against double-precision libm over the floats in [-100, 100]: exp ≤ 1 ulp, tanh,
 * erf ≤ 2 ulp, sigmoid ≤ 2.5 ulp; NaN and ±inf handled as libm does. GELU is computed in forms
 * without cancellation (erfc, sigmoid), so its negative tail keeps its relative accuracy
 * (k_elementwise_math.c gives the figures).
 */
#ifndef ULC_RUNTIME_CPU_K_ELEMENTWISE_H
#define ULC_RUNTIME_CPU_K_ELEMENTWISE_H

#include <stdint.h>

#include "runtime/cpu/cpu.h"

void ulc_cpu_vexp_f32(const float *x, float *y, int64_t n);     /* e^x */
void ulc_cpu_vsqrt_f32(const float *x, float *y, int64_t n);    /* √x (IEEE, correctly rounded) */
void ulc_cpu_vsigmoid_f32(const float *x, float *y, int64_t n); /* 1 / (1 + e^-x) */
void ulc_cpu_vtanh_f32(const float *x, float *y, int64_t n);
void ulc_cpu_verf_f32(const float *x, float *y, int64_t n);
/* x/2 · (1 + erf(x/√2)) */
void ulc_cpu_vgelu_erf_f32(const float *x, float *y, int64_t n);
/* x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))) */
void ulc_cpu_vgelu_tanh_f32(const float *x, float *y, int64_t n);

/* Fills Cast's and CastLike's slots (k_elementwise_cast.c); called by
 * ulc_cpu_register_elementwise. */
void ulc_cpu_register_cast(const ulc_kernel **table);

#endif
