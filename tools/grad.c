/*
 * grad.c — `ulc grad`: gradients of a model's output with respect to its inputs and weights
 * (jobs/grad.h). The arguments, then one library call.
 *
 *   ulc grad MODEL --input FEEDS.safetensors -o GRADS.safetensors [--output NAME]
 *            [--wrt GLOB|GLOB] [--threads N]
 */
#include <stdlib.h>
#include <string.h>

#include "jobs/grad.h"
#include "tools/cli.h"

int ulc_cli_grad(int argc, char **argv) {
    const char *in = NULL, *feeds = NULL, *out = NULL, *out_name = NULL, *globs = NULL;
    int threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--input") || !strcmp(a, "-o") || !strcmp(a, "--output") ||
             !strcmp(a, "--wrt") || !strcmp(a, "--threads")) && i + 1 >= argc)
            return ulc_cli_usage_error("grad: %s needs a value", a);
        if (!strcmp(a, "--input")) feeds = argv[++i];
        else if (!strcmp(a, "-o")) out = argv[++i];
        else if (!strcmp(a, "--output")) out_name = argv[++i];
        else if (!strcmp(a, "--wrt")) globs = argv[++i];
        else if (!strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (a[0] == '-' && a[1]) return ulc_cli_usage_error("grad: unknown option '%s'", a);
        else if (in) return ulc_cli_usage_error("grad: more than one model given ('%s')", a);
        else in = a;
    }
    if (!in || !feeds || !out)
        return ulc_cli_usage_error("grad: usage: ulc grad MODEL --input FEEDS.safetensors -o OUT.safetensors");
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    ulc_grad_job j = {.model = in, .feeds = feeds, .out = out, .output = out_name, .wrt = globs,
                      .threads = threads};
    if (ulc_grad_files(&j, &ctx) != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}
