/*
 * convert.h — `ulc convert` as a library call: a model read in its format, optionally printed,
 * run through a pipeline of passes, its LoRA adapters written as a PEFT adapter, and written in
 * the format the output's name asks for (io/model.h).
 *
 *     ulc_convert_job j = {.in = "in.onnx", .out = "out.safetensors",
 *                          .passes = "specialize{batch=1},cleanup"};
 *     ulc_convert_files(&j, ctx);
 */
#ifndef ULC_JOBS_CONVERT_H
#define ULC_JOBS_CONVERT_H

#include <stdio.h>

#include "common/status.h"
#include "io/model.h"
#include "passes/pass.h"

typedef struct ulc_convert_job {
    const char *in, *out;
    ulc_io_format out_format;  /* ulc_io_output_format(out) */
    const char *passes;        /* a pipeline (text), or NULL */
    ulc_pipeline_opts popts;   /* verify each pass, print the IR after one */
    const char *adapter_dir;   /* write lora-inject's adapters there (PEFT), or NULL */
    ulc_save_opts save;
    FILE *print_ir;            /* the IR as imported is printed here (NULL: not printed) */
    int with_past;             /* write the model's decoder with a cache (io/decoder.h; ONNX) */
} ulc_convert_job;

/* The adapter directory is checked (never overwritten) and the pipeline parsed before the model
 * is read: a pipeline that does not parse is ULC_ERR_INVALID_ARG (a usage error). The adapter is
 * written before the model and taken back if the model cannot be written. */
ulc_status ulc_convert_files(const ulc_convert_job *j, ulc_ctx *ctx);

#endif
