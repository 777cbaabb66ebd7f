/*
 * train.h — `ulc train` as a library call: a model fine-tuned on a dataset (safetensors, or text
 * for next-token training: io/text_data.h) with ulc's
 * own autodiff and trainer, optionally through LoRA (a pipeline before and after training).
 * Nothing is written unless training finishes; OUT is written atomically.
 *
 *     ulc_train_job j = {.in = "m.onnx", .out = "out.onnx", .data = "train.safetensors",
 *                        .before = "lora-inject{rank=8}", .after = "lora-merge",
 *                        .task = {.loss = ULC_LOSS_CROSS_ENTROPY}, .opts = ulc_train_defaults()};
 *     ulc_train_files(&j, ctx);
 *
 * (Unlearning through `ulc train --passes` is the forget job: jobs/forget.h.)
 */
#ifndef ULC_JOBS_TRAIN_H
#define ULC_JOBS_TRAIN_H

#include "common/status.h"
#include "passes/pass.h"
#include "train/train.h"
#include "train/train_graph.h"

typedef struct ulc_train_job {
    const char *in, *out, *data;
    const char *before, *after; /* pipelines (text) run before and after training, or NULL */
    const char *params;         /* '|'-separated globs of the weights to train, or NULL */
    const char *teacher;        /* --loss distill: the teacher (NULL: the input model) */
    const char *adapter_dir;    /* write the trained adapters there in PEFT's layout, or NULL */
    const char *losses;         /* write the loss curve there (JSON), or NULL */
    /* text data (.jsonl, .txt; docs/spec.md "Text data"): next-token training on the texts */
    const char *tokenizer;      /* NULL: IN's directory */
    int64_t max_length;         /* 0: the model's context */
    int overflow;               /* ulc_overflow (text/tokenizer.h); 0: error */
    int64_t stride;
    ulc_train_task task;
    ulc_train_opts opts;        /* its stop flag stops training after a step */
    /* called when training begins (1) and ends (0); NULL: none */
    void (*phase)(void *arg, const char *name, int begin);
    void *phase_arg;
} ulc_train_job;

ulc_status ulc_train_files(const ulc_train_job *j, ulc_ctx *ctx);

#endif
