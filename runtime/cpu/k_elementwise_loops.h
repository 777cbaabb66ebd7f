/*
 * k_elementwise_loops.h — what the elementwise kernel files (k_elementwise.c: binary, variadic,
 * Where; k_elementwise_unary.c: unary ops and Clip) share to build their typed loops: the
 * per-thread grain, the AVX2 target attribute, the dtype lists the loops are stamped out for,
 * numpy's NaN-propagating max/min. Private to those two files.
 */
#ifndef ULC_RUNTIME_CPU_K_ELEMENTWISE_LOOPS_H
#define ULC_RUNTIME_CPU_K_ELEMENTWISE_LOOPS_H

#include <stdint.h>

#include "runtime/cpu/k_elementwise.h"
#include "runtime/shape/params_ew.h"

#define EW_GRAIN 32768 /* elements per thread at least: ≥ 64K elements use two threads or more */

#if defined(__x86_64__) || defined(__i386__)
#define EW_X86 1
#define EW_AVX2_ATTR __attribute__((target("avx2,fma")))
#else
#define EW_X86 0
#define EW_AVX2_ATTR
#endif

/* Type lists: X(code, C type, wide unsigned type for wrapping arithmetic). */
#define EW_SINTS(X)                                                                               \
    X(I8, int8_t, uint32_t) X(I16, int16_t, uint32_t) X(I32, int32_t, uint32_t)                   \
    X(I64, int64_t, uint64_t)
#define EW_UINTS(X)                                                                               \
    X(U8, uint8_t, uint32_t) X(U16, uint16_t, uint32_t) X(U32, uint32_t, uint32_t)                \
    X(U64, uint64_t, uint64_t)
#define EW_INTS(X) EW_SINTS(X) EW_UINTS(X)
#define EW_FLOATS(X) X(F32, float, float) X(F64, double, double)
#define EW_NUMS(X) EW_FLOATS(X) EW_INTS(X)

/* float NaN-propagating max/min (numpy maximum/minimum) */
#define EW_FMAX(a, b) (((a) > (b) || (a) != (a)) ? (a) : (b))
#define EW_FMIN(a, b) (((a) < (b) || (a) != (a)) ? (a) : (b))

static inline const char *dtn(int dt) { return ulc_dtype_name(dt); }

/* Fills the unary ops' and Clip's slots (k_elementwise_unary.c); called by
 * ulc_cpu_register_elementwise. */
void ulc_cpu_register_unary(const ulc_kernel **table);

#endif
