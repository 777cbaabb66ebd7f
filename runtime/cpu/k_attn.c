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
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_nn.h"

#define ATTN_ROWS 32
#define ATTN_BLOCK_BYTES (256 * 1024) /* a thread's score block: fewer rows for long keys */

typedef struct attn_state {
    ulc_attn a;
    int rank;
    int64_t batch, tq, tk, d, dv, rows;
    int64_t sdims[ULC_RT_MAX_RANK];            /* the scores' shape [batch dims..., Tq, Tk] */
    int64_t mstride[ULC_ATTN_MAX_OPS][ULC_RT_MAX_RANK]; /* per op's mask: its stride along each
                                                           scores dim (0: broadcast) */
    float *buf;                                /* threads × rows × Tk */
    int threads;
} attn_state;

static void attn_release(void *p) {
    attn_state *s = p;
    if (!s) return;
    free(s->buf);
    free(s);
}

static ulc_status attn_prepare(ulc_kctx *k) {
    ulc_attn *a = k->state; /* the planner's program: ours to free from here on */
    attn_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (attention)");
    s->a = *a;
    free(a);
    k->state = s;
    const ulc_rt_tensor *q = k->in[0], *kt = k->in[1], *v = k->in[2], *o = k->out[0];
    int r = q->rank;
    s->rank = r;
    s->tq = q->dims[r - 2];
    s->d = q->dims[r - 1];
    s->tk = kt->dims[r - 1];
    s->dv = v->dims[r - 1];
    if (kt->dims[r - 2] != s->d || v->dims[r - 2] != s->tk || o->dims[r - 1] != s->dv || o->dims[r - 2] != s->tq)
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "attention: Q, Kᵀ, V and the output do not chain up");
    s->batch = 1;
    for (int d = 0; d < r - 2; d++) {
        s->batch *= q->dims[d];
        s->sdims[d] = q->dims[d];
    }
    s->sdims[r - 2] = s->tq;
    s->sdims[r - 1] = s->tk;
    for (int i = 0; i < s->a.n_ops; i++) {
        if (s->a.ops[i].op != ULC_ATTN_WHERE && s->a.ops[i].op != ULC_ATTN_ADD) continue;
        ulc_k_bcast_strides(k->in[s->a.ops[i].input], r, s->sdims, s->mstride[i]);
    }
    s->rows = ATTN_ROWS;
    while (s->rows > 4 && s->rows * s->tk * (int64_t)sizeof(float) > ATTN_BLOCK_BYTES) s->rows /= 2;
    if (s->rows > s->tq) s->rows = s->tq > 0 ? s->tq : 1;
    s->threads = k->threads > 0 ? k->threads : omp_get_max_threads();
    if (s->threads < 1) s->threads = 1;
    size_t n = (size_t)s->threads * (size_t)s->rows * (size_t)(s->tk > 0 ? s->tk : 1);
    if (!(s->buf = ulc_nn_alloc(n * sizeof(float))))
        return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (attention scores, %zu bytes)", n * sizeof(float));
    return ULC_OK;
}

typedef struct attn_job {
    const attn_state *s;
    const ulc_kctx *k;
    dnnl_status_t st;
} attn_job;

/* Offset into a mask for scores row q of batch entry b (its column stride is mstride[..][r-1]). */
static int64_t mask_row(const attn_state *s, int op, int64_t b, int64_t q) {
    const int64_t *ms = s->mstride[op];
    int64_t off = q * ms[s->rank - 2];
    for (int d = s->rank - 3; d >= 0; d--) {
        off += (b % s->sdims[d]) * ms[d];
        b /= s->sdims[d];
    }
    return off;
}

/* f on rows [q0, q0 + nr) of batch entry b, held in S (nr × Tk). */
static void transform(const attn_state *s, const ulc_kctx *k, int64_t b, int64_t q0, int64_t nr, float *S) {
    int64_t tk = s->tk;
    for (int i = 0; i < s->a.n_ops; i++) {
        int op = s->a.ops[i].op;
        float imm = s->a.ops[i].imm;
        if (op == ULC_ATTN_MUL || op == ULC_ATTN_DIV) {
            int64_t n = nr * tk;
            if (op == ULC_ATTN_MUL)
                for (int64_t e = 0; e < n; e++) S[e] *= imm;
            else
                for (int64_t e = 0; e < n; e++) S[e] /= imm;
            continue;
        }
        const ulc_rt_tensor *m = k->in[s->a.ops[i].input];
        int64_t cs = s->mstride[i][s->rank - 1];
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
                int keep_when = s->a.ops[i].s_is_x ? 1 : 0;
                for (int64_t c = 0; c < tk; c++)
                    if ((cv[cs ? c : 0] != 0) != keep_when) row[c] = imm;
            }
        }
    }
}

static void attn_body(int64_t i0, int64_t i1, void *arg) {
    attn_job *j = arg;
    const attn_state *s = j->s;
    const ulc_kctx *k = j->k;
    int64_t blocks = (s->tq + s->rows - 1) / s->rows;
    int t = omp_get_thread_num();
    float *S = s->buf + (size_t)(t < s->threads ? t : 0) * (size_t)s->rows * (size_t)s->tk;
    const float *Q = k->in[0]->data, *KT = k->in[1]->data, *V = k->in[2]->data;
    float *O = k->out[0]->data;
    for (int64_t it = i0; it < i1; it++) {
        int64_t b = it / blocks, q0 = (it % blocks) * s->rows;
        int64_t nr = s->tq - q0 < s->rows ? s->tq - q0 : s->rows;
        dnnl_status_t st = dnnl_success;
        if (s->d > 0)
            st = dnnl_sgemm('N', 'N', nr, s->tk, s->d, 1.0f, Q + (b * s->tq + q0) * s->d, s->d,
                            KT + b * s->d * s->tk, s->tk, 0.0f, S, s->tk);
        else
            memset(S, 0, (size_t)(nr * s->tk) * sizeof(float)); /* an empty sum */
        if (st == dnnl_success) {
            transform(s, k, b, q0, nr, S);
            ulc_cpu_softmax_rows_f32(S, nr, s->tk);
            st = dnnl_sgemm('N', 'N', nr, s->dv, s->tk, 1.0f, S, s->tk, V + b * s->tk * s->dv, s->dv, 0.0f,
                            O + (b * s->tq + q0) * s->dv, s->dv);
        }
        if (st != dnnl_success) j->st = st;
    }
}

static ulc_status attn_run(ulc_kctx *k) {
    const attn_state *s = k->state;
    if (s->batch == 0 || s->tq == 0 || s->dv == 0) return ULC_OK;
    if (s->tk == 0) { /* no keys: P is [Tq, 0] and P · V an empty sum */
        memset(k->out[0]->data, 0, k->out[0]->nbytes);
        return ULC_OK;
    }
    attn_job j = {s, k, dnnl_success};
    int64_t blocks = (s->tq + s->rows - 1) / s->rows;
    /* sgemm runs sequentially inside the parallel region: one item per thread at a time */
    if (s->threads > 1 && omp_get_max_threads() <= s->threads) /* a buffer per thread */
        ulc_k_parallel(s->batch * blocks, 1, attn_body, &j);
    else
        attn_body(0, s->batch * blocks, &j);
    return ulc_nn_dnnl_check(k, j.st, "sgemm (attention)");
}

static const ulc_kernel k_attn = {.prepare = attn_prepare, .run = attn_run, .release = attn_release};

const ulc_kernel *ulc_cpu_attn_kernel(void) { return &k_attn; }
