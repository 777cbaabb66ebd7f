/*
 * k_nn.cu — the CUDA backend's neural-network family: MatMul, Gemm, Conv, ConvTranspose,
 * MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, BatchNormalization. The semantics are
 * the CPU's (runtime/cpu/k_nn*.c; math in k_nn.c's header comment) and the geometry is decoded
 * by the same op-level decoders (runtime/shape/params.h).
 *
 * Products. float32 runs on cuBLAS (cu.h's ucu_blas, column-major): a row-major
 * C[M, N] = op(A)[M, K]·op(B)[K, N] is cuBLAS's Cᵀ = op(B)ᵀ·op(A)ᵀ, so rm_sgemm passes B first
 * with m = N, n = M, each operand's transpose flag as given (a row-major matrix read column-major
 * is its transpose). MatMul folds a batch that only A has into M ([B, T, K]·[K, N] is one
 * [B·T, K]·[K, N] product); otherwise the broadcast batch dims (size-1 dims dropped) are merged
 * from the innermost while both operands' strides stay uniform, that run becomes one
 * strided-batched call (a stride of 0 for a broadcast operand, or one sgemm over merged rows
 * when only A moves), and the outer dims are a loop of such calls. float64 and the integer
 * types (integers wrap) run a one-thread-per-output loop (prod_kernel).
 *
 * Convolutions. float32 Conv is im2col into ucu_scratch (batch chunks of at most
 * NN_COL_BYTES) + one strided-batched sgemm per group across the chunk's images (or per image
 * across groups, whichever makes fewer calls; a 1×1 stride-1 unpadded Conv reads X directly).
 * ConvTranspose is the adjoint: col = W_gᵀ·X_g per group by sgemm, then col2im gathers each
 * output element's taps (no atomics) and applies the bias and the fused work as it writes.
 * float64 runs a direct loop, one thread per output (the CPU's reference loop).
 *
 * The epilogue (nn_ep): what the planner fused after the op (ulc_kfuse: addend, activation,
 * ReluGrad mask, residual) plus the op's own broadcast operand (Gemm's beta·C, the Conv bias),
 * applied by one pass over the output after the product, or inside the kernels that write the
 * output element by element (pools do not fuse; BatchNormalization, col2im and the direct loops
 * apply it as they write).
 *
 * Pooling: one thread per output element, taps in row-major order as the CPU (the first valid
 * tap always taken for max, so Indices match); global pooling one block per plane (a thread
 * per plane when planes are small). BatchNormalization: per-channel a = scale/√(var + ε) and
 * b = B − mean·a computed in double into scratch (the training form: batch statistics, one block
 * per channel, and the running statistics), then y = x·a + b and the epilogue.
 */
#include "runtime/cuda/cu.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

extern "C" {
#include "runtime/shape/params.h"
}

UCU_BEGIN

/* ---- shared pieces ------------------------------------------------------------------------- */

#define NN_COL_BYTES ((size_t)256 << 20) /* im2col / col2im buffer per chunk of images */
#define NN_MAXD ULC_RT_MAX_RANK

/* The column buffer's bound: NN_COL_BYTES, or ULC_CUDA_NN_COL_BYTES (the tests make chunks of a
 * few images with it). Read in prepare. */
static double nn_col_bytes(void) {
    const char *e = getenv("ULC_CUDA_NN_COL_BYTES");
    double v = e && *e ? atof(e) : 0.0;
    return v > 0 ? v : (double)NN_COL_BYTES;
}

static inline int64_t nn_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int nn_fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* Kernels that decompose flat indices (div/mod, costly in 64 bits on a GPU) are instantiated for
 * a 32-bit index type when every index they form is below 2^31 (nn_small), else for int64. */
static inline int nn_small(int64_t n) { return n >= 0 && n < ((int64_t)1 << 31) - ((int64_t)1 << 26); }

/* A grid-stride loop with an index of type I. */
#define NN_FOR(I, i, n)                                                                            \
    for (I i = (I)((int64_t)blockIdx.x * blockDim.x + threadIdx.x); i < (I)(n);                    \
         i += (I)((int64_t)blockDim.x * gridDim.x))

/* A zeroed state of `bytes` at k->state (the prepares return through ucu_prepared, which frees
 * it when they fail). */
static void *nn_state(ulc_kctx *k, size_t bytes) {
    void *s = calloc(1, bytes);
    if (!s) ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    return s;
}

/* A window geometry by value for the kernels (params.h's ulc_nn_window). */
typedef struct nn_win {
    int nsp;
    int64_t in[ULC_NN_MAX_SP], out[ULC_NN_MAX_SP], k[ULC_NN_MAX_SP], s[ULC_NN_MAX_SP],
        d[ULC_NN_MAX_SP], pb[ULC_NN_MAX_SP];
} nn_win;

static void nn_win_of(const ulc_nn_window *w, nn_win *o) {
    memset(o, 0, sizeof *o);
    o->nsp = w->nsp;
    for (int i = 0; i < w->nsp; i++) {
        o->in[i] = w->in[i];
        o->out[i] = w->out[i];
        o->k[i] = w->k[i];
        o->s[i] = w->s[i];
        o->d[i] = w->d[i];
        o->pb[i] = w->pb[i];
    }
}

/* ---- the epilogue --------------------------------------------------------------------------- */

/* An operand broadcast to the output y: element i of y reads p[at(i)]. BLOCK: the operand's
 * non-broadcast dims are a contiguous run of y's dims, at(i) = (i / inner) % count (a bias row,
 * a channel, a column, a full tensor, a scalar); GENERAL: through strides over y's dims. */
enum { BC_NONE = 0, BC_BLOCK = 1, BC_GENERAL = 2 };

typedef struct nn_bc {
    const void *p;
    int kind, rank;
    int64_t inner, count;
    int64_t dims[NN_MAXD], st[NN_MAXD];
} nn_bc;

typedef struct nn_ep {
    nn_bc c;     /* the op's own operand (Gemm's C, the Conv bias), times cscale */
    float cscale;
    nn_bc add;   /* the fused addend */
    int act;     /* ulc_kact */
    float a, b;
    const void *mask;  /* y > 0 ? v : 0 (y's shape and dtype) */
    const float *res;  /* added last (float32, y's shape) */
    int any;
} nn_ep;

static void bc_block(nn_bc *b, const void *p, int64_t inner, int64_t count) {
    memset(b, 0, sizeof *b);
    b->p = p;
    b->kind = BC_BLOCK;
    b->inner = inner > 0 ? inner : 1;
    b->count = count > 0 ? count : 1;
}

/* t read as broadcast to y's shape (unidirectionally; can_fuse checked it). */
static void bc_of(nn_bc *b, const ulc_rt_tensor *t, const ulc_rt_tensor *y) {
    int64_t st[NN_MAXD];
    ulc_k_bcast_strides(t, y->rank, y->dims, st);
    int phase = 0, first = -1, last = -1; /* 0 before the run, 1 in it, 2 after it */
    int block = 1;
    for (int d = 0; d < y->rank; d++) {
        if (y->dims[d] <= 1) continue;
        if (st[d]) {
            if (phase == 2) block = 0;
            phase = 1;
            if (first < 0) first = d;
            last = d;
        } else if (phase == 1) {
            phase = 2;
        }
    }
    if (block) {
        int64_t inner = 1, count = 1;
        for (int d = last + 1; last >= 0 && d < y->rank; d++) inner *= y->dims[d];
        for (int d = first; first >= 0 && d <= last; d++) count *= y->dims[d];
        bc_block(b, t->data, inner, count);
        return;
    }
    memset(b, 0, sizeof *b);
    b->p = t->data;
    b->kind = BC_GENERAL;
    b->rank = y->rank;
    for (int d = 0; d < y->rank; d++) {
        b->dims[d] = y->dims[d];
        b->st[d] = st[d];
    }
}

/* The fused work of k (may be NULL) on output y; the op's own operand is set by the caller. */
static void ep_init(nn_ep *e, const ulc_kfuse *f, const ulc_rt_tensor *y) {
    memset(e, 0, sizeof *e);
    e->cscale = 1.0f;
    if (!f) return;
    if (f->addend) bc_of(&e->add, f->addend, y);
    e->act = (int)f->act;
    e->a = f->a;
    e->b = f->b;
    e->mask = f->mask ? f->mask->data : NULL;
    e->res = f->residual ? (const float *)f->residual->data : NULL;
    e->any = f->addend || f->act != ULC_ACT_NONE || f->mask || f->residual;
}

/* can_fuse of every op of the family: a float output; an addend of its dtype broadcasting to
 * it; any activation of ulc_kact; a mask of its shape and dtype; a float32 residual of its
 * shape. */
static int nn_can_fuse(const ulc_kctx *k, const ulc_kfuse *f) {
    const ulc_rt_tensor *y = k->n_out > 0 ? k->out[0] : NULL;
    if (!y || !ulc_k_is_float(y->dtype)) return 0;
    if ((int)f->act < (int)ULC_ACT_NONE || (int)f->act > (int)ULC_ACT_GELU_TANH) return 0;
    const ulc_rt_tensor *a = f->addend;
    if (a) {
        if (a->dtype != y->dtype || a->rank > y->rank) return 0;
        for (int d = 0; d < a->rank; d++) {
            int64_t ad = a->dims[d], yd = y->dims[y->rank - a->rank + d];
            if (ad != yd && ad != 1) return 0;
        }
    }
    if (f->mask && (f->mask->dtype != y->dtype || !ulc_rt_same_shape(f->mask, y))) return 0;
    if (f->residual &&
        (y->dtype != ULC_DT_F32 || f->residual->dtype != ULC_DT_F32 || !ulc_rt_same_shape(f->residual, y)))
        return 0;
    return 1;
}

template <typename T> struct nn_is_fp { static const bool v = std::is_floating_point<T>::value; };

__device__ __forceinline__ float nn_exp(float x) { return expf(x); }
__device__ __forceinline__ double nn_exp(double x) { return exp(x); }
__device__ __forceinline__ float nn_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double nn_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float nn_erf(float x) { return erff(x); }
__device__ __forceinline__ double nn_erf(double x) { return erf(x); }

template <typename T> __device__ __forceinline__ T nn_act(int act, T v, float a, float b) {
    switch (act) {
    case ULC_ACT_RELU: return v > (T)0 ? v : (T)0;
    case ULC_ACT_LEAKY_RELU: return v >= (T)0 ? v : v * (T)a;
    case ULC_ACT_CLIP: return v < (T)a ? (T)a : (v > (T)b ? (T)b : v);
    case ULC_ACT_SIGMOID: return (T)1 / ((T)1 + nn_exp(-v));
    case ULC_ACT_TANH: return nn_tanh(v);
    case ULC_ACT_GELU_ERF: return (T)0.5 * v * ((T)1 + nn_erf(v * (T)0.70710678118654752));
    case ULC_ACT_GELU_TANH:
        return (T)0.5 * v * ((T)1 + nn_tanh((T)0.7978845608028654 * (v + (T)0.044715 * v * v * v)));
    default: return v;
    }
}

template <typename I> __device__ __forceinline__ I bc_at(const nn_bc &b, I i) {
    if (b.kind == BC_BLOCK) return (i / (I)b.inner) % (I)b.count;
    I off = 0;
    for (int d = b.rank - 1; d >= 0; d--) {
        I q = i / (I)b.dims[d];
        off += (i - q * (I)b.dims[d]) * (I)b.st[d];
        i = q;
    }
    return off;
}

/* v, element i of the output, through the epilogue. */
template <typename T, typename I> __device__ __forceinline__ T ep_apply(const nn_ep &e, I i, T v) {
    if (e.c.kind) v += (T)e.cscale * ((const T *)e.c.p)[bc_at(e.c, i)];
    if (e.add.kind) v += ((const T *)e.add.p)[bc_at(e.add, i)];
    if (e.act) v = nn_act(e.act, v, e.a, e.b);
    if (e.mask) v = ((const T *)e.mask)[i] > (T)0 ? v : (T)0;
    if (e.res) v += (T)e.res[i];
    return v;
}

/* y[i] = ep(y[i]) (or ep(0) when from_zero) over n elements. */
template <typename T, typename I> __global__ void ep_kernel(T *y, int64_t n, nn_ep e, int from_zero) {
    NN_FOR(I, i, n) y[i] = ep_apply(e, i, from_zero ? (T)0 : y[i]);
}

template <typename T> static ulc_status ep_run(ulc_kctx *k, T *y, int64_t n, const nn_ep *e, int from_zero) {
    if (n <= 0) return ULC_OK;
    auto f = nn_small(n) ? ep_kernel<T, uint32_t> : ep_kernel<T, int64_t>;
    UCU_LAUNCH(f, ucu_blocks(n, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), y, n, *e, from_zero);
    UCU_TRY_LAUNCH(k, "epilogue");
    return ULC_OK;
}

static int ep_busy(const nn_ep *e) { return e->any || e->c.kind != BC_NONE; }

/* ---- cuBLAS, row-major ---------------------------------------------------------------------- */

/* Row-major C[M, N] (row stride ldc) = alpha·op(A)·op(B) + beta·C with op(A) [M, K] (A stored
 * [M, K], or [K, M] when ta) and op(B) [K, N] (B stored [K, N], or [N, K] when tb); batch > 1:
 * strided batched, element strides sa, sb, sc (0: the same matrix for every entry). cuBLAS is
 * column-major, so this is its Cᵀ[N, M] = op(B)ᵀ·op(A)ᵀ: B first, m = N, n = M. */
static ulc_status rm_sgemm(ulc_kctx *k, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                           const float *A, int64_t lda, int64_t sa, const float *B, int64_t ldb,
                           int64_t sb, float beta, float *C, int64_t ldc, int64_t sc, int64_t batch) {
    if (M == 0 || N == 0 || batch == 0) return ULC_OK;
    if (!nn_fits_int(M) || !nn_fits_int(N) || !nn_fits_int(K) || !nn_fits_int(lda) ||
        !nn_fits_int(ldb) || !nn_fits_int(ldc))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "a product of [%lld, %lld] x [%lld, %lld] is too large for one cuBLAS call "
                          "on backend cuda",
                          (long long)M, (long long)K, (long long)K, (long long)N);
    ucu_dev *d = ucu_ctx(k);
    int lda_ = (int)(lda > 1 ? lda : 1), ldb_ = (int)(ldb > 1 ? ldb : 1), ldc_ = (int)(ldc > 1 ? ldc : 1);
    int oa = ta ? UCU_OP_T : UCU_OP_N, ob = tb ? UCU_OP_T : UCU_OP_N;
    if (batch == 1)
        return ucu_blas_check(k, d->b->sgemm(d->blas, ob, oa, (int)N, (int)M, (int)K, &alpha, B, ldb_, A,
                                             lda_, &beta, C, ldc_),
                              "sgemm");
    for (int64_t b0 = 0; b0 < batch; b0 += 65535) { /* batch counts older cuBLAS take */
        int nb = (int)nn_min64(batch - b0, 65535);
        ULC_TRY(ucu_blas_check(k, d->b->sgemm_batched(d->blas, ob, oa, (int)N, (int)M, (int)K, &alpha,
                                                      B + b0 * sb, ldb_, (long long)sb, A + b0 * sa,
                                                      lda_, (long long)sa, &beta, C + b0 * sc, ldc_,
                                                      (long long)sc, nb),
                               "sgemm (strided batched)"));
    }
    return ULC_OK;
}

/* ---- products of the other dtypes: one thread per output element ---------------------------- */

typedef struct prod_geo {
    int64_t m, n, k, total;
    int nb;
    int64_t bdims[NN_MAXD], a_bs[NN_MAXD], b_bs[NN_MAXD]; /* batch dims and strides (0 = broadcast) */
    int64_t a_rs, a_cs, b_rs, b_cs; /* element strides of op(A)'s and op(B)'s rows and columns */
    int post;                       /* Gemm: y = alpha·y + beta·C in double (the CPU's rule) */
    double alpha, beta;
    nn_bc c;
} prod_geo;

/* The integer wraps as the CPU's loops do (products and sums in the unsigned type). */
template <typename T> struct nn_acc { typedef T type; };
template <> struct nn_acc<int32_t> { typedef uint32_t type; };
template <> struct nn_acc<int64_t> { typedef uint64_t type; };

/* kutil.c's ulc_k_store_f64: floats as they are; integers truncated and saturated to int64
 * (uint64 to [0, 2^64)), NaN 0, narrower types wrapping from it. */
template <typename T> __device__ __forceinline__ T nn_from_f64(double v) {
    if (nn_is_fp<T>::v) return (T)v;
    if (v != v) return (T)0;
    if (std::is_same<T, uint64_t>::value && v >= 9223372036854775808.0)
        return v < 18446744073709551616.0 ? (T)(uint64_t)v : (T)UINT64_MAX;
    int64_t w = v <= -9223372036854775808.0 ? INT64_MIN : v >= 9223372036854775808.0 ? INT64_MAX : (int64_t)v;
    return (T)(uint64_t)w;
}

template <typename T>
__global__ void prod_kernel(const T *A, const T *B, T *Y, prod_geo g, nn_ep e, int has_ep) {
    typedef typename nn_acc<T>::type U;
    UCU_FOR(i, g.total) {
        int64_t r = i / g.n, col = i - r * g.n, bi = r / g.m, row = r - bi * g.m;
        int64_t ao = 0, bo = 0;
        for (int d = g.nb - 1; d >= 0; d--) {
            int64_t q = bi / g.bdims[d], x = bi - q * g.bdims[d];
            ao += x * g.a_bs[d];
            bo += x * g.b_bs[d];
            bi = q;
        }
        const T *a = A + ao + row * g.a_rs, *b = B + bo + col * g.b_cs;
        U acc = (U)0;
        for (int64_t kk = 0; kk < g.k; kk++) acc += (U)a[kk * g.a_cs] * (U)b[kk * g.b_rs];
        T v = (T)acc;
        if (g.post)
            v = nn_from_f64<T>(g.alpha * (double)v +
                               (g.c.kind ? g.beta * (double)((const T *)g.c.p)[bc_at(g.c, i)] : 0.0));
        if constexpr (nn_is_fp<T>::v) {
            if (has_ep) v = ep_apply(e, i, v);
        } else {
            (void)e;
            (void)has_ep;
        }
        Y[i] = v;
    }
}

static ulc_status prod_run(ulc_kctx *k, int dt, const prod_geo *g, const nn_ep *e) {
    if (g->total <= 0) return ULC_OK;
    const void *A = k->in[0]->data, *B = k->in[1]->data;
    void *Y = k->out[0]->data;
    unsigned nb = ucu_blocks(g->total, UCU_THREADS);
    int he = ep_busy(e);
    switch (dt) {
#define NN_PROD(DT, T)                                                                             \
    case DT: {                                                                                     \
        auto f = prod_kernel<T>;                                                                   \
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), (const T *)A, (const T *)B, (T *)Y, *g, *e, he); \
        break;                                                                                     \
    }
        NN_PROD(ULC_DT_F32, float)
        NN_PROD(ULC_DT_F64, double)
        NN_PROD(ULC_DT_I32, int32_t)
        NN_PROD(ULC_DT_I64, int64_t)
        NN_PROD(ULC_DT_U32, uint32_t)
        NN_PROD(ULC_DT_U64, uint64_t)
#undef NN_PROD
    default: return ucu_refuse_dtype(k, dt);
    }
    UCU_TRY_LAUNCH(k, "product");
    return ULC_OK;
}

static int prod_dtype_ok(int dt) {
    return dt == ULC_DT_F32 || dt == ULC_DT_F64 || dt == ULC_DT_I32 || dt == ULC_DT_I64 ||
           dt == ULC_DT_U32 || dt == ULC_DT_U64;
}

/* ---- MatMul --------------------------------------------------------------------------------- */

typedef struct mm_state {
    ulc_sh_matmul g;
    /* float32 batched plan (not fold): outer dims looped, then cnt entries per call */
    int nloop;
    int64_t ldims[NN_MAXD], la[NN_MAXD], lb[NN_MAXD];
    int64_t loops, cnt, sa, sb;
    int rows_fold; /* in a call, only A moves, densely: one sgemm over cnt·M rows */
} mm_state;

static ulc_status mm_prep(ulc_kctx *k) {
    mm_state *s = (mm_state *)nn_state(k, sizeof(mm_state));
    if (!s) return ULC_ERR_NOMEM;
    ULC_TRY(ulc_sh_matmul_geom(k, &s->g, NULL, NULL));
    const ulc_sh_matmul *g = &s->g;
    if (!prod_dtype_ok(g->dtype)) return ucu_refuse_dtype(k, g->dtype);
    s->loops = 1;
    s->cnt = 1;
    if (g->dtype != ULC_DT_F32 || g->fold) return ULC_OK;
    /* the batch dims that are > 1, merged from the innermost while strides stay uniform */
    int64_t d[NN_MAXD], a[NN_MAXD], b[NN_MAXD];
    int n = 0;
    for (int i = 0; i < g->nb; i++)
        if (g->bdims[i] > 1) {
            d[n] = g->bdims[i];
            a[n] = g->a_bs[i];
            b[n] = g->b_bs[i];
            n++;
        }
    if (n == 0) return ULC_OK;
    int j = n - 1;
    s->cnt = d[j];
    s->sa = a[j];
    s->sb = b[j];
    for (j = n - 2; j >= 0; j--) {
        if (a[j] != s->sa * s->cnt || b[j] != s->sb * s->cnt) break;
        s->cnt *= d[j];
    }
    s->nloop = j + 1;
    for (int i = 0; i < s->nloop; i++) {
        s->ldims[i] = d[i];
        s->la[i] = a[i];
        s->lb[i] = b[i];
        s->loops *= d[i];
    }
    s->rows_fold = s->sb == 0 && s->sa == g->m * g->k;
    if (s->rows_fold && !nn_fits_int(s->cnt * g->m))
        s->rows_fold = 0;
    return ULC_OK;
}

static ulc_status mm_prepare(ulc_kctx *k) { return ucu_prepared(k, mm_prep(k)); }

static ulc_status mm_run(ulc_kctx *k) {
    const mm_state *s = (const mm_state *)k->state;
    const ulc_sh_matmul *g = &s->g;
    ulc_rt_tensor *y = k->out[0];
    int64_t total = g->batch * g->m * g->n;
    if (total == 0) return ULC_OK;
    nn_ep e;
    ep_init(&e, k->fuse, y);
    if (g->dtype != ULC_DT_F32) {
        prod_geo p;
        memset(&p, 0, sizeof p);
        p.m = g->m;
        p.n = g->n;
        p.k = g->k;
        p.total = total;
        p.nb = g->nb;
        for (int i = 0; i < g->nb; i++) {
            p.bdims[i] = g->bdims[i];
            p.a_bs[i] = g->a_bs[i];
            p.b_bs[i] = g->b_bs[i];
        }
        p.a_rs = g->k;
        p.a_cs = 1;
        p.b_rs = g->n;
        p.b_cs = 1;
        return prod_run(k, g->dtype, &p, &e);
    }
    const float *A = (const float *)k->in[0]->data, *B = (const float *)k->in[1]->data;
    float *C = (float *)y->data;
    if (g->k == 0) return ep_run(k, C, total, &e, 1);
    int64_t M = g->m, N = g->n, K = g->k;
    if (g->fold) {
        ULC_TRY(rm_sgemm(k, 0, 0, g->batch * M, N, K, 1.0f, A, K, 0, B, N, 0, 0.0f, C, N, 0, 1));
    } else {
        for (int64_t L = 0; L < s->loops; L++) {
            int64_t oa = 0, ob = 0, rem = L;
            for (int d = s->nloop - 1; d >= 0; d--) {
                int64_t x = rem % s->ldims[d];
                rem /= s->ldims[d];
                oa += x * s->la[d];
                ob += x * s->lb[d];
            }
            float *c = C + L * s->cnt * M * N;
            if (s->rows_fold)
                ULC_TRY(rm_sgemm(k, 0, 0, s->cnt * M, N, K, 1.0f, A + oa, K, 0, B + ob, N, 0, 0.0f, c, N, 0, 1));
            else
                ULC_TRY(rm_sgemm(k, 0, 0, M, N, K, 1.0f, A + oa, K, s->sa, B + ob, N, s->sb, 0.0f, c, N,
                                 M * N, s->cnt));
        }
    }
    if (ep_busy(&e)) return ep_run(k, C, total, &e, 0);
    return ULC_OK;
}

/* ---- Gemm ----------------------------------------------------------------------------------- */

typedef struct gemm_state {
    ulc_sh_gemm g;
} gemm_state;

static ulc_status gemm_prep(ulc_kctx *k) {
    gemm_state *s = (gemm_state *)nn_state(k, sizeof(gemm_state));
    if (!s) return ULC_ERR_NOMEM;
    ULC_TRY(ulc_sh_gemm_geom(k, &s->g));
    if (!prod_dtype_ok(s->g.dtype)) return ucu_refuse_dtype(k, s->g.dtype);
    return ULC_OK;
}

static ulc_status gemm_prepare(ulc_kctx *k) { return ucu_prepared(k, gemm_prep(k)); }

/* C broadcast to [M, N] (c_rs, c_cs: its strides there, 0 = broadcast) as a block operand. */
static void gemm_c_bc(const ulc_sh_gemm *g, const void *c, nn_bc *b) {
    if (g->c_rs == 0)
        bc_block(b, c, 1, g->c_cs ? g->n : 1); /* a scalar or a row */
    else
        bc_block(b, c, g->c_cs ? 1 : g->n, g->c_cs ? g->m * g->n : g->m); /* full, or a column */
}

static ulc_status gemm_run(ulc_kctx *k) {
    const gemm_state *s = (const gemm_state *)k->state;
    const ulc_sh_gemm *g = &s->g;
    ulc_rt_tensor *y = k->out[0];
    int64_t total = g->m * g->n;
    if (total == 0) return ULC_OK;
    nn_ep e;
    ep_init(&e, k->fuse, y);
    const void *cdata = g->has_c ? k->in[2]->data : NULL;
    if (g->dtype != ULC_DT_F32) {
        prod_geo p;
        memset(&p, 0, sizeof p);
        p.m = g->m;
        p.n = g->n;
        p.k = g->k;
        p.total = total;
        p.a_rs = g->ta ? 1 : g->k;
        p.a_cs = g->ta ? g->m : 1;
        p.b_rs = g->tb ? 1 : g->n;
        p.b_cs = g->tb ? g->k : 1;
        p.post = !(g->alpha == 1.0f && (!g->has_c || g->beta == 0.0f));
        p.alpha = g->alpha;
        p.beta = g->beta;
        if (g->has_c) gemm_c_bc(g, cdata, &p.c);
        return prod_run(k, g->dtype, &p, &e);
    }
    if (g->has_c && g->beta != 0.0f) {
        gemm_c_bc(g, cdata, &e.c);
        e.cscale = g->beta;
    }
    float *C = (float *)y->data;
    if (g->k == 0) return ep_run(k, C, total, &e, 1);
    ULC_TRY(rm_sgemm(k, g->ta, g->tb, g->m, g->n, g->k, g->alpha, (const float *)k->in[0]->data,
                     g->ta ? g->m : g->k, 0, (const float *)k->in[1]->data, g->tb ? g->k : g->n, 0,
                     0.0f, C, g->n, 0, 1));
    if (ep_busy(&e)) return ep_run(k, C, total, &e, 0);
    return ULC_OK;
}

/* ---- Conv and ConvTranspose ----------------------------------------------------------------- */

typedef struct conv_state {
    ulc_sh_conv g;
    nn_win w;
    int64_t isz, osz, ksz, cg, mg;
    int64_t chunk; /* images per im2col / col2im pass */
    int direct;    /* Conv 1×1, stride 1, no pads: X is the column matrix */
} conv_state;

/* col[ni, c, kk, o] = X[ni, c, o·s − pb + kk·d] (0 in the padding): [chunk][C][ksz][osz],
 * i.e. per image and group the [C/g·ksz, osz] matrix W_g multiplies. */
template <typename I>
__global__ void im2col_kernel(const float *X, float *col, nn_win w, int64_t isz, int64_t osz,
                              int64_t ksz, int64_t total) {
    NN_FOR(I, i, total) {
        I t = i / (I)osz, o = i - t * (I)osz, img_c = t / (I)ksz, kk = t - img_c * (I)ksz;
        int64_t off = 0, mul = 1;
        int inside = 1;
        for (int d = w.nsp - 1; d >= 0; d--) {
            I oq = o / (I)w.out[d], od = o - oq * (I)w.out[d];
            I kq = kk / (I)w.k[d], kd = kk - kq * (I)w.k[d];
            o = oq;
            kk = kq;
            int64_t p = (int64_t)od * w.s[d] - w.pb[d] + (int64_t)kd * w.d[d];
            if (p < 0 || p >= w.in[d]) inside = 0;
            off += p * mul;
            mul *= w.in[d];
        }
        col[i] = inside ? X[(int64_t)img_c * isz + off] : 0.0f;
    }
}

/* ConvTranspose: Y[n0 + ni, m, o] = sum over the taps kk with o + pb − kk·d = i·s (i inside X)
 * of col[ni, g, mm·ksz + kk, i] ([chunk][G][M/G·ksz][isz]), then the epilogue. */
template <typename I>
__global__ void col2im_kernel(const float *col, float *Y, nn_win w, int64_t M, int64_t G, int64_t mg,
                              int64_t ksz, int64_t isz, int64_t osz, int64_t ybase, int64_t total,
                              nn_ep e, int has_ep) {
    NN_FOR(I, j, total) {
        I i = (I)ybase + j; /* Y's index (every index of Y fits I) */
        I t = j / (I)osz, o = j - t * (I)osz, ni = t / (I)M, m = t - ni * (I)M;
        I g = m / (I)mg, mm = m - g * (I)mg;
        const float *cb = col + (((int64_t)ni * G + g) * mg + mm) * ksz * isz;
        int64_t oc[ULC_NN_MAX_SP];
        for (int d = w.nsp - 1; d >= 0; d--) {
            I q = o / (I)w.out[d];
            oc[d] = o - q * (I)w.out[d];
            o = q;
        }
        float acc = 0.0f;
        for (int64_t kk = 0; kk < ksz; kk++) {
            int64_t krem = kk, off = 0, mul = 1;
            int inside = 1;
            for (int d = w.nsp - 1; d >= 0; d--) {
                int64_t kq = krem / w.k[d], kd = krem - kq * w.k[d];
                krem = kq;
                int64_t tt = oc[d] + w.pb[d] - kd * w.d[d];
                if (tt < 0 || tt % w.s[d] != 0 || tt / w.s[d] >= w.in[d]) {
                    inside = 0;
                    break;
                }
                off += (tt / w.s[d]) * mul;
                mul *= w.in[d];
            }
            if (inside) acc += cb[kk * isz + off];
        }
        Y[i] = has_ep ? ep_apply(e, i, acc) : acc;
    }
}

/* The CPU's reference loop (k_nn_conv.c's DEFINE_CONV_REF), one thread per output element,
 * accumulating in double; the bias comes with the epilogue. */
template <typename T>
__global__ void conv_direct_kernel(const T *X, const T *W, T *Y, nn_win w, int transpose, int64_t C,
                                   int64_t M, int64_t G, int64_t isz, int64_t osz, int64_t ksz,
                                   int64_t total, nn_ep e, int has_ep) {
    int64_t cg = C / G, mg = M / G;
    UCU_FOR(i, total) {
        int64_t r = i / osz, o = i - r * osz, n = r / M, m = r - n * M, grp = m / mg, mm = m - grp * mg;
        int64_t oc[ULC_NN_MAX_SP];
        for (int d = w.nsp - 1; d >= 0; d--) {
            int64_t q = o / w.out[d];
            oc[d] = o - q * w.out[d];
            o = q;
        }
        double acc = 0.0;
        for (int64_t kk = 0; kk < ksz; kk++) {
            int64_t kc[ULC_NN_MAX_SP], krem = kk, off = 0;
            int inside = 1;
            for (int d = w.nsp - 1; d >= 0; d--) {
                int64_t q = krem / w.k[d];
                kc[d] = krem - q * w.k[d];
                krem = q;
            }
            for (int d = 0; d < w.nsp && inside; d++) {
                int64_t ii;
                if (!transpose) {
                    ii = oc[d] * w.s[d] - w.pb[d] + kc[d] * w.d[d];
                } else {
                    int64_t tt = oc[d] + w.pb[d] - kc[d] * w.d[d];
                    if (tt < 0 || tt % w.s[d] != 0) {
                        inside = 0;
                        break;
                    }
                    ii = tt / w.s[d];
                }
                if (ii < 0 || ii >= w.in[d]) inside = 0;
                off = off * w.in[d] + ii;
            }
            if (!inside) continue;
            for (int64_t ci = 0; ci < cg; ci++) {
                int64_t c = grp * cg + ci;
                T xv = X[(n * C + c) * isz + off];
                T wv = transpose ? W[(c * mg + mm) * ksz + kk] : W[(m * cg + ci) * ksz + kk];
                acc += (double)xv * (double)wv;
            }
        }
        T v = (T)acc;
        Y[i] = has_ep ? ep_apply(e, i, v) : v;
    }
}

static ulc_status conv_prepare_common(ulc_kctx *k, int transpose) {
    conv_state *s = (conv_state *)nn_state(k, sizeof(conv_state));
    if (!s) return ULC_ERR_NOMEM;
    ULC_TRY(ulc_sh_conv_geom(k, transpose, &s->g));
    const ulc_sh_conv *g = &s->g;
    if (g->dtype != ULC_DT_F32 && g->dtype != ULC_DT_F64) return ucu_refuse_dtype(k, g->dtype);
    nn_win_of(&g->w, &s->w);
    s->isz = s->osz = s->ksz = 1;
    int direct = !transpose;
    for (int i = 0; i < g->nsp; i++) {
        s->isz *= g->w.in[i];
        s->osz *= g->w.out[i];
        s->ksz *= g->w.k[i];
        if (g->w.k[i] != 1 || g->w.s[i] != 1 || g->w.pb[i] != 0 || g->w.pe[i] != 0) direct = 0;
    }
    s->cg = g->c / g->g;
    s->mg = g->m / g->g;
    s->direct = direct;
    s->chunk = 1;
    if (g->dtype != ULC_DT_F32) return ULC_OK;
    /* cuBLAS takes int dims: the per-group matrices must fit */
    int64_t rows = transpose ? s->mg * s->ksz : s->mg, cols = transpose ? s->isz : s->osz;
    int64_t inner = transpose ? s->cg : s->cg * s->ksz;
    if (!nn_fits_int(rows) || !nn_fits_int(cols) || !nn_fits_int(inner) || !nn_fits_int(g->g))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "the per-group product [%lld, %lld] x [%lld, %lld] is too large for cuBLAS "
                          "on backend cuda",
                          (long long)rows, (long long)inner, (long long)inner, (long long)cols);
    /* the column buffer of one image: Conv [C·ksz, osz], ConvTranspose [M·ksz, isz] */
    double per = (double)(transpose ? g->m : g->c) * (double)s->ksz * (double)(transpose ? s->isz : s->osz) * 4.0;
    if (!direct && per > 0) {
        double c = nn_col_bytes() / per;
        s->chunk = c < 1 ? 1 : c > (double)g->n ? g->n : (int64_t)c;
        if (s->chunk < 1) s->chunk = 1;
    } else {
        s->chunk = g->n > 0 ? g->n : 1;
    }
    return ULC_OK;
}

static ulc_status conv_prepare(ulc_kctx *k) { return ucu_prepared(k, conv_prepare_common(k, 0)); }
static ulc_status convt_prepare(ulc_kctx *k) { return ucu_prepared(k, conv_prepare_common(k, 1)); }

static ulc_status conv_run(ulc_kctx *k) {
    const conv_state *s = (const conv_state *)k->state;
    const ulc_sh_conv *g = &s->g;
    ulc_rt_tensor *y = k->out[0];
    int64_t total = g->n * g->m * s->osz;
    if (total == 0) return ULC_OK;
    nn_ep e;
    ep_init(&e, k->fuse, y);
    if (g->has_bias) bc_block(&e.c, k->in[2]->data, s->osz, g->m);
    int he = ep_busy(&e);
    if (g->dtype == ULC_DT_F64) {
        auto f = conv_direct_kernel<double>;
        UCU_LAUNCH(f, ucu_blocks(total, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k),
                   (const double *)k->in[0]->data, (const double *)k->in[1]->data, (double *)y->data,
                   s->w, g->transpose, g->c, g->m, g->g, s->isz, s->osz, s->ksz, total, e, he);
        UCU_TRY_LAUNCH(k, "direct convolution");
        return ULC_OK;
    }
    const float *X = (const float *)k->in[0]->data, *W = (const float *)k->in[1]->data;
    float *Y = (float *)y->data;
    int64_t G = g->g, C = g->c, M = g->m, cg = s->cg, mg = s->mg, ksz = s->ksz, isz = s->isz, osz = s->osz;
    if (cg == 0) return ep_run(k, Y, total, &e, 1); /* no input channels: the bias alone */
    float *col = NULL;
    if (!s->direct) {
        size_t per = (size_t)((g->transpose ? M : C) * ksz * (g->transpose ? isz : osz));
        col = (float *)ucu_scratch(k, (size_t)s->chunk * per * sizeof(float));
        if (!col) return k->err ? k->err->status : ULC_ERR_NOMEM;
    }
    for (int64_t n0 = 0; n0 < g->n; n0 += s->chunk) {
        int64_t nc = nn_min64(s->chunk, g->n - n0);
        const float *x = X + n0 * C * isz;
        if (!g->transpose) {
            int64_t kc = cg * ksz, per = C * ksz * osz; /* per image: [G][kc][osz] */
            const float *cb = x;
            if (!s->direct) {
                int64_t n = nc * per;
                auto f = nn_small(n) && nn_small(nc * C * isz) ? im2col_kernel<uint32_t> : im2col_kernel<int64_t>;
                UCU_LAUNCH(f, ucu_blocks(n, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), x, col, s->w, isz, osz,
                           ksz, n);
                UCU_TRY_LAUNCH(k, "im2col");
                cb = col;
            }
            float *yc = Y + n0 * M * osz;
            if (G <= nc) /* per group, batched over the images */
                for (int64_t gi = 0; gi < G; gi++)
                    ULC_TRY(rm_sgemm(k, 0, 0, mg, osz, kc, 1.0f, W + gi * mg * kc, kc, 0, cb + gi * kc * osz, osz,
                                     per, 0.0f, yc + gi * mg * osz, osz, M * osz, nc));
            else /* per image, batched over the groups */
                for (int64_t ni = 0; ni < nc; ni++)
                    ULC_TRY(rm_sgemm(k, 0, 0, mg, osz, kc, 1.0f, W, kc, mg * kc, cb + ni * per, osz, kc * osz,
                                     0.0f, yc + ni * M * osz, osz, mg * osz, G));
        } else {
            int64_t P = mg * ksz, per = M * ksz * isz; /* col per image: [G][P][isz] */
            if (G <= nc)
                for (int64_t gi = 0; gi < G; gi++)
                    ULC_TRY(rm_sgemm(k, 1, 0, P, isz, cg, 1.0f, W + gi * cg * P, P, 0, x + gi * cg * isz, isz,
                                     C * isz, 0.0f, col + gi * P * isz, isz, per, nc));
            else
                for (int64_t ni = 0; ni < nc; ni++)
                    ULC_TRY(rm_sgemm(k, 1, 0, P, isz, cg, 1.0f, W, P, cg * P, x + ni * C * isz, isz, cg * isz,
                                     0.0f, col + ni * per, isz, P * isz, G));
            int64_t n = nc * M * osz;
            auto f = nn_small(total) ? col2im_kernel<uint32_t> : col2im_kernel<int64_t>;
            UCU_LAUNCH(f, ucu_blocks(n, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), col, Y, s->w, M, G, mg, ksz,
                       isz, osz, n0 * M * osz, n, e, he);
            UCU_TRY_LAUNCH(k, "col2im");
        }
    }
    if (!g->transpose && he) return ep_run(k, Y, total, &e, 0);
    return ULC_OK;
}

/* ---- MaxPool and AveragePool ---------------------------------------------------------------- */

typedef struct pool_state {
    ulc_sh_pool g;
    nn_win w;
    int64_t kprod;
} pool_state;

typedef struct pool_geo {
    nn_win w;
    int64_t isz, osz, kprod, total;
    int is_max, include_pad, col_major;
} pool_geo;

/* One past the last tap t < k with b + t·dl <= in − 1 (k_nn_pool.c). */
__device__ __forceinline__ int64_t pool_hi(int64_t b, int64_t dl, int64_t in, int64_t k) {
    if (b > in - 1) return 0;
    int64_t h = (in - 1 - b) / dl + 1;
    return h < k ? h : k;
}

/* k_nn_pool.c's DEFINE_POOL_LOOP for one output element per thread. */
template <typename T, typename ACC>
__global__ void pool_kernel(const T *X, T *Y, int64_t *ind, pool_geo g, ACC lowest) {
    const nn_win &w = g.w;
    UCU_FOR(i, g.total) {
        int64_t r = i / g.osz, o = i - r * g.osz;
        const T *x = X + r * g.isz;
        int64_t base[ULC_NN_MAX_SP], lo[ULC_NN_MAX_SP], hi[ULC_NN_MAX_SP], t[ULC_NN_MAX_SP];
        int any = 1;
        for (int d = w.nsp - 1; d >= 0; d--) {
            int64_t q = o / w.out[d], od = o - q * w.out[d];
            o = q;
            int64_t b = od * w.s[d] - w.pb[d], dl = w.d[d];
            base[d] = b;
            lo[d] = b < 0 ? (-b + dl - 1) / dl : 0;
            hi[d] = pool_hi(b, dl, w.in[d], w.k[d]);
            if (lo[d] >= hi[d]) any = 0;
        }
        ACC acc = g.is_max ? lowest : (ACC)0;
        int64_t cnt = 0, best = -1;
        if (any) {
            for (int d = 0; d < w.nsp; d++) t[d] = lo[d];
            for (;;) {
                int64_t off = 0;
                for (int d = 0; d < w.nsp; d++) off = off * w.in[d] + base[d] + t[d] * w.d[d];
                ACC v = (ACC)x[off];
                if (g.is_max) {
                    if (v > acc || best < 0) {
                        acc = v;
                        best = off;
                        if (g.col_major) {
                            best = 0;
                            for (int d = w.nsp - 1; d >= 0; d--) best = best * w.in[d] + base[d] + t[d] * w.d[d];
                        }
                    }
                } else {
                    acc += v;
                }
                cnt++;
                int d = w.nsp - 1;
                while (d >= 0 && ++t[d] == hi[d]) {
                    t[d] = lo[d];
                    d--;
                }
                if (d < 0) break;
            }
        }
        if (g.is_max) {
            Y[i] = (T)acc;
            if (ind) ind[i] = best < 0 ? -1 : r * g.isz + best;
        } else {
            int64_t div = g.include_pad ? g.kprod : cnt;
            Y[i] = div ? (T)(acc / (ACC)div) : (T)0;
        }
    }
}

static ulc_status pool_prepare_common(ulc_kctx *k, int kind) {
    pool_state *s = (pool_state *)nn_state(k, sizeof(pool_state));
    if (!s) return ULC_ERR_NOMEM;
    ULC_TRY(ulc_k_need_input(k, 0, "X"));
    ULC_TRY(ulc_sh_pool_geom(k, kind, &s->g));
    int dt = s->g.dtype;
    if (!(dt == ULC_DT_F32 || dt == ULC_DT_F64 || (kind == POOL_MAX && (dt == ULC_DT_I8 || dt == ULC_DT_U8))))
        return ucu_refuse_dtype(k, dt);
    nn_win_of(&s->g.w, &s->w);
    s->kprod = 1;
    for (int d = 0; d < s->g.nsp; d++) s->kprod *= s->g.w.k[d];
    return ULC_OK;
}

static ulc_status maxpool_prepare(ulc_kctx *k) {
    return ucu_prepared(k, pool_prepare_common(k, POOL_MAX));
}
static ulc_status avgpool_prepare(ulc_kctx *k) {
    return ucu_prepared(k, pool_prepare_common(k, POOL_AVG));
}

static ulc_status pool_run(ulc_kctx *k) {
    const pool_state *s = (const pool_state *)k->state;
    pool_geo g;
    memset(&g, 0, sizeof g);
    g.w = s->w;
    g.isz = s->g.isz;
    g.osz = s->g.osz;
    g.kprod = s->kprod;
    g.total = s->g.planes * s->g.osz;
    g.is_max = s->g.kind == POOL_MAX;
    g.include_pad = s->g.include_pad;
    g.col_major = s->g.col_major;
    if (g.total == 0) return ULC_OK;
    const void *X = k->in[0]->data;
    void *Y = k->out[0]->data;
    int64_t *ind = s->g.indices ? (int64_t *)k->out[1]->data : NULL;
    unsigned nb = ucu_blocks(g.total, UCU_THREADS);
    switch (s->g.dtype) {
    case ULC_DT_F32: {
        auto f = pool_kernel<float, float>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), (const float *)X, (float *)Y, ind, g, -FLT_MAX);
        break;
    }
    case ULC_DT_F64: {
        auto f = pool_kernel<double, double>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), (const double *)X, (double *)Y, ind, g, -DBL_MAX);
        break;
    }
    case ULC_DT_I8: {
        auto f = pool_kernel<int8_t, int>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), (const int8_t *)X, (int8_t *)Y, ind, g, -128);
        break;
    }
    case ULC_DT_U8: {
        auto f = pool_kernel<uint8_t, int>;
        UCU_LAUNCH(f, nb, UCU_THREADS, 0, ucu_stream(k), (const uint8_t *)X, (uint8_t *)Y, ind, g, 0);
        break;
    }
    default: return ucu_refuse_dtype(k, s->g.dtype);
    }
    UCU_TRY_LAUNCH(k, "pooling");
    return ULC_OK;
}

/* ---- GlobalAveragePool and GlobalMaxPool ---------------------------------------------------- */

#define GPOOL_SMALL 64 /* planes at most this long: one thread each */

/* red: a block's worth of shared doubles; every thread calls it. */
__device__ __forceinline__ double nn_block_reduce(double v, double *red, int is_max) {
    int t = (int)threadIdx.x;
    __syncthreads(); /* red may still be read by a previous call */
    red[t] = v;
    __syncthreads();
    for (int h = (int)blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h) red[t] = is_max ? (red[t + h] > red[t] ? red[t + h] : red[t]) : red[t] + red[t + h];
        __syncthreads();
    }
    return red[0];
}

/* One block per plane (blocks stride over planes), blockDim.x = UCU_THREADS. */
template <typename T>
__global__ void gpool_block_kernel(const T *X, T *Y, int64_t planes, int64_t inner, int is_max, double lowest) {
    __shared__ double red[UCU_THREADS];
    for (int64_t r = blockIdx.x; r < planes; r += gridDim.x) {
        const T *x = X + r * inner;
        double acc = is_max ? lowest : 0.0;
        for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) {
            double v = (double)x[i];
            acc = is_max ? (v > acc ? v : acc) : acc + v;
        }
        acc = nn_block_reduce(acc, red, is_max);
        if (threadIdx.x == 0) Y[r] = is_max ? (T)acc : (inner ? (T)(acc / (double)inner) : (T)0);
    }
}

template <typename T>
__global__ void gpool_thread_kernel(const T *X, T *Y, int64_t planes, int64_t inner, int is_max, double lowest) {
    UCU_FOR(r, planes) {
        const T *x = X + r * inner;
        double acc = is_max ? lowest : 0.0;
        for (int64_t i = 0; i < inner; i++) {
            double v = (double)x[i];
            acc = is_max ? (v > acc ? v : acc) : acc + v;
        }
        Y[r] = is_max ? (T)acc : (inner ? (T)(acc / (double)inner) : (T)0);
    }
}

template <typename T> static ulc_status gpool_launch(ulc_kctx *k, int64_t planes, int64_t inner, int is_max, double lowest) {
    const T *X = (const T *)k->in[0]->data;
    T *Y = (T *)k->out[0]->data;
    if (inner <= GPOOL_SMALL) {
        auto f = gpool_thread_kernel<T>;
        UCU_LAUNCH(f, ucu_blocks(planes, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), X, Y, planes, inner,
                   is_max, lowest);
    } else {
        auto f = gpool_block_kernel<T>;
        UCU_LAUNCH(f, ucu_blocks(planes * UCU_THREADS, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), X, Y,
                   planes, inner, is_max, lowest);
    }
    UCU_TRY_LAUNCH(k, "global pooling");
    return ULC_OK;
}

static ulc_status gpool_prepare(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "X"));
    int dt = k->in[0]->dtype;
    if (dt != ULC_DT_F32 && dt != ULC_DT_F64) return ucu_refuse_dtype(k, dt);
    return ULC_OK;
}

static ulc_status gpool_run_common(ulc_kctx *k, int is_max) {
    const ulc_rt_tensor *x = k->in[0];
    int64_t planes = x->dims[0] * x->dims[1], inner = 1;
    for (int i = 2; i < x->rank; i++) inner *= x->dims[i];
    if (planes == 0) return ULC_OK;
    if (x->dtype == ULC_DT_F32) return gpool_launch<float>(k, planes, inner, is_max, -FLT_MAX);
    if (x->dtype == ULC_DT_F64) return gpool_launch<double>(k, planes, inner, is_max, -DBL_MAX);
    return ucu_refuse_dtype(k, x->dtype);
}

static ulc_status gavgpool_run(ulc_kctx *k) { return gpool_run_common(k, 0); }
static ulc_status gmaxpool_run(ulc_kctx *k) { return gpool_run_common(k, 1); }

/* ---- BatchNormalization --------------------------------------------------------------------- */

typedef struct bn_state {
    ulc_sh_bn g; /* X as [N, P, inner], epsilon, momentum, the training form */
    int dtype;
} bn_state;

typedef struct bn_par {
    const void *scale, *bias, *mean, *var;
    int ds, db, dm, dv;
    double eps;
} bn_par;

__device__ __forceinline__ double bn_ld(const void *p, int dt, int64_t i) {
    return dt == ULC_DT_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

__device__ __forceinline__ void bn_st(void *p, int dt, int64_t i, double v) {
    if (dt == ULC_DT_F64)
        ((double *)p)[i] = v;
    else
        ((float *)p)[i] = (float)v;
}

/* ab[c] = a, ab[p + c] = b of every channel (double, stored in X's precision). */
template <typename T> __global__ void bn_params_kernel(bn_par q, T *ab, int64_t p) {
    UCU_FOR(c, p) {
        double a = bn_ld(q.scale, q.ds, c) / sqrt(bn_ld(q.var, q.dv, c) + q.eps);
        ab[c] = (T)a;
        ab[p + c] = (T)(bn_ld(q.bias, q.db, c) - bn_ld(q.mean, q.dm, c) * a);
    }
}

/* The training form: one block per channel (blocks stride over channels): the batch's mean and
 * population variance (two passes, double), a and b from them, and the running statistics
 * running = input·momentum + batch·(1 − momentum) when requested (rm/rv non-NULL). */
template <typename T>
__global__ void bn_train_kernel(const T *X, bn_par q, T *ab, int64_t n, int64_t p, int64_t inner, void *rm,
                                int drm, void *rv, int drv, double momentum) {
    __shared__ double red[UCU_THREADS];
    int64_t cnt = n * inner;
    for (int64_t c = blockIdx.x; c < p; c += gridDim.x) {
        double sum = 0.0;
        for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
            int64_t b = j / inner, i = j - b * inner;
            sum += (double)X[(b * p + c) * inner + i];
        }
        sum = nn_block_reduce(sum, red, 0);
        double mean = cnt ? sum / (double)cnt : 0.0, sq = 0.0;
        for (int64_t j = threadIdx.x; j < cnt; j += blockDim.x) {
            int64_t b = j / inner, i = j - b * inner;
            double v = (double)X[(b * p + c) * inner + i] - mean;
            sq += v * v;
        }
        sq = nn_block_reduce(sq, red, 0);
        if (threadIdx.x == 0) {
            double var = cnt ? sq / (double)cnt : 0.0;
            double a = bn_ld(q.scale, q.ds, c) / sqrt(var + q.eps);
            ab[c] = (T)a;
            ab[p + c] = (T)(bn_ld(q.bias, q.db, c) - mean * a);
            if (rm) bn_st(rm, drm, c, bn_ld(q.mean, q.dm, c) * momentum + mean * (1 - momentum));
            if (rv) bn_st(rv, drv, c, bn_ld(q.var, q.dv, c) * momentum + var * (1 - momentum));
        }
    }
}

template <typename T, typename I>
__global__ void bn_apply_kernel(const T *X, T *Y, const T *ab, int64_t p, int64_t inner, int64_t total,
                                nn_ep e, int has_ep) {
    NN_FOR(I, i, total) {
        I c = (i / (I)inner) % (I)p;
        T v = X[i] * ab[c] + ab[p + c];
        Y[i] = has_ep ? ep_apply(e, i, v) : v;
    }
}

static ulc_status bn_prep(ulc_kctx *k) {
    bn_state *s = (bn_state *)nn_state(k, sizeof(bn_state));
    if (!s) return ULC_ERR_NOMEM;
    const ulc_rt_tensor *x = k->in[0];
    s->dtype = x->dtype;
    if (s->dtype != ULC_DT_F32 && s->dtype != ULC_DT_F64) return ucu_refuse_dtype(k, s->dtype);
    for (int i = 1; i < 5; i++)
        if (k->in[i]->dtype != ULC_DT_F32 && k->in[i]->dtype != ULC_DT_F64)
            return ucu_refuse_dtype(k, k->in[i]->dtype);
    ulc_sh_bn_params(k, &s->g);
    for (int i = 1; i <= 2 && i < k->n_out; i++)
        if (k->out[i] && k->out[i]->dtype != ULC_DT_F32 && k->out[i]->dtype != ULC_DT_F64)
            return ucu_refuse_dtype(k, k->out[i]->dtype);
    return ULC_OK;
}

static ulc_status bn_prepare(ulc_kctx *k) { return ucu_prepared(k, bn_prep(k)); }

template <typename T> static ulc_status bn_launch(ulc_kctx *k, const bn_state *s) {
    bn_par q = {k->in[1]->data, k->in[2]->data, k->in[3]->data, k->in[4]->data,
                k->in[1]->dtype, k->in[2]->dtype, k->in[3]->dtype, k->in[4]->dtype, s->g.eps};
    int64_t p = s->g.p, total = (int64_t)ulc_rt_numel(k->in[0]);
    T *ab = (T *)ucu_scratch(k, (size_t)(2 * (p > 0 ? p : 1)) * sizeof(T));
    if (!ab) return k->err ? k->err->status : ULC_ERR_NOMEM;
    if (s->g.training) {
        ulc_rt_tensor *rm = k->n_out > 1 ? k->out[1] : NULL, *rv = k->n_out > 2 ? k->out[2] : NULL;
        auto f = bn_train_kernel<T>;
        UCU_LAUNCH(f, ucu_blocks(p * UCU_THREADS, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), (const T *)k->in[0]->data, q,
                   ab, s->g.n, p, s->g.inner, rm ? rm->data : NULL, rm ? rm->dtype : 0, rv ? rv->data : NULL,
                   rv ? rv->dtype : 0, s->g.momentum);
        UCU_TRY_LAUNCH(k, "batch statistics");
    } else {
        auto f = bn_params_kernel<T>;
        UCU_LAUNCH(f, ucu_blocks(p, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), q, ab, p);
        UCU_TRY_LAUNCH(k, "batch normalization parameters");
    }
    if (total == 0) return ULC_OK;
    nn_ep e;
    ep_init(&e, k->fuse, k->out[0]);
    auto f = nn_small(total) ? bn_apply_kernel<T, uint32_t> : bn_apply_kernel<T, int64_t>;
    UCU_LAUNCH(f, ucu_blocks(total, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), (const T *)k->in[0]->data,
               (T *)k->out[0]->data, ab, p, s->g.inner > 0 ? s->g.inner : 1, total, e, ep_busy(&e));
    UCU_TRY_LAUNCH(k, "batch normalization");
    return ULC_OK;
}

static ulc_status bn_run(ulc_kctx *k) {
    const bn_state *s = (const bn_state *)k->state;
    if (s->g.p == 0) return ULC_OK;
    return s->dtype == ULC_DT_F64 ? bn_launch<double>(k, s) : bn_launch<float>(k, s);
}

/* ---- the table ------------------------------------------------------------------------------ */

/* ulc_kernel: blocked_inputs, flags, prepare, run, release, can_fuse */
static const ulc_kernel k_matmul = {0, ULC_K_RESIDUAL, mm_prepare, mm_run, ucu_free_state, nn_can_fuse};
static const ulc_kernel k_gemm = {0, ULC_K_RESIDUAL, gemm_prepare, gemm_run, ucu_free_state, nn_can_fuse};
static const ulc_kernel k_conv = {0, ULC_K_RESIDUAL, conv_prepare, conv_run, ucu_free_state, nn_can_fuse};
static const ulc_kernel k_convt = {0, ULC_K_RESIDUAL, convt_prepare, conv_run, ucu_free_state, nn_can_fuse};
static const ulc_kernel k_maxpool = {0, 0, maxpool_prepare, pool_run, ucu_free_state, NULL};
static const ulc_kernel k_avgpool = {0, 0, avgpool_prepare, pool_run, ucu_free_state, NULL};
static const ulc_kernel k_gavgpool = {0, 0, gpool_prepare, gavgpool_run, NULL, NULL};
static const ulc_kernel k_gmaxpool = {0, 0, gpool_prepare, gmaxpool_run, NULL, NULL};
static const ulc_kernel k_batchnorm = {0, 0, bn_prepare, bn_run, ucu_free_state, nn_can_fuse};

void ucu_reg_nn(ucu_table t) {
    t[ULC_OP_MatMul] = &k_matmul;
    t[ULC_OP_Gemm] = &k_gemm;
    t[ULC_OP_Conv] = &k_conv;
    t[ULC_OP_ConvTranspose] = &k_convt;
    t[ULC_OP_MaxPool] = &k_maxpool;
    t[ULC_OP_AveragePool] = &k_avgpool;
    t[ULC_OP_GlobalAveragePool] = &k_gavgpool;
    t[ULC_OP_GlobalMaxPool] = &k_gmaxpool;
    t[ULC_OP_BatchNormalization] = &k_batchnorm;
}

UCU_END
