/*
 * kutil.h — helpers shared by every backend's kernels (runtime/kutil.c): error reporting that
 * names the node, attributes, axes, typed element access, dtype sizes, broadcasting, strides,
 * a parallel-for over the thread pool. The planner uses the dtype helpers too; none of these
 * calls back into the planner.
 */
#ifndef ULC_RUNTIME_KUTIL_H
#define ULC_RUNTIME_KUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/kernel.h"

/* Records "node 'name' (Op): <message>" and returns s. */
ulc_status ulc_k_fail(ulc_kctx *k, ulc_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Attributes (absent → def; an unknown attribute, or one of the wrong type or not part of the
 * op at the model's opset, is an error reported by ulc_op_check_attrs (ir/schema.h), which the
 * planner runs before infer). */
int64_t ulc_k_attr_int(const ulc_kctx *k, const char *name, int64_t def);
float ulc_k_attr_float(const ulc_kctx *k, const char *name, float def);
const char *ulc_k_attr_str(const ulc_kctx *k, const char *name, const char *def);
/* Number of ints (and *v), or -1 when the attribute is absent. */
int ulc_k_attr_ints(const ulc_kctx *k, const char *name, const int64_t **v);
const ulc_attr *ulc_k_attr(const ulc_kctx *k, const char *name);

/* Normalises axis into [0, rank) (negative counts from the end); error when out of range. */
ulc_status ulc_k_axis(ulc_kctx *k, int64_t axis, int rank, int *out);

/* The bytes of t a host function may read: a device plan's constant keeps them at t->host (its
 * data is then the device's copy); everywhere else they are t->data. */
static inline const void *ulc_k_host_bytes(const ulc_rt_tensor *t) { return t->host ? t->host : t->data; }

/* Element i of an integer tensor (any int dtype, or bool) as int64 (uint64 wraps; a float
 * element is truncated and saturated, NaN giving 0). */
int64_t ulc_k_int_at(const ulc_rt_tensor *t, uint64_t i);
/* Element i of any numeric tensor as double. Both read ulc_k_host_bytes(t). */
double ulc_k_f64_at(const ulc_rt_tensor *t, uint64_t i);
/* Stores v into element i of t, converting to t's dtype: ints take v truncated and saturated to
 * int64 (uint64: to [0, 2^64)), then wrap to narrower types; NaN stores 0. */
void ulc_k_store_f64(ulc_rt_tensor *t, uint64_t i, double v);

/* Bytes per element of a runtime dtype (F16/BF16 count 4: they are computed as float32). */
size_t ulc_k_dtype_size(int dt);
int ulc_k_is_int(int dt);   /* i8..u64 (not bool) */
int ulc_k_is_float(int dt); /* f32, f64 */

/* out = shape of the multidirectional broadcast of the given tensors (numpy rules). */
ulc_status ulc_k_broadcast(ulc_kctx *k, const ulc_rt_tensor *const *ts, int n, ulc_rt_tensor *out);
/* Element strides of t read as if broadcast to `rank` dims `dims` (0 for broadcast dims). */
void ulc_k_bcast_strides(const ulc_rt_tensor *t, int rank, const int64_t *dims, int64_t *strides);
/* Dense row-major element strides. */
void ulc_k_strides(int rank, const int64_t *dims, int64_t *strides);

/* An elementwise loop's broadcast, collapsed (both backends plan their loops with it): the
 * strides of ops[0..nops) broadcast to out's dims, then out's dims of 1 dropped and neighbours
 * merged wherever every operand stays contiguous (or stays broadcast) across them, into dims[]
 * and st[k][] (ULC_RT_MAX_RANK entries each; those past the result zeroed). Returns the collapsed rank; 0 when no dim is
 * left (one element, or none): the caller sets that case's single dim as its loops want it. */
int ulc_k_bcast_collapse(const ulc_rt_tensor *out, const ulc_rt_tensor *const *ops, int nops,
                         int64_t *dims, int64_t (*st)[ULC_RT_MAX_RANK]);

/* A strided copy dst[Σ i_d·os_d] = src[Σ i_d·is_d] over the index box dims[0..rank), simplified
 * in place (both backends' copy engines): size-1 dims dropped and neighbours contiguous in both
 * src and dst merged; a box of one element becomes one dim of 1 with strides 1. Returns the new
 * rank (>= 1). */
int ulc_k_merge_copy_dims(int rank, int64_t *dims, int64_t *is, int64_t *os);

void ulc_k_set(ulc_rt_tensor *t, int dtype, int rank, const int64_t *dims);

/* ---- checked arithmetic on values a model controls ------------------------------------------
 *
 * Dims, attributes and constant inputs (shapes, pads, strides, repeats, starts, …) are whatever
 * a model says, so shape rules and the kernels' geometry never add, subtract or multiply them
 * in plain int64, and never cast a model's double to an integer unchecked: they use these, which
 * report overflow instead of invoking undefined behaviour, and refuse the node with a message.
 *
 * The plan walk keeps one invariant over every tensor it knows (initializers, inputs, each shape
 * rule's outputs): every dim is >= 0 and the product of the non-zero dims is at most
 * ULC_RT_MAX_NUMEL (ulc_k_dims_ok). So the product of any subset of one known tensor's dims (an
 * element count, a stride, Flatten's halves, an [O, A, I] view) fits int64 with room to spare,
 * and only arithmetic that combines dims with other model values needs these checks. */

#define ULC_RT_MAX_NUMEL ((int64_t)1 << 48) /* elements of one tensor (256 Ti) */

/* *r = a + b, a - b, a · b; return 1 (and leave *r unspecified) when int64 cannot hold it. */
static inline int ulc_i64_add(int64_t a, int64_t b, int64_t *r) {
    return __builtin_add_overflow(a, b, r);
}
static inline int ulc_i64_sub(int64_t a, int64_t b, int64_t *r) {
    return __builtin_sub_overflow(a, b, r);
}
static inline int ulc_i64_mul(int64_t a, int64_t b, int64_t *r) {
    return __builtin_mul_overflow(a, b, r);
}

/* *r = the product of dims[0..rank); 0 when some dim is negative or the product of the
 * non-zero dims exceeds ULC_RT_MAX_NUMEL, else 1. */
int ulc_k_numel(int rank, const int64_t *dims, int64_t *r);
/* 1 when dims[0..rank) meet the walk's invariant (ulc_k_numel succeeds). */
int ulc_k_dims_ok(int rank, const int64_t *dims);

/* The parallel-for grain for items of `work` units each when a thread should get about `budget`
 * units: budget / (work + 1) + 1, in double, so a product of sizes as `work` cannot overflow. */
static inline int64_t ulc_k_grain(double budget, double work) {
    double g = budget / (work > 0 ? work + 1 : 1) + 1;
    return g > budget ? (int64_t)budget + 1 : (int64_t)g;
}

/* *r = v truncated toward zero; 0 when v is NaN or outside int64's range (then *r is v
 * saturated, NaN giving 0), else 1. */
int ulc_f64_to_i64(double v, int64_t *r);

/* dtype code the runtime computes a declared dtype in (F16/BF16 → F32; others unchanged). */
static inline int ulc_k_compute_dtype(int dt) {
    return (dt == ULC_DT_F16 || dt == ULC_DT_BF16) ? ULC_DT_F32 : dt;
}

/* 1 when kernels may take their AVX2+FMA paths: the CPU has both and ULC_NO_SIMD is not set
 * (tests set it to check the portable twins on the same data). Cached; thread-safe. */
int ulc_k_avx2(void);
/* 1 when kernels may take their AVX-512F paths: ulc_k_avx2() holds, the CPU and the OS support
 * AVX-512F, and neither ULC_NO_SIMD nor ULC_NO_AVX512 is set (the latter keeps the AVX2 paths,
 * to compare the two on one machine). Cached; thread-safe. */
int ulc_k_avx512(void);

/* Runs body(i0, i1, arg) over [0, n) split across the pool's threads in contiguous ranges
 * (ranges of at least `grain` items; one thread when n is small). */
void ulc_k_parallel(int64_t n, int64_t grain, void (*body)(int64_t i0, int64_t i1, void *arg),
                    void *arg);

/* "[2,3,4]" for a dims list (messages); ULC_OK when input i is present, else "input i (what) is
 * required"; a 0-D or 1-D integer input (a shape, axes, starts, …) known at plan time into
 * v[0..*n) (at most max); axes normalised against rank, refusing out-of-range and repeats. */
const char *ulc_k_dims_str(int rank, const int64_t *dims, char *buf, size_t size);
ulc_status ulc_k_need_input(ulc_kctx *k, int i, const char *what);
ulc_status ulc_k_read_ints(ulc_kctx *k, int slot, const char *what, int64_t *v, int max, int *n);
ulc_status ulc_k_norm_axes(ulc_kctx *k, const int64_t *axes, int n, int rank, int *out);

#endif
