/*
 * lora_merge_kernels.h — the inner loops of a LoRA merge (passes/lora_merge.c), with AVX2/F16C
 * paths chosen at run time. Every vector path gives the same bits as its scalar loop
 * (ULC_NO_SIMD=1 forces the scalar ones; the tests compare both).
 */
#ifndef ULC_PASSES_LORA_MERGE_KERNELS_H
#define ULC_PASSES_LORA_MERGE_KERNELS_H

#include <stdint.h>

/* Rows of the low-rank product made at once (the vector path's block). */
#define ULC_MERGE_DELTA_ROWS 4

/* n elements of float data (f32, f16 or bf16) from element `at` of p, as f32. */
void ulc_merge_load(const uint8_t *p, int dtype, uint64_t at, uint64_t n, float *dst);

/* out[k][j] = sum_q U[k][q] V[q][j] for k < nrows (<= ULC_MERGE_DELTA_ROWS) rows of U
 * ([.., r]) and V [r, n]. Every element is summed over q in ascending order with a separate
 * multiply and add, so the vector and scalar versions give the same bits. */
void ulc_merge_delta_rows(const float *U, const float *V, uint64_t r, uint64_t n, uint64_t nrows,
                          float *out);

/* o = base + delta * scale over whole vectors of 8 (f32 o), or the same rounded once to
 * nearest-even into f16 / bf16 o; returns how many elements were done (0 without AVX2/F16C:
 * the caller's scalar loop does the rest), and folds max |o - base| and finiteness into
 * *rowmax / *finite. */
uint64_t ulc_merge_add_f32(float *o, const float *base, const float *delta, float scale,
                           uint64_t n, float *rowmax, int *finite);
uint64_t ulc_merge_add_half(uint8_t *o, const float *base, const float *delta, float scale,
                            uint64_t n, int f16, float *rowmax, int *finite);

#endif
