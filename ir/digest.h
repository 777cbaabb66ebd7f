/*
 * digest.h — the sha256 of a model's weights, independent of its file format and metadata.
 *
 * An unlearning request's record (jobs/history.h) names the weights it produced by this hash; it
 * cannot be a hash of the output file, since the record sits inside that file. It covers the
 * tensors a model's weights are: every initializer except the graph constants ulc's own builders
 * add (ULC_VALUE_CONSTANT, which weights-only formats leave out), so an ONNX model, its
 * safetensors copy and a Hugging Face directory with the same tensors hash the same, and external
 * data, sharding, protobuf layout, the form a tensor was stored in and the metadata do not count.
 *
 * The bytes hashed ("ulc weights v1"), all integers little-endian:
 *
 *     "ulc-weights-v1\0"  u64 count
 *     then per tensor, in byte order of the names (strcmp):
 *         u64 name length, the name's bytes, u32 dtype (ONNX's code), u32 rank,
 *         rank × i64 dims, u64 byte count, the tensor's bytes (dense, row-major, little-endian,
 *         as ONNX raw_data and safetensors hold them; none for a tensor ulc holds no bytes of,
 *         such as an ONNX string tensor)
 *
 *     char hex[ULC_SHA256_HEX];
 *     if (ulc_model_weights_sha256(m, hex, ctx) != ULC_OK) ...
 */
#ifndef ULC_IR_DIGEST_H
#define ULC_IR_DIGEST_H

#include "common/sha256.h"
#include "common/status.h"
#include "ir/graph.h"

/* The hash of m's weights as lowercase hex (LAZY tensors are streamed through the hash, not
 * materialized). ULC_ERR_UNSUPPORTED for a tensor in device memory; ULC_ERR_NOMEM. */
ulc_status ulc_model_weights_sha256(const ulc_model *m, char hex[ULC_SHA256_HEX], ulc_ctx *ctx);

#endif
