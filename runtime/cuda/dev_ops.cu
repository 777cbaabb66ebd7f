/*
 * dev_ops.cu — the CUDA backend's services for state a caller keeps on the device between runs
 * (ulc_device_ops' copy, zero, optim, count_nonfinite; runtime.h's ulc_session_device_*): a
 * trainer's parameters and optimizer moments stay on the GPU, only the loss comes back.
 *
 * The optimizer updates are train/optim.c's loops (torch's single-tensor SGD and AdamW) written
 * with the same float operations: every product and sum that optim.c keeps separate is an
 * explicit __fmul_rn / __fadd_rn here, so nvcc cannot contract it into a fused multiply-add,
 * and every fmaf there is an fmaf here; sqrtf and '/' are IEEE (nvcc's defaults). Given the
 * same gradients, a GPU update gives the cpu's bits.
 */
#include "runtime/cuda/cu.h"

UCU_BEGIN

__global__ void sgd_kernel(float *p, const float *g, float *buf, int64_t n, ulc_rt_optim k) {
    UCU_FOR(i, n) {
        float d = g[i];
        if (k.use_wd) d = fmaf(p[i], k.wd, d);                /* d_p.add(param, alpha=wd) */
        if (k.use_mom) {
            float b;
            if (k.first) b = d;                               /* buf = clone(d_p) */
            else b = __fadd_rn(__fmul_rn(buf[i], k.mom), d);  /* buf.mul_(momentum).add_(d_p) */
            buf[i] = b;
            d = k.nesterov ? fmaf(b, k.mom, d) : b;           /* d_p.add(buf, alpha=momentum) */
        }
        p[i] = fmaf(d, k.neg_lr, p[i]);                      /* param.add_(d_p, alpha=-lr) */
    }
}

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, ulc_rt_optim k) {
    UCU_FOR(i, n) {
        float gi = g[i];
        float pi = __fmul_rn(p[i], k.decay);                            /* param.mul_(1 - lr*wd) */
        float mi = fmaf(gi, k.omb1, __fmul_rn(m[i], k.b1));             /* exp_avg.mul_(b1).add_(g, 1-b1) */
        float vi = fmaf(__fmul_rn(k.omb2, gi), gi, __fmul_rn(v[i], k.b2)); /* exp_avg_sq ... addcmul_ */
        float den = __fadd_rn(sqrtf(vi) / k.bc2s, k.eps);               /* (sqrt(v) / bc2_sqrt).add_(eps) */
        m[i] = mi;
        v[i] = vi;
        p[i] = __fadd_rn(pi, __fmul_rn(k.neg_ss, mi) / den);            /* param.addcdiv_(m, den, -step_size) */
    }
}

__global__ void nonfinite_kernel(const float *x, int64_t n, unsigned *count) {
    __shared__ float red[32];
    float c = 0.0f;
    UCU_FOR(i, n) c += isfinite(x[i]) ? 0.0f : 1.0f;
    c = ucu_block_sum(c, red);
    if (threadIdx.x == 0 && c > 0.0f) atomicAdd(count, (unsigned)c);
}

/* one block row per gathered row, threads over its 4-byte words (row_bytes % 4 == 0) or bytes */
__global__ void gather_rows_kernel(uint8_t *dst, const uint8_t *src, int64_t row_bytes, const int64_t *idx,
                                   int64_t n) {
    for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
        const uint8_t *s = src + idx[r] * row_bytes;
        uint8_t *d = dst + r * row_bytes;
        if (row_bytes % 4 == 0) {
            for (int64_t w = threadIdx.x; w < row_bytes / 4; w += blockDim.x)
                ((uint32_t *)d)[w] = ((const uint32_t *)s)[w];
        } else {
            for (int64_t b = threadIdx.x; b < row_bytes; b += blockDim.x) d[b] = s[b];
        }
    }
}

static ulc_status launched(const char *what, ulc_ctx *ctx) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return ULC_OK;
    return ulc_fail(ctx, ULC_ERR_INTERNAL, "CUDA %s: %s", what, cudaGetErrorString(e));
}

ulc_status ucu_dev_copy(void *dev, void *dst, const void *src, size_t bytes, ulc_ctx *ctx) {
    if (!bytes) return ULC_OK;
    if (cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ((ucu_dev *)dev)->stream) != cudaSuccess)
        return launched("device copy", ctx);
    return ULC_OK;
}

ulc_status ucu_dev_zero(void *dev, void *dst, size_t bytes, ulc_ctx *ctx) {
    if (!bytes) return ULC_OK;
    if (cudaMemsetAsync(dst, 0, bytes, ((ucu_dev *)dev)->stream) != cudaSuccess) return launched("device zero", ctx);
    return ULC_OK;
}

ulc_status ucu_dev_optim(void *dev, const ulc_rt_optim *o, float *p, const float *g, float *m, float *v,
                         size_t n, ulc_ctx *ctx) {
    if (!n) return ULC_OK;
    cudaStream_t s = ((ucu_dev *)dev)->stream;
    (void)s; /* the emulator's launches ignore the stream */
    ulc_rt_optim k = *o;
    int64_t nn = (int64_t)n;
    if (o->adamw) {
        if (!m || !v) return ulc_fail(ctx, ULC_ERR_INTERNAL, "adamw on the device: moments missing");
        UCU_LAUNCH(adamw_kernel, ucu_blocks(nn, UCU_THREADS), UCU_THREADS, 0, s, p, g, m, v, nn, k);
    } else {
        if (o->use_mom && !m) return ulc_fail(ctx, ULC_ERR_INTERNAL, "sgd on the device: momentum buffer missing");
        UCU_LAUNCH(sgd_kernel, ucu_blocks(nn, UCU_THREADS), UCU_THREADS, 0, s, p, g, m, nn, k);
    }
    return launched(o->adamw ? "adamw update" : "sgd update", ctx);
}

ulc_status ucu_dev_count_nonfinite(void *dev, const float *x, size_t n, unsigned *count, ulc_ctx *ctx) {
    if (!n) return ULC_OK;
    int64_t nn = (int64_t)n;
    cudaStream_t s = ((ucu_dev *)dev)->stream;
    (void)s;
    UCU_LAUNCH(nonfinite_kernel, ucu_blocks(nn, UCU_THREADS), UCU_THREADS, 0, s, x, nn, count);
    return launched("non-finite count", ctx);
}

ulc_status ucu_dev_gather_rows(void *dev, void *dst, const void *src, size_t row_bytes, const int64_t *idx,
                               int64_t n, ulc_ctx *ctx) {
    if (n <= 0 || !row_bytes) return ULC_OK;
    cudaStream_t s = ((ucu_dev *)dev)->stream;
    (void)s;
    unsigned blocks = (unsigned)(n < UCU_MAX_BLOCKS ? n : UCU_MAX_BLOCKS);
    UCU_LAUNCH(gather_rows_kernel, blocks, UCU_THREADS, 0, s, (uint8_t *)dst, (const uint8_t *)src,
               (int64_t)row_bytes, idx, n);
    return launched("row gather", ctx);
}

UCU_END
