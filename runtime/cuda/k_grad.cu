/*
 * k_grad.cu — the CUDA kernels of ulc's own gradient ops (domain "ulc", ir/ops_ulc.def):
 * ReluGrad, GeluGrad, SoftmaxGrad, LogSoftmaxGrad, LayerNormGrad, GatherGrad, MaxPoolGrad and
 * AveragePoolGrad; ConvGradData/ConvGradWeight are in k_grad_conv.cu, the fused losses in
 * k_grad_loss.cu. The reference semantics are the CPU kernels' (runtime/cpu/k_grad.c), whose
 * header states the math; the geometry comes from the same decoders (runtime/shape/params.h).
 * Float32 only: the shape rules (runtime/shape/s_grad.c) refuse other dtypes naming the input.
 *
 * Every output element is written by one thread, its sums in a fixed order, with no atomics:
 * the bits are the same on every run.
 *
 *   ReluGrad, GeluGrad  elementwise, float4 when the three pointers allow it.
 *   Softmax/LogSoftmaxGrad  over the [O, A, I] view: I = 1 rows of A to a warp (A <= 1024) or a
 *                       block; I > 1 one thread per (o, i) column walking A twice (coalesced
 *                       along i).
 *   LayerNormGrad       a warp or a block per row (μ, 1/σ recomputed, then dx); dscale/dbias in
 *                       two deterministic passes: per (chunk of rows, column) double partial
 *                       sums into scratch, then per element of scale the partials of its
 *                       columns in chunk order (scale broadcast over the normalised dims folds
 *                       there: its columns in row-major order).
 *   GatherGrad          ddata [O, A, I] from dy [O, P, I]: one thread per (o, chunk of rows
 *                       of A, column i) zeroes its rows, then scans all P indices in order and
 *                       adds the dy slices that hit its rows — repeated indices accumulate in
 *                       index order, as on the CPU, without atomics or a sort. Cost: every
 *                       thread reads all P indices (a warp-uniform, cached load), so the work
 *                       is O·I·chunks·P compares for O·A·I outputs; chunks is chosen to give
 *                       about 2^17 threads (1 chunk when O·I alone is that many), so an
 *                       embedding of 50k × 768 with 8k tokens is ~1e9 warp-uniform compares.
 *                       Indices out of [-A, A) are refused when indices is a plan constant
 *                       (as the CPU's); a run-time index out of range is skipped (no error can
 *                       come back from the device without a sync).
 *   MaxPoolGrad         pass 1: one thread per output finds its window's first maximum
 *                       (row-major taps, a later tap wins only when strictly greater: the CPU's
 *                       rule) into scratch; pass 2: one thread per dx element walks the outputs
 *                       whose windows contain it, in row-major order, adding dy where it is the
 *                       argmax — the CPU's order of additions exactly.
 *   AveragePoolGrad     one thread per dx element: dy[o] / div over the outputs whose windows
 *                       contain it (div = the kernel size with count_include_pad, else the
 *                       window's taps inside the input, as the CPU's), in row-major order.
 */
#include "runtime/cuda/k_grad.h"

UCU_BEGIN

/* ---- ReluGrad, GeluGrad ---------------------------------------------------------------------- */

#define GG_INV_SQRT2PI 0.3989422804014327f /* 1/√(2π) */
#define GG_K0 0.7978845608028654f          /* √(2/π) */
#define GG_K1 0.044715f
#define GG_INV_SQRT2 0.70710678118654752f

enum { EW_RELU, EW_GELU_ERF, EW_GELU_TANH };

template <int OP> __device__ __forceinline__ float ew_grad1(float dy, float x) {
    if (OP == EW_RELU) return x > 0.0f ? dy : 0.0f;
    if (OP == EW_GELU_ERF) {
        float cdf = 0.5f * erfcf(-x * GG_INV_SQRT2); /* Φ(x), no cancellation in the tail */
        float pdf = expf(-0.5f * x * x) * GG_INV_SQRT2PI;
        return dy * (cdf + x * pdf);
    }
    /* tanh form: σ(2u) + 2x·σ(2u)σ(-2u)·u' */
    float u2 = 2.0f * GG_K0 * (x + GG_K1 * x * x * x);
    float a = 1.0f / (1.0f + expf(-u2)), b = 1.0f / (1.0f + expf(u2));
    float du = GG_K0 * (1.0f + 3.0f * GG_K1 * x * x);
    return dy * (a + 2.0f * x * a * b * du);
}

/* n elements; vec: the pointers are 16-byte aligned (float4 for the first n/4·4). */
template <int OP> __global__ void ew_grad_k(const float *dy, const float *x, float *dx, int64_t n, int vec) {
    int64_t start = 0;
    if (vec) {
        int64_t n4 = n >> 2;
        const float4 *d4 = reinterpret_cast<const float4 *>(dy), *x4 = reinterpret_cast<const float4 *>(x);
        float4 *o4 = reinterpret_cast<float4 *>(dx);
        UCU_FOR(i, n4) {
            float4 a = d4[i], b = x4[i], r;
            r.x = ew_grad1<OP>(a.x, b.x);
            r.y = ew_grad1<OP>(a.y, b.y);
            r.z = ew_grad1<OP>(a.z, b.z);
            r.w = ew_grad1<OP>(a.w, b.w);
            o4[i] = r;
        }
        start = n4 << 2;
    }
    UCU_FOR(i, n - start) {
        int64_t j = start + i;
        dx[j] = ew_grad1<OP>(dy[j], x[j]);
    }
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static ulc_status ew_grad_run(ulc_kctx *k, int op) {
    int64_t n = (int64_t)ulc_rt_numel(k->out[0]);
    if (n == 0) return ULC_OK;
    const float *dy = (const float *)k->in[0]->data, *x = (const float *)k->in[1]->data;
    float *dx = (float *)k->out[0]->data;
    int vec = aligned16(dy) && aligned16(x) && aligned16(dx);
    unsigned blocks = ucu_blocks(vec ? (n + 3) / 4 : n, UCU_THREADS);
    if (op == EW_RELU) {
        auto f = ew_grad_k<EW_RELU>;
        UCU_LAUNCH(f, blocks, UCU_THREADS, 0, ucu_stream(k), dy, x, dx, n, vec);
    } else if (op == EW_GELU_ERF) {
        auto f = ew_grad_k<EW_GELU_ERF>;
        UCU_LAUNCH(f, blocks, UCU_THREADS, 0, ucu_stream(k), dy, x, dx, n, vec);
    } else {
        auto f = ew_grad_k<EW_GELU_TANH>;
        UCU_LAUNCH(f, blocks, UCU_THREADS, 0, ucu_stream(k), dy, x, dx, n, vec);
    }
    UCU_TRY_LAUNCH(k, "elementwise gradient");
    return ULC_OK;
}

static ulc_status relu_grad_run(ulc_kctx *k) { return ew_grad_run(k, EW_RELU); }

static ulc_status gelu_grad_run(ulc_kctx *k) {
    int tanh_form;
    ULC_TRY(ulc_sh_gelu_grad_mode(k, &tanh_form));
    return ew_grad_run(k, tanh_form ? EW_GELU_TANH : EW_GELU_ERF);
}

/* ---- SoftmaxGrad, LogSoftmaxGrad ------------------------------------------------------------- */

/* I = 1: rows of A. dx = y·(dy - Σ dy·y) or dy - e^y·Σ dy. */
template <int BLOCK, int LOG>
__global__ void smg_rows_k(const float *dy, const float *y, float *dx, int64_t rows, int64_t A) {
    __shared__ float red[32];
    ucu_rows g = ucu_rows_of<BLOCK>();
    for (int64_t r = g.first; r < rows; r += g.step) {
        const float *d = dy + r * A, *yr = y + r * A;
        float *o = dx + r * A;
        float s = 0.0f;
        for (int64_t a = g.lane; a < A; a += g.width) s += LOG ? d[a] : d[a] * yr[a];
        s = ucu_grp_sum<BLOCK>(s, red);
        for (int64_t a = g.lane; a < A; a += g.width)
            o[a] = LOG ? d[a] - expf(yr[a]) * s : yr[a] * (d[a] - s);
    }
}

/* I > 1: one thread per (o, i) column of A elements at stride I. */
template <int LOG>
__global__ void smg_cols_k(const float *dy, const float *y, float *dx, int64_t O, int64_t A, int64_t I) {
    UCU_FOR(t, O * I) {
        int64_t o = t / I, i = t - o * I, base = o * A * I + i;
        float s = 0.0f;
        for (int64_t a = 0; a < A; a++) s += LOG ? dy[base + a * I] : dy[base + a * I] * y[base + a * I];
        for (int64_t a = 0; a < A; a++) {
            int64_t e = base + a * I;
            dx[e] = LOG ? dy[e] - expf(y[e]) * s : y[e] * (dy[e] - s);
        }
    }
}

static ulc_status smg_run(ulc_kctx *k) {
    int64_t O, A, I;
    ULC_TRY(ulc_sh_softmax_grad_layout(k, &O, &A, &I));
    if (ulc_rt_numel(k->out[0]) == 0) return ULC_OK;
    int log_form = k->node->op == ULC_OP_LogSoftmaxGrad;
    const float *dy = (const float *)k->in[0]->data, *y = (const float *)k->in[1]->data;
    float *dx = (float *)k->out[0]->data;
    if (I == 1) {
        int block = A > UCU_GRAD_WARP_ROW;
        unsigned nb = ucu_rows_blocks(O, block);
        if (block && log_form) {
            auto f = smg_rows_k<1, 1>;
            UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, y, dx, O, A);
        } else if (block) {
            auto f = smg_rows_k<1, 0>;
            UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, y, dx, O, A);
        } else if (log_form) {
            auto f = smg_rows_k<0, 1>;
            UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, y, dx, O, A);
        } else {
            auto f = smg_rows_k<0, 0>;
            UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, y, dx, O, A);
        }
    } else {
        unsigned nb = ucu_blocks(O * I, UCU_THREADS);
        if (log_form) {
            auto f = smg_cols_k<1>;
            UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, y, dx, O, A, I);
        } else {
            auto f = smg_cols_k<0>;
            UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, y, dx, O, A, I);
        }
    }
    UCU_TRY_LAUNCH(k, "softmax gradient");
    return ULC_OK;
}

/* ---- LayerNormGrad --------------------------------------------------------------------------- */

/* scale broadcast over the normalised dims D (nd of them, N elements): element of scale for
 * column c (bcast 0: c itself). */
struct lng_bcast {
    int nd, bcast;
    int64_t D[ULC_RT_MAX_RANK], st[ULC_RT_MAX_RANK];
};

__device__ __forceinline__ int64_t lng_scale_at(const lng_bcast &b, int64_t c) {
    if (!b.bcast) return c;
    int64_t off = 0;
    for (int d = b.nd - 1; d >= 0; d--) {
        int64_t q = c / b.D[d];
        off += (c - q * b.D[d]) * b.st[d];
        c = q;
    }
    return off;
}

/* One row per group: μ and 1/σ as the forward computes them (two passes), then dx; the row's
 * (μ, 1/σ) into stats when the column sums want them. */
template <int BLOCK>
__global__ void lng_rows_k(const float *dy, const float *x, const float *scale, float *dx,
                           float2 *stats, int64_t R, int64_t N, float eps, lng_bcast b) {
    __shared__ float red[32];
    ucu_rows g = ucu_rows_of<BLOCK>();
    float fn = (float)N;
    for (int64_t r = g.first; r < R; r += g.step) {
        const float *xr = x + r * N, *dr = dy + r * N;
        float *o = dx + r * N;
        float s = 0.0f;
        for (int64_t c = g.lane; c < N; c += g.width) s += xr[c];
        float mean = ucu_grp_sum<BLOCK>(s, red) / fn;
        float ss = 0.0f;
        for (int64_t c = g.lane; c < N; c += g.width) {
            float d = xr[c] - mean;
            ss += d * d;
        }
        float inv = 1.0f / sqrtf(ucu_grp_sum<BLOCK>(ss, red) / fn + eps);
        float sg = 0.0f, sgx = 0.0f;
        for (int64_t c = g.lane; c < N; c += g.width) {
            float gi = dr[c] * scale[lng_scale_at(b, c)];
            sg += gi;
            sgx += gi * ((xr[c] - mean) * inv);
        }
        float mg = ucu_grp_sum<BLOCK>(sg, red) / fn, mgx = ucu_grp_sum<BLOCK>(sgx, red) / fn;
        for (int64_t c = g.lane; c < N; c += g.width) {
            float xh = (xr[c] - mean) * inv;
            o[c] = inv * (dr[c] * scale[lng_scale_at(b, c)] - mg - xh * mgx);
        }
        if (stats && g.lane == 0) stats[r] = make_float2(mean, inv);
    }
}

/* Pass 1 of dscale/dbias: per (chunk p of rb rows, column c), the chunk's sums in double. */
__global__ void lng_cols_k(const float *dy, const float *x, const float2 *stats, double *pg,
                           double *pb, int64_t R, int64_t N, int64_t P, int64_t rb) {
    UCU_FOR(t, P * N) {
        int64_t p = t / N, c = t - p * N, r1 = (p + 1) * rb < R ? (p + 1) * rb : R;
        double ag = 0.0, ab = 0.0;
        for (int64_t r = p * rb; r < r1; r++) {
            float d = dy[r * N + c];
            float2 s = stats[r];
            if (pg) ag += (double)d * ((x[r * N + c] - s.x) * s.y);
            ab += d;
        }
        if (pg) pg[t] = ag;
        if (pb) pb[t] = ab;
    }
}

/* The fold of scale's broadcast: element e's columns are ebase(e) + the offsets of the
 * broadcast dims' coordinates, row-major (increasing columns). */
struct lng_fold {
    int nd;
    int64_t gdim[ULC_RT_MAX_RANK]; /* scale's dims aligned to D (1 where it broadcasts) */
    int64_t bdim[ULC_RT_MAX_RANK]; /* D's dims where scale broadcasts (1 elsewhere) */
    int64_t cs[ULC_RT_MAX_RANK];   /* column strides of D */
    int64_t B;                     /* columns per element */
};

/* Pass 2: per element e of scale, its columns' partials in chunk order. */
__global__ void lng_fold_k(const double *pg, const double *pb, float *dg, float *db, int64_t G,
                           int64_t N, int64_t P, lng_fold f) {
    UCU_FOR(e, G) {
        int64_t base = 0, q = e;
        for (int d = f.nd - 1; d >= 0; d--) {
            int64_t h = q / f.gdim[d];
            base += (q - h * f.gdim[d]) * f.cs[d];
            q = h;
        }
        double ag = 0.0, ab = 0.0;
        for (int64_t bi = 0; bi < f.B; bi++) {
            int64_t c = base, qq = bi;
            for (int d = f.nd - 1; d >= 0; d--) {
                int64_t h = qq / f.bdim[d];
                c += (qq - h * f.bdim[d]) * f.cs[d];
                qq = h;
            }
            for (int64_t p = 0; p < P; p++) {
                if (dg) ag += pg[p * N + c];
                if (db) ab += pb[p * N + c];
            }
        }
        if (dg) dg[e] = (float)ag;
        if (db) db[e] = (float)ab;
    }
}

static ulc_status lng_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[1], *sc = k->in[2];
    float *dg = ucu_out_f32(k, 1), *db = ucu_out_f32(k, 2);
    int axis;
    int64_t R, N;
    ULC_TRY(ulc_sh_layernorm_grad_geom(k, &axis, &R, &N));
    int64_t G = (int64_t)ulc_rt_numel(sc);
    if (R == 0 || N == 0) {
        if (dg) ULC_TRY(ucu_grad_zero(k, dg, G, "LayerNormGrad dscale"));
        if (db) ULC_TRY(ucu_grad_zero(k, db, G, "LayerNormGrad dbias"));
        return ULC_OK;
    }
    lng_bcast b;
    memset(&b, 0, sizeof b);
    b.nd = x->rank - axis;
    b.bcast = G != N;
    for (int d = 0; d < b.nd; d++) b.D[d] = x->dims[axis + d];
    ulc_k_bcast_strides(sc, b.nd, b.D, b.st);
    int sums = dg || db;
    /* scratch: partial sums (2·P·N doubles), then the rows' (μ, 1/σ) */
    int64_t P = 1, rb = R;
    if (sums) {
        int64_t want = (1 << 16) / N + 1; /* chunks for ~64k partial-sum threads */
        P = R < want ? R : want;
        if (P > 1024) P = 1024;
        if (P < 1) P = 1;
        rb = (R + P - 1) / P;
        P = (R + rb - 1) / rb;
    }
    double *pg = NULL, *pb = NULL;
    float2 *stats = NULL;
    if (sums) {
        size_t parts = (size_t)(P * N) * sizeof(double);
        char *s = (char *)ucu_scratch(k, 2 * parts + (size_t)R * sizeof(float2));
        if (!s) return ULC_ERR_NOMEM;
        pg = dg ? (double *)s : NULL;
        pb = db ? (double *)(s + parts) : NULL;
        stats = (float2 *)(s + 2 * parts);
    }
    const float *dy = (const float *)k->in[0]->data, *xd = (const float *)x->data;
    const float *scale = (const float *)sc->data;
    float *dx = (float *)k->out[0]->data;
    float eps = ulc_k_attr_float(k, "epsilon", 1e-5f);
    int block = N > UCU_GRAD_WARP_ROW;
    unsigned nb = ucu_rows_blocks(R, block);
    if (block) {
        auto f = lng_rows_k<1>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, xd, scale, dx, stats, R, N, eps, b);
    } else {
        auto f = lng_rows_k<0>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, xd, scale, dx, stats, R, N, eps, b);
    }
    UCU_TRY_LAUNCH(k, "LayerNormGrad rows");
    if (!sums) return ULC_OK;
    UCU_LAUNCH(lng_cols_k, ucu_blocks(P * N, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), dy, xd, stats, pg, pb,
               R, N, P, rb);
    UCU_TRY_LAUNCH(k, "LayerNormGrad column sums");
    lng_fold f;
    memset(&f, 0, sizeof f);
    f.nd = b.nd;
    f.B = 1;
    int64_t s = 1;
    for (int d = b.nd - 1; d >= 0; d--) {
        int bc = b.bcast && b.st[d] == 0 && b.D[d] > 1;
        f.gdim[d] = bc ? 1 : b.D[d];
        f.bdim[d] = bc ? b.D[d] : 1;
        f.cs[d] = s;
        s *= b.D[d];
        f.B *= f.bdim[d];
    }
    UCU_LAUNCH(lng_fold_k, ucu_blocks(G, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), pg, pb, dg, db, G, N, P, f);
    UCU_TRY_LAUNCH(k, "LayerNormGrad scale sums");
    return ULC_OK;
}

/* ---- GatherGrad ------------------------------------------------------------------------------ */

/* Thread (o, chunk, i): rows [chunk·rc, +rc) of ddata[o, :, i], zeroed, then every dy slice
 * whose index hits them added in index order. */
template <typename IT>
__global__ void gg_k(const float *dy, const IT *idx, float *dd, int64_t O, int64_t A, int64_t I,
                     int64_t P, int64_t nchunk, int64_t rc) {
    UCU_FOR(t, O * nchunk * I) {
        int64_t i = t % I, q = t / I, ch = q % nchunk, o = q / nchunk;
        int64_t a0 = ch * rc, a1 = a0 + rc < A ? a0 + rc : A;
        float *d = dd + o * A * I + i;
        const float *s = dy + o * P * I + i;
        for (int64_t a = a0; a < a1; a++) d[a * I] = 0.0f;
        for (int64_t p = 0; p < P; p++) {
            int64_t a = (int64_t)idx[p];
            if (a < 0) a += A;
            if (a >= a0 && a < a1) d[a * I] += s[p * I];
        }
    }
}

static ulc_status gg_run(ulc_kctx *k) {
    ulc_sh_gather_grad g;
    ucu_hv hv;
    ulc_kctx *hk;
    ULC_TRY(ucu_host_view(k, 2, &hv, &hk)); /* data_shape's values */
    ULC_TRY(ulc_sh_gather_grad_geom(hk, &g));
    if (ulc_rt_numel(k->out[0]) == 0) return ULC_OK;
    const ulc_rt_tensor *ind = k->in[1];
    if (ind->host) { /* a plan constant: refuse what the CPU refuses */
        ulc_rt_tensor h = *ind;
        h.data = (void *)ind->host;
        for (int64_t p = 0; p < g.P; p++) {
            int64_t v = ulc_k_int_at(&h, (uint64_t)p);
            if (v < -g.A || v >= g.A)
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "indices[%lld] = %lld is out of range for axis %d of size %lld",
                                  (long long)p, (long long)v, g.axis, (long long)g.A);
        }
    }
#ifdef ULC_CUDA_EMU
    const int64_t target = 2048; /* the emulator runs every thread: few chunks */
#else
    const int64_t target = (int64_t)1 << 17;
#endif
    int64_t oi = g.O * g.I, nchunk = oi >= target ? 1 : target / oi;
    if (nchunk > g.A) nchunk = g.A;
    if (nchunk < 1) nchunk = 1;
    int64_t rc = (g.A + nchunk - 1) / nchunk;
    nchunk = (g.A + rc - 1) / rc;
    const float *dy = (const float *)k->in[0]->data;
    float *dd = (float *)k->out[0]->data;
    unsigned nb = ucu_blocks(oi * nchunk, UCU_THREADS);
    if (ind->dtype == ULC_DT_I64) {
        auto f = gg_k<int64_t>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, (const int64_t *)ind->data, dd, g.O, g.A,
                   g.I, g.P, nchunk, rc);
    } else {
        auto f = gg_k<int32_t>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, (const int32_t *)ind->data, dd, g.O, g.A,
                   g.I, g.P, nchunk, rc);
    }
    UCU_TRY_LAUNCH(k, "GatherGrad");
    return ULC_OK;
}

/* ---- MaxPoolGrad, AveragePoolGrad ------------------------------------------------------------ */

struct pg_geom {
    int nsp, include_pad;
    int64_t in[ULC_NN_MAX_SP], out[ULC_NN_MAX_SP], k[ULC_NN_MAX_SP], s[ULC_NN_MAX_SP];
    int64_t d[ULC_NN_MAX_SP], pb[ULC_NN_MAX_SP];
    int64_t planes, isz, osz, kprod;
};

/* One past the last tap t < k with b + t·dl <= in - 1 (the CPU's pg_hi). */
__device__ __forceinline__ int64_t pg_hi(int64_t b, int64_t dl, int64_t in, int64_t k) {
    if (b > in - 1) return 0;
    int64_t h = (in - 1 - b) / dl + 1;
    return h < k ? h : k;
}

/* Taps of output o's window (coordinates oc) inside the input, per dim [lo, hi); their count. */
__device__ __forceinline__ int64_t pg_window(const pg_geom &g, const int64_t *oc, int64_t *base,
                                             int64_t *lo, int64_t *hi) {
    int64_t taps = 1;
    for (int d = 0; d < g.nsp; d++) {
        int64_t b = oc[d] * g.s[d] - g.pb[d], dl = g.d[d];
        base[d] = b;
        lo[d] = b < 0 ? (-b + dl - 1) / dl : 0;
        hi[d] = pg_hi(b, dl, g.in[d], g.k[d]);
        taps *= hi[d] > lo[d] ? hi[d] - lo[d] : 0;
    }
    return taps;
}

/* MaxPoolGrad pass 1: each output's window argmax (in-plane offset; -1: no tap inside). */
__global__ void pg_argmax_k(const float *x, int64_t *arg, pg_geom g) {
    UCU_FOR(t, g.planes * g.osz) {
        int64_t plane = t / g.osz, o = t - plane * g.osz;
        int64_t oc[ULC_NN_MAX_SP], base[ULC_NN_MAX_SP], lo[ULC_NN_MAX_SP], hi[ULC_NN_MAX_SP], tc[ULC_NN_MAX_SP];
        for (int d = g.nsp - 1; d >= 0; d--) {
            oc[d] = o % g.out[d];
            o /= g.out[d];
        }
        int64_t best = -1;
        if (pg_window(g, oc, base, lo, hi) > 0) {
            const float *xp = x + plane * g.isz;
            float bv = 0.0f;
            for (int d = 0; d < g.nsp; d++) tc[d] = lo[d];
            for (;;) {
                int64_t off = 0;
                for (int d = 0; d < g.nsp; d++) off = off * g.in[d] + base[d] + tc[d] * g.d[d];
                float v = xp[off];
                if (best < 0 || v > bv) {
                    bv = v;
                    best = off;
                }
                int d = g.nsp - 1;
                while (d >= 0 && ++tc[d] == hi[d]) {
                    tc[d] = lo[d];
                    d--;
                }
                if (d < 0) break;
            }
        }
        arg[t] = best;
    }
}

/* Pass 2 (both ops): dx element i of its plane: the outputs whose windows hold it, row-major. */
template <int AVG> __global__ void pg_dx_k(const float *dy, const int64_t *arg, float *dx, pg_geom g) {
    UCU_FOR(t, g.planes * g.isz) {
        int64_t plane = t / g.isz, i = t - plane * g.isz, q = i;
        int64_t ic[ULC_NN_MAX_SP], olo[ULC_NN_MAX_SP], ohi[ULC_NN_MAX_SP], oc[ULC_NN_MAX_SP];
        for (int d = g.nsp - 1; d >= 0; d--) {
            ic[d] = q % g.in[d];
            q /= g.in[d];
        }
        int any = 1;
        for (int d = 0; d < g.nsp; d++) {
            /* o·s - pb + t·dl = ic for a tap t in [0, k): o in [ceil((ic + pb - (k-1)·dl) / s),
             * floor((ic + pb) / s)] ∩ [0, out) */
            int64_t top = ic[d] + g.pb[d], lowest = top - (g.k[d] - 1) * g.d[d];
            olo[d] = lowest <= 0 ? 0 : (lowest + g.s[d] - 1) / g.s[d];
            ohi[d] = top / g.s[d];
            if (ohi[d] > g.out[d] - 1) ohi[d] = g.out[d] - 1;
            if (olo[d] > ohi[d]) any = 0;
            oc[d] = olo[d];
        }
        float acc = 0.0f;
        const float *dyp = dy + plane * g.osz;
        const int64_t *ap = AVG ? NULL : arg + plane * g.osz;
        while (any) {
            int ok = 1;
            int64_t of = 0;
            for (int d = 0; d < g.nsp; d++) {
                ok &= (ic[d] + g.pb[d] - oc[d] * g.s[d]) % g.d[d] == 0;
                of = of * g.out[d] + oc[d];
            }
            if (ok) {
                if (AVG) {
                    int64_t dv = g.kprod;
                    if (!g.include_pad) {
                        dv = 1;
                        for (int d = 0; d < g.nsp; d++) {
                            int64_t b = oc[d] * g.s[d] - g.pb[d], dl = g.d[d];
                            int64_t lo = b < 0 ? (-b + dl - 1) / dl : 0, hi = pg_hi(b, dl, g.in[d], g.k[d]);
                            dv *= hi - lo;
                        }
                    }
                    acc += dyp[of] / (float)dv;
                } else if (ap[of] == i) {
                    acc += dyp[of];
                }
            }
            int d = g.nsp - 1;
            while (d >= 0 && ++oc[d] > ohi[d]) {
                oc[d] = olo[d];
                d--;
            }
            if (d < 0) break;
        }
        dx[t] = acc;
    }
}

static ulc_status pg_run_common(ulc_kctx *k, int avg) {
    ulc_sh_pool_grad s;
    ucu_hv hv;
    ulc_kctx *hk = k;
    if (avg) ULC_TRY(ucu_host_view(k, 1, &hv, &hk)); /* x_shape's values */
    ULC_TRY(ulc_sh_pool_grad_geom(hk, avg, &s));
    if (s.planes == 0 || s.isz == 0) return ULC_OK;
    pg_geom g;
    memset(&g, 0, sizeof g);
    g.nsp = s.w.nsp;
    g.include_pad = s.include_pad;
    for (int d = 0; d < g.nsp; d++) {
        g.in[d] = s.w.in[d];
        g.out[d] = s.w.out[d];
        g.k[d] = s.w.k[d];
        g.s[d] = s.w.s[d];
        g.d[d] = s.w.d[d];
        g.pb[d] = s.w.pb[d];
    }
    g.planes = s.planes;
    g.isz = s.isz;
    g.osz = s.osz;
    g.kprod = s.kprod;
    float *dx = (float *)k->out[0]->data;
    if (g.osz == 0) return ucu_grad_zero(k, dx, g.planes * g.isz, "pooling gradient");
    const float *dy = (const float *)k->in[0]->data;
    int64_t *arg = NULL;
    if (!avg) {
        arg = (int64_t *)ucu_scratch(k, (size_t)(g.planes * g.osz) * sizeof(int64_t));
        if (!arg) return ULC_ERR_NOMEM;
        UCU_LAUNCH(pg_argmax_k, ucu_blocks(g.planes * g.osz, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k),
                   (const float *)k->in[1]->data, arg, g);
        UCU_TRY_LAUNCH(k, "MaxPoolGrad argmax");
    }
    unsigned nb = ucu_blocks(g.planes * g.isz, UCU_THREADS);
    if (avg) {
        auto f = pg_dx_k<1>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, (const int64_t *)arg, dx, g);
    } else {
        auto f = pg_dx_k<0>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), dy, (const int64_t *)arg, dx, g);
    }
    UCU_TRY_LAUNCH(k, "pooling gradient");
    return ULC_OK;
}

static ulc_status maxpool_grad_run(ulc_kctx *k) { return pg_run_common(k, 0); }
static ulc_status avgpool_grad_run(ulc_kctx *k) { return pg_run_common(k, 1); }

/* ---- registration ---------------------------------------------------------------------------- */

/* blocked_inputs, flags, prepare, run, release, can_fuse */
static const ulc_kernel k_relu_grad = {0, 0, NULL, relu_grad_run, NULL, NULL};
static const ulc_kernel k_gelu_grad = {0, 0, NULL, gelu_grad_run, NULL, NULL};
static const ulc_kernel k_softmax_grad = {0, 0, NULL, smg_run, NULL, NULL};
static const ulc_kernel k_layernorm_grad = {0, 0, NULL, lng_run, NULL, NULL};
static const ulc_kernel k_gather_grad = {0, 0, NULL, gg_run, NULL, NULL};
static const ulc_kernel k_maxpool_grad = {0, 0, NULL, maxpool_grad_run, NULL, NULL};
static const ulc_kernel k_avgpool_grad = {0, 0, NULL, avgpool_grad_run, NULL, NULL};

void ucu_reg_grad(ucu_table t) {
    t[ULC_OP_ReluGrad] = &k_relu_grad;
    t[ULC_OP_GeluGrad] = &k_gelu_grad;
    t[ULC_OP_SoftmaxGrad] = &k_softmax_grad;
    t[ULC_OP_LogSoftmaxGrad] = &k_softmax_grad;
    t[ULC_OP_LayerNormGrad] = &k_layernorm_grad;
    t[ULC_OP_GatherGrad] = &k_gather_grad;
    t[ULC_OP_MaxPoolGrad] = &k_maxpool_grad;
    t[ULC_OP_AveragePoolGrad] = &k_avgpool_grad;
    ucu_reg_grad_conv(t);
    ucu_reg_grad_loss(t);
}

UCU_END
