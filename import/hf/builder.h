/*
 * builder.h — small helpers for building ONNX-semantics graphs in C: the Hugging Face
 * architecture builders (gpt2.c, ...) write transformers' forward pass with these.
 *
 *     hb b; hb_init(&b, model, ctx);
 *     ulc_value *x = hb_input(&b, "input_ids", ULC_DT_I64, 2, (ulc_dim[]){{-1,"batch"},{-1,"seq"}});
 *     ulc_value *h = hb_op2(&b, "Gather", hb_weight(&b, "transformer.wte.weight"), x);
 *     hb_attr_int(&b, h, "axis", 0); ...
 *     hb_output(&b, logits, "logits");
 *
 * Every helper returns NULL once an error is recorded (b.status), so a builder can chain calls
 * and check once at the end.
 */
#ifndef ULC_IMPORT_HF_BUILDER_H
#define ULC_IMPORT_HF_BUILDER_H

#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"

typedef struct hb {
    ulc_model *m;
    ulc_graph *g;
    ulc_ctx *ctx;
    ulc_status status;
    char scope[256]; /* node-name prefix, "/transformer/h.0/attn" */
    int counter;
} hb;

void hb_init(hb *b, ulc_model *m, int64_t opset, const char *producer, ulc_ctx *ctx);
void hb_scope(hb *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Graph input / output. */
ulc_value *hb_input(hb *b, const char *name, int dtype, int rank, const ulc_dim *dims);
void hb_output(hb *b, ulc_value *v, const char *name, int dtype, int rank, const ulc_dim *dims);

/* A checkpoint tensor (must exist, with the given rank; dims checked when not NULL). */
ulc_value *hb_weight(hb *b, const char *name, int rank, const int64_t *dims);
ulc_value *hb_weightf(hb *b, int rank, const int64_t *dims, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* New constants (named after the scope). */
ulc_value *hb_const_f32(hb *b, int rank, const int64_t *dims, const float *data);
ulc_value *hb_const_i64(hb *b, int rank, const int64_t *dims, const int64_t *data);
ulc_value *hb_scalar_f32(hb *b, float v);
ulc_value *hb_vec_i64(hb *b, int n, const int64_t *v);

/* A node with n inputs and one output; returns the output. The node is b's last node. */
ulc_value *hb_op(hb *b, const char *op_type, int n, ulc_value *const *inputs);
ulc_value *hb_op1(hb *b, const char *op_type, ulc_value *x);
ulc_value *hb_op2(hb *b, const char *op_type, ulc_value *x, ulc_value *y);
ulc_value *hb_op3(hb *b, const char *op_type, ulc_value *x, ulc_value *y, ulc_value *z);
/* A node with several outputs (Split); outs receives n_out values. */
int hb_op_multi(hb *b, const char *op_type, int n_in, ulc_value *const *inputs, int n_out,
                ulc_value **outs);

/* Attributes on the node that produced v (reserved capacity: 4 per node). */
void hb_attr_int(hb *b, ulc_value *v, const char *name, int64_t i);
void hb_attr_float(hb *b, ulc_value *v, const char *name, float f);
void hb_attr_ints(hb *b, ulc_value *v, const char *name, int n, const int64_t *ints);

/* Composite helpers used by several architectures. */
ulc_value *hb_linear_t(hb *b, ulc_value *x, ulc_value *w_out_in, ulc_value *bias); /* x @ W^T + b */
ulc_value *hb_linear(hb *b, ulc_value *x, ulc_value *w_in_out, ulc_value *bias);   /* x @ W + b */
ulc_value *hb_layernorm(hb *b, ulc_value *x, ulc_value *gamma, ulc_value *beta, float eps);
ulc_value *hb_gelu_erf(hb *b, ulc_value *x);
ulc_value *hb_gelu_tanh(hb *b, ulc_value *x);
ulc_value *hb_quick_gelu(hb *b, ulc_value *x);
/* An activation by its transformers name (ACT2FN): gelu, gelu_new, gelu_pytorch_tanh, gelu_fast,
 * quick_gelu, relu, silu, swish, tanh, sigmoid. hb_act_known says whether one is supported. */
int hb_act_known(const char *name);
ulc_value *hb_act(hb *b, ulc_value *x, const char *name);
/* NCHW convolution with a square k x k kernel, stride s, padding p on every side; bias may be NULL. */
ulc_value *hb_conv2d(hb *b, ulc_value *x, ulc_value *w, ulc_value *bias, int64_t k, int64_t s,
                     int64_t p);
/* Inference BatchNormalization over channel axis 1 with PREFIX.{weight,bias,running_mean,
 * running_var}, each [c]. */
ulc_value *hb_batchnorm(hb *b, ulc_value *x, const char *prefix, int64_t c, float eps);
/* ViT-style patch tokens: conv (kernel = stride = patch) of px [B, ch, H, W] into [B, N, C],
 * with `token` (any shape broadcasting to [B, 1, C]: a [1, 1, C] or [C] weight) prepended:
 * [B, N + 1, C]. bias may be NULL. */
ulc_value *hb_patch_tokens(hb *b, ulc_value *px, ulc_value *w, ulc_value *bias, int64_t patch,
                           int64_t c, ulc_value *token);
/* Dimension `axis` of x at run time, as an int64 scalar. */
ulc_value *hb_dim(hb *b, ulc_value *x, int64_t axis);
/* Multi-head attention over projected q, k, v (B, T, H*D) -> (B, T, H*D):
 * softmax(q k^T / sqrt(D) + bias1 + bias2) v, per head. scale_q: scale q by D^-1/2 before the
 * product (CLIP) instead of dividing the scores (ViT). bias1/bias2: NULL or additive masks that
 * broadcast to (B, H, T, T), added in that order. */
ulc_value *hb_attention(hb *b, ulc_value *q, ulc_value *k, ulc_value *v, int64_t heads,
                        int64_t head_dim, int scale_q, ulc_value *bias1, ulc_value *bias2);

/* Finishes: verifies the graph; returns b->status. */
ulc_status hb_finish(hb *b);

#endif
