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
 * Where oneDNN has a blocked-weights matmul for the CPU (its brgemm kernels: AVX-512 and up), a
 * float32 product with a constant 2-D B — a linear layer's weight, a MatMul's or a Gemm's — runs
 * on that primitive instead, B reordered once at prepare into the layout it streams (pmm_*): the
 * weight is packed once per plan, never again per call as sgemm does, and the kernels reach
 * 290-310 GFLOP/s on transformer shapes ([197,384]x[384,1536]: 300 against sgemm's 140-260 on
 * a 2-core AVX-512 machine). Gemm's bias vector goes in as the primitive's bias. Without such
 * an implementation (AVX2: oneDNN offers only its plain gemm there), the sgemm paths run.
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

/* ---- packed products: oneDNN's matmul on a B packed once ------------------------------------ */

typedef struct pmm {
    dnnl_primitive_t prim;
    dnnl_memory_t m_a, m_w, m_bias, m_y, m_res;
    int res_arg; /* the residual's execution argument (its binary post-op), 0 without one */
    void *w; /* B in the primitive's layout */
    /* bfloat16 products (ULC_PRECISION_BF16): B packed as bfloat16, and A rounded to bfloat16
     * (cvt, from m_a32 into m_a, held in the scratch buffer) before each product */
    dnnl_primitive_t cvt;
    dnnl_memory_t m_a32;
    size_t a_bytes;
} pmm;

static void pmm_release(pmm *p) {
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->cvt) {
        dnnl_primitive_destroy(p->cvt);
        ulc_nn_scratch_drop();
    }
    if (p->m_a32) dnnl_memory_destroy(p->m_a32);
    if (p->m_a) dnnl_memory_destroy(p->m_a);
    if (p->m_w) dnnl_memory_destroy(p->m_w);
    if (p->m_bias) dnnl_memory_destroy(p->m_bias);
    if (p->m_y) dnnl_memory_destroy(p->m_y);
    if (p->m_res) dnnl_memory_destroy(p->m_res);
    ulc_nn_pack_release(p->w);
    memset(p, 0, sizeof *p);
}

/* Fills a packed B: oneDNN's reorder from the plain (or transposed) B. */
typedef struct pmm_fill_arg {
    ulc_kctx *k;
    dnnl_engine_t eng;
    const dnnl_memory_desc_t *user, *packed;
    const float *B;
} pmm_fill_arg;

static ulc_status pmm_fill(void *dst, void *arg) {
    const pmm_fill_arg *a = arg;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_status_t st = dnnl_memory_create(&from, a->user, a->eng, (void *)(uintptr_t)a->B);
    if (st == dnnl_success) st = dnnl_memory_create(&to, a->packed, a->eng, dst);
    if (st == dnnl_success) st = ulc_nn_reorder_create(a->user, a->packed, &reorder);
    if (st == dnnl_success) st = ulc_nn_reorder_run(reorder, from, to);
    if (reorder) dnnl_primitive_destroy(reorder);
    if (from) dnnl_memory_destroy(from);
    if (to) dnnl_memory_destroy(to);
    return ulc_nn_dnnl_check(a->k, st, "packing the weights of a matmul");
}

/* ULC_NO_PACKED_MATMUL=1 keeps every product on sgemm (to compare the two on one machine). */
static int pmm_enabled(void) {
    const char *e = getenv("ULC_NO_PACKED_MATMUL");
    return !(e && *e && strcmp(e, "0") != 0);
}

/* Y[M, N] = act(A[M, K] · B (+ bias[N])) (+ R), B a constant [K, N], or [N, K] read transposed
 * (tb); act: NULL, or a fuse whose activation becomes the primitive's eltwise post-op and whose
 * residual R ([M, N]) its binary add post-op. On ULC_OK without p->prim, oneDNN has no
 * blocked-weights kernel here: the caller runs sgemm. Under ULC_PRECISION_BF16 the product
 * takes A and B rounded to bfloat16 (to nearest even, oneDNN's reorder) and sums in float32;
 * the bias, the post-ops and Y stay float32. */
static ulc_status pmm_prepare(ulc_kctx *k, pmm *p, int64_t M, int64_t K, int64_t N, const float *B, int tb,
                              int bias, const ulc_kfuse *act) {
    memset(p, 0, sizeof *p);
    if (M <= 0 || K <= 0 || N <= 0 || K * N < (1 << 16) || !pmm_enabled()) return ULC_OK;
    dnnl_engine_t eng;
    ULC_TRY(ulc_nn_dnnl(k, &eng, NULL));
    int bf = k->precision == ULC_PRECISION_BF16;
    dnnl_data_type_t dt = bf ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t ad = {M, K}, wd = {K, N}, bd = {1, N}, yd = {M, N};
    dnnl_memory_desc_t a_md, a32_md, w_user, w_any, b_md, y_md;
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dt, dnnl_ab);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&a32_md, 2, ad, dnnl_f32, dnnl_ab);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&w_user, 2, wd, dnnl_f32, tb ? dnnl_ba : dnnl_ab);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&w_any, 2, wd, dt, dnnl_format_tag_any);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dnnl_f32, dnnl_ab);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&y_md, 2, yd, dnnl_f32, dnnl_ab);
    if (st != dnnl_success) return ulc_nn_dnnl_check(k, st, "matmul descriptors");
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    int res = act && act->residual;
    if (act && (act->act != ULC_ACT_NONE || res)) {
        st = dnnl_primitive_attr_create(&attr);
        if (st == dnnl_success) st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) st = ulc_nn_append_act(po, act);
        if (st == dnnl_success && res) {
            p->res_arg = DNNL_ARG_ATTR_MULTIPLE_POST_OP(dnnl_post_ops_len(po)) | DNNL_ARG_SRC_1;
            st = dnnl_post_ops_append_binary(po, dnnl_binary_add, &y_md);
        }
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
        if (po) dnnl_post_ops_destroy(po);
        if (st != dnnl_success) {
            if (attr) dnnl_primitive_attr_destroy(attr);
            return ulc_nn_dnnl_check(k, st, "matmul post-ops");
        }
    }
    st = dnnl_matmul_desc_init(&md, &a_md, &w_any, bias ? &b_md : NULL, &y_md);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ULC_OK; /* no such matmul: sgemm */
    const char *impl = NULL;
    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl ||
        strncmp(impl, "brg", 3) != 0 || !w_md) {
        dnnl_primitive_desc_destroy(pd); /* the plain gemm behind it: sgemm with our copies is as fast */
        return ULC_OK;
    }
    /* the packed B: shared with every plan that packs this weight into the same layout */
    ulc_nn_pack_key key;
    ulc_nn_pack_key_init(k, 1, 1, &key);
    key.p[0] = K;
    key.p[1] = N;
    key.p[2] = tb;
    key.has_md = 1;
    key.md = *w_md;
    pmm_fill_arg fa = {k, eng, &w_user, &key.md, B}; /* w_md dies with pd */
    st = dnnl_primitive_create(&p->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) {
        pmm_release(p);
        return ulc_nn_dnnl_check(k, st, "creating a matmul");
    }
    p->w = ulc_nn_pack_acquire(k, &key, dnnl_memory_desc_get_size(&key.md), pmm_fill, &fa);
    if (!p->w) {
        pmm_release(p);
        return k->err ? k->err->status : ULC_ERR_NOMEM;
    }
    st = dnnl_memory_create(&p->m_w, &key.md, eng, p->w);
    if (st == dnnl_success) st = dnnl_memory_create(&p->m_a, &a_md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success && bf) {
        st = dnnl_memory_create(&p->m_a32, &a32_md, eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success) st = ulc_nn_reorder_create(&a32_md, &a_md, &p->cvt);
        if (st == dnnl_success) {
            ulc_nn_scratch_hold(); /* A's bfloat16 copy lives there during a run */
            p->a_bytes = dnnl_memory_desc_get_size(&a_md);
        }
    }
    if (st == dnnl_success && bias) st = dnnl_memory_create(&p->m_bias, &b_md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success) st = dnnl_memory_create(&p->m_y, &y_md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success && res) st = dnnl_memory_create(&p->m_res, &y_md, eng, DNNL_MEMORY_NONE);
    if (st != dnnl_success) {
        pmm_release(p);
        return ulc_nn_dnnl_check(k, st, "matmul memories");
    }
    return ULC_OK;
}

static ulc_status pmm_run(ulc_kctx *k, const pmm *p, const void *a, const void *bias, void *y) {
    dnnl_stream_t stream;
    ulc_nn_scratch sc = {NULL, 0};
    ULC_TRY(ulc_nn_run_begin(k, p->cvt ? p->a_bytes : 0, &stream, &sc));
    dnnl_status_t st;
    if (p->cvt) { /* A rounded to bfloat16 into the scratch, the product reads it there */
        st = dnnl_memory_set_data_handle(p->m_a32, (void *)(uintptr_t)a);
        if (st == dnnl_success) st = dnnl_memory_set_data_handle(p->m_a, sc.p);
        if (st == dnnl_success) st = ulc_nn_reorder_run(p->cvt, p->m_a32, p->m_a);
    } else {
        st = dnnl_memory_set_data_handle(p->m_a, (void *)(uintptr_t)a);
    }
    if (st == dnnl_success) st = dnnl_memory_set_data_handle(p->m_y, y);
    if (st == dnnl_success && p->m_bias) st = dnnl_memory_set_data_handle(p->m_bias, (void *)(uintptr_t)bias);
    if (st == dnnl_success && p->m_res)
        st = dnnl_memory_set_data_handle(p->m_res, k->fuse->residual->data);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[5];
        int na = 0;
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->m_a};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, p->m_w};
        if (p->m_bias) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->m_bias};
        if (p->m_res) args[na++] = (dnnl_exec_arg_t){p->res_arg, p->m_res};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->m_y};
        st = dnnl_primitive_execute(p->prim, stream, na, args);
    }
    ulc_nn_scratch_done(&sc);
    return ulc_nn_dnnl_check(k, st, "matmul");
}

/* A fused addend that is a bias row: N float32 values broadcast over the product's rows. */
static int bias_row(const ulc_rt_tensor *a, int64_t n) {
    if (!a || a->dtype != ULC_DT_F32 || ulc_rt_numel(a) != (uint64_t)n || a->rank < 1 || a->dims[a->rank - 1] != n)
        return 0;
    return 1; /* the other dims are 1 */
}

/* ---- MatMul ---------------------------------------------------------------------------------- */

typedef struct mm_state {
    ulc_sh_matmul g; /* the geometry (runtime/shape/params.h) */
    float *bpad; /* constant float32 B, copied (see mm_prepare) */
    int64_t ldb; /* B's row stride in elements (N unless bpad) */
    int64_t colblk; /* > 0: bpad holds B in column blocks this wide */
    pmm pk; /* a constant 2-D float32 B packed for oneDNN's matmul (pk.prim), when it has one */
    int pk_fused; /* pk applies the whole of k->fuse (its addend as the bias, its activation) */
} mm_state;

static void mm_release(void *p) {
    mm_state *s = p;
    if (!s) return;
    pmm_release(&s->pk);
    ulc_nn_pack_release(s->bpad);
    free(s);
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

/* The copies' layouts (kinds of ulc_nn_pack_key): column blocks, padded rows, Gemm's op(B). */
enum { PACK_COLBLK = 2, PACK_ROWS = 3, PACK_GEMM_B = 4 };

typedef struct copy_arg {
    const float *src;
    int64_t K, N, ld, mats;
    int kind, tb;
} copy_arg;

static ulc_status copy_fill(void *dst, void *arg) {
    const copy_arg *c = arg;
    float *out = dst;
    const float *src = c->src;
    int64_t K = c->K, N = c->N, ld = c->ld;
    if (c->kind == PACK_COLBLK) {
        int64_t nblk = (N + MM_NB - 1) / MM_NB;
        for (int64_t jb = 0; jb < nblk; jb++) {
            int64_t j0 = jb * MM_NB, nj = N - j0 < MM_NB ? N - j0 : MM_NB;
            for (int64_t r = 0; r < K; r++) {
                float *d = out + (jb * K + r) * ld;
                memcpy(d, src + r * N + j0, (size_t)nj * sizeof(float));
                memset(d + nj, 0, (size_t)(ld - nj) * sizeof(float));
            }
        }
        return ULC_OK;
    }
    for (int64_t r = 0; r < c->mats * K; r++) {
        float *d = out + r * ld;
        if (c->tb) /* Gemm's op(B): [N, K] read transposed */
            for (int64_t col = 0; col < N; col++) d[col] = src[col * K + r];
        else
            memcpy(d, src + r * N, (size_t)N * sizeof(float));
        for (int64_t col = N; col < ld; col++) d[col] = 0.0f;
    }
    return ULC_OK;
}

/* B copied (or shared: ulc_nn_pack_acquire) in a layout of copy_fill's. */
static float *copy_b(ulc_kctx *k, copy_arg *c) {
    ulc_nn_pack_key key;
    ulc_nn_pack_key_init(k, 1, c->kind, &key);
    key.p[0] = c->K * 2 + c->tb;
    key.p[1] = c->N;
    key.p[2] = c->ld * 4096 + c->mats;
    size_t rows = c->kind == PACK_COLBLK ? (size_t)((c->N + MM_NB - 1) / MM_NB * c->K) : (size_t)(c->mats * c->K);
    return ulc_nn_pack_acquire(k, &key, rows * (size_t)c->ld * sizeof(float), copy_fill, c);
}

static ulc_status mm_copy_b(ulc_kctx *k, mm_state *s) {
    const ulc_rt_tensor *b = k->in[1];
    int64_t K = s->g.k, N = s->g.n;
    copy_arg c = {b->data, K, N, 0, 1, 0, 0};
    if (s->g.fold && N >= MM_WIDE) {
        c.kind = PACK_COLBLK;
        c.ld = MM_NB + 16;
        if (!(s->bpad = copy_b(k, &c))) return k->err->status;
        s->colblk = MM_NB;
        s->ldb = c.ld;
        return ULC_OK;
    }
    if (N % 128 != 0 || K * N < (1 << 16)) return ULC_OK;
    c.kind = PACK_ROWS;
    c.mats = (int64_t)(ulc_rt_numel(b) / (uint64_t)(K * N));
    c.ld = N + 16;
    if (!(s->bpad = copy_b(k, &c))) return k->err->status;
    s->ldb = c.ld;
    return ULC_OK;
}

static ulc_status mm_prepare(ulc_kctx *k) {
    mm_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ULC_TRY(ulc_sh_matmul_geom(k, &s->g, NULL, NULL));
    s->ldb = s->g.n;
    /* a vocabulary head (N >= MM_WIDE) streams better as sgemm's column blocks (mm_copy_b):
     * [128,768]x[768,50257] took 34-35 ms there against 38-40 ms packed; in bfloat16 it packs */
    int wide_ok = s->g.n < MM_WIDE || k->precision == ULC_PRECISION_BF16;
    if (s->g.dtype == ULC_DT_F32 && (k->const_inputs & 2u) && s->g.fold && k->in[1]->rank == 2 && wide_ok) {
        /* a linear layer's bias Add and activation, fused by the planner, run in the primitive */
        int row = k->fuse && bias_row(k->fuse->addend, s->g.n);
        int all = !k->fuse || !k->fuse->addend || row;
        ULC_TRY(pmm_prepare(k, &s->pk, s->g.batch * s->g.m, s->g.k, s->g.n, k->in[1]->data, 0, row,
                            all ? k->fuse : NULL));
        s->pk_fused = s->pk.prim && all;
    }
    if (s->g.dtype == ULC_DT_F32 && (k->const_inputs & 2u) && !s->pk.prim) ULC_TRY(mm_copy_b(k, s));
    if (s->bpad || s->pk.prim) k->packed_inputs |= 2u; /* run reads the copy */
    return ULC_OK;
}

/* Offsets of batch entry bi in A and B. */
static void mm_batch_offsets(const mm_state *s, int64_t bi, int64_t *ao, int64_t *bo) {
    int64_t a = 0, b = 0;
    for (int d = s->g.nb - 1; d >= 0; d--) {
        int64_t i = bi % s->g.bdims[d];
        bi /= s->g.bdims[d];
        a += i * s->g.a_bs[d];
        b += i * s->g.b_bs[d];
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
        if (s->ldb != s->g.n) bo = bo / (s->g.k * s->g.n) * (s->g.k * s->ldb); /* padded copy */
        const char *b = (const char *)j->b + (size_t)bo * j->esz;
        char *c = (char *)j->c + (size_t)(bi * s->g.m * s->g.n) * j->esz;
        if (j->sgemm) {
            dnnl_status_t st = dnnl_sgemm('N', 'N', s->g.m, s->g.n, s->g.k, 1.0f, (const float *)a, s->g.k,
                                          (const float *)b, s->ldb, 0.0f, (float *)c, s->g.n);
            if (st != dnnl_success) j->st = st;
        } else {
            ref_mm p = {s->g.m, s->g.n, s->g.k, a, b, s->g.k, 1, s->g.n, 1, c, s->g.n};
            ref_mm_for(s->g.dtype)(&p, 0, s->g.m);
        }
    }
}

/* Items are column blocks of a wide B (mm_copy_b), one single-threaded sgemm each. */
static void mm_colblk_body(int64_t b0, int64_t b1, void *arg) {
    mm_job *j = arg;
    const mm_state *s = j->s;
    int64_t rows = s->g.batch * s->g.m;
    for (int64_t jb = b0; jb < b1; jb++) {
        int64_t j0 = jb * s->colblk, nj = s->g.n - j0 < s->colblk ? s->g.n - j0 : s->colblk;
        dnnl_status_t st = dnnl_sgemm('N', 'N', rows, nj, s->g.k, 1.0f, (const float *)j->a, s->g.k,
                                      (const float *)j->b + jb * s->g.k * s->ldb, s->ldb, 0.0f,
                                      (float *)j->c + j0, s->g.n);
        if (st != dnnl_success) j->st = st;
    }
}

/* Items are rows of the folded [batch·M, K] x [K, N] product (own loops). */
static void mm_rows_body(int64_t r0, int64_t r1, void *arg) {
    mm_job *j = arg;
    const mm_state *s = j->s;
    ref_mm p = {s->g.batch * s->g.m, s->g.n, s->g.k, j->a, j->b, s->g.k, 1, s->g.n, 1, j->c, s->g.n};
    ref_mm_for(s->g.dtype)(&p, r0, r1);
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
    size_t esz = ulc_k_dtype_size(s->g.dtype);
    void *c = k->out[0]->data;
    int64_t rows = s->g.batch * s->g.m;
    if (rows == 0 || s->g.n == 0) return ULC_OK;
    if (s->g.k == 0) {
        memset(c, 0, (size_t)(rows * s->g.n) * esz);
        return ULC_OK;
    }
    if (s->pk.prim)
        return pmm_run(k, &s->pk, k->in[0]->data, s->pk_fused && k->fuse ? k->fuse->addend ? k->fuse->addend->data : NULL : NULL, c);
    const void *bdata = s->bpad ? (const void *)s->bpad : k->in[1]->data;
    mm_job j = {s, k->in[0]->data, bdata, c, esz, 0, dnnl_success};
    if (s->g.dtype != ULC_DT_F32) {
        if (s->g.fold)
            ulc_k_parallel(rows, 4096 / (s->g.n * s->g.k + 1) + 1, mm_rows_body, &j);
        else
            ulc_k_parallel(s->g.batch, (1 << 15) / (s->g.m * s->g.n * s->g.k + 1) + 1, mm_batch_body, &j);
        return ULC_OK;
    }
    if (s->colblk) {
        ulc_k_parallel((s->g.n + s->colblk - 1) / s->colblk, 1, mm_colblk_body, &j);
        return ulc_nn_dnnl_check(k, j.st, "sgemm");
    }
    if (s->g.fold) {
        dnnl_status_t st = dnnl_sgemm('N', 'N', rows, s->g.n, s->g.k, 1.0f, k->in[0]->data, s->g.k, bdata,
                                      s->ldb, 0.0f, c, s->g.n);
        return ulc_nn_dnnl_check(k, st, "sgemm");
    }
    j.sgemm = 1;
    int64_t flops = s->g.m * s->g.n * s->g.k;
    int nt = mm_threads();
    if (nt > 1 && s->g.batch >= nt && flops < (int64_t)1 << 22) {
        /* Many small products: one per thread at a time (sgemm runs sequentially when called
         * inside a parallel region). */
        ulc_k_parallel(s->g.batch, 1, mm_batch_body, &j);
    } else {
        mm_batch_body(0, s->g.batch, &j);
    }
    return ulc_nn_dnnl_check(k, j.st, "sgemm");
}

/* The product, then whatever the planner fused after it (a bias Add, GELU) in one pass over Y
 * while it is still in cache. */
static ulc_status mm_run(ulc_kctx *k) {
    const mm_state *s = k->state;
    ULC_TRY(mm_product(k));
    if (!s->pk_fused) ulc_nn_fuse_apply(k->fuse, k->out[0], 0);
    return ULC_OK;
}

static const ulc_kernel k_matmul = {.flags = ULC_K_RESIDUAL, .prepare = mm_prepare, .run = mm_run, .release = mm_release, .can_fuse = ulc_nn_can_fuse_residual};

/* ---- Gemm ------------------------------------------------------------------------------------ */

typedef struct gemm_state {
    ulc_sh_gemm g; /* the geometry (runtime/shape/params.h) */
    float *bpad;        /* a constant float32 B as op(B) [K, ldb] (gemm_copy_b), or NULL */
    int64_t ldb;
    pmm pk;             /* a constant B packed for oneDNN's matmul (pk.prim), when it has one */
    int pk_bias;        /* pk adds C, a bias vector (beta 1) */
    int pk_fused;       /* pk applies the whole of k->fuse (an activation after Gemm) */
} gemm_state;

/* A constant float32 B is copied once as op(B), [K, N] row-major (transposed when transB),
 * with rows padded by 16 floats when N is a multiple of 128 (the L1 set conflicts mm_copy_b
 * describes): torch's Linear export (transB = 1) and GPT-2's Conv1D (transB = 0) both then
 * run sgemm's 'N','N' case on a stride it streams well. [128,768]x[768,3072] + bias went from
 * 1.15x to about 1.0x onnxruntime's time. */
static ulc_status gemm_copy_b(ulc_kctx *k, gemm_state *s) {
    int64_t K = s->g.k, N = s->g.n, ldb = N % 128 == 0 ? N + 16 : N;
    if (K * N < (1 << 16) || (!s->g.tb && ldb == N)) return ULC_OK; /* small, or as good as it is */
    copy_arg c = {k->in[1]->data, K, N, ldb, 1, PACK_GEMM_B, s->g.tb};
    if (!(s->bpad = copy_b(k, &c))) return k->err->status;
    s->ldb = ldb;
    return ULC_OK;
}

static ulc_status gemm_prepare(ulc_kctx *k) {
    gemm_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ULC_TRY(ulc_sh_gemm_geom(k, &s->g));
    const ulc_sh_gemm *g = &s->g;
    /* the packed matmul: alpha 1, A as it is, and no C or a bias vector C added once */
    int bias = g->has_c && g->beta != 0.0f, bias_vec = g->c_rs == 0 && g->c_cs == 1 && g->beta == 1.0f;
    if (g->dtype == ULC_DT_F32 && (k->const_inputs & 2u) && g->alpha == 1.0f && !g->ta && (!bias || bias_vec)) {
        int act_only = k->fuse && !k->fuse->addend; /* an addend after Gemm's own C: applied after */
        ULC_TRY(pmm_prepare(k, &s->pk, g->m, g->k, g->n, k->in[1]->data, g->tb, bias, act_only ? k->fuse : NULL));
        s->pk_bias = bias;
        s->pk_fused = s->pk.prim && (!k->fuse || act_only);
    }
    if (g->dtype == ULC_DT_F32 && (k->const_inputs & 2u) && !s->pk.prim) ULC_TRY(gemm_copy_b(k, s));
    if (s->bpad || s->pk.prim) k->packed_inputs |= 2u; /* run reads the copy */
    return ULC_OK;
}

static void gemm_release(void *p) {
    gemm_state *s = p;
    if (s) {
        pmm_release(&s->pk);
        ulc_nn_pack_release(s->bpad);
    }
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
    ref_mm p = {s->g.m,
                s->g.n,
                s->g.k,
                k->in[0]->data,
                k->in[1]->data,
                s->g.ta ? 1 : s->g.k,
                s->g.ta ? s->g.m : 1,
                s->g.tb ? 1 : s->g.n,
                s->g.tb ? s->g.k : 1,
                k->out[0]->data,
                s->g.n};
    ref_mm_for(s->g.dtype)(&p, r0, r1);
    ulc_rt_tensor *y = k->out[0];
    const ulc_rt_tensor *c = s->g.has_c ? k->in[2] : NULL;
    if (s->g.alpha == 1.0f && (!c || s->g.beta == 0.0f)) return;
    for (int64_t i = r0; i < r1; i++)
        for (int64_t jj = 0; jj < s->g.n; jj++) {
            uint64_t o = (uint64_t)(i * s->g.n + jj);
            double v = (double)s->g.alpha * ulc_k_f64_at(y, o);
            if (c) v += (double)s->g.beta * ulc_k_f64_at(c, (uint64_t)(i * s->g.c_rs + jj * s->g.c_cs));
            ulc_k_store_f64(y, o, v);
        }
}

static ulc_status gemm_product(ulc_kctx *k) {
    const gemm_state *s = k->state;
    if (s->g.m == 0 || s->g.n == 0) return ULC_OK;
    if (s->g.dtype != ULC_DT_F32 || s->g.k == 0) {
        gemm_job j = {s, k};
        ulc_k_parallel(s->g.m, 4096 / (s->g.n * (s->g.k + 1)) + 1, gemm_ref_body, &j);
        return ULC_OK;
    }
    if (s->pk.prim) return pmm_run(k, &s->pk, k->in[0]->data, s->pk_bias ? k->in[2]->data : NULL, k->out[0]->data);
    float *y = k->out[0]->data;
    float beta = 0.0f;
    if (s->g.has_c && s->g.beta != 0.0f) {
        /* Y = beta · C broadcast, then sgemm accumulates alpha · op(A) op(B) into it. */
        const float *c = k->in[2]->data;
        for (int64_t i = 0; i < s->g.m; i++)
            for (int64_t jj = 0; jj < s->g.n; jj++)
                y[i * s->g.n + jj] = s->g.beta * c[i * s->g.c_rs + jj * s->g.c_cs];
        beta = 1.0f;
    }
    dnnl_status_t st =
        s->bpad ? dnnl_sgemm(s->g.ta ? 'T' : 'N', 'N', s->g.m, s->g.n, s->g.k, s->g.alpha, k->in[0]->data,
                             s->g.ta ? s->g.m : s->g.k, s->bpad, s->ldb, beta, y, s->g.n)
                : dnnl_sgemm(s->g.ta ? 'T' : 'N', s->g.tb ? 'T' : 'N', s->g.m, s->g.n, s->g.k, s->g.alpha,
                             k->in[0]->data, s->g.ta ? s->g.m : s->g.k, k->in[1]->data,
                             s->g.tb ? s->g.k : s->g.n, beta, y, s->g.n);
    return ulc_nn_dnnl_check(k, st, "sgemm");
}

static ulc_status gemm_run(ulc_kctx *k) {
    const gemm_state *s = k->state;
    ULC_TRY(gemm_product(k));
    if (!s->pk_fused) ulc_nn_fuse_apply(k->fuse, k->out[0], 0);
    return ULC_OK;
}

static const ulc_kernel k_gemm = {.flags = ULC_K_RESIDUAL, .prepare = gemm_prepare, .run = gemm_run, .release = gemm_release, .can_fuse = ulc_nn_can_fuse_residual};

void ulc_nn_register_gemm(const ulc_kernel **table) {
    table[ULC_OP_Gemm] = &k_gemm;
    table[ULC_OP_MatMul] = &k_matmul;
}
