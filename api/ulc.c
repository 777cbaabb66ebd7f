/*
 * ulc.c — the public C API (include/ulc.h) on the library's own calls.
 *
 * The opaque handles are the library's structs: ulc_ctx (common/status.h), ulc_model (ir/graph.h),
 * ulc_request (jobs/request.h); only ulc_result is this file's. Every fallible entry point starts
 * by clearing the caller's context (its message is the last call's) and accepts a NULL context
 * (the message is then lost). ulc_status_str, ulc_ctx_message and ulc_ctx_clear live in
 * common/status.c and ulc_model_free in ir/graph.c: their declarations in include/ulc.h give them
 * the default visibility that exports them from libulc.so.
 *
 * Nothing here exits, aborts, prints or installs signal handlers: passes run quiet, the main job
 * (jobs/forget.h) runs with no table and no stop flag.
 */
#include "include/ulc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/file.h"
#include "common/fileset.h"
#include "common/status.h"
#include "io/model.h"
#include "ir/clone.h"
#include "ir/graph.h"
#include "jobs/forget.h"
#include "jobs/history.h"
#include "jobs/merge.h"
#include "jobs/request.h"
#include "methods/method.h"
#include "passes/pass.h"

#ifndef ULC_VERSION
#error "ULC_VERSION is defined by CMakeLists.txt (the project's version)"
#endif

/* What ulc_forget returns: the report (as JSON and as text) and the failed gates. */
struct ulc_result {
    cJSON *report;    /* owned: the report document */
    char *text;       /* owned: cJSON_PrintUnformatted(report) */
    int gates_failed; /* how many of the request's gates failed */
};

/* A request and the name messages give it: ulc_request.path borrows its text, so the API keeps
 * a copy behind the struct (one allocation; freeing the request frees both). */
typedef struct api_request {
    ulc_request rq; /* first: a ulc_request* is the block's address */
    char path[];    /* the spec path, or "request" */
} api_request;

/* The caller's context, cleared, or a local one when the caller gave none. */
#define API_CTX(ctx, local)                                                                        \
    ulc_ctx local;                                                                                 \
    if (!(ctx)) (ctx) = &(local);                                                                  \
    api_ctx_reset(ctx, (ctx) == &(local))

/* A context for one call: no failure, no job state (the files a job reads, its notes), and the
 * caller's setting kept (ulc_ctx_set_allow_external_outside); fresh: a local one, all defaults. */
static void api_ctx_reset(ulc_ctx *ctx, int fresh) {
    int allow = fresh ? 0 : ctx->allow_external_outside;
    ulc_ctx_init(ctx);
    ctx->allow_external_outside = allow;
}

const char *ulc_version(void) { return ULC_VERSION; }

/* ---- contexts ----------------------------------------------------------------------------------- */

ulc_status ulc_ctx_create(ulc_ctx **out) {
    if (!out) return ULC_ERR_INVALID_ARG;
    if (!(*out = calloc(1, sizeof **out))) return ULC_ERR_NOMEM;
    ulc_ctx_init(*out);
    return ULC_OK;
}

void ulc_ctx_free(ulc_ctx *ctx) { free(ctx); }

void ulc_ctx_set_allow_external_outside(ulc_ctx *ctx, int allow) {
    if (ctx) ctx->allow_external_outside = allow != 0;
}

/* A model the API changed (passes, a request) is no longer its file's model: the main job then
 * names no input file, hashes none, and keys no teacher-logit cache by that file's bytes. */
static void forget_source(ulc_model *m) { m->source_path = NULL; }

/* ---- models ------------------------------------------------------------------------------------- */

ulc_status ulc_model_load(const char *path, ulc_model **out, ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!out) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_model_load: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_model_load: no path given");
    return ulc_io_load_model(path, NULL, out, ctx);
}

ulc_status ulc_model_save(ulc_model *m, const char *path, ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!m || !path || !path[0])
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_model_save: %s", m ? "no path given" : "m is NULL");
    ulc_io_format fmt;
    ULC_TRY(ulc_io_output_format(path, &fmt, ctx));
    /* the files this save reads are the model's: the shared output check, and the change
     * check at commit, over them */
    ulc_fileset fs;
    ulc_fileset_begin(&fs, 0, ctx);
    ulc_fileset_tag(&fs, "model", 0);
    ulc_status st = ULC_OK;
    if (m->source_path) st = ulc_fileset_add_path(&fs, NULL, m->source_path, ctx);
    for (size_t i = 0; st == ULC_OK && i < m->graph->maps.len; i++)
        st = ulc_fileset_add_mapping(&fs, NULL, m->graph->maps.items[i], ctx);
    if (st == ULC_OK) st = ulc_io_check_model_output(&fs, "output", path, fmt, ctx);
    if (st == ULC_OK) st = ulc_io_check_out_dir("output", path, fmt == ULC_IO_DIR, ctx);
    if (st == ULC_OK) st = ulc_io_save_model(m, path, fmt, NULL, ctx);
    return ulc_fileset_end(&fs, st, ctx);
}

ulc_status ulc_model_apply(ulc_model *m, const char *pipeline, ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!m || !pipeline)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_model_apply: %s is NULL", m ? "pipeline" : "m");
    ULC_TRY(ulc_methods_register(ctx)); /* so a method is named as one, not as an unknown pass */
    ulc_pipeline *p = NULL;
    ULC_TRY(ulc_pipeline_parse(pipeline, &p, ctx));
    for (int i = 0; i < ulc_pipeline_length(p); i++) {
        const char *name = ulc_pipeline_pass(p, i, NULL)->name;
        if (ulc_method_of_pass(name) >= 0) {
            ulc_pipeline_free(p);
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pipeline '%s': '%s' is an unlearning "
                            "method: it needs a teacher, training data and a forget set, so it "
                            "runs through ulc_forget (ulc_request_set_passes), not "
                            "ulc_model_apply", pipeline, name);
        }
    }
    ulc_pass_ctx pc = ulc_pass_ctx_defaults();
    pc.quiet = 1;
    ulc_pipeline_opts po = {.verify_each = 1, .pass_ctx = &pc};
    ulc_status st = ulc_pipeline_run(p, m, &po, ctx);
    ulc_pipeline_free(p);
    forget_source(m);
    return st;
}

const char *ulc_model_history(const ulc_model *m) {
    return m ? ulc_model_metadata(m, ULC_META_HISTORY) : NULL;
}

/* ---- requests ----------------------------------------------------------------------------------- */

static ulc_status request_new(const char *name, ulc_request **out, ulc_ctx *ctx) {
    size_t n = strlen(name) + 1;
    api_request *a = malloc(sizeof *a + n);
    if (!a) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (request)");
    memcpy(a->path, name, n);
    ulc_request_init(&a->rq, a->path);
    *out = &a->rq;
    return ULC_OK;
}

void ulc_request_free(ulc_request *rq) {
    if (!rq) return;
    ulc_request_clear(rq);
    free(rq); /* the api_request block */
}

/* The passes of a spec that names only the data, built now (ulc_request_set_passes replaces
 * them): the method's training settings resolved as the spec's parser does (an unset weight decay
 * or momentum is the optimizer's), then ulc_request_passes. */
static ulc_status default_passes(ulc_request *rq, ulc_ctx *ctx) {
    ULC_TRY(ulc_request_resolve_train(rq, &(ulc_method_train){0}, rq->path, ctx));
    return ulc_request_passes(rq, ctx);
}

ulc_status ulc_request_from_spec(const char *spec_path, ulc_request **out, ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!out) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_request_from_spec: out is NULL");
    *out = NULL;
    if (!spec_path || !spec_path[0])
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_request_from_spec: no spec path given");
    ulc_request *rq = NULL;
    ULC_TRY(request_new(spec_path, &rq, ctx));
    ulc_status st = ulc_spec_parse(((api_request *)rq)->path, rq, ctx);
    if (st != ULC_OK) {
        ulc_request_free(rq);
        return st;
    }
    *out = rq;
    return ULC_OK;
}

ulc_status ulc_request_create(const char *train_data, ulc_request **out, ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!out) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_request_create: out is NULL");
    *out = NULL;
    if (!train_data || !train_data[0])
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_request_create: no training data given");
    if (!ulc_path_exists(train_data))
        return ulc_fail(ctx, ULC_ERR_IO, "%s: training data: no such file", train_data);
    ulc_request *rq = NULL;
    ULC_TRY(request_new("request", &rq, ctx));
    ulc_status st = ulc_request_set_data(rq, train_data, NULL, ctx);
    if (st == ULC_OK) st = default_passes(rq, ctx);
    if (st != ULC_OK) {
        ulc_request_free(rq);
        return st;
    }
    *out = rq;
    return ULC_OK;
}

ulc_status ulc_request_forget_classes(ulc_request *rq, const int64_t *classes, int n,
                                      ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!rq || (!classes && n > 0))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_request_forget_classes: %s is NULL",
                        rq ? "classes" : "rq");
    return ulc_request_set_classes(rq, classes, n, "ulc_request_forget_classes", ctx);
}

ulc_status ulc_request_forget_rows(ulc_request *rq, const int64_t *rows, int64_t n,
                                   ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!rq || (!rows && n > 0))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_request_forget_rows: %s is NULL",
                        rq ? "rows" : "rq");
    return ulc_request_set_rows(rq, rows, n, "ulc_request_forget_rows", ctx);
}

ulc_status ulc_request_set_test_data(ulc_request *rq, const char *path, ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!rq || !path || !path[0])
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_request_set_test_data: %s",
                        rq ? "no path given" : "rq is NULL");
    if (!ulc_path_exists(path))
        return ulc_fail(ctx, ULC_ERR_IO, "%s: test data: no such file", path);
    return ulc_request_set_data(rq, rq->train, path, ctx);
}

/* ulc_request_set_passes is jobs/spec.c's (same name and signature): one definition. */

void ulc_request_set_seed(ulc_request *rq, uint64_t seed) {
    if (rq) rq->seed = seed;
}

void ulc_request_set_threads(ulc_request *rq, int threads) {
    if (rq) rq->threads = threads > 0 ? threads : 0;
}

/* ---- running a request -------------------------------------------------------------------------- */

/* A tensor with its own struct and the bytes of t: a mapped file's bytes are shared (the copy's
 * graph takes a reference on the mapping, which is read-only), bytes in memory are copied, a
 * LAZY tensor's are produced. */
static ulc_status copy_tensor(ulc_graph *g, const ulc_tensor *t, ulc_tensor **out, ulc_ctx *ctx) {
    *out = (ulc_tensor *)t;
    if (t->storage != ULC_STORAGE_BORROWED && t->storage != ULC_STORAGE_OWNED &&
        t->storage != ULC_STORAGE_LAZY)
        return ULC_OK; /* no bytes here (DEVICE, none): nothing a pass rewrites in place */
    ulc_tensor *c = ulc_tensor_new(g, t->name, t->dtype, t->rank, t->dims, ctx);
    if (!c) return ctx->status ? ctx->status : ULC_ERR_NOMEM;
    c->form = t->form;
    c->ext_location = t->ext_location;
    c->extra = t->extra;
    if (t->storage == ULC_STORAGE_BORROWED)
        ULC_TRY(ulc_tensor_set_borrowed(g, c, t->map, t->data, t->nbytes, ctx));
    else {
        void *d = malloc(t->nbytes ? t->nbytes : 1);
        if (!d) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (the teacher's '%s')",
                                t->name ? t->name : "tensor");
        ulc_status st = ULC_OK;
        if (t->storage == ULC_STORAGE_OWNED) memcpy(d, t->data, t->nbytes);
        else st = t->source->read(t->source->state, 0, t->nbytes, d, ctx);
        if (st != ULC_OK) {
            free(d);
            return st;
        }
        ULC_TRY(ulc_tensor_set_owned(g, c, d, t->nbytes, ctx));
    }
    *out = c;
    return ULC_OK;
}

/* The frozen teacher: m's structure (ulc_model_clone_shallow) with initializers of its own. A
 * shallow clone alone shares m's tensor structs, and lora-merge rewrites the merged weights' structs
 * in place (ulc_tensor_set_lazy on the base weight): the evaluation after unlearning would
 * compare the unlearned model with itself. The teacher must be freed before m (it shares m's
 * strings, attributes, format extras and metadata array: the run writes the request history and
 * LoRA records into m's metadata, which the teacher then sees too; no part of the run reads the
 * teacher's metadata). */
static ulc_status teacher_copy(ulc_model *m, ulc_model **out, ulc_ctx *ctx) {
    ulc_model *t = NULL;
    ULC_TRY(ulc_model_clone_shallow(m, &t, ctx));
    ulc_graph *g = t->graph;
    ulc_status st = ULC_OK;
    for (size_t i = 0; st == ULC_OK && i < g->inits.len; i++) {
        ulc_value *v = g->inits.items[i];
        if (v->init) st = copy_tensor(g, v->init, &v->init, ctx);
    }
    if (st != ULC_OK) {
        ulc_model_free(t);
        return st;
    }
    *out = t;
    return ULC_OK;
}

ulc_status ulc_forget(ulc_model *m, const ulc_request *rq, ulc_result **out, ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!out) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_forget: out is NULL");
    *out = NULL;
    if (!m || !rq) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_forget: %s is NULL", m ? "rq" : "m");
    if (!rq->forget_given)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: the request names no forget set (call "
                        "ulc_request_forget_classes or ulc_request_forget_rows first)", rq->path);
    if (!rq->train || !rq->passes)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: the request has no %s", rq->path,
                        rq->train ? "passes" : "training data");
    ulc_result *res = calloc(1, sizeof *res);
    if (!res) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (result)");
    ulc_model *teacher = NULL;
    ulc_status st = teacher_copy(m, &teacher, ctx);
    ulc_forget_outcome oc = {0};
    if (st == ULC_OK) {
        ulc_forget_opts o = {.in = m->source_path, .out = NULL, .threads = rq->threads,
                             .quiet = 1, .evaluate = 1};
        st = ulc_forget_model(m, teacher, rq, &o, &oc, ctx);
        forget_source(m);
    }
    ulc_model_free(teacher);
    if (st == ULC_OK) {
        res->report = oc.report;
        oc.report = NULL;
        res->gates_failed = oc.gates_failed;
        if (!(res->text = cJSON_PrintUnformatted(res->report)))
            st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (report)");
    }
    ulc_forget_outcome_clear(&oc);
    if (st != ULC_OK) {
        ulc_result_free(res);
        return st;
    }
    *out = res;
    return ULC_OK;
}

double ulc_result_accuracy(const ulc_result *res, const char *split, int after) {
    if (!res || !split) return NAN;
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(res->report, "accuracy");
    const cJSON *when = cJSON_GetObjectItemCaseSensitive(acc, after ? "after" : "before");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(when, split);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

const char *ulc_result_report(const ulc_result *res) { return res ? res->text : NULL; }

int ulc_result_gates_failed(const ulc_result *res) { return res ? res->gates_failed : 0; }

void ulc_result_free(ulc_result *res) {
    if (!res) return;
    cJSON_Delete(res->report);
    free(res->text);
    free(res);
}

/* ---- merging adapters --------------------------------------------------------------------------- */

ulc_status ulc_merge(const char *base, const char *const *adapters, const double *weights,
                     int n_adapters, const char *out, unsigned flags, int threads, ulc_ctx *ctx) {
    API_CTX(ctx, local);
    if (!base || !base[0] || !out || !out[0])
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_merge: no %s given",
                        base && base[0] ? "output" : "base");
    if (n_adapters < 1 || !adapters)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_merge: no adapter given");
    for (int i = 0; i < n_adapters; i++) {
        if (!adapters[i] || !adapters[i][0])
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_merge: adapter %d has no path", i);
        if (weights && !isfinite(weights[i]))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_merge: adapter %d (%s): weight %g",
                            i, adapters[i], weights[i]);
    }
    if (flags & ~(ULC_MERGE_UNMERGE | ULC_MERGE_UNTIE | ULC_MERGE_IN_PLACE))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "ulc_merge: unknown flags 0x%x", flags);
    double *ones = NULL;
    if (!weights) {
        if (!(ones = malloc((size_t)n_adapters * sizeof *ones)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (weights)");
        for (int i = 0; i < n_adapters; i++) ones[i] = 1.0;
    }
    ulc_merge_job j = {.base = base, .out = out, .adapters = adapters,
                       .weights = weights ? weights : ones, .n_adapters = n_adapters,
                       .unmerge = (flags & ULC_MERGE_UNMERGE) != 0,
                       .untie = (flags & ULC_MERGE_UNTIE) != 0,
                       .in_place = (flags & ULC_MERGE_IN_PLACE) != 0,
                       .threads = threads > 0 ? threads : 0, .report = NULL};
    ulc_status st = ulc_merge_files(&j, ctx);
    free(ones);
    return st;
}
