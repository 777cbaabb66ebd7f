/*
 * train.c — `ulc train`: fine-tune a model on a safetensors dataset with ulc's own autodiff
 * and trainer; optionally through LoRA (a pipeline before and after training).
 *
 *   ulc train MODEL --data TRAIN.safetensors -o OUT [--loss ce|mse|next-token|distill]
 *             [--teacher MODEL]
 *             [--before PIPELINE] [--after PIPELINE] [--params GLOB|GLOB]
 *             [--epochs N] [--max-steps N] [--batch-size N] [--lr X] [--optimizer adamw|sgd]
 *             [--momentum X] [--nesterov] [--weight-decay X] [--schedule constant|linear|step]
 *             [--warmup N] [--step-size N] [--gamma X] [--seed N] [--no-shuffle] [--drop-last]
 *             [--threads N] [--input NAME] [--output NAME] [-q] [--losses FILE.json] [--profile]
 *             [--emit-adapter DIR]
 *
 * Nothing is written unless training finishes: Ctrl-C stops after the current step and exits
 * 130, a failing step exits with its error; OUT is written atomically either way only on success.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/hf_export.h"
#include "export/onnx_export.h"
#include "export/peft_export.h"
#include "export/safetensors_export.h"
#include "import/safetensors_import.h"
#include "passes/pass.h"
#include "train/train.h"
#include "train/train_graph.h"
#include "runtime/runtime.h"
#include "io/data.h"
#include "io/model.h"
#include "tools/cli.h"

static volatile sig_atomic_t g_stop;
static void on_stop(int sig) {
    (void)sig;
    g_stop = 1;
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) {
        ulc_cli_usage_error("train: %s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

/* --loss distill: the frozen teacher's softmax is the target of a KL loss (self-distillation
 * when the teacher is the input model itself, as when training LoRA adapters). */
typedef struct teacher {
    ulc_session *s;
    const ulc_model *m;
    const ulc_train_graph *tg;
    const char *output;
    float *probs;
    size_t cap;
} teacher;

static ulc_status teacher_step(void *arg, ulc_session *student, const ulc_rt_tensor *const *batch,
                               int n, ulc_ctx *ctx) {
    teacher *t = arg;
    const ulc_graph *g = t->m->graph;
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        int k = 0;
        while (k < n && strcmp(t->tg->data_inputs[k], v->name) != 0) k++;
        if (k == n)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "teacher input '%s' is not in the data", v->name);
        ULC_TRY(ulc_session_set_input(t->s, v->name, batch[k], ctx));
    }
    ULC_TRY(ulc_session_run(t->s, ctx));
    const ulc_rt_tensor *z = ulc_session_output(t->s, t->output);
    if (!z || z->dtype != ULC_DT_F32 || z->rank < 1)
        return ulc_fail(ctx, ULC_ERR_INVALID, "teacher output '%s' is not float32", t->output);
    size_t numel = ulc_rt_numel(z), c = (size_t)z->dims[z->rank - 1];
    if (numel > t->cap) {
        free(t->probs);
        if (!(t->probs = malloc(numel * sizeof *t->probs)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (teacher targets)");
        t->cap = numel;
    }
    const float *x = z->data;
    for (size_t r = 0; c && r < numel / c; r++) { /* softmax over the last axis */
        const float *xr = x + r * c;
        float *p = t->probs + r * c, mx = xr[0];
        for (size_t j = 1; j < c; j++) mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0;
        for (size_t j = 0; j < c; j++) sum += (p[j] = expf(xr[j] - mx));
        for (size_t j = 0; j < c; j++) p[j] = (float)(p[j] / sum);
    }
    ulc_rt_tensor pt = *z;
    pt.data = t->probs;
    return ulc_session_set_input(student, ULC_TRAIN_TARGET, &pt, ctx);
}

static ulc_status write_losses(const char *path, const ulc_train_stats *st, ulc_ctx *ctx) {
    FILE *f = fopen(path, "w");
    if (!f) return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot open for writing", path);
    fprintf(f, "{\"steps\": %ld, \"seconds\": %.6f, \"loss\": [", st->steps, st->seconds);
    for (long i = 0; i < st->steps; i++) fprintf(f, "%s%.9g", i ? ", " : "", st->loss_curve[i]);
    fputs("], \"step_ms\": [", f);
    for (long i = 0; i < st->steps; i++) fprintf(f, "%s%.3f", i ? ", " : "", st->step_ms[i]);
    fputs("]}\n", f);
    if (fclose(f) != 0) return ulc_fail(ctx, ULC_ERR_IO, "%s: write failed", path);
    return ULC_OK;
}

int ulc_cli_train(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *data_path = NULL, *before = NULL, *after = NULL;
    const char *globs = NULL, *losses_path = NULL, *teacher_path = NULL, *adapter_dir = NULL;
    ulc_train_task task = {.loss = ULC_LOSS_CROSS_ENTROPY};
    ulc_train_opts o = ulc_train_defaults();
    ulc_optim_kind kind = ULC_OPTIM_ADAMW;
    ulc_lr_kind sched = ULC_LR_CONSTANT;
    int nesterov = 0;
    long warmup = 0, step_size = 0;
    double lr = -1, wd = -1, mom = -1, gamma = -1, v;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                                 \
    do {                                                                                       \
        if (!val) return ulc_cli_usage_error("train: %s needs a value", a);                    \
        i++;                                                                                   \
    } while (0)
        if (!strcmp(a, "-o") || !strcmp(a, "--output-model")) { NEED(); out = val; }
        else if (!strcmp(a, "--data")) { NEED(); data_path = val; }
        else if (!strcmp(a, "--before")) { NEED(); before = val; }
        else if (!strcmp(a, "--after")) { NEED(); after = val; }
        else if (!strcmp(a, "--params")) { NEED(); globs = val; }
        else if (!strcmp(a, "--teacher")) { NEED(); teacher_path = val; }
        else if (!strcmp(a, "--emit-adapter")) { NEED(); adapter_dir = val; }
        else if (!strcmp(a, "--input")) { NEED(); task.input = val; }
        else if (!strcmp(a, "--output")) { NEED(); task.output = val; }
        else if (!strcmp(a, "--losses")) { NEED(); losses_path = val; }
        else if (!strcmp(a, "--loss")) {
            NEED();
            if (!strcmp(val, "next-token")) { task.next_token = 1; task.loss = ULC_LOSS_CROSS_ENTROPY; }
            else if (!strcmp(val, "ce")) task.loss = ULC_LOSS_CROSS_ENTROPY;
            else if (!strcmp(val, "mse")) task.loss = ULC_LOSS_MSE;
            else if (!strcmp(val, "distill")) task.loss = ULC_LOSS_KL;
            else return ulc_cli_usage_error("train: --loss: '%s' (expected ce, mse, next-token or distill)", val);
        } else if (!strcmp(a, "--optimizer")) {
            NEED();
            if (!strcmp(val, "adamw")) kind = ULC_OPTIM_ADAMW;
            else if (!strcmp(val, "sgd")) kind = ULC_OPTIM_SGD;
            else return ulc_cli_usage_error("train: --optimizer: '%s' (expected adamw or sgd)", val);
        } else if (!strcmp(a, "--schedule")) {
            NEED();
            if (!strcmp(val, "constant")) sched = ULC_LR_CONSTANT;
            else if (!strcmp(val, "linear")) sched = ULC_LR_LINEAR;
            else if (!strcmp(val, "step")) sched = ULC_LR_STEP;
            else return ulc_cli_usage_error("train: --schedule: '%s' (expected constant, linear or step)", val);
        } else if (!strcmp(a, "--lr")) { NEED(); if (!parse_num(a, val, 0, 1e3, &lr)) return ULC_EXIT_USAGE; }
        else if (!strcmp(a, "--weight-decay")) { NEED(); if (!parse_num(a, val, 0, 1e3, &wd)) return ULC_EXIT_USAGE; }
        else if (!strcmp(a, "--momentum")) { NEED(); if (!parse_num(a, val, 0, 1, &mom)) return ULC_EXIT_USAGE; }
        else if (!strcmp(a, "--gamma")) { NEED(); if (!parse_num(a, val, 0, 1e3, &gamma)) return ULC_EXIT_USAGE; }
        else if (!strcmp(a, "--nesterov")) nesterov = 1;
        else if (!strcmp(a, "--warmup")) { NEED(); if (!parse_num(a, val, 0, 1e12, &v)) return ULC_EXIT_USAGE; warmup = (long)v; }
        else if (!strcmp(a, "--step-size")) { NEED(); if (!parse_num(a, val, 1, 1e12, &v)) return ULC_EXIT_USAGE; step_size = (long)v; }
        else if (!strcmp(a, "--epochs")) { NEED(); if (!parse_num(a, val, 1, 1e6, &v)) return ULC_EXIT_USAGE; o.epochs = (int)v; }
        else if (!strcmp(a, "--max-steps")) { NEED(); if (!parse_num(a, val, 1, 1e12, &v)) return ULC_EXIT_USAGE; o.max_steps = (long)v; }
        else if (!strcmp(a, "--batch-size")) { NEED(); if (!parse_num(a, val, 1, 1 << 20, &v)) return ULC_EXIT_USAGE; o.batch_size = (int)v; }
        else if (!strcmp(a, "--seed")) { NEED(); if (!parse_num(a, val, 0, 1.8e19, &v)) return ULC_EXIT_USAGE; o.seed = (uint64_t)v; }
        else if (!strcmp(a, "--threads")) { NEED(); if (!parse_num(a, val, 0, 1024, &v)) return ULC_EXIT_USAGE; o.threads = (int)v; }
        else if (!strcmp(a, "--no-shuffle")) o.shuffle = 0;
        else if (!strcmp(a, "--drop-last")) o.drop_last = 1;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o.quiet = 1;
        else if (!strcmp(a, "--profile")) o.profile = 1;
        else if (a[0] == '-' && a[1]) return ulc_cli_usage_error("train: unknown option '%s'", a);
        else if (in) return ulc_cli_usage_error("train: more than one model given ('%s')", a);
        else in = a;
#undef NEED
    }
    if (!in) return ulc_cli_usage_error("train: no model given");
    if (!data_path) return ulc_cli_usage_error("train: no data given (--data TRAIN.safetensors)");
    if (!out) return ulc_cli_usage_error("train: no output given (-o OUT)");
    o.optim = ulc_optim_defaults(kind); /* then the options, whatever their order */
    o.optim.schedule = sched;
    o.optim.nesterov = nesterov;
    o.optim.warmup_steps = warmup;
    o.optim.step_size = step_size;
    if (lr >= 0) o.optim.lr = lr;
    if (wd >= 0) o.optim.weight_decay = wd;
    if (mom >= 0) o.optim.momentum = mom;
    if (gamma >= 0) o.optim.gamma = gamma;
    o.label = "train";
    o.progress = stderr;

    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_pipeline *pb = NULL, *pa = NULL;
    ulc_model *m = NULL, *tm = NULL;
    teacher tch = {0};
    ulc_data data = {0};
    const ulc_dataset *dp = &data.d;
    ulc_train_graph tg = {0};
    ulc_train_stats st = {0};
    float **vals = NULL;
    ulc_status s = ULC_OK;
    if ((before && ulc_pipeline_parse(before, &pb, &ctx) != ULC_OK) ||
        (after && ulc_pipeline_parse(after, &pa, &ctx) != ULC_OK)) {
        ulc_cli_report(&ctx);
        ulc_pipeline_free(pb);
        return ULC_EXIT_USAGE;
    }
    ulc_pipeline_opts po = {0};
    if (adapter_dir && (s = ulc_peft_export_check_dir(adapter_dir, &ctx)) != ULC_OK) goto done;
    if ((s = ulc_io_load_model(in, NULL, &m, &ctx)) != ULC_OK) goto done;
    if (ulc_model_reads_file(m, out)) {
        s = ulc_fail(&ctx, ULC_ERR_INVALID_ARG, "train: the output '%s' is the input model", out);
        goto done;
    }
    if ((s = ulc_data_open("--data", data_path, &data, &ctx)) != ULC_OK) goto done;
    if (pb && (s = ulc_pipeline_run(pb, m, &po, &ctx)) != ULC_OK) goto done;
    if (globs && ulc_mark_params(m, globs) == 0) {
        s = ulc_fail(&ctx, ULC_ERR_INVALID_ARG, "train: --params '%s' matches no float32 weight",
                     globs);
        goto done;
    }
    if ((s = ulc_train_graph_build(m, dp, &task, o.batch_size, &tg, &ctx)) != ULC_OK) goto done;
    if ((s = ulc_train_graph_params(m, &tg, &vals, &ctx)) != ULC_OK) goto done;
    if (task.loss == ULC_LOSS_KL) {
        ulc_session_opts so = ulc_session_defaults();
        so.threads = o.threads;
        if ((s = ulc_io_load_model(teacher_path ? teacher_path : in, NULL, &tm, &ctx)) != ULC_OK ||
            (s = ulc_session_create(tm, &so, &tch.s, &ctx)) != ULC_OK)
            goto done;
        tch.m = tm;
        tch.tg = &tg;
        tch.output = task.output ? task.output
                                 : ((const ulc_value *)tm->graph->outputs.items[0])->name;
        o.before_step = teacher_step;
        o.hook_arg = &tch;
    } else if (teacher_path) {
        s = ulc_fail(&ctx, ULC_ERR_INVALID_ARG, "train: --teacher needs --loss distill");
        goto done;
    }
    g_stop = 0;
    o.stop = &g_stop;
    void (*prev_int)(int) = signal(SIGINT, on_stop);
    void (*prev_term)(int) = signal(SIGTERM, on_stop);
    s = ulc_train_run(&tg, dp, &o, vals, &st, &ctx);
    signal(SIGINT, prev_int);
    signal(SIGTERM, prev_term);
    if (s != ULC_OK) goto done;
    if (!o.quiet)
        fprintf(stderr, "train: %ld steps, loss %.4f -> %.4f, %.1f s (%.0f samples/s)\n", st.steps,
                st.first_loss, st.last_loss, st.seconds, st.samples_per_s);
    if ((s = ulc_train_graph_write_back(m, &tg, vals, &ctx)) != ULC_OK) goto done;
    if (pa && (s = ulc_pipeline_run(pa, m, &po, &ctx)) != ULC_OK) goto done;
    if (losses_path && (s = write_losses(losses_path, &st, &ctx)) != ULC_OK) goto done;
    /* the adapter first (checked whole before anything is written), taken back if the model
     * cannot be written */
    if (adapter_dir && (s = ulc_peft_export(m, adapter_dir, NULL, &ctx)) != ULC_OK) goto done;
    ulc_io_format ofmt;
    if (ulc_io_output_format(out, &ofmt, NULL) != ULC_OK) ofmt = ULC_IO_DIR; /* a new directory */
    if ((s = ulc_io_save_model(m, out, ofmt, NULL, &ctx)) != ULC_OK && adapter_dir)
        ulc_cli_remove_adapter(adapter_dir);
done:
    ulc_train_graph_free_params(&tg, vals);
    ulc_train_graph_clear(&tg);
    ulc_train_stats_clear(&st);
    ulc_data_clear(&data);
    ulc_session_free(tch.s);
    free(tch.probs);
    ulc_model_free(tm);
    ulc_model_free(m);
    ulc_pipeline_free(pb);
    ulc_pipeline_free(pa);
    if (s != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}
