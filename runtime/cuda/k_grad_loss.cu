/*
 * k_grad_loss.cu — ulc's fused losses on the CUDA backend (domain "ulc", ir/ops_ulc.def; the
 * CPU's: runtime/cpu/k_loss.c):
 *
 *   SoftmaxCrossEntropy      per row r of z [R, V] (a warp per row up to 1024 classes, else a
 *                            block): m = max z (NaN never wins), lse = m + log Σ exp(z - m),
 *                            ce = lse - z[y] (0 for a label outside [0, V): padding, -100),
 *                            sce = lse·Σp - Σ p·z with soft targets p (one row broadcast, or
 *                            one per row). Every output optional; no rows reduced: the op's
 *                            results are per row (the graph's mean/sum is a ReduceMean after it).
 *   SoftmaxCrossEntropyGrad  per row: dz = (dce' + dlse + dsce·Σp)·exp(z - lse) - dsce·p,
 *                            dz[y] -= dce' (dce' = 0 on ignored rows; missing gradients are 0).
 *   SquaredDistance          d[r] = Σ (a - b)² over the last axis: blocks over (row, chunk of
 *                            SQ_CHUNK elements) write partial sums, then one thread per row adds
 *                            its chunks in order (a row of one chunk is written directly), so
 *                            a few long rows still fill the device and the bits are fixed.
 *   SquaredDistanceGrad      da = 2·dd[r]·(a - b), db = -da (either output may be absent).
 *
 * Labels are int32 or int64 (the shape rule refuses others). Float32 only.
 */
#include "runtime/cuda/k_grad.h"

UCU_BEGIN

/* ---- SoftmaxCrossEntropy ---------------------------------------------------------------------- */

struct sce_args {
    const float *z, *p;
    const void *y;
    int y64;
    int64_t R, V, p_rows;
    float *ce, *lse, *sce;                    /* forward outputs (NULL: not produced) */
    const float *lse_in, *dce, *dlse, *dsce; /* gradient inputs (NULL: 0) */
    float *dz;
};

__device__ __forceinline__ int64_t sce_label(const sce_args &a, int64_t r) {
    if (!a.y) return -1;
    return a.y64 ? ((const int64_t *)a.y)[r] : (int64_t)((const int32_t *)a.y)[r];
}

template <int BLOCK> __global__ void sce_fwd_k(sce_args a) {
    __shared__ float red[32];
    ucu_rows g = ucu_rows_of<BLOCK>();
    int64_t V = a.V;
    for (int64_t r = g.first; r < a.R; r += g.step) {
        const float *z = a.z + r * V;
        float m = -INFINITY;
        for (int64_t c = g.lane; c < V; c += g.width) m = z[c] > m ? z[c] : m;
        m = ucu_grp_max<BLOCK>(m, red);
        float s = 0.0f;
        for (int64_t c = g.lane; c < V; c += g.width) s += expf(z[c] - m);
        s = ucu_grp_sum<BLOCK>(s, red);
        float lse = m + logf(s);
        float sce = 0.0f;
        if (a.sce) {
            const float *p = a.p + (a.p_rows == 1 ? 0 : r * V);
            float sp = 0.0f, spz = 0.0f;
            for (int64_t c = g.lane; c < V; c += g.width) {
                sp += p[c];
                spz += p[c] * z[c];
            }
            sp = ucu_grp_sum<BLOCK>(sp, red);
            spz = ucu_grp_sum<BLOCK>(spz, red);
            sce = lse * sp - spz;
        }
        if (g.lane == 0) {
            if (V == 0) { /* no classes: lse -inf, the losses 0 (the CPU's) */
                lse = -INFINITY;
                sce = 0.0f;
            }
            if (a.lse) a.lse[r] = lse;
            if (a.ce) {
                int64_t y = sce_label(a, r);
                a.ce[r] = y >= 0 && y < V ? lse - z[y] : 0.0f;
            }
            if (a.sce) a.sce[r] = sce;
        }
    }
}

template <int BLOCK> __global__ void sce_grad_k(sce_args a) {
    __shared__ float red[32];
    ucu_rows g = ucu_rows_of<BLOCK>();
    int64_t V = a.V;
    for (int64_t r = g.first; r < a.R; r += g.step) {
        const float *z = a.z + r * V;
        float *dz = a.dz + r * V;
        int64_t y = sce_label(a, r);
        int hard = y >= 0 && y < V;
        float dce = a.dce && hard ? a.dce[r] : 0.0f;
        float ds = a.dsce ? a.dsce[r] : 0.0f;
        const float *p = a.p ? a.p + (a.p_rows == 1 ? 0 : r * V) : NULL;
        float cf = dce + (a.dlse ? a.dlse[r] : 0.0f);
        int soft = p && ds != 0.0f; /* uniform over the row's group */
        if (soft) {
            float sp = 0.0f;
            for (int64_t c = g.lane; c < V; c += g.width) sp += p[c];
            cf += ds * ucu_grp_sum<BLOCK>(sp, red);
        }
        float lse = a.lse_in[r];
        for (int64_t c = g.lane; c < V; c += g.width) {
            float q = expf(z[c] - lse);
            float v = soft ? cf * q - ds * p[c] : q * cf;
            if (hard && c == y) v -= dce;
            dz[c] = v;
        }
    }
}

static ulc_status sce_launch(ulc_kctx *k, const sce_args &a, int grad) {
    int block = a.V > UCU_GRAD_WARP_ROW;
    unsigned nb = ucu_rows_blocks(a.R, block);
    if (grad && block) {
        auto f = sce_grad_k<1>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), a);
    } else if (grad) {
        auto f = sce_grad_k<0>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), a);
    } else if (block) {
        auto f = sce_fwd_k<1>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), a);
    } else {
        auto f = sce_fwd_k<0>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), a);
    }
    UCU_TRY_LAUNCH(k, grad ? "SoftmaxCrossEntropyGrad" : "SoftmaxCrossEntropy");
    return ULC_OK;
}

/* The arguments the forward and the gradient share, from the op's geometry (grad: the
 * gradient's inputs). */
static ulc_status sce_common(ulc_kctx *k, int grad, sce_args *a) {
    ulc_sh_sce g;
    ULC_TRY(ulc_sh_sce_geom(k, grad, &g));
    memset(a, 0, sizeof *a);
    a->z = (const float *)g.z->data;
    a->p = g.p ? (const float *)g.p->data : NULL;
    a->y = g.y ? g.y->data : NULL;
    a->y64 = g.y && g.y->dtype == ULC_DT_I64;
    a->R = g.R;
    a->V = g.V;
    a->p_rows = g.p_rows;
    return ULC_OK;
}

static ulc_status sce_run(ulc_kctx *k) {
    sce_args a;
    ULC_TRY(sce_common(k, 0, &a));
    a.ce = ucu_out_f32(k, 0);
    a.lse = ucu_out_f32(k, 1);
    a.sce = ucu_out_f32(k, 2);
    if (a.R == 0 || (!a.ce && !a.lse && !a.sce)) return ULC_OK;
    return sce_launch(k, a, 0);
}

static ulc_status sce_grad_run(ulc_kctx *k) {
    sce_args a;
    ULC_TRY(sce_common(k, 1, &a));
    a.lse_in = ucu_in_f32(k, 2);
    a.dce = ucu_in_f32(k, 3);
    a.dlse = ucu_in_f32(k, 4);
    a.dsce = ucu_in_f32(k, 5);
    a.dz = (float *)k->out[0]->data;
    if (a.R == 0 || a.V == 0) return ULC_OK;
    return sce_launch(k, a, 1);
}

/* ---- SquaredDistance -------------------------------------------------------------------------- */

#ifdef ULC_CUDA_EMU
#define SQ_CHUNK ((int64_t)1 << 14) /* the suite's long rows take several chunks */
#else
#define SQ_CHUNK ((int64_t)1 << 16)
#endif

/* Block per (row, chunk): the chunk's Σ (a - b)² to out[item] (or to d[row] when out is d). */
__global__ void sq_part_k(const float *a, const float *b, float *out, int64_t R, int64_t P,
                          int64_t nchunk) {
    __shared__ float red[32];
    for (int64_t it = blockIdx.x; it < R * nchunk; it += gridDim.x) {
        int64_t r = it / nchunk, c0 = (it - r * nchunk) * SQ_CHUNK;
        int64_t c1 = c0 + SQ_CHUNK < P ? c0 + SQ_CHUNK : P;
        const float *ar = a + r * P, *br = b + r * P;
        float s = 0.0f;
        for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
            float d = ar[c] - br[c];
            s += d * d;
        }
        s = ucu_block_sum(s, red);
        if (threadIdx.x == 0) out[it] = s;
    }
}

__global__ void sq_rows_k(const float *part, float *d, int64_t R, int64_t nchunk) {
    UCU_FOR(r, R) {
        double s = 0.0;
        for (int64_t c = 0; c < nchunk; c++) s += part[r * nchunk + c];
        d[r] = (float)s;
    }
}

static ulc_status sq_run(ulc_kctx *k) {
    int64_t R, P;
    ULC_TRY(ulc_sh_sqdist_geom(k, 0, &R, &P));
    if (R == 0) return ULC_OK;
    float *d = (float *)k->out[0]->data;
    const float *a = (const float *)k->in[0]->data, *b = (const float *)k->in[1]->data;
    int64_t nchunk = P > SQ_CHUNK ? (P + SQ_CHUNK - 1) / SQ_CHUNK : 1;
    float *part = d;
    if (nchunk > 1) {
        part = (float *)ucu_scratch(k, (size_t)(R * nchunk) * sizeof(float));
        if (!part) return ULC_ERR_NOMEM;
    }
    UCU_LAUNCH(sq_part_k, ucu_blocks(R * nchunk, 1), UCU_THREADS, 0, ucu_stream(k), a, b, part, R, P, nchunk);
    UCU_TRY_LAUNCH(k, "SquaredDistance");
    if (nchunk > 1) {
        UCU_LAUNCH(sq_rows_k, ucu_blocks(R, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), (const float *)part, d,
                   R, nchunk);
        UCU_TRY_LAUNCH(k, "SquaredDistance rows");
    }
    return ULC_OK;
}

__global__ void sq_grad_k(const float *a, const float *b, const float *dd, float *da, float *db,
                          int64_t R, int64_t P) {
    UCU_FOR(t, R * P) {
        int64_t r = t / P;
        float g = 2.0f * dd[r], v = g * (a[t] - b[t]);
        if (da) da[t] = v;
        if (db) db[t] = -v;
    }
}

static ulc_status sq_grad_run(ulc_kctx *k) {
    int64_t R, P;
    ULC_TRY(ulc_sh_sqdist_geom(k, 1, &R, &P));
    float *da = ucu_out_f32(k, 0), *db = ucu_out_f32(k, 1);
    if (R == 0 || P == 0 || (!da && !db)) return ULC_OK;
    UCU_LAUNCH(sq_grad_k, ucu_blocks(R * P, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k),
               (const float *)k->in[0]->data, (const float *)k->in[1]->data,
               (const float *)k->in[2]->data, da, db, R, P);
    UCU_TRY_LAUNCH(k, "SquaredDistanceGrad");
    return ULC_OK;
}

/* blocked_inputs, flags, prepare, run, release, can_fuse */
static const ulc_kernel k_sce = {0, 0, NULL, sce_run, NULL, NULL};
static const ulc_kernel k_sce_grad = {0, 0, NULL, sce_grad_run, NULL, NULL};
static const ulc_kernel k_sq = {0, 0, NULL, sq_run, NULL, NULL};
static const ulc_kernel k_sq_grad = {0, 0, NULL, sq_grad_run, NULL, NULL};

void ucu_reg_grad_loss(ucu_table t) {
    t[ULC_OP_SoftmaxCrossEntropy] = &k_sce;
    t[ULC_OP_SoftmaxCrossEntropyGrad] = &k_sce_grad;
    t[ULC_OP_SquaredDistance] = &k_sq;
    t[ULC_OP_SquaredDistanceGrad] = &k_sq_grad;
}

UCU_END
