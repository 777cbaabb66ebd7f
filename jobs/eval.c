/*
 * eval.c — `ulc eval`: a classifier's accuracy, per class and confusion matrix on one data file,
 * batch by batch through the row runner; and `ulc eval --forget`: the unlearning metrics of
 * docs/metrics.md over a request's splits, computed by eval/ (the code the main command's report
 * uses): the model (and the original and reference, when given) scored on every train and test
 * row once; the attacks from those scores; activation distance, features and the relearning probe
 * run the models again on the rows they need (jobs/eval.h).
 */
#include "jobs/eval.h"

#include "common/fileset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/clip_eval.h"
#include "eval/forget_eval.h"
#include "eval/metrics.h"
#include "eval/score.h"
#include "import/safetensors_import.h"
#include "io/data.h"
#include "io/model.h"
#include "io/text_data.h"
#include "jobs/clip.h"

/* Prints a JSON document (indented). */
static ulc_status print_json(FILE *out, const cJSON *doc, ulc_ctx *ctx) {
    char *text = cJSON_Print(doc);
    if (!text) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    fprintf(out, "%s\n", text);
    free(text);
    return ULC_OK;
}

/* ---- ulc eval ------------------------------------------------------------------------------ */

/* Plain `ulc eval`: accuracy and the confusion matrix over one data file, batch by batch. */
typedef struct eval_acc {
    const char *model_path, *data_path, *out_name;
    const ulc_tensor *Y;  /* labels, int64 [N] */
    int64_t n_classes, correct;
    int64_t *confusion;   /* [n_classes, n_classes], label-major */
} eval_acc;

static ulc_status eval_batch(void *arg, ulc_session *s, int64_t b0, int64_t bn, ulc_ctx *ctx) {
    eval_acc *e = arg;
    const ulc_rt_tensor *o = ulc_session_output(s, e->out_name);
    if (o->rank != 2 || o->dims[0] != bn || o->dims[1] < 1 ||
        (o->dtype != ULC_DT_F32 && o->dtype != ULC_DT_F64)) {
        char sh[128];
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is %s; eval needs float scores [N, "
                        "classes]", e->model_path, e->out_name, ulc_rt_shape_str(o, sh, sizeof sh));
    }
    int64_t n_classes = e->n_classes;
    if (!e->confusion) {
        n_classes = e->n_classes = o->dims[1];
        if (!(e->confusion = calloc((size_t)(n_classes * n_classes), sizeof *e->confusion)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    for (int64_t r = 0; r < bn; r++) {
        int64_t label;
        memcpy(&label, (const uint8_t *)e->Y->data + 8 * (size_t)(b0 + r), 8);
        if (label < 0 || label >= n_classes)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: label[%lld] = %lld is outside the model's "
                            "%lld classes", e->data_path, (long long)(b0 + r), (long long)label,
                            (long long)n_classes);
        int64_t best = 0;
        double bv = -INFINITY;
        for (int64_t c = 0; c < n_classes; c++) {
            double v = o->dtype == ULC_DT_F32 ? ((const float *)o->data)[r * n_classes + c]
                                              : ((const double *)o->data)[r * n_classes + c];
            if (v > bv) { /* first maximum wins, as argmax does; NaN never wins */
                bv = v;
                best = c;
            }
        }
        e->confusion[label * n_classes + best]++;
        e->correct += best == label;
    }
    return ULC_OK;
}

/* Plain `ulc eval`'s result: accuracy, per class, the confusion matrix (JSON or text). */
static ulc_status eval_print(FILE *out, int json, const char *model_path, const char *data_path, int64_t n,
                             int64_t correct, int64_t n_classes, const int64_t *confusion,
                             ulc_ctx *ctx) {
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model_path);
        cJSON_AddStringToObject(o, "data", data_path);
        cJSON_AddNumberToObject(o, "n", (double)n);
        cJSON_AddNumberToObject(o, "correct", (double)correct);
        cJSON_AddNumberToObject(o, "accuracy", n ? (double)correct / (double)n : 0.0);
        cJSON *pc = cJSON_AddArrayToObject(o, "per_class");
        cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
        for (int64_t c = 0; c < n_classes; c++) {
            int64_t cn = 0;
            cJSON *row = cJSON_CreateArray();
            for (int64_t p = 0; p < n_classes; p++) {
                cn += confusion[c * n_classes + p];
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)confusion[c * n_classes + p]));
            }
            cJSON_AddItemToArray(cm, row);
            int64_t cc = confusion[c * n_classes + c];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "class", (double)c);
            cJSON_AddNumberToObject(e, "n", (double)cn);
            cJSON_AddNumberToObject(e, "correct", (double)cc);
            if (cn) cJSON_AddNumberToObject(e, "accuracy", (double)cc / (double)cn);
            else cJSON_AddNullToObject(e, "accuracy"); /* a class with no samples has none */
            cJSON_AddItemToArray(pc, e);
        }
        ulc_status ps = print_json(out, o, ctx);
        cJSON_Delete(o);
        return ps;
    } else {
        fprintf(out, "%s on %s: accuracy %.4f (%lld/%lld)\n\n", model_path, data_path,
               n ? (double)correct / (double)n : 0.0, (long long)correct, (long long)n);
        fprintf(out, "class        n  correct  accuracy\n");
        for (int64_t c = 0; c < n_classes; c++) {
            int64_t cn = 0;
            for (int64_t p = 0; p < n_classes; p++) cn += confusion[c * n_classes + p];
            int64_t cc = confusion[c * n_classes + c];
            if (cn) fprintf(out, "%5lld %8lld %8lld    %.4f\n", (long long)c, (long long)cn, (long long)cc,
                           (double)cc / (double)cn);
            else fprintf(out, "%5lld %8lld %8lld         -\n", (long long)c, 0LL, 0LL);
        }
        fprintf(out, "\nconfusion matrix (rows: label, columns: predicted)\n     ");
        for (int64_t p = 0; p < n_classes; p++) fprintf(out, " %5lld", (long long)p);
        fprintf(out, "\n");
        for (int64_t c = 0; c < n_classes; c++) {
            fprintf(out, "%5lld", (long long)c);
            for (int64_t p = 0; p < n_classes; p++) fprintf(out, " %5lld", (long long)confusion[c * n_classes + p]);
            fprintf(out, "\n");
        }
    }
    return ULC_OK;
}

/* The model's input (the one named, or the only one fed) and output (named, or the first). */
static ulc_status pick_io(const ulc_eval_job *j, const ulc_graph *g, const ulc_value **gin,
                          const ulc_value **gout, ulc_ctx *ctx) {
    const char *in_name = j->input, *out_name = j->output ? j->output : j->clip ? ULC_CLIP_FINE : NULL;
    int n_fed = 0;
    *gin = *gout = NULL;
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue; /* has a default: not fed */
        n_fed++;
        if (!in_name || strcmp(v->name, in_name) == 0) *gin = *gin && !in_name ? *gin : v;
    }
    if (in_name && !*gin)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: no input named '%s'", j->model, in_name);
    if (!in_name && n_fed != 1)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s has %d inputs; name the one the data feeds "
                        "with --input", j->model, n_fed);
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (out_name ? strcmp(v->name, out_name) == 0 : i == 0) *gout = v;
    }
    if (!*gout)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: no output named '%s'", j->model,
                        out_name ? out_name : "");
    return ULC_OK;
}

/* The data: `input` (or the model input's own name, or input_ids) and `label` int64 [N]. */
static ulc_status pick_data(const ulc_eval_job *j, const ulc_model *data, const ulc_value *gin,
                            const ulc_tensor **X, const ulc_tensor **Y, ulc_ctx *ctx) {
    ulc_value *xv = ulc_graph_get_value(data->graph, "input");
    if (!xv) xv = ulc_graph_get_value(data->graph, gin->name);
    if (!xv) xv = ulc_graph_get_value(data->graph, "input_ids");
    ulc_value *yv = ulc_graph_get_value(data->graph, "label");
    if (!xv || !yv || !xv->init || !yv->init)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: expected tensors 'input' (the model's input) "
                        "and 'label' (int64 [N])", j->data);
    *X = xv->init;
    *Y = yv->init;
    if ((*Y)->dtype != ULC_DT_I64 || (*Y)->rank != 1 || (*X)->rank < 1 ||
        (*X)->dims[0] != (*Y)->dims[0])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: 'label' must be int64 [N] with N = the first "
                        "dim of '%s' (%lld)", j->data, xv->name,
                        (*X)->rank ? (long long)(*X)->dims[0] : 0LL);
    return ULC_OK;
}

/* Scores every row (eval_batch) into acc. */
static ulc_status eval_rows(const ulc_eval_job *j, ulc_model *m, const ulc_model *data,
                            eval_acc *acc, int64_t *n, ulc_ctx *ctx) {
    const ulc_value *gin, *gout;
    const ulc_tensor *X = NULL, *Y = NULL;
    ULC_TRY(pick_io(j, m->graph, &gin, &gout, ctx));
    ULC_TRY(pick_data(j, data, gin, &X, &Y, ctx));
    ulc_session *s = NULL;
    ULC_TRY(ulc_session_create(m, &j->so, &s, ctx));
    *n = X->dims[0];
    *acc = (eval_acc){.model_path = j->model, .data_path = j->data, .out_name = gout->name,
                      .Y = Y};
    ulc_rows rows = {.names = {gin->name}, .cols = {X}, .n_feeds = 1, .file = j->data, .n = *n,
                     .max_rows = j->batch};
    int64_t at;
    ulc_status st = ulc_rows_run(s, &rows, eval_batch, acc, &at, ctx);
    if (st != ULC_OK && at >= 0)
        ulc_fail(ctx, ctx->status, "%s: batch at row %lld", j->data, (long long)at);
    ulc_session_free(s);
    return st;
}

ulc_status ulc_eval_files(const ulc_eval_job *j, ulc_ctx *ctx) {
    ulc_model *m = NULL, *data = NULL;
    eval_acc acc = {0};
    int64_t n = 0;
    ulc_fileset fs; /* no output: a file that changes under the run fails it */
    ulc_fileset_begin(&fs, 0, ctx);
    if (ulc_text_format_of(j->data) != ULC_TEXT_NONE) /* text models are scored per split */
        return ulc_fileset_end(&fs, ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: `ulc eval --data` "
                                            "scores classifiers on safetensors data; text data "
                                            "is scored with --forget SPEC (next-token accuracy "
                                            "per split)", j->data), ctx);
    ulc_status st = ulc_io_load_model(j->model, NULL, &m, ctx);
    if (st == ULC_OK && j->clip) /* the zero-shot classifiers of its prompts */
        st = ulc_clip_view(m, j->clip, j->tokenizer, j->model, j->clip_path, NULL, ctx);
    if (st == ULC_OK) st = ulc_safetensors_import(j->data, &data, ctx);
    if (st == ULC_OK) st = eval_rows(j, m, data, &acc, &n, ctx);
    if (st == ULC_OK) st = ulc_fileset_verify(&fs, ctx); /* before anything is printed */
    if (st == ULC_OK)
        st = eval_print(j->out, j->json, j->model, j->data, n, acc.correct, acc.n_classes,
                        acc.confusion, ctx);
    free(acc.confusion);
    ulc_model_free(data);
    ulc_model_free(m);
    return ulc_fileset_end(&fs, st, ctx);
}

/* ---- ulc eval --forget ------------------------------------------------------------------------ */

static const char *const k_role[3] = {"model", "original", "reference"};

/* One `ulc eval --forget` run: the models, the data bound to the first one's interface, the
 * splits and each model's scores. */
typedef struct ev_run {
    const ulc_request *rq;
    ulc_model *mods[3];   /* model, original, reference */
    const char *paths[3];
    ulc_iface f;
    ulc_data tr, te;
    ulc_tokenizer *tk;    /* text data: the model's tokenizer */
    const ulc_data *tep;  /* &te, or NULL without test data */
    ulc_forget_set fs;
    ulc_splits sp;
    ulc_scores sc[3];
    cJSON *root;
    ulc_clip_run clip;    /* a CLIP request: captions, held-out data */
} ev_run;

static void ev_run_clear(ev_run *e) {
    for (int k = 0; k < 3; k++) ulc_scores_clear(&e->sc[k]), ulc_model_free(e->mods[k]);
    ulc_splits_clear(&e->sp);
    ulc_data_clear(&e->tr);
    ulc_data_clear(&e->te);
    ulc_tokenizer_free(e->tk);
    cJSON_Delete(e->root);
    ulc_clip_run_clear(&e->clip);
}

/* Loads everything and scores every model on the splits (eval/score.h). */
/* Model k is fed what the model is fed (the columns are bound once): an input of one that the
 * other lacks — a cache's past of a model with past and one without — is refused by name. */
static ulc_status ev_same_inputs(const ev_run *e, int k, ulc_ctx *ctx) {
    const ulc_graph *g = e->mods[k]->graph;
    for (int side = 0; side < 2; side++) {
        const char *name = NULL;
        if (!side)
            for (int i = 0; i < e->f.n_fed && !name; i++) {
                const ulc_value *v = ulc_graph_get_value(g, e->f.fed[i]->name);
                if (!v || !(v->flags & ULC_VALUE_INPUT) || (v->flags & ULC_VALUE_INITIALIZER))
                    name = e->f.fed[i]->name;
            }
        for (size_t i = 0; side && i < g->inputs.len && !name; i++) {
            const ulc_value *v = g->inputs.items[i];
            int fed = 0;
            for (int j = 0; j < e->f.n_fed; j++) fed |= strcmp(e->f.fed[j]->name, v->name) == 0;
            if (!fed && !(v->flags & ULC_VALUE_INITIALIZER)) name = v->name;
        }
        if (name)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): input '%s' is an input of %s, not of "
                            "%s: the models scored together are fed the same inputs (a model with "
                            "a cache, past_key_values.*, goes with models with one)", e->paths[k],
                            k_role[k], name, side ? e->paths[k] : e->paths[0],
                            side ? e->paths[0] : e->paths[k]);
    }
    return ULC_OK;
}

static ulc_status ev_score(const ulc_eval_forget_job *a, ev_run *e, ulc_ctx *ctx) {
    const ulc_request *s = e->rq;
    for (int k = 0; k < 3; k++) {
        if (!e->paths[k]) continue;
        ULC_TRY(ulc_io_load_model(e->paths[k], NULL, &e->mods[k], ctx));
        if (s->clip.given) /* scored as the zero-shot classifiers of the spec's prompts */
            ULC_TRY(ulc_clip_view(e->mods[k], &s->clip, s->tokenizer, e->paths[k], s->path,
                                  k ? NULL : &e->clip, ctx));
    }
    ULC_TRY(ulc_iface_resolve(e->mods[0], a->model, s->model_input, s->model_output, s->path,
                              &e->f, ctx));
    ulc_text_opts to = {.tokenizer = s->tokenizer, .max_length = s->max_length,
                        .overflow = s->overflow, .stride = s->stride,
                        .forget_file = s->forget_file, .where = s->path};
    ULC_TRY(ulc_data_load_any("data.train", a->data ? a->data : s->train, a->model, &e->f, &to,
                              &e->tk, &e->tr, ctx));
    to.forget_file = NULL;
    if (s->test)
        ULC_TRY(ulc_data_load_any("data.test", s->test, a->model, &e->f, &to, &e->tk, &e->te, ctx));
    e->tep = s->test ? &e->te : NULL;
    e->fs = ulc_request_forget_set(s);
    for (int k = 0; k < 3; k++) {
        if (!e->mods[k]) continue;
        ulc_session *ses = NULL;
        ulc_iface fk = e->f;
        fk.classes = 0;
        fk.next_token = 0;
        ulc_status st = k ? ev_same_inputs(e, k, ctx) : ULC_OK;
        if (st == ULC_OK) st = ulc_session_create(e->mods[k], &a->so, &ses, ctx);
        if (st == ULC_OK) st = ulc_eval_probe(ses, e->paths[k], &fk, &e->tr, ctx);
        if (st == ULC_OK && !k) {
            e->f = fk;
            st = ulc_splits_make(&e->fs, &e->f, &e->tr, e->tep, &e->sp, ctx);
            if (st == ULC_OK && s->clip.given)
                st = ulc_clip_check_data(s->path, &s->clip, &e->clip, &e->f,
                                         e->tep ? e->tep : &e->tr, a->model, ctx);
        } else if (st == ULC_OK && (fk.classes != e->f.classes || fk.next_token != e->f.next_token)) {
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s) scores %lld classes; %s scores %lld",
                          e->paths[k], k_role[k], (long long)fk.classes, a->model,
                          (long long)e->f.classes);
        }
        e->sc[k].mink_frac = s->lm.mink_frac;
        if (st == ULC_OK)
            st = ulc_eval_score_splits(ses, e->paths[k], &e->f, &e->tr, e->tep, &e->sp, &e->sc[k], ctx);
        ulc_session_free(ses);
        ULC_TRY(st);
    }
    return ULC_OK;
}

/* Both attacks on model k's scores, into `into` (members Dr, non-members Drt or Dt, target Df). */
static ulc_status ev_mia(const ev_run *e, int k, cJSON *into, ulc_ctx *ctx) {
    for (int conf = 0; conf < 2; conf++) {
        ulc_mia_result r;
        ulc_status st = ulc_eval_mia(&e->tr, &e->te, &e->sp, &e->sc[k], conf, &r, ctx);
        if (st != ULC_OK) return ulc_fail(ctx, st, "membership inference");
        cJSON *o = cJSON_AddObjectToObject(into, conf ? "confidence_svm" : "entropy_logreg");
        cJSON_AddNumberToObject(o, "mia", r.member_frac);
        cJSON_AddNumberToObject(o, "members", (double)r.n_members);
        cJSON_AddNumberToObject(o, "nonmembers", (double)r.n_nonmembers);
        cJSON_AddNumberToObject(o, "targets", (double)r.n_target);
        cJSON_AddNumberToObject(o, "attacker_train_acc", r.train_acc);
    }
    return ULC_OK;
}

/* A text model's part (docs/metrics.md, "Language models"): perplexity per split, the loss and
 * Min-K% attacks (with test data) and extraction, for each model given. */
static ulc_status ev_lm_json(const ulc_eval_forget_job *a, ev_run *e, ulc_ctx *ctx) {
    cJSON *root = e->root;
    const ulc_lm_opts *o = &e->rq->lm;
    cJSON *ppl = cJSON_AddObjectToObject(root, "perplexity");
    for (int k = 0; k < 3; k++)
        if (e->mods[k]) cJSON_AddItemToObject(ppl, k_role[k], ulc_lm_ppl_json(&e->sc[k], &e->sp));
    int non_split = e->fs.kind == ULC_FORGET_INDICES ? ULC_SPLIT_DT : ULC_SPLIT_DRT;
    if (e->tep && e->sp.rows[non_split]) {
        cJSON *mia = cJSON_AddObjectToObject(root, "mia");
        cJSON_AddStringToObject(mia, "nonmembers", ulc_split_name(non_split));
        cJSON_AddNumberToObject(mia, "min_k_percent", 100 * o->mink_frac);
        for (int k = 0; k < 3; k++) {
            if (!e->mods[k]) continue;
            ulc_lm_attack_result loss, mink;
            ULC_TRY(ulc_lm_mia(&e->tr, &e->te, &e->sp, &e->sc[k], &loss, &mink, ctx));
            cJSON *m = cJSON_AddObjectToObject(mia, k_role[k]);
            cJSON_AddItemToObject(m, "loss", ulc_lm_attack_json(&loss));
            cJSON_AddItemToObject(m, "min_k", ulc_lm_attack_json(&mink));
        }
    }
    if (o->extract_rows <= 0) return ULC_OK;
    cJSON *ex = cJSON_AddObjectToObject(root, "extraction");
    ulc_lm_extract_settings(ex, o);
    for (int k = 0; k < 3; k++)
        if (e->mods[k])
            ULC_TRY(ulc_lm_extract(e->mods[k], e->paths[k], &a->so, &e->f, &e->tr, e->sp.forget, o,
                                   cJSON_AddObjectToObject(ex, k_role[k]), ctx));
    return ULC_OK;
}

/* The JSON document: rows, accuracy and per-class accuracy of each model, H-mean, the attacks,
 * then the metrics that run models again (eval/forget_eval.h); for text models perplexity, the
 * LM attacks and extraction (ev_lm_json). */
static ulc_status ev_json(const ulc_eval_forget_job *a, ev_run *e, ulc_ctx *ctx) {
    cJSON *root = e->root;
    const ulc_splits *sp = &e->sp;
    const ulc_iface *f = &e->f;
    cJSON_AddStringToObject(root, "model", a->model);
    cJSON_AddStringToObject(root, "spec", e->rq->path);
    cJSON_AddStringToObject(root, "train", e->tr.path);
    if (e->tep) cJSON_AddStringToObject(root, "test", e->te.path);
    else cJSON_AddNullToObject(root, "test");
    if (a->original) cJSON_AddStringToObject(root, "original", a->original);
    if (a->reference) cJSON_AddStringToObject(root, "reference", a->reference);
    cJSON *jn = cJSON_AddObjectToObject(root, "rows");
    for (int k = 0; k < ULC_SPLIT_COUNT; k++)
        if (sp->rows[k] || k < 2) cJSON_AddNumberToObject(jn, ulc_split_name(k), (double)sp->rows[k]);
    cJSON *jacc = cJSON_AddObjectToObject(root, "accuracy");
    cJSON *jpc = f->next_token ? NULL : cJSON_AddObjectToObject(root, "per_class");
    if (jpc) cJSON_AddStringToObject(jpc, "data", e->tep ? "test" : "train");
    for (int k = 0; k < 3; k++) {
        if (!e->mods[k]) continue;
        cJSON *o = cJSON_AddObjectToObject(jacc, k_role[k]);
        for (int j = 0; j < ULC_SPLIT_COUNT; j++)
            if (sp->rows[j]) cJSON_AddNumberToObject(o, ulc_split_name(j), ulc_tally_acc(&e->sc[k].split[j]));
        if (!jpc) continue;
        cJSON *arr = cJSON_AddArrayToObject(jpc, k_role[k]);
        const ulc_tally *cls = e->sc[k].cls[e->tep ? 1 : 0];
        for (int64_t c = 0; c < f->classes; c++)
            cJSON_AddItemToArray(arr, cls[c].rows ? cJSON_CreateNumber(ulc_tally_acc(&cls[c]))
                                                  : cJSON_CreateNull());
    }
    if (e->mods[1] && sp->rows[ULC_SPLIT_DFT] && sp->rows[ULC_SPLIT_DRT]) { /* H-mean (points) */
        double rt = 100.0 * ulc_tally_acc(&e->sc[0].split[ULC_SPLIT_DRT]);
        double drop = 100.0 * (ulc_tally_acc(&e->sc[1].split[ULC_SPLIT_DFT]) -
                               ulc_tally_acc(&e->sc[0].split[ULC_SPLIT_DFT]));
        cJSON *o = cJSON_AddObjectToObject(root, "h_mean");
        cJSON_AddNumberToObject(o, "acc_rt", rt);
        cJSON_AddNumberToObject(o, "drop_ft", drop);
        cJSON_AddNumberToObject(o, "h_mean", ulc_hmean(rt, drop));
    }
    int non_split = e->fs.kind == ULC_FORGET_INDICES ? ULC_SPLIT_DT : ULC_SPLIT_DRT;
    if (e->tep && sp->rows[non_split] && !f->next_token) { /* text models: ev_lm_json */
        cJSON *o = cJSON_AddObjectToObject(root, "mia");
        cJSON_AddStringToObject(o, "nonmembers", ulc_split_name(non_split));
        for (int k = 0; k < 3; k++)
            if (e->mods[k]) ULC_TRY(ev_mia(e, k, cJSON_AddObjectToObject(o, k_role[k]), ctx));
    }
    if (f->next_token) ULC_TRY(ev_lm_json(a, e, ctx));
    if (e->rq->clip.given) { /* with the original: Ā, Q, U, Q-U */
        cJSON *cj = NULL;
        ULC_TRY(ulc_clip_metrics(e->mods[1], a->original, e->mods[0], a->model, &e->rq->clip,
                                 &e->clip, f, e->tep ? e->tep : &e->tr, e->fs.classes,
                                 e->fs.n_classes, a->model, a->so.threads, &cj, ctx));
        cJSON_AddItemToObject(root, "clip", cj);
    }
    const char *in_name = f->fed[0]->name, *out_name = f->out->name;
    ulc_fe_models ms = {.model = e->mods[0], .orig = e->mods[1], .ref = e->mods[2],
                        .model_path = a->model, .orig_path = a->original, .ref_path = a->reference};
    ulc_fe_rows rows = {.path = e->tr.path, .x = e->tr.cols[0], .y = e->tr.label,
                        .forget = sp->forget, .rows = e->tr.rows, .data = &e->tr, .f = f};
    if (a->relearn > 0 && f->next_token) /* every fed column: next-token fine-tuning */
        ULC_TRY(ulc_fe_relearn_models(&ms, &a->so, in_name, out_name, &rows, a->relearn,
                                      a->relearn_lr > 0 ? a->relearn_lr : ULC_FE_RELEARN_LR,
                                      e->rq->seed, root, ctx));
    if (f->n_fed != 1) return ULC_OK; /* the metrics below feed one input */
    if (ms.ref && !f->next_token)
        ULC_TRY(ulc_fe_activation_distance(&ms, &a->so, in_name, out_name, &rows, root, ctx));
    ulc_fe_layers clip_layers = {0};
    if (e->rq->clip.given) clip_layers = ulc_clip_feature_layers(&e->rq->clip);
    if (ms.orig)
        ULC_TRY(ulc_fe_features(ms.model, a->model, ms.orig, a->original, &a->so, in_name,
                                &clip_layers, &rows, root, ctx));
    if (a->relearn > 0 && !f->next_token)
        ULC_TRY(ulc_fe_relearn_models(&ms, &a->so, in_name, out_name, &rows, a->relearn,
                                      a->relearn_lr > 0 ? a->relearn_lr : ULC_FE_RELEARN_LR,
                                      e->rq->seed, root, ctx));
    return ULC_OK;
}

/* A text model's lines: perplexity per split, the LM attacks, extraction. */
static void ev_print_lm(FILE *out, const ev_run *e) {
    const cJSON *root = e->root;
    fprintf(out, "\nperplexity");
    for (int j = 0; j < ULC_SPLIT_COUNT; j++)
        if (e->sp.rows[j]) fprintf(out, "  %9s", ulc_split_name(j));
    fprintf(out, "\n");
    for (int k = 0; k < 3; k++) {
        if (!e->mods[k]) continue;
        fprintf(out, "%-10s", k_role[k]);
        for (int j = 0; j < ULC_SPLIT_COUNT; j++)
            if (e->sp.rows[j]) fprintf(out, "  %9.4f", ulc_scores_ppl(&e->sc[k], j));
        fprintf(out, "\n");
    }
    const cJSON *mia = cJSON_GetObjectItem(root, "mia");
    for (int k = 0; mia && k < 3; k++) {
        const cJSON *m = cJSON_GetObjectItem(mia, k_role[k]);
        if (!m) continue;
        const cJSON *l = cJSON_GetObjectItem(m, "loss"), *q = cJSON_GetObjectItem(m, "min_k");
        fprintf(out, "%sMIA %-9s loss: AUC %.4f, Df called member %.4f   Min-K%%: AUC %.4f, "
                "Df called member %.4f\n", k ? "" : "\n", k_role[k],
                cJSON_GetObjectItem(l, "auc")->valuedouble, cJSON_GetObjectItem(l, "mia")->valuedouble,
                cJSON_GetObjectItem(q, "auc")->valuedouble, cJSON_GetObjectItem(q, "mia")->valuedouble);
    }
    const cJSON *ex = cJSON_GetObjectItem(root, "extraction");
    if (!ex) return;
    fprintf(out, "\nextraction (prefix <= %d tokens, <= %d generated)  ROUGE-L Df  exact Df  "
            "ROUGE-L Dr  exact Dr\n", cJSON_GetObjectItem(ex, "prefix")->valueint,
            cJSON_GetObjectItem(ex, "max_tokens")->valueint);
    for (int k = 0; k < 3; k++) {
        const cJSON *m = cJSON_GetObjectItem(ex, k_role[k]), *skip = cJSON_GetObjectItem(m, "skipped");
        if (!m) continue;
        fprintf(out, "%-49s", k_role[k]);
        if (cJSON_IsString(skip)) {
            fprintf(out, "  skipped: %s\n", skip->valuestring);
            continue;
        }
        for (int side = 0; side < 2; side++) {
            const cJSON *sd = cJSON_GetObjectItem(m, side ? "Dr" : "Df");
            const cJSON *r = cJSON_GetObjectItem(sd, "rouge_l"), *x = cJSON_GetObjectItem(sd, "exact");
            fprintf(out, "  %10.4f  %7.2f%%", cJSON_IsNumber(r) ? r->valuedouble : NAN,
                    cJSON_IsNumber(x) ? 100 * x->valuedouble : NAN);
        }
        fprintf(out, "\n");
    }
}

/* The text form of the document. */
static void ev_print(const ulc_eval_forget_job *a, const ev_run *e) {
    FILE *out = a->out;
    const cJSON *root = e->root;
    ulc_model *const *mods = e->mods;
    const ulc_data *tep = e->tep;
    const int64_t *nsplit = e->sp.rows;
    int64_t C = e->f.next_token ? 0 : e->f.classes;
    const char *const *role = k_role;
    fprintf(out, "%s: unlearning metrics (spec %s)\n\naccuracy", a->model, e->rq->path);
    for (int j = 0; j < ULC_SPLIT_COUNT; j++)
        if (nsplit[j]) fprintf(out, "  %8s", ulc_split_name(j));
    fprintf(out, "\n");
    for (int k = 0; k < 3; k++) {
        if (!mods[k]) continue;
        fprintf(out, "%-9s", role[k]);
        for (int j = 0; j < ULC_SPLIT_COUNT; j++)
            if (nsplit[j]) fprintf(out, "  %7.2f%%", 100.0 * ulc_tally_acc(&e->sc[k].split[j]));
        fprintf(out, "\n");
    }
    cJSON *h = cJSON_GetObjectItem(root, "h_mean");
    if (h) fprintf(out, "\nH-mean %.2f (Acc_rt %.2f, Drop_ft %.2f points)\n", cJSON_GetObjectItem(h, "h_mean")->valuedouble,
                  cJSON_GetObjectItem(h, "acc_rt")->valuedouble, cJSON_GetObjectItem(h, "drop_ft")->valuedouble);
    if (e->f.next_token) ev_print_lm(out, e);
    const cJSON *clip = cJSON_GetObjectItemCaseSensitive(root, "clip");
    if (clip) { /* "before" is the original's */
        fprintf(out, "\n");
        ulc_clip_print(out, clip);
    }
    cJSON *mia = e->f.next_token ? NULL : cJSON_GetObjectItem(root, "mia");
    for (int k = 0; mia && k < 3; k++) {
        cJSON *m = cJSON_GetObjectItem(mia, role[k]);
        if (!m) continue;
        fprintf(out, "%sMIA %-9s entropy/logreg %.4f   confidence/SVM %.4f\n", k ? "" : "\n", role[k],
               cJSON_GetObjectItem(cJSON_GetObjectItem(m, "entropy_logreg"), "mia")->valuedouble,
               cJSON_GetObjectItem(cJSON_GetObjectItem(m, "confidence_svm"), "mia")->valuedouble);
    }
    cJSON *ad = cJSON_GetObjectItem(root, "activation_distance");
    if (ad) fprintf(out, "\nactivation distance to the reference on Df: %.6f\n", cJSON_GetObjectItem(ad, "model")->valuedouble);
    cJSON *fe = cJSON_GetObjectItem(root, "features");
    if (fe) {
        fprintf(out, "\nfeatures vs the original (%d Df, %d Dr rows)\n%-32s %12s %12s %9s %9s\n",
               cJSON_GetObjectItem(fe, "rows_forget")->valueint, cJSON_GetObjectItem(fe, "rows_retain")->valueint,
               "layer", "L1 Df", "L1 Dr", "CKA Df", "CKA Dr");
        cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(fe, "layers")) {
            cJSON *cf = cJSON_GetObjectItem(it, "cka_forget"), *cr = cJSON_GetObjectItem(it, "cka_retain");
            fprintf(out, "%-32s %12.4f %12.4f %9.4f %9.4f\n", cJSON_GetObjectItem(it, "name")->valuestring,
                   cJSON_GetObjectItem(it, "l1_forget")->valuedouble, cJSON_GetObjectItem(it, "l1_retain")->valuedouble,
                   cJSON_IsNumber(cf) ? cf->valuedouble : NAN, cJSON_IsNumber(cr) ? cr->valuedouble : NAN);
        }
    }
    cJSON *rl = cJSON_GetObjectItem(root, "relearn");
    if (rl) {
        fprintf(out, "\nrelearning probe (SGD lr %g, batch %d): Df accuracy per step\n",
               cJSON_GetObjectItem(rl, "lr")->valuedouble, cJSON_GetObjectItem(rl, "batch_size")->valueint);
        int step = 0;
        cJSON *it, *ppl = cJSON_GetObjectItem(rl, "forget_ppl");
        cJSON *racc = cJSON_GetObjectItem(cJSON_GetObjectItem(rl, "reference"), "forget_acc");
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(rl, "forget_acc")) {
            cJSON *p = cJSON_GetArrayItem(ppl, step), *ra = cJSON_GetArrayItem(racc, step);
            fprintf(out, "  step %2d  %7.2f%%", step++, 100.0 * it->valuedouble);
            if (cJSON_IsNumber(p)) fprintf(out, "  perplexity %.4f", p->valuedouble);
            if (cJSON_IsNumber(ra)) fprintf(out, "  reference %7.2f%%", 100.0 * ra->valuedouble);
            fprintf(out, "\n");
        }
        ulc_fe_relearn_print(out, rl);
    }
    cJSON *pc = cJSON_GetObjectItem(root, "per_class");
    if (!pc) return; /* next-token models */
    fprintf(out, "\nper-class accuracy (%s data)\nclass", tep ? "test" : "train");
    for (int k = 0; k < 3; k++)
        if (mods[k]) fprintf(out, "  %9s", role[k]);
    fprintf(out, "\n");
    for (int64_t c = 0; c < C; c++) {
        fprintf(out, "%5lld", (long long)c);
        for (int k = 0; k < 3; k++) {
            if (!mods[k]) continue;
            cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(pc, role[k]), (int)c);
            if (cJSON_IsNumber(v)) fprintf(out, "  %8.2f%%", 100.0 * v->valuedouble);
            else fprintf(out, "  %9s", "-");
        }
        fprintf(out, "\n");
    }
}

ulc_status ulc_eval_forget_files(const ulc_request *rq, const ulc_eval_forget_job *j,
                                 ulc_ctx *ctx) {
    ev_run e;
    memset(&e, 0, sizeof e);
    e.rq = rq;
    e.paths[0] = j->model;
    e.paths[1] = j->original;
    e.paths[2] = j->reference;
    ulc_fileset fs;
    ulc_fileset_begin(&fs, 0, ctx);
    ulc_status st = (e.root = cJSON_CreateObject()) ? ULC_OK
                                                    : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (st == ULC_OK) st = ev_score(j, &e, ctx);
    if (st == ULC_OK) st = ev_json(j, &e, ctx);
    st = ulc_fileset_end(&fs, st, ctx); /* before anything is printed */
    if (st == ULC_OK && j->json) st = print_json(j->out, e.root, ctx);
    else if (st == ULC_OK) ev_print(j, &e);
    ev_run_clear(&e);
    return st;
}
