/*
 * safetensors_import.h — safetensors checkpoints -> ulc IR (initializers only, no nodes).
 *
 * File layout:
 *   [0, 8)        u64 little-endian N: header length
 *   [8, 8+N)      UTF-8 JSON object: {"__metadata__": {str: str}?,
 *                                      "<name>": {"dtype": "F32", "shape": [..],
 *                                                 "data_offsets": [begin, end]}, ...}
 *                 (may end in spaces: writers pad it to 8 bytes)
 *   [8+N, EOF)    the data buffer; offsets are relative to its start, tensors are dense,
 *                 row-major, little-endian, and together cover the buffer exactly.
 *
 * Validation is strict: header <= 100 MB and valid UTF-8 JSON, unique names, known dtypes,
 * non-negative integral shapes, offsets in bounds, contiguous and non-overlapping, each byte
 * size = elements x dtype size, file length = 8 + N + buffer. Tensors are BORROWED from the
 * mapped file (no copies; unaligned files are fine).
 *
 * Sharded checkpoints: a model.safetensors.index.json ({"metadata": .., "weight_map":
 * {tensor: shard file}}) or a directory holding one (or holding model.safetensors).
 *
 *     ulc_model *m;
 *     ulc_safetensors_import("model.safetensors", &m, &ctx);   // caller frees with ulc_model_free
 */
#ifndef ULC_IMPORT_SAFETENSORS_IMPORT_H
#define ULC_IMPORT_SAFETENSORS_IMPORT_H

#include "common/status.h"
#include "ir/graph.h"

/* path: a .safetensors file, an index .json, or a directory. */
ulc_status ulc_safetensors_import(const char *path, ulc_model **out, ulc_ctx *ctx);

/* Adds one safetensors file's tensors to m's graph as initializers (names must be new) and its
 * __metadata__ entries to m->metadata. For builders that assemble a model from several files. */
ulc_status ulc_safetensors_load_file(ulc_model *m, const char *path, ulc_ctx *ctx);

/* 1 if the first bytes of a file look like safetensors (header length + '{'). */
int ulc_safetensors_sniff(const unsigned char *head, size_t n);

#endif
