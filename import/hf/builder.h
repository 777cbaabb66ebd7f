/*
 * builder.h — the Hugging Face architectures' own blocks, on top of the graph builder
 * (ir/builder.h): the model header, checked checkpoint-weight lookups, and transformers'
 * linear/layernorm/activation/conv/batchnorm/attention blocks. gpt2.c, vit.c, clip.c and
 * resnet.c write transformers' eval forward with these and the ulc_gb_* calls.
 *
 *     ulc_gb b; hf_begin(&b, model, 17, "ulc", ctx);
 *     ulc_value *x = ulc_gb_input(&b, "input_ids", ULC_DT_I64, 2, (ulc_dim[]){{-1,"batch"},{-1,"seq"}});
 *     ulc_value *h = ulc_gb_op2(&b, "Gather", hf_weight(&b, "transformer.wte.weight", 2, NULL), x);
 *     ulc_gb_attr_int(&b, h, "axis", 0); ...
 *     ulc_gb_output(&b, logits, "logits", ...); return ulc_gb_finish(&b);
 *
 * Like the builder's, every helper returns NULL once an error is recorded (b->status).
 * Constants are named /scope/Constant_N (ULC_GB_NAMES_SCOPED) and flagged ULC_VALUE_CONSTANT.
 */
#ifndef ULC_IMPORT_HF_BUILDER_H
#define ULC_IMPORT_HF_BUILDER_H

#include <stdint.h>

#include "common/status.h"
#include "ir/builder.h"
#include "ir/graph.h"

/* A builder over m's graph (SCOPED names) that also writes m's header: ir_version 8, producer,
 * one opset of the default domain. */
void hf_begin(ulc_gb *b, ulc_model *m, int64_t opset, const char *producer, ulc_ctx *ctx);

/* A checkpoint tensor (must exist, with the given rank; dims checked when not NULL). */
ulc_value *hf_weight(ulc_gb *b, const char *name, int rank, const int64_t *dims);
ulc_value *hf_weightf(ulc_gb *b, int rank, const int64_t *dims, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

ulc_value *hf_linear_t(ulc_gb *b, ulc_value *x, ulc_value *w_out_in, ulc_value *bias); /* x @ W^T + b */
ulc_value *hf_linear(ulc_gb *b, ulc_value *x, ulc_value *w_in_out, ulc_value *bias);   /* x @ W + b */
ulc_value *hf_layernorm(ulc_gb *b, ulc_value *x, ulc_value *gamma, ulc_value *beta, float eps);
ulc_value *hf_gelu_erf(ulc_gb *b, ulc_value *x);
ulc_value *hf_gelu_tanh(ulc_gb *b, ulc_value *x);
ulc_value *hf_quick_gelu(ulc_gb *b, ulc_value *x);
/* An activation by its transformers name (ACT2FN): gelu, gelu_new, gelu_pytorch_tanh, gelu_fast,
 * quick_gelu, relu, silu, swish, tanh, sigmoid. hf_act_known says whether one is supported. */
int hf_act_known(const char *name);
ulc_value *hf_act(ulc_gb *b, ulc_value *x, const char *name);
/* NCHW convolution with a square k x k kernel, stride s, padding p on every side; bias may be NULL. */
ulc_value *hf_conv2d(ulc_gb *b, ulc_value *x, ulc_value *w, ulc_value *bias, int64_t k, int64_t s,
                     int64_t p);
/* Inference BatchNormalization over channel axis 1 with PREFIX.{weight,bias,running_mean,
 * running_var}, each [c]. */
ulc_value *hf_batchnorm(ulc_gb *b, ulc_value *x, const char *prefix, int64_t c, float eps);
/* ViT-style patch tokens: conv (kernel = stride = patch) of px [B, ch, H, W] into [B, N, C],
 * with `token` (any shape broadcasting to [B, 1, C]: a [1, 1, C] or [C] weight) prepended:
 * [B, N + 1, C]. bias may be NULL. */
ulc_value *hf_patch_tokens(ulc_gb *b, ulc_value *px, ulc_value *w, ulc_value *bias, int64_t patch,
                           int64_t c, ulc_value *token);
/* Multi-head attention over projected q, k, v (B, T, H*D) -> (B, T, H*D):
 * softmax(q k^T / sqrt(D) + bias1 + bias2) v, per head. scale_q: scale q by D^-1/2 before the
 * product (CLIP) instead of dividing the scores (ViT). bias1/bias2: NULL or additive masks that
 * broadcast to (B, H, T, T), added in that order. */
ulc_value *hf_attention(ulc_gb *b, ulc_value *q, ulc_value *k, ulc_value *v, int64_t heads,
                        int64_t head_dim, int scale_q, ulc_value *bias1, ulc_value *bias2);

#endif
