/*
 * emu.h — a host emulator of the CUDA runtime, so that the CUDA backend's kernel sources
 * (the .cu files of runtime/cuda) compile unchanged with g++ -std=c++17 -DULC_CUDA_EMU and run
 * on the host (runtime/cuda/cu.h includes this header; runtime/cuda/emu.cc implements it).
 *
 * What it models, and its limits:
 *   - "device" memory is host memory: cudaMalloc'd blocks are 256-byte aligned and filled with
 *     0xFF bytes (NaN floats, -1 integers), so reading memory nothing wrote shows; copies, sets,
 *     streams and events are synchronous; cudaMemcpy/cudaMemset/cudaFree and the sgemms check
 *     that the device side lies inside one cudaMalloc'd block (an overrun, a host pointer or a
 *     double free is an error, not a silent write), and a copy's host side outside them;
 *   - host code cannot touch device memory: outside the emulator's own device work (a launch,
 *     a copy, a set, an sgemm) every cudaMalloc'd block is PROT_NONE, so a host read or write of
 *     one (a kernel's prepare reading a plan constant through `data` rather than `host`, host
 *     code reading an output buffer) dies at once with "host code touched device memory", the
 *     allocation and a backtrace on stderr (SIGABRT). Kernel arguments are evaluated inside the
 *     launch, so an argument expression that reads device memory is not caught. While one OS
 *     thread runs device work, device memory is open to the host code of all.
 *     ULC_CUDA_EMU_PROTECT=0 turns the check off;
 *   - a launch (ulc_emu_launch) runs on the calling OS thread: the blocks one after another
 *     (blockIdx.x fastest, then y, then z), a block's threads as cooperative fibers that switch
 *     only at __syncthreads and warp collectives; a thread that reaches none runs to its end in
 *     one go. So nothing runs concurrently and races go unseen; atomics are plain
 *     read-modify-writes;
 *   - __syncthreads needs every thread of the block (one that has returned can never arrive:
 *     a deadlock). A warp collective (shuffles, votes, __reduce_*_sync, __syncwarp,
 *     __activemask) needs every lane of the warp that exists and has not returned, all at the
 *     same kind of collective: warps must be convergent; the mask argument does not select
 *     lanes. A shuffle's source lane out of the width segment, past a partial last warp, or
 *     returned gives the caller's own value;
 *   - a deadlock (no thread can go on) or a diverged collective prints the block and the
 *     waiting threads to stderr and aborts: it is a kernel bug;
 *   - __shared__ is `static thread_local`: one copy per kernel per OS thread, shared by the
 *     block being run and NOT cleared between blocks or launches; dynamic shared memory
 *     (UCU_DYN_SMEM -> ulc_emu_dyn_smem) is refilled with 0xA5 bytes before every block;
 *   - a launch with more than 48 KiB of dynamic shared memory needs a cudaFuncSetAttribute
 *     opt-in first, but of any kernel (a launch does not say which kernel it runs);
 *   - fiber stacks are 64 KiB (ULC_CUDA_EMU_STACK_KB overrides), with a guard page: a kernel
 *     with big local arrays crashes (SIGSEGV) rather than corrupting memory;
 *   - no device printf/new/malloc, no <<<>>> (UCU_LAUNCH), no extern __shared__ (UCU_DYN_SMEM),
 *     no dynamic parallelism, cooperative groups, half types or textures.
 */
#ifndef ULC_RUNTIME_CUDA_EMU_H
#define ULC_RUNTIME_CUDA_EMU_H

#ifndef __cplusplus
#error "runtime/cuda/emu.h is C++ (g++ -std=c++17 -DULC_CUDA_EMU)"
#endif

/* The C headers first, here, so that a later include inside extern "C" { } (cu.h) is a no-op. */
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <math.h> /* libstdc++'s: float overloads (sqrt(float) ...) at global scope, as in CUDA */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- qualifiers ------------------------------------------------------------------------------ */

#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n))) /* alignas cannot follow `static` */
/* Shared by the threads of the block being run (they are fibers of one OS thread). At block
 * scope thread_local implies static, and `static __shared__` is accepted too. */
#define __shared__ thread_local

/* ---- built-in types and variables ------------------------------------------------------------ */

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

#define ULC_EMU_VEC2(T, N, A)                                                                      \
    struct __attribute__((aligned(A))) N##2 { T x, y; };                                           \
    inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define ULC_EMU_VEC4(T, N, A)                                                                      \
    struct __attribute__((aligned(A))) N##4 { T x, y, z, w; };                                     \
    inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
ULC_EMU_VEC2(float, float, 8)
ULC_EMU_VEC4(float, float, 16)
ULC_EMU_VEC2(int, int, 8)
ULC_EMU_VEC4(int, int, 16)
ULC_EMU_VEC2(unsigned, uint, 8)
ULC_EMU_VEC4(unsigned, uint, 16)
ULC_EMU_VEC2(double, double, 16)
#undef ULC_EMU_VEC2
#undef ULC_EMU_VEC4
struct float3 {
    float x, y, z;
};
inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
struct int3 {
    int x, y, z;
};
inline int3 make_int3(int x, int y, int z) { return int3{x, y, z}; }

/* Set by the scheduler before a fiber runs (GNU __thread: no TLS wrapper on every read). */
extern __thread uint3 threadIdx;
extern __thread uint3 blockIdx;
extern __thread uint3 blockDim;
extern __thread uint3 gridDim;
constexpr int warpSize = 32;

/* ---- synchronisation and warp collectives (emu.cc) ------------------------------------------- */

enum { /* ulc_emu_block_op */
       ULC_EMU_BAR_SYNC,
       ULC_EMU_BAR_COUNT,
       ULC_EMU_BAR_AND,
       ULC_EMU_BAR_OR
};
enum { /* ulc_emu_warp_op */
       ULC_EMU_SHFL_IDX,
       ULC_EMU_SHFL_UP,
       ULC_EMU_SHFL_DOWN,
       ULC_EMU_SHFL_XOR,
       ULC_EMU_WARP_SYNC,
       ULC_EMU_VOTE_BALLOT,
       ULC_EMU_VOTE_ANY,
       ULC_EMU_VOTE_ALL,
       ULC_EMU_RED_ADD,
       ULC_EMU_RED_MIN_I,
       ULC_EMU_RED_MAX_I,
       ULC_EMU_RED_MIN_U,
       ULC_EMU_RED_MAX_U,
       ULC_EMU_RED_AND,
       ULC_EMU_RED_OR,
       ULC_EMU_RED_XOR,
       ULC_EMU_WARP_ACTIVE,
       ULC_EMU_WARP_OPS_
};

/* A block barrier: waits for every thread of the block; returns the count/and/or of pred. */
int ulc_emu_block_op(int op, int pred);
/* A warp rendezvous of every live lane: shuffles (arg: lane, delta or xor mask; v: the value's
 * bits), votes and reductions (arg unused; v: the predicate/operand). Returns the lane's result. */
unsigned long long ulc_emu_warp_op(int op, unsigned mask, unsigned long long v, int arg, int width);

inline void __syncthreads(void) { (void)ulc_emu_block_op(ULC_EMU_BAR_SYNC, 0); }
inline int __syncthreads_count(int p) { return ulc_emu_block_op(ULC_EMU_BAR_COUNT, p); }
inline int __syncthreads_and(int p) { return ulc_emu_block_op(ULC_EMU_BAR_AND, p); }
inline int __syncthreads_or(int p) { return ulc_emu_block_op(ULC_EMU_BAR_OR, p); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)ulc_emu_warp_op(ULC_EMU_WARP_SYNC, mask, 0, 0, 32);
}
inline void __threadfence(void) {}
inline void __threadfence_block(void) {}
inline void __threadfence_system(void) {}
/* A rendezvous too (the emulator has no notion of lanes running together): the lanes of the
 * warp that have not returned; every one of them must call it. */
inline unsigned __activemask(void) {
    return (unsigned)ulc_emu_warp_op(ULC_EMU_WARP_ACTIVE, 0xffffffffu, 0, 0, 32);
}

template <class T> inline T ulc_emu_shfl_(int op, unsigned mask, T v, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move values of at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    bits = ulc_emu_warp_op(op, mask, bits, arg, width);
    T r = v;
    std::memcpy(&r, &bits, sizeof r);
    return r;
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return ulc_emu_shfl_(ULC_EMU_SHFL_IDX, mask, v, src, width);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
    return ulc_emu_shfl_(ULC_EMU_SHFL_UP, mask, v, (int)(d > 32u ? 32u : d), width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
    return ulc_emu_shfl_(ULC_EMU_SHFL_DOWN, mask, v, (int)(d > 32u ? 32u : d), width);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) {
    return ulc_emu_shfl_(ULC_EMU_SHFL_XOR, mask, v, lm, width);
}
inline unsigned __ballot_sync(unsigned mask, int p) {
    return (unsigned)ulc_emu_warp_op(ULC_EMU_VOTE_BALLOT, mask, p != 0, 0, 32);
}
inline int __any_sync(unsigned mask, int p) {
    return (int)ulc_emu_warp_op(ULC_EMU_VOTE_ANY, mask, p != 0, 0, 32);
}
inline int __all_sync(unsigned mask, int p) {
    return (int)ulc_emu_warp_op(ULC_EMU_VOTE_ALL, mask, p != 0, 0, 32);
}
#define ULC_EMU_WRED(name, T, op)                                                                  \
    inline T name(unsigned mask, T v) {                                                            \
        return (T)(unsigned)ulc_emu_warp_op(op, mask, (unsigned)v, 0, 32);                         \
    }
ULC_EMU_WRED(__reduce_add_sync, unsigned, ULC_EMU_RED_ADD)
ULC_EMU_WRED(__reduce_add_sync, int, ULC_EMU_RED_ADD)
ULC_EMU_WRED(__reduce_min_sync, unsigned, ULC_EMU_RED_MIN_U)
ULC_EMU_WRED(__reduce_min_sync, int, ULC_EMU_RED_MIN_I)
ULC_EMU_WRED(__reduce_max_sync, unsigned, ULC_EMU_RED_MAX_U)
ULC_EMU_WRED(__reduce_max_sync, int, ULC_EMU_RED_MAX_I)
ULC_EMU_WRED(__reduce_and_sync, unsigned, ULC_EMU_RED_AND)
ULC_EMU_WRED(__reduce_or_sync, unsigned, ULC_EMU_RED_OR)
ULC_EMU_WRED(__reduce_xor_sync, unsigned, ULC_EMU_RED_XOR)
#undef ULC_EMU_WRED

/* ---- atomics: plain read-modify-write (a launch runs on one OS thread, fibers switch only at
 * barriers) ------------------------------------------------------------------------------------ */

#define ULC_EMU_ATOMIC(name, T, expr)                                                              \
    inline T name(T *p, T v) {                                                                     \
        T old = *p;                                                                                \
        *p = (expr);                                                                               \
        return old;                                                                                \
    }
ULC_EMU_ATOMIC(atomicAdd, int, old + v)
ULC_EMU_ATOMIC(atomicAdd, unsigned, old + v)
ULC_EMU_ATOMIC(atomicAdd, unsigned long long, old + v)
ULC_EMU_ATOMIC(atomicAdd, float, old + v)
ULC_EMU_ATOMIC(atomicAdd, double, old + v)
ULC_EMU_ATOMIC(atomicSub, int, old - v)
ULC_EMU_ATOMIC(atomicSub, unsigned, old - v)
ULC_EMU_ATOMIC(atomicExch, int, v)
ULC_EMU_ATOMIC(atomicExch, unsigned, v)
ULC_EMU_ATOMIC(atomicExch, unsigned long long, v)
ULC_EMU_ATOMIC(atomicExch, float, v)
ULC_EMU_ATOMIC(atomicMax, int, old < v ? v : old)
ULC_EMU_ATOMIC(atomicMax, unsigned, old < v ? v : old)
ULC_EMU_ATOMIC(atomicMax, long long, old < v ? v : old)
ULC_EMU_ATOMIC(atomicMax, unsigned long long, old < v ? v : old)
ULC_EMU_ATOMIC(atomicMin, int, v < old ? v : old)
ULC_EMU_ATOMIC(atomicMin, unsigned, v < old ? v : old)
ULC_EMU_ATOMIC(atomicMin, long long, v < old ? v : old)
ULC_EMU_ATOMIC(atomicMin, unsigned long long, v < old ? v : old)
ULC_EMU_ATOMIC(atomicAnd, int, old & v)
ULC_EMU_ATOMIC(atomicAnd, unsigned, old & v)
ULC_EMU_ATOMIC(atomicAnd, unsigned long long, old & v)
ULC_EMU_ATOMIC(atomicOr, int, old | v)
ULC_EMU_ATOMIC(atomicOr, unsigned, old | v)
ULC_EMU_ATOMIC(atomicOr, unsigned long long, old | v)
ULC_EMU_ATOMIC(atomicXor, int, old ^ v)
ULC_EMU_ATOMIC(atomicXor, unsigned, old ^ v)
ULC_EMU_ATOMIC(atomicXor, unsigned long long, old ^ v)
ULC_EMU_ATOMIC(atomicInc, unsigned, old >= v ? 0u : old + 1u)
ULC_EMU_ATOMIC(atomicDec, unsigned, (old == 0u || old > v) ? v : old - 1u)
#undef ULC_EMU_ATOMIC
#define ULC_EMU_CAS(T)                                                                             \
    inline T atomicCAS(T *p, T cmp, T v) {                                                         \
        T old = *p;                                                                                \
        if (old == cmp) *p = v;                                                                    \
        return old;                                                                                \
    }
ULC_EMU_CAS(int)
ULC_EMU_CAS(unsigned)
ULC_EMU_CAS(unsigned long long)
ULC_EMU_CAS(unsigned short)
#undef ULC_EMU_CAS

/* ---- math: <cmath> as is, plus CUDA's own names ---------------------------------------------- */

/* glibc's <math.h> declares (but does not export) __expf, __sinf ... : define those with its
 * linkage and exception specification. */
#ifdef __GLIBC__
#define ULC_EMU_LIBM_(ret) extern "C" inline ret
#define ULC_EMU_NOEXCEPT_ noexcept
#else
#define ULC_EMU_LIBM_(ret) inline ret
#define ULC_EMU_NOEXCEPT_
#endif
ULC_EMU_LIBM_(float) __expf(float x) ULC_EMU_NOEXCEPT_ { return expf(x); }
ULC_EMU_LIBM_(float) __exp10f(float x) ULC_EMU_NOEXCEPT_ { return powf(10.0f, x); }
ULC_EMU_LIBM_(float) __logf(float x) ULC_EMU_NOEXCEPT_ { return logf(x); }
ULC_EMU_LIBM_(float) __log2f(float x) ULC_EMU_NOEXCEPT_ { return log2f(x); }
ULC_EMU_LIBM_(float) __log10f(float x) ULC_EMU_NOEXCEPT_ { return log10f(x); }
ULC_EMU_LIBM_(float) __powf(float x, float y) ULC_EMU_NOEXCEPT_ { return powf(x, y); }
ULC_EMU_LIBM_(float) __sinf(float x) ULC_EMU_NOEXCEPT_ { return sinf(x); }
ULC_EMU_LIBM_(float) __cosf(float x) ULC_EMU_NOEXCEPT_ { return cosf(x); }
ULC_EMU_LIBM_(float) __tanf(float x) ULC_EMU_NOEXCEPT_ { return tanf(x); }
ULC_EMU_LIBM_(void) __sincosf(float x, float *s, float *c) ULC_EMU_NOEXCEPT_ {
    *s = sinf(x);
    *c = cosf(x);
}
#undef ULC_EMU_LIBM_
#undef ULC_EMU_NOEXCEPT_

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / ::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
/* The _rn products and sums are never fused into an fma with a neighbour (-ffp-contract=fast,
 * g++'s default in GNU modes, would on targets with fma): the asm makes the result opaque. */
template <class T> inline T ulc_emu_unfused_(T v) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__("" : "+x"(v));
#elif defined(__aarch64__)
    __asm__("" : "+w"(v));
#else
    volatile T r = v;
    v = r;
#endif
    return v;
}
inline float __fadd_rn(float a, float b) { return ulc_emu_unfused_(a + b); }
inline float __fsub_rn(float a, float b) { return ulc_emu_unfused_(a - b); }
inline float __fmul_rn(float a, float b) { return ulc_emu_unfused_(a * b); }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return ulc_emu_unfused_(a + b); }
inline double __dsub_rn(double a, double b) { return ulc_emu_unfused_(a - b); }
inline double __dmul_rn(double a, double b) { return ulc_emu_unfused_(a * b); }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return ::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return ::fma(a, b, c); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
inline double normcdf(double x) { return 0.5 * ::erfc(-x * 0.70710678118654752); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }

template <class To, class From> inline To ulc_emu_bits_(From v) {
    static_assert(sizeof(To) == sizeof(From), "same size");
    To r;
    std::memcpy(&r, &v, sizeof r);
    return r;
}
inline int __float_as_int(float x) { return ulc_emu_bits_<int>(x); }
inline unsigned __float_as_uint(float x) { return ulc_emu_bits_<unsigned>(x); }
inline float __int_as_float(int x) { return ulc_emu_bits_<float>(x); }
inline float __uint_as_float(unsigned x) { return ulc_emu_bits_<float>(x); }
inline long long __double_as_longlong(double x) { return ulc_emu_bits_<long long>(x); }
inline double __longlong_as_double(long long x) { return ulc_emu_bits_<double>(x); }

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}

template <class T> inline T __ldg(const T *p) { return *p; }

/* CUDA's min/max overloads (device code calls bare min(a, b)); mixed signedness is unsigned,
 * as in CUDA; other mixes are ambiguous there too. */
#define ULC_EMU_MINMAX(R, A, B)                                                                    \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }                                   \
    inline R max(A a, B b) { return (R)a < (R)b ? (R)b : (R)a; }
ULC_EMU_MINMAX(int, int, int)
ULC_EMU_MINMAX(unsigned, unsigned, unsigned)
ULC_EMU_MINMAX(unsigned, int, unsigned)
ULC_EMU_MINMAX(unsigned, unsigned, int)
ULC_EMU_MINMAX(long, long, long)
ULC_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
ULC_EMU_MINMAX(unsigned long, long, unsigned long)
ULC_EMU_MINMAX(unsigned long, unsigned long, long)
ULC_EMU_MINMAX(long long, long long, long long)
ULC_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
ULC_EMU_MINMAX(unsigned long long, long long, unsigned long long)
ULC_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef ULC_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return ::fmin(a, b); }
inline double max(double a, double b) { return ::fmax(a, b); }
inline double min(float a, double b) { return ::fmin(a, b); }
inline double max(float a, double b) { return ::fmax(a, b); }
inline double min(double a, float b) { return ::fmin(a, b); }
inline double max(double a, float b) { return ::fmax(a, b); }
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a < b ? b : a; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a < b ? b : a; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) {
    return a < b ? a : b;
}
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) {
    return a < b ? b : a;
}

/* ---- the runtime API ------------------------------------------------------------------------- */

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999
} cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxBlockDimX = 2,
    cudaDevAttrMaxBlockDimY = 3,
    cudaDevAttrMaxBlockDimZ = 4,
    cudaDevAttrMaxGridDimX = 5,
    cudaDevAttrMaxGridDimY = 6,
    cudaDevAttrMaxGridDimZ = 7,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrL2CacheSize = 38,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};

#define cudaStreamDefault 0x00u
#define cudaStreamNonBlocking 0x01u
#define cudaEventDefault 0x00u
#define cudaEventBlockingSync 0x01u
#define cudaEventDisableTiming 0x02u

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int clockRate;
    size_t totalConstMem;
    int major;
    int minor;
    int multiProcessorCount;
    int l2CacheSize;
    int maxThreadsPerMultiProcessor;
    size_t sharedMemPerMultiprocessor;
    size_t sharedMemPerBlockOptin;
    int memoryBusWidth;
    int pciBusID;
};

cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s = nullptr);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
/* __constant__ and __device__ variables are host variables: a copy to or from one; the other
 * side is device memory with cudaMemcpyDeviceToDevice (emu.cc). */
cudaError_t ulc_emu_symbol_copy(void *dst, const void *src, size_t bytes, bool dst_dev,
                                bool src_dev);
template <class T>
inline cudaError_t cudaMemcpyToSymbol(T &sym, const void *src, size_t bytes, size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
    if (offset > sizeof(T) || bytes > sizeof(T) - offset) return cudaErrorInvalidValue;
    return ulc_emu_symbol_copy(reinterpret_cast<char *>(&sym) + offset, src, bytes, false,
                               kind == cudaMemcpyDeviceToDevice);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void *dst, const T &sym, size_t bytes, size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
    if (offset > sizeof(T) || bytes > sizeof(T) - offset) return cudaErrorInvalidValue;
    return ulc_emu_symbol_copy(dst, reinterpret_cast<const char *>(&sym) + offset, bytes,
                               kind == cudaMemcpyDeviceToDevice, false);
}
template <class T> inline cudaError_t cudaMalloc(T **p, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void **>(p), bytes);
}
template <class T> inline cudaError_t cudaMallocHost(T **p, size_t bytes) {
    return cudaMallocHost(reinterpret_cast<void **>(p), bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);

cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t e);

cudaError_t cudaGetLastError(void);  /* returns and clears the calling OS thread's last error */
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr attr, int d);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);

/* The largest dynamic shared memory any kernel opted into: a launch above 48 KiB needs one
 * (the emulator cannot tell which kernel a launch runs, so this check is per process). */
cudaError_t ulc_emu_func_set_attribute(cudaFuncAttribute attr, int value);
inline cudaError_t cudaFuncSetAttribute(const void *, cudaFuncAttribute attr, int value) {
    return ulc_emu_func_set_attribute(attr, value);
}
template <class T>
inline cudaError_t cudaFuncSetAttribute(T *, cudaFuncAttribute attr, int value) {
    return ulc_emu_func_set_attribute(attr, value);
}
template <class T>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, T, int threads,
                                                                        size_t) {
    *n = threads > 0 ? (2048 / threads > 0 ? 2048 / threads : 1) : 0;
    return cudaSuccess;
}

/* ---- launching ------------------------------------------------------------------------------- */

/* Runs body() once per thread of every block of grid (see the top of this file). A bad
 * configuration runs nothing and sets the last error (cudaGetLastError). */
void ulc_emu_launch_fn(dim3 grid, dim3 block, size_t dyn_smem, void (*fn)(void *), void *arg);
template <class F> inline void ulc_emu_launch(dim3 grid, dim3 block, size_t dyn_smem, F &&body) {
    typedef typename std::remove_reference<F>::type Fn;
    ulc_emu_launch_fn(grid, block, dyn_smem, [](void *p) { (*static_cast<Fn *>(p))(); },
                      const_cast<void *>(static_cast<const void *>(&body)));
}
/* A launch as <<<>>> makes one: the arguments are evaluated once, by the host, before any
 * device memory opens (so an argument that reads device memory is trapped), converted to the
 * kernel's parameter types; every thread then calls kern with them. */
template <class... P, class... A>
inline void ulc_emu_launch_kernel(dim3 grid, dim3 block, size_t dyn_smem, void (*kern)(P...),
                                  A &&...args) {
    static_assert(sizeof...(P) == sizeof...(A), "a kernel launched with the wrong argument count");
    std::tuple<typename std::decay<P>::type...> a(std::forward<A>(args)...);
    ulc_emu_launch(grid, block, dyn_smem, [&]() { std::apply(kern, a); });
}
/* The running launch's dynamic shared memory: 16-byte aligned, dyn_smem bytes of 0xA5 at the
 * start of every block. */
void *ulc_emu_dyn_smem(void);

/* ---- a mini cuBLAS: column-major sgemm as cublasSgemm / cublasSgemmStridedBatched (op 0 N,
 * 1 T), float accumulation in k order; returns cuBLAS statuses (0 success, 7 invalid value) --- */

int ulc_emu_blas_create(void **h);
int ulc_emu_blas_destroy(void *h);
int ulc_emu_blas_set_stream(void *h, cudaStream_t s);
int ulc_emu_blas_set_math_mode(void *h, int mode);
int ulc_emu_blas_set_workspace(void *h, void *ws, size_t n);
int ulc_emu_sgemm(void *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A,
                  int lda, const float *B, int ldb, const float *beta, float *C, int ldc);
int ulc_emu_sgemm_batched(void *h, int ta, int tb, int m, int n, int k, const float *alpha,
                          const float *A, int lda, long long sa, const float *B, int ldb,
                          long long sb, const float *beta, float *C, int ldc, long long sc,
                          int batch);

#endif
