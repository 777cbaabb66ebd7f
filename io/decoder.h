/*
 * decoder.h — a text model's decoder with a cache (optimum's past/present interface), for greedy
 * decoding (eval/lm_eval.c):
 *
 *   inputs   input_ids [B, T], attention_mask [B, P + T] (when the model has one), position_ids
 *            [B, T] (optional), past_key_values.{i}.key / .value f32 [B, H, P, D], i < layers
 *   outputs  logits [B, T, V], present.{i}.key / .value [B, H, P + T, D]
 *
 * The model itself when it has that interface (an ONNX export with past, optimum's names); a
 * decoder built over its weights when it is a GPT-2 ulc built from a Hugging Face checkpoint
 * (import/hf/hf_import.h, ulc_hf_build_decoder); none otherwise.
 *
 *     ulc_decoder d;
 *     if (ulc_decoder_find(model, "m.onnx", &d, ctx) != ULC_OK) ...   // d.m NULL: no cache
 *     ...
 *     ulc_decoder_free(&d);
 */
#ifndef ULC_IO_DECODER_H
#define ULC_IO_DECODER_H

#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"

typedef struct ulc_decoder {
    const ulc_model *m;   /* the model that decodes with the cache: the model itself, or own */
    ulc_model *own;       /* a decoder built over the model's weights (NULL: the model is one) */
    int layers;           /* i of past_key_values.{i}.* : 0 .. layers-1 */
    int64_t heads, head_dim;
    const char *ids, *mask, *position_ids; /* input names (mask, position_ids: NULL if none) */
    /* Positions follow the attention mask (the built decoder, or position_ids fed): a cache may
     * hold empty slots masked with zeros, so its size can stay fixed. Otherwise a token's
     * position is the past's length and the cache grows by the tokens of each call. */
    int mask_positions;
} ulc_decoder;

/* The names of layer i's past and present tensors (kv 0: key, 1: value) into buf. */
const char *ulc_decoder_past(int i, int kv, char *buf, size_t n);
const char *ulc_decoder_present(int i, int kv, char *buf, size_t n);

/* Fills d for model m (path for messages): d->m NULL when m has no cache and none can be built.
 * A model with past_key_values inputs that do not make the interface (a layer without its
 * key, value or present output, ranks, dtypes, heads or head dims that differ) fails, naming
 * the model and the tensor. */
ulc_status ulc_decoder_find(const ulc_model *m, const char *path, ulc_decoder *d, ulc_ctx *ctx);
void ulc_decoder_free(ulc_decoder *d); /* frees the built decoder; accepts a zeroed d */

/* m's own interface only (nothing built): d->layers 0 when m has no past_key_values inputs;
 * a model whose cache inputs do not make the interface fails as ulc_decoder_find does. Data
 * binding (io/data.c) checks a model with past inputs with it before feeding them empty. */
ulc_status ulc_decoder_check(const ulc_model *m, const char *path, ulc_decoder *d, ulc_ctx *ctx);

/* 1 when input v is a cache input (past_key_values.*): fed by decoding, empty elsewhere. */
int ulc_decoder_is_past(const ulc_value *v);

#endif
