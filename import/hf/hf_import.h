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
 *   model_type "vit" (ViTForImageClassification, ViTModel): input pixel_values f32
 *     [batch, channels, image_size, image_size]; output logits [batch, labels]
 *     (last_hidden_state, and pooler_output when the checkpoint has a pooler, for ViTModel)
 *   model_type "clip" (CLIPModel): inputs input_ids, pixel_values, attention_mask; outputs
 *     logits_per_image, logits_per_text, text_embeds, image_embeds
 *   model_type "resnet" (ResNetForImageClassification, ResNetModel): input pixel_values;
 *     output logits (last_hidden_state, pooler_output for ResNetModel)
 *
 * The model keeps config.json's text in its metadata under "ulc.hf_config", so an ONNX file
 * made from it can be turned back into a Hugging Face directory (see export/hf_export.h).
 *
 * torchvision ResNet state_dicts (resnet18..152, resnext, wide_resnet saved as safetensors)
 * carry no config; ulc_hf_build_from_names recognises them by their tensor names and builds
 * the graph (input "input" [batch, 3, height, width], output "logits").
 *
 *     ulc_model *m;
 *     ulc_hf_import("distilgpt2/", &m, &ctx);   // caller frees with ulc_model_free
 */
#ifndef ULC_IMPORT_HF_IMPORT_H
#define ULC_IMPORT_HF_IMPORT_H

#include <cjson/cJSON.h>

#include "common/status.h"
#include "ir/graph.h"

/* dir's config.json as a JSON object (the caller deletes it); *text, when text is not NULL, gets
 * a malloc'd NUL-terminated copy of the file. NULL, the error in ctx naming the file, when it is
 * missing or not a JSON object. */
cJSON *ulc_hf_read_config(const char *dir, char **text, ulc_ctx *ctx);

/* 1 if dir holds a config.json whose model_type has a graph builder, or one that is not valid
 * (strict) JSON, which ulc_hf_import then reports. */
int ulc_hf_is_supported(const char *dir);

ulc_status ulc_hf_import(const char *dir, ulc_model **out, ulc_ctx *ctx);

/* For a weights-only model (no nodes): when its tensor names are a known architecture's
 * (torchvision ResNet), builds the graph over them and sets *built; otherwise leaves the model
 * alone. Errors only when the names match but the tensors do not fit together. */
ulc_status ulc_hf_build_from_names(ulc_model *m, int *built, ulc_ctx *ctx);

/* A decoder with a cache for m, when m is a GPT2LMHeadModel ulc built from a checkpoint (a
 * Hugging Face directory, or a model saved from one: its metadata "ulc.hf_config" keeps
 * config.json): a new model whose initializers are m's weight tensors (shared, not copied: m
 * must outlive it and keep its weights while it is used), with optimum's past/present interface:
 *
 *   inputs   input_ids [batch, T], attention_mask [batch, P + T],
 *            past_key_values.{i}.key / .value f32 [batch, n_head, P, head_dim] (i < n_layer)
 *   outputs  logits [batch, T, vocab], present.{i}.key / .value [batch, n_head, P + T, head_dim]
 *            (the past with this call's keys and values appended on axis 2)
 *
 * Query t attends to keys 0 .. P + t; its position is sum(attention_mask) - T + t (P + t for a
 * mask of ones; a cache may hold empty slots masked with zeros). It computes what m computes:
 * the caller checks that on m's own logits where m may have been changed since (ulc_io_decoder,
 * io/model.h). *out is NULL (and ULC_OK) when m is not such a model; an error when its config
 * or weights do not fit together. The caller frees *out with ulc_model_free before m. */
ulc_status ulc_hf_build_decoder(const ulc_model *m, ulc_model **out, ulc_ctx *ctx);

#endif
