/*
 * forget.c — `ulc IN --forget SPEC.json -o OUT`: the unlearning command (docs/spec.md).
 *
 *   ulc IN --forget SPEC.json -o OUT [--threads N] [-q] [--report PATH]... [--profile]
 *        [--junit PATH] [--github-annotations]
 *   ulc forget IN --forget SPEC.json -o OUT ...            (the same)
 *
 * The arguments, then one library call (jobs/forget.h); Ctrl-C stops training after the current
 * step and exits 130 with nothing written.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/forget.h"
#include "tools/cli.h"

/* The command line (usage errors exit 1): the model, the spec, the output, reports, the CI
 * verdicts, threads. */
static int parse_args(int argc, char **argv, ulc_forget_opts *o, const char **spec_path) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--forget") || !strcmp(a, "-o") || !strcmp(a, "--report") ||
            !strcmp(a, "--threads") || !strcmp(a, "--junit")) {
            if (!val) return ulc_cli_usage_error("forget: %s needs a value", a);
            i++;
            if (!strcmp(a, "--forget")) *spec_path = val;
            else if (!strcmp(a, "-o")) o->out = val;
            else if (!strcmp(a, "--junit")) {
                if (o->junit) return ulc_cli_usage_error("forget: --junit given twice");
                o->junit = val;
            }
            else if (!strcmp(a, "--report")) {
                if (o->n_reports == ULC_MAX_REPORTS)
                    return ulc_cli_usage_error("forget: --report given more than %d times",
                                               ULC_MAX_REPORTS);
                o->reports[o->n_reports++] = val;
            } else {
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
        } else if (!strcmp(a, "--github-annotations")) {
            o->annotations = stdout;
        } else if (a[0] == '-' && a[1]) {
            return ulc_cli_usage_error("forget: unknown option '%s'", a);
        } else if (o->in) {
            return ulc_cli_usage_error("forget: more than one model given ('%s' and '%s')", o->in, a);
        } else {
            o->in = a;
        }
    }
    if (!o->in) return ulc_cli_usage_error("forget: no input model given");
    if (!*spec_path) return ulc_cli_usage_error("forget: no spec given (--forget SPEC.json)");
    if (!o->out) return ulc_cli_usage_error("forget: no output given (-o OUT)");
    return -1;
}

/* One "ulc: error: " line per failed gate, after everything is written. */
static void print_gate_lines(const char *msgs) {
    for (const char *line = msgs; line && *line;) {
        const char *nl = strchr(line, '\n');
        fprintf(stderr, "ulc: error: %.*s\n", (int)(nl ? nl - line : (ptrdiff_t)strlen(line)),
                line);
        line = nl ? nl + 1 : NULL;
    }
}

int ulc_cli_forget(int argc, char **argv) {
    ulc_cli_handlers h = {0};
    const char *spec_path = NULL;
    ulc_forget_opts o = {.evaluate = 1, .table = stdout, .stop = &ulc_cli_stop,
                         .phase = ulc_cli_phase, .phase_arg = &h};
    int prc = parse_args(argc, argv, &o, &spec_path);
    if (prc >= 0) return prc;
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    ulc_request rq;
    ulc_forget_outcome res = {0};
    ulc_cli_stop = 0;
    ulc_status st = ulc_spec_parse(spec_path, &rq, &ctx);
    if (st == ULC_OK) st = ulc_forget_files(&rq, &o, &res, &ctx);
    fflush(stdout);
    ulc_request_clear(&rq);
    if (st != ULC_OK) return ulc_cli_report(&ctx);
    print_gate_lines(res.gate_messages);
    int failed = res.gates_failed;
    ulc_forget_outcome_clear(&res);
    return failed ? ULC_EXIT_GATE : ULC_EXIT_OK;
}
