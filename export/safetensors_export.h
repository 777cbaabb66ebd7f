/*
 * safetensors_export.h — a model's initializers -> one .safetensors file.
 *
 * The header is compact JSON ("__metadata__" first, from the model's metadata), padded with
 * spaces to a multiple of 8 bytes; tensors follow contiguously in the order safetensors' own
 * writer uses (by dtype, largest elements first, then by name), so every tensor starts at an
 * offset aligned to its element size and files round-trip byte for byte. Only weights are
 * written: initializers flagged ULC_VALUE_CONSTANT (a graph builder's shape vectors and
 * scalars) and metadata keys starting with "ulc." stay out. Weights still in a mapped input file are copied file-to-file by the kernel. The file
 * appears atomically; a model's own input files are never overwritten unless allowed.
 *
 *     ulc_safetensors_export(m, "model.safetensors", NULL, &ctx);
 */
#ifndef ULC_EXPORT_SAFETENSORS_EXPORT_H
#define ULC_EXPORT_SAFETENSORS_EXPORT_H

#include "common/status.h"
#include "ir/graph.h"

typedef struct ulc_safetensors_export_opts {
    int allow_overwrite_input; /* 1: the output may replace a file the model reads from */
    int format_pt;             /* 1: ensure __metadata__ {"format": "pt"} (transformers needs it) */
} ulc_safetensors_export_opts;

ulc_status ulc_safetensors_export(const ulc_model *m, const char *path,
                                  const ulc_safetensors_export_opts *opts, ulc_ctx *ctx);

#endif
