/*
 * tokenize.c — `ulc tokenize`: texts to token ids, or ids to text (jobs/tokenize.h). The
 * arguments, then one library call.
 *
 *   ulc tokenize TOKENIZER (--text S | --file F) [--decode [--skip-special]] [--add-special]
 *                [--max-length N [--overflow error|truncate|windows] [--stride K] [--pad]
 *                [--pad-id ID]] [-o OUT] [--time]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/tokenize.h"
#include "tools/cli.h"

static int num(const char *opt, const char *v, int64_t lo, int64_t *out) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo) return ulc_cli_usage_error("tokenize: %s '%s': expected an integer >= %lld", opt, v, (long long)lo);
    *out = x;
    return 0;
}

int ulc_cli_tokenize(int argc, char **argv) {
    ulc_tokenize_job j = {.overflow = ULC_OVERFLOW_ERROR, .pad_id = -1};
    int timed = 0, rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i];
        int val = !strcmp(a, "--text") || !strcmp(a, "--file") || !strcmp(a, "-o") || !strcmp(a, "--max-length") ||
                  !strcmp(a, "--overflow") || !strcmp(a, "--stride") || !strcmp(a, "--pad-id");
        if (val && i + 1 >= argc) return ulc_cli_usage_error("tokenize: %s needs a value", a);
        if (!strcmp(a, "--text")) j.text = argv[++i];
        else if (!strcmp(a, "--file")) j.file = argv[++i];
        else if (!strcmp(a, "-o")) j.out = argv[++i];
        else if (!strcmp(a, "--max-length")) rc = num(a, argv[++i], 1, &j.max_length);
        else if (!strcmp(a, "--stride")) rc = num(a, argv[++i], 0, &j.stride);
        else if (!strcmp(a, "--pad-id")) rc = num(a, argv[++i], 0, &j.pad_id);
        else if (!strcmp(a, "--overflow")) {
            const char *v = argv[++i];
            if (!strcmp(v, "error")) j.overflow = ULC_OVERFLOW_ERROR;
            else if (!strcmp(v, "truncate")) j.overflow = ULC_OVERFLOW_TRUNCATE;
            else if (!strcmp(v, "windows")) j.overflow = ULC_OVERFLOW_WINDOWS;
            else return ulc_cli_usage_error("tokenize: --overflow '%s': expected error, truncate or windows", v);
        } else if (!strcmp(a, "--decode")) j.decode = 1;
        else if (!strcmp(a, "--skip-special")) j.skip_special = 1;
        else if (!strcmp(a, "--add-special")) j.add_special = 1;
        else if (!strcmp(a, "--pad")) j.pad = 1;
        else if (!strcmp(a, "--time")) timed = 1;
        else if (a[0] == '-' && a[1]) return ulc_cli_usage_error("tokenize: unknown option '%s'", a);
        else if (j.tokenizer) return ulc_cli_usage_error("tokenize: more than one tokenizer given ('%s')", a);
        else j.tokenizer = a;
    }
    if (rc) return rc;
    if (!j.tokenizer || !j.text == !j.file)
        return ulc_cli_usage_error("tokenize: usage: ulc tokenize TOKENIZER (--text S | --file F) [options]");
    if (j.decode && j.max_length)
        return ulc_cli_usage_error("tokenize: --decode takes no --max-length");
    if (!j.max_length && (j.stride || j.pad || j.overflow != ULC_OVERFLOW_ERROR || j.pad_id >= 0))
        return ulc_cli_usage_error("tokenize: --overflow, --stride, --pad and --pad-id need --max-length");
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    if (ulc_tokenize_files(&j, stdout, &ctx) != ULC_OK) return ulc_cli_report(&ctx);
    if (timed) fprintf(stderr, "ulc: %s: %.6f s\n", j.decode ? "decode" : "encode", j.encode_seconds);
    return ULC_EXIT_OK;
}
