/*
 * onnx_export.h — ulc IR -> ONNX ModelProto, streamed to disk.
 *
 * The model is never serialized into one buffer: the small parts (nodes, value infos, model
 * fields) are packed by protobuf-c, and weights are streamed after their TensorProto headers —
 * unchanged weights that still sit in a mapped input file are copied file-to-file by the kernel.
 * Output appears atomically (temporary file + rename); on any error nothing is left behind.
 *
 * External data (one file, "<model file name>.data", beside the model, tensors at 4 KiB-aligned
 * offsets) is written when asked (external_data), when the input had external data, or when
 * the weights would push the model past protobuf's 2 GiB limit.
 *
 *     ulc_onnx_export_opts o = ulc_onnx_export_defaults();
 *     o.external_data = 1;
 *     ulc_onnx_export(model, "out.onnx", &o, &ctx);
 */
#ifndef ULC_EXPORT_ONNX_EXPORT_H
#define ULC_EXPORT_ONNX_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"

typedef struct ulc_onnx_export_opts {
    int external_data;         /* 1: force external data for tensors >= external_min_bytes */
    size_t external_min_bytes; /* smaller tensors stay inline (default 1024) */
    int allow_overwrite_input; /* 1: the output may replace the model's own source files */
    uint64_t inline_limit;     /* weights above this many bytes in total go external
                                  (default, 0: protobuf's 2 GiB limit less 64 MiB for the graph) */
} ulc_onnx_export_opts;

ulc_onnx_export_opts ulc_onnx_export_defaults(void);

/* Writes m to path. The model is not modified. */
ulc_status ulc_onnx_export(const ulc_model *m, const char *path, const ulc_onnx_export_opts *opts,
                           ulc_ctx *ctx);

#endif
