/*
 * run.c — `ulc run`, `ulc eval` and `ulc ops`: the arguments, then one library call (jobs/run.h,
 * jobs/eval.h); ops lists what the runtime and autodiff give.
 *
 *   ulc run MODEL --input IN.safetensors -o OUT.safetensors [--threads N] [--repeat N] [--profile]
 *   ulc eval MODEL --data DATA.safetensors [--json] [--batch N] [--threads N]
 *            [--clip PROMPTS.json [--tokenizer T]]   (a CLIP model, zero-shot)
 *   ulc eval MODEL --forget SPEC.json [--data TRAIN] [--original O] [--reference R] [--relearn N]
 *        [--relearn-lr LR] [--json]   (the unlearning metrics: docs/metrics.md)
 *   ulc ops [--backend cpu] [--grad]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "jobs/eval.h"
#include "jobs/grad.h"
#include "jobs/run.h"
#include "runtime/runtime.h"
#include "tools/cli.h"

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

    ulc_run_job j = {.model = model_path, .input = in_path, .output = out_path, .so = so,
                     .repeat = repeat, .log = stderr};
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    if (ulc_run_files(&j, &ctx) != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}

/* ---- ulc eval ------------------------------------------------------------------------------ */

/* `ulc eval --forget SPEC.json`: the spec, then the metrics. */
static int eval_forget(const char *spec, const ulc_eval_forget_job *j) {
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    ulc_request rq;
    ulc_status st = ulc_spec_parse(spec, &rq, &ctx);
    if (st == ULC_OK) st = ulc_eval_forget_files(&rq, j, &ctx);
    ulc_request_clear(&rq);
    if (st != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}

int ulc_cli_eval(int argc, char **argv) {
    const char *model_path = NULL, *data_path = NULL, *in_name = NULL, *out_name = NULL;
    ulc_session_opts so = ulc_session_defaults();
    int json = 0;
    long batch = 64;
    ulc_eval_forget_job ev = {.out = stdout};
    const char *spec = NULL, *clip = NULL, *tokenizer = NULL;
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
            const char **dst = a[2] == 'f' ? &spec : a[2] == 'o' ? &ev.original : &ev.reference;
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
        } else if (strcmp(a, "--clip") == 0 || strcmp(a, "--tokenizer") == 0) {
            if (!has_val) return ulc_cli_usage_error("eval: %s needs a path", a);
            *(a[2] == 'c' ? &clip : &tokenizer) = argv[++i];
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
    if (spec && (clip || tokenizer))
        return ulc_cli_usage_error("eval: with --forget, the spec's clip and model.tokenizer keys "
                                   "give the prompts and the tokenizer");
    if (spec) {
        if (in_name || out_name)
            return ulc_cli_usage_error("eval: with --forget, the spec's model.input/model.output "
                                       "name the input and output");
        ev.model = model_path;
        ev.data = data_path;
        ev.json = json;
        ev.so = so;
        return eval_forget(spec, &ev);
    }
    if (ev.original || ev.reference || ev.relearn || ev.relearn_lr)
        return ulc_cli_usage_error("eval: --original, --reference and --relearn need --forget SPEC.json");
    if (!data_path) return ulc_cli_usage_error("eval: no data given (--data DATA.safetensors)");

    if (tokenizer && !clip) return ulc_cli_usage_error("eval: --tokenizer is for --clip PROMPTS.json");
    if (clip && in_name) return ulc_cli_usage_error("eval: with --clip, the data feeds the images");
    ulc_eval_job j = {.model = model_path, .data = data_path, .input = in_name,
                      .output = out_name, .batch = batch, .so = so, .json = json, .out = stdout,
                      .clip_path = clip, .tokenizer = tokenizer};
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    ulc_clip_spec cs;
    memset(&cs, 0, sizeof cs);
    ulc_status st = clip ? ulc_clip_spec_read(clip, &cs, &ctx) : ULC_OK;
    if (clip) j.clip = &cs;
    if (st == ULC_OK) st = ulc_eval_files(&j, &ctx);
    ulc_clip_spec_clear(&cs);
    if (st != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}

/* ---- ulc ops ------------------------------------------------------------------------------- */

int ulc_cli_ops(int argc, char **argv) {
    const char *backend = "cpu";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) backend = argv[++i];
        else if (strcmp(argv[i], "--grad") == 0) { /* the ops autodiff can differentiate */
            ulc_grad_print_ops(stdout);
            return ULC_EXIT_OK;
        } else return ulc_cli_usage_error("ops: unknown argument '%s'", argv[i]);
    }
    const char *const *ops = ulc_backend_ops(backend);
    if (!ops) return ulc_cli_usage_error("ops: unknown backend '%s' (available: %s)", backend, ulc_backend_names());
    for (int i = 0; ops[i]; i++) printf("%s\n", ops[i]);
    return ULC_EXIT_OK;
}
