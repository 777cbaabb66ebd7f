/*
 * k_grad.h — what the gradient and loss kernels of the CUDA backend share (k_grad.cu,
 * k_grad_conv.cu, k_grad_loss.cu; private to them): the ops' geometry decoders
 * (runtime/shape/params.h, the same ones the CPU kernels use), row groups (a warp or a block
 * per row), a fill kernel, and the registrations k_grad.cu's ucu_reg_grad calls.
 *
 * Row groups: a kernel that reduces along rows gives each row to one warp (rows of up to
 * UCU_GRAD_WARP_ROW elements: 8 rows per block of 256 threads) or to one block (longer rows).
 * Every thread of a group takes the same rows (the loop bound is uniform per group), so the
 * group's shuffles and barriers are reached by all of its threads. Sums run in a fixed order
 * (each thread's strided elements, then the tree), so the bits never depend on timing.
 */
#ifndef ULC_RUNTIME_CUDA_K_GRAD_H
#define ULC_RUNTIME_CUDA_K_GRAD_H

#include <string.h>

#include "runtime/cuda/cu.h"

extern "C" {
#include "runtime/shape/params.h"
}

UCU_BEGIN

enum { UCU_GRAD_WARP_ROW = 1024 }; /* rows up to this many elements: one warp per row */

/* The rows of one group: first row, step, and the thread's lane and stride inside the row. */
struct ucu_rows {
    int64_t first, step;
    int lane, width;
};

/* BLOCK 1: a block per row; 0: a warp per row (blockDim.x / 32 rows per block). */
template <int BLOCK> __device__ __forceinline__ ucu_rows ucu_rows_of(void) {
    ucu_rows g;
    if (BLOCK) {
        g.first = blockIdx.x;
        g.step = gridDim.x;
        g.lane = (int)threadIdx.x;
        g.width = (int)blockDim.x;
    } else {
        int per = (int)(blockDim.x >> 5);
        g.first = (int64_t)blockIdx.x * per + (threadIdx.x >> 5);
        g.step = (int64_t)gridDim.x * per;
        g.lane = (int)(threadIdx.x & 31);
        g.width = 32;
    }
    return g;
}

template <int BLOCK> __device__ __forceinline__ float ucu_grp_sum(float v, float *red) {
    return BLOCK ? ucu_block_sum(v, red) : ucu_warp_sum(v);
}

template <int BLOCK> __device__ __forceinline__ float ucu_grp_max(float v, float *red) {
    return BLOCK ? ucu_block_max(v, red) : ucu_warp_max(v);
}

/* Blocks for `rows` rows of `n` elements each (threads UCU_THREADS per block). */
static inline unsigned ucu_rows_blocks(int64_t rows, int block) {
    return ucu_blocks(rows, block ? 1 : UCU_THREADS / 32);
}

/* p[0..n) = v */
template <typename T> __global__ void ucu_grad_fill(T *p, int64_t n, T v) {
    UCU_FOR(i, n) p[i] = v;
}

static inline ulc_status ucu_grad_zero(ulc_kctx *k, float *p, int64_t n, const char *what) {
    if (n <= 0) return ULC_OK;
    auto f = ucu_grad_fill<float>;
    UCU_LAUNCH(f, ucu_blocks(n, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), p, n, 0.0f);
    UCU_TRY_LAUNCH(k, what);
    return ULC_OK;
}

static inline float *ucu_out_f32(const ulc_kctx *k, int i) {
    return i < k->n_out && k->out[i] ? (float *)k->out[i]->data : NULL;
}

static inline const float *ucu_in_f32(const ulc_kctx *k, int i) {
    return i < k->n_in && k->in[i] ? (const float *)k->in[i]->data : NULL;
}

/* The geometry decoders (ulc_sh_gather_grad_geom, ulc_sh_pool_grad_geom, ulc_sh_conv_grad_geom)
 * read their shape input's values (data_shape, x_shape) through ->data, which is a device
 * pointer in a device plan. Those inputs are plan constants (the op's value_inputs), so their
 * bytes are also at ->host: ucu_host_view gives a copy of k whose input `slot` reads them there.
 * Errors name the node as k's would. */
enum { UCU_HV_MAX = 8 };
struct ucu_hv {
    ulc_kctx k;
    ulc_rt_tensor t;
    ulc_rt_tensor *in[UCU_HV_MAX];
};

static inline ulc_status ucu_host_view(ulc_kctx *k, int slot, ucu_hv *v, ulc_kctx **out) {
    if (k->n_in > UCU_HV_MAX)
        return ulc_k_fail(k, ULC_ERR_INVALID, "%d inputs; the op takes at most %d", k->n_in, UCU_HV_MAX);
    v->k = *k;
    for (int i = 0; i < k->n_in; i++) v->in[i] = k->in[i];
    if (slot < k->n_in && k->in[slot]) {
        if (!k->in[slot]->host)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "on backend cuda, input %d must be a constant", slot);
        v->t = *k->in[slot];
        v->t.data = (void *)(uintptr_t)k->in[slot]->host;
        v->in[slot] = &v->t;
    }
    v->k.in = v->in;
    *out = &v->k;
    return ULC_OK;
}

void ucu_reg_grad_conv(ucu_table t); /* k_grad_conv.cu: ConvGradData, ConvGradWeight */
void ucu_reg_grad_loss(ucu_table t); /* k_grad_loss.cu: SoftmaxCrossEntropy(Grad), SquaredDistance(Grad) */

UCU_END

#endif
