/*
 * hf_export.h — a model -> a Hugging Face style directory.
 *
 * Writes DIR/model.safetensors (the weights under their own names, __metadata__ {"format":
 * "pt"}) and, when the model came from a Hugging Face architecture (its metadata holds
 * "ulc.hf_config", kept through ONNX), DIR/config.json, so transformers' from_pretrained loads
 * the result. DIR is created when missing (and removed again if nothing could be written).
 * Both files appear atomically; a file the model reads from is never overwritten unless
 * opts->allow_overwrite_input.
 *
 *     ulc_hf_export(m, "out/", NULL, &ctx);
 */
#ifndef ULC_EXPORT_HF_EXPORT_H
#define ULC_EXPORT_HF_EXPORT_H

#include "common/status.h"
#include "export/safetensors_export.h"
#include "ir/graph.h"

/* The model's config.json text, or NULL when it has none. */
const char *ulc_hf_config_text(const ulc_model *m);

ulc_status ulc_hf_export(const ulc_model *m, const char *dir,
                         const ulc_safetensors_export_opts *opts, ulc_ctx *ctx);

#endif
