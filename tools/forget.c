/*
 * forget.c — `ulc IN --forget SPEC.json -o OUT`: the unlearning command (docs/spec.md).
 *
 *   ulc IN --forget SPEC.json -o OUT [--threads N] [-q] [--report PATH] [--profile]
 *   ulc forget IN --forget SPEC.json -o OUT ...            (the same)
 *
 * The spec (JSON) names the method, the data, what to forget and the hyper-parameters. All of
 * it is checked before any work — keys, types, files, tensors against the model's interface,
 * classes against the model's output and the labels, indices against the rows — and a bad spec
 * fails with a message naming the file and key, with nothing written. Then:
 *
 *   load IN (and IN again: the frozen teacher) → score IN on the splits (Df, Dr, Dft/Drt or Dt)
 *   → lora-inject (RFA's default placement, or the spec's targets/include/exclude)
 *   → ulc_rfa_run → lora-merge → score the merged model → export in IN's format
 *   → print the before/after table, write the JSON report (sha256 of every file involved).
 *
 * No specialize or cleanup runs: OUT keeps IN's inputs and outputs (dynamic dims too), nodes and
 * names; only the adapted weights change. Same seed and threads give the same bytes. Ctrl-C
 * stops training after the current step and exits 130 with nothing written.
 */
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/file.h"
#include "common/sha256.h"
#include "export/hf_export.h"
#include "export/onnx_export.h"
#include "export/safetensors_export.h"
#include "import/safetensors_import.h"
#include "ir/lora.h"
#include "passes/pass.h"
#include "methods/method.h"
#include "train/train.h"
#include "runtime/runtime.h"
#include "io/cache.h"
#include "io/data.h"
#include "io/model.h"
#include "tools/cli.h"
#include "tools/forget.h"
#include "eval/metrics.h"
#include "eval/report.h"

#define EVAL_BATCH 256     /* rows per run when scoring a model ... */
#define EVAL_BYTES (64u << 20) /* ... unless their inputs would take more than this */
#define ULC_IO_MAX_FED 16  /* graph inputs a model may need fed (input_ids, attention_mask, ...) */
#define MAX_REPORTS 8      /* --report given this many times at most */

static volatile sig_atomic_t g_stop;
static void on_stop(int sig) {
    (void)sig;
    g_stop = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- data and the model's interface -------------------------------------------------------- */

static int64_t eval_batch(const ulc_iface *f, const ulc_data *df) {
    size_t row = 0;
    for (int k = 0; k < f->n_fed && df->rows; k++) row += df->cols[k]->nbytes / (size_t)df->rows;
    int64_t b = row ? (int64_t)(EVAL_BYTES / row) : EVAL_BATCH;
    return b < 1 ? 1 : b > EVAL_BATCH ? EVAL_BATCH : b;
}

/* Rows [b0, b0 + bn) of every fed column copied into bufs (malloc'd on first use for cap rows:
 * the mapped file's bytes may be unaligned) and bound to the session. */
static ulc_status bind_rows(ulc_session *s, const ulc_iface *f, const ulc_data *df, int64_t b0,
                            int64_t bn, int64_t cap, uint8_t **bufs, ulc_ctx *ctx) {
    for (int k = 0; k < f->n_fed; k++) {
        const ulc_tensor *t = df->cols[k];
        size_t row = df->rows ? t->nbytes / (size_t)df->rows : 0;
        if (!bufs[k] && !(bufs[k] = malloc(row * (size_t)cap + 1)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (evaluation batch)");
        memcpy(bufs[k], (const uint8_t *)t->data + row * (size_t)b0, row * (size_t)bn);
        ulc_rt_tensor rt = {.dtype = t->dtype, .rank = t->rank, .data = bufs[k],
                            .nbytes = row * (size_t)bn};
        for (int d = 0; d < t->rank; d++) rt.dims[d] = t->dims[d];
        rt.dims[0] = bn;
        ULC_TRY(ulc_session_set_input(s, f->fed[k]->name, &rt, ctx));
    }
    return ULC_OK;
}


/* Per-row scores of a model over a data file: pred[i] is how many predictions row i makes (1 for
 * a classifier; for a text model, its next-token positions whose next token is not masked out)
 * and ok[i] how many of them are right (the first maximum is the prediction, as argmax). */
typedef struct row_scores {
    int32_t *pred, *ok;
    double *entropy;    /* classifiers: the softmax entropy of each row (MIA's feature) */
    double *conf;       /* classifiers: the softmax probability of the row's label (the SVM MIA's) */
} row_scores;

static void row_scores_clear(row_scores *r) {
    free(r->pred);
    free(r->ok);
    free(r->entropy);
    free(r->conf);
    r->pred = r->ok = NULL;
    r->entropy = NULL;
}

static int64_t argmax_f32(const float *x, int64_t n) {
    int64_t best = 0;
    float bv = -INFINITY;
    for (int64_t c = 0; c < n; c++)
        if (x[c] > bv) { /* NaN never wins */
            bv = x[c];
            best = c;
        }
    return best;
}

static int mask_at(const ulc_tensor *m, int64_t i) {
    if (m->dtype == ULC_DT_I64) {
        int64_t v;
        memcpy(&v, (const uint8_t *)m->data + 8 * (size_t)i, 8);
        return v != 0;
    }
    float v;
    memcpy(&v, (const uint8_t *)m->data + 4 * (size_t)i, 4);
    return v != 0;
}

/* The output's kind, from a run over one row (probe): class scores [1, C], or next-token logits
 * [1, T, V] when the main input is int64 token ids. Sets f->classes and f->next_token. */
static ulc_status probe_output(ulc_session *s, const char *in_path, ulc_iface *f, const ulc_data *df,
                               ulc_ctx *ctx) {
    uint8_t *bufs[ULC_IO_MAX_FED] = {0};
    ulc_status st = df->rows ? bind_rows(s, f, df, 0, 1, 1, bufs, ctx)
                             : ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): the data has no rows",
                                        df->path, df->key);
    if (st == ULC_OK) st = ulc_session_run(s, ctx);
    for (int k = 0; k < f->n_fed; k++) free(bufs[k]);
    if (st != ULC_OK)
        return ulc_fail(ctx, st, "%s: running the model on row 0 of %s", in_path, df->path);
    const ulc_rt_tensor *o = ulc_session_output(s, f->out->name);
    char sh[160];
    if (o && o->dtype == ULC_DT_F32 && o->dims[0] == 1 && o->rank == 2 && o->dims[1] >= 1) {
        f->classes = o->dims[1];
        return ULC_OK;
    }
    const ulc_tensor *x = df->cols[0];
    if (o && o->dtype == ULC_DT_F32 && o->dims[0] == 1 && o->rank == 3 && o->dims[2] >= 1 &&
        x->dtype == ULC_DT_I64 && x->rank == 2 && o->dims[1] == x->dims[1]) {
        f->classes = o->dims[2];
        f->next_token = 1;
        return ULC_OK;
    }
    return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is %s for one row; forget needs float32 "
                    "class scores [N, classes] (or next-token logits [N, T, vocab] for a model "
                    "fed token ids [N, T])", in_path, f->out->name,
                    o ? ulc_rt_shape_str(o, sh, sizeof sh) : "missing");
}

/* Scores every row of df with the model in session s, eval_batch() rows per run. */
static ulc_status score_rows(ulc_session *s, const char *model_name, const ulc_iface *f,
                             const ulc_data *df, row_scores *rs, ulc_ctx *ctx) {
    uint8_t *bufs[ULC_IO_MAX_FED] = {0};
    ulc_status st = ULC_OK;
    size_t n = (size_t)df->rows;
    rs->pred = calloc(n + 1, sizeof *rs->pred);
    rs->ok = calloc(n + 1, sizeof *rs->ok);
    rs->entropy = f->next_token ? NULL : calloc(n + 1, sizeof *rs->entropy);
    rs->conf = f->next_token ? NULL : calloc(n + 1, sizeof *rs->conf);
    double *p = f->next_token ? NULL : malloc((size_t)f->classes * sizeof *p);
    if (!rs->pred || !rs->ok || (!f->next_token && (!rs->entropy || !rs->conf || !p))) {
        free(p);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (scores)");
    }
    if (!f->next_token && !df->label)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): no tensor 'label' (int64 [N]): the "
                        "accuracy of a classifier needs labels", df->path, df->key);
    int64_t eb = eval_batch(f, df);
    for (int64_t b0 = 0; b0 < df->rows && st == ULC_OK; b0 += eb) {
        int64_t bn = df->rows - b0 < eb ? df->rows - b0 : eb;
        if ((st = bind_rows(s, f, df, b0, bn, eb, bufs, ctx)) != ULC_OK ||
            (st = ulc_session_run(s, ctx)) != ULC_OK) {
            st = ulc_fail(ctx, st, "%s on %s: the batch at row %lld", model_name, df->path,
                          (long long)b0);
            break;
        }
        const ulc_rt_tensor *o = ulc_session_output(s, f->out->name);
        int64_t c = f->classes;
        int want_rank = f->next_token ? 3 : 2;
        if (!o || o->dtype != ULC_DT_F32 || o->rank != want_rank || o->dims[0] != bn ||
            o->dims[o->rank - 1] != c) {
            char sh[160];
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is %s for %lld rows of %s "
                          "(expected [%lld, %s%lld])", model_name, f->out->name,
                          o ? ulc_rt_shape_str(o, sh, sizeof sh) : "missing", (long long)bn,
                          df->path, (long long)bn, f->next_token ? "T, " : "", (long long)c);
            break;
        }
        const float *z = o->data;
        for (int64_t r = 0; r < bn && st == ULC_OK; r++) {
            int64_t i = b0 + r;
            if (!f->next_token) {
                int64_t y = ulc_data_label(df, i);
                if (y < 0 || y >= c) {
                    st = ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): label[%lld] = %lld is outside "
                                  "the model's %lld classes (output '%s')", df->path, df->key,
                                  (long long)i, (long long)y, (long long)c, f->out->name);
                    break;
                }
                rs->pred[i] = 1;
                rs->ok[i] = argmax_f32(z + r * c, c) == y;
                ulc_softmax(z + r * c, c, p);
                rs->entropy[i] = ulc_entropy(p, c);
                rs->conf[i] = p[y];
                continue;
            }
            /* next token: logits at t predict input_ids at t + 1 */
            const ulc_tensor *ids = df->cols[0];
            int64_t T = ids->dims[1];
            for (int64_t t = 0; t + 1 < T; t++) {
                int64_t y;
                memcpy(&y, (const uint8_t *)ids->data + 8 * (size_t)(i * T + t + 1), 8);
                if (f->mask >= 0 && !mask_at(df->cols[f->mask], i * T + t + 1)) continue;
                if (y < 0 || y >= c) {
                    st = ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): input_ids[%lld, %lld] = %lld is "
                                  "outside the model's vocabulary of %lld", df->path, df->key,
                                  (long long)i, (long long)(t + 1), (long long)y, (long long)c);
                    break;
                }
                rs->pred[i]++;
                rs->ok[i] += argmax_f32(z + (r * T + t) * c, c) == y;
            }
        }
    }
    for (int k = 0; k < f->n_fed; k++) free(bufs[k]);
    free(p);
    return st;
}

/* ---- splits ---------------------------------------------------------------------------------- */

enum { S_DF, S_DR, S_DFT, S_DRT, S_DT, S_COUNT };
static const char *const k_split_name[S_COUNT] = {"Df", "Dr", "Dft", "Drt", "Dt"};
static const char *const k_split_what[S_COUNT] = {"forget (train)", "retain (train)",
                                                  "forget classes (test)",
                                                  "retain classes (test)", "test"};

typedef struct tally {
    int64_t rows, pred, ok;
} tally;

static double tally_acc(const tally *t) { return t->pred ? (double)t->ok / (double)t->pred : 0; }

/* Which split each row is in: train rows are Df (forget) or Dr; test rows are Dft or Drt for
 * class forgetting (by label), Dt for sample forgetting. */
typedef struct splits {
    uint8_t *train;          /* S_DF / S_DR per train row */
    uint8_t *forget;         /* 1 for forget rows (what ulc_rfa_run takes) */
    uint8_t *test;           /* S_DFT / S_DRT / S_DT per test row, or NULL */
    int present[S_COUNT];
    int64_t rows[S_COUNT];
} splits;

static void splits_clear(splits *sp) {
    free(sp->train);
    free(sp->forget);
    free(sp->test);
}

static int is_forget_class(const spec *s, int64_t y) {
    for (int k = 0; k < s->n_classes; k++)
        if (s->classes[k] == y) return 1;
    return 0;
}

/* Marks the forget rows and checks the forget set against the data and the model: classes
 * inside the model's classes and present in the train labels, indices inside the train rows,
 * a forget set that is neither empty nor everything. */
static ulc_status make_splits(const spec *s, const ulc_iface *f, const ulc_data *tr,
                              const ulc_data *te, splits *sp, ulc_ctx *ctx) {
    memset(sp, 0, sizeof *sp);
    size_t n = (size_t)tr->rows;
    sp->train = calloc(n + 1, 1);
    sp->forget = calloc(n + 1, 1);
    if (!sp->train || !sp->forget) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (splits)");
    if (s->kind == FORGET_CLASSES) {
        if (!tr->label)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s (data.train): no tensor 'label' (int64 [N]): "
                            "forgetting classes needs each row's class", tr->path);
        for (int k = 0; k < s->n_classes; k++)
            if (!f->next_token && s->classes[k] >= f->classes)
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.classes': class %lld is "
                                "outside the model's %lld classes (output '%s')", s->path,
                                (long long)s->classes[k], (long long)f->classes, f->out->name);
        int64_t *seen = calloc((size_t)s->n_classes + 1, sizeof *seen);
        if (!seen) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (splits)");
        for (int64_t i = 0; i < tr->rows; i++) {
            int64_t y = ulc_data_label(tr, i);
            for (int k = 0; k < s->n_classes; k++)
                if (s->classes[k] == y) {
                    seen[k]++;
                    sp->forget[i] = 1;
                }
        }
        for (int k = 0; k < s->n_classes; k++)
            if (!seen[k]) {
                long long c = (long long)s->classes[k];
                free(seen);
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.classes': class %lld has no "
                                "rows in data.train (%s)", s->path, c, tr->path);
            }
        free(seen);
    } else {
        const char *src = s->indices_file ? s->indices_file : s->path;
        const char *key = s->indices_file ? "row indices" : "key 'forget.indices'";
        for (int64_t k = 0; k < s->n_indices; k++) {
            if (s->indices[k] >= tr->rows)
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %s: index %lld is outside data.train's "
                                "%lld rows (0..%lld)", src, key, (long long)s->indices[k],
                                (long long)tr->rows, (long long)tr->rows - 1);
            sp->forget[s->indices[k]] = 1;
        }
    }
    for (int64_t i = 0; i < tr->rows; i++) {
        sp->train[i] = sp->forget[i] ? S_DF : S_DR;
        sp->rows[sp->train[i]]++;
    }
    if (!sp->rows[S_DF])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the forget set is empty", s->path);
    if (!sp->rows[S_DR])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the forget set is all %lld rows of data.train: "
                        "nothing is left to retain", s->path, (long long)tr->rows);
    sp->present[S_DF] = sp->present[S_DR] = 1;
    if (!te) return ULC_OK;
    if (!(sp->test = calloc((size_t)te->rows + 1, 1)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (splits)");
    if (s->kind == FORGET_CLASSES && !te->label)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (data.test): no tensor 'label' (int64 [N]): "
                        "scoring forgotten classes needs each row's class", te->path);
    for (int64_t i = 0; i < te->rows; i++) {
        sp->test[i] = s->kind == FORGET_INDICES ? S_DT
                      : is_forget_class(s, ulc_data_label(te, i)) ? S_DFT : S_DRT;
        sp->rows[sp->test[i]]++;
    }
    if (s->kind == FORGET_INDICES) sp->present[S_DT] = 1;
    else sp->present[S_DFT] = sp->present[S_DRT] = 1;
    return ULC_OK;
}

/* A model's scores: per split, and for classifiers per class and per row's softmax entropy
 * ([0] train, [1] test; NULL without test data). */
typedef struct scores {
    tally split[S_COUNT];
    tally *cls[2];       /* [classes] */
    double *entropy[2];  /* [rows] */
    double *conf[2];     /* [rows] */
} scores;

static void scores_clear(scores *sc) {
    for (int k = 0; k < 2; k++) {
        free(sc->cls[k]);
        free(sc->entropy[k]);
        free(sc->conf[k]);
    }
    memset(sc, 0, sizeof *sc);
}

/* Scores a model (a session over it) on every split. */
static ulc_status score_splits(ulc_session *ses, const char *model_name, const ulc_iface *f,
                               const ulc_data *tr, const ulc_data *te, const splits *sp,
                               scores *out, ulc_ctx *ctx) {
    scores_clear(out);
    for (int which = 0; which < 2; which++) {
        const ulc_data *df = which ? te : tr;
        const uint8_t *split = which ? sp->test : sp->train;
        if (!df) continue;
        row_scores rs = {0};
        ulc_status st = score_rows(ses, model_name, f, df, &rs, ctx);
        tally *cls = NULL;
        if (st == ULC_OK && !f->next_token &&
            !(cls = out->cls[which] = calloc((size_t)f->classes, sizeof *cls)))
            st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (scores)");
        for (int64_t i = 0; st == ULC_OK && i < df->rows; i++) {
            tally *t = &out->split[split[i]];
            t->rows++;
            t->pred += rs.pred[i];
            t->ok += rs.ok[i];
            if (cls) { /* score_rows checked the label */
                t = &cls[ulc_data_label(df, i)];
                t->rows++;
                t->pred += rs.pred[i];
                t->ok += rs.ok[i];
            }
        }
        out->entropy[which] = rs.entropy;
        out->conf[which] = rs.conf;
        rs.entropy = NULL;
        rs.conf = NULL;
        row_scores_clear(&rs);
        ULC_TRY(st);
    }
    return ULC_OK;
}

/* The entropy MIA (tools/metrics.h, ulc_mia_logreg; docs/metrics.md): the attacker learns
 * members (Dr rows) from non-members (the test rows of the retained classes, Drt, for class
 * forgetting; every test row, Dt, for sample forgetting — as `ulc eval --forget`) by the softmax
 * entropy, and the result is the fraction of Df rows it calls members. */
static ulc_status mia_run(const ulc_data *tr, const ulc_data *te, const splits *sp,
                          const scores *sc, int svm, ulc_mia_result *res, ulc_ctx *ctx) {
    double *const *feat = svm ? sc->conf : sc->entropy;
    int64_t nm = sp->rows[S_DR], nf = sp->rows[S_DF];
    double *mem = malloc((size_t)(nm + 1) * sizeof *mem), *tgt = malloc((size_t)(nf + 1) * sizeof *tgt);
    double *non = malloc((size_t)(te->rows + 1) * sizeof *non);
    if (!mem || !tgt || !non) {
        free(mem);
        free(tgt);
        free(non);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (MIA)");
    }
    int64_t a = 0, b = 0, c = 0;
    for (int64_t i = 0; i < tr->rows; i++) {
        if (sp->train[i] == S_DR) mem[a++] = feat[0][i];
        else tgt[b++] = feat[0][i];
    }
    for (int64_t i = 0; i < te->rows; i++)
        if (!sp->test || sp->test[i] != S_DFT) non[c++] = feat[1][i];
    ulc_status st = svm ? ulc_mia_svm(mem, a, non, c, tgt, b, res, ctx)
                        : ulc_mia_logreg(mem, a, non, c, tgt, b, res, ctx);
    free(mem);
    free(tgt);
    free(non);
    if (st != ULC_OK) return ulc_fail(ctx, st, "forget: the membership-inference attack (MIA)");
    return ULC_OK;
}

/* OUT must keep IN's interface. A difference is a ulc bug: nothing is written. */
static ulc_status same_interface(const ulc_model *a, const ulc_model *b, ulc_ctx *ctx) {
    const char *which;
    if (!ulc_io_same_interface(a, b, &which))
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "forget: the unlearned model's %s differ from "
                        "the input model's", which);
    return ULC_OK;
}

/* ---- the report ------------------------------------------------------------------------------ */

static cJSON *file_entry(const char *path, const char *sha) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "sha256", sha);
    return o;
}

/* A '|'-joined list back into a JSON list of strings. */
static cJSON *str_list(const char *joined) {
    cJSON *a = cJSON_CreateArray();
    const char *p = joined;
    while (p && *p) {
        const char *e = strchr(p, '|');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char *item = strndup(p, n);
        if (item) cJSON_AddItemToArray(a, cJSON_CreateString(item));
        free(item);
        p = e ? e + 1 : NULL;
    }
    return a;
}

static cJSON *accuracy_obj(const splits *sp, const tally t[S_COUNT]) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < S_COUNT; k++)
        if (sp->present[k]) cJSON_AddNumberToObject(o, k_split_name[k], tally_acc(&t[k]));
    return o;
}

/* What went into and came out of a run, for the report and the table. */
typedef struct run_facts {
    const char *in, *out;
    char in_sha[ULC_SHA256_HEX], out_sha[ULC_SHA256_HEX], spec_sha[ULC_SHA256_HEX];
    char ext_sha[ULC_SHA256_HEX];
    char idx_sha[ULC_SHA256_HEX];
    char *in_file, *out_file;   /* the hashed files (a directory's model.safetensors) */
    char *ext_file;             /* OUT's external data file, or NULL */
    int threads;
    char **modules;             /* adapted module names */
    int n_modules;
    scores before, after;
    int has_mia;                /* a classifier with test data: the entropy MIA was run */
    ulc_mia_result mia_before, mia_after;      /* entropy / logistic regression */
    ulc_mia_result svm_before, svm_after;      /* confidence / RBF SVM */
    ulc_train_stats st;
    double wall;
    const char *teacher_cache;  /* delete: "hit", "stored", "unwritable"; NULL otherwise */
    cJSON *extra;               /* "features", "relearn", "activation_distance" (extra_metrics) */
    char *ref_file;             /* the reference's hashed file */
    char ref_sha[ULC_SHA256_HEX];
} run_facts;

/* The report's extra metrics (the spec's "eval"; docs/metrics.md), computed by the code `ulc
 * eval --forget` uses: per-layer feature distance and CKA of OUT against IN; for classifiers,
 * the relearning probe on OUT and the activation distance of OUT and IN to the reference on Df.
 * Models with one fed input only (the others get none of these). */
static ulc_status extra_metrics(const spec *s, const ulc_iface *f, const ulc_data *tr,
                                const splits *sp, const ulc_model *in_m, const ulc_model *out_m,
                                const ulc_model *ref, run_facts *r, ulc_ctx *ctx) {
    if (!(r->extra = cJSON_CreateObject())) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (f->n_fed != 1) return ULC_OK;
    ulc_session_opts so = ulc_session_defaults();
    so.threads = r->threads;
    const char *in_name = f->fed[0]->name, *out_name = f->out->name;
    ulc_fe_rows rows = {.path = tr->path, .x = tr->cols[0], .y = tr->label, .forget = sp->forget,
                        .rows = tr->rows};
    if (s->eval_features)
        ULC_TRY(ulc_fe_features(out_m, r->out, in_m, r->in, &so, in_name, &rows, r->extra, ctx));
    if (f->next_token || !tr->label) return ULC_OK;
    if (s->relearn_steps > 0)
        ULC_TRY(ulc_fe_relearn(out_m, r->out, &so, in_name, out_name, &rows, s->relearn_steps,
                               s->relearn_lr, s->seed, r->extra, ctx));
    if (!ref) return ULC_OK;
    int64_t nf = sp->rows[S_DF], C = 0;
    int64_t *idx = malloc(((size_t)nf + 1) * sizeof *idx);
    float *z[3] = {NULL, NULL, NULL}; /* OUT, IN, reference */
    const ulc_model *ms[3] = {out_m, in_m, ref};
    const char *paths[3] = {r->out, r->in, s->reference};
    ulc_status st = idx ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0, k = 0; st == ULC_OK && i < tr->rows; i++)
        if (sp->forget[i]) idx[k++] = i;
    for (int k = 0; st == ULC_OK && k < 3; k++)
        st = ulc_fe_logits(ms[k], paths[k], &so, in_name, out_name, tr->cols[0], tr->path, idx, nf,
                           &C, &z[k], ctx);
    if (st == ULC_OK) {
        cJSON *o = cJSON_AddObjectToObject(r->extra, "activation_distance");
        cJSON_AddNumberToObject(o, "model", ulc_activation_distance(z[0], z[2], nf, C));
        cJSON_AddNumberToObject(o, "original", ulc_activation_distance(z[1], z[2], nf, C));
    }
    for (int k = 0; k < 3; k++) free(z[k]);
    free(idx);
    return st;
}

/* The report as JSON (tools/report.c renders it as Markdown and HTML and adds the gates);
 * NULL when out of memory. */
static cJSON *report_json(const spec *s, const ulc_data *tr, const ulc_data *te,
                          const splits *sp, const ulc_iface *f, const run_facts *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "method", s->method_name);
    if (r->teacher_cache) cJSON_AddStringToObject(o, "teacher_cache", r->teacher_cache);
    cJSON *in = file_entry(r->in, r->in_sha);
    if (strcmp(r->in, r->in_file) != 0) cJSON_AddStringToObject(in, "file", r->in_file);
    cJSON_AddItemToObject(o, "input", in);
    cJSON *out = file_entry(r->out, r->out_sha);
    if (strcmp(r->out, r->out_file) != 0) cJSON_AddStringToObject(out, "file", r->out_file);
    if (r->ext_file)
        cJSON_AddItemToObject(out, "external_data", file_entry(r->ext_file, r->ext_sha));
    cJSON_AddItemToObject(o, "output", out);
    cJSON_AddItemToObject(o, "spec", file_entry(s->path, r->spec_sha));
    if (s->reference) {
        cJSON *ref = file_entry(s->reference, r->ref_sha);
        if (strcmp(s->reference, r->ref_file) != 0) cJSON_AddStringToObject(ref, "file", r->ref_file);
        cJSON_AddItemToObject(o, "reference", ref);
    }
    cJSON *data = cJSON_AddObjectToObject(o, "data");
    for (int k = 0; k < 2; k++) {
        const ulc_data *df = k ? te : tr;
        if (!df) continue;
        cJSON *e = file_entry(df->path, df->sha);
        cJSON_AddNumberToObject(e, "rows", (double)df->rows);
        cJSON_AddItemToObject(data, k ? "test" : "train", e);
    }
    cJSON *fg = cJSON_AddObjectToObject(o, "forget");
    cJSON_AddStringToObject(fg, "kind", s->kind == FORGET_CLASSES ? "classes" : "indices");
    if (s->kind == FORGET_CLASSES) {
        cJSON *cl = cJSON_AddArrayToObject(fg, "classes");
        for (int k = 0; k < s->n_classes; k++)
            cJSON_AddItemToArray(cl, cJSON_CreateNumber((double)s->classes[k]));
    } else {
        cJSON_AddNumberToObject(fg, "indices", (double)s->n_indices);
        if (s->indices_file)
            cJSON_AddItemToObject(fg, "indices_file", file_entry(s->indices_file, r->idx_sha));
    }
    cJSON_AddNumberToObject(fg, "rows", (double)sp->rows[S_DF]);
    cJSON *splits_o = cJSON_AddObjectToObject(o, "splits");
    for (int k = 0; k < S_COUNT; k++)
        if (sp->present[k]) {
            cJSON *e = cJSON_AddObjectToObject(splits_o, k_split_name[k]);
            cJSON_AddNumberToObject(e, "rows", (double)sp->rows[k]);
            cJSON_AddNumberToObject(e, "predictions", (double)r->before.split[k].pred);
        }
    cJSON *hp = cJSON_AddObjectToObject(o, "hyperparameters");
    int rfa = s->method == ULC_METHOD_RFA;
    cJSON *lo = rfa || s->unlearn.what == ULC_TRAIN_LORA ? cJSON_AddObjectToObject(hp, "lora")
                                                          : cJSON_CreateObject(); /* dropped */
    cJSON_AddNumberToObject(lo, "rank", (double)s->rank);
    cJSON_AddNumberToObject(lo, "alpha", s->alpha);
    cJSON_AddStringToObject(lo, "placement", s->lora_custom ? "spec" : "rfa-default");
    if (s->targets) cJSON_AddItemToObject(lo, "targets", str_list(s->targets));
    if (s->include) cJSON_AddItemToObject(lo, "include", str_list(s->include));
    if (s->lora_custom) cJSON_AddItemToObject(lo, "exclude", str_list(s->exclude));
    cJSON *mods = cJSON_AddArrayToObject(lo, "modules");
    for (int k = 0; k < r->n_modules; k++)
        cJSON_AddItemToArray(mods, cJSON_CreateString(r->modules[k]));
    if (!(rfa || s->unlearn.what == ULC_TRAIN_LORA)) cJSON_Delete(lo);
    cJSON *tr_o = cJSON_AddObjectToObject(hp, "train");
    cJSON_AddNumberToObject(tr_o, "epochs", (double)s->epochs);
    cJSON_AddNumberToObject(tr_o, "batch_size", (double)s->batch_size);
    cJSON_AddNumberToObject(tr_o, "lr", s->lr);
    cJSON_AddStringToObject(tr_o, "optimizer", s->optimizer == ULC_OPTIM_ADAMW ? "adamw" : "sgd");
    cJSON_AddNumberToObject(tr_o, "weight_decay", s->weight_decay);
    if (s->optimizer == ULC_OPTIM_SGD) cJSON_AddNumberToObject(tr_o, "momentum", s->momentum);
    cJSON_AddNumberToObject(tr_o, "seed", (double)s->seed);
    if (!rfa) {
        static const char *const what[] = {"all", "all_but_classifier", "lora"};
        cJSON *mo = cJSON_AddObjectToObject(hp, s->method_name);
        cJSON_AddStringToObject(mo, "train", what[s->unlearn.what]);
        if (s->method == ULC_METHOD_DELETE) {
            cJSON_AddStringToObject(mo, "mask", s->unlearn.mask_all_forget ? "all_forget" : "own");
            cJSON_AddNumberToObject(mo, "temperature", s->unlearn.temperature);
        }
        if (s->method == ULC_METHOD_SCRUB) {
            cJSON_AddNumberToObject(mo, "alpha", s->unlearn.scrub_alpha);
            cJSON_AddNumberToObject(mo, "gamma", s->unlearn.scrub_gamma);
        }
    }
    cJSON *rf = rfa ? cJSON_AddObjectToObject(hp, "rfa") : cJSON_CreateObject();
    ulc_rfa_opts d = ulc_rfa_defaults();
    cJSON_AddNumberToObject(rf, "gamma", s->gamma);
    cJSON_AddStringToObject(rf, "norm", s->norm_name);
    cJSON_AddNumberToObject(rf, "alpha", d.alpha);
    cJSON_AddNumberToObject(rf, "beta", d.beta);
    cJSON_AddNumberToObject(rf, "lambda", d.lambda);
    cJSON_AddNumberToObject(rf, "mu", d.mu);
    cJSON_AddStringToObject(rf, "task", f->next_token ? "next-token" : "classification");
    if (!rfa) cJSON_Delete(rf);
    cJSON_AddNumberToObject(o, "seed", (double)s->seed);
    cJSON_AddNumberToObject(o, "threads", r->threads);
    cJSON *acc = cJSON_AddObjectToObject(o, "accuracy");
    cJSON_AddItemToObject(acc, "before", accuracy_obj(sp, r->before.split));
    cJSON_AddItemToObject(acc, "after", accuracy_obj(sp, r->after.split));
    if (sp->present[S_DFT]) { /* DELETE's H-mean (docs/metrics.md), in points */
        double art = 100 * tally_acc(&r->after.split[S_DRT]);
        double drop = 100 * (tally_acc(&r->before.split[S_DFT]) - tally_acc(&r->after.split[S_DFT]));
        cJSON *hm = cJSON_AddObjectToObject(o, "h_mean");
        cJSON_AddNumberToObject(hm, "acc_rt", art);
        cJSON_AddNumberToObject(hm, "drop_ft", drop);
        cJSON_AddNumberToObject(hm, "h_mean", ulc_hmean(art, drop));
    }
    if (r->has_mia) {
        cJSON *mia = cJSON_AddObjectToObject(o, "mia");
        cJSON_AddNumberToObject(mia, "entropy", r->mia_after.member_frac);
        cJSON_AddNumberToObject(mia, "confidence_svm", r->svm_after.member_frac);
        cJSON *mb = cJSON_AddObjectToObject(mia, "before");
        cJSON_AddNumberToObject(mb, "entropy", r->mia_before.member_frac);
        cJSON_AddNumberToObject(mb, "confidence_svm", r->svm_before.member_frac);
        cJSON *mr = cJSON_AddObjectToObject(mia, "rows");
        cJSON_AddNumberToObject(mr, "members", (double)r->mia_after.n_members);
        cJSON_AddNumberToObject(mr, "nonmembers", (double)r->mia_after.n_nonmembers);
        cJSON_AddNumberToObject(mr, "target", (double)r->mia_after.n_target);
    }
    if (!f->next_token) {
        cJSON *pc = cJSON_AddObjectToObject(o, "per_class");
        for (int w = 0; w < 2; w++) {
            if (!r->before.cls[w] || !r->after.cls[w]) continue;
            cJSON *list = cJSON_AddArrayToObject(pc, w ? "test" : "train");
            for (int64_t c = 0; c < f->classes; c++) {
                const tally *b = &r->before.cls[w][c], *a = &r->after.cls[w][c];
                if (!b->rows) continue; /* classes without rows in this file */
                cJSON *e = cJSON_CreateObject();
                cJSON_AddItemToArray(list, e);
                cJSON_AddNumberToObject(e, "class", (double)c);
                cJSON_AddNumberToObject(e, "rows", (double)b->rows);
                cJSON_AddNumberToObject(e, "before", tally_acc(b));
                cJSON_AddNumberToObject(e, "after", tally_acc(a));
                cJSON_AddBoolToObject(e, "forget", s->kind == FORGET_CLASSES &&
                                                       is_forget_class(s, c));
            }
        }
    }
    for (const cJSON *e = r->extra ? r->extra->child : NULL; e; e = e->next)
        cJSON_AddItemToObject(o, e->string, cJSON_Duplicate(e, 1));
    cJSON *eo = cJSON_AddObjectToObject(hp, "eval");
    cJSON_AddBoolToObject(eo, "features", s->eval_features);
    cJSON_AddNumberToObject(eo, "relearn_steps", (double)s->relearn_steps);
    cJSON_AddNumberToObject(eo, "relearn_lr", s->relearn_lr);
    cJSON *tro = cJSON_AddObjectToObject(o, "train");
    cJSON_AddNumberToObject(tro, "steps", (double)r->st.steps);
    cJSON_AddNumberToObject(tro, "first_loss", r->st.first_loss);
    cJSON_AddNumberToObject(tro, "last_loss", r->st.last_loss);
    cJSON_AddNumberToObject(tro, "seconds", r->st.seconds);
    cJSON *lc = cJSON_AddArrayToObject(tro, "loss_curve");
    for (long k = 0; r->st.loss_curve && k < r->st.steps; k++)
        cJSON_AddItemToArray(lc, cJSON_CreateNumber(r->st.loss_curve[k]));
    cJSON_AddNumberToObject(o, "wall_seconds", r->wall);
    return o;
}

static void print_table(FILE *out, const spec *s, const ulc_data *tr, const splits *sp,
                        const ulc_iface *f, const run_facts *r) {
    fprintf(out, "ulc forget: %s -> %s (%s; ", r->in, r->out, s->method_name);
    if (s->kind == FORGET_CLASSES) {
        fprintf(out, "class%s", s->n_classes > 1 ? "es" : "");
        for (int k = 0; k < s->n_classes; k++)
            fprintf(out, "%s%lld", k ? "," : " ", (long long)s->classes[k]);
    } else {
        fprintf(out, "%lld sample%s", (long long)s->n_indices, s->n_indices > 1 ? "s" : "");
    }
    fprintf(out, ": %lld of %lld train rows)\n\n", (long long)sp->rows[S_DF], (long long)tr->rows);
    fprintf(out, "split                          rows    before     after\n");
    for (int k = 0; k < S_COUNT; k++)
        if (sp->present[k])
            fprintf(out, "%-4s %-22s %9lld  %7.2f%%  %7.2f%%\n", k_split_name[k], k_split_what[k],
                    (long long)sp->rows[k], 100 * tally_acc(&r->before.split[k]),
                    100 * tally_acc(&r->after.split[k]));
    if (f->next_token) fprintf(out, "(accuracy: next-token predictions)\n");
    if (r->has_mia)
        fprintf(out, "MIA  entropy attack: Df called member  %7.2f%%  %7.2f%%\n",
                100 * r->mia_before.member_frac, 100 * r->mia_after.member_frac);
    if (r->has_mia)
        fprintf(out, "MIA  confidence SVM: Df called member  %7.2f%%  %7.2f%%\n",
                100 * r->svm_before.member_frac, 100 * r->svm_after.member_frac);
    if (sp->present[S_DFT])
        fprintf(out, "H-mean of Drt and the drop of Dft            %7.2f\n",
                ulc_hmean(100 * tally_acc(&r->after.split[S_DRT]),
                          100 * (tally_acc(&r->before.split[S_DFT]) - tally_acc(&r->after.split[S_DFT]))));
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(r->extra, "activation_distance");
    if (ad)
        fprintf(out, "activation distance to the reference on Df  %7.4f  %7.4f\n",
                cJSON_GetObjectItemCaseSensitive(ad, "original")->valuedouble,
                cJSON_GetObjectItemCaseSensitive(ad, "model")->valuedouble);
    const cJSON *fe = cJSON_GetObjectItemCaseSensitive(r->extra, "features");
    if (fe) { /* the mean CKA over the layers where it is defined */
        double sum[2] = {0, 0};
        int n[2] = {0, 0}, layers = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(fe, "layers")) {
            layers++;
            for (int k = 0; k < 2; k++) {
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, k ? "cka_retain" : "cka_forget");
                if (cJSON_IsNumber(c)) sum[k] += c->valuedouble, n[k]++;
            }
        }
        if (n[0] && n[1])
            fprintf(out, "features vs IN: mean linear CKA %.4f on Df, %.4f on Dr (%d layers)\n",
                    sum[0] / n[0], sum[1] / n[1], layers);
    }
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(r->extra, "relearn");
    if (rl) {
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(rl, "forget_acc");
        int n = cJSON_GetArraySize(acc), every = n > 11 ? (n + 9) / 10 : 1;
        fprintf(out, "relearning probe: Df accuracy after SGD steps on Df (lr %g):\n ",
                cJSON_GetObjectItemCaseSensitive(rl, "lr")->valuedouble);
        for (int k = 0; k < n; k += every)
            fprintf(out, " %d: %.1f%%", k, 100 * cJSON_GetArrayItem(acc, k)->valuedouble);
        if ((n - 1) % every)
            fprintf(out, " %d: %.1f%%", n - 1, 100 * cJSON_GetArrayItem(acc, n - 1)->valuedouble);
        fprintf(out, "\n");
    }
    fprintf(out, "\n%s: %ld steps, loss %.4f -> %.4f, %.1f s; wall time %.1f s\n", s->method_name,
            r->st.steps, r->st.first_loss, r->st.last_loss, r->st.seconds, r->wall);
}

/* ---- DELETE's teacher logits, cached --------------------------------------------------------- */

/* The frozen teacher's logits on the forget rows, from the cache (tools/cache.h) when a run on
 * the same model file, train data and rows made them, else computed and stored there. The key
 * hashes the model's main file, the train data, the forget flags and the input/output names. */
/* DELETE's teacher-logits cache key: the hashes of the model file and the data, and of the forget
 * flags and the input/output names (the logits depend on nothing else). */
static ulc_status teacher_cache_key(const char *in, ulc_io_format ifmt, const spec *s,
                                    const ulc_data *tr, const uint8_t *forget, const ulc_iface *f,
                                    char *key, size_t n, ulc_ctx *ctx) {
    char *file = ulc_io_model_main_file(in, ifmt);
    char msha[ULC_SHA256_HEX], dsha[ULC_SHA256_HEX], fsha[ULC_SHA256_HEX];
    ulc_status st = file ? ulc_sha256_file(file, msha, ctx) : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    free(file);
    ULC_TRY(st);
    ULC_TRY(ulc_sha256_file(s->train, dsha, ctx));
    ulc_sha256 h;
    ulc_sha256_init(&h);
    ulc_sha256_update(&h, forget, (size_t)tr->d.n_rows);
    ulc_sha256_update(&h, f->fed[0]->name, strlen(f->fed[0]->name) + 1);
    ulc_sha256_update(&h, f->out->name, strlen(f->out->name) + 1);
    uint8_t dg[ULC_SHA256_BYTES];
    ulc_sha256_final(&h, dg);
    ulc_sha256_hex(dg, fsha);
    snprintf(key, n, "teacher-%.16s-%.16s-%.16s", msha, dsha, fsha);
    return ULC_OK;
}

/* The spec as a pipeline of passes with typed options: lora-inject (the spec's targets/include/
 * exclude, else RFA's placement) when the method trains adapters, the method, lora-merge. *n_prep
 * gets the number of passes before the method. */
static ulc_status spec_pipeline(const spec *s, ulc_pipeline **out, int *n_prep, ulc_ctx *ctx) {
    ulc_pipeline *p = NULL;
    int lora = s->method == ULC_METHOD_RFA || s->unlearn.what == ULC_TRAIN_LORA;
    ulc_status st = ulc_pipeline_create(&p, ctx);
#define SET(call)                                                                                  \
    do {                                                                                           \
        if (st == ULC_OK) st = (call);                                                             \
    } while (0)
    if (lora) {
        SET(ulc_pipeline_append(p, "lora-inject", ctx));
        SET(ulc_pipeline_set_int(p, "rank", s->rank, ctx));
        SET(ulc_pipeline_set_num(p, "alpha", s->alpha, ctx));
        if (!s->lora_custom) SET(ulc_pipeline_set_str(p, "placement", "rfa", ctx));
        if (s->targets) SET(ulc_pipeline_set_str(p, "targets", s->targets, ctx));
        if (s->include) SET(ulc_pipeline_set_str(p, "include", s->include, ctx));
        if (s->exclude) SET(ulc_pipeline_set_str(p, "exclude", s->exclude, ctx));
    }
    *n_prep = lora;
    SET(ulc_pipeline_append(p, s->method_name, ctx));
    SET(ulc_pipeline_set_int(p, "epochs", s->epochs, ctx));
    SET(ulc_pipeline_set_int(p, "batch_size", s->batch_size, ctx));
    SET(ulc_pipeline_set_num(p, "lr", s->lr, ctx));
    SET(ulc_pipeline_set_num(p, "weight_decay", s->weight_decay, ctx));
    SET(ulc_pipeline_set_str(p, "optimizer", s->optimizer == ULC_OPTIM_SGD ? "sgd" : "adamw", ctx));
    if (s->optimizer == ULC_OPTIM_SGD) SET(ulc_pipeline_set_num(p, "momentum", s->momentum, ctx));
    if (s->method == ULC_METHOD_RFA) {
        SET(ulc_pipeline_set_num(p, "gamma", s->gamma, ctx));
        SET(ulc_pipeline_set_str(p, "norm", s->norm_name, ctx));
    } else if (s->method != ULC_METHOD_RETRAIN) {
        static const char *const what[] = {"all", "all_but_classifier", "lora"};
        SET(ulc_pipeline_set_str(p, "train", what[s->unlearn.what], ctx));
    }
    if (s->method == ULC_METHOD_DELETE) {
        SET(ulc_pipeline_set_str(p, "mask", s->unlearn.mask_all_forget ? "all_forget" : "own", ctx));
        SET(ulc_pipeline_set_num(p, "temperature", s->unlearn.temperature, ctx));
    }
    if (s->method == ULC_METHOD_SCRUB) {
        SET(ulc_pipeline_set_num(p, "alpha", s->unlearn.scrub_alpha, ctx));
        SET(ulc_pipeline_set_num(p, "gamma", s->unlearn.scrub_gamma, ctx));
    }
    if (lora) SET(ulc_pipeline_append(p, "lora-merge", ctx));
#undef SET
    if (st != ULC_OK) {
        ulc_pipeline_free(p);
        return ulc_fail(ctx, st, "%s: the spec as passes", s->path);
    }
    *out = p;
    return ULC_OK;
}

/* The adapters lora-inject added (a placement that adapts nothing is refused before any work). */
static ulc_status adapted_modules(const ulc_model *m, const spec *s, const char *in_path,
                                  run_facts *r, ulc_ctx *ctx) {
    int adapted = 0;
    for (size_t i = 0; i < m->lora.len; i++)
        adapted += !((const ulc_lora_record *)m->lora.items[i])->merged;
    if (!adapted)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the spec's lora.targets/include/exclude "
                        "adapt no layer of %s", s->path, in_path);
    r->modules = calloc((size_t)adapted, sizeof *r->modules);
    if (!r->modules) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->lora.len; i++) {
        const ulc_lora_record *rec = m->lora.items[i];
        if (!rec->merged && !(r->modules[r->n_modules++] = strdup(rec->module)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    return ULC_OK;
}

int ulc_cli_forget(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *spec_path = NULL;
    const char *reports[MAX_REPORTS]; /* --report PATH ..., else the spec's one */
    int n_reports = 0, threads = 0, quiet = 0, profile = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--forget") || !strcmp(a, "-o") || !strcmp(a, "--report") ||
            !strcmp(a, "--threads")) {
            if (!val) return ulc_cli_usage_error("forget: %s needs a value", a);
            i++;
            if (!strcmp(a, "--forget")) spec_path = val;
            else if (!strcmp(a, "-o")) out = val;
            else if (!strcmp(a, "--report")) {
                if (n_reports == MAX_REPORTS)
                    return ulc_cli_usage_error("forget: --report given more than %d times",
                                               MAX_REPORTS);
                reports[n_reports++] = val;
            }
            else {
                char *end;
                long v = strtol(val, &end, 10);
                if (!*val || *end || v < 0 || v > 4096)
                    return ulc_cli_usage_error("forget: --threads needs a count (0 = every core)");
                threads = (int)v;
            }
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--profile")) {
            profile = 1;
        } else if (a[0] == '-' && a[1]) {
            return ulc_cli_usage_error("forget: unknown option '%s'", a);
        } else if (in) {
            return ulc_cli_usage_error("forget: more than one model given ('%s' and '%s')", in, a);
        } else {
            in = a;
        }
    }
    if (!in) return ulc_cli_usage_error("forget: no input model given");
    if (!spec_path) return ulc_cli_usage_error("forget: no spec given (--forget SPEC.json)");
    if (!out) return ulc_cli_usage_error("forget: no output given (-o OUT)");

    double t0 = now_s();
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    spec s;
    ulc_data tr = {0}, te = {0};
    ulc_iface f;
    splits sp = {0};
    run_facts r = {.in = in, .out = out, .threads = threads};
    ulc_model *m = NULL, *teacher = NULL, *ref = NULL;
    ulc_session *ses = NULL;
    ulc_outfile *rep[MAX_REPORTS] = {0};
    cJSON *report_obj = NULL;
    char *report_text_s = NULL, *gate_msgs = NULL;
    int gates_failed = 0, n_prep = 0;
    ulc_io_format ifmt, ofmt;
    ulc_pipeline *pipe = NULL;
    ulc_pass_ctx pc = ulc_pass_ctx_defaults();
    ulc_method_env env = {0};
    char cache_key[96];
    ulc_status st = spec_parse(spec_path, &s, &ctx);
#define TRY(e)                                                                                  \
    do {                                                                                        \
        if ((st = (e)) != ULC_OK) goto done;                                                    \
    } while (0)
#define USAGE(...)                                                                              \
    do {                                                                                        \
        st = ulc_fail(&ctx, ULC_ERR_INVALID_ARG, __VA_ARGS__);                                  \
        goto done;                                                                              \
    } while (0)
    if (st != ULC_OK) goto done;
    /* the outputs: IN's format, never IN itself, in directories that exist */
    if (!ulc_path_exists(in))
        TRY(ulc_fail(&ctx, ULC_ERR_IO, "%s: no such file or directory", in));
    ifmt = ulc_io_input_format(in);
    if (ulc_io_output_format(out, &ofmt, NULL) != ULC_OK || ofmt != ifmt)
        USAGE("forget: the output '%s' must be %s, like the input '%s'", out, ulc_io_format_describe(ifmt), in);
    if (ulc_path_same_file(out, in)) USAGE("forget: the output '%s' is the input model", out);
    if (!n_reports && s.report) reports[n_reports++] = s.report;
    {
        /* neither output may be one of the inputs, nor a report the model or another report */
        const char *read[] = {in, spec_path, s.train, s.test, s.indices_file, s.reference, out};
        for (size_t k = 0; k + 1 < sizeof read / sizeof *read; k++)
            if (read[k] && ulc_path_same_file(out, read[k]))
                USAGE("forget: the output '%s' would overwrite '%s'", out, read[k]);
        for (int q = 0; q < n_reports; q++) {
            const char *report = reports[q];
            for (size_t k = 0; k < sizeof read / sizeof *read; k++)
                if (read[k] &&
                    (strcmp(report, read[k]) == 0 || ulc_path_same_file(report, read[k])))
                    USAGE("forget: the report '%s' would overwrite '%s'", report, read[k]);
            for (int p = 0; p < q; p++)
                if (strcmp(report, reports[p]) == 0 || ulc_path_same_file(report, reports[p]))
                    USAGE("forget: the report '%s' is given twice", report);
            if (ulc_path_is_dir(report)) USAGE("forget: the report '%s' is a directory", report);
            TRY(ulc_io_check_out_dir("report", report, 0, &ctx));
        }
    }
    TRY(ulc_io_check_out_dir("output", out, ofmt == ULC_IO_DIR, &ctx));
    /* the model and the data, checked against each other */
    TRY(ulc_io_load_model(in, NULL, &m, &ctx));
    if (ulc_model_reads_file(m, out))
        USAGE("forget: the output '%s' would overwrite '%s', which the input model reads", out,
              ulc_model_reads_file(m, out));
    TRY(ulc_iface_resolve(m, in, s.model_input, s.model_output, s.path, &f, &ctx));
    TRY(ulc_data_load("data.train", s.train, in, &f, &tr, &ctx));
    if (s.test) TRY(ulc_data_load("data.test", s.test, in, &f, &te, &ctx));
    TRY(ulc_io_load_model(in, NULL, &teacher, &ctx)); /* the frozen original */
    if (s.reference) { /* eval.reference: scored like OUT, so the same interface */
        const char *which;
        TRY(ulc_io_load_model(s.reference, NULL, &ref, &ctx));
        if (!ulc_io_same_interface(teacher, ref, &which))
            TRY(ulc_fail(&ctx, ULC_ERR_INVALID, "%s: key 'eval.reference': the model '%s' has other "
                         "%s than '%s' (names, dtypes or dims)", s.path, s.reference, which, in));
    }
    {
        ulc_session_opts so = ulc_session_defaults();
        so.threads = threads;
        TRY(ulc_session_create(teacher, &so, &ses, &ctx));
    }
    TRY(probe_output(ses, in, &f, &tr, &ctx));
    TRY(make_splits(&s, &f, &tr, s.test ? &te : NULL, &sp, &ctx));
    if (s.gates.set[ULC_GATE_MIA] && f.next_token)
        TRY(ulc_fail(&ctx, ULC_ERR_UNSUPPORTED, "%s: key 'gates.mia_max': the membership attack "
                     "scores classifiers; %s is scored on next-token predictions", s.path, in));
    r.has_mia = s.test && !f.next_token;
    for (int q = 0; q < n_reports; q++) /* written last, but writable now */
        TRY(ulc_outfile_open(reports[q], &rep[q], &ctx));
#ifdef _OPENMP
    if (!r.threads) r.threads = omp_get_max_threads();
#endif

    /* the adapters (a placement that adapts nothing is refused before any work) */
    /* the spec as passes; the ones before the method (lora-inject) run now: a placement that
     * adapts nothing is refused before any work */
    TRY(ulc_methods_register(&ctx));
    TRY(spec_pipeline(&s, &pipe, &n_prep, &ctx));
    g_stop = 0;
    pc.quiet = quiet;
    pc.threads = threads;
    pc.profile = profile;
    pc.seed = s.seed;
    pc.progress = stderr;
    pc.stop = &g_stop;
    pc.env = &env;
    env.teacher = teacher;
    env.data = &tr.d;
    env.forget = sp.forget;
    env.forget_classes = s.kind == FORGET_CLASSES ? s.classes : NULL;
    env.n_forget_classes = s.kind == FORGET_CLASSES ? s.n_classes : 0;
    env.input = f.fed[0]->name;
    env.output = f.out->name;
    env.next_token = f.next_token;
    if (s.method == ULC_METHOD_DELETE && !getenv("ULC_NO_CACHE")) {
        TRY(teacher_cache_key(in, ifmt, &s, &tr, sp.forget, &f, cache_key, sizeof cache_key, &ctx));
        env.teacher_cache_key = cache_key;
    }
    {
        ulc_pipeline_opts po = {.verify_each = 1, .pass_ctx = &pc};
        TRY(ulc_pipeline_run_range(pipe, 0, n_prep, m, &po, &ctx));
        if (n_prep) TRY(adapted_modules(m, &s, in, &r, &ctx));
    }

    /* before: the input model on every split (this also checks every label and token) */
    TRY(score_splits(ses, in, &f, &tr, s.test ? &te : NULL, &sp, &r.before, &ctx));
    ulc_session_free(ses);
    ses = NULL;

    /* unlearning: the method against the teacher, then the adapters (if any) merged back */
    {
        ulc_pipeline_opts po = {.verify_each = 1, .pass_ctx = &pc};
        void (*prev_int)(int) = signal(SIGINT, on_stop);
        void (*prev_term)(int) = signal(SIGTERM, on_stop);
        st = ulc_pipeline_run_range(pipe, n_prep, ulc_pipeline_length(pipe) - n_prep, m, &po, &ctx);
        signal(SIGINT, prev_int);
        signal(SIGTERM, prev_term);
        r.st = env.stats; /* the report takes the statistics over */
        memset(&env.stats, 0, sizeof env.stats);
        r.teacher_cache = env.teacher_cache;
        if (st == ULC_OK && (g_stop || r.st.interrupted))
            st = ulc_fail(&ctx, ULC_ERR_INTERRUPTED, "forget: interrupted");
        if (st != ULC_OK) goto done;
    }
    TRY(ulc_graph_verify(m->graph, &ctx));
    TRY(same_interface(teacher, m, &ctx));

    /* after: the merged model, in memory */
    {
        ulc_session_opts so = ulc_session_defaults();
        so.threads = threads;
        TRY(ulc_session_create(m, &so, &ses, &ctx));
        TRY(score_splits(ses, out, &f, &tr, s.test ? &te : NULL, &sp, &r.after, &ctx));
        ulc_session_free(ses);
        ses = NULL;
    }

    if (r.has_mia) {
        TRY(mia_run(&tr, &te, &sp, &r.before, 0, &r.mia_before, &ctx));
        TRY(mia_run(&tr, &te, &sp, &r.after, 0, &r.mia_after, &ctx));
        TRY(mia_run(&tr, &te, &sp, &r.before, 1, &r.svm_before, &ctx));
        TRY(mia_run(&tr, &te, &sp, &r.after, 1, &r.svm_after, &ctx));
    }
    TRY(extra_metrics(&s, &f, &tr, &sp, teacher, m, ref, &r, &ctx));

    /* the output, then the hashes, the gates and the reports (written whatever the gates say:
     * the verdict is about them) */
    TRY(ulc_io_save_model(m, out, ofmt, NULL, &ctx));
    if (!(r.in_file = ulc_io_model_main_file(in, ifmt)) || !(r.out_file = ulc_io_model_main_file(out, ofmt)))
        TRY(ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory"));
    TRY(ulc_sha256_file(r.out_file, r.out_sha, &ctx));
    if (ofmt == ULC_IO_ONNX && teacher->had_external_data) {
        size_t n = strlen(out) + 6;
        if ((r.ext_file = malloc(n))) snprintf(r.ext_file, n, "%s.data", out);
        if (r.ext_file && ulc_path_exists(r.ext_file))
            TRY(ulc_sha256_file(r.ext_file, r.ext_sha, &ctx));
        else {
            free(r.ext_file);
            r.ext_file = NULL;
        }
    }
    TRY(ulc_sha256_file(r.in_file, r.in_sha, &ctx));
    TRY(ulc_sha256_file(spec_path, r.spec_sha, &ctx));
    if (s.reference) {
        if (!(r.ref_file = ulc_io_model_main_file(s.reference, ulc_io_input_format(s.reference))))
            TRY(ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory"));
        TRY(ulc_sha256_file(r.ref_file, r.ref_sha, &ctx));
    }
    TRY(ulc_sha256_file(tr.path, tr.sha, &ctx));
    if (s.test) TRY(ulc_sha256_file(te.path, te.sha, &ctx));
    if (s.indices_file) TRY(ulc_sha256_file(s.indices_file, r.idx_sha, &ctx));
    r.wall = now_s() - t0;
    if (!(report_obj = report_json(&s, &tr, s.test ? &te : NULL, &sp, &f, &r)))
        TRY(ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory (report)"));
    TRY(ulc_report_gates(report_obj, &s.gates, &gates_failed, &gate_msgs, &ctx));
    for (int q = 0; q < n_reports; q++) {
        free(report_text_s);
        if (!(report_text_s = ulc_report_render(report_obj, ulc_report_format_of(reports[q]))))
            TRY(ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory (report %s)", reports[q]));
        TRY(ulc_outfile_write(rep[q], report_text_s, strlen(report_text_s), &ctx));
        ulc_outfile *c = rep[q];
        rep[q] = NULL;
        TRY(ulc_outfile_commit(c, &ctx));
    }
    print_table(stdout, &s, &tr, &sp, &f, &r);
    for (const cJSON *g = cJSON_GetObjectItemCaseSensitive(report_obj, "gates")->child; g;
         g = g->next)
        printf("gate %s: %s (%.4g <= %g)\n", cJSON_GetObjectItemCaseSensitive(g, "name")->valuestring,
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "passed")) ? "passed" : "FAILED",
               cJSON_GetObjectItemCaseSensitive(g, "value")->valuedouble,
               cJSON_GetObjectItemCaseSensitive(g, "threshold")->valuedouble);
    for (int q = 0; q < n_reports; q++) printf("report: %s\n", reports[q]);
    fflush(stdout);
    /* one line per failed gate, after everything is written */
    for (char *line = gate_msgs; line && *line;) {
        char *nl = strchr(line, '\n');
        fprintf(stderr, "ulc: error: %.*s\n", (int)(nl ? nl - line : (ptrdiff_t)strlen(line)),
                line);
        line = nl ? nl + 1 : NULL;
    }
#undef TRY
#undef USAGE
done:
    for (int q = 0; q < MAX_REPORTS; q++) ulc_outfile_abort(rep[q]);
    free(report_text_s);
    cJSON_Delete(report_obj);
    scores_clear(&r.before);
    scores_clear(&r.after);
    ulc_session_free(ses);
    ulc_train_stats_clear(&r.st);
    for (int k = 0; k < r.n_modules; k++) free(r.modules[k]);
    free(r.modules);
    free(r.in_file);
    free(r.out_file);
    free(r.ext_file);
    free(r.ref_file);
    cJSON_Delete(r.extra);
    splits_clear(&sp);
    ulc_data_clear(&tr);
    ulc_data_clear(&te);
    ulc_model_free(teacher);
    ulc_model_free(ref);
    ulc_model_free(m);
    ulc_method_env_clear(&env);
    ulc_pipeline_free(pipe);
    spec_clear(&s);
    if (st != ULC_OK) {
        free(gate_msgs);
        return ulc_cli_report(&ctx);
    }
    free(gate_msgs);
    return gates_failed ? ULC_EXIT_GATE : ULC_EXIT_OK;
}
