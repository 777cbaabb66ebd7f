/*
 * k_nn_gemm.c — Gemm and MatMul (math in k_nn.c's header comment).
 *
 * float32 products run on oneDNN's row-major dnnl_sgemm (its JIT gemm; the matmul and inner
 * product primitives measured the same on these shapes, and cannot broadcast batch dims by
 * themselves). MatMul folds the batch into M when B has no batch of its own ([B, T, D] x [D, E]
 * is one [B·T, D] x [D, E] product); batched products of small matrices (attention heads) run
 * one single-threaded sgemm per batch entry across the threads, large ones one threaded sgemm
 * after another. A constant B is copied once in prepare into a layout sgemm streams well
 * (mm_copy_b; Gemm's as op(B), gemm_copy_b). float64 and the integer types run an own i-k-j loop (integers wrap as numpy's).
 *
 * Fusion (can_fuse): y = act(product + addend) runs as one pass over Y right after the product.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_nn.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- typed reference products ---------------------------------------------------------------- */

/* Rows [i0, i1) of C[M,N] = A[M,K] · B[K,N]. A and B are addressed through (row, column)
 * element strides, so transposed operands need no copies; C is dense with row stride ldc. */
typedef struct ref_mm {
    int64_t m, n, k;
    const void *a, *b;
    int64_t a_rs, a_cs, b_rs, b_cs; /* element strides of A's rows/cols and B's rows/cols */
    void *c;
    int64_t ldc;
} ref_mm;

#define DEFINE_REF_MM(NAME, T)                                                                     \
    static void NAME(const ref_mm *p, int64_t i0, int64_t i1) {                                    \
        const T *A = p->a, *B = p->b;                                                              \
        T *C = p->c;                                                                               \
        for (int64_t i = i0; i < i1; i++) {                                                        \
            T *c = C + i * p->ldc;                                                                 \
            for (int64_t j = 0; j < p->n; j++) c[j] = 0;                                           \
            for (int64_t kk = 0; kk < p->k; kk++) {                                                \
                T a = A[i * p->a_rs + kk * p->a_cs];                                               \
                const T *b = B + kk * p->b_rs;                                                     \
                if (p->b_cs == 1)                                                                  \
                    for (int64_t j = 0; j < p->n; j++) c[j] += a * b[j];                           \
                else                                                                               \
                    for (int64_t j = 0; j < p->n; j++) c[j] += a * b[j * p->b_cs];                 \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_REF_MM(ref_mm_f32, float)
DEFINE_REF_MM(ref_mm_f64, double)
DEFINE_REF_MM(ref_mm_i32, int32_t)
DEFINE_REF_MM(ref_mm_i64, int64_t)
DEFINE_REF_MM(ref_mm_u32, uint32_t)
DEFINE_REF_MM(ref_mm_u64, uint64_t)

typedef void (*ref_mm_fn)(const ref_mm *p, int64_t i0, int64_t i1);

static ref_mm_fn ref_mm_for(int dt) {
    switch (dt) {
    case ULC_DT_F32: return ref_mm_f32;
    case ULC_DT_F64: return ref_mm_f64;
    case ULC_DT_I32: return ref_mm_i32;
    case ULC_DT_I64: return ref_mm_i64;
    case ULC_DT_U32: return ref_mm_u32;
    case ULC_DT_U64: return ref_mm_u64;
    default: return NULL;
    }
}

/* ULC_OK when the products can run in dtype dt, else the error naming it. */
static ulc_status mm_check_dtype(ulc_kctx *k, int dt) {
    if (ref_mm_for(dt)) return ULC_OK;
    return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                      "dtype %s is not supported (float32, float64, int32, int64, uint32, uint64 are)",
                      ulc_dtype_name(dt));
}

/* ---- MatMul ---------------------------------------------------------------------------------- */

typedef struct mm_state {
    int dtype;
    int64_t m, n, k;
    int64_t batch; /* product of the broadcast batch dims */
    int nb; /* number of batch dims */
    int64_t bdims[ULC_RT_MAX_RANK]; /* broadcast batch dims */
    int64_t a_bs[ULC_RT_MAX_RANK],
        b_bs[ULC_RT_MAX_RANK]; /* batch strides in elements (0 = bcast) */
    int fold; /* B has no batch: one [batch·M, K] x [K, N] product */
    float *bpad; /* constant float32 B, copied (see mm_prepare) */
    int64_t ldb; /* B's row stride in elements (N unless bpad) */
    int64_t colblk; /* > 0: bpad holds B in column blocks this wide */
} mm_state;

static void mm_release(void *p) {
    mm_state *s = p;
    if (!s) return;
    free(s->bpad);
    free(s);
}

/* Works out the numpy matmul geometry of A x B; fills s when non-NULL, out dims when non-NULL. */
static ulc_status mm_geom(ulc_kctx *k, mm_state *s, int64_t *odims, int *orank) {
    const ulc_rt_tensor *a = k->in[0], *b = k->in[1];
    char s1[96], s2[96];
    if (a->dtype != b->dtype)
        return ulc_k_fail(k, ULC_ERR_INVALID, "A is %s but B is %s; MatMul needs one dtype",
                          ulc_dtype_name(a->dtype), ulc_dtype_name(b->dtype));
    ULC_TRY(mm_check_dtype(k, a->dtype));
    if (a->rank < 1 || b->rank < 1)
        return ulc_k_fail(k, ULC_ERR_INVALID, "A %s and B %s must have rank >= 1",
                          ulc_rt_shape_str(a, s1, sizeof s1), ulc_rt_shape_str(b, s2, sizeof s2));
    int64_t m = a->rank == 1 ? 1 : a->dims[a->rank - 2];
    int64_t ka = a->dims[a->rank - 1];
    int64_t kb = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
    int64_t n = b->rank == 1 ? 1 : b->dims[b->rank - 1];
    if (ka != kb)
        return ulc_k_fail(k, ULC_ERR_INVALID, "A %s and B %s: inner dims differ (%lld vs %lld)",
                          ulc_rt_shape_str(a, s1, sizeof s1), ulc_rt_shape_str(b, s2, sizeof s2),
                          (long long)ka, (long long)kb);
    int abat = a->rank > 2 ? a->rank - 2 : 0, bbat = b->rank > 2 ? b->rank - 2 : 0;
    int nb = abat > bbat ? abat : bbat;
    int64_t bdims[ULC_RT_MAX_RANK], as[ULC_RT_MAX_RANK], bs[ULC_RT_MAX_RANK];
    /* Batch strides: A's batch entries are m·k apart, B's k·n apart, row-major. */
    int64_t astr = m * ka, bstr = kb * n;
    for (int d = nb - 1; d >= 0; d--) {
        int ad = d - (nb - abat), bd = d - (nb - bbat);
        int64_t da = ad >= 0 ? a->dims[ad] : 1, db = bd >= 0 ? b->dims[bd] : 1;
        if (da != db && da != 1 && db != 1)
            return ulc_k_fail(k, ULC_ERR_INVALID, "A %s and B %s: batch dims do not broadcast",
                              ulc_rt_shape_str(a, s1, sizeof s1),
                              ulc_rt_shape_str(b, s2, sizeof s2));
        bdims[d] = da == 1 ? db : da;
        as[d] = da == 1 ? 0 : astr;
        bs[d] = db == 1 ? 0 : bstr;
        astr *= da;
        bstr *= db;
    }
    if (odims) {
        int r = 0;
        for (int d = 0; d < nb; d++) odims[r++] = bdims[d];
        if (a->rank > 1) odims[r++] = m;
        if (b->rank > 1) odims[r++] = n;
        *orank = r;
    }
    if (s) {
        s->dtype = a->dtype;
        s->m = m;
        s->n = n;
        s->k = ka;
        s->nb = nb;
        s->batch = 1;
        int b_has_batch = 0, a_dense = 1;
        for (int d = 0; d < nb; d++) {
            s->bdims[d] = bdims[d];
            s->a_bs[d] = as[d];
            s->b_bs[d] = bs[d];
            s->batch *= bdims[d];
            if (bs[d]) b_has_batch = 1;
            if (!as[d] && bdims[d] > 1) a_dense = 0;
        }
        s->fold = !b_has_batch && a_dense;
    }
    return ULC_OK;
}

static ulc_status mm_infer(ulc_kctx *k) {
    int64_t dims[ULC_RT_MAX_RANK + 2];
    int rank = 0;
    if (!k->in[0] || !k->in[1])
        return ulc_k_fail(k, ULC_ERR_INVALID, "inputs A and B are required");
    ULC_TRY(mm_geom(k, NULL, dims, &rank));
    if (rank > ULC_RT_MAX_RANK)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "result rank %d exceeds %d", rank,
                          ULC_RT_MAX_RANK);
    ulc_k_set(k->out[0], k->in[0]->dtype, rank, dims);
    return ULC_OK;
}

/* A constant float32 B is copied once, in one of two layouts:
 *  - wide B (N >= MM_WIDE, a vocabulary projection): column blocks of MM_NB, each a dense
 *    [K, MM_NB + 16] matrix. One sgemm per block streams a contiguous 0.8 MB of B instead of
 *    K rows 200 KB apart (a TLB miss per row); the blocks are shared out across the threads.
 *    [128,768]x[768,50257] went from ~60 to ~80 GFLOP/s on one core.
 *  - otherwise, when its row stride is a multiple of 512 bytes: rows padded by 16 floats. Such
 *    rows map onto a few L1 sets and sgemm's B panel loads evict each other: [128,768]x[768,3072]
 *    ran at a third of the speed it reaches with the padded stride. */
#define MM_WIDE 4096
#define MM_NB 256

static ulc_status mm_copy_b(ulc_kctx *k, mm_state *s) {
    const ulc_rt_tensor *b = k->in[1];
    const float *src = b->data;
    int64_t K = s->k, N = s->n;
    if (s->fold && N >= MM_WIDE) {
        int64_t nblk = (N + MM_NB - 1) / MM_NB, ld = MM_NB + 16;
        s->bpad = ulc_nn_alloc((size_t)(nblk * K * ld) * sizeof(float));
        if (!s->bpad) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory copying B");
        for (int64_t jb = 0; jb < nblk; jb++) {
            int64_t j0 = jb * MM_NB, nj = N - j0 < MM_NB ? N - j0 : MM_NB;
            for (int64_t r = 0; r < K; r++) {
                float *d = s->bpad + (jb * K + r) * ld;
                memcpy(d, src + r * N + j0, (size_t)nj * sizeof(float));
                memset(d + nj, 0, (size_t)(ld - nj) * sizeof(float));
            }
        }
        s->colblk = MM_NB;
        s->ldb = ld;
        return ULC_OK;
    }
    if (N % 128 != 0 || K * N < (1 << 16)) return ULC_OK;
    int64_t mats = (int64_t)(ulc_rt_numel(b) / (uint64_t)(K * N)), ldb = N + 16;
    s->bpad = ulc_nn_alloc((size_t)(mats * K * ldb) * sizeof(float));
    if (!s->bpad) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory copying B");
    for (int64_t r = 0; r < mats * K; r++) {
        memcpy(s->bpad + r * ldb, src + r * N, (size_t)N * sizeof(float));
        memset(s->bpad + r * ldb + N, 0, 16 * sizeof(float));
    }
    s->ldb = ldb;
    return ULC_OK;
}

static ulc_status mm_prepare(ulc_kctx *k) {
    mm_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ULC_TRY(mm_geom(k, s, NULL, NULL));
    s->ldb = s->n;
    if (s->dtype == ULC_DT_F32 && (k->const_inputs & 2u)) ULC_TRY(mm_copy_b(k, s));
    return ULC_OK;
}

/* Offsets of batch entry bi in A and B. */
static void mm_batch_offsets(const mm_state *s, int64_t bi, int64_t *ao, int64_t *bo) {
    int64_t a = 0, b = 0;
    for (int d = s->nb - 1; d >= 0; d--) {
        int64_t i = bi % s->bdims[d];
        bi /= s->bdims[d];
        a += i * s->a_bs[d];
        b += i * s->b_bs[d];
    }
    *ao = a;
    *bo = b;
}

typedef struct mm_job {
    const mm_state *s;
    const void *a, *b;
    void *c;
    size_t esz;
    int sgemm; /* float32 through dnnl_sgemm (single-threaded inside the parallel region) */
    dnnl_status_t st;
} mm_job;

/* Items are batch entries (each a full product). */
static void mm_batch_body(int64_t b0, int64_t b1, void *arg) {
    mm_job *j = arg;
    const mm_state *s = j->s;
    for (int64_t bi = b0; bi < b1; bi++) {
        int64_t ao, bo;
        mm_batch_offsets(s, bi, &ao, &bo);
        const char *a = (const char *)j->a + (size_t)ao * j->esz;
        if (s->ldb != s->n) bo = bo / (s->k * s->n) * (s->k * s->ldb); /* padded copy */
        const char *b = (const char *)j->b + (size_t)bo * j->esz;
        char *c = (char *)j->c + (size_t)(bi * s->m * s->n) * j->esz;
        if (j->sgemm) {
            dnnl_status_t st = dnnl_sgemm('N', 'N', s->m, s->n, s->k, 1.0f, (const float *)a, s->k,
                                          (const float *)b, s->ldb, 0.0f, (float *)c, s->n);
            if (st != dnnl_success) j->st = st;
        } else {
            ref_mm p = {s->m, s->n, s->k, a, b, s->k, 1, s->n, 1, c, s->n};
            ref_mm_for(s->dtype)(&p, 0, s->m);
        }
    }
}

/* Items are column blocks of a wide B (mm_copy_b), one single-threaded sgemm each. */
static void mm_colblk_body(int64_t b0, int64_t b1, void *arg) {
    mm_job *j = arg;
    const mm_state *s = j->s;
    int64_t rows = s->batch * s->m;
    for (int64_t jb = b0; jb < b1; jb++) {
        int64_t j0 = jb * s->colblk, nj = s->n - j0 < s->colblk ? s->n - j0 : s->colblk;
        dnnl_status_t st = dnnl_sgemm('N', 'N', rows, nj, s->k, 1.0f, (const float *)j->a, s->k,
                                      (const float *)j->b + jb * s->k * s->ldb, s->ldb, 0.0f,
                                      (float *)j->c + j0, s->n);
        if (st != dnnl_success) j->st = st;
    }
}

/* Items are rows of the folded [batch·M, K] x [K, N] product (own loops). */
static void mm_rows_body(int64_t r0, int64_t r1, void *arg) {
    mm_job *j = arg;
    const mm_state *s = j->s;
    ref_mm p = {s->batch * s->m, s->n, s->k, j->a, j->b, s->k, 1, s->n, 1, j->c, s->n};
    ref_mm_for(s->dtype)(&p, r0, r1);
}

static int mm_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static ulc_status mm_product(ulc_kctx *k) {
    const mm_state *s = k->state;
    size_t esz = ulc_k_dtype_size(s->dtype);
    void *c = k->out[0]->data;
    int64_t rows = s->batch * s->m;
    if (rows == 0 || s->n == 0) return ULC_OK;
    if (s->k == 0) {
        memset(c, 0, (size_t)(rows * s->n) * esz);
        return ULC_OK;
    }
    const void *bdata = s->bpad ? (const void *)s->bpad : k->in[1]->data;
    mm_job j = {s, k->in[0]->data, bdata, c, esz, 0, dnnl_success};
    if (s->dtype != ULC_DT_F32) {
        if (s->fold)
            ulc_k_parallel(rows, 4096 / (s->n * s->k + 1) + 1, mm_rows_body, &j);
        else
            ulc_k_parallel(s->batch, (1 << 15) / (s->m * s->n * s->k + 1) + 1, mm_batch_body, &j);
        return ULC_OK;
    }
    if (s->colblk) {
        ulc_k_parallel((s->n + s->colblk - 1) / s->colblk, 1, mm_colblk_body, &j);
        return ulc_nn_dnnl_check(k, j.st, "sgemm");
    }
    if (s->fold) {
        dnnl_status_t st = dnnl_sgemm('N', 'N', rows, s->n, s->k, 1.0f, k->in[0]->data, s->k, bdata,
                                      s->ldb, 0.0f, c, s->n);
        return ulc_nn_dnnl_check(k, st, "sgemm");
    }
    j.sgemm = 1;
    int64_t flops = s->m * s->n * s->k;
    int nt = mm_threads();
    if (nt > 1 && s->batch >= nt && flops < (int64_t)1 << 22) {
        /* Many small products: one per thread at a time (sgemm runs sequentially when called
         * inside a parallel region). */
        ulc_k_parallel(s->batch, 1, mm_batch_body, &j);
    } else {
        mm_batch_body(0, s->batch, &j);
    }
    return ulc_nn_dnnl_check(k, j.st, "sgemm");
}

/* The product, then whatever the planner fused after it (a bias Add, GELU) in one pass over Y
 * while it is still in cache. */
static ulc_status mm_run(ulc_kctx *k) {
    ULC_TRY(mm_product(k));
    ulc_nn_fuse_apply(k->fuse, k->out[0], 0);
    return ULC_OK;
}

static const ulc_kernel k_matmul = {.infer = mm_infer, .prepare = mm_prepare, .run = mm_run, .release = mm_release, .can_fuse = ulc_nn_can_fuse};

/* ---- Gemm ------------------------------------------------------------------------------------ */

typedef struct gemm_state {
    int dtype;
    int ta, tb;
    int64_t m, n, k;
    float alpha, beta;
    int has_c;
    int64_t c_rs, c_cs; /* C's element strides when broadcast to [M, N] (0 = broadcast) */
    float *bpad;        /* a constant float32 B as op(B) [K, ldb] (gemm_copy_b), or NULL */
    int64_t ldb;
} gemm_state;

static ulc_status gemm_geom(ulc_kctx *k, gemm_state *s) {
    const ulc_rt_tensor *a = k->in[0], *b = k->n_in > 1 ? k->in[1] : NULL;
    const ulc_rt_tensor *c = k->n_in > 2 ? k->in[2] : NULL;
    char s1[96], s2[96];
    if (!a || !b) return ulc_k_fail(k, ULC_ERR_INVALID, "inputs A and B are required");
    if (k->opset < 11 && !c)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input C is required before opset 11");
    if (a->dtype != b->dtype || (c && c->dtype != a->dtype))
        return ulc_k_fail(k, ULC_ERR_INVALID, "A, B and C must have one dtype (A %s, B %s)",
                          ulc_dtype_name(a->dtype), ulc_dtype_name(b->dtype));
    ULC_TRY(mm_check_dtype(k, a->dtype));
    if (a->rank != 2 || b->rank != 2)
        return ulc_k_fail(k, ULC_ERR_INVALID, "A %s and B %s must be matrices",
                          ulc_rt_shape_str(a, s1, sizeof s1), ulc_rt_shape_str(b, s2, sizeof s2));
    s->dtype = a->dtype;
    s->ta = ulc_k_attr_int(k, "transA", 0) != 0;
    s->tb = ulc_k_attr_int(k, "transB", 0) != 0;
    s->alpha = ulc_k_attr_float(k, "alpha", 1.0f);
    s->beta = ulc_k_attr_float(k, "beta", 1.0f);
    s->m = a->dims[s->ta ? 1 : 0];
    s->k = a->dims[s->ta ? 0 : 1];
    int64_t kb = b->dims[s->tb ? 1 : 0];
    s->n = b->dims[s->tb ? 0 : 1];
    if (kb != s->k)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "op(A) is [%lld, %lld] but op(B) is [%lld, %lld] (transA=%d, transB=%d)",
                          (long long)s->m, (long long)s->k, (long long)kb, (long long)s->n, s->ta,
                          s->tb);
    s->has_c = c != NULL;
    if (c) {
        /* Unidirectional broadcast of C to [M, N]. */
        int64_t cm = c->rank == 2 ? c->dims[0] : 1;
        int64_t cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        if (c->rank > 2 || (cm != 1 && cm != s->m) || (cn != 1 && cn != s->n))
            return ulc_k_fail(k, ULC_ERR_INVALID, "C %s does not broadcast to [%lld, %lld]",
                              ulc_rt_shape_str(c, s1, sizeof s1), (long long)s->m, (long long)s->n);
        if (k->opset < 7 && ulc_k_attr_int(k, "broadcast", 0) == 0 && (cm != s->m || cn != s->n))
            return ulc_k_fail(k, ULC_ERR_INVALID, "C %s must be [%lld, %lld] when broadcast = 0",
                              ulc_rt_shape_str(c, s1, sizeof s1), (long long)s->m, (long long)s->n);
        s->c_rs = cm == 1 ? 0 : cn;
        s->c_cs = cn == 1 ? 0 : 1;
    }
    return ULC_OK;
}

static ulc_status gemm_infer(ulc_kctx *k) {
    gemm_state s;
    ULC_TRY(gemm_geom(k, &s));
    int64_t dims[2] = {s.m, s.n};
    ulc_k_set(k->out[0], s.dtype, 2, dims);
    return ULC_OK;
}

/* A constant float32 B is copied once as op(B), [K, N] row-major (transposed when transB),
 * with rows padded by 16 floats when N is a multiple of 128 (the L1 set conflicts mm_copy_b
 * describes): torch's Linear export (transB = 1) and GPT-2's Conv1D (transB = 0) both then
 * run sgemm's 'N','N' case on a stride it streams well. [128,768]x[768,3072] + bias went from
 * 1.15x to about 1.0x onnxruntime's time. */
static ulc_status gemm_copy_b(ulc_kctx *k, gemm_state *s) {
    const float *src = k->in[1]->data;
    int64_t K = s->k, N = s->n, ldb = N % 128 == 0 ? N + 16 : N;
    if (K * N < (1 << 16) || (!s->tb && ldb == N)) return ULC_OK; /* small, or as good as it is */
    if (!(s->bpad = ulc_nn_alloc((size_t)(K * ldb) * sizeof(float))))
        return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory copying B");
    for (int64_t r = 0; r < K; r++) {
        float *d = s->bpad + r * ldb;
        if (s->tb)
            for (int64_t c = 0; c < N; c++) d[c] = src[c * K + r];
        else
            memcpy(d, src + r * N, (size_t)N * sizeof(float));
        for (int64_t c = N; c < ldb; c++) d[c] = 0.0f;
    }
    s->ldb = ldb;
    return ULC_OK;
}

static ulc_status gemm_prepare(ulc_kctx *k) {
    gemm_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ULC_TRY(gemm_geom(k, s));
    if (s->dtype == ULC_DT_F32 && (k->const_inputs & 2u)) ULC_TRY(gemm_copy_b(k, s));
    return ULC_OK;
}

static void gemm_release(void *p) {
    gemm_state *s = p;
    if (s) free(s->bpad);
    free(s);
}

typedef struct gemm_job {
    const gemm_state *s;
    const ulc_kctx *k;
} gemm_job;

/* Rows [r0, r1) of Y = alpha · op(A) op(B) + beta · C in the own loop (any dtype). */
static void gemm_ref_body(int64_t r0, int64_t r1, void *arg) {
    const gemm_job *j = arg;
    const gemm_state *s = j->s;
    const ulc_kctx *k = j->k;
    ref_mm p = {s->m,
                s->n,
                s->k,
                k->in[0]->data,
                k->in[1]->data,
                s->ta ? 1 : s->k,
                s->ta ? s->m : 1,
                s->tb ? 1 : s->n,
                s->tb ? s->k : 1,
                k->out[0]->data,
                s->n};
    ref_mm_for(s->dtype)(&p, r0, r1);
    ulc_rt_tensor *y = k->out[0];
    const ulc_rt_tensor *c = s->has_c ? k->in[2] : NULL;
    if (s->alpha == 1.0f && (!c || s->beta == 0.0f)) return;
    for (int64_t i = r0; i < r1; i++)
        for (int64_t jj = 0; jj < s->n; jj++) {
            uint64_t o = (uint64_t)(i * s->n + jj);
            double v = (double)s->alpha * ulc_k_f64_at(y, o);
            if (c) v += (double)s->beta * ulc_k_f64_at(c, (uint64_t)(i * s->c_rs + jj * s->c_cs));
            ulc_k_store_f64(y, o, v);
        }
}

static ulc_status gemm_product(ulc_kctx *k) {
    const gemm_state *s = k->state;
    if (s->m == 0 || s->n == 0) return ULC_OK;
    if (s->dtype != ULC_DT_F32 || s->k == 0) {
        gemm_job j = {s, k};
        ulc_k_parallel(s->m, 4096 / (s->n * (s->k + 1)) + 1, gemm_ref_body, &j);
        return ULC_OK;
    }
    float *y = k->out[0]->data;
    float beta = 0.0f;
    if (s->has_c && s->beta != 0.0f) {
        /* Y = beta · C broadcast, then sgemm accumulates alpha · op(A) op(B) into it. */
        const float *c = k->in[2]->data;
        for (int64_t i = 0; i < s->m; i++)
            for (int64_t jj = 0; jj < s->n; jj++)
                y[i * s->n + jj] = s->beta * c[i * s->c_rs + jj * s->c_cs];
        beta = 1.0f;
    }
    dnnl_status_t st =
        s->bpad ? dnnl_sgemm(s->ta ? 'T' : 'N', 'N', s->m, s->n, s->k, s->alpha, k->in[0]->data,
                             s->ta ? s->m : s->k, s->bpad, s->ldb, beta, y, s->n)
                : dnnl_sgemm(s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->m, s->n, s->k, s->alpha,
                             k->in[0]->data, s->ta ? s->m : s->k, k->in[1]->data,
                             s->tb ? s->k : s->n, beta, y, s->n);
    return ulc_nn_dnnl_check(k, st, "sgemm");
}

static ulc_status gemm_run(ulc_kctx *k) {
    ULC_TRY(gemm_product(k));
    ulc_nn_fuse_apply(k->fuse, k->out[0], 0);
    return ULC_OK;
}

static const ulc_kernel k_gemm = {.infer = gemm_infer, .prepare = gemm_prepare, .run = gemm_run, .release = gemm_release, .can_fuse = ulc_nn_can_fuse};

void ulc_nn_register_gemm(const ulc_kernel **table) {
    table[ULC_OP_Gemm] = &k_gemm;
    table[ULC_OP_MatMul] = &k_matmul;
}
