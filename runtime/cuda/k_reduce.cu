/*
 * k_reduce.cu — the CUDA backend's reductions and row normalisations: ReduceSum, ReduceMean,
 * ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum,
 * ReduceLogSumExp, ArgMax / ArgMin, Softmax / LogSoftmax and LayerNormalization. The semantics
 * are the CPU kernels' (runtime/cpu/k_reduce.c, k_reduce_norm.c: read their headers), decoded by
 * the same op-level helpers (runtime/shape/params.h).
 *
 * Reductions. Adjacent axes of the same role (kept / reduced) merge and size-1 axes drop out, as
 * on the CPU; then an output element's slice is addressed through the kept groups (its base
 * offset) and the reduced groups (each element's offset), so one pair of kernels covers every
 * axes set:
 *   LANES  the last group is reduced (ReduceMean over the hidden size, "all axes", and patterns
 *          such as K R K R): a worker of W threads (a warp, or the block for slices of >= 2048
 *          elements) walks one output's slice, the lanes reading consecutive elements;
 *   COLS   the last group is kept (spatial or axis-0 reductions, R K R K): a block is tx columns
 *          (consecutive outputs, consecutive in memory) × ty slices of the reduced range, merged
 *          through shared memory by a tree.
 * When there are few outputs for a long slice, the reduced range is split over gridDim.y: each
 * split writes its partial accumulator into scratch and a combine kernel merges them in order.
 * Float data accumulates in double (as the CPU does), integers exactly in 64-bit wrapping
 * arithmetic (L2, LogSum and LogSumExp in double). ReduceLogSumExp takes two passes, as on the
 * CPU: m = the max of the finite values (0 when none), then m + log Σ exp(x - m).
 *
 * ArgMax / ArgMin: the same LANES / COLS split over the [O, A, I] view; a (value, index) pair is
 * merged with a total order (NaN is the extreme; equal values keep the first index, or the last
 * with select_last_index), so any merge order gives the CPU's sequential answer.
 *
 * Softmax / LogSoftmax over [O, A, I] (opset < 13: the trailing block from `axis`): with I == 1 a
 * warp (rows of <= 1024) or a block per row; with I > 1 the COLS tiling. One pass keeps a running
 * (max, Σ exp(x - max)) per thread ("online softmax"), merged across threads; the second pass
 * writes exp(x - m) / s or x - m - log s. Rows containing NaN or +inf give NaN, all -inf rows give
 * NaN, as on the CPU.
 *
 * LayerNormalization: a warp or a block per row of N = prod(dims[axis:]); statistics as the CPU's
 * AVX2 row: a rough mean m0, then Σ (x - m0) and Σ (x - m0)² (so |μ| >> σ stays accurate), μ and
 * 1/sqrt(σ² + ε) in double; Y = ((x - μhi) - μlo)·s·Scale + B. Scale and B that need
 * broadcasting to the normalised dims are expanded into scratch first. Mean and InvStdDev are
 * written in stash_type (f32 or f64).
 *
 * Dtypes: f32 and f64 everywhere; reductions also i32, i64, u8 and bool (Max / Min); ArgMax /
 * ArgMin also i32, i64 and u8. Others are refused in prepare.
 */
#include "runtime/cuda/cu.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

extern "C" {
#include "runtime/shape/params.h"
}

UCU_BEGIN

namespace {

typedef unsigned long long u64a; /* integer accumulators (shuffles take unsigned long long) */

/* ---- what a reduction does ---------------------------------------------------------------- */

enum red_fin { /* the op's finalisation */
               RF_SUM,
               RF_MEAN,
               RF_PROD,
               RF_MAX,
               RF_MIN,
               RF_L1,
               RF_L2,
               RF_SUMSQ,
               RF_LOGSUM,
               RF_LSE
};

enum red_acc { /* what each element does to the accumulator */
               RA_SUM,
               RA_L1,
               RA_SQ,
               RA_PROD,
               RA_MAX,
               RA_MIN,
               RA_FMAX,  /* the max of the finite values (LogSumExp's first pass) */
               RA_SUMEXP /* Σ exp(x - m) (its second pass) */
};

enum red_stage { /* what a kernel writes per output */
                 RS_FINAL, /* the op's value, into y */
                 RS_PART,  /* the accumulator, into part[o·S + split] */
                 RS_SHIFT  /* LogSumExp's shift (the finite max, 0 when none), into mout */
};

static red_fin red_fin_of(ulc_op op) {
    switch (op) {
    case ULC_OP_ReduceMean: return RF_MEAN;
    case ULC_OP_ReduceProd: return RF_PROD;
    case ULC_OP_ReduceMax: return RF_MAX;
    case ULC_OP_ReduceMin: return RF_MIN;
    case ULC_OP_ReduceL1: return RF_L1;
    case ULC_OP_ReduceL2: return RF_L2;
    case ULC_OP_ReduceSumSquare: return RF_SUMSQ;
    case ULC_OP_ReduceLogSum: return RF_LOGSUM;
    case ULC_OP_ReduceLogSumExp: return RF_LSE;
    default: return RF_SUM;
    }
}

static red_acc red_acc_of(red_fin f) {
    switch (f) {
    case RF_PROD: return RA_PROD;
    case RF_MAX: return RA_MAX;
    case RF_MIN: return RA_MIN;
    case RF_L1: return RA_L1;
    case RF_L2:
    case RF_SUMSQ: return RA_SQ;
    case RF_LSE: return RA_FMAX;
    default: return RA_SUM;
    }
}

/* ---- device helpers ----------------------------------------------------------------------- */

/* Warp shuffles of the types the kernels move (CUDA has no 1-byte or 64-bit `long` overloads
 * everywhere: route them through int and long long). */
__device__ __forceinline__ float shx(float v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ __forceinline__ double shx(double v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ __forceinline__ int shx(int v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ __forceinline__ long long shx(long long v, int o) {
    return __shfl_xor_sync(0xffffffffu, v, o);
}
__device__ __forceinline__ u64a shx(u64a v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ __forceinline__ long shx(long v, int o) {
    return (long)__shfl_xor_sync(0xffffffffu, (long long)v, o);
}
__device__ __forceinline__ unsigned char shx(unsigned char v, int o) {
    return (unsigned char)__shfl_xor_sync(0xffffffffu, (int)v, o);
}

/* v merged over aligned groups of W lanes (W a power of two <= 32; every lane of the warp calls
 * it), returned to every lane of the group. */
template <class V, class M> __device__ __forceinline__ V warp_all(V v, const M &merge, int W) {
    for (int o = W >> 1; o > 0; o >>= 1) v = merge(v, shx(v, o));
    return v;
}

/* v merged over a worker of W threads: aligned lanes of a warp (W <= 32), or the whole block
 * (W = blockDim.x; every thread calls it; sm: shared, 32 entries). The block's warps are merged
 * in warp order by every thread, so each gets the same value. */
template <class V, class M>
__device__ __forceinline__ V worker_all(V v, const M &merge, int W, V *sm) {
    v = warp_all(v, merge, W < 32 ? W : 32);
    if (W <= 32) return v;
    int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5, nw = (int)(blockDim.x >> 5);
    __syncthreads(); /* sm may still be read by a previous call */
    if (lane == 0) sm[w] = v;
    __syncthreads();
    V r = sm[0];
    for (int i = 1; i < nw; i++) r = merge(r, sm[i]);
    return r;
}

/* Threads per worker for rows of n elements: the block from `block_at` elements, else the
 * smallest power of two >= n up to a warp. */
static inline int lanes_for(int64_t n, int64_t block_at) {
    if (n >= block_at) return UCU_THREADS;
    int w = 1;
    while (w < 32 && w < n) w <<= 1;
    return w;
}

template <class T> __device__ __forceinline__ bool is_nan_(T v) {
    if constexpr (std::is_floating_point<T>::value) return v != v;
    else {
        (void)v;
        return false;
    }
}

/* A double stored into an element of type T the way ulc_k_store_f64 does: floats round; integers
 * take the value truncated and saturated to int64 (NaN: 0), then wrap to the narrower type. */
template <class T> __device__ __forceinline__ T from_f64(double v) {
    if constexpr (std::is_floating_point<T>::value) return (T)v;
    else {
        long long i;
        if (v != v) i = 0;
        else if (v >= 9.2233720368547758e18) i = LLONG_MAX;
        else if (v <= -9.2233720368547758e18) i = LLONG_MIN;
        else i = (long long)v;
        return (T)i;
    }
}

/* ---- reductions: geometry ------------------------------------------------------------------ */

/* An output element's slice: base = Σ digit(o) · kstr over the kept groups (row-major digits of
 * o, or of o / C in COLS mode), element r of the slice at base + Σ digit(r) · rstr over the
 * reduced groups. */
struct red_geom {
    int nk, nr;
    int64_t kdim[ULC_RT_MAX_RANK], kstr[ULC_RT_MAX_RANK];
    int64_t rdim[ULC_RT_MAX_RANK], rstr[ULC_RT_MAX_RANK];
    int64_t n_out; /* LANES: outputs; COLS: outputs / C */
    int64_t C;     /* COLS: the last kept group's size (stride 1): consecutive outputs */
    int64_t count; /* reduced elements per output */
    int64_t chunk; /* reduced elements per split */
    int S;         /* splits of the reduced range (gridDim.y) */
};

__device__ __forceinline__ int64_t red_kbase(const red_geom &g, int64_t o) {
    int64_t off = 0;
    for (int i = g.nk - 1; i >= 0; i--) {
        off += (o % g.kdim[i]) * g.kstr[i];
        o /= g.kdim[i];
    }
    return off;
}

__device__ __forceinline__ int64_t red_roff(const red_geom &g, int64_t r) {
    if (g.nr <= 1) return g.nr ? r * g.rstr[0] : 0;
    int64_t off = 0;
    for (int i = g.nr - 1; i >= 0; i--) {
        off += (r % g.rdim[i]) * g.rstr[i];
        r /= g.rdim[i];
    }
    return off;
}

/* The per-op constants a kernel needs. */
template <class A> struct red_ops {
    int acc;       /* red_acc */
    int fin;       /* red_fin */
    A init;        /* the accumulator's start (the value over an empty slice) */
};

/* The accumulator arithmetic: A = double (float data, and integers' L2 / LogSum / LogSumExp) or
 * u64a (integers: two's-complement wrap, Max / Min signed). */
__device__ __forceinline__ double acc_step(int acc, double a, double x, double m) {
    switch (acc) {
    case RA_SUM: return a + x;
    case RA_L1: return a + fabs(x);
    case RA_SQ: return a + x * x;
    case RA_PROD: return a * x;
    case RA_MAX: return (x > a || x != x) ? x : a;
    case RA_MIN: return (x < a || x != x) ? x : a;
    case RA_FMAX: return (x > a && x != INFINITY) ? x : a;
    default: return a + exp(x - m);
    }
}

__device__ __forceinline__ double acc_merge(int acc, double a, double b) {
    switch (acc) {
    case RA_PROD: return a * b;
    case RA_MAX: return (b > a || b != b) ? b : a;
    case RA_MIN: return (b < a || b != b) ? b : a;
    case RA_FMAX: return b > a ? b : a;
    default: return a + b;
    }
}

__device__ __forceinline__ u64a acc_step(int acc, u64a a, u64a x, double m) {
    (void)m;
    switch (acc) {
    case RA_SUM: return a + x;
    case RA_L1: return a + ((long long)x < 0 ? 0 - x : x);
    case RA_SQ: return a + x * x;
    case RA_PROD: return a * x;
    case RA_MAX: return (long long)x > (long long)a ? x : a;
    case RA_MIN: return (long long)x < (long long)a ? x : a;
    default: return a;
    }
}

__device__ __forceinline__ u64a acc_merge(int acc, u64a a, u64a b) {
    switch (acc) {
    case RA_PROD: return a * b;
    case RA_MAX: return (long long)b > (long long)a ? b : a;
    case RA_MIN: return (long long)b < (long long)a ? b : a;
    default: return a + b;
    }
}

template <class A, class T> __device__ __forceinline__ A acc_load(T v) {
    if constexpr (std::is_same<A, double>::value) return (double)v;
    else return (u64a)(long long)v;
}

template <class A> struct acc_merger {
    int acc;
    __device__ __forceinline__ A operator()(A a, A b) const { return acc_merge(acc, a, b); }
};

__device__ __forceinline__ double lse_shift(double fmax) { return fmax == -INFINITY ? 0.0 : fmax; }

/* The op's value from its accumulator over `count` elements (m: LogSumExp's shift). */
template <class T>
__device__ __forceinline__ T red_final(int fin, double a, int64_t count, double m) {
    double r = a;
    switch (fin) {
    case RF_MEAN: r = a / (double)count; break; /* 0/0 = NaN over an empty slice */
    case RF_L2: r = sqrt(a); break;
    case RF_LOGSUM: r = log(a); break;
    case RF_LSE: r = m + log(a); break;
    default: break;
    }
    return from_f64<T>(r);
}

template <class T>
__device__ __forceinline__ T red_final(int fin, u64a a, int64_t count, double m) {
    (void)m;
    if (fin == RF_MEAN) a = count == 0 ? 0 : (u64a)((long long)a / count);
    return (T)a;
}

__device__ __forceinline__ double shift_of(double a) { return lse_shift(a); }
__device__ __forceinline__ double shift_of(u64a a) { return (double)(long long)a; } /* unused */

/* Writes what `stage` asks for output o from its accumulator a (of split s). */
template <class T, class A>
__device__ __forceinline__ void red_emit(int stage, const red_ops<A> &op, const red_geom &g, A a,
                                         int64_t o, int s, T *y, A *part, const double *mshift,
                                         double *mout) {
    if (stage == RS_PART) part[o * g.S + s] = a;
    else if (stage == RS_SHIFT) mout[o] = shift_of(a);
    else y[o] = red_final<T>(op.fin, a, g.count, mshift ? mshift[o] : 0.0);
}

/* ---- reductions: kernels ------------------------------------------------------------------- */

/* LANES: workers of W threads (32, or the block) over the outputs (grid-stride), split s =
 * blockIdx.y of the reduced range. Every warp of a block runs the same number of iterations, so
 * the block-wide merge is reached by all threads. */
template <class T, class A>
__global__ void red_lanes(const T *__restrict__ x, T *y, A *part, const double *mshift,
                          double *mout, red_geom g, red_ops<A> op, int W, int stage) {
    __shared__ A sm[32];
    int lane = (int)threadIdx.x % W, wid = (int)threadIdx.x / W, wpb = (int)blockDim.x / W;
    int s = (int)blockIdx.y;
    int64_t r0 = (int64_t)s * g.chunk, r1 = r0 + g.chunk < g.count ? r0 + g.chunk : g.count;
    acc_merger<A> merge = {op.acc};
    for (int64_t ob = (int64_t)blockIdx.x * wpb; ob < g.n_out; ob += (int64_t)gridDim.x * wpb) {
        int64_t o = ob + wid;
        A a = op.init;
        if (o < g.n_out) {
            double m = op.acc == RA_SUMEXP ? mshift[o] : 0.0;
            int64_t base = red_kbase(g, o);
            if (g.nr == 1 && g.rstr[0] == 1) { /* a contiguous run: 4 loads in flight */
                const T *p = x + base;
                int64_t r = r0 + lane;
                for (; r + 3 * W < r1; r += 4 * W) {
                    T v0 = p[r], v1 = p[r + W], v2 = p[r + 2 * W], v3 = p[r + 3 * W];
                    a = acc_step(op.acc, a, acc_load<A>(v0), m);
                    a = acc_step(op.acc, a, acc_load<A>(v1), m);
                    a = acc_step(op.acc, a, acc_load<A>(v2), m);
                    a = acc_step(op.acc, a, acc_load<A>(v3), m);
                }
                for (; r < r1; r += W) a = acc_step(op.acc, a, acc_load<A>(p[r]), m);
            } else {
                for (int64_t r = r0 + lane; r < r1; r += W)
                    a = acc_step(op.acc, a, acc_load<A>(x[base + red_roff(g, r)]), m);
            }
        }
        a = worker_all(a, merge, W, sm);
        if (o < g.n_out && lane == 0) red_emit(stage, op, g, a, o, s, y, part, mshift, mout);
    }
}

/* COLS: blocks of (tx, ty) threads; a tile is tx consecutive outputs o = oo·C + c (consecutive
 * in memory), its ty rows of threads walk interleaved parts of split s of the reduced range,
 * then a tree over ty merges them. */
template <class T, class A>
__global__ void red_cols(const T *__restrict__ x, T *y, A *part, const double *mshift, double *mout,
                         red_geom g, red_ops<A> op, int stage) {
    __shared__ A sm[UCU_THREADS];
    int tx = (int)blockDim.x, ty = (int)blockDim.y, cx = (int)threadIdx.x, cy = (int)threadIdx.y;
    int t = cy * tx + cx;
    int s = (int)blockIdx.y;
    int64_t r0 = (int64_t)s * g.chunk, r1 = r0 + g.chunk < g.count ? r0 + g.chunk : g.count;
    int64_t per = (g.C + tx - 1) / tx, tiles = g.n_out * per;
    acc_merger<A> merge = {op.acc};
    for (int64_t it = blockIdx.x; it < tiles; it += gridDim.x) {
        int64_t oo = it / per, c = (it % per) * tx + cx, o = oo * g.C + c;
        A a = op.init;
        if (c < g.C) {
            double m = op.acc == RA_SUMEXP ? mshift[o] : 0.0;
            int64_t base = red_kbase(g, oo) + c;
            int64_t r = r0 + cy;
            if (g.nr == 1) { /* one reduced group: 4 loads in flight */
                int64_t rs = g.rstr[0], step = (int64_t)ty * rs;
                const T *p = x + base;
                for (; r + 3 * ty < r1; r += 4 * ty) {
                    const T *q = p + r * rs;
                    T v0 = q[0], v1 = q[step], v2 = q[2 * step], v3 = q[3 * step];
                    a = acc_step(op.acc, a, acc_load<A>(v0), m);
                    a = acc_step(op.acc, a, acc_load<A>(v1), m);
                    a = acc_step(op.acc, a, acc_load<A>(v2), m);
                    a = acc_step(op.acc, a, acc_load<A>(v3), m);
                }
            }
            for (; r < r1; r += ty) a = acc_step(op.acc, a, acc_load<A>(x[base + red_roff(g, r)]), m);
        }
        __syncthreads(); /* the previous tile's reads of sm are done */
        sm[t] = a;
        __syncthreads();
        for (int h = ty >> 1; h > 0; h >>= 1) {
            if (cy < h) sm[t] = merge(sm[t], sm[t + h * tx]);
            __syncthreads();
        }
        if (cy == 0 && c < g.C) red_emit(stage, op, g, sm[cx], o, s, y, part, mshift, mout);
    }
}

/* Merges the S partial accumulators of each output in split order, then writes `stage`. */
template <class T, class A>
__global__ void red_combine(const A *part, T *y, const double *mshift, double *mout, red_geom g,
                            red_ops<A> op, int64_t n, int stage) {
    UCU_FOR(o, n) {
        A a = part[o * g.S];
        for (int s = 1; s < g.S; s++) a = acc_merge(op.acc, a, part[o * g.S + s]);
        red_emit(stage, op, g, a, o, 0, y, (A *)nullptr, mshift, mout);
    }
}

/* ---- reductions: plan ---------------------------------------------------------------------- */

enum { MODE_LANES, MODE_COLS };

struct red_state {
    int noop;
    int dtype;
    int use_u64;  /* integer data with an exact (64-bit) accumulator */
    int fin;      /* red_fin */
    int mode;
    int W;        /* LANES: threads per worker */
    int tx, ty;   /* COLS: block shape */
    unsigned gx;  /* grid.x */
    int64_t n_out;
    red_geom g;
    double init_d;
    u64a init_u;
    size_t part_off, m_off, scratch; /* scratch layout: partials, then LogSumExp's shifts */
};

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* grid.x for `blocks` blocks of a grid-stride loop */
static unsigned grid_x(int64_t blocks) {
    return (unsigned)(blocks < UCU_MAX_BLOCKS ? blocks : UCU_MAX_BLOCKS);
}

/* LANES: grid.x for `rows` workers of W threads, UCU_THREADS / W of them per block. */
static unsigned lanes_grid(int64_t rows, int W) { return grid_x(cdiv(rows, UCU_THREADS / W)); }

/* COLS: the (tx, ty) block for slabs of C columns (tx the power of two >= C up to a warp);
 * returns the tiles over `outer` slabs. */
static int64_t cols_tiles(int64_t outer, int64_t C, int *tx, int *ty) {
    int t = 1;
    while (t < 32 && t < C) t <<= 1;
    *tx = t;
    *ty = UCU_THREADS / t;
    return outer * cdiv(C, t);
}

static int red_dtype_ok(int dt, ulc_op op) {
    switch (dt) {
    case ULC_DT_F32:
    case ULC_DT_F64:
    case ULC_DT_I32:
    case ULC_DT_I64:
    case ULC_DT_U8: return 1;
    case ULC_DT_BOOL: return op == ULC_OP_ReduceMax || op == ULC_OP_ReduceMin;
    default: return 0;
    }
}

/* The reduced axes, reading a constant axes input from its host bytes. */
static ulc_status red_axes(ulc_kctx *k, int rank, unsigned *mask, int *noop) {
    int input_form = k->opset >= (k->node->op == ULC_OP_ReduceSum ? 13 : 18);
    const ulc_rt_tensor *a = k->n_in > 1 ? k->in[1] : NULL;
    if (!input_form || !a || ulc_rt_numel(a) == 0) return ulc_sh_reduce_axes(k, rank, mask, noop);
    if (!a->host)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "on backend cuda, input 1 (axes) must be a constant");
    ulc_rt_tensor shadow = *a;
    shadow.data = (void *)a->host;
    ulc_rt_tensor *ins[8];
    int n = k->n_in < 8 ? k->n_in : 8;
    for (int i = 0; i < n; i++) ins[i] = k->in[i];
    ins[1] = &shadow;
    ulc_kctx k2 = *k;
    k2.in = ins;
    k2.n_in = n;
    return ulc_sh_reduce_axes(&k2, rank, mask, noop);
}

static u64a int_min_of(int dt) {
    switch (dt) {
    case ULC_DT_I32: return (u64a)(long long)INT32_MIN;
    case ULC_DT_I64: return (u64a)LLONG_MIN;
    default: return 0; /* u8, bool */
    }
}

static u64a int_max_of(int dt) {
    switch (dt) {
    case ULC_DT_I32: return INT32_MAX;
    case ULC_DT_I64: return LLONG_MAX;
    case ULC_DT_U8: return UINT8_MAX;
    default: return 1; /* bool */
    }
}

static ulc_status red_plan(ulc_kctx *k, red_state *st) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_op op = k->node->op;
    memset(st, 0, sizeof *st);
    st->dtype = x->dtype;
    if (!red_dtype_ok(x->dtype, op))
        return ucu_refuse_dtype(k, x->dtype);
    unsigned mask;
    ULC_TRY(red_axes(k, x->rank, &mask, &st->noop));
    st->n_out = (int64_t)ulc_rt_numel(k->out[0]);
    if (st->noop || st->n_out == 0) return ULC_OK;

    red_fin fin = red_fin_of(op);
    int is_float = ulc_k_is_float(x->dtype);
    st->fin = fin;
    st->use_u64 = !is_float && fin != RF_L2 && fin != RF_LOGSUM && fin != RF_LSE;
    red_acc acc = red_acc_of(fin);
    switch (acc) {
    case RA_PROD: st->init_d = 1.0; st->init_u = 1; break;
    case RA_MAX:
    case RA_FMAX: st->init_d = -INFINITY; st->init_u = int_min_of(x->dtype); break;
    case RA_MIN: st->init_d = INFINITY; st->init_u = int_max_of(x->dtype); break;
    default: st->init_d = 0.0; st->init_u = 0; break;
    }

    /* merged groups (as red_merge on the CPU) */
    red_geom *g = &st->g;
    int red[ULC_RT_MAX_RANK];
    int64_t dims[ULC_RT_MAX_RANK], str[ULC_RT_MAX_RANK], count;
    int n = ulc_sh_reduce_groups(x, mask, dims, str, red, &count);
    if (ulc_rt_numel(x) == 0) { /* every output reduces an empty slice */
        count = 0;
        n = 0;
    }
    g->count = count;
    st->mode = n > 0 && !red[n - 1] ? MODE_COLS : MODE_LANES;
    int last_kept = st->mode == MODE_COLS ? n - 1 : -1;
    for (int i = 0; i < n; i++) {
        if (red[i]) {
            g->rdim[g->nr] = dims[i];
            g->rstr[g->nr++] = str[i];
        } else if (i != last_kept) {
            g->kdim[g->nk] = dims[i];
            g->kstr[g->nk++] = str[i];
        }
    }

    /* launch shape and splits: aim for >= 64k threads in flight, splits of >= 8 elements per
     * thread */
    const int64_t want = 65536;
    int64_t S = 1;
    if (st->mode == MODE_LANES) {
        st->W = lanes_for(count, 2048);
        g->n_out = st->n_out;
        int64_t threads = st->n_out * st->W;
        if (count > 8 * st->W && threads < want) {
            S = cdiv(count, 8 * st->W);
            int64_t cap = cdiv(want, threads);
            if (S > cap) S = cap;
        }
        st->gx = lanes_grid(st->n_out, st->W);
    } else {
        g->C = dims[n - 1];
        g->n_out = st->n_out / g->C;
        int64_t tiles = cols_tiles(g->n_out, g->C, &st->tx, &st->ty);
        if (count > 8 * st->ty && tiles * UCU_THREADS < want) {
            S = cdiv(count, 8 * st->ty);
            int64_t cap = cdiv(want, tiles * UCU_THREADS);
            if (S > cap) S = cap;
        }
        st->gx = grid_x(tiles);
    }
    if (S > 65535) S = 65535;
    g->chunk = S > 1 ? cdiv(count, S) : count;
    if (S > 1) S = cdiv(count, g->chunk);
    g->S = (int)S;

    size_t asz = st->use_u64 ? sizeof(u64a) : sizeof(double);
    size_t part = S > 1 ? (size_t)st->n_out * (size_t)S * asz : 0;
    st->part_off = 0;
    st->m_off = (part + 255) & ~(size_t)255;
    st->scratch = st->m_off + (fin == RF_LSE ? (size_t)st->n_out * sizeof(double) : 0);
    return ULC_OK;
}

/* One pass of the reduction: the main kernel, then the combine when the range is split. */
template <class T, class A>
static ulc_status red_pass(ulc_kctx *k, const red_state *st, red_ops<A> op, int stage, A *part,
                           const double *mshift, double *mout) {
    const T *x = (const T *)k->in[0]->data;
    T *y = (T *)k->out[0]->data;
    const red_geom &g = st->g;
    int kstage = g.S > 1 ? (int)RS_PART : stage;
    if (st->mode == MODE_LANES) {
        auto f = red_lanes<T, A>;
        UCU_LAUNCH(f, dim3(st->gx, (unsigned)g.S), UCU_THREADS, 0, ucu_stream(k), x, y, part,
                   mshift, mout, g, op, st->W, kstage);
    } else {
        auto f = red_cols<T, A>;
        UCU_LAUNCH(f, dim3(st->gx, (unsigned)g.S), dim3((unsigned)st->tx, (unsigned)st->ty), 0,
                   ucu_stream(k), x, y, part, mshift, mout, g, op, kstage);
    }
    UCU_TRY_LAUNCH(k, "reduction");
    if (g.S > 1) {
        auto f = red_combine<T, A>;
        UCU_LAUNCH(f, ucu_blocks(st->n_out, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), part, y,
                   mshift, mout, g, op, st->n_out, stage);
        UCU_TRY_LAUNCH(k, "reduction (combine)");
    }
    return ULC_OK;
}

template <class T, class A> static ulc_status red_launch(ulc_kctx *k, const red_state *st) {
    char *scr = NULL;
    if (st->scratch) {
        scr = (char *)ucu_scratch(k, st->scratch);
        if (!scr) return ULC_ERR_NOMEM;
    }
    A *part = scr ? (A *)(scr + st->part_off) : NULL;
    double *mbuf = st->fin == RF_LSE ? (double *)(scr + st->m_off) : NULL;
    red_ops<A> op;
    op.fin = st->fin;
    if constexpr (std::is_same<A, double>::value) op.init = st->init_d;
    else op.init = st->init_u;
    if constexpr (std::is_same<A, double>::value) {
        if (st->fin == RF_LSE) { /* the finite max, then Σ exp(x - m) */
            op.acc = RA_FMAX;
            op.init = -INFINITY;
            ULC_TRY((red_pass<T, A>(k, st, op, RS_SHIFT, part, NULL, mbuf)));
            op.acc = RA_SUMEXP;
            op.init = 0.0;
            return red_pass<T, A>(k, st, op, RS_FINAL, part, mbuf, NULL);
        }
    }
    op.acc = red_acc_of((red_fin)st->fin);
    return red_pass<T, A>(k, st, op, RS_FINAL, part, NULL, NULL);
}

static ulc_status red_prepare(ulc_kctx *k) {
    return ucu_prepare_state(k, red_plan, "reduction state");
}

static ulc_status red_run(ulc_kctx *k) {
    red_state local;
    const red_state *st;
    ULC_TRY(ucu_run_state(k, red_plan, &local, &st));
    if (st->noop) {
        const ulc_rt_tensor *x = k->in[0];
        return ucu_copy(k, k->out[0]->data, x->data,
                        (size_t)ulc_rt_numel(x) * ulc_k_dtype_size(x->dtype));
    }
    if (st->n_out == 0) return ULC_OK;
    switch (st->dtype) {
    case ULC_DT_F32: return red_launch<float, double>(k, st);
    case ULC_DT_F64: return red_launch<double, double>(k, st);
    case ULC_DT_I32:
        return st->use_u64 ? red_launch<int32_t, u64a>(k, st) : red_launch<int32_t, double>(k, st);
    case ULC_DT_I64:
        return st->use_u64 ? red_launch<int64_t, u64a>(k, st) : red_launch<int64_t, double>(k, st);
    case ULC_DT_U8:
    case ULC_DT_BOOL:
        return st->use_u64 ? red_launch<uint8_t, u64a>(k, st) : red_launch<uint8_t, double>(k, st);
    default:
        return ucu_refuse_dtype(k, st->dtype);
    }
}

/* ---- ArgMax / ArgMin ------------------------------------------------------------------------ */

template <class T> struct arg_pair {
    T v;
    long long i; /* -1: no element seen */
};

template <class T> __device__ __forceinline__ arg_pair<T> shx(arg_pair<T> p, int o) {
    arg_pair<T> r;
    r.v = shx(p.v, o);
    r.i = shx(p.i, o);
    return r;
}

/* The total order that makes any merge order give the sequential scan's answer: NaN is the
 * extreme; equal values (or two NaN) keep the first index, or the last with select_last_index. */
template <class T> struct arg_merger {
    int is_max, last;
    __device__ __forceinline__ bool better(arg_pair<T> b, arg_pair<T> a) const {
        if (a.i < 0) return b.i >= 0;
        if (b.i < 0) return false;
        bool na = is_nan_(a.v), nb = is_nan_(b.v);
        if (na || nb) return na && nb ? (last ? b.i > a.i : b.i < a.i) : nb;
        if (b.v == a.v) return last ? b.i > a.i : b.i < a.i;
        return is_max ? b.v > a.v : b.v < a.v;
    }
    __device__ __forceinline__ arg_pair<T> operator()(arg_pair<T> a, arg_pair<T> b) const {
        return better(b, a) ? b : a;
    }
};

/* [O, A, I] with I == 1: workers of W threads per row. */
template <class T>
__global__ void arg_lanes(const T *__restrict__ x, int64_t *y, int64_t O, int64_t A,
                          arg_merger<T> mg, int W) {
    __shared__ arg_pair<T> sm[32];
    int lane = (int)threadIdx.x % W, wid = (int)threadIdx.x / W, wpb = (int)blockDim.x / W;
    for (int64_t ob = (int64_t)blockIdx.x * wpb; ob < O; ob += (int64_t)gridDim.x * wpb) {
        int64_t o = ob + wid;
        arg_pair<T> b;
        b.v = T();
        b.i = -1;
        if (o < O) {
            const T *p = x + o * A;
            for (int64_t a = lane; a < A; a += W) {
                arg_pair<T> c;
                c.v = p[a];
                c.i = a;
                b = mg(b, c);
            }
        }
        b = worker_all(b, mg, W, sm);
        if (o < O && lane == 0) y[o] = b.i;
    }
}

/* [O, A, I] with I > 1: (tx, ty) tiles as red_cols. */
template <class T>
__global__ void arg_cols(const T *__restrict__ x, int64_t *y, int64_t O, int64_t A, int64_t I,
                         arg_merger<T> mg) {
    __shared__ T sv[UCU_THREADS];
    __shared__ long long si[UCU_THREADS];
    int tx = (int)blockDim.x, ty = (int)blockDim.y, cx = (int)threadIdx.x, cy = (int)threadIdx.y;
    int t = cy * tx + cx;
    int64_t per = (I + tx - 1) / tx, tiles = O * per;
    for (int64_t it = blockIdx.x; it < tiles; it += gridDim.x) {
        int64_t o = it / per, c = (it % per) * tx + cx;
        arg_pair<T> b;
        b.v = T();
        b.i = -1;
        if (c < I) {
            const T *p = x + o * A * I + c;
            for (int64_t a = cy; a < A; a += ty) {
                arg_pair<T> e;
                e.v = p[a * I];
                e.i = a;
                b = mg(b, e);
            }
        }
        __syncthreads();
        sv[t] = b.v;
        si[t] = b.i;
        __syncthreads();
        for (int h = ty >> 1; h > 0; h >>= 1) {
            if (cy < h) {
                arg_pair<T> p1, p2;
                p1.v = sv[t];
                p1.i = si[t];
                p2.v = sv[t + h * tx];
                p2.i = si[t + h * tx];
                p1 = mg(p1, p2);
                sv[t] = p1.v;
                si[t] = p1.i;
            }
            __syncthreads();
        }
        if (cy == 0 && c < I) y[o * I + c] = si[cx];
    }
}

struct arg_state {
    int dtype;
    int64_t O, A, I;
    arg_merger<float> mg; /* is_max, last (the same for every T) */
    int W, tx, ty;
    unsigned gx;
    int64_t n_out;
};

static ulc_status arg_plan(ulc_kctx *k, arg_state *st) {
    const ulc_rt_tensor *x = k->in[0];
    memset(st, 0, sizeof *st);
    st->dtype = x->dtype;
    switch (x->dtype) {
    case ULC_DT_F32:
    case ULC_DT_F64:
    case ULC_DT_I32:
    case ULC_DT_I64:
    case ULC_DT_U8: break;
    default:
        return ucu_refuse_dtype(k, x->dtype);
    }
    int axis;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), x->rank, &axis));
    st->O = st->I = 1;
    st->A = x->dims[axis];
    for (int d = 0; d < axis; d++) st->O *= x->dims[d];
    for (int d = axis + 1; d < x->rank; d++) st->I *= x->dims[d];
    st->mg.is_max = k->node->op == ULC_OP_ArgMax;
    st->mg.last = ulc_k_attr_int(k, "select_last_index", 0) != 0;
    st->n_out = (int64_t)ulc_rt_numel(k->out[0]);
    if (st->I == 1) {
        st->W = lanes_for(st->A, 2048);
        st->gx = lanes_grid(st->O, st->W);
    } else {
        st->gx = grid_x(cols_tiles(st->O, st->I, &st->tx, &st->ty));
    }
    return ULC_OK;
}

template <class T> static ulc_status arg_launch(ulc_kctx *k, const arg_state *st) {
    const T *x = (const T *)k->in[0]->data;
    int64_t *y = (int64_t *)k->out[0]->data;
    arg_merger<T> mg = {st->mg.is_max, st->mg.last};
    if (st->I == 1) {
        auto f = arg_lanes<T>;
        UCU_LAUNCH(f, st->gx, UCU_THREADS, 0, ucu_stream(k), x, y, st->O, st->A, mg, st->W);
    } else {
        auto f = arg_cols<T>;
        UCU_LAUNCH(f, st->gx, dim3((unsigned)st->tx, (unsigned)st->ty), 0, ucu_stream(k), x, y,
                   st->O, st->A, st->I, mg);
    }
    UCU_TRY_LAUNCH(k, "ArgMax/ArgMin");
    return ULC_OK;
}

static ulc_status arg_prepare(ulc_kctx *k) {
    return ucu_prepare_state(k, arg_plan, "ArgMax state");
}

static ulc_status arg_run(ulc_kctx *k) {
    arg_state local;
    const arg_state *st;
    ULC_TRY(ucu_run_state(k, arg_plan, &local, &st));
    if (st->n_out == 0) return ULC_OK;
    switch (st->dtype) {
    case ULC_DT_F32: return arg_launch<float>(k, st);
    case ULC_DT_F64: return arg_launch<double>(k, st);
    case ULC_DT_I32: return arg_launch<int32_t>(k, st);
    case ULC_DT_I64: return arg_launch<int64_t>(k, st);
    default: return arg_launch<uint8_t>(k, st);
    }
}

/* ---- Softmax / LogSoftmax -------------------------------------------------------------------- */

/* A running softmax state: m the max so far (NaN once a NaN was seen), s = Σ exp(x - m). */
template <class C> struct sm_pair {
    C m, s;
};

template <class C> __device__ __forceinline__ sm_pair<C> shx(sm_pair<C> p, int o) {
    sm_pair<C> r;
    r.m = shx(p.m, o);
    r.s = shx(p.s, o);
    return r;
}

__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }

template <class C> __device__ __forceinline__ void sm_add(sm_pair<C> &p, C v) {
    if (v > p.m) {
        p.s = (p.m == (C)-INFINITY ? (C)0 : p.s * exp_(p.m - v)) + (C)1;
        p.m = v;
    } else if (v != v) {
        p.m = v;
    } else if (p.m == p.m && v != (C)-INFINITY) {
        p.s += exp_(v - p.m);
    }
}

template <class C> struct sm_merger {
    __device__ __forceinline__ sm_pair<C> operator()(sm_pair<C> a, sm_pair<C> b) const {
        sm_pair<C> r;
        if (a.m != a.m || b.m != b.m) {
            r.m = a.m != a.m ? a.m : b.m;
            r.s = 0;
            return r;
        }
        r.m = a.m > b.m ? a.m : b.m;
        if (r.m == (C)-INFINITY) {
            r.s = a.s + b.s;
            return r;
        }
        r.s = (a.m == (C)-INFINITY ? (C)0 : a.s * exp_(a.m - r.m)) +
              (b.m == (C)-INFINITY ? (C)0 : b.s * exp_(b.m - r.m));
        return r;
    }
};

/* The row's shift and factor from its merged state, as the CPU computes them: a +inf max makes
 * the row NaN (exp(inf - inf)); an all -inf row shifts by 0 and gives NaN (0 · 1/0). Softmax:
 * y = exp(x - m) · q with q = 1/s; LogSoftmax: y = x - q with q = m + log s. */
template <class C> __device__ __forceinline__ void sm_finish(sm_pair<C> p, int log_out, C *m, C *q) {
    if (p.m == (C)INFINITY) p.s = (C)NAN;
    if (p.m == (C)-INFINITY) p.m = 0;
    *m = p.m;
    *q = log_out ? p.m + log_(p.s) : (C)1 / p.s;
}

template <class T>
__global__ void sm_lanes(const T *x, T *y, int64_t O, int64_t A, int log_out, int W) {
    __shared__ sm_pair<T> sm[32];
    int lane = (int)threadIdx.x % W, wid = (int)threadIdx.x / W, wpb = (int)blockDim.x / W;
    sm_merger<T> merge;
    for (int64_t ob = (int64_t)blockIdx.x * wpb; ob < O; ob += (int64_t)gridDim.x * wpb) {
        int64_t o = ob + wid;
        sm_pair<T> p = {(T)-INFINITY, (T)0};
        const T *px = x + o * A;
        if (o < O)
            for (int64_t a = lane; a < A; a += W) sm_add(p, px[a]);
        p = worker_all(p, merge, W, sm);
        if (o < O) {
            T m, q;
            sm_finish(p, log_out, &m, &q);
            T *py = y + o * A;
            if (log_out)
                for (int64_t a = lane; a < A; a += W) py[a] = px[a] - q;
            else
                for (int64_t a = lane; a < A; a += W) py[a] = exp_(px[a] - m) * q;
        }
    }
}

/* float rows of a multiple of 4 on 16-byte boundaries: the same, 4 elements per load. */
__global__ void sm_lanes_f4(const float *x, float *y, int64_t O, int64_t A, int log_out, int W) {
    __shared__ sm_pair<float> sm[32];
    int lane = (int)threadIdx.x % W, wid = (int)threadIdx.x / W, wpb = (int)blockDim.x / W;
    sm_merger<float> merge;
    int64_t A4 = A / 4;
    for (int64_t ob = (int64_t)blockIdx.x * wpb; ob < O; ob += (int64_t)gridDim.x * wpb) {
        int64_t o = ob + wid;
        sm_pair<float> p = {-INFINITY, 0.0f};
        const float4 *px = (const float4 *)(x + o * A);
        if (o < O)
            for (int64_t a = lane; a < A4; a += W) {
                float4 v = px[a];
                sm_add(p, v.x);
                sm_add(p, v.y);
                sm_add(p, v.z);
                sm_add(p, v.w);
            }
        p = worker_all(p, merge, W, sm);
        if (o < O) {
            float m, q;
            sm_finish(p, log_out, &m, &q);
            float4 *py = (float4 *)(y + o * A);
            for (int64_t a = lane; a < A4; a += W) {
                float4 v = px[a];
                if (log_out) {
                    v.x -= q;
                    v.y -= q;
                    v.z -= q;
                    v.w -= q;
                } else {
                    v.x = expf(v.x - m) * q;
                    v.y = expf(v.y - m) * q;
                    v.z = expf(v.z - m) * q;
                    v.w = expf(v.w - m) * q;
                }
                py[a] = v;
            }
        }
    }
}

/* I > 1: (tx, ty) tiles over the columns of each [A, I] slab, as red_cols. */
template <class T>
__global__ void sm_cols(const T *x, T *y, int64_t O, int64_t A, int64_t I, int log_out) {
    __shared__ T smm[UCU_THREADS];
    __shared__ T sms[UCU_THREADS];
    int tx = (int)blockDim.x, ty = (int)blockDim.y, cx = (int)threadIdx.x, cy = (int)threadIdx.y;
    int t = cy * tx + cx;
    int64_t per = (I + tx - 1) / tx, tiles = O * per;
    sm_merger<T> merge;
    for (int64_t it = blockIdx.x; it < tiles; it += gridDim.x) {
        int64_t o = it / per, c = (it % per) * tx + cx;
        sm_pair<T> p = {(T)-INFINITY, (T)0};
        const T *px = x + o * A * I + c;
        if (c < I)
            for (int64_t a = cy; a < A; a += ty) sm_add(p, px[a * I]);
        __syncthreads();
        smm[t] = p.m;
        sms[t] = p.s;
        __syncthreads();
        for (int h = ty >> 1; h > 0; h >>= 1) {
            if (cy < h) {
                sm_pair<T> b = {smm[t + h * tx], sms[t + h * tx]};
                sm_pair<T> a0 = {smm[t], sms[t]};
                a0 = merge(a0, b);
                smm[t] = a0.m;
                sms[t] = a0.s;
            }
            __syncthreads();
        }
        if (c < I) {
            sm_pair<T> f = {smm[cx], sms[cx]};
            T m, q;
            sm_finish(f, log_out, &m, &q);
            T *py = y + o * A * I + c;
            for (int64_t a = cy; a < A; a += ty)
                py[a * I] = log_out ? px[a * I] - q : exp_(px[a * I] - m) * q;
        }
    }
}

struct sm_state {
    int dtype, log_out;
    int64_t O, A, I;
    int W, tx, ty;
    int W4;          /* threads per row with 4-wide loads */
    unsigned gx, gx4;
};

static ulc_status sm_plan(ulc_kctx *k, sm_state *st) {
    const ulc_rt_tensor *x = k->in[0];
    memset(st, 0, sizeof *st);
    st->dtype = x->dtype;
    if (x->dtype != ULC_DT_F32 && x->dtype != ULC_DT_F64)
        return ucu_refuse_dtype(k, x->dtype);
    st->log_out = k->node->op == ULC_OP_LogSoftmax;
    ULC_TRY(ulc_sh_softmax_layout(k, x, &st->O, &st->A, &st->I));
    if (ulc_rt_numel(x) == 0) st->O = 0;
    if (st->I == 1) {
        st->W = lanes_for(st->A, 1025);
        st->gx = lanes_grid(st->O, st->W);
        st->W4 = lanes_for(st->A / 4, 257);
        st->gx4 = lanes_grid(st->O, st->W4);
    } else {
        st->gx = grid_x(cols_tiles(st->O, st->I, &st->tx, &st->ty));
    }
    return ULC_OK;
}

template <class T> static ulc_status sm_launch(ulc_kctx *k, const sm_state *st) {
    const T *x = (const T *)k->in[0]->data;
    T *y = (T *)k->out[0]->data;
    if (st->I == 1) {
        if (std::is_same<T, float>::value && st->A % 4 == 0 && (uintptr_t)x % 16 == 0 &&
            (uintptr_t)y % 16 == 0) {
            UCU_LAUNCH(sm_lanes_f4, st->gx4, UCU_THREADS, 0, ucu_stream(k), (const float *)x,
                       (float *)y, st->O, st->A, st->log_out, st->W4);
        } else {
            auto f = sm_lanes<T>;
            UCU_LAUNCH(f, st->gx, UCU_THREADS, 0, ucu_stream(k), x, y, st->O, st->A, st->log_out,
                       st->W);
        }
    } else {
        auto f = sm_cols<T>;
        UCU_LAUNCH(f, st->gx, dim3((unsigned)st->tx, (unsigned)st->ty), 0, ucu_stream(k), x, y,
                   st->O, st->A, st->I, st->log_out);
    }
    UCU_TRY_LAUNCH(k, st->log_out ? "LogSoftmax" : "Softmax");
    return ULC_OK;
}

static ulc_status sm_prepare(ulc_kctx *k) {
    return ucu_prepare_state(k, sm_plan, "Softmax state");
}

static ulc_status sm_run(ulc_kctx *k) {
    sm_state local;
    const sm_state *st;
    ULC_TRY(ucu_run_state(k, sm_plan, &local, &st));
    if (st->O == 0) return ULC_OK;
    return st->dtype == ULC_DT_F64 ? sm_launch<double>(k, st) : sm_launch<float>(k, st);
}

/* ---- LayerNormalization ---------------------------------------------------------------------- */

template <class C> struct sum2 {
    C a, b;
};

template <class C> __device__ __forceinline__ sum2<C> shx(sum2<C> p, int o) {
    sum2<C> r;
    r.a = shx(p.a, o);
    r.b = shx(p.b, o);
    return r;
}

template <class C> struct sum2_merger {
    __device__ __forceinline__ sum2<C> operator()(sum2<C> x, sum2<C> y) const {
        sum2<C> r = {x.a + y.a, x.b + y.b};
        return r;
    }
};

/* Scale / B broadcast to the normalised dims: dst[j] = p[Σ digit(j) · st] over nd dims. */
struct ln_bcast {
    int nd;
    int64_t dims[ULC_RT_MAX_RANK], st[ULC_RT_MAX_RANK];
};

template <class T> __global__ void ln_expand(const T *p, T *dst, ln_bcast b, int64_t N) {
    UCU_FOR(j, N) {
        int64_t off = 0, r = j;
        for (int d = b.nd - 1; d >= 0; d--) {
            off += (r % b.dims[d]) * b.st[d];
            r /= b.dims[d];
        }
        dst[j] = p[off];
    }
}

__device__ __forceinline__ void ln_store(void *t, int f64, int64_t r, double v) {
    if (!t) return;
    if (f64) ((double *)t)[r] = v;
    else ((float *)t)[r] = (float)v;
}

/* Rows of N elements, a worker of W threads per row. */
template <class T>
__global__ void ln_rows(const T *x, T *y, const T *g, const T *b, void *mean, void *inv,
                        int stash_f64, int64_t rows, int64_t N, double eps, int W) {
    __shared__ sum2<T> sm[32];
    int lane = (int)threadIdx.x % W, wid = (int)threadIdx.x / W, wpb = (int)blockDim.x / W;
    sum2_merger<T> merge;
    for (int64_t rb = (int64_t)blockIdx.x * wpb; rb < rows; rb += (int64_t)gridDim.x * wpb) {
        int64_t r = rb + wid;
        bool ok = r < rows;
        const T *px = x + r * N;
        /* a rough mean */
        sum2<T> s = {(T)0, (T)0};
        if (ok)
            for (int64_t j = lane; j < N; j += W) s.a += px[j];
        s = worker_all(s, merge, W, sm);
        T m0 = (T)((double)s.a / (double)N);
        /* deviations from it */
        s.a = s.b = (T)0;
        if (ok)
            for (int64_t j = lane; j < N; j += W) {
                T d = px[j] - m0;
                s.a += d;
                s.b += d * d;
            }
        s = worker_all(s, merge, W, sm);
        double dm = (double)s.a / (double)N, var = (double)s.b / (double)N - dm * dm;
        double mu = (double)m0 + dm, is = 1.0 / sqrt((var > 0 ? var : 0) + eps);
        if (ok) {
            T mf = (T)mu, ml = (T)(mu - (double)mf), sf = (T)is;
            T *py = y + r * N;
            if (b)
                for (int64_t j = lane; j < N; j += W) py[j] = ((px[j] - mf) - ml) * sf * g[j] + b[j];
            else
                for (int64_t j = lane; j < N; j += W) py[j] = ((px[j] - mf) - ml) * sf * g[j];
            if (lane == 0) {
                ln_store(mean, stash_f64, r, mu);
                ln_store(inv, stash_f64, r, is);
            }
        }
    }
}

__global__ void ln_fill_nan(void *mean, void *inv, int stash_f64, int64_t rows) {
    UCU_FOR(r, rows) {
        ln_store(mean, stash_f64, r, NAN);
        ln_store(inv, stash_f64, r, NAN);
    }
}

struct ln_state {
    int dtype, stash_f64;
    int64_t rows, N;
    double eps;
    int has_b, expand_g, expand_b;
    ln_bcast bg, bb;
    int W;
    unsigned gx;
};

static ulc_status ln_plan(ulc_kctx *k, ln_state *st) {
    const ulc_rt_tensor *x = k->in[0], *g = k->in[1];
    const ulc_rt_tensor *b = k->n_in > 2 ? k->in[2] : NULL;
    memset(st, 0, sizeof *st);
    st->dtype = x->dtype;
    if (x->dtype != ULC_DT_F32 && x->dtype != ULC_DT_F64)
        return ucu_refuse_dtype(k, x->dtype);
    int axis;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", -1), x->rank, &axis));
    st->rows = st->N = 1;
    for (int d = 0; d < x->rank; d++) {
        if (d < axis) st->rows *= x->dims[d];
        else st->N *= x->dims[d];
    }
    st->eps = ulc_k_attr_float(k, "epsilon", 1e-5f);
    const ulc_rt_tensor *mo = k->n_out > 1 ? k->out[1] : NULL, *io = k->n_out > 2 ? k->out[2] : NULL;
    st->stash_f64 = (mo && mo->dtype == ULC_DT_F64) || (io && io->dtype == ULC_DT_F64);
    st->has_b = b != NULL;
    int nd = x->rank - axis;
    st->expand_g = (int64_t)ulc_rt_numel(g) != st->N;
    st->expand_b = b && (int64_t)ulc_rt_numel(b) != st->N;
    st->bg.nd = st->bb.nd = nd;
    for (int d = 0; d < nd; d++) st->bg.dims[d] = st->bb.dims[d] = x->dims[axis + d];
    ulc_k_bcast_strides(g, nd, x->dims + axis, st->bg.st);
    if (b) ulc_k_bcast_strides(b, nd, x->dims + axis, st->bb.st);
    st->W = lanes_for(st->N, 1025);
    st->gx = lanes_grid(st->rows, st->W);
    if (st->gx == 0) st->gx = 1;
    return ULC_OK;
}

template <class T> static ulc_status ln_launch(ulc_kctx *k, const ln_state *st) {
    const T *x = (const T *)k->in[0]->data;
    const T *g = (const T *)k->in[1]->data;
    const T *b = st->has_b ? (const T *)k->in[2]->data : NULL;
    void *mean = k->n_out > 1 && k->out[1] ? k->out[1]->data : NULL;
    void *inv = k->n_out > 2 && k->out[2] ? k->out[2]->data : NULL;
    if (st->rows == 0) return ULC_OK;
    if (st->N == 0) {
        if (mean || inv) {
            UCU_LAUNCH(ln_fill_nan, ucu_blocks(st->rows, UCU_THREADS), UCU_THREADS, 0,
                       ucu_stream(k), mean, inv, st->stash_f64, st->rows);
            UCU_TRY_LAUNCH(k, "LayerNormalization");
        }
        return ULC_OK;
    }
    if (st->expand_g || st->expand_b) {
        size_t half = ((size_t)st->N * sizeof(T) + 255) & ~(size_t)255;
        char *scr = (char *)ucu_scratch(k, 2 * half);
        if (!scr) return ULC_ERR_NOMEM;
        auto f = ln_expand<T>;
        if (st->expand_g) {
            T *dg = (T *)scr;
            UCU_LAUNCH(f, ucu_blocks(st->N, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), g, dg,
                       st->bg, st->N);
            g = dg;
        }
        if (st->expand_b) {
            T *db = (T *)(scr + half);
            UCU_LAUNCH(f, ucu_blocks(st->N, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), b, db,
                       st->bb, st->N);
            b = db;
        }
        UCU_TRY_LAUNCH(k, "LayerNormalization (Scale/B broadcast)");
    }
    auto f = ln_rows<T>;
    UCU_LAUNCH(f, st->gx, UCU_THREADS, 0, ucu_stream(k), x, (T *)k->out[0]->data, g, b, mean, inv,
               st->stash_f64, st->rows, st->N, st->eps, st->W);
    UCU_TRY_LAUNCH(k, "LayerNormalization");
    return ULC_OK;
}

static ulc_status ln_prepare(ulc_kctx *k) {
    return ucu_prepare_state(k, ln_plan, "LayerNormalization state");
}

static ulc_status ln_run(ulc_kctx *k) {
    ln_state local;
    const ln_state *st;
    ULC_TRY(ucu_run_state(k, ln_plan, &local, &st));
    return st->dtype == ULC_DT_F64 ? ln_launch<double>(k, st) : ln_launch<float>(k, st);
}

/* ---- registration -------------------------------------------------------------------------- */

const ulc_kernel k_reduce = {0, 0, red_prepare, red_run, ucu_free_state, NULL};
const ulc_kernel k_arg = {0, 0, arg_prepare, arg_run, ucu_free_state, NULL};
const ulc_kernel k_softmax = {0, 0, sm_prepare, sm_run, ucu_free_state, NULL};
const ulc_kernel k_layernorm = {0, 0, ln_prepare, ln_run, ucu_free_state, NULL};

} /* namespace */

void ucu_reg_reduce(ucu_table t) {
    static const ulc_op reductions[] = {
        ULC_OP_ReduceSum, ULC_OP_ReduceMean, ULC_OP_ReduceMax, ULC_OP_ReduceMin,
        ULC_OP_ReduceProd, ULC_OP_ReduceL1, ULC_OP_ReduceL2, ULC_OP_ReduceSumSquare,
        ULC_OP_ReduceLogSum, ULC_OP_ReduceLogSumExp,
    };
    for (size_t i = 0; i < sizeof reductions / sizeof reductions[0]; i++) t[reductions[i]] = &k_reduce;
    t[ULC_OP_ArgMax] = &k_arg;
    t[ULC_OP_ArgMin] = &k_arg;
    t[ULC_OP_Softmax] = &k_softmax;
    t[ULC_OP_LogSoftmax] = &k_softmax;
    t[ULC_OP_LayerNormalization] = &k_layernorm;
}

UCU_END
