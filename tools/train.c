/*
 * train.c — `ulc train`: fine-tune a model on a safetensors dataset with ulc's own autodiff
 * and trainer (jobs/train.h); optionally through LoRA (a pipeline before and after training);
 * or unlearn with a pipeline of passes and a forget set (jobs/forget.h).
 *
 *   ulc train MODEL --data TRAIN.safetensors|TEXTS.jsonl|TEXTS.txt -o OUT
 *             [--loss ce|mse|next-token|distill]
 *             [--teacher MODEL]
 *             [--before PIPELINE] [--after PIPELINE] [--params GLOB|GLOB]
 *             [--epochs N] [--max-steps N] [--batch-size N] [--lr X] [--optimizer adamw|sgd]
 *             [--momentum X] [--nesterov] [--weight-decay X] [--schedule constant|linear|step]
 *             [--warmup N] [--step-size N] [--gamma X] [--seed N] [--no-shuffle] [--drop-last]
 *             [--threads N] [--input NAME] [--output NAME] [-q] [--losses FILE.json] [--profile]
 *             [--emit-adapter DIR]
 *             [--tokenizer PATH] [--max-length N] [--overflow error|truncate|windows] [--stride N]
 *   ulc train MODEL --data TRAIN.safetensors -o OUT --passes PIPELINE
 *             (--forget-classes C[,C...] | --forget-indices FILE.json)
 *             [--epochs N] [--batch-size N] [--lr X] [--optimizer adamw|sgd] [--momentum X]
 *             [--weight-decay X] [--seed N] [--threads N] [--input NAME] [--output NAME] [-q]
 *
 * Nothing is written unless training finishes: Ctrl-C stops after the current step and exits
 * 130, a failing step exits with its error; OUT is written atomically either way only on success.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/text_data.h"
#include "jobs/forget.h"
#include "jobs/train.h"
#include "tools/cli.h"

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

/* --forget-classes 3,5: whole numbers (the request checks the rest). */
static int parse_classes(const char *s, int64_t *out, int cap, int *n) {
    *n = 0;
    for (const char *p = s;;) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || *n == cap || (*end && *end != ','))
            return ulc_cli_usage_error("train: --forget-classes '%s': expected class numbers "
                                       "separated by commas (at most %d)", s, cap);
        out[(*n)++] = v;
        if (!*end) return -1;
        p = end + 1;
    }
}

/* Text data's options (--tokenizer, --max-length, --overflow, --stride). */
typedef struct text_args {
    const char *tokenizer;
    int64_t max_length, stride;
    int overflow;
} text_args;

/* --passes: the forget job without evaluation. */
typedef struct unlearn_args {
    const char *in, *out, *data, *passes, *classes, *indices, *input, *output;
    uint64_t seed;
    int threads, quiet, profile;
    ulc_method_train run;
    text_args text;
} unlearn_args;

static int unlearn(const unlearn_args *a) {
    if (!a->passes)
        return ulc_cli_usage_error("train: --forget-classes/--forget-indices go with --passes "
                                   "(the unlearning pipeline)");
    if (!a->classes == !a->indices)
        return ulc_cli_usage_error("train: --passes needs one of --forget-classes and "
                                   "--forget-indices");
    int64_t cls[256];
    int n_cls = 0, rc = a->classes ? parse_classes(a->classes, cls, 256, &n_cls) : -1;
    if (rc >= 0) return rc;
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    ulc_request rq;
    ulc_request_init(&rq, "train");
    rq.seed = a->seed;
    rq.run = a->run;
    int64_t *rows = NULL, n_rows = 0;
    ulc_status st = ulc_request_set_data(&rq, a->data, NULL, &ctx);
    if (st == ULC_OK && a->input) st = (rq.model_input = strdup(a->input)) ? ULC_OK : ULC_ERR_NOMEM;
    if (st == ULC_OK && a->output) st = (rq.model_output = strdup(a->output)) ? ULC_OK : ULC_ERR_NOMEM;
    if (st == ULC_OK && a->text.tokenizer)
        st = (rq.tokenizer = strdup(a->text.tokenizer)) ? ULC_OK : ULC_ERR_NOMEM;
    rq.max_length = a->text.max_length;
    rq.overflow = (ulc_overflow)a->text.overflow;
    rq.stride = a->text.stride;
    if (st == ULC_OK && a->classes)
        st = ulc_request_set_classes(&rq, cls, n_cls, "--forget-classes", &ctx);
    if (st == ULC_OK && a->indices &&
        (st = ulc_request_read_indices(a->indices, "--forget-indices", &rows, &n_rows, &ctx)) == ULC_OK)
        st = ulc_request_set_rows(&rq, rows, n_rows, "--forget-indices", &ctx);
    if (st == ULC_OK) st = ulc_request_set_passes(&rq, a->passes, &ctx);
    ulc_cli_handlers h = {0};
    ulc_forget_opts o = {.in = a->in, .out = a->out, .threads = a->threads, .quiet = a->quiet,
                         .profile = a->profile, .stop = &ulc_cli_stop, .phase = ulc_cli_phase,
                         .phase_arg = &h};
    ulc_forget_outcome res = {0};
    ulc_cli_stop = 0;
    if (st == ULC_OK) st = ulc_forget_files(&rq, &o, &res, &ctx);
    if (st == ULC_ERR_NOMEM && !ctx.msg[0]) ulc_fail(&ctx, st, "out of memory");
    free(rows);
    ulc_forget_outcome_clear(&res);
    ulc_request_clear(&rq);
    return st == ULC_OK ? ULC_EXIT_OK : ulc_cli_report(&ctx);
}

int ulc_cli_train(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *data_path = NULL, *before = NULL, *after = NULL;
    const char *globs = NULL, *losses_path = NULL, *teacher_path = NULL, *adapter_dir = NULL;
    const char *passes = NULL, *classes = NULL, *indices = NULL;
    ulc_train_task task = {.loss = ULC_LOSS_CROSS_ENTROPY};
    ulc_train_opts o = ulc_train_defaults();
    ulc_method_train run = {0}; /* --passes: the settings given (the method's defaults else) */
    ulc_optim_kind kind = ULC_OPTIM_ADAMW;
    ulc_lr_kind sched = ULC_LR_CONSTANT;
    int nesterov = 0;
    long warmup = 0, step_size = 0;
    double lr = -1, wd = -1, mom = -1, gamma = -1, v;
    text_args text = {0};
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
        else if (!strcmp(a, "--passes")) { NEED(); passes = val; }
        else if (!strcmp(a, "--forget-classes")) { NEED(); classes = val; }
        else if (!strcmp(a, "--forget-indices")) { NEED(); indices = val; }
        else if (!strcmp(a, "--tokenizer")) { NEED(); text.tokenizer = val; }
        else if (!strcmp(a, "--max-length")) { NEED(); if (!parse_num(a, val, 1, 1 << 24, &v)) return ULC_EXIT_USAGE; text.max_length = (int64_t)v; }
        else if (!strcmp(a, "--stride")) { NEED(); if (!parse_num(a, val, 0, 1 << 24, &v)) return ULC_EXIT_USAGE; text.stride = (int64_t)v; }
        else if (!strcmp(a, "--overflow")) {
            NEED();
            if ((text.overflow = ulc_text_overflow_parse(val)) < 0)
                return ulc_cli_usage_error("train: --overflow: '%s' (expected error, truncate or windows)", val);
        }
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
            run.set |= ULC_MT_OPTIMIZER;
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
        else if (!strcmp(a, "--epochs")) { NEED(); if (!parse_num(a, val, 1, 1e6, &v)) return ULC_EXIT_USAGE; o.epochs = (int)v; run.set |= ULC_MT_EPOCHS; }
        else if (!strcmp(a, "--max-steps")) { NEED(); if (!parse_num(a, val, 1, 1e12, &v)) return ULC_EXIT_USAGE; o.max_steps = (long)v; }
        else if (!strcmp(a, "--batch-size")) { NEED(); if (!parse_num(a, val, 1, 1 << 20, &v)) return ULC_EXIT_USAGE; o.batch_size = (int)v; run.set |= ULC_MT_BATCH; }
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
    if (!data_path) return ulc_cli_usage_error("train: no data given (--data TRAIN.safetensors or TEXTS.jsonl)");
    if (!out) return ulc_cli_usage_error("train: no output given (-o OUT)");
    if (text.stride && text.overflow != 2)
        return ulc_cli_usage_error("train: --stride is for --overflow windows");
    if (text.stride && text.max_length && text.stride >= text.max_length)
        return ulc_cli_usage_error("train: --stride %lld: a window is --max-length %lld tokens; "
                                   "the stride must be smaller", (long long)text.stride,
                                   (long long)text.max_length);
    if (passes || classes || indices) {
        run.epochs = o.epochs;
        run.batch_size = o.batch_size;
        run.optimizer = kind;
        if (lr >= 0) run.lr = lr, run.set |= ULC_MT_LR;
        if (wd >= 0) run.weight_decay = wd, run.set |= ULC_MT_WEIGHT_DECAY;
        if (mom >= 0) run.momentum = mom, run.set |= ULC_MT_MOMENTUM;
        unlearn_args u = {in, out, data_path, passes, classes, indices, task.input, task.output,
                          o.seed, o.threads, o.quiet, o.profile, run, text};
        if (before || after || globs || teacher_path || adapter_dir || losses_path ||
            task.loss != ULC_LOSS_CROSS_ENTROPY || task.next_token)
            return ulc_cli_usage_error("train: --passes unlearns with its own passes and losses; "
                                       "it does not go with --before, --after, --params, --loss, "
                                       "--teacher, --emit-adapter or --losses");
        if (o.max_steps || sched != ULC_LR_CONSTANT || gamma >= 0 || nesterov || warmup ||
            step_size || !o.shuffle || o.drop_last)
            return ulc_cli_usage_error("train: with --passes the methods set their own schedule "
                                       "and batching: --max-steps, --schedule, --gamma, --nesterov, "
                                       "--warmup, --step-size, --no-shuffle and --drop-last do not "
                                       "apply");
        return unlearn(&u);
    }
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
    o.stop = &ulc_cli_stop;
    ulc_cli_handlers h = {0};
    ulc_train_job j = {.in = in, .out = out, .data = data_path, .before = before, .after = after,
                       .params = globs, .teacher = teacher_path, .adapter_dir = adapter_dir,
                       .losses = losses_path, .task = task, .opts = o, .phase = ulc_cli_phase,
                       .phase_arg = &h, .tokenizer = text.tokenizer,
                       .max_length = text.max_length, .overflow = text.overflow,
                       .stride = text.stride};
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    ulc_cli_stop = 0;
    if (ulc_train_files(&j, &ctx) != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}
