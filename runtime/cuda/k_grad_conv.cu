/*
 * k_grad_conv.cu — ConvGradData and ConvGradWeight on the CUDA backend (domain "ulc",
 * ir/ops_ulc.def; the CPU's: runtime/cpu/k_grad_conv.c, whose header states the math). The
 * geometry — strides, dilations, pads, auto_pad, group, the kernel from W or kernel_shape — is
 * ulc_sh_conv_grad_geom's, as on the CPU; any number of spatial dims.
 *
 *   ConvGradData   the transpose of the forward convolution. GEMM path: per image and group,
 *                  col [C/g·K, out] = W_gᵀ · dy_g (cuBLAS, a strided batch over the chunk's
 *                  images, or over the groups), then col2im without atomics: one thread per dx
 *                  element sums the column entries of the (output, tap) pairs that read it.
 *                  Direct path (fewer than 8 output channels per group: depthwise and narrow
 *                  groups, where the products are too thin for a GEMM): one thread per dx
 *                  element sums dy·W over the same pairs and the group's output channels.
 *   ConvGradWeight GEMM path: the images in chunks; per chunk im2col of x into col [C·K, L]
 *                  (L = images · out: the chunk's images side by side), dy of the chunk gathered
 *                  into [M, L] (in place when the chunk is one image), and per group
 *                  dW_g += dy_g · col_gᵀ (cuBLAS, k = L, a strided batch over the groups, beta 1
 *                  after the first chunk). Direct path (as above): one block per dW element, a
 *                  block reduction over (image, output position). dB: one block per output
 *                  channel, a block reduction of dy over the images and positions.
 *
 * cuBLAS is column-major: a row-major [r, c] matrix is its [c, r] transpose with ld c, so the
 * products above are written transposed (see each call). Chunks bound the scratch (col and the
 * gathered dy) to about 128 MiB; everything is deterministic (fixed orders, no atomics; cuBLAS
 * is deterministic on one stream).
 */
#include <stdlib.h>

#include "runtime/cuda/k_grad.h"

UCU_BEGIN

struct cg_geom {
    int nsp;
    int64_t in[ULC_NN_MAX_SP], out[ULC_NN_MAX_SP], k[ULC_NN_MAX_SP], s[ULC_NN_MAX_SP];
    int64_t d[ULC_NN_MAX_SP], pb[ULC_NN_MAX_SP];
    int64_t n, c, m, g, cg, mg; /* batch, channels in/out, groups, per group */
    int64_t isz, osz, ksz;      /* spatial sizes of one plane of x, of dy, of a kernel */
};

/* Calls f(o, kk) for every (output position, tap) pair that reads input position i (flat, of
 * one plane): o·s - pb + t·dl = i per dim. Outputs in row-major order. */
template <class F> __device__ __forceinline__ void cg_pairs(const cg_geom &g, int64_t i, F &&f) {
    if (g.nsp == 2) { /* the common case, in registers */
        int64_t ih = i / g.in[1], iw = i - ih * g.in[1];
        int64_t th = ih + g.pb[0], tw = iw + g.pb[1];
        int64_t lh = th - (g.k[0] - 1) * g.d[0], lw = tw - (g.k[1] - 1) * g.d[1];
        int64_t h0 = lh <= 0 ? 0 : (lh + g.s[0] - 1) / g.s[0], h1 = th / g.s[0];
        int64_t w0 = lw <= 0 ? 0 : (lw + g.s[1] - 1) / g.s[1], w1 = tw / g.s[1];
        if (h1 > g.out[0] - 1) h1 = g.out[0] - 1;
        if (w1 > g.out[1] - 1) w1 = g.out[1] - 1;
        for (int64_t oh = h0; oh <= h1; oh++) {
            int64_t rh = th - oh * g.s[0], kh = rh / g.d[0];
            if (rh - kh * g.d[0] != 0) continue;
            for (int64_t ow = w0; ow <= w1; ow++) {
                int64_t rw = tw - ow * g.s[1], kw = rw / g.d[1];
                if (rw - kw * g.d[1] != 0) continue;
                f(oh * g.out[1] + ow, kh * g.k[1] + kw);
            }
        }
        return;
    }
    int64_t ic[ULC_NN_MAX_SP], olo[ULC_NN_MAX_SP], ohi[ULC_NN_MAX_SP], oc[ULC_NN_MAX_SP];
    for (int d = g.nsp - 1; d >= 0; d--) {
        ic[d] = i % g.in[d];
        i /= g.in[d];
    }
    for (int d = 0; d < g.nsp; d++) {
        int64_t top = ic[d] + g.pb[d], lowest = top - (g.k[d] - 1) * g.d[d];
        olo[d] = lowest <= 0 ? 0 : (lowest + g.s[d] - 1) / g.s[d];
        ohi[d] = top / g.s[d];
        if (ohi[d] > g.out[d] - 1) ohi[d] = g.out[d] - 1;
        if (olo[d] > ohi[d]) return;
        oc[d] = olo[d];
    }
    for (;;) {
        int ok = 1;
        int64_t o = 0, kk = 0;
        for (int d = 0; d < g.nsp; d++) {
            int64_t r = ic[d] + g.pb[d] - oc[d] * g.s[d];
            int64_t t = r / g.d[d];
            ok &= r - t * g.d[d] == 0;
            o = o * g.out[d] + oc[d];
            kk = kk * g.k[d] + t;
        }
        if (ok) f(o, kk);
        int d = g.nsp - 1;
        while (d >= 0 && ++oc[d] > ohi[d]) {
            oc[d] = olo[d];
            d--;
        }
        if (d < 0) return;
    }
}

/* In-plane offset of x read by output o and tap kk, or -1 in the padding. */
__device__ __forceinline__ int64_t cg_tap(const cg_geom &g, int64_t o, int64_t kk) {
    int64_t off = 0, mul = 1;
    for (int d = g.nsp - 1; d >= 0; d--) {
        int64_t qo = o / g.out[d], qk = kk / g.k[d];
        int64_t p = (o - qo * g.out[d]) * g.s[d] - g.pb[d] + (kk - qk * g.k[d]) * g.d[d];
        if (p < 0 || p >= g.in[d]) return -1;
        off += p * mul;
        mul *= g.in[d];
        o = qo;
        kk = qk;
    }
    return off;
}

/* ---- ConvGradData ----------------------------------------------------------------------------- */

/* Direct: dx[n, c, i] = Σ over its (o, kk) pairs and the group's output channels of dy·W. */
__global__ void cgd_direct_k(const float *dy, const float *w, float *dx, cg_geom g) {
    UCU_FOR(t, g.n * g.c * g.isz) {
        int64_t i = t % g.isz, q = t / g.isz, c = q % g.c, n = q / g.c;
        int64_t grp = c / g.cg, ci = c - grp * g.cg;
        const float *dyn = dy + (n * g.m + grp * g.mg) * g.osz;
        const float *wc = w + (grp * g.mg * g.cg + ci) * g.ksz;
        int64_t wstep = g.cg * g.ksz, mg = g.mg, osz = g.osz;
        float acc = 0.0f;
        cg_pairs(g, i, [&](int64_t o, int64_t kk) {
            for (int64_t mm = 0; mm < mg; mm++) acc += dyn[mm * osz + o] * wc[mm * wstep + kk];
        });
        dx[t] = acc;
    }
}

/* col2im: dx[n, c, i] (nb images from dx) = Σ over its pairs of col[n][c·K + kk][o]. */
__global__ void cgd_col2im_k(const float *col, float *dx, cg_geom g, int64_t nb) {
    UCU_FOR(t, nb * g.c * g.isz) {
        int64_t i = t % g.isz, q = t / g.isz; /* q = n·C + c */
        const float *cc = col + q * g.ksz * g.osz;
        int64_t osz = g.osz;
        float acc = 0.0f;
        cg_pairs(g, i, [&](int64_t o, int64_t kk) { acc += cc[kk * osz + o]; });
        dx[t] = acc;
    }
}

/* ---- ConvGradWeight --------------------------------------------------------------------------- */

/* im2col of nb images: col[c·K + kk][n·out + o] = x[n, c, tap] (0 in the padding). */
__global__ void cgw_im2col_k(const float *x, float *col, cg_geom g, int64_t nb) {
    int64_t L = nb * g.osz;
    UCU_FOR(t, g.c * g.ksz * L) {
        int64_t j = t % L, row = t / L, n = j / g.osz, o = j - n * g.osz;
        int64_t c = row / g.ksz, kk = row - c * g.ksz;
        int64_t off = cg_tap(g, o, kk);
        col[t] = off < 0 ? 0.0f : x[(n * g.c + c) * g.isz + off];
    }
}

/* dyc[m][n·out + o] = dy[n, m, o] for nb images. */
__global__ void cgw_gather_dy_k(const float *dy, float *dyc, cg_geom g, int64_t nb) {
    int64_t L = nb * g.osz;
    UCU_FOR(t, g.m * L) {
        int64_t j = t % L, m = t / L, n = j / g.osz, o = j - n * g.osz;
        dyc[t] = dy[(n * g.m + m) * g.osz + o];
    }
}

/* Direct: one block per dW element (m, ci, kk): Σ over images and positions of dy·x. */
__global__ void cgw_direct_k(const float *dy, const float *x, float *dw, cg_geom g) {
    __shared__ float red[32];
    int64_t total = g.m * g.cg * g.ksz, no = g.n * g.osz;
    for (int64_t e = blockIdx.x; e < total; e += gridDim.x) {
        int64_t kk = e % g.ksz, q = e / g.ksz, ci = q % g.cg, m = q / g.cg;
        int64_t c = (m / g.mg) * g.cg + ci;
        float acc = 0.0f;
        for (int64_t j = threadIdx.x; j < no; j += blockDim.x) {
            int64_t n = j / g.osz, o = j - n * g.osz;
            int64_t off = cg_tap(g, o, kk);
            if (off >= 0) acc += dy[(n * g.m + m) * g.osz + o] * x[(n * g.c + c) * g.isz + off];
        }
        acc = ucu_block_sum(acc, red);
        if (threadIdx.x == 0) dw[e] = acc;
    }
}

/* dB[m] = Σ over images and positions of dy[n, m, ·]: one block per channel. */
__global__ void cgw_bias_k(const float *dy, float *db, cg_geom g) {
    __shared__ float red[32];
    for (int64_t m = blockIdx.x; m < g.m; m += gridDim.x) {
        float acc = 0.0f;
        for (int64_t n = 0; n < g.n; n++) {
            const float *p = dy + (n * g.m + m) * g.osz;
            for (int64_t o = threadIdx.x; o < g.osz; o += blockDim.x) acc += p[o];
        }
        acc = ucu_block_sum(acc, red);
        if (threadIdx.x == 0) db[m] = acc;
    }
}

/* ---- planning and running --------------------------------------------------------------------- */

typedef struct cg_state {
    cg_geom g;
    int weight, gemm, bias;
    int64_t nb; /* images per chunk (GEMM paths) */
} cg_state;

#ifdef ULC_CUDA_EMU
#define CG_SCRATCH_FLOATS ((int64_t)1 << 12) /* small: the suite's shapes take several chunks */
#else
#define CG_SCRATCH_FLOATS ((int64_t)1 << 25) /* 128 MiB of col (and gathered dy) per chunk */
#endif

static int fits_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

static ulc_status cg_prepare_common(ulc_kctx *k, int weight) {
    cg_state *s = (cg_state *)calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ulc_sh_conv_grad sg;
    ucu_hv hv;
    ulc_kctx *hk = k;
    if (!weight) ULC_TRY(ucu_host_view(k, 2, &hv, &hk)); /* x_shape's values */
    ULC_TRY(ulc_sh_conv_grad_geom(hk, weight, &sg));
    cg_geom *g = &s->g;
    g->nsp = sg.nsp;
    g->isz = g->osz = g->ksz = 1;
    for (int d = 0; d < sg.nsp; d++) {
        g->in[d] = sg.w.in[d];
        g->out[d] = sg.w.out[d];
        g->k[d] = sg.w.k[d];
        g->s[d] = sg.w.s[d];
        g->d[d] = sg.w.d[d];
        g->pb[d] = sg.w.pb[d];
        g->isz *= sg.w.in[d];
        g->osz *= sg.w.out[d];
        g->ksz *= sg.w.k[d];
    }
    g->n = sg.n;
    g->c = sg.c;
    g->m = sg.m;
    g->g = sg.g;
    g->cg = sg.c / sg.g;
    g->mg = sg.m / sg.g;
    s->weight = weight;
    s->bias = weight && sg.bias;
    /* chunk of images: col (C·K·out per image) plus, for dW, the gathered dy (M·out) */
    int64_t per = g->c * g->ksz * g->osz + (weight ? g->m * g->osz : 0);
    s->nb = per > 0 ? CG_SCRATCH_FLOATS / per : g->n;
    if (s->nb > g->n) s->nb = g->n;
    if (s->nb < 1) s->nb = 1;
    int64_t cgk = g->cg * g->ksz;
    /* GEMM when the group's products are not thin and cuBLAS's int sizes hold them */
    s->gemm = g->mg >= 8 && cgk > 0 && fits_int(g->osz * s->nb) && fits_int(cgk) &&
              fits_int(g->mg) && fits_int(g->g) && fits_int(g->mg * cgk) && fits_int(cgk * g->osz * s->nb);
    return ULC_OK;
}

static ulc_status cgd_prepare(ulc_kctx *k) { return ucu_prepared(k, cg_prepare_common(k, 0)); }
static ulc_status cgw_prepare(ulc_kctx *k) { return ucu_prepared(k, cg_prepare_common(k, 1)); }

static ulc_status cgd_gemm_run(ulc_kctx *k, const cg_state *s) {
    const cg_geom *g = &s->g;
    const float *dy = (const float *)k->in[0]->data, *w = (const float *)k->in[1]->data;
    float *dx = (float *)k->out[0]->data;
    int64_t per = g->c * g->ksz * g->osz; /* col floats per image */
    float *col = (float *)ucu_scratch(k, (size_t)(s->nb * per) * sizeof(float));
    if (!col) return ULC_ERR_NOMEM;
    ucu_dev *dev = ucu_ctx(k);
    const float one = 1.0f, zero = 0.0f;
    int osz = (int)g->osz, cgk = (int)(g->cg * g->ksz), mg = (int)g->mg;
    for (int64_t n0 = 0; n0 < g->n; n0 += s->nb) {
        int64_t nb = g->n - n0 < s->nb ? g->n - n0 : s->nb;
        const float *dyn = dy + n0 * g->m * g->osz;
        /* col_ng [CgK, out] (row-major) = W_gᵀ · dy_ng; column-major: col_ngᵀ [out, CgK] =
         * dy_ngᵀ [out, Mg] (dy_ng as stored, ld out) · W_g [Mg, CgK] (W_gᵀ as stored, ld CgK, T) */
        int st;
        if (g->g == 1) {
            st = dev->b->sgemm_batched(dev->blas, UCU_OP_N, UCU_OP_T, osz, cgk, mg, &one, dyn, osz,
                                       (long long)(g->m * g->osz), w, cgk, 0, &zero, col, osz,
                                       (long long)per, (int)nb);
        } else {
            st = 0;
            for (int64_t i = 0; i < nb && st == 0; i++)
                st = dev->b->sgemm_batched(dev->blas, UCU_OP_N, UCU_OP_T, osz, cgk, mg, &one,
                                           dyn + i * g->m * g->osz, osz, (long long)(g->mg * g->osz),
                                           w, cgk, (long long)(g->mg * cgk), &zero, col + i * per, osz,
                                           (long long)(cgk * g->osz), (int)g->g);
        }
        ULC_TRY(ucu_blas_check(k, st, "sgemm (ConvGradData columns)"));
        UCU_LAUNCH(cgd_col2im_k, ucu_blocks(nb * g->c * g->isz, UCU_THREADS), UCU_THREADS, 0,
                   ucu_stream(k), col, dx + n0 * g->c * g->isz, *g, nb);
        UCU_TRY_LAUNCH(k, "ConvGradData col2im");
    }
    return ULC_OK;
}

static ulc_status cgw_gemm_run(ulc_kctx *k, const cg_state *s) {
    const cg_geom *g = &s->g;
    const float *dy = (const float *)k->in[0]->data, *x = (const float *)k->in[1]->data;
    float *dw = (float *)k->out[0]->data;
    int64_t ck = g->c * g->ksz, cgk = g->cg * g->ksz;
    int64_t Lmax = s->nb * g->osz;
    size_t cols = (size_t)(ck * Lmax), dys = s->nb > 1 ? (size_t)(g->m * Lmax) : 0;
    float *col = (float *)ucu_scratch(k, (cols + dys) * sizeof(float));
    if (!col) return ULC_ERR_NOMEM;
    float *dyc = col + cols;
    ucu_dev *dev = ucu_ctx(k);
    const float one = 1.0f, zero = 0.0f;
    for (int64_t n0 = 0; n0 < g->n; n0 += s->nb) {
        int64_t nb = g->n - n0 < s->nb ? g->n - n0 : s->nb, L = nb * g->osz;
        UCU_LAUNCH(cgw_im2col_k, ucu_blocks(ck * L, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k),
                   x + n0 * g->c * g->isz, col, *g, nb);
        UCU_TRY_LAUNCH(k, "ConvGradWeight im2col");
        const float *b = dy + n0 * g->m * g->osz; /* one image: dy_n is [M, out] as stored */
        if (nb > 1) {
            UCU_LAUNCH(cgw_gather_dy_k, ucu_blocks(g->m * L, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), b,
                       dyc, *g, nb);
            UCU_TRY_LAUNCH(k, "ConvGradWeight dy gather");
            b = dyc;
        }
        /* dW_g [Mg, CgK] (row-major) += dy_g [Mg, L] · col_gᵀ; column-major: dW_gᵀ [CgK, Mg] =
         * (col_g as stored: [L, CgK], ld L)ᵀ · (dy_g as stored: [L, Mg], ld L) */
        int bs = dev->b->sgemm_batched(dev->blas, UCU_OP_T, UCU_OP_N, (int)cgk, (int)g->mg, (int)L,
                                       &one, col, (int)L, (long long)(cgk * L), b, (int)L,
                                       (long long)(g->mg * L), n0 == 0 ? &zero : &one, dw, (int)cgk,
                                       (long long)(g->mg * cgk), (int)g->g);
        ULC_TRY(ucu_blas_check(k, bs, "sgemm (ConvGradWeight)"));
    }
    return ULC_OK;
}

static ulc_status cg_run(ulc_kctx *k) {
    const cg_state *s = (const cg_state *)k->state;
    const cg_geom *g = &s->g;
    const float *dy = (const float *)k->in[0]->data;
    if (!s->weight) {
        int64_t nx = (int64_t)ulc_rt_numel(k->out[0]);
        if (nx == 0) return ULC_OK;
        if (s->gemm) return cgd_gemm_run(k, s);
        UCU_LAUNCH(cgd_direct_k, ucu_blocks(nx, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), dy,
                   (const float *)k->in[1]->data, (float *)k->out[0]->data, *g);
        UCU_TRY_LAUNCH(k, "ConvGradData");
        return ULC_OK;
    }
    int64_t nw = (int64_t)ulc_rt_numel(k->out[0]);
    float *dw = (float *)k->out[0]->data;
    if (nw > 0) {
        if (g->n * g->osz == 0) {
            ULC_TRY(ucu_grad_zero(k, dw, nw, "ConvGradWeight"));
        } else if (s->gemm) {
            ULC_TRY(cgw_gemm_run(k, s));
        } else {
            UCU_LAUNCH(cgw_direct_k, ucu_blocks(nw, 1), UCU_THREADS, 0, ucu_stream(k), dy,
                       (const float *)k->in[1]->data, dw, *g);
            UCU_TRY_LAUNCH(k, "ConvGradWeight");
        }
    }
    if (s->bias && g->m > 0) {
        UCU_LAUNCH(cgw_bias_k, ucu_blocks(g->m, 1), UCU_THREADS, 0, ucu_stream(k), dy, (float *)k->out[1]->data, *g);
        UCU_TRY_LAUNCH(k, "ConvGradWeight bias");
    }
    return ULC_OK;
}

/* blocked_inputs, flags, prepare, run, release, can_fuse */
static const ulc_kernel k_conv_grad_data = {0, 0, cgd_prepare, cg_run, ucu_free_state, NULL};
static const ulc_kernel k_conv_grad_weight = {0, 0, cgw_prepare, cg_run, ucu_free_state, NULL};

void ucu_reg_grad_conv(ucu_table t) {
    t[ULC_OP_ConvGradData] = &k_conv_grad_data;
    t[ULC_OP_ConvGradWeight] = &k_conv_grad_weight;
}

UCU_END
