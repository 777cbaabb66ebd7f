/*
 * k_attn.cu — attention on the GPU: the planner's fused step (kernel.h's ulc_attn, built by
 * runtime/attn.c) and ulc's Attention / AttentionGrad ops (ir/ops_ulc.def, training graphs).
 * The reference semantics are runtime/cpu/k_attn.c's.
 *
 * Forward (the fused step and the Attention op alike), flash-attention style: a block of four
 * warps owns BQ = 4·RW query rows of one batch entry (each warp RW rows) and walks the keys 32
 * at a time. Per key tile, the scores S = Q·Kᵀ of the block's rows (one key per lane, the rows
 * in registers; Q's rows and the Kᵀ tile in shared memory, D in chunks of at most 128), then the
 * score transforms ops[] applied to each score in the nodes' order with the CPU's float ops (·imm,
 * /imm, a Where's fill, a float mask's Add; masks read broadcast through precomputed strides),
 * then the online softmax (running max and sum per row) and O += P·V with the V tile in shared
 * memory (each lane owns NC columns of 32, up to 128 columns; wider Dv in chunks of 128 columns on
 * gridDim.z, the scores recomputed per chunk). The [Tq, Tk] scores are never written. A row
 * whose every score is -inf gives NaN as on the CPU (its sum is 0: 0 · (1/0)). Q, Kᵀ, V and O
 * are read and written through the views (any strides: element (b, r, c) at base + Σ bs·b + r·rs
 * + c·cs); tiles load with the unit-stride index fastest, so the usual layouts coalesce.
 *
 * AttentionGrad: per chunk of batch entries (bounded scratch), with cuBLAS strided-batched
 * products into two [Tq, Tk] blocks per entry: S = Q·Kᵀ, then the transforms and the softmax
 * rows in place (P), dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)) with the transforms
 * undone in reverse (scales applied, Where-masked scores zero, Adds pass), dQ = dS·(Kᵀ)ᵀ,
 * dKᵀ = Qᵀ·dS. Outputs left out are not computed. ULC_CUDA_ATTN_GRAD_CHUNK=N caps the entries per
 * chunk (the tests' way to walk several chunks on small shapes).
 */
#include "runtime/cuda/cu.h"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "runtime/shape/params.h"
}

#ifdef __CUDACC__
#define AT_UNROLL _Pragma("unroll")
#else
#define AT_UNROLL
#endif

UCU_BEGIN

#define AT_WARPS 4
#define AT_THREADS (AT_WARPS * 32)
#define AT_BK 32          /* keys per tile: one per lane */
#define AT_DCH 128        /* D in chunks of at most this many (padded to 4) */
#define AT_MAX_NC 4       /* a lane's output columns: 32·NC columns per pass */
#define AT_SMEM_MAX 49152 /* dynamic shared memory without an opt-in */
#define AT_LEAD (ULC_RT_MAX_RANK)
#define AT_GRAD_SCRATCH ((long long)256 << 20) /* the gradient's two score blocks, bytes per chunk */

/* ---- what every kernel of the family shares: the score program ------------------------------- */

typedef struct at_prog {
    int n_ops, nlead;                    /* transforms; leading (batch) dims of the scores */
    int op[ULC_ATTN_MAX_OPS], keep[ULC_ATTN_MAX_OPS]; /* keep: a Where keeps S where cond == keep */
    float imm[ULC_ATTN_MAX_OPS];
    const void *mask[ULC_ATTN_MAX_OPS];  /* device data of a Where's (bool) or an Add's (f32) mask */
    long long mbs[ULC_ATTN_MAX_OPS][AT_LEAD]; /* its strides along the leading dims (0: broadcast) */
    long long mrs[ULC_ATTN_MAX_OPS], mcs[ULC_ATTN_MAX_OPS]; /* along a row (Tq) and a column (Tk) */
    long long lead[AT_LEAD];             /* the leading dims */
} at_prog;

typedef struct at_view {
    long long bs[AT_LEAD];
    long long rs, cs;
} at_view;

/* Each mask's offset for batch entry b. */
__device__ __forceinline__ void at_mask_bases(const at_prog &g, long long b, long long *mb) {
    for (int i = 0; i < ULC_ATTN_MAX_OPS; i++) mb[i] = 0;
    for (int d = g.nlead - 1; d >= 0; d--) {
        long long e = b % g.lead[d];
        b /= g.lead[d];
        for (int i = 0; i < g.n_ops; i++) mb[i] += e * g.mbs[i][d];
    }
}

/* An operand's offset for batch entry b. */
__device__ __forceinline__ long long at_view_base(const at_prog &g, const at_view &v, long long b) {
    long long off = 0;
    for (int d = g.nlead - 1; d >= 0; d--) {
        off += (b % g.lead[d]) * v.bs[d];
        b /= g.lead[d];
    }
    return off;
}

/* ops[] on score s at (row r, column c): the nodes' own float operations, in order. */
__device__ __forceinline__ float at_apply(const at_prog &g, const long long *mb, long long r, long long c, float s) {
    for (int i = 0; i < g.n_ops; i++) {
        int op = g.op[i];
        if (op == ULC_ATTN_MUL) {
            s = s * g.imm[i];
        } else if (op == ULC_ATTN_DIV) {
            s = s / g.imm[i];
        } else {
            long long off = mb[i] + r * g.mrs[i] + c * g.mcs[i];
            if (op == ULC_ATTN_ADD) {
                s = s + ((const float *)g.mask[i])[off];
            } else {
                int cond = ((const unsigned char *)g.mask[i])[off] != 0;
                if (cond != g.keep[i]) s = g.imm[i];
            }
        }
    }
    return s;
}

/* ops[] undone on the gradient ds of the score at (r, c), last op first: a scale scales it, a
 * score a Where replaced gets none, an Add passes it on. */
__device__ __forceinline__ float at_unapply(const at_prog &g, const long long *mb, long long r, long long c, float ds) {
    for (int i = g.n_ops - 1; i >= 0; i--) {
        int op = g.op[i];
        if (op == ULC_ATTN_ADD) continue;
        if (op == ULC_ATTN_MUL) {
            ds = ds * g.imm[i];
        } else if (op == ULC_ATTN_DIV) {
            ds = ds / g.imm[i];
        } else {
            long long off = mb[i] + r * g.mrs[i] + c * g.mcs[i];
            int cond = ((const unsigned char *)g.mask[i])[off] != 0;
            if (cond != g.keep[i]) ds = 0.0f;
        }
    }
    return ds;
}

/* ---- the forward: flash attention ------------------------------------------------------------- */

typedef struct at_fwd {
    at_prog g;
    const float *q, *kt, *v;
    float *o;
    at_view vq, vk, vv, vo;
    long long tq, tk, d, dv;
    long long rowtiles, ntiles; /* query-row tiles per batch entry; batch · rowtiles */
    int dch, nchunks;           /* D's chunk (a multiple of 4, at most AT_DCH) and their count */
} at_fwd;

/* Shared memory of the forward kernel, in floats: Q's rows (BQ × dch), one key tile of Kᵀ
 * (dch × 32) or V (32 × 32·NC), the tile's probabilities (BQ × 32). */
static long long at_smem_floats(int rw, int nc, int dch) {
    long long bq = (long long)AT_WARPS * rw, vw = 32LL * nc;
    return bq * dch + (long long)AT_BK * (dch > vw ? dch : vw) + bq * AT_BK;
}

/* dst[i·cols + j] = the view's element (r0 + i, c0 + j) (strides rs, cs), 0 past (rlim, clim),
 * for a rows × cols tile in shared memory: the block's threads walk the view's unit-stride
 * index fastest, so the reads coalesce. */
__device__ __forceinline__ void at_load_tile(float *dst, int rows, int cols, const float *src,
                                             long long r0, long long c0, long long rlim,
                                             long long clim, long long rs, long long cs) {
    for (int i = (int)threadIdx.x; i < rows * cols; i += AT_THREADS) {
        int ri, ci;
        if (cs == 1) {
            ri = i / cols;
            ci = i - ri * cols;
        } else {
            ci = i / rows;
            ri = i - ci * rows;
        }
        long long r = r0 + ri, c = c0 + ci;
        dst[ri * cols + ci] = r < rlim && c < clim ? src[r * rs + c * cs] : 0.0f;
    }
}

template <int RW, int NC>
__global__ void at_fwd_kernel(at_fwd p) {
    UCU_DYN_SMEM(float, sm);
    const int BQ = AT_WARPS * RW, VW = NC * 32;
    const int dch = p.dch, kvw = dch > VW ? dch : VW;
    float *Qs = sm, *KV = sm + BQ * dch, *Ps = KV + AT_BK * kvw;
    const int tid = (int)threadIdx.x, lane = tid & 31, w = tid >> 5;
    const long long dv0 = (long long)blockIdx.z * VW;
    for (long long tile = blockIdx.x; tile < p.ntiles; tile += gridDim.x) {
        const long long b = tile / p.rowtiles, q0 = (tile % p.rowtiles) * BQ;
        long long mb[ULC_ATTN_MAX_OPS];
        at_mask_bases(p.g, b, mb);
        const float *Q = p.q + at_view_base(p.g, p.vq, b), *KT = p.kt + at_view_base(p.g, p.vk, b),
                    *V = p.v + at_view_base(p.g, p.vv, b);
        float *O = p.o + at_view_base(p.g, p.vo, b);
        float o[RW][NC], m[RW], l[RW];
        AT_UNROLL for (int rr = 0; rr < RW; rr++) {
            m[rr] = -INFINITY;
            l[rr] = 0.0f;
            AT_UNROLL for (int i = 0; i < NC; i++) o[rr][i] = 0.0f;
        }
        for (long long k0 = 0; k0 < p.tk; k0 += AT_BK) {
            float s[RW];
            AT_UNROLL for (int rr = 0; rr < RW; rr++) s[rr] = 0.0f;
            /* S = Q · Kᵀ for the tile, D a chunk at a time */
            for (int c = 0; c < p.nchunks; c++) {
                const long long d0 = (long long)c * dch;
                __syncthreads(); /* the previous tile's readers are done with Qs and KV */
                if (p.nchunks > 1 || k0 == 0) /* Q's rows [BQ, dch] */
                    at_load_tile(Qs, BQ, dch, Q, q0, d0, p.tq, p.d, p.vq.rs, p.vq.cs);
                at_load_tile(KV, dch, AT_BK, KT, d0, k0, p.d, p.tk, p.vk.rs, p.vk.cs); /* Kᵀ [dch, 32] */
                __syncthreads();
                for (int dd = 0; dd < dch; dd += 4) {
                    const float k0v = KV[dd * AT_BK + lane], k1v = KV[(dd + 1) * AT_BK + lane],
                                k2v = KV[(dd + 2) * AT_BK + lane], k3v = KV[(dd + 3) * AT_BK + lane];
                    AT_UNROLL for (int rr = 0; rr < RW; rr++) {
                        const float4 qv = *reinterpret_cast<const float4 *>(Qs + (w * RW + rr) * dch + dd);
                        s[rr] += qv.x * k0v;
                        s[rr] += qv.y * k1v;
                        s[rr] += qv.z * k2v;
                        s[rr] += qv.w * k3v;
                    }
                }
            }
            /* the transforms, then the online softmax: running max m, per-lane partial sums l */
            const long long key = k0 + lane;
            AT_UNROLL for (int rr = 0; rr < RW; rr++) {
                const long long r = q0 + w * RW + rr;
                float x = s[rr];
                if (key >= p.tk)
                    x = -INFINITY; /* past the last key: weight 0 */
                else if (r < p.tq)
                    x = at_apply(p.g, mb, r, key, x);
                const float mn = fmaxf(m[rr], ucu_warp_max(x));
                const float mu = mn == -INFINITY ? 0.0f : mn; /* all -inf so far: exp(x - 0) = 0 */
                const float alpha = expf(m[rr] - mu), e = expf(x - mu);
                l[rr] = l[rr] * alpha + e;
                AT_UNROLL for (int i = 0; i < NC; i++) o[rr][i] *= alpha;
                m[rr] = mn;
                Ps[(w * RW + rr) * AT_BK + lane] = e;
            }
            __syncthreads(); /* every warp is done with the Kᵀ tile */
            const int nk = p.tk - k0 < AT_BK ? (int)(p.tk - k0) : AT_BK;
            at_load_tile(KV, AT_BK, VW, V, k0, dv0, p.tk, p.dv, p.vv.rs, p.vv.cs); /* V [32, VW] */
            __syncthreads();
            for (int j = 0; j < nk; j++) {
                float vj[NC];
                AT_UNROLL for (int i = 0; i < NC; i++) vj[i] = KV[j * VW + lane + 32 * i];
                AT_UNROLL for (int rr = 0; rr < RW; rr++) {
                    const float pj = Ps[(w * RW + rr) * AT_BK + j];
                    AT_UNROLL for (int i = 0; i < NC; i++) o[rr][i] += pj * vj[i];
                }
            }
        }
        AT_UNROLL for (int rr = 0; rr < RW; rr++) {
            const float inv = 1.0f / ucu_warp_sum(l[rr]); /* a row of -inf: 0 · (1/0) = NaN, as the CPU */
            const long long r = q0 + w * RW + rr;
            if (r >= p.tq) continue;
            AT_UNROLL for (int i = 0; i < NC; i++) {
                const long long col = dv0 + lane + 32 * i;
                if (col < p.dv) O[r * p.vo.rs + col * p.vo.cs] = o[rr][i] * inv;
            }
        }
    }
}

/* No keys: O is an empty sum (zeros), written through its view. */
__global__ void at_zero_view(at_fwd p, long long n) {
    UCU_FOR(i, n) {
        long long c = i % p.dv, t = i / p.dv, r = t % p.tq, b = t / p.tq;
        p.o[at_view_base(p.g, p.vo, b) + r * p.vo.rs + c * p.vo.cs] = 0.0f;
    }
}

__global__ void at_zero(float *x, long long n) {
    UCU_FOR(i, n) x[i] = 0.0f;
}

typedef void (*at_fwd_fn)(at_fwd);

static at_fwd_fn at_pick(int rw, int nc) {
#define AT_NC(R)                                                                                   \
    switch (nc) {                                                                                  \
    case 1: return at_fwd_kernel<R, 1>;                                                            \
    case 2: return at_fwd_kernel<R, 2>;                                                            \
    case 3: return at_fwd_kernel<R, 3>;                                                            \
    default: return at_fwd_kernel<R, 4>;                                                           \
    }
    switch (rw) {
    case 1: AT_NC(1)
    case 4: AT_NC(4)
    case 8: AT_NC(8)
    default: AT_NC(16)
    }
#undef AT_NC
}

/* ---- state ------------------------------------------------------------------------------------ */

typedef struct at_state {
    at_fwd f;              /* the forward's parameters (pointers set in run) */
    long long batch;
    int rw, nc;            /* the forward kernel's instance */
    unsigned grid, zchunks;
    size_t smem;
    long long nb;          /* the gradient: batch entries per chunk */
    int minput[ULC_ATTN_MAX_OPS]; /* each transform's mask input slot, or -1 */
} at_state;

static void at_copy_view(at_view *dst, const ulc_attn_view *src, int nlead) {
    memset(dst, 0, sizeof *dst);
    for (int d = 0; d < nlead; d++) dst->bs[d] = src->bs[d];
    dst->rs = src->rs;
    dst->cs = src->cs;
}

/* The state for geometry g (the program included): the masks' strides, the forward's tiling;
 * grad: the chunk of batch entries of the gradient's scratch. */
static ulc_status at_setup(ulc_kctx *k, const ulc_sh_attn *g, int grad) {
    const ulc_attn *a = &g->a;
    int r = a->rank;
    if (r < 2 || r > ULC_RT_MAX_RANK)
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "attention: scores of rank %d", r);
    at_state *s = (at_state *)calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (attention)");
    k->state = s;
    at_fwd *f = &s->f;
    at_prog *pg = &f->g;
    pg->nlead = r - 2;
    for (int d = 0; d < r - 2; d++) pg->lead[d] = a->sdims[d];
    pg->n_ops = a->n_ops;
    for (int i = 0; i < a->n_ops; i++) {
        int op = a->ops[i].op;
        pg->op[i] = op;
        pg->imm[i] = a->ops[i].imm;
        pg->keep[i] = a->ops[i].s_is_x ? 1 : 0;
        s->minput[i] = -1;
        if (op != ULC_ATTN_WHERE && op != ULC_ATTN_ADD) continue;
        s->minput[i] = a->ops[i].input;
        const ulc_rt_tensor *m = a->ops[i].input < k->n_in ? k->in[a->ops[i].input] : NULL;
        int want = op == ULC_ATTN_WHERE ? ULC_DT_BOOL : ULC_DT_F32;
        if (!m || m->dtype != want || !ulc_rt_broadcasts_to(m, r, a->sdims))
            return ulc_k_fail(k, ULC_ERR_INTERNAL, "attention: the mask of transform %d is not a %s broadcasting "
                              "to the scores", i, ulc_dtype_name(want));
        int64_t ms[ULC_RT_MAX_RANK];
        ulc_k_bcast_strides(m, r, a->sdims, ms);
        for (int d = 0; d < r - 2; d++) pg->mbs[i][d] = ms[d];
        pg->mrs[i] = ms[r - 2];
        pg->mcs[i] = ms[r - 1];
    }
    at_copy_view(&f->vq, &a->q, r - 2);
    at_copy_view(&f->vk, &a->kt, r - 2);
    at_copy_view(&f->vv, &a->v, r - 2);
    at_copy_view(&f->vo, &a->o, r - 2);
    f->tq = g->tq;
    f->tk = g->tk;
    f->d = a->d;
    f->dv = a->dv;
    s->batch = g->batch;
    if (grad) {
        if (g->tq > INT32_MAX || g->tk > INT32_MAX || a->d > INT32_MAX || a->dv > INT32_MAX ||
            g->tq * g->tk > INT32_MAX || g->tq * a->d > INT32_MAX || g->tk * a->dv > INT32_MAX)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "attention gradient: Tq %lld, Tk %lld, D %lld, Dv %lld are "
                              "too large for backend cuda's products", (long long)g->tq, (long long)g->tk,
                              (long long)a->d, (long long)a->dv);
        long long per = 2LL * g->tq * g->tk * (long long)sizeof(float);
        long long nb = per > 0 ? AT_GRAD_SCRATCH / per : g->batch;
        if (nb < 1) nb = 1;
        if (nb > g->batch) nb = g->batch;
        if (nb > INT32_MAX) nb = INT32_MAX;
        const char *e = getenv("ULC_CUDA_ATTN_GRAD_CHUNK"); /* tests: fewer entries per chunk */
        if (e && atoll(e) > 0 && atoll(e) < nb) nb = atoll(e);
        s->nb = nb;
        return ULC_OK;
    }
    /* the forward's tiling */
    long long dp = (a->d + 3) / 4 * 4;
    f->dch = (int)(dp < AT_DCH ? dp : AT_DCH);
    f->nchunks = f->dch > 0 ? (int)((dp + f->dch - 1) / f->dch) : 0;
    s->nc = a->dv <= 32 * AT_MAX_NC ? (int)((a->dv + 31) / 32) : AT_MAX_NC;
    if (s->nc < 1) s->nc = 1;
    long long zc = (a->dv + 32LL * s->nc - 1) / (32LL * s->nc);
    if (zc > 65535)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "attention: Dv %lld is too large for backend cuda",
                          (long long)a->dv);
    s->zchunks = (unsigned)(zc > 0 ? zc : 1);
    int rw = g->tq >= 48 ? 16 : g->tq >= 24 ? 8 : g->tq >= 8 ? 4 : 1;
    /* smaller row tiles while the grid would leave the GPU idle (about two blocks per SM) */
    while (rw > 4 && g->batch * ((g->tq + 4LL * rw - 1) / (4LL * rw)) * (long long)s->zchunks < 264) rw /= 2;
    while (rw > 1 && at_smem_floats(rw, s->nc, f->dch) * (long long)sizeof(float) > AT_SMEM_MAX)
        rw = rw == 16 ? 8 : rw == 8 ? 4 : 1;
    s->rw = rw;
    s->smem = (size_t)at_smem_floats(rw, s->nc, f->dch) * sizeof(float);
    f->rowtiles = (g->tq + 4LL * rw - 1) / (4LL * rw);
    f->ntiles = g->batch * f->rowtiles;
    s->grid = ucu_blocks(f->ntiles, 1);
    return ULC_OK;
}

/* The planner's fused step: k->state is its program and geometry (ours to free from here on). */
static ulc_status at_fused_prepare(ulc_kctx *k) {
    ulc_sh_attn g;
    ulc_sh_attn_take(k, &g);
    int r = g.a.rank;
    if (r < 2 || r > ULC_RT_MAX_RANK || g.a.o.cs != 1)
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "attention: an operand view backend cuda cannot write");
    return ucu_prepared(k, at_setup(k, &g, 0));
}

static ulc_status at_op_prepare(ulc_kctx *k) {
    ulc_sh_attn g;
    ULC_TRY(ulc_sh_attn_geom(k, 0, &g));
    return ucu_prepared(k, at_setup(k, &g, 0));
}

static ulc_status at_grad_prepare(ulc_kctx *k) {
    ulc_sh_attn g;
    ULC_TRY(ulc_sh_attn_geom(k, 1, &g));
    return ucu_prepared(k, at_setup(k, &g, 1));
}

/* The masks' device pointers (bound per run). */
static void at_bind_masks(const ulc_kctx *k, const at_state *s, at_prog *pg) {
    for (int i = 0; i < pg->n_ops; i++)
        pg->mask[i] = s->minput[i] >= 0 ? (const void *)k->in[s->minput[i]]->data : NULL;
}

/* ---- the forward's run ------------------------------------------------------------------------ */

static ulc_status at_run(ulc_kctx *k) {
    const at_state *s = (const at_state *)k->state;
    at_fwd p = s->f;
    at_bind_masks(k, s, &p.g);
    p.q = (const float *)k->in[0]->data;
    p.kt = (const float *)k->in[1]->data;
    p.v = (const float *)k->in[2]->data;
    p.o = (float *)k->out[0]->data;
    if (s->batch == 0 || p.tq == 0 || p.dv == 0) return ULC_OK;
    if (p.tk == 0) { /* no keys: P is [Tq, 0] and P · V an empty sum */
        long long n = s->batch * p.tq * p.dv;
        UCU_LAUNCH(at_zero_view, ucu_blocks(n, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), p, n);
        UCU_TRY_LAUNCH(k, "attention (no keys)");
        return ULC_OK;
    }
    at_fwd_fn f = at_pick(s->rw, s->nc);
    UCU_LAUNCH(f, dim3(s->grid, 1, s->zchunks), AT_THREADS, s->smem, ucu_stream(k), p);
    UCU_TRY_LAUNCH(k, "attention");
    return ULC_OK;
}

/* ---- the gradient ----------------------------------------------------------------------------- */

typedef struct at_rows {
    at_prog g;
    float *p, *gr;      /* P and dP/dS: [rows, tk] of the chunk's entries */
    long long b0, tq, tk, rows;
    int zero;           /* the product is an empty sum: its values are 0, not read */
} at_rows;

__device__ __forceinline__ double at_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* P = softmax(ops(S)) in place, one warp per row (rows of the chunk's batch entries). */
__global__ void at_probs(at_rows p) {
    const int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5;
    for (long long row = (long long)blockIdx.x * AT_WARPS + w; row < p.rows; row += (long long)gridDim.x * AT_WARPS) {
        const long long b = p.b0 + row / p.tq, r = row % p.tq;
        long long mb[ULC_ATTN_MAX_OPS];
        at_mask_bases(p.g, b, mb);
        float *x = p.p + row * p.tk;
        float mx = -INFINITY;
        for (long long c = lane; c < p.tk; c += 32) {
            float v = at_apply(p.g, mb, r, c, p.zero ? 0.0f : x[c]);
            x[c] = v;
            mx = fmaxf(mx, v);
        }
        mx = ucu_warp_max(mx);
        if (mx == -INFINITY) mx = 0.0f; /* all -inf: exp(-inf) = 0, then 0 · (1/0) = NaN */
        float sum = 0.0f;
        for (long long c = lane; c < p.tk; c += 32) {
            float e = expf(x[c] - mx);
            x[c] = e;
            sum += e;
        }
        const float inv = (float)(1.0 / (double)ucu_warp_sum(sum));
        for (long long c = lane; c < p.tk; c += 32) x[c] *= inv;
    }
}

/* dS = P ∘ (dP − Σ P ∘ dP), the transforms undone, in place of dP; one warp per row. */
__global__ void at_dscores(at_rows p) {
    const int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5;
    for (long long row = (long long)blockIdx.x * AT_WARPS + w; row < p.rows; row += (long long)gridDim.x * AT_WARPS) {
        const long long b = p.b0 + row / p.tq, r = row % p.tq;
        long long mb[ULC_ATTN_MAX_OPS];
        at_mask_bases(p.g, b, mb);
        const float *pr = p.p + row * p.tk;
        float *gr = p.gr + row * p.tk;
        double dot = 0.0;
        if (!p.zero)
            for (long long c = lane; c < p.tk; c += 32) dot += (double)pr[c] * gr[c];
        const float D = (float)at_warp_sum_d(dot);
        for (long long c = lane; c < p.tk; c += 32) {
            float ds = pr[c] * ((p.zero ? 0.0f : gr[c]) - D);
            gr[c] = at_unapply(p.g, mb, r, c, ds);
        }
    }
}

static float *at_out(const ulc_kctx *k, int i) {
    return i < k->n_out && k->out[i] ? (float *)k->out[i]->data : NULL;
}

static ulc_status at_zero_out(ulc_kctx *k, int i) {
    float *x = at_out(k, i);
    if (!x) return ULC_OK;
    long long n = (long long)ulc_rt_numel(k->out[i]);
    if (n == 0) return ULC_OK;
    UCU_LAUNCH(at_zero, ucu_blocks(n, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), x, n);
    UCU_TRY_LAUNCH(k, "attention gradient (zeros)");
    return ULC_OK;
}

/* C = A·B of row-major matrices, batched: sgemm on the column-major transposes (C' = B'·A'). */
static ulc_status at_gemm(ulc_kctx *k, int ta, int tb, int M, int N, int K, const float *A, int lda, long long sa,
                          const float *B, int ldb, long long sb, float *C, int ldc, long long sc, int batch,
                          const char *what) {
    const float one = 1.0f, zero = 0.0f;
    ucu_dev *dv = ucu_ctx(k);
    int st = dv->b->sgemm_batched(dv->blas, tb, ta, N, M, K, &one, B, ldb, sb, A, lda, sa, &zero, C, ldc, sc, batch);
    return ucu_blas_check(k, st, what);
}

static ulc_status at_grad_run(ulc_kctx *k) {
    at_state *s = (at_state *)k->state;
    const at_fwd *f = &s->f;
    if (s->batch == 0) return ULC_OK;
    if (f->tq == 0 || f->tk == 0) { /* no scores: every gradient is an empty sum */
        for (int i = 0; i < 3; i++) ULC_TRY(at_zero_out(k, i));
        return ULC_OK;
    }
    const int tq = (int)f->tq, tk = (int)f->tk, d = (int)f->d, dv = (int)f->dv;
    const long long per = (long long)tq * tk;
    const float *Q = (const float *)k->in[0]->data, *KT = (const float *)k->in[1]->data,
                *V = (const float *)k->in[2]->data, *dO = (const float *)k->in[3]->data;
    float *dQ = at_out(k, 0), *dKT = at_out(k, 1), *dV = at_out(k, 2);
    if (d == 0) dQ = dKT = NULL; /* empty */
    if (dv == 0) dV = NULL;
    if (!dQ && !dKT && !dV) return ULC_OK;
    float *P = (float *)ucu_scratch(k, (size_t)(2 * s->nb * per) * sizeof(float));
    if (!P) return ULC_ERR_NOMEM;
    float *G = P + s->nb * per;
    at_rows rp;
    memset(&rp, 0, sizeof rp);
    rp.g = f->g;
    at_bind_masks(k, s, &rp.g);
    rp.p = P;
    rp.gr = G;
    rp.tq = f->tq;
    rp.tk = f->tk;
    for (long long b0 = 0; b0 < s->batch; b0 += s->nb) {
        const int n = (int)(s->batch - b0 < s->nb ? s->batch - b0 : s->nb);
        const float *Qb = Q + b0 * tq * d, *KTb = KT + b0 * d * tk, *Vb = V + b0 * tk * dv, *dOb = dO + b0 * tq * dv;
        rp.b0 = b0;
        rp.rows = (long long)n * tq;
        unsigned rows_grid = ucu_blocks(rp.rows, AT_WARPS);
        /* P = softmax(ops(Q · Kᵀ)) */
        if (d > 0)
            ULC_TRY(at_gemm(k, UCU_OP_N, UCU_OP_N, tq, tk, d, Qb, d, (long long)tq * d, KTb, tk, (long long)d * tk, P,
                            tk, per, n, "sgemm (attention gradient, scores)"));
        rp.zero = d == 0;
        UCU_LAUNCH(at_probs, rows_grid, AT_THREADS, 0, ucu_stream(k), rp);
        UCU_TRY_LAUNCH(k, "attention gradient (probabilities)");
        /* dV = Pᵀ · dO */
        if (dV)
            ULC_TRY(at_gemm(k, UCU_OP_T, UCU_OP_N, tk, dv, tq, P, tk, per, dOb, dv, (long long)tq * dv,
                            dV + b0 * tk * dv, dv, (long long)tk * dv, n, "sgemm (attention gradient, dv)"));
        if (!dQ && !dKT) continue;
        /* dP = dO · Vᵀ, then dS in its place */
        if (dv > 0)
            ULC_TRY(at_gemm(k, UCU_OP_N, UCU_OP_T, tq, tk, dv, dOb, dv, (long long)tq * dv, Vb, dv, (long long)tk * dv,
                            G, tk, per, n, "sgemm (attention gradient, dP)"));
        rp.zero = dv == 0;
        UCU_LAUNCH(at_dscores, rows_grid, AT_THREADS, 0, ucu_stream(k), rp);
        UCU_TRY_LAUNCH(k, "attention gradient (dS)");
        /* dQ = dS · (Kᵀ)ᵀ, dKᵀ = Qᵀ · dS */
        if (dQ)
            ULC_TRY(at_gemm(k, UCU_OP_N, UCU_OP_T, tq, d, tk, G, tk, per, KTb, tk, (long long)d * tk,
                            dQ + b0 * tq * d, d, (long long)tq * d, n, "sgemm (attention gradient, dq)"));
        if (dKT)
            ULC_TRY(at_gemm(k, UCU_OP_T, UCU_OP_N, d, tk, tq, Qb, d, (long long)tq * d, G, tk, per,
                            dKT + b0 * d * tk, tk, (long long)d * tk, n, "sgemm (attention gradient, dkt)"));
    }
    return ULC_OK;
}

static const ulc_kernel k_attn_fused = {0, 0, at_fused_prepare, at_run, ucu_free_state, NULL};
static const ulc_kernel k_attn_op = {0, 0, at_op_prepare, at_run, ucu_free_state, NULL};
static const ulc_kernel k_attn_grad = {0, 0, at_grad_prepare, at_grad_run, ucu_free_state, NULL};

void ucu_reg_attn(ucu_table t) {
    t[ULC_OP_Attention] = &k_attn_op;
    t[ULC_OP_AttentionGrad] = &k_attn_grad;
}

const ulc_kernel *ucu_attn_kernel(void) { return &k_attn_fused; }

UCU_END
