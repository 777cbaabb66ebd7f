/*
 * schema.h — what a model must be to be read as ONNX, as strictly as the reference checker
 * (onnx.checker) and onnxruntime: the IR version and opsets ulc implements, known tensor element
 * types, and each node's attributes against its op's schema (ir/attrs.def: names, types and the
 * opsets they belong to, for every op the runtime runs).
 *
 *     if (ulc_model_check(m, ctx) != ULC_OK) ...            (the ONNX importer, once per file)
 *     if (ulc_op_check_attrs(node, opset, ctx) != ULC_OK)   (the planner, before a shape rule)
 *
 * Errors are ULC_ERR_INVALID (a malformed model) or ULC_ERR_UNSUPPORTED (a newer IR version or
 * opset than ulc implements), naming the field: "ir_version 11 is newer than ...", "node 'c'
 * (Conv): attribute 'strides' is FLOATS, but Conv takes INTS".
 */
#ifndef ULC_IR_SCHEMA_H
#define ULC_IR_SCHEMA_H

#include <stdint.h>

#include "ir/graph.h"

/* The newest ONNX IR version and ai.onnx opset ulc implements (those of onnx 1.16). */
#define ULC_ONNX_IR_VERSION_MAX 10
#define ULC_ONNX_OPSET_MAX 21

/* 1 when op's attributes are in the schema table (every op the runtime runs). */
int ulc_op_has_schema(ulc_op op);

/* Checks node n (default domain; other domains and ops without a schema pass) at ai.onnx opset
 * `opset`: the op exists at that opset, it has the inputs and outputs the schema requires and
 * no more than it allows (ir/arity.def; optional ones may be left out), every attribute is one
 * the op has there, with the type the schema gives (a DataType attribute such as Cast's `to`
 * names a known type). */
ulc_status ulc_op_check_attrs(const ulc_node *n, int64_t opset, ulc_ctx *ctx);

/* Checks a model read from an ONNX file: ir_version in [1, ULC_ONNX_IR_VERSION_MAX]; an
 * opset_import (the ONNX spec requires one from IR version 3, onnxruntime at every version: so
 * does ulc) with versions >= 1, ai.onnx's at most ULC_ONNX_OPSET_MAX; each domain imported once
 * (and ai.onnx when default-domain nodes are there); the
 * element type of every typed value (inputs, outputs, value_info) a known TensorProto.DataType;
 * every node's attributes (ulc_op_check_attrs). */
ulc_status ulc_model_check(const ulc_model *m, ulc_ctx *ctx);

#endif
