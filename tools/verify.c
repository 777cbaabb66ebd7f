/*
 * verify.c — `ulc verify OUT [--report R.json] [--input IN] [--spec SPEC] [--train D]
 * [--test T]`: an unlearned model checked against the record it carries and its report
 * (jobs/verify.h, docs/audit.md). Exit 0 when every item checked matched, 11 on a mismatch.
 */
#include <stdio.h>
#include <string.h>

#include "jobs/verify.h"
#include "tools/cli.h"

int ulc_cli_verify(int argc, char **argv) {
    ulc_verify_opts o = {.table = stdout};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--report") ? &o.report
                            : !strcmp(a, "--input") ? &o.input
                            : !strcmp(a, "--spec") ? &o.spec
                            : !strcmp(a, "--train") ? &o.train
                            : !strcmp(a, "--test") ? &o.test : NULL;
        if (slot) {
            if (i + 1 >= argc) return ulc_cli_usage_error("verify: %s needs a path", a);
            if (*slot) return ulc_cli_usage_error("verify: %s given twice", a);
            *slot = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return ulc_cli_usage_error("verify: unknown option '%s'", a);
        } else if (o.model) {
            return ulc_cli_usage_error("verify: more than one model given ('%s' and '%s')",
                                       o.model, a);
        } else {
            o.model = a;
        }
    }
    if (!o.model) return ulc_cli_usage_error("verify: no model given (ulc verify OUT)");
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    ulc_verify_outcome res = {0};
    ulc_status st = ulc_verify_files(&o, &res, &ctx);
    fflush(stdout);
    if (st != ULC_OK) return ulc_cli_report(&ctx);
    int rc = res.mismatched ? ULC_EXIT_MISMATCH : ULC_EXIT_OK;
    if (res.mismatched)
        fprintf(stderr, "ulc: error: verify: %s: %d item%s did not match: %s\n", o.model,
                res.mismatched, res.mismatched == 1 ? "" : "s", res.mismatches);
    ulc_verify_outcome_clear(&res);
    return rc;
}
