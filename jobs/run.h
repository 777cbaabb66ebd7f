/*
 * run.h — `ulc run` as a library call: a model run on the runtime with every graph input fed
 * from a safetensors file (by name), its outputs written to another (by name, atomically).
 *
 *     ulc_run_job j = {.model = "m.onnx", .input = "in.safetensors", .output = "out.safetensors",
 *                      .so = ulc_session_defaults(), .repeat = 1};
 *     ulc_run_files(&j, ctx);
 */
#ifndef ULC_JOBS_RUN_H
#define ULC_JOBS_RUN_H

#include <stdio.h>

#include "common/status.h"
#include "runtime/runtime.h"

typedef struct ulc_run_job {
    const char *model, *input, *output;
    ulc_session_opts so; /* threads, backend, profile */
    int repeat;          /* runs (>= 1): with more than one, the times are logged */
    FILE *log;           /* the timing line and the profile (NULL: not written) */
} ulc_run_job;

/* Every tensor of the input must feed a graph input and every graph input (but those with a
 * default) must be fed: ULC_ERR_INVALID naming the file and the tensor. */
ulc_status ulc_run_files(const ulc_run_job *j, ulc_ctx *ctx);

#endif
