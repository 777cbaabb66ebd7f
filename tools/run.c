/*
 * run.c — `ulc run`, `ulc eval` and `ulc ops`: executing a model on the CPU runtime.
 *
 *   ulc run MODEL --input IN.safetensors -o OUT.safetensors [--threads N] [--repeat N] [--profile]
 *   ulc eval MODEL --data DATA.safetensors [--json] [--batch N] [--threads N]
 *   ulc eval MODEL --forget SPEC.json [--data TRAIN] [--original O] [--reference R] [--relearn N]
 *        [--relearn-lr LR] [--json]   (the unlearning metrics: docs/metrics.md)
 *   ulc ops [--backend cpu]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/file.h"
#include "export/safetensors_export.h"
#include "import/safetensors_import.h"
#include "runtime/runtime.h"
#include "ir/clone.h"
#include "train/autodiff.h"
#include "train/train_graph.h"
#include "io/model.h"
#include "tools/cli.h"
#include "jobs/request.h"
#include "eval/forget_eval.h"
#include "eval/metrics.h"
#include "eval/score.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Prints a JSON document on stdout (indented). */
static ulc_status print_json(const cJSON *doc, ulc_ctx *ctx) {
    char *text = cJSON_Print(doc);
    if (!text) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    printf("%s\n", text);
    free(text);
    return ULC_OK;
}

/* The graph inputs a caller must feed: inputs that are not also initializers (defaults). */
static int is_fed_input(const ulc_value *v) { return !(v->flags & ULC_VALUE_INITIALIZER); }

static int parse_threads(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 4096) return 0;
    *out = (int)v;
    return 1;
}

/* ---- ulc run ------------------------------------------------------------------------------- */

int ulc_cli_run(int argc, char **argv) {
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    ulc_session_opts so = ulc_session_defaults();
    int repeat = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--input") == 0 || strcmp(a, "-i") == 0) {
            if (!has_val) return ulc_cli_usage_error("run: %s needs a path", a);
            in_path = argv[++i];
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!has_val) return ulc_cli_usage_error("run: %s needs a path", a);
            out_path = argv[++i];
        } else if (strcmp(a, "--threads") == 0) {
            if (!has_val || !parse_threads(argv[i + 1], &so.threads))
                return ulc_cli_usage_error("run: --threads needs a count (0 = every core)");
            i++;
        } else if (strcmp(a, "--repeat") == 0) {
            char *end;
            long v = has_val ? strtol(argv[i + 1], &end, 10) : 0;
            if (!has_val || *end || v < 1 || v > 1000000)
                return ulc_cli_usage_error("run: --repeat needs a count >= 1");
            repeat = (int)v;
            i++;
        } else if (strcmp(a, "--profile") == 0) {
            so.profile = 1;
        } else if (strcmp(a, "--backend") == 0) {
            if (!has_val) return ulc_cli_usage_error("run: --backend needs a name");
            so.backend = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return ulc_cli_usage_error("run: unknown option '%s'", a);
        } else if (model_path) {
            return ulc_cli_usage_error("run: more than one model given ('%s')", a);
        } else {
            model_path = a;
        }
    }
    if (!model_path) return ulc_cli_usage_error("run: no model given");
    if (!in_path) return ulc_cli_usage_error("run: no input given (--input IN.safetensors)");
    if (!out_path) return ulc_cli_usage_error("run: no output given (-o OUT.safetensors)");
    if (ulc_path_same_file(out_path, model_path) || ulc_path_same_file(out_path, in_path))
        return ulc_cli_usage_error("run: the output '%s' would overwrite an input", out_path);

    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = NULL, *in = NULL, *out = NULL;
    ulc_session *s = NULL;
    double *times = NULL;
    int rc = ULC_EXIT_OK;
    if (ulc_io_load_model(model_path, NULL, &m, &ctx) != ULC_OK) goto fail;
    if (ulc_safetensors_import(in_path, &in, &ctx) != ULC_OK) goto fail;
    if (ulc_session_create(m, &so, &s, &ctx) != ULC_OK) goto fail;
    /* every tensor of IN feeds a graph input; every fed input must be there */
    const ulc_graph *g = m->graph;
    for (size_t i = 0; i < in->graph->inits.len; i++) {
        ulc_value *tv = in->graph->inits.items[i];
        ulc_value *gv = ulc_graph_get_value(g, tv->name);
        if (!gv || !(gv->flags & ULC_VALUE_INPUT)) {
            ulc_fail(&ctx, ULC_ERR_INVALID, "%s: tensor '%s' is not an input of %s (its inputs: ",
                     in_path, tv->name, model_path);
            size_t o = strlen(ctx.msg);
            for (size_t j = 0; j < g->inputs.len && o < sizeof ctx.msg; j++)
                o += (size_t)snprintf(ctx.msg + o, sizeof ctx.msg - o, "%s'%s'", j ? ", " : "",
                                      ((ulc_value *)g->inputs.items[j])->name);
            if (o < sizeof ctx.msg) snprintf(ctx.msg + o, sizeof ctx.msg - o, ")");
            goto fail;
        }
        ulc_rt_tensor rt;
        if (ulc_rt_tensor_view(tv->init, in_path, &rt, &ctx) != ULC_OK) goto fail;
        if (ulc_session_set_input(s, tv->name, &rt, &ctx) != ULC_OK) {
            ulc_fail(&ctx, ctx.status, "%s", in_path);
            goto fail;
        }
    }
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (is_fed_input(v) && !ulc_graph_get_value(in->graph, v->name)) {
            ulc_fail(&ctx, ULC_ERR_INVALID, "%s: no tensor for the model's input '%s'", in_path, v->name);
            goto fail;
        }
    }
    times = calloc((size_t)repeat, sizeof *times);
    if (!times) {
        ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int r = 0; r < repeat; r++) {
        double t0 = now_ms();
        if (ulc_session_run(s, &ctx) != ULC_OK) goto fail;
        times[r] = now_ms() - t0;
    }
    if (repeat > 1) {
        double first = times[0];
        qsort(times + 1, (size_t)repeat - 1, sizeof *times, cmp_double);
        size_t planned, unshared;
        ulc_session_memory(s, &planned, &unshared);
        fprintf(stderr, "ulc run: first run (with planning) %.3f ms; median of %d more %.3f ms, "
                        "min %.3f ms; activations %.1f MiB (%.1f MiB unshared)\n",
                first, repeat - 1, times[1 + (repeat - 1) / 2], times[1], planned / 1048576.0,
                unshared / 1048576.0);
    }
    if (so.profile) ulc_session_profile(s, stderr);
    /* outputs, copied into a weights-only model and written atomically */
    out = ulc_model_create();
    if (!out) {
        ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    out->source_format = ULC_FORMAT_SAFETENSORS;
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (ulc_graph_get_value(out->graph, v->name)) continue; /* listed twice */
        const ulc_rt_tensor *t = ulc_session_output(s, v->name);
        ulc_tensor *ot = ulc_tensor_new(out->graph, v->name, t->dtype, t->rank, t->dims, &ctx);
        if (!ot) goto fail;
        void *copy = malloc(t->nbytes ? t->nbytes : 1);
        if (!copy) {
            ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory (output '%s')", v->name);
            goto fail;
        }
        if (t->nbytes) memcpy(copy, t->data, t->nbytes);
        ulc_value *ov = ulc_graph_add_value(out->graph, v->name, &ctx);
        if (!ov || ulc_tensor_set_owned(out->graph, ot, copy, t->nbytes, &ctx) != ULC_OK ||
            ulc_value_set_init(out->graph, ov, ot, &ctx) != ULC_OK)
            goto fail;
    }
    if (ulc_safetensors_export(out, out_path, NULL, &ctx) != ULC_OK) goto fail;
    goto done;
fail:
    rc = ulc_cli_report(&ctx);
done:
    free(times);
    ulc_session_free(s);
    ulc_model_free(out);
    ulc_model_free(in);
    ulc_model_free(m);
    return rc;
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

/* ---- ulc eval --forget ------------------------------------------------------------------------
 * The unlearning metrics of docs/metrics.md over the spec's splits, computed by eval/ (the code
 * the main command's report uses): the model (and the original and reference, when given) scored
 * on every train and test row once; the attacks from those scores; activation distance, features
 * and the relearning probe run the models again on the rows they need. */

typedef struct ev_args {
    const char *model, *data, *spec, *reference, *original;
    int json;
    long relearn;
    double relearn_lr; /* 0: ULC_FE_RELEARN_LR */
    ulc_session_opts so;
} ev_args;

static const char *const k_role[3] = {"model", "original", "reference"};

/* One `ulc eval --forget` run: the models, the data bound to the first one's interface, the
 * splits and each model's scores. */
typedef struct ev_run {
    ulc_request s;
    ulc_model *mods[3];   /* model, original, reference */
    const char *paths[3];
    ulc_iface f;
    ulc_data tr, te;
    const ulc_data *tep;  /* &te, or NULL without test data */
    ulc_forget_set fs;
    ulc_splits sp;
    ulc_scores sc[3];
    cJSON *root;
} ev_run;

static void ev_run_clear(ev_run *e) {
    for (int k = 0; k < 3; k++) ulc_scores_clear(&e->sc[k]), ulc_model_free(e->mods[k]);
    ulc_splits_clear(&e->sp);
    ulc_data_clear(&e->tr);
    ulc_data_clear(&e->te);
    ulc_request_clear(&e->s);
    cJSON_Delete(e->root);
}

/* Loads everything and scores every model on the splits (eval/score.h). */
static ulc_status ev_score(const ev_args *a, ev_run *e, ulc_ctx *ctx) {
    ULC_TRY(ulc_spec_parse(a->spec, &e->s, ctx));
    for (int k = 0; k < 3; k++)
        if (e->paths[k]) ULC_TRY(ulc_io_load_model(e->paths[k], NULL, &e->mods[k], ctx));
    const ulc_request *s = &e->s;
    ULC_TRY(ulc_iface_resolve(e->mods[0], a->model, s->model_input, s->model_output, s->path,
                              &e->f, ctx));
    ULC_TRY(ulc_data_load("data.train", a->data ? a->data : s->train, a->model, &e->f, &e->tr, ctx));
    if (s->test) ULC_TRY(ulc_data_load("data.test", s->test, a->model, &e->f, &e->te, ctx));
    e->tep = s->test ? &e->te : NULL;
    e->fs = ulc_request_forget_set(s);
    for (int k = 0; k < 3; k++) {
        if (!e->mods[k]) continue;
        ulc_session *ses = NULL;
        ulc_iface fk = e->f;
        fk.classes = 0;
        fk.next_token = 0;
        ulc_status st = ulc_session_create(e->mods[k], &a->so, &ses, ctx);
        if (st == ULC_OK) st = ulc_eval_probe(ses, e->paths[k], &fk, &e->tr, ctx);
        if (st == ULC_OK && !k) {
            e->f = fk;
            st = ulc_splits_make(&e->fs, &e->f, &e->tr, e->tep, &e->sp, ctx);
        } else if (st == ULC_OK && (fk.classes != e->f.classes || fk.next_token != e->f.next_token)) {
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s) scores %lld classes; %s scores %lld",
                          e->paths[k], k_role[k], (long long)fk.classes, a->model,
                          (long long)e->f.classes);
        }
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

/* The JSON document: rows, accuracy and per-class accuracy of each model, H-mean, the attacks,
 * then the metrics that run models again (eval/forget_eval.h). */
static ulc_status ev_json(const ev_args *a, ev_run *e, ulc_ctx *ctx) {
    cJSON *root = e->root;
    const ulc_splits *sp = &e->sp;
    const ulc_iface *f = &e->f;
    cJSON_AddStringToObject(root, "model", a->model);
    cJSON_AddStringToObject(root, "spec", a->spec);
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
    if (e->tep && sp->rows[non_split] && !f->next_token) {
        cJSON *o = cJSON_AddObjectToObject(root, "mia");
        cJSON_AddStringToObject(o, "nonmembers", ulc_split_name(non_split));
        for (int k = 0; k < 3; k++)
            if (e->mods[k]) ULC_TRY(ev_mia(e, k, cJSON_AddObjectToObject(o, k_role[k]), ctx));
    }
    if (f->n_fed != 1) return ULC_OK; /* the metrics below feed one input */
    const char *in_name = f->fed[0]->name, *out_name = f->out->name;
    ulc_fe_models ms = {.model = e->mods[0], .orig = e->mods[1], .ref = e->mods[2],
                        .model_path = a->model, .orig_path = a->original, .ref_path = a->reference};
    ulc_fe_rows rows = {.path = e->tr.path, .x = e->tr.cols[0], .y = e->tr.label,
                        .forget = sp->forget, .rows = e->tr.rows};
    if (ms.ref && !f->next_token)
        ULC_TRY(ulc_fe_activation_distance(&ms, &a->so, in_name, out_name, &rows, root, ctx));
    if (ms.orig)
        ULC_TRY(ulc_fe_features(ms.model, a->model, ms.orig, a->original, &a->so, in_name, &rows,
                                root, ctx));
    if (a->relearn > 0 && !f->next_token)
        ULC_TRY(ulc_fe_relearn(ms.model, a->model, &a->so, in_name, out_name, &rows, a->relearn,
                               a->relearn_lr > 0 ? a->relearn_lr : ULC_FE_RELEARN_LR, e->s.seed,
                               root, ctx));
    return ULC_OK;
}

/* The text form of the document. */
static void ev_print(const ev_args *a, const ev_run *e) {
    const cJSON *root = e->root;
    ulc_model *const *mods = e->mods;
    const ulc_data *tep = e->tep;
    const int64_t *nsplit = e->sp.rows;
    int64_t C = e->f.next_token ? 0 : e->f.classes;
    const char *const *role = k_role;
    printf("%s: unlearning metrics (spec %s)\n\naccuracy", a->model, a->spec);
    for (int j = 0; j < ULC_SPLIT_COUNT; j++)
        if (nsplit[j]) printf("  %8s", ulc_split_name(j));
    printf("\n");
    for (int k = 0; k < 3; k++) {
        if (!mods[k]) continue;
        printf("%-9s", role[k]);
        for (int j = 0; j < ULC_SPLIT_COUNT; j++)
            if (nsplit[j]) printf("  %7.2f%%", 100.0 * ulc_tally_acc(&e->sc[k].split[j]));
        printf("\n");
    }
    cJSON *h = cJSON_GetObjectItem(root, "h_mean");
    if (h) printf("\nH-mean %.2f (Acc_rt %.2f, Drop_ft %.2f points)\n", cJSON_GetObjectItem(h, "h_mean")->valuedouble,
                  cJSON_GetObjectItem(h, "acc_rt")->valuedouble, cJSON_GetObjectItem(h, "drop_ft")->valuedouble);
    cJSON *mia = cJSON_GetObjectItem(root, "mia");
    for (int k = 0; mia && k < 3; k++) {
        cJSON *m = cJSON_GetObjectItem(mia, role[k]);
        if (!m) continue;
        printf("%sMIA %-9s entropy/logreg %.4f   confidence/SVM %.4f\n", k ? "" : "\n", role[k],
               cJSON_GetObjectItem(cJSON_GetObjectItem(m, "entropy_logreg"), "mia")->valuedouble,
               cJSON_GetObjectItem(cJSON_GetObjectItem(m, "confidence_svm"), "mia")->valuedouble);
    }
    cJSON *ad = cJSON_GetObjectItem(root, "activation_distance");
    if (ad) printf("\nactivation distance to the reference on Df: %.6f\n", cJSON_GetObjectItem(ad, "model")->valuedouble);
    cJSON *fe = cJSON_GetObjectItem(root, "features");
    if (fe) {
        printf("\nfeatures vs the original (%d Df, %d Dr rows)\n%-32s %12s %12s %9s %9s\n",
               cJSON_GetObjectItem(fe, "rows_forget")->valueint, cJSON_GetObjectItem(fe, "rows_retain")->valueint,
               "layer", "L1 Df", "L1 Dr", "CKA Df", "CKA Dr");
        cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(fe, "layers")) {
            cJSON *cf = cJSON_GetObjectItem(it, "cka_forget"), *cr = cJSON_GetObjectItem(it, "cka_retain");
            printf("%-32s %12.4f %12.4f %9.4f %9.4f\n", cJSON_GetObjectItem(it, "name")->valuestring,
                   cJSON_GetObjectItem(it, "l1_forget")->valuedouble, cJSON_GetObjectItem(it, "l1_retain")->valuedouble,
                   cJSON_IsNumber(cf) ? cf->valuedouble : NAN, cJSON_IsNumber(cr) ? cr->valuedouble : NAN);
        }
    }
    cJSON *rl = cJSON_GetObjectItem(root, "relearn");
    if (rl) {
        printf("\nrelearning probe (SGD lr %g, batch %d): Df accuracy per step\n",
               cJSON_GetObjectItem(rl, "lr")->valuedouble, cJSON_GetObjectItem(rl, "batch_size")->valueint);
        int step = 0;
        cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(rl, "forget_acc")) printf("  step %2d  %7.2f%%\n", step++, 100.0 * it->valuedouble);
    }
    cJSON *pc = cJSON_GetObjectItem(root, "per_class");
    if (!pc) return; /* next-token models */
    printf("\nper-class accuracy (%s data)\nclass", tep ? "test" : "train");
    for (int k = 0; k < 3; k++)
        if (mods[k]) printf("  %9s", role[k]);
    printf("\n");
    for (int64_t c = 0; c < C; c++) {
        printf("%5lld", (long long)c);
        for (int k = 0; k < 3; k++) {
            if (!mods[k]) continue;
            cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(pc, role[k]), (int)c);
            if (cJSON_IsNumber(v)) printf("  %8.2f%%", 100.0 * v->valuedouble);
            else printf("  %9s", "-");
        }
        printf("\n");
    }
}

static int eval_forget(const ev_args *a) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ev_run e;
    memset(&e, 0, sizeof e);
    e.paths[0] = a->model;
    e.paths[1] = a->original;
    e.paths[2] = a->reference;
    int rc = ULC_EXIT_OK;
    ulc_status st = (e.root = cJSON_CreateObject()) ? ULC_OK
                                                    : ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
    if (st == ULC_OK) st = ev_score(a, &e, &ctx);
    if (st == ULC_OK) st = ev_json(a, &e, &ctx);
    if (st == ULC_OK && a->json) st = print_json(e.root, &ctx);
    else if (st == ULC_OK) ev_print(a, &e);
    if (st != ULC_OK) rc = ulc_cli_report(&ctx);
    ev_run_clear(&e);
    return rc;
}

/* Plain `ulc eval`'s result: accuracy, per class, the confusion matrix (JSON or text). */
static ulc_status eval_print(int json, const char *model_path, const char *data_path, int64_t n,
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
        ulc_status ps = print_json(o, ctx);
        cJSON_Delete(o);
        return ps;
    } else {
        printf("%s on %s: accuracy %.4f (%lld/%lld)\n\n", model_path, data_path,
               n ? (double)correct / (double)n : 0.0, (long long)correct, (long long)n);
        printf("class        n  correct  accuracy\n");
        for (int64_t c = 0; c < n_classes; c++) {
            int64_t cn = 0;
            for (int64_t p = 0; p < n_classes; p++) cn += confusion[c * n_classes + p];
            int64_t cc = confusion[c * n_classes + c];
            if (cn) printf("%5lld %8lld %8lld    %.4f\n", (long long)c, (long long)cn, (long long)cc,
                           (double)cc / (double)cn);
            else printf("%5lld %8lld %8lld         -\n", (long long)c, 0LL, 0LL);
        }
        printf("\nconfusion matrix (rows: label, columns: predicted)\n     ");
        for (int64_t p = 0; p < n_classes; p++) printf(" %5lld", (long long)p);
        printf("\n");
        for (int64_t c = 0; c < n_classes; c++) {
            printf("%5lld", (long long)c);
            for (int64_t p = 0; p < n_classes; p++) printf(" %5lld", (long long)confusion[c * n_classes + p]);
            printf("\n");
        }
    }
    return ULC_OK;
}

int ulc_cli_eval(int argc, char **argv) {
    const char *model_path = NULL, *data_path = NULL, *in_name = NULL, *out_name = NULL;
    ulc_session_opts so = ulc_session_defaults();
    int json = 0;
    long batch = 64;
    ev_args ev = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--data") == 0) {
            if (!has_val) return ulc_cli_usage_error("eval: --data needs a path");
            data_path = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--forget") == 0 || strcmp(a, "--original") == 0 ||
                   strcmp(a, "--reference") == 0) {
            if (!has_val) return ulc_cli_usage_error("eval: %s needs a path", a);
            const char **dst = a[2] == 'f' ? &ev.spec : a[2] == 'o' ? &ev.original : &ev.reference;
            *dst = argv[++i];
        } else if (strcmp(a, "--relearn") == 0) {
            char *end;
            ev.relearn = has_val ? strtol(argv[i + 1], &end, 10) : -1;
            if (!has_val || *end || ev.relearn < 0 || ev.relearn > 100000)
                return ulc_cli_usage_error("eval: --relearn needs a step count >= 0");
            i++;
        } else if (strcmp(a, "--relearn-lr") == 0) {
            char *end;
            ev.relearn_lr = has_val ? strtod(argv[i + 1], &end) : -1;
            if (!has_val || *end || !(ev.relearn_lr > 0) || !isfinite(ev.relearn_lr))
                return ulc_cli_usage_error("eval: --relearn-lr needs a learning rate > 0");
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            if (!has_val || !parse_threads(argv[i + 1], &so.threads))
                return ulc_cli_usage_error("eval: --threads needs a count (0 = every core)");
            i++;
        } else if (strcmp(a, "--batch") == 0) {
            char *end;
            batch = has_val ? strtol(argv[i + 1], &end, 10) : 0;
            if (!has_val || *end || batch < 1 || batch > 1 << 20)
                return ulc_cli_usage_error("eval: --batch needs a size >= 1");
            i++;
        } else if (strcmp(a, "--input") == 0) {
            if (!has_val) return ulc_cli_usage_error("eval: --input needs the model input's name");
            in_name = argv[++i];
        } else if (strcmp(a, "--output") == 0) {
            if (!has_val) return ulc_cli_usage_error("eval: --output needs the model output's name");
            out_name = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return ulc_cli_usage_error("eval: unknown option '%s'", a);
        } else if (model_path) {
            return ulc_cli_usage_error("eval: more than one model given ('%s')", a);
        } else {
            model_path = a;
        }
    }
    if (!model_path) return ulc_cli_usage_error("eval: no model given");
    if (ev.spec) {
        if (in_name || out_name)
            return ulc_cli_usage_error("eval: with --forget, the spec's model.input/model.output "
                                       "name the input and output");
        ev.model = model_path;
        ev.data = data_path;
        ev.json = json;
        ev.so = so;
        return eval_forget(&ev);
    }
    if (ev.original || ev.reference || ev.relearn || ev.relearn_lr)
        return ulc_cli_usage_error("eval: --original, --reference and --relearn need --forget SPEC.json");
    if (!data_path) return ulc_cli_usage_error("eval: no data given (--data DATA.safetensors)");

    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = NULL, *data = NULL;
    ulc_session *s = NULL;
    int64_t *confusion = NULL;
    int rc = ULC_EXIT_OK;
    if (ulc_io_load_model(model_path, NULL, &m, &ctx) != ULC_OK) goto fail;
    if (ulc_safetensors_import(data_path, &data, &ctx) != ULC_OK) goto fail;
    const ulc_graph *g = m->graph;
    /* the model's input and output */
    const ulc_value *gin = NULL, *gout = NULL;
    int n_fed = 0;
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (!is_fed_input(v)) continue;
        n_fed++;
        if (!in_name || strcmp(v->name, in_name) == 0) gin = gin && !in_name ? gin : v;
    }
    if (in_name && !gin) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: no input named '%s'", model_path, in_name);
        goto fail;
    }
    if (!in_name && n_fed != 1) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s has %d inputs; name the one the data feeds with --input",
                 model_path, n_fed);
        goto fail;
    }
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (out_name ? strcmp(v->name, out_name) == 0 : i == 0) gout = v;
    }
    if (!gout) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: no output named '%s'", model_path, out_name ? out_name : "");
        goto fail;
    }
    /* the data: `input` (or the model input's own name) and `label` */
    ulc_value *xv = ulc_graph_get_value(data->graph, "input");
    if (!xv) xv = ulc_graph_get_value(data->graph, gin->name);
    if (!xv) xv = ulc_graph_get_value(data->graph, "input_ids");
    ulc_value *yv = ulc_graph_get_value(data->graph, "label");
    if (!xv || !yv || !xv->init || !yv->init) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: expected tensors 'input' (the model's input) and 'label' "
                 "(int64 [N])", data_path);
        goto fail;
    }
    const ulc_tensor *X = xv->init, *Y = yv->init;
    if (Y->dtype != ULC_DT_I64 || Y->rank != 1 || X->rank < 1 || X->dims[0] != Y->dims[0]) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: 'label' must be int64 [N] with N = the first dim of '%s' "
                 "(%lld)", data_path, xv->name, X->rank ? (long long)X->dims[0] : 0LL);
        goto fail;
    }
    if (ulc_session_create(m, &so, &s, &ctx) != ULC_OK) goto fail;
    int64_t n = X->dims[0];
    eval_acc acc = {.model_path = model_path, .data_path = data_path, .out_name = gout->name,
                    .Y = Y};
    ulc_rows rows = {.names = {gin->name}, .cols = {X}, .n_feeds = 1, .file = data_path, .n = n,
                     .max_rows = batch};
    int64_t at;
    ulc_status rs = ulc_rows_run(s, &rows, eval_batch, &acc, &at, &ctx);
    confusion = acc.confusion;
    if (rs != ULC_OK) {
        if (at >= 0) ulc_fail(&ctx, ctx.status, "%s: batch at row %lld", data_path, (long long)at);
        goto fail;
    }
    int64_t n_classes = acc.n_classes, correct = acc.correct;
    if (eval_print(json, model_path, data_path, n, correct, n_classes, confusion, &ctx) != ULC_OK)
        goto fail;
    goto done;
fail:
    rc = ulc_cli_report(&ctx);
done:
    free(confusion);
    ulc_session_free(s);
    ulc_model_free(data);
    ulc_model_free(m);
    return rc;
}

/* ---- ulc ops ------------------------------------------------------------------------------- */

int ulc_cli_ops(int argc, char **argv) {
    const char *backend = "cpu";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) backend = argv[++i];
        else if (strcmp(argv[i], "--grad") == 0) { /* the ops autodiff can differentiate */
            for (int op = 1; op < ULC_OP_ULC_FIRST_; op++)
                if (ulc_autodiff_has_rule((ulc_op)op)) printf("%s\n", ulc_op_name((ulc_op)op));
            return ULC_EXIT_OK;
        } else return ulc_cli_usage_error("ops: unknown argument '%s'", argv[i]);
    }
    const char *const *ops = ulc_backend_ops(backend);
    if (!ops) return ulc_cli_usage_error("ops: unknown backend '%s' (available: cpu)", backend);
    for (int i = 0; ops[i]; i++) printf("%s\n", ops[i]);
    return ULC_EXIT_OK;
}
