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
#include "tools/forget.h"
#include "eval/forget_eval.h"
#include "eval/metrics.h"

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

/* ---- ulc eval --forget ------------------------------------------------------------------------
 * The unlearning metrics of docs/metrics.md over the spec's splits: the model (and the original
 * and reference, when given) scored on every train and test row once; the attackers, distances
 * and the relearning probe are computed from those scores. */


enum { EV_DF, EV_DR, EV_DFT, EV_DRT, EV_DT, EV_NSPLIT };
static const char *const k_ev_split[EV_NSPLIT] = {"Df", "Dr", "Dft", "Drt", "Dt"};

typedef struct ev_data {
    const char *path, *key;
    ulc_model *m;        /* weights-only (safetensors), owned */
    const ulc_tensor *x; /* the model input's column */
    const ulc_tensor *y; /* int64 [rows] */
    int64_t rows;
    uint8_t *split;      /* EV_* per row */
} ev_data;

static int64_t ev_label(const ev_data *d, int64_t i) {
    int64_t y;
    memcpy(&y, (const uint8_t *)d->y->data + 8 * (size_t)i, 8);
    return y;
}

static ulc_status ev_load(const char *path, const char *key, const char *in_name, ev_data *d,
                          ulc_ctx *ctx) {
    d->path = path;
    d->key = key;
    ULC_TRY(ulc_safetensors_import(path, &d->m, ctx));
    ulc_value *xv = ulc_graph_get_value(d->m->graph, "input");
    if (!xv) xv = ulc_graph_get_value(d->m->graph, "input_ids");
    if (!xv) xv = ulc_graph_get_value(d->m->graph, in_name);
    ulc_value *yv = ulc_graph_get_value(d->m->graph, "label");
    if (!xv || !yv || !xv->init || !yv->init)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): expected tensors 'input' (or 'input_ids' "
                        "or '%s': the model's input) and 'label' (int64 [N])", path, key, in_name);
    d->x = xv->init;
    d->y = yv->init;
    if (d->y->dtype != ULC_DT_I64 || d->y->rank != 1 || d->x->rank < 1 ||
        d->x->dims[0] != d->y->dims[0] || (d->x->dtype != ULC_DT_F32 && d->x->dtype != ULC_DT_I64))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): 'label' must be int64 [N] and '%s' float32 or "
                        "int64 with N = its first dim", path, key, xv->name);
    d->rows = d->y->dims[0];
    if (!(d->split = calloc((size_t)d->rows + 1, 1))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    return ULC_OK;
}

static void ev_data_free(ev_data *d) {
    ulc_model_free(d->m);
    free(d->split);
}

/* Accuracy per split and per class of one model's logits. */
typedef struct ev_scores {
    float *ztr, *zte;             /* logits over data.train / data.test rows */
    int64_t ok[EV_NSPLIT], n[EV_NSPLIT];
    int64_t *cls_ok, *cls_n;      /* per class, on the test data (train without test) */
} ev_scores;

static void ev_scores_free(ev_scores *s) {
    free(s->ztr), free(s->zte), free(s->cls_ok), free(s->cls_n);
}

static ulc_status ev_tally(ev_scores *s, const ev_data *tr, const ev_data *te, int64_t C, ulc_ctx *ctx) {
    s->cls_ok = calloc((size_t)C, sizeof *s->cls_ok);
    s->cls_n = calloc((size_t)C, sizeof *s->cls_n);
    if (!s->cls_ok || !s->cls_n) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int w = 0; w < 2; w++) {
        const ev_data *d = w ? te : tr;
        const float *z = w ? s->zte : s->ztr;
        if (!d) continue;
        for (int64_t i = 0; i < d->rows; i++) {
            int64_t y = ev_label(d, i), best = 0;
            if (y < 0 || y >= C)
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): label[%lld] = %lld is outside the "
                                "model's %lld classes", d->path, d->key, (long long)i, (long long)y,
                                (long long)C);
            for (int64_t c = 1; c < C; c++)
                if (z[i * C + c] > z[i * C + best]) best = c;
            s->n[d->split[i]]++;
            s->ok[d->split[i]] += best == y;
            if (w == (te != NULL)) {
                s->cls_n[y]++;
                s->cls_ok[y] += best == y;
            }
        }
    }
    return ULC_OK;
}

static double ev_acc(const ev_scores *s, int k) { return s->n[k] ? (double)s->ok[k] / (double)s->n[k] : 0.0; }

/* The attack features of one model: entropy and true-label confidence per row of a split. */
static ulc_status ev_features(const float *z, const ev_data *d, int split, int64_t C, int conf,
                              double **out, int64_t *n, ulc_ctx *ctx) {
    double *p = malloc((size_t)C * sizeof *p);
    *out = malloc(((size_t)d->rows + 1) * sizeof **out);
    *n = 0;
    if (!p || !*out) {
        free(p);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < d->rows; i++) {
        if (d->split[i] != split) continue;
        ulc_softmax(z + i * C, C, p);
        (*out)[(*n)++] = conf ? p[ev_label(d, i)] : ulc_entropy(p, C);
    }
    free(p);
    return ULC_OK;
}

/* Both attacks on one model's scores (members Dr, non-members Drt or Dt, target Df). */
static ulc_status ev_mia(const ev_scores *s, const ev_data *tr, const ev_data *te, int non_split,
                         int64_t C, cJSON *into, ulc_ctx *ctx) {
    ulc_status st = ULC_OK;
    for (int conf = 0; conf < 2 && st == ULC_OK; conf++) {
        double *mem = NULL, *non = NULL, *tgt = NULL;
        int64_t nm, nn, nt;
        ulc_mia_result r;
        if ((st = ev_features(s->ztr, tr, EV_DR, C, conf, &mem, &nm, ctx)) == ULC_OK &&
            (st = ev_features(s->zte, te, non_split, C, conf, &non, &nn, ctx)) == ULC_OK &&
            (st = ev_features(s->ztr, tr, EV_DF, C, conf, &tgt, &nt, ctx)) == ULC_OK) {
            st = conf ? ulc_mia_svm(mem, nm, non, nn, tgt, nt, &r, ctx)
                      : ulc_mia_logreg(mem, nm, non, nn, tgt, nt, &r, ctx);
            if (st == ULC_OK) {
                cJSON *o = cJSON_AddObjectToObject(into, conf ? "confidence_svm" : "entropy_logreg");
                cJSON_AddNumberToObject(o, "mia", r.member_frac);
                cJSON_AddNumberToObject(o, "members", (double)r.n_members);
                cJSON_AddNumberToObject(o, "nonmembers", (double)r.n_nonmembers);
                cJSON_AddNumberToObject(o, "targets", (double)r.n_target);
                cJSON_AddNumberToObject(o, "attacker_train_acc", r.train_acc);
            }
        }
        free(mem), free(non), free(tgt);
    }
    if (st != ULC_OK) st = ulc_fail(ctx, st, "membership inference");
    return st;
}

typedef struct ev_args {
    const char *model, *data, *spec, *reference, *original;
    int json;
    long relearn;
    double relearn_lr; /* 0: ULC_FE_RELEARN_LR */
    ulc_session_opts so;
} ev_args;

static int eval_forget(const ev_args *a) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    spec s;
    memset(&s, 0, sizeof s);
    ulc_model *mods[3] = {NULL, NULL, NULL}; /* model, original, reference */
    const char *paths[3] = {a->model, a->original, a->reference};
    static const char *const role[3] = {"model", "original", "reference"};
    ev_data tr = {0}, te = {0};
    ev_scores sc[3];
    memset(sc, 0, sizeof sc);
    uint8_t *fflag = NULL;
    cJSON *root = cJSON_CreateObject();
    int rc = ULC_EXIT_OK;
    ulc_status st;
    if (!root) {
        ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (spec_parse(a->spec, &s, &ctx) != ULC_OK) goto fail;
    for (int k = 0; k < 3; k++)
        if (paths[k] && ulc_io_load_model(paths[k], NULL, &mods[k], &ctx) != ULC_OK) goto fail;
    /* the interface: the spec's model.input / model.output, else the only ones */
    const ulc_graph *g = mods[0]->graph;
    const char *in_name = s.model_input, *out_name = s.model_output;
    int n_fed = 0;
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (!is_fed_input(v)) continue;
        n_fed++;
        if (!s.model_input) in_name = v->name;
        else if (!strcmp(v->name, s.model_input)) n_fed += 1000;
    }
    if (s.model_input ? n_fed < 1000 : n_fed != 1) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: %s", a->model, s.model_input
                 ? "the spec's model.input is not one of its inputs"
                 : "eval --forget needs a model with one fed input (or model.input in the spec)");
        goto fail;
    }
    if (n_fed > 1001 || (s.model_input && n_fed != 1001)) {
        ulc_fail(&ctx, ULC_ERR_UNSUPPORTED, "%s: eval --forget feeds one input; the model has %d",
                 a->model, n_fed % 1000);
        goto fail;
    }
    if (!out_name) {
        if (g->outputs.len < 1) {
            ulc_fail(&ctx, ULC_ERR_INVALID, "%s has no outputs", a->model);
            goto fail;
        }
        out_name = ((ulc_value *)g->outputs.items[0])->name;
    }
    /* data and splits */
    if (ev_load(a->data ? a->data : s.train, "data.train", in_name, &tr, &ctx) != ULC_OK) goto fail;
    if (s.test && ev_load(s.test, "data.test", in_name, &te, &ctx) != ULC_OK) goto fail;
    ev_data *tep = s.test ? &te : NULL;
    int64_t nsplit[EV_NSPLIT] = {0};
    for (int64_t i = 0; i < tr.rows; i++) {
        int f = 0;
        if (s.kind == FORGET_CLASSES) {
            for (int k = 0; k < s.n_classes; k++) f |= ev_label(&tr, i) == s.classes[k];
        }
        tr.split[i] = f ? EV_DF : EV_DR;
    }
    if (s.kind == FORGET_INDICES)
        for (int64_t k = 0; k < s.n_indices; k++) {
            if (s.indices[k] >= tr.rows) {
                ulc_fail(&ctx, ULC_ERR_INVALID, "%s: forget index %lld is outside %s's %lld rows",
                         s.path, (long long)s.indices[k], tr.path, (long long)tr.rows);
                goto fail;
            }
            tr.split[s.indices[k]] = EV_DF;
        }
    for (int64_t i = 0; i < tr.rows; i++) nsplit[tr.split[i]]++;
    for (int64_t i = 0; tep && i < te.rows; i++) {
        int f = 0;
        for (int k = 0; k < s.n_classes; k++) f |= ev_label(&te, i) == s.classes[k];
        te.split[i] = s.kind == FORGET_INDICES ? EV_DT : f ? EV_DFT : EV_DRT;
        nsplit[te.split[i]]++;
    }
    if (!nsplit[EV_DF] || !nsplit[EV_DR]) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: the forget set has %lld of %s's %lld rows: eval needs "
                 "forget and retain rows", s.path, (long long)nsplit[EV_DF], tr.path, (long long)tr.rows);
        goto fail;
    }
    /* scores */
    int64_t C = 0;
    for (int k = 0; k < 3; k++) {
        if (!mods[k]) continue;
        int64_t ck = 0;
        if (ulc_fe_logits(mods[k], paths[k], &a->so, in_name, out_name, tr.x, tr.path, NULL, tr.rows, &ck, &sc[k].ztr, &ctx) != ULC_OK ||
            (tep && ulc_fe_logits(mods[k], paths[k], &a->so, in_name, out_name, te.x, te.path, NULL, te.rows, &ck, &sc[k].zte, &ctx) != ULC_OK))
            goto fail;
        if (k && ck != C) {
            ulc_fail(&ctx, ULC_ERR_INVALID, "%s (%s) scores %lld classes; %s scores %lld", paths[k],
                     role[k], (long long)ck, a->model, (long long)C);
            goto fail;
        }
        C = ck;
        if (ev_tally(&sc[k], &tr, tep, C, &ctx) != ULC_OK) goto fail;
    }
    cJSON_AddStringToObject(root, "model", a->model);
    cJSON_AddStringToObject(root, "spec", a->spec);
    cJSON_AddStringToObject(root, "train", tr.path);
    if (tep) cJSON_AddStringToObject(root, "test", te.path);
    else cJSON_AddNullToObject(root, "test");
    if (a->original) cJSON_AddStringToObject(root, "original", a->original);
    if (a->reference) cJSON_AddStringToObject(root, "reference", a->reference);
    cJSON *jn = cJSON_AddObjectToObject(root, "rows");
    for (int k = 0; k < EV_NSPLIT; k++)
        if (nsplit[k] || k < 2) cJSON_AddNumberToObject(jn, k_ev_split[k], (double)nsplit[k]);
    cJSON *jacc = cJSON_AddObjectToObject(root, "accuracy");
    cJSON *jpc = cJSON_AddObjectToObject(root, "per_class");
    cJSON_AddStringToObject(jpc, "data", tep ? "test" : "train");
    for (int k = 0; k < 3; k++) {
        if (!mods[k]) continue;
        cJSON *o = cJSON_AddObjectToObject(jacc, role[k]);
        for (int j = 0; j < EV_NSPLIT; j++)
            if (nsplit[j]) cJSON_AddNumberToObject(o, k_ev_split[j], ev_acc(&sc[k], j));
        cJSON *arr = cJSON_AddArrayToObject(jpc, role[k]);
        for (int64_t c = 0; c < C; c++)
            cJSON_AddItemToArray(arr, sc[k].cls_n[c] ? cJSON_CreateNumber((double)sc[k].cls_ok[c] / (double)sc[k].cls_n[c])
                                                     : cJSON_CreateNull());
    }
    /* H-mean (points) */
    if (mods[1] && nsplit[EV_DFT] && nsplit[EV_DRT]) {
        double rt = 100.0 * ev_acc(&sc[0], EV_DRT);
        double drop = 100.0 * (ev_acc(&sc[1], EV_DFT) - ev_acc(&sc[0], EV_DFT));
        cJSON *o = cJSON_AddObjectToObject(root, "h_mean");
        cJSON_AddNumberToObject(o, "acc_rt", rt);
        cJSON_AddNumberToObject(o, "drop_ft", drop);
        cJSON_AddNumberToObject(o, "h_mean", ulc_hmean(rt, drop));
    }
    /* MIA */
    int non_split = s.kind == FORGET_INDICES ? EV_DT : EV_DRT;
    if (tep && nsplit[non_split]) {
        cJSON *o = cJSON_AddObjectToObject(root, "mia");
        cJSON_AddStringToObject(o, "nonmembers", k_ev_split[non_split]);
        for (int k = 0; k < 3; k++)
            if (mods[k] && ev_mia(&sc[k], &tr, &te, non_split, C, cJSON_AddObjectToObject(o, role[k]), &ctx) != ULC_OK)
                goto fail;
    }
    /* activation distance on Df */
    if (mods[2]) {
        float *ga = malloc((size_t)(nsplit[EV_DF] * C) * sizeof *ga * 3 + 1);
        if (!ga) {
            ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
            goto fail;
        }
        float *gb = ga + nsplit[EV_DF] * C, *gc = gb + nsplit[EV_DF] * C;
        for (int64_t i = 0, r = 0; i < tr.rows; i++)
            if (tr.split[i] == EV_DF) {
                memcpy(ga + r * C, sc[0].ztr + i * C, (size_t)C * sizeof *ga);
                memcpy(gb + r * C, sc[2].ztr + i * C, (size_t)C * sizeof *ga);
                if (mods[1]) memcpy(gc + r * C, sc[1].ztr + i * C, (size_t)C * sizeof *ga);
                r++;
            }
        cJSON *o = cJSON_AddObjectToObject(root, "activation_distance");
        cJSON_AddNumberToObject(o, "model", ulc_activation_distance(ga, gb, nsplit[EV_DF], C));
        if (mods[1]) cJSON_AddNumberToObject(o, "original", ulc_activation_distance(gc, gb, nsplit[EV_DF], C));
        free(ga);
    }
    /* per-layer feature distance and CKA against the original; the relearning probe */
    if (mods[1] || a->relearn > 0) {
        if (!(fflag = malloc((size_t)tr.rows + 1))) {
            ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int64_t i = 0; i < tr.rows; i++) fflag[i] = tr.split[i] == EV_DF;
    }
    ulc_fe_rows rows = {.path = tr.path, .x = tr.x, .y = tr.y, .forget = fflag, .rows = tr.rows};
    if (mods[1] && ulc_fe_features(mods[0], a->model, mods[1], a->original, &a->so, in_name, &rows,
                                   root, &ctx) != ULC_OK)
        goto fail;
    if (a->relearn > 0 &&
        ulc_fe_relearn(mods[0], a->model, &a->so, in_name, out_name, &rows, a->relearn,
                       a->relearn_lr > 0 ? a->relearn_lr : ULC_FE_RELEARN_LR, s.seed, root, &ctx) != ULC_OK)
        goto fail;
    if (a->json) {
        if (print_json(root, &ctx) != ULC_OK) goto fail;
    } else {
        printf("%s: unlearning metrics (spec %s)\n\naccuracy", a->model, a->spec);
        for (int j = 0; j < EV_NSPLIT; j++)
            if (nsplit[j]) printf("  %8s", k_ev_split[j]);
        printf("\n");
        for (int k = 0; k < 3; k++) {
            if (!mods[k]) continue;
            printf("%-9s", role[k]);
            for (int j = 0; j < EV_NSPLIT; j++)
                if (nsplit[j]) printf("  %7.2f%%", 100.0 * ev_acc(&sc[k], j));
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
            cJSON *e;
            cJSON_ArrayForEach(e, cJSON_GetObjectItem(fe, "layers")) {
                cJSON *cf = cJSON_GetObjectItem(e, "cka_forget"), *cr = cJSON_GetObjectItem(e, "cka_retain");
                printf("%-32s %12.4f %12.4f %9.4f %9.4f\n", cJSON_GetObjectItem(e, "name")->valuestring,
                       cJSON_GetObjectItem(e, "l1_forget")->valuedouble, cJSON_GetObjectItem(e, "l1_retain")->valuedouble,
                       cJSON_IsNumber(cf) ? cf->valuedouble : NAN, cJSON_IsNumber(cr) ? cr->valuedouble : NAN);
            }
        }
        cJSON *rl = cJSON_GetObjectItem(root, "relearn");
        if (rl) {
            printf("\nrelearning probe (SGD lr %g, batch %d): Df accuracy per step\n",
                   cJSON_GetObjectItem(rl, "lr")->valuedouble, cJSON_GetObjectItem(rl, "batch_size")->valueint);
            int step = 0;
            cJSON *e;
            cJSON_ArrayForEach(e, cJSON_GetObjectItem(rl, "forget_acc")) printf("  step %2d  %7.2f%%\n", step++, 100.0 * e->valuedouble);
        }
        cJSON *pc = cJSON_GetObjectItem(root, "per_class");
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
    goto done;
fail:
    rc = ulc_cli_report(&ctx);
done:
    (void)st;
    free(fflag);
    for (int k = 0; k < 3; k++) ev_scores_free(&sc[k]), ulc_model_free(mods[k]);
    ev_data_free(&tr);
    ev_data_free(&te);
    spec_clear(&s);
    cJSON_Delete(root);
    return rc;
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
    int64_t n = X->dims[0], n_classes = 0, correct = 0;
    size_t row_bytes = n ? X->nbytes / (size_t)n : 0;
    const uint8_t *xb = X->data;
    for (int64_t b0 = 0; b0 < n; b0 += batch) {
        int64_t bn = n - b0 < batch ? n - b0 : batch;
        ulc_rt_tensor xt;
        if (ulc_rt_tensor_view(X, data_path, &xt, &ctx) != ULC_OK) goto fail;
        xt.dims[0] = bn;
        xt.data = (void *)(uintptr_t)(xb + (size_t)b0 * row_bytes);
        xt.nbytes = (size_t)bn * row_bytes;
        if (ulc_session_set_input(s, gin->name, &xt, &ctx) != ULC_OK ||
            ulc_session_run(s, &ctx) != ULC_OK) {
            ulc_fail(&ctx, ctx.status, "%s: batch at row %lld", data_path, (long long)b0);
            goto fail;
        }
        const ulc_rt_tensor *o = ulc_session_output(s, gout->name);
        if (o->rank != 2 || o->dims[0] != bn || o->dims[1] < 1 ||
            (o->dtype != ULC_DT_F32 && o->dtype != ULC_DT_F64)) {
            char sh[128];
            ulc_fail(&ctx, ULC_ERR_INVALID, "%s: output '%s' is %s; eval needs float scores [N, classes]",
                     model_path, gout->name, ulc_rt_shape_str(o, sh, sizeof sh));
            goto fail;
        }
        if (!confusion) {
            n_classes = o->dims[1];
            confusion = calloc((size_t)(n_classes * n_classes), sizeof *confusion);
            if (!confusion) {
                ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
        for (int64_t r = 0; r < bn; r++) {
            int64_t label;
            memcpy(&label, (const uint8_t *)Y->data + 8 * (size_t)(b0 + r), 8);
            if (label < 0 || label >= n_classes) {
                ulc_fail(&ctx, ULC_ERR_INVALID, "%s: label[%lld] = %lld is outside the model's %lld classes",
                         data_path, (long long)(b0 + r), (long long)label, (long long)n_classes);
                goto fail;
            }
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
            confusion[label * n_classes + best]++;
            correct += best == label;
        }
    }
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
        ulc_status ps = print_json(o, &ctx);
        cJSON_Delete(o);
        if (ps != ULC_OK) goto fail;
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
