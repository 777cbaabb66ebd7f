/*
 * lm.c — the methods on next-token (text) models, and graddiff / npo on every model (unlearn.h).
 *
 * A row has P scored positions: a text model's logits at t = 0..T-2 predict input_ids[t+1] (a
 * position whose next token has attention_mask 0 scores nothing), a classifier's one position
 * predicts its label. The loss is graph, built from the student's per-position log-softmax
 * lsm [B, P, V] and nll = −lsm[target] [B, P], with weights and targets a before_step hook binds
 * every step (so they are constants to autodiff):
 *
 *   ulc.lm.w_tok  [B, P]     CE weight per position (signs and means folded in)
 *   ulc.lm.q      [B, P, V]  a target distribution (delete: the teacher's with the true next
 *                            token at −∞, over the temperature; npo: the teacher's on retain rows)
 *   ulc.lm.qlogq  [B, P]     Σ_v q log q (0 log 0 = 0), so the KL term's value is the KL
 *   ulc.lm.w_kl   [B, P]     KL weight per position
 *   ulc.lm.m      [B, P]     npo: 1 on the forget rows' scored positions
 *   ulc.lm.w_npo  [B]        npo: 1/|forget rows of the batch| on forget rows, else 0
 * and npo's ulc.lm.sref [B], π_ref's sequence log-prob of each forget row (the sum over its
 * scored positions), a data column computed once before training (the teacher over the forget
 * rows).
 *
 *   L = Σ w_tok·nll + Σ w_kl·(qlogq − Σ_v q·lsm)
 *       + (2/β) Σ_b w_npo·softplus(β·(S_b − sref_b)),  S_b = −Σ_p m·nll  (log π_θ(y|x))
 *
 * Where a target needs the teacher's distribution (delete; npo's retain KL), the teacher (the
 * frozen original) runs on every batch in the hook, as RFA's does: text logits [rows, T, V] are
 * too big to keep for a whole data set.
 *
 * graddiff and npo read pairs: the data is laid out up front as (forget row, retain row) pairs
 * for every epoch, the forget rows in a seeded order per epoch, each with the next retain row of
 * a seeded cycle through the retain rows (reshuffled at each wrap); the loop reads them in order
 * at twice the batch size, so a step holds batch_size forget rows and batch_size retain rows.
 */
#include "methods/unlearn_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/grad.h"
#include "train/train_graph.h"
#include "runtime/runtime.h"

#define FLAG_COL "ulc.lm.forget" /* 1 for a forget row of the training rows, else 0 */
#define SREF_COL "ulc.lm.sref"   /* npo: the teacher's sequence log-prob of a forget row */
#define MAX_TIN 16

enum { LM_CE, LM_NEG_CE, LM_GRADDIFF, LM_DELETE, LM_NPO };

typedef struct lm_state {
    const ulc_unlearn_opts *u;
    int kind;
    int text;                  /* next-token positions, else one (the label) */
    int uses_kl, uses_npo;     /* a target distribution (from the teacher, per batch); npo */
    int64_t T, P, V;           /* tokens per row (text), positions per row, classes */
    /* the hook's */
    ulc_session *teacher;
    const char *t_output;
    int ids_idx, am_idx, flag_idx, label_idx; /* batch[] indices (-1: none) */
    int n_tin;
    const char *tin[MAX_TIN];
    int tin_idx[MAX_TIN];
    size_t cap;
    int64_t *tgt;              /* [rows, P] the target per position, -1: not scored */
    float *w_tok, *w_kl, *qlogq, *m, *q, *w_npo;
} lm_state;

#define NN(e)                                                                                  \
    do {                                                                                       \
        if (!(e)) return ctx->status ? ctx->status : ULC_ERR_NOMEM;                            \
    } while (0)

/* ---- the loss ----------------------------------------------------------------------------------- */

/* A float32 reduction over every element, as a scalar. */
static ulc_value *sum_all(ulc_gb *b, ulc_value *x) {
    ulc_value *r = x ? ulc_gb_op1(b, "ReduceSum", x) : NULL;
    if (r) ulc_gb_attr_int(b, r, "keepdims", 0);
    return r;
}

/* z [B, P, V] and target [B, P] of the task: the next-token ones, or the label as one position. */
static ulc_status positions(lm_state *st, ulc_tg *t, ulc_gb *b, ulc_value **z, ulc_value **target,
                            ulc_ctx *ctx) {
    ulc_rt_tensor zt;
    const char *name = ulc_method_name(st->u->method);
    int known = ulc_analysis_get(t->shapes, t->output, &zt);
    if (st->text) {
        if (!known || zt.rank != 3 || zt.dims[1] < 2)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: output '%s' is not [batch, tokens, "
                            "vocabulary] next-token logits over at least 2 tokens", name,
                            t->output->name);
        ULC_TRY(ulc_tg_next_token(t, z, target, ctx));
        st->T = zt.dims[1];
        st->P = zt.dims[1] - 1;
        st->V = zt.dims[2];
        return ULC_OK;
    }
    if (!known || zt.rank != 2)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: output '%s' is not [batch, classes] logits",
                        name, t->output->name);
    int64_t one = 1;
    ulc_value *label = ulc_tg_input(t, "ulc.lm.label", ULC_DT_I64, 1, &one, "label", ctx);
    NN(label);
    NN(*z = ulc_gb_unsqueeze(b, t->output, 1, &one));
    NN(*target = ulc_gb_unsqueeze(b, label, 1, &one));
    st->T = 1;
    st->P = 1;
    st->V = zt.dims[1];
    return ULC_OK;
}

static ulc_status build_loss(void *arg, ulc_tg *t, ulc_value **loss, ulc_ctx *ctx) {
    lm_state *st = arg;
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, t->g, t->opset, ULC_GB_NAMES_DERIVED, ctx);
    ulc_value *z = NULL, *target = NULL;
    ULC_TRY(positions(st, t, b, &z, &target, ctx));
    int64_t one = 1, bp[2] = {1, st->P}, bpv[3] = {1, st->P, st->V};
    NN(ulc_tg_input(t, "ulc.lm.forget_rows", ULC_DT_F32, 1, &one, FLAG_COL, ctx));
    ulc_value *w_tok = ulc_tg_input(t, "ulc.lm.w_tok", ULC_DT_F32, 2, bp, NULL, ctx);
    NN(w_tok);
    /* nll [B, P] (0 where the target is ignored) and, with a target distribution q, the
     * cross-entropy −Σ_v q·lsm [B, P], from one fused SoftmaxCrossEntropy (ir/ops_ulc.def): the
     * log-softmax and the one-hot target are never materialised */
    ulc_value *q = NULL, *qlogq = NULL, *w_kl = NULL;
    if (st->uses_kl) {
        q = ulc_tg_input(t, "ulc.lm.q", ULC_DT_F32, 3, bpv, NULL, ctx);
        qlogq = ulc_tg_input(t, "ulc.lm.qlogq", ULC_DT_F32, 2, bp, NULL, ctx);
        w_kl = ulc_tg_input(t, "ulc.lm.w_kl", ULC_DT_F32, 2, bp, NULL, ctx);
        NN(q && qlogq && w_kl);
    }
    ulc_value *sin[3] = {z, target, q}, *souts[3] = {NULL, NULL, NULL};
    ulc_gb_opn(b, ULC_DOMAIN, "SoftmaxCrossEntropy", q ? 3 : 2, sin, q ? 3 : 2, souts);
    ulc_value *nll = souts[0];
    NN(nll && (!q || souts[2]));
    ulc_value *total = sum_all(b, ulc_gb_op2(b, "Mul", nll, w_tok));
    NN(total);
    if (st->uses_kl) { /* KL(q ‖ p) = Σ q log q − Σ q·lsm */
        ulc_value *kl = ulc_gb_op2(b, "Add", qlogq, souts[2]);
        NN(total = ulc_gb_op2(b, "Add", total, sum_all(b, ulc_gb_op2(b, "Mul", kl, w_kl))));
    }
    if (st->uses_npo) {
        double beta = st->u->npo_beta;
        ulc_value *m = ulc_tg_input(t, "ulc.lm.m", ULC_DT_F32, 2, bp, NULL, ctx);
        ulc_value *sref = ulc_tg_input(t, "ulc.lm.sref", ULC_DT_F32, 1, &one, SREF_COL, ctx);
        ulc_value *w_npo = ulc_tg_input(t, "ulc.lm.w_npo", ULC_DT_F32, 1, &one, NULL, ctx);
        NN(m && sref && w_npo);
        /* x = β (log π_θ(y|x) − log π_ref(y|x)); softplus(x) = x·h + log(1 + e^(x − 2x·h)) with
         * h = [x > 0] a constant: no overflow (the exponent is −|x|) and the derivative σ(x)
         * everywhere — relu(x) + log(1 + e^−|x|) would have 0 at x = 0, where every forget row
         * starts (π_θ = π_ref) */
        ulc_value *s = ulc_gb_op1(b, "Neg", ulc_gb_reduce_sum(b, ulc_gb_op2(b, "Mul", nll, m), 1, &one, 0));
        ulc_value *x = ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "Sub", s, sref), ulc_gb_scalar_f32(b, (float)beta));
        ulc_value *h = ulc_gb_op1(b, "Cast", ulc_gb_op2(b, "Greater", x, ulc_gb_scalar_f32(b, 0.0f)));
        NN(h);
        ulc_gb_attr_int(b, h, "to", ULC_DT_F32);
        ulc_value *xh = ulc_gb_op2(b, "Mul", x, h);
        ulc_value *e = ulc_gb_op1(b, "Exp", ulc_gb_op2(b, "Sub", x, ulc_gb_op2(b, "Add", xh, xh)));
        ulc_value *sp = ulc_gb_op2(b, "Add", xh,
                                   ulc_gb_op1(b, "Log", ulc_gb_op2(b, "Add", e, ulc_gb_scalar_f32(b, 1.0f))));
        ulc_value *npo = sum_all(b, ulc_gb_op2(b, "Mul", sp, w_npo));
        NN(npo);
        npo = ulc_gb_op2(b, "Mul", npo, ulc_gb_scalar_f32(b, (float)(2.0 / beta)));
        NN(total = ulc_gb_op2(b, "Add", total, npo));
    }
    NN(*loss = ulc_gb_named(b, total, "ulc.unlearn.loss"));
    return ULC_OK;
}

/* ---- the hook: targets and weights of the batch ---------------------------------------------------- */

static ulc_status grow(lm_state *st, size_t rows, ulc_ctx *ctx) {
    if (rows <= st->cap) return ULC_OK;
    size_t rp = rows * (size_t)st->P;
    free(st->tgt), free(st->w_tok), free(st->w_kl), free(st->qlogq), free(st->m), free(st->q);
    free(st->w_npo);
    st->tgt = malloc(rp * sizeof *st->tgt);
    st->w_tok = malloc(rp * sizeof(float));
    st->w_kl = malloc(rp * sizeof(float));
    st->qlogq = malloc(rp * sizeof(float));
    st->m = malloc(rp * sizeof(float));
    st->q = st->uses_kl ? malloc(rp * (size_t)st->V * sizeof(float)) : NULL;
    st->w_npo = malloc(rows * sizeof(float));
    if (!st->tgt || !st->w_tok || !st->w_kl || !st->qlogq || !st->m || (st->uses_kl && !st->q) ||
        !st->w_npo)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s targets for %zu rows)",
                        ulc_method_name(st->u->method), rows);
    st->cap = rows;
    return ULC_OK;
}

/* The target of every position of the batch (-1 where none is scored). */
static void targets(lm_state *st, const ulc_rt_tensor *const *batch, size_t rows) {
    size_t P = (size_t)st->P, T = (size_t)st->T;
    if (!st->text) {
        const int64_t *y = batch[st->label_idx]->data;
        for (size_t i = 0; i < rows; i++) st->tgt[i] = y[i] >= 0 && y[i] < st->V ? y[i] : -1;
        return;
    }
    const ulc_rt_tensor *am = st->am_idx >= 0 ? batch[st->am_idx] : NULL;
    const int64_t *ids = batch[st->ids_idx]->data;
    for (size_t i = 0; i < rows; i++)
        for (size_t p = 0; p < P; p++) {
            size_t k = i * T + p + 1;
            int on = !am || (am->dtype == ULC_DT_I64 ? ((const int64_t *)am->data)[k] != 0
                                                     : ((const float *)am->data)[k] > 0);
            st->tgt[i * P + p] = on && ids[k] >= 0 && ids[k] < st->V ? ids[k] : -1;
        }
}

/* q = softmax(z / temp) with entry `masked` (>= 0) at −∞; returns Σ q log q (0 log 0 = 0). */
static double dist(const float *z, int64_t V, double temp, int64_t masked, float *q) {
    double mx = -INFINITY, sum = 0, qlogq = 0;
    for (int64_t v = 0; v < V; v++)
        if (v != masked && z[v] / temp > mx) mx = z[v] / temp;
    for (int64_t v = 0; v < V; v++) sum += v == masked ? 0.0 : exp(z[v] / temp - mx);
    for (int64_t v = 0; v < V; v++) {
        double p = v == masked || !(sum > 0) ? 0.0 : exp(z[v] / temp - mx) / sum;
        q[v] = (float)p;
        if (p > 0) qlogq += p * log(p);
    }
    return qlogq;
}

/* log softmax(z)[y]. */
static double log_prob(const float *z, int64_t V, int64_t y) {
    double mx = z[0], s = 0;
    for (int64_t v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    for (int64_t v = 0; v < V; v++) s += exp((double)z[v] - mx);
    return (double)z[y] - mx - log(s);
}

/* The teacher's part: q, qlogq and w_kl on the positions the method distils (delete: the forget
 * rows'; npo: the retain rows'). */
static ulc_status teacher_targets(lm_state *st, const ulc_rt_tensor *const *batch, size_t rows,
                                  const float *f, double w_fkl, double w_rkl, ulc_ctx *ctx) {
    for (int i = 0; i < st->n_tin; i++)
        ULC_TRY(ulc_session_set_input(st->teacher, st->tin[i], batch[st->tin_idx[i]], ctx));
    ULC_TRY(ulc_session_run(st->teacher, ctx));
    const ulc_rt_tensor *zt = ulc_session_output(st->teacher, st->t_output);
    size_t P = (size_t)st->P, T = (size_t)st->T, V = (size_t)st->V;
    if (!zt || zt->dtype != ULC_DT_F32 || ulc_rt_numel(zt) != rows * T * V)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: the teacher's output has the wrong size",
                        ulc_method_name(st->u->method));
    int del = st->kind == LM_DELETE;
    for (size_t i = 0; i < rows; i++) {
        int fg = f[i] != 0.0f;
        for (size_t p = 0; p < P; p++) {
            size_t k = i * P + p;
            int64_t y = st->tgt[k];
            const float *z = (const float *)zt->data + (i * T + p) * V;
            int keep = st->uses_kl && y >= 0 && (del ? fg : !fg);
            st->qlogq[k] = st->w_kl[k] = 0.0f;
            float *q = st->q + k * V;
            if (!keep) { /* weight 0, but the product with the log-softmax must stay finite */
                memset(q, 0, V * sizeof *q);
                continue;
            }
            st->qlogq[k] = (float)dist(z, (int64_t)V, del ? st->u->temperature : 1.0,
                                       del ? y : -1, q);
            st->w_kl[k] = (float)(fg ? w_fkl : w_rkl);
        }
    }
    return ULC_OK;
}

static ulc_status before_step(void *arg, ulc_session *s, const ulc_rt_tensor *const *batch, int n,
                              ulc_ctx *ctx) {
    lm_state *st = arg;
    if (st->flag_idx < 0 || st->flag_idx >= n || (st->text && st->ids_idx < 0) ||
        (!st->text && st->label_idx < 0))
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: batch inputs missing",
                        ulc_method_name(st->u->method));
    size_t rows = (size_t)batch[st->flag_idx]->dims[0], P = (size_t)st->P;
    ULC_TRY(grow(st, rows, ctx));
    const float *f = batch[st->flag_idx]->data;
    targets(st, batch, rows);
    double nf = 0, nfv = 0, nrv = 0; /* forget rows, and forget/retain scored positions */
    for (size_t i = 0; i < rows; i++) {
        int fg = f[i] != 0.0f;
        double v = 0;
        for (size_t p = 0; p < P; p++) v += st->tgt[i * P + p] >= 0;
        if (fg) nf += 1, nfv += v;
        else nrv += v;
    }
    double rw = st->u->retain_weight, sign_f = 0, sign_r = 0;
    switch (st->kind) {
    case LM_CE: sign_f = sign_r = 1; break;
    case LM_NEG_CE: sign_f = sign_r = -1; break;
    case LM_GRADDIFF: sign_f = -1, sign_r = st->u->retain_kl ? 0 : rw; break;
    default: break;
    }
    int one_set = st->kind == LM_CE || st->kind == LM_NEG_CE; /* one mean over every position */
    for (size_t i = 0; i < rows; i++) {
        int fg = f[i] != 0.0f;
        double cnt = one_set ? nfv + nrv : fg ? nfv : nrv;
        for (size_t p = 0; p < P; p++) {
            size_t k = i * P + p;
            int on = st->tgt[k] >= 0 && cnt > 0;
            st->w_tok[k] = on ? (float)((fg ? sign_f : sign_r) / cnt) : 0.0f;
            st->m[k] = on && fg ? 1.0f : 0.0f;
        }
        st->w_npo[i] = fg && nf > 0 ? (float)(1.0 / nf) : 0.0f;
    }
    if (st->uses_kl)
        ULC_TRY(teacher_targets(st, batch, rows, f, nfv > 0 ? 1.0 / nfv : 0.0,
                                nrv > 0 ? rw / nrv : 0.0, ctx));
    int64_t b[1] = {(int64_t)rows}, bp[2] = {(int64_t)rows, st->P},
            bpv[3] = {(int64_t)rows, st->P, st->V};
    ULC_TRY(ulc_session_set_f32(s, "ulc.lm.w_tok", st->w_tok, 2, bp, ctx));
    if (st->uses_kl) {
        ULC_TRY(ulc_session_set_f32(s, "ulc.lm.q", st->q, 3, bpv, ctx));
        ULC_TRY(ulc_session_set_f32(s, "ulc.lm.qlogq", st->qlogq, 2, bp, ctx));
        ULC_TRY(ulc_session_set_f32(s, "ulc.lm.w_kl", st->w_kl, 2, bp, ctx));
    }
    if (st->uses_npo) {
        ULC_TRY(ulc_session_set_f32(s, "ulc.lm.m", st->m, 2, bp, ctx));
        ULC_TRY(ulc_session_set_f32(s, "ulc.lm.w_npo", st->w_npo, 1, b, ctx));
    }
    return ULC_OK;
}

static void state_free(lm_state *st) {
    free(st->tgt), free(st->w_tok), free(st->w_kl), free(st->qlogq), free(st->m), free(st->q);
    free(st->w_npo);
    ulc_session_free(st->teacher);
}

/* ---- the rows ----------------------------------------------------------------------------------- */

/* Rows idx[0..n) of d, every column, plus FLAG_COL from flag[] and SREF_COL from sref[] (when
 * not NULL), in row order (owned copies). */
typedef struct lm_rows {
    ulc_dataset d;
    ulc_tensor *t;
    int64_t *dims;
    void **bufs;
} lm_rows;

static void rows_free(lm_rows *r) {
    for (int c = 0; r->bufs && c < r->d.n_cols; c++) free(r->bufs[c]);
    free(r->bufs), free(r->t), free(r->dims), free(r->d.names), free(r->d.cols);
    memset(r, 0, sizeof *r);
}

static ulc_status rows_make(const ulc_dataset *d, const int64_t *idx, int64_t n, const float *flag,
                            const float *sref, lm_rows *r, ulc_ctx *ctx) {
    memset(r, 0, sizeof *r);
    int nc = d->n_cols + 1 + (sref != NULL);
    r->d.names = calloc((size_t)nc, sizeof *r->d.names);
    r->d.cols = calloc((size_t)nc, sizeof *r->d.cols);
    r->t = calloc((size_t)nc, sizeof *r->t);
    r->dims = calloc((size_t)nc * ULC_DATASET_MAX_RANK, sizeof *r->dims);
    r->bufs = calloc((size_t)nc, sizeof *r->bufs);
    if (!r->d.names || !r->d.cols || !r->t || !r->dims || !r->bufs)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (training rows)");
    for (int c = 0; c < nc; c++) {
        int is_flag = c >= d->n_cols; /* flag, then sref */
        const float *extra = c == d->n_cols ? flag : sref;
        const ulc_tensor *src = is_flag ? NULL : d->cols[c];
        int rank = is_flag ? 1 : src->rank;
        if (rank > ULC_DATASET_MAX_RANK)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "column of rank %d", rank);
        int64_t *dims = r->dims + (size_t)c * ULC_DATASET_MAX_RANK;
        size_t row = is_flag ? sizeof(float) : src->nbytes / (size_t)d->n_rows;
        dims[0] = n;
        for (int k = 1; k < rank; k++) dims[k] = src->dims[k];
        uint8_t *buf = malloc(row * (size_t)n + 1);
        if (!buf) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (training rows)");
        r->bufs[c] = buf;
        r->d.n_cols = c + 1;
        if (is_flag) memcpy(buf, extra, row * (size_t)n);
        else
            for (int64_t i = 0; i < n; i++)
                memcpy(buf + (size_t)i * row, (const uint8_t *)src->data + (size_t)idx[i] * row, row);
        ulc_tensor *t = &r->t[c];
        t->name = !is_flag ? d->names[c] : c == d->n_cols ? FLAG_COL : SREF_COL;
        t->dtype = is_flag ? ULC_DT_F32 : src->dtype;
        t->rank = rank;
        t->dims = dims;
        t->numel = (uint64_t)n * (uint64_t)(row / (t->dtype == ULC_DT_I64 ? 8 : 4));
        t->storage = ULC_STORAGE_OWNED;
        t->data = buf;
        t->nbytes = row * (size_t)n;
        r->d.names[c] = t->name;
        r->d.cols[c] = t;
    }
    r->d.n_rows = n;
    r->d.path = d->path;
    return ULC_OK;
}

/* The forget rows (want 1) or the retain rows (want 0), in file order. */
static ulc_status select_rows(const ulc_unlearn_call *c, int want, int64_t **idx, int64_t *n,
                              ulc_ctx *ctx) {
    *n = 0;
    for (int64_t i = 0; i < c->data->n_rows; i++) *n += (c->forget[i] != 0) == want;
    if (!*n)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: %s: no %s rows to train on",
                        ulc_method_name(c->u->method), ulc_dataset_path(c->data),
                        want ? "forget" : "retain");
    if (!(*idx = malloc((size_t)*n * sizeof **idx))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0, k = 0; i < c->data->n_rows; i++)
        if ((c->forget[i] != 0) == want) (*idx)[k++] = i;
    return ULC_OK;
}

/* npo's reference: the teacher over the forget rows, once. */
typedef struct ref_pass {
    const int64_t *rows;       /* the forget rows (data row numbers) */
    float *out;                /* their sequence log-probs */
    const char *output;
    const ulc_tensor *ids, *am, *label; /* text: ids and attention_mask (may be NULL); else label */
    int64_t V;
} ref_pass;

static ulc_status ref_batch(void *arg, ulc_session *s, int64_t r0, int64_t rn, ulc_ctx *ctx) {
    ref_pass *rp = arg;
    const ulc_rt_tensor *z = ulc_session_output(s, rp->output);
    int64_t T = rp->ids ? rp->ids->dims[1] : 1;
    if (!z || z->dtype != ULC_DT_F32 || z->dims[0] != rn || ulc_rt_numel(z) != (uint64_t)(rn * T * rp->V))
        return ulc_fail(ctx, ULC_ERR_INVALID, "npo: the teacher's output '%s' is not [rows, %s%lld]",
                        rp->output, rp->ids ? "tokens, " : "", (long long)rp->V);
    for (int64_t j = 0; j < rn; j++) {
        int64_t row = rp->rows[r0 + j];
        const float *zj = (const float *)z->data + j * T * rp->V;
        double lp = 0;
        if (!rp->ids) {
            int64_t y = ((const int64_t *)rp->label->data)[row];
            if (y >= 0 && y < rp->V) lp = log_prob(zj, rp->V, y);
        }
        for (int64_t p = 0; rp->ids && p + 1 < T; p++) {
            int64_t k = row * T + p + 1, y = ((const int64_t *)rp->ids->data)[k];
            int on = !rp->am || (rp->am->dtype == ULC_DT_I64 ? ((const int64_t *)rp->am->data)[k] != 0
                                                             : ((const float *)rp->am->data)[k] > 0);
            if (on && y >= 0 && y < rp->V) lp += log_prob(zj + p * rp->V, rp->V, y);
        }
        rp->out[r0 + j] = (float)lp;
    }
    return ULC_OK;
}

/* log π_ref(y|x) of each forget row fi[0..nf), into out[nf]: the teacher run over the rows,
 * batch_size rows per run (a text teacher's logits are [rows, T, V]). */
static ulc_status ref_logprobs(const ulc_unlearn_call *c, const int64_t *fi, int64_t nf,
                               float *out, ulc_ctx *ctx) {
    const ulc_dataset *d = c->data;
    const ulc_graph *g = c->teacher->graph;
    ref_pass rp = {.rows = fi, .out = out};
    ulc_rows r = {.file = d->path, .idx = fi, .n = nf, .max_rows = c->o->batch_size};
    for (size_t i = 0; i < g->outputs.len; i++) {
        const ulc_value *v = g->outputs.items[i];
        if (c->u->output ? !strcmp(v->name, c->u->output) : !rp.output) rp.output = v->name;
    }
    for (size_t i = 0; i < g->inputs.len; i++) { /* the columns are named after the inputs */
        const ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        int k = ulc_dataset_find(d, v->name);
        if (k < 0) k = ulc_dataset_find(d, "input_ids");
        if (k < 0) k = ulc_dataset_find(d, "input");
        if (k < 0 || r.n_feeds == ULC_ROWS_MAX_FEEDS)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "npo: teacher input '%s' is not in the data",
                            v->name);
        r.names[r.n_feeds] = v->name;
        r.cols[r.n_feeds++] = d->cols[k];
        int main_in = c->u->input ? !strcmp(v->name, c->u->input) : strcmp(v->name, "attention_mask") != 0;
        if (!strcmp(v->name, "attention_mask")) rp.am = d->cols[k];
        else if (c->u->next_token && main_in && !rp.ids) rp.ids = d->cols[k];
    }
    int lc = ulc_dataset_find(d, "label");
    rp.label = lc >= 0 && d->cols[lc]->dtype == ULC_DT_I64 ? d->cols[lc] : NULL;
    const ulc_value *ov = rp.output ? ulc_graph_get_value(g, rp.output) : NULL;
    rp.V = ov && ov->rank >= 2 ? ov->dims[ov->rank - 1].value : -1;
    int text_ok = rp.ids && rp.ids->dtype == ULC_DT_I64 && rp.ids->rank == 2;
    if (!rp.output || rp.V < 1 || (c->u->next_token ? !text_ok : !rp.label))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "npo: the reference log-probs need %s and an "
                        "output with a fixed class count", c->u->next_token
                        ? "int64 input_ids [N, T]" : "int64 labels");
    ulc_session_opts so = ulc_session_defaults();
    so.threads = c->o->threads;
    ulc_session *ses = NULL;
    ulc_status s = ulc_session_create(c->teacher, &so, &ses, ctx);
    if (s == ULC_OK) s = ulc_rows_run(ses, &r, ref_batch, &rp, NULL, ctx);
    ulc_session_free(ses);
    return s;
}

/* graddiff/npo: every epoch's forget rows (seeded order), each followed by the next retain row of
 * a seeded cycle through the retain rows; npo: with the forget rows' reference log-probs. */
static ulc_status paired(const ulc_unlearn_call *c, int npo, lm_rows *r, ulc_ctx *ctx) {
    int64_t *fi = NULL, *ri = NULL, nf = 0, nr = 0;
    ulc_status s = select_rows(c, 1, &fi, &nf, ctx);
    if (s == ULC_OK) s = select_rows(c, 0, &ri, &nr, ctx);
    int64_t E = c->o->epochs > 0 ? c->o->epochs : 1, n = 2 * E * nf;
    int64_t *idx = s == ULC_OK ? malloc((size_t)n * sizeof *idx) : NULL;
    float *flag = s == ULC_OK ? malloc((size_t)n * sizeof *flag) : NULL;
    float *sref = s == ULC_OK && npo ? calloc((size_t)n, sizeof *sref) : NULL;
    float *lp = s == ULC_OK && npo ? malloc((size_t)nf * sizeof *lp) : NULL;
    int64_t *fp = s == ULC_OK ? malloc((size_t)nf * sizeof *fp) : NULL;
    int64_t *rp = s == ULC_OK ? malloc((size_t)nr * sizeof *rp) : NULL;
    if (s == ULC_OK && (!idx || !flag || !fp || !rp || (npo && (!sref || !lp))))
        s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (s == ULC_OK && npo) s = ref_logprobs(c, fi, nf, lp, ctx);
    int64_t k = 0, cur = nr;
    long cycle = 0;
    for (int64_t e = 0; s == ULC_OK && e < E; e++) {
        ulc_train_permutation(c->o->seed, (long)e, nf, fp);
        for (int64_t j = 0; j < nf; j++) {
            if (cur == nr) { /* a new cycle through the retain rows */
                ulc_train_permutation(c->o->seed ^ 0x9A1E5ull, cycle++, nr, rp);
                cur = 0;
            }
            int64_t f = c->o->shuffle ? fp[j] : j;
            if (npo) sref[k] = lp[f];
            idx[k] = fi[f], flag[k++] = 1.0f;
            idx[k] = ri[c->o->shuffle ? rp[cur] : cur], flag[k++] = 0.0f;
            cur++;
        }
    }
    if (s == ULC_OK) s = rows_make(c->data, idx, n, flag, sref, r, ctx);
    free(fi), free(ri), free(idx), free(flag), free(sref), free(lp), free(fp), free(rp);
    return s;
}

/* The forget (want 1) or retain (want 0) rows with their flag. */
static ulc_status one_set(const ulc_unlearn_call *c, int want, lm_rows *r, ulc_ctx *ctx) {
    int64_t *idx = NULL, n = 0;
    ULC_TRY(select_rows(c, want, &idx, &n, ctx));
    float *flag = malloc((size_t)n * sizeof *flag);
    ulc_status s = flag ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == ULC_OK && i < n; i++) flag[i] = (float)want;
    if (s == ULC_OK) s = rows_make(c->data, idx, n, flag, NULL, r, ctx);
    free(idx);
    free(flag);
    return s;
}

/* ---- the run ------------------------------------------------------------------------------------ */

/* The teacher session and the batch indices the hook reads. */
static ulc_status hook_setup(lm_state *st, const ulc_unlearn_call *c, const ulc_train_graph *tg,
                             ulc_ctx *ctx) {
    st->ids_idx = st->am_idx = st->flag_idx = st->label_idx = -1;
    for (int i = 0; i < tg->n_data; i++) {
        if (!strcmp(tg->data_cols[i], FLAG_COL)) st->flag_idx = i;
        else if (!strcmp(tg->data_inputs[i], "ulc.lm.label")) st->label_idx = i;
        else if (tg->main_input && !strcmp(tg->data_inputs[i], tg->main_input)) st->ids_idx = i;
        if (!strcmp(tg->data_inputs[i], "attention_mask")) st->am_idx = i;
    }
    if (!st->uses_kl) return ULC_OK; /* no teacher per batch */
    const ulc_graph *g = c->teacher->graph;
    for (size_t i = 0; i < g->outputs.len; i++) {
        const ulc_value *v = g->outputs.items[i];
        if (c->u->output ? !strcmp(v->name, c->u->output) : !st->t_output) st->t_output = v->name;
    }
    if (!st->t_output)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: the teacher has no output '%s'",
                        ulc_method_name(c->u->method), c->u->output ? c->u->output : "");
    for (size_t i = 0; i < g->inputs.len; i++) { /* the teacher reads what the student reads */
        const ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        int k = 0;
        while (k < tg->n_data && strcmp(tg->data_inputs[k], v->name) != 0) k++;
        if (k == tg->n_data || st->n_tin == MAX_TIN)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: teacher input '%s' is not in the data",
                            ulc_method_name(c->u->method), v->name);
        st->tin[st->n_tin] = v->name;
        st->tin_idx[st->n_tin++] = k;
    }
    ulc_session_opts so = ulc_session_defaults();
    so.threads = c->o->threads;
    return ulc_session_create(c->teacher, &so, &st->teacher, ctx);
}

static ulc_status lm_train(const ulc_unlearn_call *c, const ulc_dataset *d, int kind,
                           const ulc_train_opts *o, ulc_ctx *ctx) {
    const ulc_unlearn_opts *u = c->u;
    lm_state st = {.u = u, .kind = kind, .text = u->next_token};
    st.uses_npo = kind == LM_NPO;
    st.uses_kl = kind == LM_DELETE || ((kind == LM_NPO || (kind == LM_GRADDIFF && u->retain_kl)) &&
                                       u->retain_weight > 0);
    ulc_train_task task = {.input = u->input, .output = u->output, .custom_loss = build_loss,
                           .custom_arg = &st};
    ulc_train_graph tg = {0};
    float **vals = NULL;
    ulc_train_opts to = *o;
    to.before_step = before_step;
    to.hook_arg = &st;
    ulc_status s = ulc_train_graph_build(c->model, d, &task, o->batch_size, &tg, ctx);
    if (s == ULC_OK) s = hook_setup(&st, c, &tg, ctx);
    if (s == ULC_OK) s = ulc_train_graph_params(c->model, &tg, &vals, ctx);
    if (s == ULC_OK) s = ulc_train_run(&tg, d, &to, vals, c->stats, ctx);
    if (s == ULC_OK) s = ulc_train_graph_write_back(c->model, &tg, vals, ctx);
    ulc_train_graph_free_params(&tg, vals);
    ulc_train_graph_clear(&tg);
    state_free(&st);
    return s;
}

ulc_status ulc_lm_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    const ulc_unlearn_opts *u = c->u;
    lm_rows r = {0};
    ulc_train_opts o = *c->o;
    int kind = LM_CE;
    ulc_status s = ULC_OK;
    switch (u->method) {
    case ULC_METHOD_FINETUNE: kind = LM_CE, s = one_set(c, 0, &r, ctx); break;
    case ULC_METHOD_RETRAIN:
        kind = LM_CE;
        s = one_set(c, 0, &r, ctx);
        if (s == ULC_OK)
            s = u->next_token ? ulc_unlearn_reinit_gpt2(c->model, c->o->seed, ctx)
                              : ulc_unlearn_reinit(c->model, c->o->seed, ctx);
        break;
    case ULC_METHOD_NEGGRAD: kind = LM_NEG_CE, s = one_set(c, 1, &r, ctx); break;
    case ULC_METHOD_DELETE: kind = LM_DELETE, s = one_set(c, 1, &r, ctx); break;
    case ULC_METHOD_GRADDIFF:
    case ULC_METHOD_NPO:
        kind = u->method == ULC_METHOD_NPO ? LM_NPO : LM_GRADDIFF;
        s = paired(c, kind == LM_NPO, &r, ctx);
        o.epochs = 1; /* the pairs hold every epoch, in order */
        o.shuffle = 0;
        o.batch_size = 2 * c->o->batch_size;
        break;
    default: {
        const char *no = ulc_unlearn_refusal(u->method, u->next_token, u->mask_all_forget);
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: %s", ulc_method_name(u->method),
                        no ? no : "has no per-position form");
    }
    }
    if (s == ULC_OK) s = lm_train(c, &r.d, kind, &o, ctx);
    rows_free(&r);
    return s;
}
