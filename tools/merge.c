/*
 * merge.c — `ulc merge BASE --lora ADAPTER[:WEIGHT] [--lora …] -o OUT`: bake PEFT LoRA adapters
 * into a safetensors file, a Hugging Face checkpoint directory, or an ONNX model, and write the
 * result in the base's format. The arguments, then one library call (jobs/merge.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/merge.h"
#include "tools/cli.h"

#define MAX_ADAPTERS 64

static int usage(const char *msg, const char *arg) {
    fprintf(stderr, "ulc: error: merge: %s%s%s\n(see 'ulc --help')\n", msg, arg ? " " : "",
            arg ? arg : "");
    return ULC_EXIT_USAGE;
}

int ulc_cli_merge(int argc, char **argv) {
    const char *base_path = NULL, *out = NULL;
    const char *adapters[MAX_ADAPTERS];
    double weights[MAX_ADAPTERS];
    int n_ad = 0, unmerge = 0, untie = 0, in_place = 0, quiet = 0, threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (++i >= argc) return usage("-o needs a path", NULL);
            out = argv[i];
        } else if (strcmp(a, "--lora") == 0) {
            if (++i >= argc) return usage("--lora needs an adapter", NULL);
            if (n_ad == MAX_ADAPTERS) return usage("too many adapters", NULL);
            /* ADAPTER[:WEIGHT]: the part after the last ':' is a weight if it is a number */
            char *spec = argv[i], *colon = strrchr(spec, ':'), *end = NULL;
            weights[n_ad] = 1.0;
            if (colon && colon[1]) {
                double w = strtod(colon + 1, &end);
                if (end && *end == '\0') {
                    *colon = '\0';
                    weights[n_ad] = w;
                }
            }
            adapters[n_ad++] = spec;
        } else if (strcmp(a, "--unmerge") == 0) {
            unmerge = 1;
        } else if (strcmp(a, "--untie-embeddings") == 0) {
            untie = 1;
        } else if (strcmp(a, "--in-place") == 0) {
            in_place = 1;
        } else if (strcmp(a, "--threads") == 0) {
            char *end = NULL;
            long t = ++i < argc ? strtol(argv[i], &end, 10) : 0;
            if (i >= argc || !end || *end || t < 1 || t > 64)
                return usage("--threads needs a number from 1 to 64", i < argc ? argv[i] : NULL);
            threads = (int)t;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage("unknown option", a);
        } else if (base_path) {
            return usage("more than one base model given:", a);
        } else {
            base_path = a;
        }
    }
    if (!base_path) return usage("no base model given", NULL);
    if (!n_ad) return usage("no adapter given (--lora ADAPTER[:WEIGHT])", NULL);
    if (!out) return usage("no output given (-o OUT)", NULL);

    ulc_merge_job j = {.base = base_path, .out = out, .adapters = adapters, .weights = weights,
                       .n_adapters = n_ad, .unmerge = unmerge, .untie = untie,
                       .in_place = in_place, .threads = threads, .report = quiet ? NULL : stdout};
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    if (ulc_merge_files(&j, &ctx) != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}
