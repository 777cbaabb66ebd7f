/*
 * verify.h — `ulc verify`: check an unlearned model against its own record and its report.
 *
 * The output of `ulc IN --forget SPEC -o OUT` records each request in its metadata
 * (jobs/history.h): the sha256 of the input model, the spec, the data, and of the weights it
 * wrote (ir/digest.h). The report (docs/spec.md) records the same and the paths. Verification
 * recomputes what it can and compares, item by item:
 *
 *   weights (history)       OUT's weights hash against the last request's weights_sha256
 *   weights (report)        ... against the report's output.weights_sha256
 *   output file (report)    OUT's main file (and external data) bytes against output.sha256
 *   input file, input weights, spec, train data, test data, indices file, reference model
 *                           each file, when a path is known (an option, else the report's;
 *                           a relative one as given, else next to the report) and the file
 *                           exists, against the report's hash (else the history's)
 *   report = history: KEY   the report and the last request record the same method and hashes
 *   history chain K         request K's input weights are request K-1's output weights
 *
 * Each item is ok, MISMATCH, or not checked (no path, file absent, not recorded). A malformed
 * model history or report, or a model without a history or without a weights hash to check, is
 * an error (ULC_ERR_INVALID / ULC_ERR_PARSE naming the file and the key); a file named by an
 * option that cannot be read is ULC_ERR_IO. Mismatches are not errors: the outcome counts them.
 *
 *     ulc_verify_opts o = {.model = "out.onnx", .report = "r.json", .table = stdout};
 *     ulc_verify_outcome res = {0};
 *     if (ulc_verify_files(&o, &res, ctx) != ULC_OK) ...        // could not verify
 *     if (res.mismatched) ...                                    // res.mismatches names them
 *     ulc_verify_outcome_clear(&res);
 */
#ifndef ULC_JOBS_VERIFY_H
#define ULC_JOBS_VERIFY_H

#include <stdio.h>

#include "common/status.h"

typedef struct ulc_verify_opts {
    const char *model;  /* OUT: an ONNX file, a safetensors file or a Hugging Face directory */
    const char *report; /* the run's JSON report, or NULL */
    /* files to check instead of the report's paths (NULL: the report's, if any) */
    const char *input, *spec, *train, *test;
    FILE *table;        /* the per-item table (NULL: not printed) */
} ulc_verify_opts;

typedef struct ulc_verify_outcome {
    int matched, mismatched, unchecked; /* items by result */
    char *mismatches;   /* owned: the mismatched items' names, ", "-separated; NULL: none */
} ulc_verify_outcome;

void ulc_verify_outcome_clear(ulc_verify_outcome *r);

/* Verifies o->model (see the top of this file); prints the table to o->table. */
ulc_status ulc_verify_files(const ulc_verify_opts *o, ulc_verify_outcome *res, ulc_ctx *ctx);

#endif
