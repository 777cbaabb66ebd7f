/*
 * merge.h — `ulc merge` as a library call: PEFT LoRA adapters baked into a base model (a
 * safetensors file or sharded index, a Hugging Face checkpoint directory, or an ONNX model),
 * written in the base's format. The base is read as weights (no graph built); merged tensors
 * are produced while the output is written (passes/lora_merge.h). A directory output gets
 * model.safetensors and the base's other files (config, tokenizer, ...); config.json's
 * tie_word_embeddings becomes false when an adapter untied the embeddings.
 *
 *     const char *ads[] = {"adapter/"};
 *     double w[] = {1.0};
 *     ulc_merge_job j = {.base = "gpt2/", .out = "merged/", .adapters = ads, .weights = w,
 *                        .n_adapters = 1, .report = stdout};
 *     ulc_merge_files(&j, ctx);
 */
#ifndef ULC_JOBS_MERGE_H
#define ULC_JOBS_MERGE_H

#include <stdio.h>

#include "common/status.h"

typedef struct ulc_merge_job {
    const char *base, *out;
    const char *const *adapters; /* PEFT adapter directories, merged in order */
    const double *weights;       /* each adapter's weight */
    int n_adapters;
    int unmerge;                 /* subtract the adapters instead */
    int untie;                   /* an adapter may change one side of tied embeddings */
    int in_place;                /* the output may replace the base's files */
    int threads;                 /* for the low-rank products (0: the default) */
    FILE *report;                /* per adapter, its tensors and max |delta| (NULL: quiet) */
} ulc_merge_job;

ulc_status ulc_merge_files(const ulc_merge_job *j, ulc_ctx *ctx);

#endif
