/*
 * rfa.c — residual feature alignment unlearning (see rfa.h and shared/methods/rfa.md).
 *
 * The training graph is the model's (with its LoRA adapters) plus the RFA loss, built from
 * inputs a before_step hook fills from the teacher every step:
 *   ulc.rfa.t.<k>    [B, ...]  target of feature k: the teacher's feature on retain rows, the
 *                              retain mean of it on forget rows
 *   ulc.rfa.ybar     [B, C]    the retain mean of the teacher's softmax (every row; only forget
 *                              rows weigh)
 *   ulc.rfa.w_inter  [B]       α/|b_r| on retain rows, β/|b_f| on forget rows
 *   ulc.rfa.w_ce     [B]       λ/|b_r| on retain rows, 0 on forget rows
 *   ulc.rfa.w_soft   [B]       μ/|b_f| on forget rows, 0 on retain rows
 * and the batched columns "label" and "ulc.rfa.forget" (the row flags, a column the dataset is
 * given here). Row weights and means are data, so autodiff treats them as constants — the
 * detaching the method asks for.
 *
 * On a device (a GPU session) a classifier's targets never visit the host: the teacher's graph
 * computes them itself (add_device_targets: the retain means as a [1, B]·[B, P] product, the
 * forget rows replaced by a Where), and the student reads the teacher's outputs and its copy of
 * the batch in device memory (ulc_session_set_input_device). Only the means ([P] per feature)
 * and ybar come back, for a later batch with no retain row, which takes the host path.
 *
 *   L = γ/m Σ_k Σ_i w_inter[i]·d(s_k[i], t_k[i]) + (1 − γ) Σ_i (w_ce[i]·CE_i + w_soft[i]·softCE_i)
 */
#include "methods/rfa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/clone.h"
#include "ir/lora.h"
#include "train/grad.h"
#include "train/train_graph.h"
#include "runtime/runtime.h"

#define FORGET_COL "ulc.rfa.forget"
#define MAX_FEATURES 512
#define LSE_OUT "ulc.rfa.lse" /* the teacher graph's log-sum-exp of its logits */
#define MEAN_BLOCK 2048       /* feature elements per thread task in the retain means */

ulc_rfa_opts ulc_rfa_defaults(void) {
    return (ulc_rfa_opts){.gamma = 0.5, .alpha = 1, .beta = 1, .lambda = 1, .mu = 1,
                          .norm = ULC_RFA_L2SQ};
}

int ulc_rfa_norm_parse(const char *s) {
    static const char *const names[] = {"l2sq", "mse", "l1", "l2"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}


/* ---- the loss ------------------------------------------------------------------------------- */

typedef struct rfa_state {
    const ulc_rfa_opts *r;
    int m;                       /* adapted layers (features) */
    const char *feat[MAX_FEATURES]; /* the features' value names (records' `out`) */
    char tname[MAX_FEATURES][48];  /* their target inputs */
    int64_t classes;
    /* the hook's */
    ulc_session *teacher;
    const ulc_model *tmodel;
    const char *t_output;
    int in_idx, mask_idx;        /* batch[] indices of the model input and the forget flags */
    int am_idx;                  /* attention_mask's, or -1 */
    int n_tin;                   /* the teacher's inputs and their batch[] indices */
    const char *tin[16];
    int tin_idx[16];
    int64_t seq;                 /* next_token: T */
    float *posw;
    size_t cap_rows;
    size_t row_numel[MAX_FEATURES];
    float *mean[MAX_FEATURES];   /* last retain means */
    int have_means;
    float *ybar, *ybar_rows, *w_inter, *w_ce, *w_soft;
    double *acc;                 /* the means' sums: max(feature row, classes) entries */
    size_t *pos;                 /* ybar's weighted positions (row·T + t) and their weights */
    double *pos_w;
    int threads;                 /* for ybar's sums */
    int dev_targets;             /* the teacher computes the targets on the device (above) */
} rfa_state;

#define DEV_TARGET "ulc.rfa.dev.target.%d"
#define DEV_MEAN "ulc.rfa.dev.mean.%d"
#define DEV_YBAR_ROWS "ulc.rfa.dev.ybar_rows"
#define DEV_YBAR "ulc.rfa.dev.ybar"
#define FORGET_IN "ulc.rfa.forget_rows"

#define NN(e)                                                                                  \
    do {                                                                                       \
        if (!(e)) return ctx->status ? ctx->status : ULC_ERR_NOMEM;                            \
    } while (0)

static ulc_status build_loss(void *arg, ulc_tg *t, ulc_value **loss, ulc_ctx *ctx) {
    rfa_state *st = arg;
    const ulc_rfa_opts *r = st->r;
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, t->g, t->opset, ULC_GB_NAMES_DERIVED, ctx);
    ulc_rt_tensor zt;
    int text = r->next_token;
    if (!ulc_analysis_get(t->shapes, t->output, &zt) || zt.rank != (text ? 3 : 2))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "rfa: output '%s' is not %s logits",
                        t->output->name, text ? "[batch, tokens, vocabulary]" : "[batch, classes]");
    st->classes = zt.dims[zt.rank - 1];
    int64_t one = 1;
    ulc_value *label = NULL, *ids = NULL;
    if (text) {
        for (size_t i = 0; i < t->g->inputs.len; i++) {
            ulc_value *v = t->g->inputs.items[i];
            if (v->dtype == ULC_DT_I64 && v->rank == 2 && !(v->flags & ULC_VALUE_PARAM) &&
                strcmp(v->name, "attention_mask") != 0 && !ids)
                ids = v;
        }
        if (!ids) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "rfa: no int64 [batch, tokens] input_ids input");
        st->seq = zt.dims[1];
        if (st->seq < 2) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "rfa: sequences of one token");
    } else {
        label = ulc_tg_input(t, "ulc.rfa.label", ULC_DT_I64, 1, &one, "label", ctx);
        NN(label);
    }
    NN(ulc_tg_input(t, FORGET_IN, ULC_DT_F32, 1, &one, FORGET_COL, ctx));
    ulc_value *w_inter = ulc_tg_input(t, "ulc.rfa.w_inter", ULC_DT_F32, 1, &one, NULL, ctx);
    ulc_value *w_ce = ulc_tg_input(t, "ulc.rfa.w_ce", ULC_DT_F32, 1, &one, NULL, ctx);
    ulc_value *w_soft = ulc_tg_input(t, "ulc.rfa.w_soft", ULC_DT_F32, 1, &one, NULL, ctx);
    int64_t yd[3] = {1, 1, st->classes};
    ulc_value *ybar = text ? ulc_tg_input(t, "ulc.rfa.ybar", ULC_DT_F32, 3, yd, NULL, ctx)
                           : ulc_tg_input(t, "ulc.rfa.ybar", ULC_DT_F32, 2, (int64_t[]){1, st->classes}, NULL, ctx);
    int64_t pd[2] = {1, st->seq};
    ulc_value *posw = text ? ulc_tg_input(t, "ulc.rfa.posw", ULC_DT_F32, 2, pd, NULL, ctx) : NULL;
    NN(w_inter && w_ce && w_soft && ybar && (posw || !text));

    /* L_inter: Σ_k Σ_i w_inter[i] d_k[i] */
    ulc_value *inter = NULL;
    for (int k = 0; k < st->m; k++) {
        ulc_value *s = ulc_graph_get_value(t->g, st->feat[k]);
        ulc_rt_tensor ft;
        if (!s || !ulc_analysis_get(t->shapes, s, &ft) || ft.rank < 2)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "rfa: feature '%s' has no known [batch, ...] "
                            "shape", st->feat[k]);
        /* a sample's feature, whatever the layout ([B, ...], or [B·T, D] around a Gemm): the
         * value's bytes hold the samples one after the other */
        uint64_t numel = ulc_rt_numel(&ft);
        if (numel % (uint64_t)t->batch)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "rfa: feature '%s' (%llu elements) is not "
                            "split by sample at batch %d", st->feat[k], (unsigned long long)numel,
                            t->batch);
        size_t per_row = (size_t)(numel / (uint64_t)t->batch);
        st->row_numel[k] = per_row;
        snprintf(st->tname[k], sizeof st->tname[k], "ulc.rfa.t.%d", k);
        int64_t rd[2] = {1, (int64_t)per_row}, flat[2] = {-1, (int64_t)per_row}, axes[1] = {1};
        ulc_value *tv = ulc_tg_input(t, st->tname[k], ULC_DT_F32, 2, rd, NULL, ctx);
        NN(tv);
        ulc_value *s2 = ulc_gb_op2(b, "Reshape", s, ulc_gb_vec_i64(b, 2, flat)), *d;
        if (r->norm == ULC_RFA_L1) {
            ulc_value *e = ulc_gb_op1(b, "Abs", ulc_gb_op2(b, "Sub", s2, tv));
            d = e ? ulc_gb_reduce_sum(b, e, 1, axes, 0) : NULL;
        } else { /* Σ (s - t)² per row, fused (ir/ops_ulc.def): no [B, P] temporaries */
            ulc_value *sq[2] = {s2, tv};
            d = s2 ? ulc_gb_opn(b, ULC_DOMAIN, "SquaredDistance", 2, sq, 1, NULL) : NULL;
        }
        if (d && r->norm == ULC_RFA_MSE) d = ulc_gb_op2(b, "Mul", d, ulc_gb_scalar_f32(b, (float)(1.0 / (double)per_row)));
        if (d && r->norm == ULC_RFA_L2) d = ulc_gb_op1(b, "Sqrt", ulc_gb_op2(b, "Add", d, ulc_gb_scalar_f32(b, 1e-12f)));
        ulc_value *lk = d ? ulc_gb_op1(b, "ReduceSum", ulc_gb_op2(b, "Mul", d, w_inter)) : NULL;
        NN(lk);
        ulc_gb_attr_int(b, lk, "keepdims", 0);
        inter = inter ? ulc_gb_op2(b, "Add", inter, lk) : lk;
        NN(inter);
    }
    /* L_task: CE on retain rows, soft CE to ybar on forget rows (text: per position, weighted
     * by posw, the row's valid next-token positions), both from one fused SoftmaxCrossEntropy
     * over the logits (ir/ops_ulc.def). Text: the logits at t predict input_ids at t + 1, so the
     * target is input_ids shifted left with an ignored label (-1) in the last position, which
     * posw weighs 0 — the logits are never sliced or copied. */
    ulc_value *target = label;
    if (text && t->opset < 11)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "rfa: a text model's next-token target is built "
                        "with opset-11 Slice/Pad; the model's opset is %lld",
                        (long long)t->opset);
    if (text) {
        int64_t s1 = 1, emax = INT64_MAX, a1 = 1, pads[4] = {0, 0, 0, 1}, none = -1;
        ulc_value *ti[4] = {ids, ulc_gb_vec_i64(b, 1, &s1), ulc_gb_vec_i64(b, 1, &emax),
                            ulc_gb_vec_i64(b, 1, &a1)};
        NN(ti[1] && ti[2] && ti[3]);
        ulc_value *next = ulc_gb_opn(b, NULL, "Slice", 4, ti, 1, NULL);
        ulc_value *pi[3] = {next, ulc_gb_vec_i64(b, 4, pads), ulc_gb_const_i64(b, 0, NULL, &none)};
        NN(pi[0] && pi[1] && pi[2]);
        NN(target = ulc_gb_opn(b, NULL, "Pad", 3, pi, 1, NULL));
    }
    /* ybar is bound per row, every row the same: a classifier's [B, C] is the logits' shape;
     * text's [B, 1, V] gives its first row, one row for every position (the text path's Slice and
     * Pad take inputs: opset 11 and later, as next-token training does) */
    ulc_value *ybar1 = ybar;
    if (text) {
        int64_t z0 = 0, o1 = 1, a0 = 0;
        ulc_value *yi[4] = {ybar, ulc_gb_vec_i64(b, 1, &z0), ulc_gb_vec_i64(b, 1, &o1),
                            ulc_gb_vec_i64(b, 1, &a0)};
        NN(yi[1] && yi[2] && yi[3]);
        NN(ybar1 = ulc_gb_opn(b, NULL, "Slice", 4, yi, 1, NULL));
    }
    ulc_value *sin[3] = {t->output, target, ybar1}, *souts[3] = {NULL, NULL, NULL};
    ulc_gb_opn(b, ULC_DOMAIN, "SoftmaxCrossEntropy", 3, sin, 3, souts);
    ulc_value *ce = souts[0], *sce = souts[2];
    NN(ce && sce);
    if (text) { /* [B, T] → [B]: the row's mean over its valid positions */
        int64_t a1 = 1;
        ce = ulc_gb_reduce_sum(b, ulc_gb_op2(b, "Mul", ce, posw), 1, &a1, 0);
        sce = ulc_gb_reduce_sum(b, ulc_gb_op2(b, "Mul", sce, posw), 1, &a1, 0);
    }
    ulc_value *task = ulc_gb_op2(b, "Add", ulc_gb_op2(b, "Mul", ce, w_ce), ulc_gb_op2(b, "Mul", sce, w_soft));
    ulc_value *task_s = ulc_gb_op1(b, "ReduceSum", task);
    NN(task_s);
    ulc_gb_attr_int(b, task_s, "keepdims", 0);
    ulc_value *total = ulc_gb_op2(b, "Add",
                                 ulc_gb_op2(b, "Mul", inter, ulc_gb_scalar_f32(b, (float)(r->gamma / st->m))),
                                 ulc_gb_op2(b, "Mul", task_s, ulc_gb_scalar_f32(b, (float)(1.0 - r->gamma))));
    ulc_value *out = ulc_gb_named(b, total, "ulc.rfa.loss");
    NN(out);
    *loss = out;
    return ULC_OK;
}

/* ---- the teacher, every step ---------------------------------------------------------------- */

static ulc_status grow(rfa_state *st, size_t rows, ulc_ctx *ctx) {
    if (rows <= st->cap_rows) return ULC_OK;
    size_t c = (size_t)st->classes;
    free(st->ybar_rows), free(st->w_inter), free(st->w_ce), free(st->w_soft);
    st->ybar_rows = malloc(rows * c * sizeof(float));
    if (!st->acc) { /* sized once: the widest feature row or the class count */
        size_t w = c;
        for (int k = 0; k < st->m; k++) w = st->row_numel[k] > w ? st->row_numel[k] : w;
        st->acc = malloc(w * sizeof *st->acc);
    }
    st->w_inter = malloc(rows * sizeof(float));
    st->w_ce = malloc(rows * sizeof(float));
    st->w_soft = malloc(rows * sizeof(float));
    free(st->posw), free(st->pos), free(st->pos_w);
    size_t npos = rows * (size_t)(st->seq > 1 ? st->seq : 1);
    st->posw = malloc(npos * sizeof(float));
    st->pos = malloc(npos * sizeof *st->pos);
    st->pos_w = malloc(npos * sizeof *st->pos_w);
    if (!st->ybar_rows || !st->acc || !st->w_inter || !st->w_ce || !st->w_soft || !st->posw ||
        !st->pos || !st->pos_w)
        goto oom;
    st->cap_rows = rows;
    return ULC_OK;
oom:
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (rfa targets for %zu rows)", rows);
}

/* ybar: the mean of the teacher's softmax over the retain rows' weighted positions (images: one
 * position of weight 1 per row), from the teacher's logits z and their log-sum-exp (the
 * teacher graph's fused SoftmaxCrossEntropy, "ulc.rfa.lse"), exponentials by the runtime's
 * vectorised exp. Threads split the classes: each class sums its positions in row order, so the
 * bits do not depend on the thread count. */
static ulc_status retain_softmax_mean(rfa_state *st, const float *z, const float *f, size_t rows,
                                      size_t T, ulc_ctx *ctx) {
    const ulc_rt_tensor *lt = ulc_session_output(st->teacher, LSE_OUT);
    size_t C = (size_t)st->classes, Tm = T > 1 ? T - 1 : 1, np = 0;
    if (!lt || ulc_rt_numel(lt) != rows * T)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "rfa: the teacher's log-sum-exp has the wrong size");
    const float *lse = lt->data;
    double wsum = 0;
    for (size_t i = 0; i < rows; i++) {
        if (f[i] != 0.0f) continue;
        for (size_t q = 0; q < Tm; q++) {
            double w = st->r->next_token ? st->posw[i * T + q] : 1.0;
            if (w == 0) continue;
            st->pos[np] = i * T + q;
            st->pos_w[np++] = w;
            wsum += w;
        }
    }
    double *acc = st->acc;
    const size_t *pos = st->pos;
    const double *pw = st->pos_w;
    int64_t nblk = (int64_t)((C + 255) / 256);
#pragma omp parallel for schedule(static) num_threads(st->threads) if (np * C >= 65536)
    for (int64_t b = 0; b < nblk; b++) {
        size_t c0 = (size_t)b * 256, c1 = c0 + 256 < C ? c0 + 256 : C, n = c1 - c0;
        float q[256];
        for (size_t c = c0; c < c1; c++) acc[c] = 0;
        for (size_t k = 0; k < np; k++) {
            const float *zr = z + pos[k] * C + c0;
            float l = lse[pos[k]];
            double w = pw[k];
            for (size_t c = 0; c < n; c++) q[c] = zr[c] - l;
            ulc_rt_vexp_f32(q, q, (int64_t)n);
            for (size_t c = 0; c < n; c++) acc[c0 + c] += w * (double)q[c];
        }
    }
    for (size_t c = 0; c < C; c++) st->ybar[c] = (float)(wsum > 0 ? acc[c] / wsum : 0.0);
    st->have_means = 1;
    return ULC_OK;
}

/* The row weights α/|b_r|, β/|b_f|, λ/|b_r|, μ/|b_f| (forget terms 0 before any retain mean). */
static ulc_status row_weights(rfa_state *st, ulc_session *s, const float *f, size_t rows, size_t nr,
                              size_t nf, ulc_ctx *ctx) {
    const ulc_rfa_opts *r = st->r;
    for (size_t i = 0; i < rows; i++) {
        int fg = f[i] != 0.0f;
        st->w_inter[i] = fg ? (st->have_means ? (float)(r->beta / (double)nf) : 0.0f)
                            : (float)(r->alpha / (double)nr);
        st->w_ce[i] = fg ? 0.0f : (float)(r->lambda / (double)nr);
        st->w_soft[i] = fg && st->have_means ? (float)(r->mu / (double)nf) : 0.0f;
    }
    int64_t bd[1] = {(int64_t)rows};
    ULC_TRY(ulc_session_set_f32(s, "ulc.rfa.w_inter", st->w_inter, 1, bd, ctx));
    ULC_TRY(ulc_session_set_f32(s, "ulc.rfa.w_ce", st->w_ce, 1, bd, ctx));
    return ulc_session_set_f32(s, "ulc.rfa.w_soft", st->w_soft, 1, bd, ctx);
}

/* A batch with retain rows on a device: the teacher's graph made the targets and ybar's rows
 * (add_device_targets); the student reads them, and the teacher's copy of the batch, where they
 * are. The means and ybar come back for a later batch without retain rows. */
static ulc_status device_targets(rfa_state *st, ulc_session *s, const float *f, size_t rows,
                                 size_t nr, size_t nf, ulc_ctx *ctx) {
    char name[64];
    for (int k = 0; k < st->m; k++) {
        snprintf(name, sizeof name, DEV_TARGET, k);
        const ulc_rt_tensor *tt = ulc_session_output_device(st->teacher, name);
        snprintf(name, sizeof name, DEV_MEAN, k);
        const ulc_rt_tensor *mt = ulc_session_output(st->teacher, name);
        size_t P = st->row_numel[k];
        if (!tt || !mt || ulc_rt_numel(tt) != rows * P || ulc_rt_numel(mt) != P)
            return ulc_fail(ctx, ULC_ERR_INTERNAL, "rfa: the teacher's device target %d is missing "
                            "or of the wrong size", k);
        ULC_TRY(ulc_session_set_input_device(s, st->tname[k], tt, ctx));
        if (!st->mean[k] && !(st->mean[k] = malloc(P * sizeof(float))))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (rfa means)");
        memcpy(st->mean[k], mt->data, P * sizeof(float));
    }
    const ulc_rt_tensor *yr = ulc_session_output_device(st->teacher, DEV_YBAR_ROWS);
    const ulc_rt_tensor *yb = ulc_session_output(st->teacher, DEV_YBAR);
    size_t C = (size_t)st->classes;
    if (!yr || !yb || ulc_rt_numel(yb) != C)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "rfa: the teacher's device ybar is missing");
    if (!st->ybar && !(st->ybar = calloc(C, sizeof(float))))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    memcpy(st->ybar, yb->data, C * sizeof(float));
    ULC_TRY(ulc_session_set_input_device(s, "ulc.rfa.ybar", yr, ctx));
    for (int i = 0; i < st->n_tin; i++) { /* the batch, uploaded once: the teacher's copy */
        if (ulc_session_input_device(s, st->tin[i])) continue; /* already on the device */
        const ulc_rt_tensor *x = ulc_session_input_device(st->teacher, st->tin[i]);
        if (x && strcmp(st->tin[i], FORGET_IN) != 0) ULC_TRY(ulc_session_set_input_device(s, st->tin[i], x, ctx));
    }
    st->have_means = 1;
    return row_weights(st, s, f, rows, nr, nf, ctx);
}

static ulc_status before_step(void *arg, ulc_session *s, const ulc_rt_tensor *const *batch,
                              int n, ulc_ctx *ctx) {
    rfa_state *st = arg;
    const ulc_rfa_opts *r = st->r;
    if (st->in_idx >= n || st->mask_idx >= n)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "rfa: batch inputs missing");
    const ulc_rt_tensor *x = batch[st->in_idx], *mask = batch[st->mask_idx];
    size_t rows = (size_t)x->dims[0];
    ULC_TRY(grow(st, rows, ctx));
    for (int i = 0; i < st->n_tin; i++) {
        /* a batch the trainer keeps on the device is read there (no upload) */
        const ulc_rt_tensor *dx = ulc_session_input_device(s, st->tin[i]);
        ULC_TRY(dx ? ulc_session_set_input_device(st->teacher, st->tin[i], dx, ctx)
                   : ulc_session_set_input(st->teacher, st->tin[i], batch[st->tin_idx[i]], ctx));
    }
    ULC_TRY(ulc_session_run(st->teacher, ctx));
    const float *f = mask->data;
    size_t nr = 0, nf = 0;
    for (size_t i = 0; i < rows; i++) {
        if (f[i] != 0.0f) nf++;
        else nr++;
    }
    if (st->dev_targets && nr) return device_targets(st, s, f, rows, nr, nf, ctx);
    /* the retain mean of the teacher's softmax */
    const ulc_rt_tensor *z = ulc_session_output(st->teacher, st->t_output);
    size_t C = (size_t)st->classes, T = r->next_token ? (size_t)st->seq : 1;
    if (!z || z->dtype != ULC_DT_F32 || ulc_rt_numel(z) != rows * T * C)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "rfa: teacher output has the wrong size");
    /* text: the valid next-token positions of each row, weighted to sum to 1 */
    const int64_t *am = st->am_idx >= 0 && batch[st->am_idx]->dtype == ULC_DT_I64
                            ? batch[st->am_idx]->data : NULL;
    size_t Tm = T > 1 ? T - 1 : 1;
    for (size_t i = 0; r->next_token && i < rows; i++) {
        size_t valid = 0;
        for (size_t q = 0; q < Tm; q++) valid += !am || am[i * T + q + 1] != 0;
        for (size_t q = 0; q < Tm; q++)
            st->posw[i * T + q] = (!am || am[i * T + q + 1] != 0) && valid ? 1.0f / (float)valid : 0.0f;
        st->posw[i * T + T - 1] = 0.0f; /* the last position predicts nothing */
    }
    if (!st->ybar && !(st->ybar = calloc(C, sizeof(float))))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (nr) ULC_TRY(retain_softmax_mean(st, z->data, f, rows, T, ctx));
    for (size_t i = 0; i < rows; i++) memcpy(st->ybar_rows + i * C, st->ybar, C * sizeof(float));
    /* features: retain means (double sums, row order: deterministic), then the targets */
    for (int k = 0; k < st->m; k++) {
        const ulc_rt_tensor *tf = ulc_session_output(st->teacher, st->feat[k]);
        size_t P = st->row_numel[k];
        if (!tf || tf->dtype != ULC_DT_F32 || ulc_rt_numel(tf) != rows * P)
            return ulc_fail(ctx, ULC_ERR_INTERNAL, "rfa: teacher feature '%s' is not float32 of "
                            "the expected size", st->feat[k]);
        const float *tv = tf->data;
        if (nr) {
            if (!st->mean[k] && !(st->mean[k] = malloc(P * sizeof(float))))
                return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (rfa means)");
            /* threads split the feature's elements; each sums its rows in row order */
            double *acc = st->acc;
            float *mean = st->mean[k];
            int64_t nblk = (int64_t)((P + MEAN_BLOCK - 1) / MEAN_BLOCK);
#pragma omp parallel for schedule(static) num_threads(st->threads) if (rows * P >= 65536)
            for (int64_t b = 0; b < nblk; b++) {
                size_t p0 = (size_t)b * MEAN_BLOCK, p1 = p0 + MEAN_BLOCK < P ? p0 + MEAN_BLOCK : P;
                for (size_t p = p0; p < p1; p++) acc[p] = 0;
                for (size_t i = 0; i < rows; i++)
                    if (f[i] == 0.0f)
                        for (size_t p = p0; p < p1; p++) acc[p] += tv[i * P + p];
                for (size_t p = p0; p < p1; p++) mean[p] = (float)(acc[p] / (double)nr);
            }
        }
        /* The target is the teacher's output itself, its forget rows overwritten by the mean:
         * the teacher session's output buffer is not read again before its next run, which
         * comes after the student's (ybar, which reads the logits, was taken above). A
         * vocabulary head's [B, T·V] target is never copied. */
        if (nr || st->have_means) {
            const float *mean = st->mean[k];
            float *tw = (float *)tf->data;
            for (size_t i = 0; i < rows; i++)
                if (f[i] != 0.0f) memcpy(tw + i * P, mean, P * sizeof(float));
        }
        int64_t td2[2] = {(int64_t)rows, (int64_t)P};
        ULC_TRY(ulc_session_set_f32(s, st->tname[k], (float *)tf->data, 2, td2, ctx));
    }
    int64_t bd[2] = {(int64_t)rows, (int64_t)C}, td[3] = {(int64_t)rows, 1, (int64_t)C};
    if (r->next_token) {
        int64_t pd[2] = {(int64_t)rows, (int64_t)T};
        ULC_TRY(ulc_session_set_f32(s, "ulc.rfa.posw", st->posw, 2, pd, ctx));
        ULC_TRY(ulc_session_set_f32(s, "ulc.rfa.ybar", st->ybar_rows, 3, td, ctx));
    } else {
        ULC_TRY(ulc_session_set_f32(s, "ulc.rfa.ybar", st->ybar_rows, 2, bd, ctx));
    }
    return row_weights(st, s, f, rows, nr, nf, ctx);
}

/* The device path's part of the teacher's graph: from the forget flags (a new input, the same
 * column the student reads) the retain means of each feature and of the softmax, and the
 * targets — the feature with its forget rows replaced by the mean:
 *   r = 1 - f [1, B];  n = max(Σ r, 1);  mean_k = (r · t_k[B, P]) / n;  target_k = f ? mean_k : t_k
 *   ybar = (r · softmax(z)) / n;  ybar_rows = ybar expanded to z's [B, C]
 * Outputs DEV_TARGET/DEV_MEAN per feature, DEV_YBAR and DEV_YBAR_ROWS. */
static ulc_status add_device_targets(rfa_state *st, ulc_model *tm, const ulc_value *zo, ulc_ctx *ctx) {
    ulc_graph *g = tm->graph;
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, g, ulc_model_opset(tm, NULL), ULC_GB_NAMES_DERIVED, ctx);
    ulc_dim bdim = {-1, "batch", NULL};
    ulc_value *f = ulc_gb_input(b, FORGET_IN, ULC_DT_F32, 1, &bdim);
    int64_t a0 = 0, a1 = 1, shp[2] = {1, -1};
    ulc_value *r = ulc_gb_op2(b, "Sub", ulc_gb_scalar_f32(b, 1.0f), f);
    ulc_value *r2 = ulc_gb_op2(b, "Reshape", r, ulc_gb_vec_i64(b, 2, shp)); /* [1, B] */
    ulc_value *n = ulc_gb_op2(b, "Max", ulc_gb_reduce_sum(b, r, 1, &a0, 0), ulc_gb_scalar_f32(b, 1.0f));
    ulc_value *fb = ulc_gb_op2(b, "Greater", ulc_gb_unsqueeze(b, f, 1, &a1), ulc_gb_scalar_f32(b, 0.0f));
    char name[64];
    for (int k = 0; k < st->m && b->status == ULC_OK; k++) {
        ulc_value *t = ulc_graph_get_value(g, st->feat[k]);
        int64_t flat[2] = {-1, (int64_t)st->row_numel[k]};
        ulc_value *t2 = ulc_gb_op2(b, "Reshape", t, ulc_gb_vec_i64(b, 2, flat));
        ulc_value *mean = ulc_gb_op2(b, "Div", ulc_gb_op2(b, "MatMul", r2, t2), n); /* [1, P] */
        ulc_value *tgt = ulc_gb_op3(b, "Where", fb, mean, t2);
        snprintf(name, sizeof name, DEV_TARGET, k);
        ulc_gb_output(b, tgt, name, ULC_DT_F32, 2, (ulc_dim[]){{-1, "batch", NULL}, {flat[1], NULL, NULL}});
        snprintf(name, sizeof name, DEV_MEAN, k);
        ulc_gb_output(b, mean, name, ULC_DT_F32, 2, (ulc_dim[]){{1, NULL, NULL}, {flat[1], NULL, NULL}});
    }
    ulc_value *sm = ulc_gb_op1(b, "Softmax", (ulc_value *)zo);
    if (sm) ulc_gb_attr_int(b, sm, "axis", -1);
    ulc_value *ybar = ulc_gb_op2(b, "Div", ulc_gb_op2(b, "MatMul", r2, sm), n); /* [1, C] */
    ulc_value *rows = ulc_gb_op2(b, "Expand", ybar, ulc_gb_shape(b, (ulc_value *)zo));
    ulc_gb_output(b, ybar, DEV_YBAR, ULC_DT_F32, 2, (ulc_dim[]){{1, NULL, NULL}, {st->classes, NULL, NULL}});
    ulc_gb_output(b, rows, DEV_YBAR_ROWS, ULC_DT_F32, 2,
                  (ulc_dim[]){{-1, "batch", NULL}, {st->classes, NULL, NULL}});
    return b->status;
}

static void state_free(rfa_state *st) {
    for (int k = 0; k < st->m; k++) free(st->mean[k]);
    free(st->ybar), free(st->ybar_rows), free(st->acc), free(st->posw), free(st->pos), free(st->pos_w);
    free(st->w_inter), free(st->w_ce), free(st->w_soft);
    ulc_session_free(st->teacher);
}

/* ---- the run ---------------------------------------------------------------------------------- */

ulc_status ulc_rfa_run(ulc_model *model, const ulc_model *teacher, const ulc_dataset *data,
                       const uint8_t *forget, const ulc_train_opts *o, const ulc_rfa_opts *r,
                       ulc_train_stats *stats, ulc_ctx *ctx) {
    memset(stats, 0, sizeof *stats);
    ULC_TRY(ulc_lora_records_load(model, ctx));
    rfa_state st = {.r = r};
    for (size_t i = 0; i < model->lora.len; i++) {
        const ulc_lora_record *rec = model->lora.items[i];
        if (rec->merged) continue;
        if (st.m == MAX_FEATURES)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "rfa: more than %d adapted layers", MAX_FEATURES);
        const ulc_value *tv = ulc_graph_get_value(teacher->graph, rec->out);
        if (!tv || !tv->producer)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                            "rfa: the teacher has no value '%s' (the output of adapted module '%s')",
                            rec->out, rec->module);
        st.feat[st.m++] = rec->out;
    }
    if (!st.m)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "rfa: the model has no LoRA adapters to train");
    if (!(r->gamma >= 0 && r->gamma <= 1))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "rfa: gamma %g is outside [0, 1]", r->gamma);

    /* the dataset, plus the forget flags as a column */
    ulc_dataset d = *data;
    int64_t n_rows = data->n_rows;
    float *flags = malloc((size_t)(n_rows ? n_rows : 1) * sizeof *flags);
    const char **names = calloc((size_t)d.n_cols + 1, sizeof *names);
    const ulc_tensor **cols = calloc((size_t)d.n_cols + 1, sizeof *cols);
    ulc_tensor flag_t = {.name = FORGET_COL, .dtype = ULC_DT_F32, .rank = 1, .dims = &n_rows,
                         .numel = (uint64_t)n_rows, .storage = ULC_STORAGE_OWNED, .data = flags,
                         .nbytes = (size_t)n_rows * sizeof(float)};
    ulc_model *tclone = NULL;
    ulc_train_graph tg = {0};
    float **vals = NULL;
    ulc_status s = ULC_OK;
    if (!flags || !names || !cols) {
        s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (rfa)");
        goto done;
    }
    for (int64_t i = 0; i < n_rows; i++) flags[i] = forget[i] ? 1.0f : 0.0f;
    memcpy(names, d.names, (size_t)d.n_cols * sizeof *names);
    memcpy(cols, d.cols, (size_t)d.n_cols * sizeof *cols);
    names[d.n_cols] = FORGET_COL;
    cols[d.n_cols] = &flag_t;
    d.n_cols++;
    d.names = names;
    d.cols = cols;

    ulc_train_task task = {.input = r->input, .output = r->output, .custom_loss = build_loss,
                           .custom_arg = &st, .keep = st.feat, .n_keep = st.m};
    if ((s = ulc_train_graph_build(model, &d, &task, o->batch_size, &tg, ctx)) != ULC_OK) goto done;

    /* the teacher session: its output plus every feature */
    if ((s = ulc_model_clone_shallow(teacher, &tclone, ctx)) != ULC_OK) goto done;
    ulc_graph *tgph = tclone->graph;
    const ulc_value *zo = NULL;
    for (size_t i = 0; i < tgph->outputs.len; i++) {
        const ulc_value *v = tgph->outputs.items[i];
        if (r->output ? strcmp(v->name, r->output) == 0 : i == 0) zo = v;
    }
    if (!zo) {
        s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "rfa: the teacher has no output '%s'",
                     r->output ? r->output : "");
        goto done;
    }
    st.t_output = zo->name;
    for (int k = 0; k < st.m; k++) {
        ulc_value *v = ulc_graph_get_value(tgph, st.feat[k]);
        if (!(v->flags & ULC_VALUE_OUTPUT)) {
            v->flags |= ULC_VALUE_OUTPUT;
            if (ulc_ptrvec_push(&tgph->outputs, v) != 0) {
                s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
    }
    { /* the log-sum-exp of the teacher's logits, for ybar (retain_softmax_mean) */
        ulc_gb gb;
        ulc_gb_init(&gb, tgph, ulc_model_opset(tclone, NULL), ULC_GB_NAMES_DERIVED, ctx);
        ulc_value *zin = (ulc_value *)zo, *outs[2] = {NULL, NULL};
        ulc_gb_opn(&gb, ULC_DOMAIN, "SoftmaxCrossEntropy", 1, &zin, 2, outs);
        ulc_gb_output(&gb, outs[1], LSE_OUT, ULC_DT_F32, zo->rank > 0 ? zo->rank - 1 : 0, zo->dims);
        if ((s = gb.status) != ULC_OK) goto done;
    }
    st.threads = ulc_threads_pick(o->threads);
    ulc_session_opts so = ulc_session_defaults();
    /* a classifier on a device: the targets are made there (add_device_targets); text models
     * (per-position weights) and the cpu take the host path */
    const char *hp = getenv("ULC_RFA_HOST_TARGETS");
    st.dev_targets = ulc_backend_on_device(so.backend) && !r->next_token && zo->rank == 2 &&
                     !(hp && *hp && strcmp(hp, "0") != 0);
    if (st.dev_targets && (s = add_device_targets(&st, tclone, zo, ctx)) != ULC_OK) goto done;
    so.threads = o->threads;
    so.profile = o->profile;
    if ((s = ulc_session_create(tclone, &so, &st.teacher, ctx)) != ULC_OK) goto done;
    st.tmodel = tclone;
    st.in_idx = st.mask_idx = st.am_idx = -1;
    for (int i = 0; i < tg.n_data; i++) {
        if (!strcmp(tg.data_cols[i], FORGET_COL)) st.mask_idx = i;
        else if (tg.main_input && !strcmp(tg.data_inputs[i], tg.main_input)) st.in_idx = i;
        if (!strcmp(tg.data_inputs[i], "attention_mask")) st.am_idx = i;
    }
    for (size_t i = 0; i < tgph->inputs.len; i++) { /* the teacher reads what the student reads */
        const ulc_value *v = tgph->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        int k = 0;
        while (k < tg.n_data && strcmp(tg.data_inputs[k], v->name) != 0) k++;
        if (k == tg.n_data || st.n_tin == 16) {
            s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "rfa: teacher input '%s' is not in the data",
                         v->name);
            goto done;
        }
        st.tin[st.n_tin] = v->name;
        st.tin_idx[st.n_tin++] = k;
    }
    if (st.in_idx < 0 || st.mask_idx < 0) {
        s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "rfa: the data has no 'input' column for the model");
        goto done;
    }

    ulc_train_opts to = *o;
    to.before_step = before_step;
    to.hook_arg = &st;
    if (!to.label) to.label = "rfa";
    if ((s = ulc_train_graph_params(model, &tg, &vals, ctx)) != ULC_OK) goto done;
    if ((s = ulc_train_run(&tg, &d, &to, vals, stats, ctx)) != ULC_OK) goto done;
    if (o->profile) {
        FILE *pf = o->progress ? o->progress : stderr;
        fprintf(pf, "%s: the teacher's session (inside the before-step hook)\n", to.label);
        ulc_session_profile(st.teacher, pf);
    }
    s = ulc_train_graph_write_back(model, &tg, vals, ctx);
done:
    ulc_train_graph_free_params(&tg, vals);
    state_free(&st);
    ulc_train_graph_clear(&tg);
    ulc_model_free(tclone);
    free(flags);
    free(names);
    free(cols);
    return s;
}
