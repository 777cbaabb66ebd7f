/*
 * grad.h — what a backward rule sees (internal to train/: autodiff.c and grad_rules.c).
 *
 * A rule gets the forward node, the gradient of each of its outputs (NULL: that output does
 * not reach the loss) and which inputs want a gradient; it appends nodes through the graph
 * builder (ir/builder.h) and returns the gradient of each wanted input (leaving NULL means "no gradient flows": the
 * input is treated as constant — only allowed for non-differentiable inputs; autodiff checks).
 * Builders fail through b->ctx and return NULL; rules return ULC_ERR_* after a failure.
 */
#ifndef ULC_TRAIN_GRAD_H
#define ULC_TRAIN_GRAD_H

#include "ir/builder.h"
#include "ir/graph.h"
#include "runtime/runtime.h"

/* What autodiff's rules build with: the graph builder (DERIVED names after the forward node
 * whose rule runs, b.origin) and the forward analysis. A rule's `ulc_gb *b` is always the `b`
 * of a ulc_grad (the ulc_grad_* helpers below reach the analysis through it). */
typedef struct ulc_grad {
    ulc_gb b;              /* first: rules and helpers get &grad.b */
    const ulc_analysis *a; /* shapes (and constants) of the forward values */
    int n_forward;         /* values with id < n_forward existed when `a` was made */
} ulc_grad;

typedef ulc_status (*ulc_grad_rule)(ulc_gb *b, const ulc_node *n, ulc_value *const *dy,
                                    const int *want, ulc_value **dx);

/* The rule for op, or NULL (grad_rules.c). */
ulc_grad_rule ulc_grad_rule_for(ulc_op op);

/* Nodes, attributes and constants: ir/builder.h (ulc_gb_opn, ulc_gb_op1/2, ulc_gb_attr_*,
 * ulc_gb_scalar_f32, ulc_gb_vec_i64, ulc_gb_reduce_sum, ...). What only gradients need: */

/* A scalar constant v in like's dtype (float64 when the forward value is, else float32). */
ulc_value *ulc_grad_const_like(ulc_gb *b, float v, const ulc_value *like);
/* x cast to forward value like's dtype: CastLike from opset 15, before it Cast to the dtype the
 * analysis gives like (float32 when unknown). */
ulc_value *ulc_grad_cast_like(ulc_gb *b, ulc_value *x, const ulc_value *like);
/* dy (the gradient of forward value y, so shaped like y) summed down to the shape of forward
 * value x (numpy broadcasting undone); dy itself when the shapes agree. */
ulc_value *ulc_grad_sum_to(ulc_gb *b, ulc_value *dy, const ulc_value *y, const ulc_value *x);

/* Forward shape facts from the analysis: rank (-1 unknown) and dims (NULL unknown). */
int ulc_grad_rank(ulc_gb *b, const ulc_value *v);
const int64_t *ulc_grad_dims(ulc_gb *b, const ulc_value *v);
/* A constant's int64 values (from the analysis or an initializer): count, or -1 if unknown. */
int ulc_grad_const_ints(ulc_gb *b, const ulc_value *v, int64_t *out, int max);
/* Attribute helpers on forward nodes. */
int64_t ulc_grad_attr_i(const ulc_node *n, const char *name, int64_t def);
float ulc_grad_attr_f(const ulc_node *n, const char *name, float def);
int ulc_grad_attr_is(const ulc_node *n, const char *name, int64_t *out, int max); /* ints: count or -1 */

/* Fails with "autodiff: <node label>: <message>". */
ulc_status ulc_grad_fail(ulc_gb *b, ulc_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
