/*
 * ssd.c — Selective Synaptic Dampening (Foster et al., "Fast Machine Unlearning Without
 * Retraining Through Selective Synaptic Dampening", AAAI 2024), as its reference code computes
 * it: no training, two passes of gradients over the data and one rule per weight element.
 *
 * Importance is the diagonal Fisher: per row batch (file order, `batch_size` rows, the last
 * batch smaller), the gradient of the batch's mean task loss — cross-entropy to the labels, or
 * a text model's next-token cross-entropy over the scored positions — squared element by
 * element and summed; the sum divided by the number of batches. F_D is taken over every
 * training row (the forget rows included: the reference uses the whole training set), F_f over
 * the forget rows. Then, for every selected weight element i,
 *
 *     F_f,i > α·F_D,i   ⇒   θ_i ← θ_i · min(λ·F_D,i / F_f,i, 1)
 *
 * The squares are summed in double in batch order, each element on its own, so the result does
 * not depend on the thread count (the gradients themselves do not: runtime/threads.c). The
 * weights are read and written as the trainer's float32 copies (a half weight is widened
 * exactly and rounded once at the end); a tensor with no dampened element is left as it was.
 * Memory: two double accumulators per selected element (16 bytes) besides the training graph.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods/unlearn_internal.h"
#include "train/train_graph.h"

/* One Fisher estimate in the making: the sums of squared batch gradients of every parameter. */
typedef struct fisher {
    const size_t *numel; /* per parameter */
    double **sq;         /* per parameter: Σ over batches of grad² */
    long batches;
} fisher;

/* The trainer's gradient hook (train.h on_grads): adds this batch's squares. */
static ulc_status add_squares(void *arg, const float *const *grads, int n, ulc_ctx *ctx) {
    (void)ctx;
    fisher *f = arg;
    for (int i = 0; i < n; i++) {
        double *s = f->sq[i];
        const float *g = grads[i];
        ptrdiff_t m = (ptrdiff_t)f->numel[i];
        /* each element on its own: the sums do not depend on how the loop is split */
#pragma omp parallel for schedule(static) if (m >= 65536)
        for (ptrdiff_t k = 0; k < m; k++) s[k] += (double)g[k] * (double)g[k]; /* exact */
    }
    f->batches++;
    return ULC_OK;
}

/* Flags what SSD may dampen: the float weights matching globs (NULL: every one), less
 * BatchNormalization's running mean and variance, which are statistics, not weights (torch's
 * buffers: the reference dampens model.named_parameters() only) and have no gradient. */
static ulc_status mark(ulc_model *m, const char *globs, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    for (size_t i = 0; i < g->inits.len; i++)
        ((ulc_value *)g->inits.items[i])->flags &= ~(uint32_t)ULC_VALUE_PARAM;
    ulc_mark_params(m, globs ? globs : "*");
    for (const ulc_node *n = g->first; n; n = n->next)
        for (int k = 3; n->op == ULC_OP_BatchNormalization && k < 5 && k < n->n_inputs; k++)
            if (n->inputs[k].value) n->inputs[k].value->flags &= ~(uint32_t)ULC_VALUE_PARAM;
    for (size_t i = 0; i < g->inits.len; i++)
        if (((const ulc_value *)g->inits.items[i])->flags & ULC_VALUE_PARAM) return ULC_OK;
    if (globs)
        return ulc_fail(ctx, ULC_ERR_INVALID, "ssd: params '%s' matches no float32, float16 "
                        "or bfloat16 weight of the model (BatchNorm running statistics are not "
                        "weights)", globs);
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ssd: the model has no float32, float16 or "
                    "bfloat16 weights to dampen");
}

/* Sums of squared batch gradients over the rows of d (file order, one pass, no update). */
static ulc_status estimate(const ulc_train_graph *tg, const ulc_dataset *d, float *const *vals,
                           const ulc_unlearn_call *c, const char *label, fisher *f,
                           ulc_ctx *ctx) {
    ulc_train_opts o = *c->o;
    o.epochs = 1;
    o.max_steps = 0;
    o.shuffle = 0;
    o.drop_last = 0;
    o.label = label;
    o.before_step = NULL;
    o.after_step = NULL;
    o.on_grads = add_squares;
    o.hook_arg = f;
    ulc_train_stats ph = {0};
    ulc_status s = ulc_train_run(tg, d, &o, vals, &ph, ctx);
    if (s == ULC_OK || ph.steps) s = ulc_unlearn_stats_add(c->stats, &ph, ctx) == ULC_OK ? s : ctx->status;
    ulc_train_stats_clear(&ph);
    return s;
}

/* The rule on every selected element; tensors with a dampened element are written back. */
static ulc_status dampen(ulc_model *m, const ulc_train_graph *tg, float *const *vals,
                         const size_t *numel, const fisher *ff, const fisher *fd,
                         const ulc_unlearn_opts *u, ulc_ssd_result *dc, ulc_ctx *ctx) {
    double alpha = u->ssd_alpha, lambda = u->ssd_lambda;
    double inv_f = 1.0 / (double)ff->batches, inv_d = 1.0 / (double)fd->batches;
    for (int i = 0; i < tg->n_params; i++) {
        const double *sf = ff->sq[i], *sd = fd->sq[i];
        float *w = vals[i];
        ptrdiff_t n = (ptrdiff_t)numel[i];
        long long hit = 0;
#pragma omp parallel for schedule(static) reduction(+ : hit) if (n >= 65536)
        for (ptrdiff_t k = 0; k < n; k++) {
            double f = sf[k] * inv_f, d = sd[k] * inv_d;
            if (!(f > alpha * d)) continue;
            double scale = lambda * d / f; /* f > 0 here */
            if (scale >= 1.0) continue;
            w[k] = (float)((double)w[k] * scale);
            hit++;
        }
        dc->dampened += hit;
        dc->weights += (long long)n;
        dc->of_tensors++;
        if (!hit) continue;
        dc->tensors++;
        ulc_graph *g = m->graph;
        ULC_TRY(ulc_param_set_f32(g, ulc_graph_get_value(g, tg->param_inputs[i]), vals[i], ctx));
    }
    return ULC_OK;
}

static void fisher_free(fisher *f, int n) {
    for (int i = 0; f->sq && i < n; i++) free(f->sq[i]);
    free(f->sq);
}

static ulc_status fisher_alloc(fisher *f, const size_t *numel, int n, ulc_ctx *ctx) {
    f->numel = numel;
    if (!(f->sq = calloc((size_t)n + 1, sizeof *f->sq)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "ssd: out of memory");
    for (int i = 0; i < n; i++)
        if (!(f->sq[i] = calloc(numel[i] + 1, sizeof **f->sq)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "ssd: out of memory for the importances of %zu "
                            "weights", numel[i]);
    return ULC_OK;
}

/* Element counts of the parameters, as ulc_train_graph_params copied them. */
static ulc_status param_numel(const ulc_model *m, const ulc_train_graph *tg, size_t **out,
                              ulc_ctx *ctx) {
    size_t *numel = calloc((size_t)tg->n_params + 1, sizeof *numel);
    if (!numel) return ulc_fail(ctx, ULC_ERR_NOMEM, "ssd: out of memory");
    for (int i = 0; i < tg->n_params; i++)
        numel[i] = (size_t)ulc_graph_get_value(m->graph, tg->param_inputs[i])->init->numel;
    *out = numel;
    return ULC_OK;
}

/* The two estimates and the rule, on a built training graph; sf holds the forget rows. */
static ulc_status run_graph(const ulc_unlearn_call *c, const ulc_train_graph *tg,
                            const ulc_row_subset *sf, ulc_ssd_result *dc, ulc_ctx *ctx) {
    float **vals = NULL;
    size_t *numel = NULL;
    fisher ff = {0}, fd = {0};
    ulc_status s = ulc_train_graph_params(c->model, tg, &vals, ctx);
    if (s == ULC_OK) s = param_numel(c->model, tg, &numel, ctx);
    if (s == ULC_OK) s = fisher_alloc(&ff, numel, tg->n_params, ctx);
    if (s == ULC_OK) s = fisher_alloc(&fd, numel, tg->n_params, ctx);
    if (s == ULC_OK) s = estimate(tg, &sf->d, vals, c, "ssd Df", &ff, ctx);
    if (s == ULC_OK) s = estimate(tg, c->data, vals, c, "ssd D", &fd, ctx);
    if (s == ULC_OK) s = dampen(c->model, tg, vals, numel, &ff, &fd, c->u, dc, ctx);
    fisher_free(&ff, tg->n_params);
    fisher_free(&fd, tg->n_params);
    free(numel);
    ulc_train_graph_free_params(tg, vals);
    return s;
}

ulc_status ulc_ssd_check(ulc_model *m, const char *globs, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    uint32_t *was = malloc((g->inits.len + 1) * sizeof *was);
    if (!was) return ulc_fail(ctx, ULC_ERR_NOMEM, "ssd: out of memory");
    for (size_t i = 0; i < g->inits.len; i++) was[i] = ((const ulc_value *)g->inits.items[i])->flags;
    ulc_status s = mark(m, globs, ctx);
    for (size_t i = 0; i < g->inits.len; i++) ((ulc_value *)g->inits.items[i])->flags = was[i];
    free(was);
    return s;
}

ulc_status ulc_ssd_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    const ulc_unlearn_opts *u = c->u;
    ULC_TRY(mark(c->model, u->ssd_params, ctx));
    ulc_row_subset sf = {0};
    ULC_TRY(ulc_row_subset_make(c->data, c->forget, 1, NULL, NULL, 0, &sf, ctx));
    ulc_status s = ULC_OK;
    if (sf.d.n_rows < 1)
        s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ssd: %s has no forget rows to estimate F_f on",
                     ulc_dataset_path(c->data));
    /* the task loss the Fisher is taken of: the batch mean, as torch's CrossEntropyLoss */
    ulc_train_task task = {.input = u->input, .output = u->output,
                           .loss = ULC_LOSS_CROSS_ENTROPY, .next_token = u->next_token};
    ulc_train_graph tg = {0};
    ulc_ssd_result dc = {0};
    if (s == ULC_OK) s = ulc_train_graph_build(c->model, c->data, &task, c->o->batch_size, &tg, ctx);
    if (s == ULC_OK) s = run_graph(c, &tg, &sf, &dc, ctx);
    ulc_train_graph_clear(&tg);
    ulc_row_subset_free(&sf);
    if (s != ULC_OK) return s;
    if (u->ssd_result) *u->ssd_result = dc;
    if (!c->o->quiet)
        fprintf(c->o->progress ? c->o->progress : stderr, "ssd: dampened %lld of %lld weights "
                "(%d of %d tensors; alpha %g, lambda %g)\n", dc.dampened, dc.weights, dc.tensors,
                dc.of_tensors, u->ssd_alpha, u->ssd_lambda);
    return ULC_OK;
}
