/* cpu.h — the CPU backend's kernel families. Each family file fills its ops' slots of the
 * kernel table (indexed by ulc_op) in its register function; kernels.c calls them once. */
#ifndef ULC_RUNTIME_CPU_CPU_H
#define ULC_RUNTIME_CPU_CPU_H

#include "runtime/kernel.h"

void ulc_cpu_register_elementwise(const ulc_kernel **table); /* k_elementwise.c */
void ulc_cpu_register_shape(const ulc_kernel **table);       /* k_shape.c */
void ulc_cpu_register_reduce(const ulc_kernel **table);      /* k_reduce.c */
void ulc_cpu_register_nn(const ulc_kernel **table);          /* k_nn.c (oneDNN) */
void ulc_cpu_register_grad(const ulc_kernel **table);        /* k_grad.c (domain "ulc") */

#endif
