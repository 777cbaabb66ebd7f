/*
 * nhl.c — nhl-kl, knowledge-tracing unlearning for CLIP (Tan & Gong; shared/methods/
 * megu-clip-and-more.md): forget fine concepts while keeping their coarse parents and the other
 * fine classes, from exemplar images alone.
 *
 * It runs on CLIP as zero-shot classifiers (passes/clip_zeroshot.h): the output u->output holds
 * the fine classes' logits z [B, K] (logit-scaled image–text similarity, the paper's SIM) and
 * u->coarse_output the coarse classes' zc [B, Kc]. With f the forget flag of a row, y its fine
 * label and p0 the frozen original's softmax:
 *
 *   L = Σ_b f_b·max(0, m + z_b[y_b] − max_{y'≠y_b} z_b[y']) / max(1, Σ_b f_b)
 *     + α_c · mean_b KL(p0_coarse ‖ softmax(zc_b))
 *     + α_f · mean_b KL(p0_kept ‖ softmax(z_b[kept]))
 *
 * where kept are the fine classes not forgotten (the KL over them alone, so the forgotten
 * concepts' mass is free to move). The hinge's max over the other classes is taken in the graph
 * from a 0/1 mask of the argmax (a constant to autodiff: ties average, as the subgradient may).
 * The teacher's distributions are computed once over every training row, as data columns; the
 * KL terms cover every row (the paper's pseudo-retain set is the exemplars themselves, with
 * their coarse labels), the hinge the forget rows.
 */
#include "methods/unlearn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/builder.h"
#include "train/train_graph.h"

#define COL_FLAG "ulc.nhl.forget"
#define COL_ONEHOT "ulc.nhl.onehot"
#define COL_QC "ulc.nhl.q_coarse"
#define COL_QCLOG "ulc.nhl.qlogq_coarse"
#define COL_QF "ulc.nhl.q_kept"
#define COL_QFLOG "ulc.nhl.qlogq_kept"
#define N_EXTRA 6

typedef struct nhl_state {
    const ulc_unlearn_opts *u;
    int64_t K, Kc, nk;
    int64_t *kept;             /* [nk] the fine classes kept */
    /* the extra columns */
    ulc_tensor t[N_EXTRA];
    int64_t dims[N_EXTRA][2];
    float *buf[N_EXTRA];
    ulc_dataset d;
    const char **names;
    const ulc_tensor **cols;
} nhl_state;

#define NN(e)                                                                                  \
    do {                                                                                       \
        if (!(e)) return ctx->status ? ctx->status : ULC_ERR_NOMEM;                            \
    } while (0)

static void state_free(nhl_state *st) {
    for (int i = 0; i < N_EXTRA; i++) free(st->buf[i]);
    free(st->kept);
    free(st->names);
    free(st->cols);
}

/* ---- the loss ----------------------------------------------------------------------------------- */

static ulc_value *sum_axis1(ulc_gb *b, ulc_value *x, int keep) {
    return ulc_gb_reduce_sum(b, x, 1, (const int64_t[]){1}, keep);
}

static ulc_value *sum_all(ulc_gb *b, ulc_value *x) {
    ulc_value *r = x ? ulc_gb_op1(b, "ReduceSum", x) : NULL;
    if (r) ulc_gb_attr_int(b, r, "keepdims", 0);
    return r;
}

/* mean_b (qlogq_b − Σ_k q_bk · log_softmax(z)_bk): the KL's value, its gradient the CE's. */
static ulc_value *kl_term(ulc_gb *b, ulc_value *z, ulc_value *q, ulc_value *qlogq) {
    ulc_value *lsm = ulc_gb_op1(b, "LogSoftmax", z);
    if (lsm) ulc_gb_attr_int(b, lsm, "axis", 1);
    ulc_value *kl = ulc_gb_op2(b, "Sub", qlogq, sum_axis1(b, ulc_gb_op2(b, "Mul", q, lsm), 0));
    ulc_value *r = kl ? ulc_gb_op1(b, "ReduceMean", kl) : NULL;
    if (r) ulc_gb_attr_int(b, r, "keepdims", 0);
    return r;
}

static ulc_status build_loss(void *arg, ulc_tg *t, ulc_value **loss, ulc_ctx *ctx) {
    nhl_state *st = arg;
    const ulc_unlearn_opts *u = st->u;
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, t->g, t->opset, ULC_GB_NAMES_DERIVED, ctx);
    ulc_value *z = t->output;
    ulc_value *zc = ulc_graph_get_value(t->g, u->coarse_output);
    if (!zc)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "nhl-kl: the model has no output '%s' (the "
                        "coarse classes' logits)", u->coarse_output);
    int64_t one = 1, bk[2] = {1, st->K}, bc[2] = {1, st->Kc}, bn[2] = {1, st->nk};
    ulc_value *f = ulc_tg_input(t, "ulc.nhl.forget", ULC_DT_F32, 1, &one, COL_FLAG, ctx);
    ulc_value *oh = ulc_tg_input(t, "ulc.nhl.onehot", ULC_DT_F32, 2, bk, COL_ONEHOT, ctx);
    ulc_value *qc = ulc_tg_input(t, "ulc.nhl.q_coarse", ULC_DT_F32, 2, bc, COL_QC, ctx);
    ulc_value *qcl = ulc_tg_input(t, "ulc.nhl.qlogq_coarse", ULC_DT_F32, 1, &one, COL_QCLOG, ctx);
    ulc_value *qf = ulc_tg_input(t, "ulc.nhl.q_kept", ULC_DT_F32, 2, bn, COL_QF, ctx);
    ulc_value *qfl = ulc_tg_input(t, "ulc.nhl.qlogq_kept", ULC_DT_F32, 1, &one, COL_QFLOG, ctx);
    NN(f && oh && qc && qcl && qf && qfl);
    /* the hinge: z[y] against the largest other logit */
    ulc_value *zy = sum_axis1(b, ulc_gb_op2(b, "Mul", z, oh), 0);
    ulc_value *zm = ulc_gb_op2(b, "Sub", z, ulc_gb_op2(b, "Mul", oh, ulc_gb_scalar_f32(b, 1e30f)));
    ulc_value *mx;
    if (t->opset >= 18) { /* axes are an input from opset 18 */
        ulc_value *in[2] = {zm, ulc_gb_vec_i64(b, 1, (const int64_t[]){1})};
        NN(mx = ulc_gb_op(b, "ReduceMax", 2, in));
    } else {
        NN(mx = ulc_gb_op1(b, "ReduceMax", zm));
        ulc_gb_attr_ints(b, mx, "axes", 1, (const int64_t[]){1});
    }
    ulc_gb_attr_int(b, mx, "keepdims", 1);
    ulc_value *is_max = ulc_gb_op1(b, "Cast", ulc_gb_op2(b, "Equal", zm, mx));
    NN(is_max);
    ulc_gb_attr_int(b, is_max, "to", ULC_DT_F32);
    ulc_value *zo = ulc_gb_op2(b, "Div", sum_axis1(b, ulc_gb_op2(b, "Mul", z, is_max), 0),
                               sum_axis1(b, is_max, 0));
    ulc_value *h = ulc_gb_op1(b, "Relu", ulc_gb_op2(b, "Add", ulc_gb_op2(b, "Sub", zy, zo),
                                                    ulc_gb_scalar_f32(b, (float)u->nhl_margin)));
    ulc_value *nf = ulc_gb_op2(b, "Max", sum_all(b, f), ulc_gb_scalar_f32(b, 1.0f));
    ulc_value *total = ulc_gb_op2(b, "Div", sum_all(b, ulc_gb_op2(b, "Mul", h, f)), nf);
    NN(total);
    if (u->nhl_alpha_coarse > 0)
        total = ulc_gb_op2(b, "Add", total,
                           ulc_gb_op2(b, "Mul", kl_term(b, zc, qc, qcl),
                                      ulc_gb_scalar_f32(b, (float)u->nhl_alpha_coarse)));
    if (u->nhl_alpha_fine > 0) {
        ulc_value *zk = ulc_gb_op2(b, "Gather", z, ulc_gb_vec_i64(b, (int)st->nk, st->kept));
        if (zk) ulc_gb_attr_int(b, zk, "axis", 1);
        total = ulc_gb_op2(b, "Add", total,
                           ulc_gb_op2(b, "Mul", kl_term(b, zk, qf, qfl),
                                      ulc_gb_scalar_f32(b, (float)u->nhl_alpha_fine)));
    }
    NN(total);
    NN(*loss = ulc_gb_named(b, total, "ulc.unlearn.loss"));
    return ULC_OK;
}

/* ---- the columns ---------------------------------------------------------------------------------- */

/* softmax(z[idx]) into q (n entries; idx NULL: 0..n), returning Σ q log q. */
static double softmax_of(const float *z, const int64_t *idx, int64_t n, float *q) {
    double mx = -INFINITY, s = 0, qlq = 0;
    for (int64_t k = 0; k < n; k++) mx = fmax(mx, z[idx ? idx[k] : k]);
    for (int64_t k = 0; k < n; k++) s += exp(z[idx ? idx[k] : k] - mx);
    for (int64_t k = 0; k < n; k++) {
        double p = exp(z[idx ? idx[k] : k] - mx) / s;
        q[k] = (float)p;
        if (p > 0) qlq += p * log(p);
    }
    return qlq;
}


static ulc_status add_col(nhl_state *st, int i, const char *name, int64_t n, int64_t w,
                          ulc_ctx *ctx) {
    if (!(st->buf[i] = calloc((size_t)(n * (w > 0 ? w : 1)) + 1, sizeof(float))))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (nhl-kl targets)");
    ulc_tensor *t = &st->t[i];
    st->dims[i][0] = n, st->dims[i][1] = w;
    t->name = name;
    t->dtype = ULC_DT_F32;
    t->rank = w > 0 ? 2 : 1;
    t->dims = st->dims[i];
    t->numel = (uint64_t)(n * (w > 0 ? w : 1));
    t->storage = ULC_STORAGE_OWNED;
    t->data = st->buf[i];
    t->nbytes = (size_t)t->numel * sizeof(float);
    st->names[st->d.n_cols] = name;
    st->cols[st->d.n_cols++] = t;
    return ULC_OK;
}

static ulc_status columns(nhl_state *st, const ulc_unlearn_call *c, ulc_ctx *ctx) {
    const ulc_dataset *d = c->data;
    int64_t n = d->n_rows, K = st->K, Kc = st->Kc, nk = st->nk;
    int lc = ulc_dataset_find(d, "label");
    if (lc < 0 || d->cols[lc]->dtype != ULC_DT_I64)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "nhl-kl: %s has no int64 'label' column (the "
                        "fine class of each exemplar)", ulc_dataset_path(d));
    const int64_t *y = d->cols[lc]->data;
    st->names = calloc((size_t)d->n_cols + N_EXTRA, sizeof *st->names);
    st->cols = calloc((size_t)d->n_cols + N_EXTRA, sizeof *st->cols);
    if (!st->names || !st->cols) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < d->n_cols; i++) st->names[i] = d->names[i], st->cols[i] = d->cols[i];
    st->d = (ulc_dataset){.n_cols = d->n_cols, .names = st->names, .cols = st->cols,
                          .n_rows = n, .path = d->path};
    ULC_TRY(add_col(st, 0, COL_FLAG, n, 0, ctx));
    ULC_TRY(add_col(st, 1, COL_ONEHOT, n, K, ctx));
    ULC_TRY(add_col(st, 2, COL_QC, n, Kc, ctx));
    ULC_TRY(add_col(st, 3, COL_QCLOG, n, 0, ctx));
    ULC_TRY(add_col(st, 4, COL_QF, n, nk, ctx));
    ULC_TRY(add_col(st, 5, COL_QFLOG, n, 0, ctx));
    /* the teacher over every row once, both outputs */
    float *z[2] = {NULL, NULL};
    int64_t got = 0, cls[2] = {0, 0};
    const char *outs[2] = {c->u->output, c->u->coarse_output};
    uint8_t *all = malloc((size_t)n + 1);
    ulc_status s = all ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (all) memset(all, 1, (size_t)n);
    if (s == ULC_OK)
        s = ulc_teacher_outputs(c->teacher, d, all, c->u->input, outs, 2, c->o->threads, z, &got,
                                cls, ctx);
    free(all);
    if (s == ULC_OK && (got != n || cls[0] != K || cls[1] != Kc))
        s = ulc_fail(ctx, ULC_ERR_INTERNAL, "nhl-kl: the teacher's outputs do not match the "
                     "model's ([%lld, %lld] and [%lld, %lld])", (long long)n, (long long)K,
                     (long long)n, (long long)Kc);
    float *zf = z[0], *zc = z[1];
    for (int64_t i = 0; s == ULC_OK && i < n; i++) {
        if (y[i] < 0 || y[i] >= K) {
            s = ulc_fail(ctx, ULC_ERR_INVALID, "nhl-kl: %s: row %lld has label %lld, outside the "
                         "%lld classes", ulc_dataset_path(d), (long long)i, (long long)y[i],
                         (long long)K);
            break;
        }
        st->buf[0][i] = c->forget[i] ? 1.0f : 0.0f;
        st->buf[1][i * K + y[i]] = 1.0f;
        st->buf[3][i] = (float)softmax_of(zc + i * Kc, NULL, Kc, st->buf[2] + i * Kc);
        st->buf[5][i] = (float)softmax_of(zf + i * K, st->kept, nk, st->buf[4] + i * nk);
    }
    free(zf);
    free(zc);
    return s;
}

ulc_status ulc_nhl_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    const ulc_unlearn_opts *u = c->u;
    nhl_state st = {.u = u};
    st.K = ulc_unlearn_classes(c->model, u->output);
    st.Kc = ulc_unlearn_classes(c->model, u->coarse_output);
    if (!u->coarse_output || st.K < 2 || st.Kc < 2)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "nhl-kl: the model is not a CLIP zero-shot "
                        "classifier with fine ('%s') and coarse ('%s') outputs (give a CLIP "
                        "model with the spec's clip.classes and clip.coarse)",
                        u->output ? u->output : "?", u->coarse_output ? u->coarse_output : "?");
    int64_t nf = 0;
    for (int64_t i = 0; i < c->data->n_rows; i++) nf += c->forget[i] != 0;
    if (!nf)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "nhl-kl: %s has no exemplar of the concepts "
                        "to forget", ulc_dataset_path(c->data));
    if (!(st.kept = malloc((size_t)st.K * sizeof *st.kept)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < st.K; k++) {
        int gone = 0;
        for (int j = 0; j < u->n_forget_classes; j++) gone |= u->forget_classes[j] == k;
        if (!gone) st.kept[st.nk++] = k;
    }
    ulc_status s = st.nk ? columns(&st, c, ctx)
                         : ulc_fail(ctx, ULC_ERR_INVALID_ARG, "nhl-kl: every class is forgotten");
    ulc_train_task task = {.input = u->input, .output = u->output, .custom_loss = build_loss,
                           .custom_arg = &st};
    ulc_train_graph tg = {0};
    float **vals = NULL;
    if (s == ULC_OK) s = ulc_train_graph_build(c->model, &st.d, &task, c->o->batch_size, &tg, ctx);
    if (s == ULC_OK) s = ulc_train_graph_params(c->model, &tg, &vals, ctx);
    if (s == ULC_OK) s = ulc_train_run(&tg, &st.d, c->o, vals, c->stats, ctx);
    if (s == ULC_OK) s = ulc_train_graph_write_back(c->model, &tg, vals, ctx);
    ulc_train_graph_free_params(&tg, vals);
    ulc_train_graph_clear(&tg);
    state_free(&st);
    return s;
}
