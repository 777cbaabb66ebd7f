/*
 * builder.h — the one way code builds graph: nodes with inputs, outputs and attributes, fresh
 * value names, constants, and the ops every builder needs (Shape, ReduceSum, Unsqueeze, ...).
 * The Hugging Face architectures (import/hf/), autodiff's backward rules, the losses, the
 * training graph and the unlearning methods all write with it; their own blocks (a linear
 * layer, a gradient's sum back to a broadcast shape) are thin functions on top.
 *
 *     ulc_gb b;
 *     ulc_gb_init(&b, g, 17, ULC_GB_NAMES_SCOPED, ctx);
 *     ulc_gb_scope(&b, "/encoder/layer.%d", i);
 *     ulc_value *y = ulc_gb_op2(&b, "MatMul", x, w);          // "/encoder/layer.0/MatMul_1"
 *     ulc_value *p = ulc_gb_op1(&b, "Softmax", y);
 *     ulc_gb_attr_int(&b, p, "axis", -1);                      // on p's producer
 *     ulc_value *h = ulc_gb_op2(&b, "Mul", p, ulc_gb_scalar_f32(&b, 0.5f));
 *     if (ulc_gb_finish(&b) != ULC_OK) ...                     // b.status; detail in ctx
 *
 * Errors are sticky: the first failure is recorded in b->status (and its detail in b->ctx), and
 * every later call returns NULL (or does nothing), so a builder can chain calls and check once.
 * An op given a NULL input (an earlier step failed, here or in the caller) returns NULL too.
 * Everything made lives in the graph's arena; constant bytes are owned by the graph.
 */
#ifndef ULC_IR_BUILDER_H
#define ULC_IR_BUILDER_H

#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"

/* How a builder names what it makes. */
typedef enum ulc_gb_naming {
    /* torch.onnx's: nodes SCOPE/Op_N, their outputs SCOPE/Op_N_output_K, constants
     * SCOPE/Constant_N; N counts nodes and constants together. */
    ULC_GB_NAMES_SCOPED = 0,
    /* Derived graph (backward, losses, rewrites): nodes ORIGIN/grad/Op.N, values
     * /ORIGIN/grad.Op.N and constants /ORIGIN/grad.const.N, after the origin node's name
     * ("ulc" without one); N counts every name asked for, and taken value names are skipped. */
    ULC_GB_NAMES_DERIVED
} ulc_gb_naming;

typedef struct ulc_gb {
    ulc_graph *g;
    ulc_ctx *ctx;
    int64_t opset;          /* default domain's: ReduceSum/Unsqueeze take axes as an input from 13 */
    ulc_status status;      /* the first failure, ULC_OK until then */
    ulc_gb_naming naming;
    char scope[256];        /* SCOPED: the node-name prefix, "/transformer/h.0/attn" */
    const ulc_node *origin; /* DERIVED: the node new names derive from (NULL: "ulc") */
    int counter;            /* the N in fresh names */
    ulc_node *last;         /* the node made last */
} ulc_gb;

void ulc_gb_init(ulc_gb *b, ulc_graph *g, int64_t opset, ulc_gb_naming naming, ulc_ctx *ctx);
void ulc_gb_scope(ulc_gb *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Records a failure (the first one sticks) with its message in b->ctx; returns b->status. */
ulc_status ulc_gb_fail(ulc_gb *b, ulc_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Verifies the graph (when nothing failed); returns b->status. */
ulc_status ulc_gb_finish(ulc_gb *b);

/* ---- nodes ------------------------------------------------------------------------------------ */

/* The node primitive: appends op (domain as given: NULL or "" for ONNX's) named `name` (NULL: a
 * fresh name) with inputs in[0..n_in) (NULL: a missing optional input) and n_out outputs:
 * outs[k] when outs and outs[k] are given (a value without a producer), else a fresh value
 * stored into outs[k] (when outs is given). Returns the node, or NULL. */
ulc_node *ulc_gb_node(ulc_gb *b, const char *domain, const char *op, const char *name, int n_in,
                      ulc_value *const *in, int n_out, ulc_value **outs);
/* Fresh-named node of op (domain NULL = ONNX's) with n_out fresh outputs (into outs when not
 * NULL); returns output 0. NULL inputs are missing optional inputs. */
ulc_value *ulc_gb_opn(ulc_gb *b, const char *domain, const char *op, int n_in,
                      ulc_value *const *in, int n_out, ulc_value **outs);
/* An ONNX node with n inputs (none NULL) and one output; returns the output. */
ulc_value *ulc_gb_op(ulc_gb *b, const char *op, int n, ulc_value *const *in);
ulc_value *ulc_gb_op1(ulc_gb *b, const char *op, ulc_value *x);
ulc_value *ulc_gb_op2(ulc_gb *b, const char *op, ulc_value *x, ulc_value *y);
ulc_value *ulc_gb_op3(ulc_gb *b, const char *op, ulc_value *x, ulc_value *y, ulc_value *z);
/* Identity(v) into a new value called `name`, made by a node of that name (a loss's output). */
ulc_value *ulc_gb_named(ulc_gb *b, ulc_value *v, const char *name);

/* ---- attributes, on the node that produced v (nothing when v is NULL) ------------------------- */

void ulc_gb_attr_int(ulc_gb *b, ulc_value *v, const char *name, int64_t i);
void ulc_gb_attr_float(ulc_gb *b, ulc_value *v, const char *name, float f);
void ulc_gb_attr_ints(ulc_gb *b, ulc_value *v, const char *name, int n, const int64_t *ints);
void ulc_gb_attr_string(ulc_gb *b, ulc_value *v, const char *name, const char *s);
/* A copy of attribute a (an INTS list copied; other payloads shared). */
void ulc_gb_attr_put(ulc_gb *b, ulc_value *v, const ulc_attr *a);
/* Copies every attribute of src but those named in skip (NULL-terminated; NULL: none). */
void ulc_gb_attr_copy(ulc_gb *b, ulc_value *v, const ulc_node *src, const char *const *skip);

/* ---- graph inputs, outputs, initializers, constants ------------------------------------------- */

ulc_value *ulc_gb_input(ulc_gb *b, const char *name, int dtype, int rank, const ulc_dim *dims);
/* Renames v (a node's output) to the public name and lists it as a graph output. */
void ulc_gb_output(ulc_gb *b, ulc_value *v, const char *name, int dtype, int rank,
                   const ulc_dim *dims);
/* Makes v an initializer of data (malloc'd, nbytes; taken over, freed on failure); returns v. */
ulc_value *ulc_gb_set_init(ulc_gb *b, ulc_value *v, int dtype, int rank, const int64_t *dims,
                           void *data, size_t nbytes);
/* A new initializer flagged ULC_VALUE_CONSTANT holding a copy of data: named `name`, or a fresh
 * name (ulc_gb_const). */
ulc_value *ulc_gb_const_as(ulc_gb *b, const char *name, int dtype, int rank, const int64_t *dims,
                           const void *data);
ulc_value *ulc_gb_const(ulc_gb *b, int dtype, int rank, const int64_t *dims, const void *data);
ulc_value *ulc_gb_const_f32(ulc_gb *b, int rank, const int64_t *dims, const float *data);
ulc_value *ulc_gb_const_i64(ulc_gb *b, int rank, const int64_t *dims, const int64_t *data);
ulc_value *ulc_gb_scalar_f32(ulc_gb *b, float v);
ulc_value *ulc_gb_vec_i64(ulc_gb *b, int n, const int64_t *v); /* 1-D int64 [n] */

/* ---- common ops ------------------------------------------------------------------------------- */

ulc_value *ulc_gb_shape(ulc_gb *b, ulc_value *x);                      /* Shape(x) */
ulc_value *ulc_gb_dim(ulc_gb *b, ulc_value *x, int64_t axis);           /* Shape(x)[axis], scalar */
ulc_value *ulc_gb_reshape_like(ulc_gb *b, ulc_value *x, ulc_value *like); /* Reshape(x, Shape(like)) */
ulc_value *ulc_gb_transpose(ulc_gb *b, ulc_value *x, int n, const int64_t *perm);
/* Axes as an input (opset >= 13) or as the attribute (older opsets). */
ulc_value *ulc_gb_reduce_sum(ulc_gb *b, ulc_value *x, int n, const int64_t *axes, int keepdims);
ulc_value *ulc_gb_unsqueeze(ulc_gb *b, ulc_value *x, int n, const int64_t *axes);
/* Gemm(a, b) of float32 operands; before opset 11, where C is required, with C a scalar 0. */
ulc_value *ulc_gb_gemm(ulc_gb *b, ulc_value *a, ulc_value *y);

#endif
