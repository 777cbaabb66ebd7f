/*
 * cu.h — what every source of the CUDA backend shares (the .cu files of runtime/cuda): the device context a
 * session opens, launching, error reporting, device copies, kernel states (prepare/run/release)
 * and dtype refusals, grid sizes, block reductions, and cuBLAS through a table of entry points.
 *
 * The sources compile two ways from the same text:
 *
 *   nvcc (the toolkit is present)   the real backend, namespace ucu_dev, registered as "cuda";
 *   g++ -DULC_CUDA_EMU              the emulator (runtime/cuda/emu.h): every kernel runs on the
 *                                   host, thread by thread, with __syncthreads and warp
 *                                   shuffles honoured, so the suite checks the kernels' index
 *                                   arithmetic and the backend's planning on a machine without
 *                                   a GPU (ULC_CUDA_EMULATE=1 makes "cuda" the emulator).
 *
 * So a kernel source must keep to what both accept: launch only with UCU_LAUNCH (no <<<>>>),
 * dynamic shared memory only through UCU_DYN_SMEM, static __shared__ arrays only at the top of
 * a kernel's body, warp shuffles only with every lane of the warp taking part (the full mask),
 * no device-side printf/new/malloc, no templates with commas inside UCU_LAUNCH's first
 * argument (name the instance first: `auto f = kern<float, 4>; UCU_LAUNCH(f, ...)`).
 *
 * Memory: a kernel's k->in[i]->data and k->out[i]->data are device pointers. The values of a
 * plan constant (a Reshape's shape, a Slice's starts, Pad's pads …) are in host memory at
 * k->in[i]->host (runtime.h); a kernel reads them there in prepare, never through data.
 *
 * Every kernel runs on the session's stream (ucu_stream(k)); nothing waits for the device inside
 * a step (no cudaDeviceSynchronize, no copies back to the host). A step's work that needs
 * scratch memory takes it from ucu_scratch(k, bytes), valid until the step returns (the stream
 * orders its reuse).
 */
#ifndef ULC_RUNTIME_CUDA_CU_H
#define ULC_RUNTIME_CUDA_CU_H

#ifdef ULC_CUDA_EMU
#include "runtime/cuda/emu.h"
#define UCU_NS ucu_emu
#else
#include <cuda_runtime.h>
#define UCU_NS ucu_dev
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

extern "C" {
#include "runtime/kutil.h"
}

#define UCU_BEGIN namespace UCU_NS {
#define UCU_END }

/* ---- launching ------------------------------------------------------------------------------ */

#ifdef ULC_CUDA_EMU
/* the arguments are evaluated on the host before the launch, as CUDA does (device memory is
 * closed to host code then: the emulator traps a host read of it) */
#define UCU_LAUNCH(kern, grid, block, smem, stream, ...)                                           \
    ulc_emu_launch_kernel(dim3(grid), dim3(block), (size_t)(smem), kern, __VA_ARGS__)
#define UCU_DYN_SMEM(T, name) T *name = reinterpret_cast<T *>(ulc_emu_dyn_smem())
#else
#define UCU_LAUNCH(kern, grid, block, smem, stream, ...)                                           \
    kern<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define UCU_DYN_SMEM(T, name)                                                                      \
    extern __shared__ __align__(16) unsigned char ucu_dyn_smem_[];                                 \
    T *name = reinterpret_cast<T *>(ucu_dyn_smem_)
#endif

UCU_BEGIN

/* ---- cuBLAS: the entry points the backend uses, loaded at run time (real: dlopen of
 * libcublas.so; emulator: host loops), so neither the binary nor libulc links it ------------- */

enum { UCU_OP_N = 0, UCU_OP_T = 1 }; /* cublasOperation_t's values */

typedef struct ucu_blas {
    int (*create)(void **handle);
    int (*destroy)(void *handle);
    int (*set_stream)(void *handle, cudaStream_t s);
    int (*set_math_mode)(void *handle, int mode); /* 0 default (TF32 off), 3 TF32 tensor ops */
    int (*set_workspace)(void *handle, void *ws, size_t bytes); /* may be NULL */
    /* column-major, as cuBLAS: C = alpha·op(A)·op(B) + beta·C */
    int (*sgemm)(void *handle, int ta, int tb, int m, int n, int k, const float *alpha,
                 const float *A, int lda, const float *B, int ldb, const float *beta, float *C,
                 int ldc);
    int (*sgemm_batched)(void *handle, int ta, int tb, int m, int n, int k, const float *alpha,
                         const float *A, int lda, long long sa, const float *B, int ldb,
                         long long sb, const float *beta, float *C, int ldc, long long sc,
                         int batch);
} ucu_blas;

/* ---- the device context a session opens (backend.cu) ----------------------------------------- */

typedef struct ucu_dev {
    int device;
    cudaStream_t stream;
    void *blas;               /* cublasHandle_t on stream */
    const ucu_blas *b;
    void *scratch;            /* grows on demand (ucu_scratch) */
    size_t scratch_size;
    int precision;            /* 0 float32 (TF32 off), 1 tf32 */
    char name[320];           /* "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)" */
} ucu_dev;

static inline ucu_dev *ucu_ctx(const ulc_kctx *k) { return (ucu_dev *)k->dev; }
static inline cudaStream_t ucu_stream(const ulc_kctx *k) { return ucu_ctx(k)->stream; }

/* Device scratch of at least `bytes` for this step (NULL + error recorded when out of memory). */
void *ucu_scratch(ulc_kctx *k, size_t bytes);

/* Records the launch error of the last kernel, if any, naming the node. */
ulc_status ucu_check(ulc_kctx *k, const char *what);
/* A cuBLAS status as an error naming the node. */
ulc_status ucu_blas_check(ulc_kctx *k, int status, const char *what);

#define UCU_TRY_LAUNCH(k, what)                                                                    \
    do {                                                                                           \
        ulc_status ucu_s_ = ucu_check((k), (what));                                                \
        if (ucu_s_ != ULC_OK) return ucu_s_;                                                       \
    } while (0)

/* A device-to-device copy of `bytes` on the session's stream (nothing when bytes is 0 or dst is
 * src); a failure is recorded naming the node. */
ulc_status ucu_copy(ulc_kctx *k, void *dst, const void *src, size_t bytes);

/* ---- kernel states and refusals -------------------------------------------------------------- */

/* prepare's refusal of a dtype the kernel has no instance for on this backend. */
static inline ulc_status ucu_refuse_dtype(ulc_kctx *k, int dt) {
    return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "dtype %s is not supported by backend cuda",
                      ulc_dtype_name(dt));
}

/* release of a kernel whose state is one allocation. */
static inline void ucu_free_state(void *state) { free(state); }

/* prepare: a zeroed S filled by plan(k, s), kept in k->state only when that succeeds (the
 * planner releases the states of prepared steps only), else freed; `what` names the state in
 * the out-of-memory message. */
template <class S>
static inline ulc_status ucu_prepare_state(ulc_kctx *k, ulc_status (*plan)(ulc_kctx *, S *),
                                           const char *what) {
    S *s = (S *)calloc(1, sizeof(S));
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (%s)", what);
    ulc_status st = plan(k, s);
    if (st != ULC_OK) {
        free(s);
        return st;
    }
    k->state = s;
    return ULC_OK;
}

/* prepare's status for a kernel that put its state in k->state before it could fail: on failure
 * the state is freed and k->state cleared (as ucu_prepare_state leaves it). */
static inline ulc_status ucu_prepared(ulc_kctx *k, ulc_status s) {
    if (s != ULC_OK) {
        free(k->state);
        k->state = NULL;
    }
    return s;
}

/* run: the state prepare kept, or (a step run without prepare) one planned now into *local. */
template <class S>
static inline ulc_status ucu_run_state(ulc_kctx *k, ulc_status (*plan)(ulc_kctx *, S *), S *local,
                                       const S **st) {
    *st = (const S *)k->state;
    if (*st) return ULC_OK;
    ULC_TRY(plan(k, local));
    *st = local;
    return ULC_OK;
}

/* ---- grid sizes: grid-stride loops over n elements ------------------------------------------- */

#define UCU_THREADS 256
#ifdef ULC_CUDA_EMU
#define UCU_MAX_BLOCKS 8 /* the emulator runs blocks one after another: few, long ones */
#else
#define UCU_MAX_BLOCKS 65535
#endif

static inline unsigned ucu_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > UCU_MAX_BLOCKS) b = UCU_MAX_BLOCKS;
    return (unsigned)b;
}

#define UCU_FOR(i, n)                                                                              \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                     \
         i += (int64_t)blockDim.x * gridDim.x)

/* ---- block reductions (every thread of the block calls them; blockDim.x a multiple of 32,
 * at most 1024) --------------------------------------------------------------------------------- */

__device__ __forceinline__ float ucu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float ucu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The sum over the block, returned to every thread. red: __shared__ float[32]. */
__device__ __forceinline__ float ucu_block_sum(float v, float *red) {
    int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5, nw = (int)(blockDim.x >> 5);
    v = ucu_warp_sum(v);
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    return ucu_warp_sum(t);
}

__device__ __forceinline__ float ucu_block_max(float v, float *red) {
    int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5, nw = (int)(blockDim.x >> 5);
    v = ucu_warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : -INFINITY;
    return ucu_warp_max(t);
}

/* ---- the kernel tables: each family file fills the slots of its ops ------------------------- */

typedef const ulc_kernel *ucu_table[ULC_OP_COUNT_];

void ucu_reg_elementwise(ucu_table t); /* k_elementwise.cu: binary, unary, Where, Cast, Clip ... */
void ucu_reg_movement(ucu_table t);    /* k_movement.cu: views, Transpose, Concat, Slice, Gather ... */
void ucu_reg_reduce(ucu_table t);      /* k_reduce.cu: reductions, Softmax, LayerNormalization ... */
void ucu_reg_nn(ucu_table t);          /* k_nn.cu: MatMul, Gemm, Conv, pooling, BatchNormalization */
void ucu_reg_grad(ucu_table t);        /* k_grad.cu: ulc's gradient and loss ops */
void ucu_reg_attn(ucu_table t);        /* k_attn.cu: ulc's Attention / AttentionGrad */
const ulc_kernel *ucu_chain_kernel(void); /* k_chain.cu: fused elementwise chains */
const ulc_kernel *ucu_attn_kernel(void);  /* k_attn.cu: the planner's fused attention step */

UCU_END

#endif
