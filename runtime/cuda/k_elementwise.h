/*
 * k_elementwise.h — what the CUDA backend's elementwise files share (k_elementwise.cu: binary,
 * variadic, Where and the registration; k_elementwise_unary.cu: unary ops, Clip, Cast): the
 * dtype lists the typed kernels are stamped out for, the vector-or-scalar grid. Private to
 * those files; the scalar math is ew_math.h's (a dtype is refused with cu.h's ucu_refuse_dtype).
 */
#ifndef ULC_RUNTIME_CUDA_K_ELEMENTWISE_H
#define ULC_RUNTIME_CUDA_K_ELEMENTWISE_H

#include "runtime/cuda/ew_math.h"

extern "C" {
#include "runtime/shape/params_ew.h"
}

/* Type lists: X(dtype code suffix, C type, extra arguments...). */
#define EW_NUM4(X, ...)                                                                            \
    X(F32, float, __VA_ARGS__) X(F64, double, __VA_ARGS__) X(I32, int32_t, __VA_ARGS__)            \
    X(I64, int64_t, __VA_ARGS__)
#define EW_FLT2(X, ...) X(F32, float, __VA_ARGS__) X(F64, double, __VA_ARGS__)
#define EW_INT8(X, ...)                                                                            \
    X(I8, int8_t, __VA_ARGS__) X(I16, int16_t, __VA_ARGS__) X(I32, int32_t, __VA_ARGS__)           \
    X(I64, int64_t, __VA_ARGS__) X(U8, uint8_t, __VA_ARGS__) X(U16, uint16_t, __VA_ARGS__)         \
    X(U32, uint32_t, __VA_ARGS__) X(U64, uint64_t, __VA_ARGS__)
#define EW_UINT4(X, ...)                                                                           \
    X(U8, uint8_t, __VA_ARGS__) X(U16, uint16_t, __VA_ARGS__) X(U32, uint32_t, __VA_ARGS__)        \
    X(U64, uint64_t, __VA_ARGS__)

#define EW_FLOAT(A) std::is_floating_point<A>::value
#define EW_SIGNED(A) std::is_signed<A>::value

UCU_BEGIN

static inline int ew_aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

/* Blocks for a grid-stride loop over nvec elements four at a time and the rest one by one. */
static inline unsigned ew_grid(int64_t n, int64_t nvec) {
    int64_t items = nvec / 4 > n - nvec ? nvec / 4 : n - nvec;
    return ucu_blocks(items, UCU_THREADS);
}

/* Fills the unary ops', Clip's, Cast's and CastLike's slots (k_elementwise_unary.cu). */
void ucu_reg_elementwise_unary(ucu_table t);

UCU_END

#endif
