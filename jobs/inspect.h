/*
 * inspect.h — `ulc inspect`: what a model is, for people (text) and machines (JSON): format,
 * producer, opsets, inputs and outputs, the op histogram, parameters by dtype, external data
 * files, metadata (JSON), and the unlearning requests it went through (its "ulc_history"
 * metadata, jobs/history.h: one line per request in text, the parsed list as "history" in JSON).
 *
 *     ulc_inspect_file("model.onnx", 0, stdout, ctx);
 */
#ifndef ULC_JOBS_INSPECT_H
#define ULC_JOBS_INSPECT_H

#include <stdio.h>

#include "common/status.h"
#include "ir/graph.h"

/* Writes the report for m (path: the name it is reported under) to out; a malformed history is
 * ULC_ERR_INVALID naming the file and the metadata key, and nothing is written. */
ulc_status ulc_inspect_model(const ulc_model *m, const char *path, int json, FILE *out,
                             ulc_ctx *ctx);
/* Loads the model at path (io/model.h) and writes its report. */
ulc_status ulc_inspect_file(const char *path, int json, FILE *out, ulc_ctx *ctx);

#endif
