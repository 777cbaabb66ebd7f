/* run.c — `ulc run`: a model on the runtime, inputs and outputs in safetensors (jobs/run.h). */
#include "jobs/run.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/fileset.h"
#include "export/safetensors_export.h"
#include "import/safetensors_import.h"
#include "io/model.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Every tensor of in feeds a graph input of m; every fed input must be there. */
static ulc_status bind_inputs(const ulc_run_job *j, const ulc_model *m, const ulc_model *in,
                              ulc_session *s, ulc_ctx *ctx) {
    const ulc_graph *g = m->graph;
    for (size_t i = 0; i < in->graph->inits.len; i++) {
        ulc_value *tv = in->graph->inits.items[i];
        ulc_value *gv = ulc_graph_get_value(g, tv->name);
        if (!gv || !(gv->flags & ULC_VALUE_INPUT)) {
            ulc_fail(ctx, ULC_ERR_INVALID, "%s: tensor '%s' is not an input of %s (its inputs: ",
                     j->input, tv->name, j->model);
            size_t o = strlen(ctx->msg);
            for (size_t k = 0; k < g->inputs.len && o < sizeof ctx->msg; k++)
                o += (size_t)snprintf(ctx->msg + o, sizeof ctx->msg - o, "%s'%s'", k ? ", " : "",
                                      ((ulc_value *)g->inputs.items[k])->name);
            if (o < sizeof ctx->msg) snprintf(ctx->msg + o, sizeof ctx->msg - o, ")");
            return ctx->status;
        }
        ulc_rt_tensor rt;
        ULC_TRY(ulc_rt_tensor_view(tv->init, j->input, &rt, ctx));
        if (ulc_session_set_input(s, tv->name, &rt, ctx) != ULC_OK)
            return ulc_fail(ctx, ctx->status, "%s", j->input);
    }
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (!(v->flags & ULC_VALUE_INITIALIZER) && !ulc_graph_get_value(in->graph, v->name))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: no tensor for the model's input '%s'",
                            j->input, v->name);
    }
    return ULC_OK;
}

/* The runs; with more than one, the first (it plans) and the median of the others logged. */
static ulc_status run_timed(const ulc_run_job *j, ulc_session *s, ulc_ctx *ctx) {
    double *times = calloc((size_t)j->repeat, sizeof *times);
    if (!times) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int r = 0; r < j->repeat; r++) {
        double t0 = now_ms();
        if (ulc_session_run(s, ctx) != ULC_OK) {
            free(times);
            return ctx->status;
        }
        times[r] = now_ms() - t0;
    }
    if (j->repeat > 1 && j->log) {
        double first = times[0];
        qsort(times + 1, (size_t)j->repeat - 1, sizeof *times, cmp_double);
        size_t planned, unshared;
        ulc_session_memory(s, &planned, &unshared);
        fprintf(j->log, "ulc run: first run (with planning) %.3f ms; median of %d more %.3f ms, "
                        "min %.3f ms; activations %.1f MiB (%.1f MiB unshared)\n",
                first, j->repeat - 1, times[1 + (j->repeat - 1) / 2], times[1],
                planned / 1048576.0, unshared / 1048576.0);
    }
    free(times);
    return ULC_OK;
}

/* The graph outputs, copied into a weights-only model and written atomically. */
static ulc_status write_outputs(const ulc_run_job *j, const ulc_graph *g, ulc_session *s,
                                ulc_ctx *ctx) {
    ulc_model *out = ulc_model_create();
    if (!out) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    out->source_format = ULC_FORMAT_SAFETENSORS;
    ulc_status st = ULC_OK;
    for (size_t i = 0; st == ULC_OK && i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (ulc_graph_get_value(out->graph, v->name)) continue; /* listed twice */
        const ulc_rt_tensor *t = ulc_session_output(s, v->name);
        ulc_tensor *ot = ulc_tensor_new(out->graph, v->name, t->dtype, t->rank, t->dims, ctx);
        if (!ot) {
            st = ctx->status;
            break;
        }
        void *copy = malloc(t->nbytes ? t->nbytes : 1);
        if (!copy) {
            st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (output '%s')", v->name);
            break;
        }
        if (t->nbytes) memcpy(copy, t->data, t->nbytes);
        ulc_value *ov = ulc_graph_add_value(out->graph, v->name, ctx);
        if (!ov || ulc_tensor_set_owned(out->graph, ot, copy, t->nbytes, ctx) != ULC_OK ||
            ulc_value_set_init(out->graph, ov, ot, ctx) != ULC_OK)
            st = ctx->status;
    }
    if (st == ULC_OK) st = ulc_safetensors_export(out, j->output, NULL, ctx);
    ulc_model_free(out);
    return st;
}

ulc_status ulc_run_files(const ulc_run_job *j, ulc_ctx *ctx) {
    ulc_model *m = NULL, *in = NULL;
    ulc_session *s = NULL;
    ulc_fileset fs;
    ulc_fileset_begin(&fs, 0, ctx);
    ulc_fileset_tag(&fs, "model", 1);
    ulc_status st = ulc_io_load_model(j->model, NULL, &m, ctx);
    ulc_fileset_tag(&fs, "input (--input)", 0);
    if (st == ULC_OK) st = ulc_safetensors_import(j->input, &in, ctx);
    if (st == ULC_OK) st = ulc_fileset_check_output(&fs, "output", j->output, ctx);
    if (st == ULC_OK) st = ulc_session_create(m, &j->so, &s, ctx);
    if (st == ULC_OK) st = bind_inputs(j, m, in, s, ctx);
    if (st == ULC_OK) st = run_timed(j, s, ctx);
    if (st == ULC_OK && j->so.profile && j->log) ulc_session_profile(s, j->log);
    if (st == ULC_OK) st = write_outputs(j, m->graph, s, ctx);
    ulc_session_free(s);
    ulc_model_free(in);
    ulc_model_free(m);
    return ulc_fileset_end(&fs, st, ctx);
}
