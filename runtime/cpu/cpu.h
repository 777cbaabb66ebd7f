/* cpu.h — the CPU backend's kernel families. Each family file fills its ops' slots of the
 * kernel table (indexed by ulc_op) in its register function; kernels.c calls them once. */
#ifndef ULC_RUNTIME_CPU_CPU_H
#define ULC_RUNTIME_CPU_CPU_H

#include "runtime/kutil.h"

/* The CPU backend's kernel for op, or NULL (kernels.c; the vtable, ulc_backend_cpu, is declared
 * in kernel.h: the planner reaches the backend only through it). */
const ulc_kernel *ulc_cpu_kernel(ulc_op op);
/* Sets the thread count of the CPU backend's thread pool (OpenMP, shared with oneDNN). */
void ulc_cpu_set_threads(int threads);
/* The backend's check_precision: float32 always; bfloat16 products where oneDNN's effective ISA
 * has a bfloat16 brgemm (AVX512_BF16 or AMX); TF32 is a CUDA mode. */
ulc_status ulc_cpu_check_precision(int precision, ulc_ctx *ctx);
/* The chain kernel: k->state is a malloc'd ulc_chain (freed by its release). */
const ulc_kernel *ulc_cpu_chain_kernel(void);
/* Evaluates c over n elements (n ≤ 512) of the inputs ins[] into out (the planner probes chains
 * with it to recognise the GELU spellings). */
void ulc_cpu_chain_eval(const ulc_chain *c, const float *const *ins, float *out, int n);

/* The attention kernel (k_attn.c): k->state is a malloc'd ulc_attn (freed by its release). */
const ulc_kernel *ulc_cpu_attn_kernel(void);
/* Softmax of `rows` contiguous rows of n floats, in place: the Softmax kernel's own row loop
 * (k_reduce_norm.c), so fused attention gives the same bits. */
void ulc_cpu_softmax_rows_f32(float *x, int64_t rows, int64_t n);

void ulc_cpu_register_elementwise(const ulc_kernel **table); /* k_elementwise.c */
void ulc_cpu_register_shape(const ulc_kernel **table);       /* k_shape.c */
void ulc_cpu_register_reduce(const ulc_kernel **table);      /* k_reduce.c */
void ulc_cpu_register_nn(const ulc_kernel **table);          /* k_nn.c (oneDNN) */
void ulc_cpu_register_grad(const ulc_kernel **table);        /* k_grad.c (domain "ulc") */
void ulc_cpu_register_loss(const ulc_kernel **table);        /* k_loss.c (domain "ulc") */
void ulc_cpu_register_attn(const ulc_kernel **table);        /* k_attn.c (domain "ulc") */

#endif
