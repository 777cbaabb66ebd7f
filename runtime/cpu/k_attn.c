/*
 * k_attn.c — fused attention (kernel.h's ulc_attn; the planner's runtime/attn.c builds it):
 *
 *     O[b] = softmax(f(Q[b] · Kᵀ[b])) · V[b]        for every batch entry b (batch · heads)
 *
 * f is the nodes' own score transforms in their order (scale by a constant, Where with a bool
 * mask and a fill, Add of a float mask; masks broadcast to the scores' shape). Work items are
 * (batch entry, block of ATTN_ROWS query rows): each computes its [rows, Tk] block of scores
 * with one single-threaded sgemm into the thread's own buffer (L2-sized), applies f and the
 * Softmax kernel's row loop in place, and multiplies by V straight into O. The [Tq, Tk] scores
 * are never written whole: the arena holds no attention matrix, and each block is still in cache
 * for the product with V. Items go to threads in fixed ranges and each row is computed by one
 * thread in a fixed order, so results do not depend on the thread count.
 *
 * The same code runs ulc's Attention op (ir/ops_ulc.def: what training graphs hold in place of
 * the nodes, train/attention.c), its program decoded from the node's attributes, and its
 * gradient AttentionGrad, flash-attention style: per batch entry, block by block of query rows,
 * P is recomputed from Q and Kᵀ (never stored between the passes), then
 *     dV += Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(P ∘ dP)),  the transforms undone,
 *     dQ = dS·K,  dKᵀ += Qᵀ·dS
 * with single-threaded sgemms in the thread's own two [rows, Tk] buffers; a batch entry is one
 * thread's, so dKᵀ and dV accumulate in a fixed order whatever the thread count.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_nn.h"

#define ATTN_ROWS 32
#define ATTN_BLOCK_BYTES (256 * 1024) /* a thread's score block: fewer rows for long keys */

#define ATTN_GRAD_BLOCK_BYTES (512 * 1024) /* one of a thread's two gradient blocks */

typedef struct attn_state {
    ulc_sh_attn g;
    int64_t mstride[ULC_ATTN_MAX_OPS][ULC_RT_MAX_RANK]; /* per op's mask: its stride along each
                                                           scores dim (0: broadcast) */
    int64_t rows;                              /* query rows per block */
    float *buf;                                /* threads × nbuf × rows × Tk */
    int threads, nbuf;
} attn_state;

static void attn_release(void *p) {
    attn_state *s = p;
    if (!s) return;
    free(s->buf);
    free(s);
}

/* The state for geometry g (its program included): mask strides, block rows, buffers. grad: two
 * buffers per thread, blocks of up to ATTN_GRAD_BLOCK_BYTES. */
static ulc_status attn_setup(ulc_kctx *k, const ulc_sh_attn *g, int grad) {
    attn_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (attention)");
    k->state = s;
    s->g = *g;
    for (int i = 0; i < g->a.n_ops; i++) {
        if (g->a.ops[i].op != ULC_ATTN_WHERE && g->a.ops[i].op != ULC_ATTN_ADD) continue;
        ulc_k_bcast_strides(k->in[g->a.ops[i].input], g->a.rank, g->a.sdims, s->mstride[i]);
    }
    int64_t tk4 = (g->tk > 0 ? g->tk : 1) * (int64_t)sizeof(float);
    if (grad) {
        s->rows = g->tq;
        while (s->rows > 8 && s->rows * tk4 > ATTN_GRAD_BLOCK_BYTES) s->rows = (s->rows + 1) / 2;
    } else {
        s->rows = ATTN_ROWS;
        while (s->rows > 4 && s->rows * tk4 > ATTN_BLOCK_BYTES) s->rows /= 2;
    }
    if (s->rows > g->tq) s->rows = g->tq;
    if (s->rows < 1) s->rows = 1;
    s->nbuf = grad ? 2 : 1;
    s->threads = k->threads > 0 ? k->threads : omp_get_max_threads();
    if (s->threads < 1) s->threads = 1;
    size_t n = (size_t)s->threads * (size_t)s->nbuf * (size_t)s->rows * (size_t)(g->tk > 0 ? g->tk : 1);
    if (!(s->buf = ulc_nn_alloc(n * sizeof(float))))
        return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (attention scores, %zu bytes)", n * sizeof(float));
    return ULC_OK;
}

/* The planner's fused step: k->state is its program and geometry (ours to free from here on). */
static ulc_status attn_prepare(ulc_kctx *k) {
    ulc_sh_attn g;
    ulc_sh_attn_take(k, &g);
    if (g.a.rank < 2 || g.a.o.cs != 1 || (g.a.q.cs != 1 && g.a.q.rs != 1) || (g.a.kt.cs != 1 && g.a.kt.rs != 1) ||
        (g.a.v.cs != 1 && g.a.v.rs != 1))
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "attention: an operand view no product can read");
    return attn_setup(k, &g, 0);
}

/* ulc's Attention / AttentionGrad ops: the program from the node's attributes. */
static ulc_status attn_op_prepare(ulc_kctx *k) {
    ulc_sh_attn g;
    ULC_TRY(ulc_sh_attn_geom(k, 0, &g));
    return attn_setup(k, &g, 0);
}

static ulc_status attn_grad_prepare(ulc_kctx *k) {
    ulc_sh_attn g;
    ULC_TRY(ulc_sh_attn_geom(k, 1, &g));
    return attn_setup(k, &g, 1);
}

typedef struct attn_job {
    const attn_state *s;
    const ulc_kctx *k;
    dnnl_status_t st;
} attn_job;

/* Offset into a mask for scores row q of batch entry b (its column stride is mstride[..][r-1]). */
static int64_t mask_row(const attn_state *s, int op, int64_t b, int64_t q) {
    const int64_t *ms = s->mstride[op];
    int64_t off = q * ms[s->g.a.rank - 2];
    for (int d = s->g.a.rank - 3; d >= 0; d--) {
        off += (b % s->g.a.sdims[d]) * ms[d];
        b /= s->g.a.sdims[d];
    }
    return off;
}

/* f on rows [q0, q0 + nr) of batch entry b, held in S (nr × Tk). */
static void transform(const attn_state *s, const ulc_kctx *k, int64_t b, int64_t q0, int64_t nr, float *S) {
    int64_t tk = s->g.tk;
    const ulc_attn *a = &s->g.a;
    for (int i = 0; i < a->n_ops; i++) {
        int op = a->ops[i].op;
        float imm = a->ops[i].imm;
        if (op == ULC_ATTN_MUL || op == ULC_ATTN_DIV) {
            int64_t n = nr * tk;
            if (op == ULC_ATTN_MUL)
                for (int64_t e = 0; e < n; e++) S[e] *= imm;
            else
                for (int64_t e = 0; e < n; e++) S[e] /= imm;
            continue;
        }
        const ulc_rt_tensor *m = k->in[a->ops[i].input];
        int64_t cs = s->mstride[i][s->g.a.rank - 1];
        for (int64_t r = 0; r < nr; r++) {
            float *row = S + r * tk;
            int64_t off = mask_row(s, i, b, q0 + r);
            if (op == ULC_ATTN_ADD) {
                const float *mv = (const float *)m->data + off;
                if (cs)
                    for (int64_t c = 0; c < tk; c++) row[c] += mv[c];
                else
                    for (int64_t c = 0; c < tk; c++) row[c] += mv[0];
            } else { /* Where: cond ? S : fill (s_is_x), cond ? fill : S */
                const uint8_t *cv = (const uint8_t *)m->data + off;
                int keep_when = a->ops[i].s_is_x ? 1 : 0;
                for (int64_t c = 0; c < tk; c++)
                    if ((cv[cs ? c : 0] != 0) != keep_when) row[c] = imm;
            }
        }
    }
}

/* The transforms undone on dS (rows [q0, q0 + nr) of batch entry b), last op first: a scale
 * scales the gradient, a score a Where replaced by its fill gets none, an Add passes it on. */
static void untransform(const attn_state *s, const ulc_kctx *k, int64_t b, int64_t q0, int64_t nr, float *dS) {
    int64_t tk = s->g.tk;
    const ulc_attn *a = &s->g.a;
    for (int i = a->n_ops - 1; i >= 0; i--) {
        int op = a->ops[i].op;
        float imm = a->ops[i].imm;
        if (op == ULC_ATTN_ADD) continue;
        if (op == ULC_ATTN_MUL || op == ULC_ATTN_DIV) {
            int64_t n = nr * tk;
            if (op == ULC_ATTN_MUL)
                for (int64_t e = 0; e < n; e++) dS[e] *= imm;
            else
                for (int64_t e = 0; e < n; e++) dS[e] /= imm;
            continue;
        }
        const uint8_t *cd = k->in[a->ops[i].input]->data;
        int64_t cs = s->mstride[i][s->g.a.rank - 1];
        int keep_when = a->ops[i].s_is_x ? 1 : 0;
        for (int64_t r = 0; r < nr; r++) {
            float *row = dS + r * tk;
            const uint8_t *cv = cd + mask_row(s, i, b, q0 + r);
            for (int64_t c = 0; c < tk; c++)
                if ((cv[cs ? c : 0] != 0) != keep_when) row[c] = 0.0f;
        }
    }
}

/* The thread's i-th [rows, Tk] buffer. */
static float *tbuf(const attn_state *s, int i) {
    int t = omp_get_thread_num();
    return s->buf + ((size_t)(t < s->threads ? t : 0) * (size_t)s->nbuf + (size_t)i) * (size_t)s->rows *
                        (size_t)s->g.tk;
}

/* Offset of batch entry b's matrix in an operand read through view v. */
static int64_t view_at(const ulc_attn *a, const ulc_attn_view *v, int64_t b) {
    int64_t off = 0;
    for (int d = a->rank - 3; d >= 0; d--) {
        off += (b % a->sdims[d]) * v->bs[d];
        b /= a->sdims[d];
    }
    return off;
}

/* sgemm's transpose flag and leading dimension for a matrix read through v. */
static char view_trans(const ulc_attn_view *v, int64_t *ld) {
    if (v->cs == 1) {
        *ld = v->rs;
        return 'N';
    }
    *ld = v->cs;
    return 'T';
}

static void attn_body(int64_t i0, int64_t i1, void *arg) {
    attn_job *j = arg;
    const attn_state *s = j->s;
    const ulc_sh_attn *g = &s->g;
    const ulc_attn *a = &g->a;
    const ulc_kctx *k = j->k;
    int64_t blocks = (g->tq + s->rows - 1) / s->rows, ldq, ldk, ldv;
    char tq_ = view_trans(&a->q, &ldq), tk_ = view_trans(&a->kt, &ldk), tv_ = view_trans(&a->v, &ldv);
    float *S = tbuf(s, 0);
    const float *Q = k->in[0]->data, *KT = k->in[1]->data, *V = k->in[2]->data;
    float *O = k->out[0]->data;
    for (int64_t it = i0; it < i1; it++) {
        int64_t b = it / blocks, q0 = (it % blocks) * s->rows;
        int64_t nr = g->tq - q0 < s->rows ? g->tq - q0 : s->rows;
        dnnl_status_t st = dnnl_success;
        if (a->d > 0)
            st = dnnl_sgemm(tq_, tk_, nr, g->tk, a->d, 1.0f, Q + view_at(a, &a->q, b) + q0 * a->q.rs, ldq,
                            KT + view_at(a, &a->kt, b), ldk, 0.0f, S, g->tk);
        else
            memset(S, 0, (size_t)(nr * g->tk) * sizeof(float)); /* an empty sum */
        if (st == dnnl_success) {
            transform(s, k, b, q0, nr, S);
            ulc_cpu_softmax_rows_f32(S, nr, g->tk);
            st = dnnl_sgemm('N', tv_, nr, a->dv, g->tk, 1.0f, S, g->tk, V + view_at(a, &a->v, b), ldv, 0.0f,
                            O + view_at(a, &a->o, b) + q0 * a->o.rs, a->o.rs);
        }
        if (st != dnnl_success) j->st = st;
    }
}

/* Items to threads: sgemm runs sequentially inside the parallel region, one item per thread at a
 * time, each in its own buffer. */
static void attn_items(const attn_state *s, int64_t items, void (*body)(int64_t, int64_t, void *), attn_job *j) {
    if (s->threads > 1 && omp_get_max_threads() <= s->threads)
        ulc_k_parallel(items, 1, body, j);
    else
        body(0, items, j);
}

static ulc_status attn_run(ulc_kctx *k) {
    const attn_state *s = k->state;
    const ulc_sh_attn *g = &s->g;
    if (g->batch == 0 || g->tq == 0 || g->a.dv == 0) return ULC_OK;
    if (g->tk == 0) { /* no keys: P is [Tq, 0] and P · V an empty sum */
        memset(k->out[0]->data, 0, k->out[0]->nbytes);
        return ULC_OK;
    }
    attn_job j = {s, k, dnnl_success};
    attn_items(s, g->batch * ((g->tq + s->rows - 1) / s->rows), attn_body, &j);
    return ulc_nn_dnnl_check(k, j.st, "sgemm (attention)");
}

/* ---- the gradient ---------------------------------------------------------------------------- */

static float *out_f32(const ulc_kctx *k, int i) {
    return i < k->n_out && k->out[i] ? k->out[i]->data : NULL;
}

/* Batch entries [i0, i1): every block of query rows in order. */
static void attn_grad_body(int64_t i0, int64_t i1, void *arg) {
    attn_job *j = arg;
    const attn_state *s = j->s;
    const ulc_sh_attn *g = &s->g;
    const ulc_kctx *k = j->k;
    int64_t tq = g->tq, tk = g->tk, d = g->a.d, dv = g->a.dv; /* dense operands (the op's) */
    float *P = tbuf(s, 0), *dS = tbuf(s, 1);
    const float *Q = k->in[0]->data, *KT = k->in[1]->data, *V = k->in[2]->data, *dO = k->in[3]->data;
    float *dQ = out_f32(k, 0), *dKT = out_f32(k, 1), *dV = out_f32(k, 2);
    for (int64_t b = i0; b < i1 && j->st == dnnl_success; b++) {
        const float *Qb = Q + b * tq * d, *KTb = KT + b * d * tk, *Vb = V + b * tk * dv, *dOb = dO + b * tq * dv;
        for (int64_t q0 = 0; q0 < tq; q0 += s->rows) {
            int64_t nr = tq - q0 < s->rows ? tq - q0 : s->rows;
            float beta = q0 > 0 ? 1.0f : 0.0f; /* dKᵀ and dV: the first block writes, later ones add */
            dnnl_status_t st = dnnl_success;
            if (d > 0)
                st = dnnl_sgemm('N', 'N', nr, tk, d, 1.0f, Qb + q0 * d, d, KTb, tk, 0.0f, P, tk);
            else
                memset(P, 0, (size_t)(nr * tk) * sizeof(float));
            if (st != dnnl_success) {
                j->st = st;
                break;
            }
            transform(s, k, b, q0, nr, P);
            ulc_cpu_softmax_rows_f32(P, nr, tk);
            if (dV && dv > 0 && (st = dnnl_sgemm('T', 'N', tk, dv, nr, 1.0f, P, tk, dOb + q0 * dv, dv, beta,
                                                 dV + b * tk * dv, dv)) != dnnl_success) {
                j->st = st;
                break;
            }
            if (!dQ && !dKT) continue;
            if (dv > 0) {
                if ((st = dnnl_sgemm('N', 'T', nr, tk, dv, 1.0f, dOb + q0 * dv, dv, Vb, dv, 0.0f, dS, tk)) !=
                    dnnl_success) {
                    j->st = st;
                    break;
                }
            } else {
                memset(dS, 0, (size_t)(nr * tk) * sizeof(float));
            }
            for (int64_t r = 0; r < nr; r++) { /* dS = P ∘ (dP − Σ P ∘ dP) */
                const float *pr = P + r * tk;
                float *gr = dS + r * tk;
                double dot = 0;
                for (int64_t c = 0; c < tk; c++) dot += (double)pr[c] * gr[c];
                float D = (float)dot;
                for (int64_t c = 0; c < tk; c++) gr[c] = pr[c] * (gr[c] - D);
            }
            untransform(s, k, b, q0, nr, dS);
            if (d == 0) continue;
            if (dQ && (st = dnnl_sgemm('N', 'T', nr, d, tk, 1.0f, dS, tk, KTb, tk, 0.0f, dQ + (b * tq + q0) * d,
                                       d)) != dnnl_success) {
                j->st = st;
                break;
            }
            if (dKT && (st = dnnl_sgemm('T', 'N', d, tk, nr, 1.0f, Qb + q0 * d, d, dS, tk, beta, dKT + b * d * tk,
                                        tk)) != dnnl_success) {
                j->st = st;
                break;
            }
        }
    }
}

static ulc_status attn_grad_run(ulc_kctx *k) {
    const attn_state *s = k->state;
    const ulc_sh_attn *g = &s->g;
    if (g->batch == 0) return ULC_OK;
    if (g->tq == 0 || g->tk == 0) { /* no scores: every gradient is an empty sum */
        for (int i = 0; i < 3; i++)
            if (out_f32(k, i)) memset(k->out[i]->data, 0, k->out[i]->nbytes);
        return ULC_OK;
    }
    attn_job j = {s, k, dnnl_success};
    attn_items(s, g->batch, attn_grad_body, &j);
    return ulc_nn_dnnl_check(k, j.st, "sgemm (attention gradient)");
}

static const ulc_kernel k_attn = {.prepare = attn_prepare, .run = attn_run, .release = attn_release};
static const ulc_kernel k_attn_op = {.prepare = attn_op_prepare, .run = attn_run, .release = attn_release};
static const ulc_kernel k_attn_grad = {.prepare = attn_grad_prepare, .run = attn_grad_run,
                                       .release = attn_release};

const ulc_kernel *ulc_cpu_attn_kernel(void) { return &k_attn; }

void ulc_cpu_register_attn(const ulc_kernel **table) {
    table[ULC_OP_Attention] = &k_attn_op;
    table[ULC_OP_AttentionGrad] = &k_attn_grad;
}
