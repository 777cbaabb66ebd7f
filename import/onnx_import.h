/*
 * onnx_import.h — ONNX ModelProto -> ulc IR.
 *
 * The file is mapped, never read into a buffer: initializer raw_data stays where it is in the
 * mapping (BORROWED weights), external data files are mapped the same way, and only the
 * non-weight parts of the model (nodes, attributes, value infos — kilobytes) are decoded with
 * protobuf-c. Everything the IR does not model survives as opaque bytes (see graph.h), so
 * import + export with no passes in between gives the same model.
 *
 *     ulc_model *m;
 *     if (ulc_onnx_import("resnet18.onnx", &m, &ctx) != ULC_OK) ... ulc_ctx_message(&ctx)
 *     ...
 *     ulc_model_free(m);   // the caller frees what import returns
 */
#ifndef ULC_IMPORT_ONNX_IMPORT_H
#define ULC_IMPORT_ONNX_IMPORT_H

#include "common/status.h"
#include "ir/graph.h"

/* Reads path into a new model (*out, freed by the caller with ulc_model_free). On failure *out
 * is NULL and ctx names the file and what is wrong with it. The graph is verified. */
ulc_status ulc_onnx_import(const char *path, ulc_model **out, ulc_ctx *ctx);

#endif
