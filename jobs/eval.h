/*
 * eval.h — `ulc eval` as library calls.
 *
 * ulc_eval_files: a classifier's accuracy, per-class accuracy and confusion matrix on a
 * safetensors file ('input' [N, ...] — or the model input's own name, or input_ids — and 'label'
 * int64 [N]), batch by batch through the row runner (runtime/runtime.h's ulc_rows_run).
 *
 * ulc_eval_forget_files: the unlearning metrics of docs/metrics.md over a request's splits (the
 * eval/ functions the main command's report uses): accuracy per split and per class of the model,
 * and of the original and reference when given, H-mean, both membership attacks, activation
 * distance to the reference, per-layer features against the original, the relearning probe.
 *
 *     ulc_request rq;
 *     ulc_spec_parse("spec.json", &rq, ctx);
 *     ulc_eval_forget_job j = {.model = "out.onnx", .original = "in.onnx",
 *                              .so = ulc_session_defaults(), .out = stdout};
 *     ulc_eval_forget_files(&rq, &j, ctx);
 *     ulc_request_clear(&rq);
 */
#ifndef ULC_JOBS_EVAL_H
#define ULC_JOBS_EVAL_H

#include <stdio.h>

#include "common/status.h"
#include "jobs/request.h"
#include "runtime/runtime.h"

typedef struct ulc_eval_job {
    const char *model, *data;
    const char *input, *output; /* the model input the data feeds, the scores (NULL: the only
                                   input, the first output) */
    long batch;                 /* rows per run */
    ulc_session_opts so;
    int json;                   /* the result as JSON, else as text */
    FILE *out;                  /* where the result is written */
    /* a CLIP model scored zero-shot (jobs/clip.h): its classes and templates, the file they came
     * from (for messages) and the tokenizer (NULL: the model's directory); NULL: no CLIP */
    const ulc_clip_spec *clip;
    const char *clip_path, *tokenizer;
} ulc_eval_job;

ulc_status ulc_eval_files(const ulc_eval_job *j, ulc_ctx *ctx);

typedef struct ulc_eval_forget_job {
    const char *model;
    const char *data;                 /* the training data (NULL: the request's) */
    const char *original, *reference; /* or NULL */
    long relearn;                     /* relearning probe steps (0: none) */
    double relearn_lr;                /* its SGD learning rate (0: ULC_FE_RELEARN_LR) */
    ulc_session_opts so;
    int json;
    FILE *out;
} ulc_eval_forget_job;

/* The request names the forget set, the data and the model's input and output. */
ulc_status ulc_eval_forget_files(const ulc_request *rq, const ulc_eval_forget_job *j,
                                 ulc_ctx *ctx);

#endif
