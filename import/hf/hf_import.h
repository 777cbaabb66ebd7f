/*
 * hf_import.h — Hugging Face checkpoints (config.json + safetensors) as graphs.
 *
 * Loads the weights (single file or sharded, see safetensors_import.h) and builds, from
 * config.json, the same math as transformers' forward in eval mode, as an ONNX-semantics graph
 * over those weights (their names unchanged), so it can be exported to ONNX, run, or trained.
 *
 *   model_type "gpt2" (GPT2LMHeadModel, GPT2Model; DistilGPT2 is this architecture):
 *     inputs input_ids, attention_mask (int64 [batch, sequence]); output logits
 *     [batch, sequence, vocab] (last_hidden_state for a GPT2Model checkpoint)
 *
 *     ulc_model *m;
 *     ulc_hf_import("distilgpt2/", &m, &ctx);   // caller frees with ulc_model_free
 */
#ifndef ULC_IMPORT_HF_IMPORT_H
#define ULC_IMPORT_HF_IMPORT_H

#include "common/status.h"
#include "ir/graph.h"

/* 1 if dir holds a config.json whose model_type has a graph builder. */
int ulc_hf_is_supported(const char *dir);

ulc_status ulc_hf_import(const char *dir, ulc_model **out, ulc_ctx *ctx);

#endif
