/* forget_eval.c — the unlearning metrics that run models (see forget_eval.h, docs/metrics.md). */
#include "eval/forget_eval.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/glob.h"
#include "common/half.h"
#include "ir/clone.h"
#include "train/train.h"
#include "train/train_graph.h"
#include "eval/metrics.h"
#include "eval/score.h"

static ulc_status nomem(ulc_ctx *ctx, const char *what) {
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", what);
}

static size_t row_bytes(const ulc_tensor *x) {
    return x->dims[0] ? x->nbytes / (size_t)x->dims[0] : 0;
}

/* ulc_rows_logits's message for an output that is not float32 [rows, classes]. */
typedef struct logits_what {
    const char *mpath, *out_name;
} logits_what;

static ulc_status bad_logits(void *arg, const ulc_rt_tensor *o, int64_t rows, int64_t classes,
                             ulc_ctx *ctx) {
    const logits_what *w = arg;
    char sh[128], want[32] = "classes";
    if (classes > 0) snprintf(want, sizeof want, "%lld", (long long)classes);
    return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is %s for %lld rows; the unlearning "
                    "metrics need float32 class scores [N, %s]", w->mpath, w->out_name,
                    o ? ulc_rt_shape_str(o, sh, sizeof sh) : "missing", (long long)rows, want);
}

ulc_status ulc_fe_logits(const ulc_model *m, const char *mpath, const ulc_session_opts *so,
                         const char *in_name, const char *out_name, const ulc_tensor *x,
                         const char *xpath, const int64_t *idx, int64_t n, int64_t *classes,
                         float **z, ulc_ctx *ctx) {
    ulc_session *s = NULL;
    ulc_rows r = {.names = {in_name}, .cols = {x}, .n_feeds = 1, .file = xpath, .idx = idx, .n = n};
    logits_what w = {mpath, out_name};
    int64_t at = -1;
    *z = NULL;
    ulc_status st = ulc_session_create(m, so, &s, ctx);
    if (st == ULC_OK) st = ulc_rows_logits(s, &r, out_name, bad_logits, &w, classes, z, &at, ctx);
    if (st != ULC_OK && at >= 0)
        st = ulc_fail(ctx, st, "%s on %s: the batch at row %lld", mpath, xpath, (long long)at);
    if (st == ULC_OK && !*z) st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: no rows", xpath);
    ulc_session_free(s);
    return st;
}

/* ---- per-layer feature distance and CKA ------------------------------------------------------ */

/* A Conv/Gemm/MatMul's weight (input 1) when it is an initializer, or a Transpose of one as
 * transformers' linear layers read theirs (with through set); else NULL. */
static const ulc_value *layer_weight(const ulc_node *nd, int through) {
    if (nd->op != ULC_OP_Conv && nd->op != ULC_OP_Gemm && nd->op != ULC_OP_MatMul) return NULL;
    const ulc_value *w = nd->n_inputs > 1 ? nd->inputs[1].value : NULL;
    if (w && through && w->producer && w->producer->op == ULC_OP_Transpose &&
        w->producer->n_inputs > 0)
        w = w->producer->inputs[0].value;
    if (!w || !(w->flags & ULC_VALUE_INITIALIZER) || nd->n_outputs < 1 || !nd->outputs[0]) return NULL;
    return w;
}

/* The values computed from a graph input (not from initializers alone): on[value id] = 1.
 * Malloc'd; NULL when out of memory. */
static uint8_t *from_inputs(const ulc_graph *g) {
    uint8_t *on = calloc(g->values.len + 1, 1);
    if (!on) return NULL;
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (!(v->flags & ULC_VALUE_INITIALIZER)) on[v->id] = 1;
    }
    for (int changed = 1; changed;) { /* one pass when the nodes are in topological order */
        changed = 0;
        for (const ulc_node *nd = g->first; nd; nd = nd->next) {
            int any = 0;
            for (int k = 0; k < nd->n_inputs && !any; k++)
                any = nd->inputs[k].value && on[nd->inputs[k].value->id];
            for (int k = 0; any && k < nd->n_outputs; k++)
                if (nd->outputs[k] && !on[nd->outputs[k]->id]) on[nd->outputs[k]->id] = 1, changed = 1;
        }
    }
    return on;
}

/* Whether nd's output is a layer compared: sel's (see ulc_fe_layers; on from from_inputs), else
 * every Conv/Gemm/MatMul output whose weight is an initializer. */
static int is_layer(const ulc_node *nd, const ulc_fe_layers *sel, const uint8_t *on) {
    const ulc_value *w = layer_weight(nd, on != NULL);
    return w && (!on || (on[nd->outputs[0]->id] && ulc_glob_any(sel->weights, w->name)));
}

/* The layers compared, in node order (with sel: its last ones, then its output); -1: out of
 * memory. */
static int layer_names(const ulc_model *m, const ulc_fe_layers *sel, const char **names, int cap) {
    uint8_t *on = NULL;
    if (sel && !sel->weights) sel = NULL;
    if (sel && !(on = from_inputs(m->graph))) return -1;
    int total = 0, n = 0, skip = 0;
    for (const ulc_node *nd = m->graph->first; nd; nd = nd->next) total += is_layer(nd, sel, on);
    if (sel && sel->output) cap--; /* room for it */
    if (sel && sel->last > 0 && total > sel->last) skip = total - sel->last;
    for (const ulc_node *nd = m->graph->first; nd && n < cap; nd = nd->next)
        if (is_layer(nd, sel, on) && skip-- <= 0) names[n++] = nd->outputs[0]->name;
    if (sel && sel->output) names[n++] = sel->output;
    free(on);
    return n;
}

/* What run_layers collects per batch. */
typedef struct layers_arg {
    const char *mpath;
    const char **names;
    int nl;
    int64_t n;      /* rows in all */
    float **feats;  /* [nl] -> [n, dim[k]] */
    int64_t *dim;
} layers_arg;

static ulc_status layers_batch(void *arg, ulc_session *s, int64_t r0, int64_t rn, ulc_ctx *ctx) {
    layers_arg *a = arg;
    for (int k = 0; k < a->nl; k++) {
        const ulc_rt_tensor *o = ulc_session_output(s, a->names[k]);
        if (!o || o->dtype != ULC_DT_F32 || o->rank < 1 || o->dims[0] != rn)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: layer output '%s' is not float32 [%lld, ...]",
                            a->mpath, a->names[k], (long long)rn);
        int64_t per = (int64_t)(o->nbytes / sizeof(float)) / rn;
        if (a->dim[k] >= 0 && a->dim[k] != per)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: layer output '%s' has %lld values per row; "
                            "the original's has %lld", a->mpath, a->names[k], (long long)per,
                            (long long)a->dim[k]);
        a->dim[k] = per;
        if (!a->feats[k] && !(a->feats[k] = malloc((size_t)(a->n * per) * sizeof(float) + 1)))
            return nomem(ctx, "features");
        memcpy(a->feats[k] + r0 * per, o->data, (size_t)(rn * per) * sizeof(float));
    }
    return ULC_OK;
}

/* Runs a shallow clone of m with the layers as outputs on rows idx[0..n) of d (in one run unless
 * their inputs exceed ULC_ROWS_BYTES); feats[k] gets layer k's [n, dim[k]] values (malloc'd).
 * dim[k] >= 0 on entry must match. */
static ulc_status run_layers(const ulc_model *m, const char *mpath, const ulc_session_opts *so,
                             const char *in_name, const ulc_fe_rows *d, const int64_t *idx, int64_t n,
                             const char **names, int nl, float **feats, int64_t *dim, ulc_ctx *ctx) {
    ulc_model *c = NULL;
    ulc_session *s = NULL;
    ulc_status st = ulc_model_clone_shallow(m, &c, ctx);
    for (int k = 0; st == ULC_OK && k < nl; k++) {
        ulc_value *v = ulc_graph_get_value(c->graph, names[k]);
        if (!v || !v->producer) {
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s has no value '%s' (a layer output of the "
                          "original): feature distance needs the original's node names", mpath, names[k]);
            break;
        }
        if (!(v->flags & ULC_VALUE_OUTPUT)) {
            v->flags |= ULC_VALUE_OUTPUT;
            if (ulc_ptrvec_push(&c->graph->outputs, v) != 0) st = nomem(ctx, "features");
        }
    }
    ulc_rows r = {.names = {in_name}, .cols = {d->x}, .n_feeds = 1, .file = d->path, .idx = idx,
                  .n = n, .max_rows = n};
    layers_arg a = {.mpath = mpath, .names = names, .nl = nl, .n = n, .feats = feats, .dim = dim};
    if (st == ULC_OK) st = ulc_session_create(c, so, &s, ctx);
    if (st == ULC_OK) st = ulc_rows_run(s, &r, layers_batch, &a, NULL, ctx);
    if (st != ULC_OK) st = ulc_fail(ctx, st, "%s: layer features", mpath);
    ulc_session_free(s);
    ulc_model_free(c);
    return st;
}

ulc_status ulc_fe_features(const ulc_model *model, const char *mpath, const ulc_model *orig,
                           const char *opath, const ulc_session_opts *so, const char *in_name,
                           const ulc_fe_layers *layers, const ulc_fe_rows *d, cJSON *into,
                           ulc_ctx *ctx) {
    const char *names[ULC_FE_MAX_LAYERS];
    int64_t dim[ULC_FE_MAX_LAYERS], nf = 0, nr = 0;
    float *fa[ULC_FE_MAX_LAYERS] = {0}, *fb[ULC_FE_MAX_LAYERS] = {0};
    int nl = layer_names(orig, layers, names, ULC_FE_MAX_LAYERS);
    if (nl < 0) return nomem(ctx, "features");
    int64_t *sel = malloc(2 * ULC_FE_FEAT_ROWS * sizeof *sel);
    if (!sel) return nomem(ctx, "features");
    for (int64_t i = 0; i < d->rows && nf < ULC_FE_FEAT_ROWS; i++)
        if (d->forget[i]) sel[nf++] = i;
    for (int64_t i = 0; i < d->rows && nr < ULC_FE_FEAT_ROWS; i++)
        if (!d->forget[i]) sel[nf + nr++] = i;
    for (int k = 0; k < nl; k++) dim[k] = -1;
    ulc_status st = ULC_OK;
    if (nl && nf + nr > 0 &&
        ((st = run_layers(orig, opath, so, in_name, d, sel, nf + nr, names, nl, fa, dim, ctx)) != ULC_OK ||
         (st = run_layers(model, mpath, so, in_name, d, sel, nf + nr, names, nl, fb, dim, ctx)) != ULC_OK))
        goto done;
    cJSON *o = cJSON_AddObjectToObject(into, "features");
    cJSON_AddNumberToObject(o, "rows_forget", (double)nf);
    cJSON_AddNumberToObject(o, "rows_retain", (double)nr);
    cJSON *arr = cJSON_AddArrayToObject(o, "layers");
    for (int k = 0; k < nl && nf + nr > 0; k++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, e);
        cJSON_AddStringToObject(e, "name", names[k]);
        cJSON_AddNumberToObject(e, "features", (double)dim[k]);
        for (int side = 0; side < 2; side++) {
            int64_t r0 = side ? nf : 0, rn = side ? nr : nf;
            const float *xa = fa[k] + r0 * dim[k], *xb = fb[k] + r0 * dim[k];
            cJSON_AddNumberToObject(e, side ? "l1_retain" : "l1_forget", ulc_feature_l1(xa, xb, rn, dim[k]));
            double cka = NAN;
            if (rn >= 2 && (st = ulc_cka_linear(xa, rn, dim[k], dim[k], xb, dim[k], dim[k], &cka, ctx)) != ULC_OK)
                goto done;
            if (isfinite(cka)) cJSON_AddNumberToObject(e, side ? "cka_retain" : "cka_forget", cka);
            else cJSON_AddNullToObject(e, side ? "cka_retain" : "cka_forget");
        }
    }
done:
    for (int k = 0; k < nl; k++) free(fa[k]), free(fb[k]);
    free(sel);
    return st;
}

/* ---- the relearning probe -------------------------------------------------------------------- */

typedef struct relearn {
    ulc_model *em;              /* the clone the trained values are written into */
    const ulc_train_graph *tg;
    const char *mpath, *in_name, *out_name, *fpath;
    const ulc_session_opts *so;
    const ulc_tensor *fx, *fy;  /* the forget rows */
    const ulc_iface *f;         /* text models: the interface, and the Df rows as data */
    const ulc_data *fd;
    cJSON *acc, *loss, *ppl;
    int written;                /* em owns float32 copies of the parameters (after step 1) */
} relearn;

/* A text model's Df next-token accuracy and perplexity (eval/score.h's definitions). */
static ulc_status forget_text(relearn *r, double *acc, double *ppl, ulc_ctx *ctx) {
    ulc_session *s = NULL;
    ulc_row_scores rs = {0};
    ulc_status st = ulc_session_create(r->em, r->so, &s, ctx);
    if (st == ULC_OK) st = ulc_eval_score_rows(s, r->mpath, r->f, r->fd, &rs, ctx);
    int64_t pred = 0, ok = 0;
    double nll = 0;
    for (int64_t i = 0; st == ULC_OK && i < r->fd->rows; i++)
        pred += rs.pred[i], ok += rs.ok[i], nll += rs.nll[i];
    *acc = pred ? (double)ok / (double)pred : 0.0;
    *ppl = pred ? exp(nll / (double)pred) : NAN;
    ulc_row_scores_clear(&rs);
    ulc_session_free(s);
    return st;
}

/* Df accuracy (text models: next-token accuracy, and *ppl the perplexity; NaN otherwise). */
static ulc_status forget_acc(relearn *r, double *acc, double *ppl, ulc_ctx *ctx) {
    *ppl = NAN;
    if (r->f) return forget_text(r, acc, ppl, ctx);
    float *z = NULL;
    int64_t C = 0, ok = 0, n = r->fy->dims[0];
    ULC_TRY(ulc_fe_logits(r->em, r->mpath, r->so, r->in_name, r->out_name, r->fx, r->fpath, NULL, n,
                          &C, &z, ctx));
    const int64_t *y = r->fy->data;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t c = 1; c < C; c++)
            if (z[i * C + c] > z[i * C + best]) best = c;
        ok += best == y[i];
    }
    free(z);
    *acc = n ? (double)ok / (double)n : 0.0;
    return ULC_OK;
}

static ulc_status after_step(void *arg, long step, const float *const *params, int n, float loss,
                             ulc_ctx *ctx) {
    (void)step, (void)n;
    relearn *r = arg;
    double acc, ppl;
    if (!r->written) { /* em's own copies of the parameters, then updated in place */
        ULC_TRY(ulc_train_graph_write_back(r->em, r->tg, (float *const *)params, ctx));
        r->written = 1;
    } else {
        for (int i = 0; i < r->tg->n_params; i++) {
            ulc_tensor *t = ulc_graph_get_value(r->em->graph, r->tg->param_inputs[i])->init;
            memcpy((void *)(uintptr_t)t->data, params[i], t->nbytes);
        }
    }
    ULC_TRY(forget_acc(r, &acc, &ppl, ctx));
    cJSON_AddItemToArray(r->acc, cJSON_CreateNumber(acc));
    if (r->ppl)
        cJSON_AddItemToArray(r->ppl, isfinite(ppl) ? cJSON_CreateNumber(ppl) : cJSON_CreateNull());
    cJSON_AddItemToArray(r->loss, cJSON_CreateNumber(loss));
    return ULC_OK;
}

/* The probe's copies of a float16/bfloat16 model train float32 master copies: every half weight
 * of a copy is replaced, in that copy only (the source's tensors are shared, never touched), by
 * its exact float32 widening, so the probe measures the same function and its SGD steps are not
 * lost to half-precision rounding. */
static ulc_status widen_halves(ulc_model *rm, ulc_ctx *ctx) {
    ulc_graph *g = rm->graph;
    for (size_t i = 0; i < g->inits.len; i++) {
        ulc_value *v = g->inits.items[i];
        const ulc_tensor *h = v->init;
        if (!h || !h->data || (h->dtype != ULC_DT_F16 && h->dtype != ULC_DT_BF16)) continue;
        ulc_tensor *t = ulc_tensor_new(g, v->name, ULC_DT_F32, h->rank, h->dims, ctx);
        float *buf = t ? malloc((size_t)h->numel * sizeof *buf + 1) : NULL;
        if (!buf) return t ? nomem(ctx, "relearning probe") : ctx->status;
        const uint8_t *p = h->data;
        for (uint64_t k = 0; k < h->numel; k++) {
            uint16_t u;
            memcpy(&u, p + 2 * k, 2);
            buf[k] = h->dtype == ULC_DT_F16 ? ulc_f16_to_f32(u) : ulc_bf16_to_f32(u);
        }
        ULC_TRY(ulc_tensor_set_owned(g, t, buf, (size_t)h->numel * sizeof *buf, ctx));
        v->init = t;
        v->dtype = ULC_DT_F32;
    }
    return ULC_OK;
}

/* Flags the probe's trained weights, and only those (a model an unlearning method trained in
 * memory still has its own flags): Conv/Gemm/MatMul weights and biases, normalisations' scale
 * and shift. Running statistics stay as they are, also where an exporter shares one initializer
 * between a scale and a running variance (torch deduplicates identical values behind Identity
 * nodes): such a value is not trained. Returns the count, or -1 when out of memory. */
static int mark_params(ulc_model *m) {
    ulc_graph *g = m->graph;
    uint8_t *stat = calloc(g->values.len + 1, 1);
    if (!stat) return -1;
    for (size_t i = 0; i < g->values.len; i++)
        ((ulc_value *)g->values.items[i])->flags &= ~(uint32_t)ULC_VALUE_PARAM;
    for (ulc_node *nd = g->first; nd; nd = nd->next)
        for (int k = 3; nd->op == ULC_OP_BatchNormalization && k < 5 && k < nd->n_inputs; k++) {
            const ulc_value *v = nd->inputs[k].value; /* through Identity: torch's dedup */
            for (int hops = 0; v && v->producer && v->producer->op == ULC_OP_Identity &&
                               v->producer->n_inputs > 0 && hops < 64; hops++)
                v = v->producer->inputs[0].value;
            if (v) stat[v->id] = 1;
        }
    int n = 0;
    for (ulc_node *nd = g->first; nd; nd = nd->next) {
        int hi;
        if (nd->op == ULC_OP_Conv || nd->op == ULC_OP_Gemm || nd->op == ULC_OP_MatMul) hi = nd->n_inputs;
        else if (nd->op == ULC_OP_BatchNormalization || nd->op == ULC_OP_LayerNormalization) hi = 3;
        else continue;
        for (int k = 1; k < hi && k < nd->n_inputs; k++) {
            ulc_value *v = nd->inputs[k].value;
            if (v && (v->flags & ULC_VALUE_INITIALIZER) && v->init && v->init->dtype == ULC_DT_F32 &&
                !(v->flags & ULC_VALUE_PARAM) && !stat[v->id]) {
                v->flags |= ULC_VALUE_PARAM;
                n++;
            }
        }
    }
    free(stat);
    return n;
}

/* Adds "steps_to_50" and "steps_to_90" to o: the first s with acc[s] >= 0.5 (0.9), null when
 * no point of the curve reaches it. */
static void steps_to(cJSON *o, const cJSON *acc) {
    static const char *const keys[2] = {"steps_to_50", "steps_to_90"};
    static const double frac[2] = {0.5, 0.9};
    for (int k = 0; k < 2; k++) {
        int s = 0;
        const cJSON *e = acc->child;
        for (; e && !(e->valuedouble >= frac[k]); e = e->next) s++;
        if (e) cJSON_AddNumberToObject(o, keys[k], s);
        else cJSON_AddNullToObject(o, keys[k]);
    }
}

/* The Df rows of column src as a tensor of their own in g. */
static ulc_status gather_forget(ulc_graph *g, const char *name, const ulc_tensor *src,
                                const ulc_fe_rows *d, int64_t nf, const ulc_tensor **out, ulc_ctx *ctx) {
    size_t row = row_bytes(src);
    int64_t dims[ULC_RT_MAX_RANK];
    if (src->rank < 1 || src->rank > ULC_RT_MAX_RANK)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %d (1 to %d)", d->path,
                        src->name, src->rank, ULC_RT_MAX_RANK);
    for (int k = 0; k < src->rank; k++) dims[k] = src->dims[k];
    dims[0] = nf;
    ulc_tensor *t = ulc_tensor_new(g, name, src->dtype, src->rank, dims, ctx);
    uint8_t *buf = malloc(row * (size_t)nf + 1);
    if (!t || !buf) {
        free(buf);
        return t ? nomem(ctx, "forget rows") : ctx->status;
    }
    for (int64_t i = 0, k = 0; i < d->rows; i++)
        if (d->forget[i]) memcpy(buf + row * (size_t)k++, (const uint8_t *)src->data + row * (size_t)i, row);
    ULC_TRY(ulc_tensor_set_owned(g, t, buf, row * (size_t)nf, ctx));
    *out = t;
    return ULC_OK;
}

/* A text model's Df rows: every column gathered (sub), and as data bound like the train data's
 * (fd borrows sub's columns). */
static ulc_status text_rows(const ulc_fe_rows *d, ulc_row_subset *sub, ulc_data *fd, ulc_ctx *ctx) {
    ULC_TRY(ulc_row_subset_make(&d->data->d, d->forget, 1, NULL, NULL, 0, sub, ctx));
    *fd = (ulc_data){.key = d->data->key, .path = d->path, .d = sub->d, .rows = sub->d.n_rows};
    for (int k = 0; k < d->f->n_fed; k++) {
        int c = ulc_dataset_find(&sub->d, d->f->fed[k]->name);
        if (c < 0)
            return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: no column for input '%s'", d->path,
                            d->f->fed[k]->name);
        fd->cols[k] = sub->d.cols[c];
    }
    return ULC_OK;
}

ulc_status ulc_fe_relearn(const ulc_model *model, const char *mpath, const ulc_session_opts *so,
                          const char *in_name, const char *out_name, const ulc_fe_rows *d,
                          long steps, double lr, uint64_t seed, cJSON *into, ulc_ctx *ctx) {
    ulc_model *rm = NULL, *em = NULL, *fm = NULL;
    ulc_train_graph tg = {0};
    float **vals = NULL;
    ulc_train_stats stats = {0};
    const ulc_tensor *fx = NULL, *fy = NULL;
    int64_t nf = 0;
    for (int64_t i = 0; i < d->rows; i++) nf += d->forget[i] != 0;
    ulc_status st = ulc_model_clone_shallow(model, &rm, ctx);
    if (st == ULC_OK) st = ulc_model_clone_shallow(model, &em, ctx);
    if (st == ULC_OK) st = widen_halves(rm, ctx);
    if (st == ULC_OK) st = widen_halves(em, ctx); /* the copy the trained values go back into */
    int np = st == ULC_OK ? mark_params(rm) : 0;
    if (np < 0) st = nomem(ctx, "relearning probe");
    else if (st == ULC_OK && !np)
        st = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: relearning probe: no float32 Conv/Gemm/MatMul "
                      "weight to train", mpath);
    if (st == ULC_OK && !nf) st = ulc_fail(ctx, ULC_ERR_INVALID, "relearning probe: no forget rows in %s", d->path);
    int text = d->f && d->f->next_token && d->data;
    ulc_row_subset sub = {0};
    ulc_data fd = {0};
    if (st == ULC_OK && text) st = text_rows(d, &sub, &fd, ctx);
    if (st == ULC_OK && !text && !(fm = ulc_model_create())) st = nomem(ctx, "forget rows");
    if (st == ULC_OK && !text) st = gather_forget(fm->graph, "input", d->x, d, nf, &fx, ctx);
    if (st == ULC_OK && !text) st = gather_forget(fm->graph, "label", d->y, d, nf, &fy, ctx);
    const char *cn[2] = {"input", "label"};
    const ulc_tensor *cc[2] = {fx, fy};
    ulc_dataset ds = {.n_cols = 2, .names = cn, .cols = cc, .n_rows = nf, .path = d->path};
    if (text) ds = sub.d;
    ulc_train_task task = {.input = in_name, .output = out_name, .loss = ULC_LOSS_CROSS_ENTROPY,
                           .next_token = text};
    int batch = nf < 32 ? (int)nf : 32;
    if (st == ULC_OK) st = ulc_dataset_check(&ds, ctx);
    if (st == ULC_OK) st = ulc_train_graph_build(rm, &ds, &task, batch, &tg, ctx);
    if (st == ULC_OK) st = ulc_train_graph_params(rm, &tg, &vals, ctx);
    relearn r = {.em = em, .tg = &tg, .mpath = mpath, .in_name = in_name, .out_name = out_name,
                 .fpath = d->path, .so = so, .fx = fx, .fy = fy, .f = text ? d->f : NULL,
                 .fd = &fd};
    double acc0 = 0, ppl0 = NAN;
    if (st == ULC_OK) st = forget_acc(&r, &acc0, &ppl0, ctx);
    if (st == ULC_OK) {
        cJSON *o = cJSON_AddObjectToObject(into, "relearn");
        cJSON_AddNumberToObject(o, "steps", (double)steps);
        cJSON_AddNumberToObject(o, "batch_size", batch);
        cJSON_AddNumberToObject(o, "lr", lr);
        cJSON_AddNumberToObject(o, "forget_rows", (double)nf);
        r.acc = cJSON_AddArrayToObject(o, "forget_acc");
        r.loss = cJSON_AddArrayToObject(o, "loss");
        cJSON_AddItemToArray(r.acc, cJSON_CreateNumber(acc0));
        if (text) {
            r.ppl = cJSON_AddArrayToObject(o, "forget_ppl");
            cJSON_AddItemToArray(r.ppl, isfinite(ppl0) ? cJSON_CreateNumber(ppl0) : cJSON_CreateNull());
        }
        ulc_train_opts to = ulc_train_defaults();
        to.optim = ulc_optim_defaults(ULC_OPTIM_SGD);
        to.optim.lr = lr;
        to.batch_size = batch;
        to.max_steps = steps;
        to.epochs = (int)((steps * batch + nf - 1) / nf + 1);
        to.seed = seed;
        to.threads = so->threads;
        to.quiet = 1;
        to.label = "relearn";
        to.after_step = after_step;
        to.hook_arg = &r;
        st = ulc_train_run(&tg, &ds, &to, vals, &stats, ctx);
        if (st == ULC_OK) steps_to(o, r.acc);
    }
    if (st != ULC_OK) st = ulc_fail(ctx, st, "relearning probe");
    ulc_train_stats_clear(&stats);
    if (vals) ulc_train_graph_free_params(&tg, vals);
    ulc_train_graph_clear(&tg);
    ulc_row_subset_free(&sub);
    ulc_model_free(fm);
    ulc_model_free(em);
    ulc_model_free(rm);
    return st;
}

ulc_status ulc_fe_relearn_models(const ulc_fe_models *ms, const ulc_session_opts *so,
                                 const char *in_name, const char *out_name, const ulc_fe_rows *d,
                                 long steps, double lr, uint64_t seed, cJSON *into, ulc_ctx *ctx) {
    ULC_TRY(ulc_fe_relearn(ms->model, ms->model_path, so, in_name, out_name, d, steps, lr, seed,
                           into, ctx));
    if (!ms->ref) return ULC_OK;
    cJSON *tmp = cJSON_CreateObject();
    if (!tmp) return nomem(ctx, "relearning probe");
    ulc_status st = ulc_fe_relearn(ms->ref, ms->ref_path, so, in_name, out_name, d, steps, lr,
                                   seed, tmp, ctx);
    if (st == ULC_OK) { /* the settings are the model's probe's: only the curves and counts */
        static const char *const same[] = {"steps", "batch_size", "lr", "forget_rows"};
        cJSON *rr = cJSON_DetachItemFromObjectCaseSensitive(tmp, "relearn");
        for (size_t k = 0; k < sizeof same / sizeof *same; k++)
            cJSON_DeleteItemFromObjectCaseSensitive(rr, same[k]);
        cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(into, "relearn"), "reference", rr);
    } else {
        st = ulc_fail(ctx, st, "the reference model %s", ms->ref_path);
    }
    cJSON_Delete(tmp);
    return st;
}

/* One recovery count as text: "3", or "not within N". */
static const char *recovery(char *buf, size_t n, const cJSON *v, long steps) {
    if (cJSON_IsNumber(v)) snprintf(buf, n, "%d", v->valueint);
    else snprintf(buf, n, "not within %ld", steps);
    return buf;
}

void ulc_fe_relearn_print(FILE *out, const cJSON *rl) {
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(rl, "steps");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(rl, "reference");
    long n = cJSON_IsNumber(steps) ? (long)steps->valuedouble : 0;
    char a[48], b[48];
    fprintf(out, "relearning probe: steps until Df accuracy >= 50%%: %s, >= 90%%: %s",
            recovery(a, sizeof a, cJSON_GetObjectItemCaseSensitive(rl, "steps_to_50"), n),
            recovery(b, sizeof b, cJSON_GetObjectItemCaseSensitive(rl, "steps_to_90"), n));
    if (ref)
        fprintf(out, " (reference: %s, %s)",
                recovery(a, sizeof a, cJSON_GetObjectItemCaseSensitive(ref, "steps_to_50"), n),
                recovery(b, sizeof b, cJSON_GetObjectItemCaseSensitive(ref, "steps_to_90"), n));
    fprintf(out, "\n");
}

/* ---- activation distance, and the report's composition ------------------------------------- */

ulc_status ulc_fe_activation_distance(const ulc_fe_models *ms, const ulc_session_opts *so,
                                      const char *in_name, const char *out_name,
                                      const ulc_fe_rows *d, cJSON *into, ulc_ctx *ctx) {
    int64_t nf = 0, C = 0;
    for (int64_t i = 0; i < d->rows; i++) nf += d->forget[i] != 0;
    int64_t *idx = malloc(((size_t)nf + 1) * sizeof *idx);
    float *z[3] = {NULL, NULL, NULL}; /* model, original, reference */
    const ulc_model *m[3] = {ms->model, ms->orig, ms->ref};
    const char *paths[3] = {ms->model_path, ms->orig_path, ms->ref_path};
    ulc_status st = idx ? ULC_OK : nomem(ctx, "activation distance");
    for (int64_t i = 0, k = 0; st == ULC_OK && i < d->rows; i++)
        if (d->forget[i]) idx[k++] = i;
    for (int k = 0; st == ULC_OK && k < 3; k++)
        if (m[k])
            st = ulc_fe_logits(m[k], paths[k], so, in_name, out_name, d->x, d->path, idx, nf, &C,
                               &z[k], ctx);
    if (st == ULC_OK) {
        cJSON *o = cJSON_AddObjectToObject(into, "activation_distance");
        cJSON_AddNumberToObject(o, "model", ulc_activation_distance(z[0], z[2], nf, C));
        if (z[1]) cJSON_AddNumberToObject(o, "original", ulc_activation_distance(z[1], z[2], nf, C));
    }
    for (int k = 0; k < 3; k++) free(z[k]);
    free(idx);
    return st;
}

/* The text model's extraction, before (orig) and after (model). */
static ulc_status lm_extraction(const ulc_fe_models *ms, const ulc_fe_opts *o, const ulc_fe_rows *d,
                                cJSON *into, ulc_ctx *ctx) {
    cJSON *ex = cJSON_AddObjectToObject(into, "extraction");
    if (!ex) return nomem(ctx, "extraction");
    ulc_lm_extract_settings(ex, &o->lm);
    if (ms->orig)
        ULC_TRY(ulc_lm_extract(ms->orig, ms->orig_path, &o->so, d->f, d->data, d->forget, &o->lm,
                               cJSON_AddObjectToObject(ex, "before"), ctx));
    return ulc_lm_extract(ms->model, ms->model_path, &o->so, d->f, d->data, d->forget, &o->lm,
                          cJSON_AddObjectToObject(ex, "after"), ctx);
}

ulc_status ulc_fe_extra(const ulc_fe_models *ms, const ulc_fe_opts *o, const char *in_name,
                        const char *out_name, int next_token, const ulc_fe_rows *d, cJSON *into,
                        ulc_ctx *ctx) {
    int text = next_token && d->f && d->data, one_feed = !d->f || d->f->n_fed == 1;
    if (o->features && ms->orig && one_feed)
        ULC_TRY(ulc_fe_features(ms->model, ms->model_path, ms->orig, ms->orig_path, &o->so,
                                in_name, &o->layers, d, into, ctx));
    if (text) {
        if (o->lm.extract_rows > 0) ULC_TRY(lm_extraction(ms, o, d, into, ctx));
        if (o->relearn_steps <= 0) return ULC_OK;
        return ulc_fe_relearn_models(ms, &o->so, in_name, out_name, d, o->relearn_steps,
                                     o->relearn_lr, o->seed, into, ctx);
    }
    if (next_token || !d->y || !one_feed) return ULC_OK;
    if (o->relearn_steps > 0)
        ULC_TRY(ulc_fe_relearn_models(ms, &o->so, in_name, out_name, d, o->relearn_steps,
                                      o->relearn_lr, o->seed, into, ctx));
    if (!ms->ref || !ms->orig) return ULC_OK;
    return ulc_fe_activation_distance(ms, &o->so, in_name, out_name, d, into, ctx);
}
