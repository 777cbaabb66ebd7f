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
#include <stdarg.h>
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
#include "eval/forget_report.h"
#include "eval/report.h"
#include "eval/score.h"

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

/* OUT must keep IN's interface. A difference is a ulc bug: nothing is written. */
static ulc_status same_interface(const ulc_model *a, const ulc_model *b, ulc_ctx *ctx) {
    const char *which;
    if (!ulc_io_same_interface(a, b, &which))
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "forget: the unlearned model's %s differ from "
                        "the input model's", which);
    return ULC_OK;
}

/* ---- the report ------------------------------------------------------------------------------ */

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

/* The report's "hyperparameters" (without "eval", which the report adds): LoRA (RFA, or a method
 * training adapters), training, the method's own options, RFA's. */
static cJSON *hyperparameters(const spec *s, const ulc_iface *f, char **modules, int n_modules) {
    cJSON *hp = cJSON_CreateObject();
    if (!hp) return NULL;
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
    for (int k = 0; k < n_modules; k++)
        cJSON_AddItemToArray(mods, cJSON_CreateString(modules[k]));
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
    return hp;
}

/* The command line. */
typedef struct forget_args {
    const char *in, *out, *spec_path;
    const char *reports[MAX_REPORTS]; /* --report PATH ..., else the spec's one */
    int n_reports, threads, quiet, profile;
} forget_args;

/* One run: the facts the report reads (eval/forget_report.h) and the adapted modules. */
typedef struct run_facts {
    ulc_forget_facts fx;
    char **modules; /* adapted module names */
    int n_modules;
} run_facts;

/* ---- the method, as passes ------------------------------------------------------------------- */

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

/* The method's passes against the teacher (m is changed in place; Ctrl-C stops training after
 * a step); the statistics go to the report. */
static ulc_status unlearn(const ulc_pipeline *pipe, int n_prep, ulc_pass_ctx *pc, ulc_model *m,
                          run_facts *r, ulc_ctx *ctx) {
    ulc_method_env *env = pc->env;
    ulc_pipeline_opts po = {.verify_each = 1, .pass_ctx = pc};
    g_stop = 0;
    void (*prev_int)(int) = signal(SIGINT, on_stop);
    void (*prev_term)(int) = signal(SIGTERM, on_stop);
    ulc_status st = ulc_pipeline_run_range(pipe, n_prep, ulc_pipeline_length(pipe) - n_prep, m,
                                           &po, ctx);
    signal(SIGINT, prev_int);
    signal(SIGTERM, prev_term);
    r->fx.st = env->stats; /* the report takes the statistics over */
    memset(&env->stats, 0, sizeof env->stats);
    r->fx.teacher_cache = env->teacher_cache;
    if (st == ULC_OK && (g_stop || r->fx.st.interrupted))
        st = ulc_fail(ctx, ULC_ERR_INTERRUPTED, "forget: interrupted");
    return st;
}

/* The extra metrics (the spec's "eval"; eval/forget_eval.h), for models with one fed input. */
static ulc_status extra_metrics(const spec *s, const ulc_iface *f, const ulc_data *tr,
                                const ulc_splits *sp, const ulc_model *m, const ulc_model *teacher,
                                const ulc_model *ref, ulc_forget_facts *r, ulc_ctx *ctx) {
    r->eval = (ulc_fe_opts){.features = s->eval_features, .relearn_steps = s->relearn_steps,
                            .relearn_lr = s->relearn_lr, .seed = s->seed,
                            .so = ulc_session_defaults()};
    r->eval.so.threads = r->threads;
    if (!(r->extra = cJSON_CreateObject())) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (f->n_fed != 1) return ULC_OK;
    ulc_fe_models ms = {.model = m, .orig = teacher, .ref = ref, .model_path = r->out,
                        .orig_path = r->in, .ref_path = s->reference};
    ulc_fe_rows rows = {.path = tr->path, .x = tr->cols[0], .y = tr->label, .forget = sp->forget,
                        .rows = tr->rows};
    return ulc_fe_extra(&ms, &r->eval, f->fed[0]->name, f->out->name, f->next_token, &rows,
                        r->extra, ctx);
}

/* The sha256 of every file the report names. */
static ulc_status hash_files(const spec *s, const char *in, ulc_io_format ifmt, const char *out,
                             ulc_io_format ofmt, const ulc_model *teacher, ulc_data *tr,
                             ulc_data *te, ulc_forget_facts *r, ulc_ctx *ctx) {
    if (!(r->in_file = ulc_io_model_main_file(in, ifmt)) || !(r->out_file = ulc_io_model_main_file(out, ofmt)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ULC_TRY(ulc_sha256_file(r->out_file, r->out_sha, ctx));
    if (ofmt == ULC_IO_ONNX && teacher->had_external_data) {
        size_t n = strlen(out) + 6;
        if ((r->ext_file = malloc(n))) snprintf(r->ext_file, n, "%s.data", out);
        if (r->ext_file && ulc_path_exists(r->ext_file))
            ULC_TRY(ulc_sha256_file(r->ext_file, r->ext_sha, ctx));
        else {
            free(r->ext_file);
            r->ext_file = NULL;
        }
    }
    ULC_TRY(ulc_sha256_file(r->in_file, r->in_sha, ctx));
    ULC_TRY(ulc_sha256_file(s->path, r->spec_sha, ctx));
    if (s->reference) {
        if (!(r->ref_file = ulc_io_model_main_file(s->reference, ulc_io_input_format(s->reference))))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        ULC_TRY(ulc_sha256_file(r->ref_file, r->ref_sha, ctx));
    }
    ULC_TRY(ulc_sha256_file(tr->path, tr->sha, ctx));
    if (te) ULC_TRY(ulc_sha256_file(te->path, te->sha, ctx));
    if (s->indices_file) ULC_TRY(ulc_sha256_file(s->indices_file, r->idx_sha, ctx));
    return ULC_OK;
}

/* A usage error (exit 1) after the spec is read. */
__attribute__((format(printf, 2, 3)))
static ulc_status usage(ulc_ctx *ctx, const char *fmt, ...) {
    char msg[ULC_CTX_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s", msg);
}

/* The outputs: IN's format, never IN itself nor any file read, reports in directories that
 * exist, each once (the spec's report when no --report is given). */
static ulc_status check_outputs(const spec *s, forget_args *a, ulc_io_format *ifmt,
                                ulc_io_format *ofmt, ulc_ctx *ctx) {
    const char *in = a->in, *out = a->out, *spec_path = a->spec_path;
    if (!ulc_path_exists(in))
        return (ulc_fail(ctx, ULC_ERR_IO, "%s: no such file or directory", in));
    *ifmt = ulc_io_input_format(in);
    if (ulc_io_output_format(out, ofmt, NULL) != ULC_OK || *ofmt != *ifmt)
        return usage(ctx, "forget: the output '%s' must be %s, like the input '%s'", out, ulc_io_format_describe(*ifmt), in);
    if (ulc_path_same_file(out, in)) return usage(ctx, "forget: the output '%s' is the input model", out);
    if (!a->n_reports && s->report) a->reports[a->n_reports++] = s->report;
    {
        /* neither output may be one of the inputs, nor a report the model or another report */
        const char *read[] = {in, spec_path, s->train, s->test, s->indices_file, s->reference, out};
        for (size_t k = 0; k + 1 < sizeof read / sizeof *read; k++)
            if (read[k] && ulc_path_same_file(out, read[k]))
                return usage(ctx, "forget: the output '%s' would overwrite '%s'", out, read[k]);
        for (int q = 0; q < a->n_reports; q++) {
            const char *report = a->reports[q];
            for (size_t k = 0; k < sizeof read / sizeof *read; k++)
                if (read[k] &&
                    (strcmp(report, read[k]) == 0 || ulc_path_same_file(report, read[k])))
                    return usage(ctx, "forget: the report '%s' would overwrite '%s'", report, read[k]);
            for (int p = 0; p < q; p++)
                if (strcmp(report, a->reports[p]) == 0 || ulc_path_same_file(report, a->reports[p]))
                    return usage(ctx, "forget: the report '%s' is given twice", report);
            if (ulc_path_is_dir(report)) return usage(ctx, "forget: the report '%s' is a directory", report);
            ULC_TRY(ulc_io_check_out_dir("report", report, 0, ctx));
        }
    }
    ULC_TRY(ulc_io_check_out_dir("output", out, *ofmt == ULC_IO_DIR, ctx));
    return ULC_OK;
}

/* The gates, then the reports (written whatever the gates say: the verdict is about them) and
 * the table. rep[q] is committed (and set to NULL) once written. */
static ulc_status write_reports(cJSON *report_obj, const spec *s, const forget_args *a,
                                ulc_outfile **rep, const ulc_forget_facts *r, int *gates_failed,
                                char **gate_msgs, ulc_ctx *ctx) {
    ULC_TRY(ulc_report_gates(report_obj, &s->gates, gates_failed, gate_msgs, ctx));
    for (int q = 0; q < a->n_reports; q++) {
        char *text = ulc_report_render(report_obj, ulc_report_format_of(a->reports[q]));
        if (!text) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (report %s)", a->reports[q]);
        ulc_status st = ulc_outfile_write(rep[q], text, strlen(text), ctx);
        free(text);
        ULC_TRY(st);
        ulc_outfile *c = rep[q];
        rep[q] = NULL;
        ULC_TRY(ulc_outfile_commit(c, ctx));
    }
    ulc_forget_print_table(stdout, r);
    for (const cJSON *g = cJSON_GetObjectItemCaseSensitive(report_obj, "gates")->child; g;
         g = g->next)
        printf("gate %s: %s (%.4g <= %g)\n", cJSON_GetObjectItemCaseSensitive(g, "name")->valuestring,
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "passed")) ? "passed" : "FAILED",
               cJSON_GetObjectItemCaseSensitive(g, "value")->valuedouble,
               cJSON_GetObjectItemCaseSensitive(g, "threshold")->valuedouble);
    return ULC_OK;
}

/* ---- the command ----------------------------------------------------------------------------- */

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

/* The command line (usage errors exit 1): the model, the spec, the output, reports, threads. */
static int parse_args(int argc, char **argv, forget_args *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--forget") || !strcmp(a, "-o") || !strcmp(a, "--report") ||
            !strcmp(a, "--threads")) {
            if (!val) return ulc_cli_usage_error("forget: %s needs a value", a);
            i++;
            if (!strcmp(a, "--forget")) o->spec_path = val;
            else if (!strcmp(a, "-o")) o->out = val;
            else if (!strcmp(a, "--report")) {
                if (o->n_reports == MAX_REPORTS)
                    return ulc_cli_usage_error("forget: --report given more than %d times",
                                               MAX_REPORTS);
                o->reports[o->n_reports++] = val;
            }
            else {
                char *end;
                long v = strtol(val, &end, 10);
                if (!*val || *end || v < 0 || v > 4096)
                    return ulc_cli_usage_error("forget: --threads needs a count (0 = every core)");
                o->threads = (int)v;
            }
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = 1;
        } else if (!strcmp(a, "--profile")) {
            o->profile = 1;
        } else if (a[0] == '-' && a[1]) {
            return ulc_cli_usage_error("forget: unknown option '%s'", a);
        } else if (o->in) {
            return ulc_cli_usage_error("forget: more than one model given ('%s' and '%s')", o->in, a);
        } else {
            o->in = a;
        }
    }
    if (!o->in) return ulc_cli_usage_error("forget: no input model given");
    if (!o->spec_path) return ulc_cli_usage_error("forget: no spec given (--forget SPEC.json)");
    if (!o->out) return ulc_cli_usage_error("forget: no output given (-o OUT)");
    return -1;
}

int ulc_cli_forget(int argc, char **argv) {
    forget_args args;
    int prc = parse_args(argc, argv, &args);
    if (prc >= 0) return prc;
    const char *in = args.in, *out = args.out, *spec_path = args.spec_path;
    const char **reports = args.reports;
    int n_reports = args.n_reports, threads = args.threads, quiet = args.quiet;
    double t0 = now_s();
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    spec s;
    ulc_data tr = {0}, te = {0};
    ulc_iface f;
    ulc_splits sp = {0};
    ulc_forget_set fs;
    run_facts r = {.fx = {.in = in, .out = out, .spec = spec_path, .threads = threads}};
    ulc_model *m = NULL, *teacher = NULL, *ref = NULL;
    ulc_session *ses = NULL;
    ulc_outfile *rep[MAX_REPORTS] = {0};
    cJSON *report_obj = NULL;
    char *gate_msgs = NULL;
    int gates_failed = 0, n_prep = 0;
    ulc_io_format ifmt = ULC_IO_ONNX, ofmt = ULC_IO_ONNX;
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
    TRY(check_outputs(&s, &args, &ifmt, &ofmt, &ctx));
    reports = args.reports;
    n_reports = args.n_reports;
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
    TRY(ulc_eval_probe(ses, in, &f, &tr, &ctx));
    fs = spec_forget_set(&s);
    TRY(ulc_splits_make(&fs, &f, &tr, s.test ? &te : NULL, &sp, &ctx));
    if (s.gates.set[ULC_GATE_MIA] && f.next_token)
        TRY(ulc_fail(&ctx, ULC_ERR_UNSUPPORTED, "%s: key 'gates.mia_max': the membership attack "
                     "scores classifiers; %s is scored on next-token predictions", s.path, in));
    r.fx.has_mia = s.test && !f.next_token;
    for (int q = 0; q < n_reports; q++) /* written last, but writable now */
        TRY(ulc_outfile_open(reports[q], &rep[q], &ctx));
#ifdef _OPENMP
    if (!r.fx.threads) r.fx.threads = omp_get_max_threads();
#endif

    /* the spec as passes; the ones before the method (lora-inject) run now: a placement that
     * adapts nothing is refused before any work */
    TRY(ulc_methods_register(&ctx));
    TRY(spec_pipeline(&s, &pipe, &n_prep, &ctx));
    pc = (ulc_pass_ctx){.quiet = quiet, .threads = threads, .profile = args.profile, .seed = s.seed,
                        .progress = stderr, .stop = &g_stop, .env = &env};
    env = (ulc_method_env){.teacher = teacher, .data = &tr.d, .forget = sp.forget,
                           .input = f.fed[0]->name, .output = f.out->name,
                           .next_token = f.next_token};
    if (s.kind == FORGET_CLASSES) {
        env.forget_classes = s.classes;
        env.n_forget_classes = s.n_classes;
    }
    if (s.method == ULC_METHOD_DELETE && !getenv("ULC_NO_CACHE")) {
        TRY(teacher_cache_key(in, ifmt, &s, &tr, sp.forget, &f, cache_key, sizeof cache_key, &ctx));
        env.teacher_cache_key = cache_key;
    }
    TRY(ulc_pipeline_run_range(pipe, 0, n_prep, m,
                               &(ulc_pipeline_opts){.verify_each = 1, .pass_ctx = &pc}, &ctx));
    if (n_prep) TRY(adapted_modules(m, &s, in, &r, &ctx));

    /* before: the input model on every split (this also checks every label and token) */
    TRY(ulc_eval_score_splits(ses, in, &f, &tr, s.test ? &te : NULL, &sp, &r.fx.before, &ctx));
    ulc_session_free(ses);
    ses = NULL;

    /* unlearning: the method against the teacher, then the adapters (if any) merged back */
    TRY(unlearn(pipe, n_prep, &pc, m, &r, &ctx));
    TRY(ulc_graph_verify(m->graph, &ctx));
    TRY(same_interface(teacher, m, &ctx));

    /* after: the merged model, in memory */
    {
        ulc_session_opts so = ulc_session_defaults();
        so.threads = threads;
        TRY(ulc_session_create(m, &so, &ses, &ctx));
        TRY(ulc_eval_score_splits(ses, out, &f, &tr, s.test ? &te : NULL, &sp, &r.fx.after, &ctx));
        ulc_session_free(ses);
        ses = NULL;
    }

    r.fx.tr = &tr;
    r.fx.te = s.test ? &te : NULL;
    r.fx.sp = &sp;
    r.fx.f = &f;
    r.fx.fs = &fs;
    if (r.fx.has_mia) TRY(ulc_forget_mia(&r.fx, &ctx));
    TRY(extra_metrics(&s, &f, &tr, &sp, m, teacher, ref, &r.fx, &ctx));

    /* the output, then the hashes, the gates and the reports (written whatever the gates say:
     * the verdict is about them) */
    TRY(ulc_io_save_model(m, out, ofmt, NULL, &ctx));
    TRY(hash_files(&s, in, ifmt, out, ofmt, teacher, &tr, s.test ? &te : NULL, &r.fx, &ctx));
    r.fx.wall = now_s() - t0;
    r.fx.method = s.method_name;
    r.fx.reference = s.reference;
    r.fx.seed = s.seed;
    if (!(r.fx.hyper = hyperparameters(&s, &f, r.modules, r.n_modules)) ||
        !(report_obj = ulc_forget_report_json(&r.fx)))
        TRY(ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory (report)"));
    TRY(write_reports(report_obj, &s, &args, rep, &r.fx, &gates_failed, &gate_msgs, &ctx));
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
    cJSON_Delete(report_obj);
    ulc_session_free(ses);
    ulc_forget_facts_clear(&r.fx);
    for (int k = 0; k < r.n_modules; k++) free(r.modules[k]);
    free(r.modules);
    ulc_splits_clear(&sp);
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
