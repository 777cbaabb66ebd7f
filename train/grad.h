/*
 * grad.h — what a backward rule sees (internal to passes/: autodiff.c and grad_*.c).
 *
 * A rule gets the forward node, the gradient of each of its outputs (NULL: that output does
 * not reach the loss) and which inputs want a gradient; it appends nodes through the builder
 * and returns the gradient of each wanted input (leaving NULL means "no gradient flows": the
 * input is treated as constant — only allowed for non-differentiable inputs; autodiff checks).
 * Builders fail through b->ctx and return NULL; rules return ULC_ERR_* after a failure.
 */
#ifndef ULC_TRAIN_GRAD_H
#define ULC_TRAIN_GRAD_H

#include "ir/graph.h"
#include "runtime/runtime.h"

typedef struct ulc_gb {
    ulc_graph *g;
    int64_t opset;
    const ulc_analysis *a; /* shapes (and constants) of the forward values */
    int n_forward;         /* values with id < n_forward existed when `a` was made */
    ulc_ctx *ctx;
    const ulc_node *cur;   /* the forward node whose rule is running (for names, messages) */
    int serial;            /* for unique names */
    ulc_node *last;        /* the node gb_node made last (gb_attr_* add to it) */
} ulc_gb;

typedef ulc_status (*ulc_grad_rule)(ulc_gb *b, const ulc_node *n, ulc_value *const *dy,
                                    const int *want, ulc_value **dx);

/* The rule for op, or NULL (grad_rules.c). */
ulc_grad_rule ulc_grad_rule_for(ulc_op op);

/* ---- building nodes -------------------------------------------------------------------------- */

/* A new node of op (domain NULL/"" or "ulc") with the given inputs (NULL = missing optional),
 * n_out fresh outputs (returned in outs, may be NULL when n_out == 1 and only the return value
 * is wanted); returns output 0. Attributes are added with the gb_attr_* calls right after. */
ulc_value *gb_node(ulc_gb *b, const char *domain, const char *op, int n_in,
                   ulc_value *const *in, int n_out, ulc_value **outs);
ulc_node *gb_last(ulc_gb *b); /* the node gb_node just made */
void gb_attr_int(ulc_gb *b, const char *name, int64_t v);
void gb_attr_float(ulc_gb *b, const char *name, float v);
void gb_attr_ints(ulc_gb *b, const char *name, const int64_t *v, int n);
void gb_attr_string(ulc_gb *b, const char *name, const char *s);
/* Copies every attribute of the forward node src onto the last node (except those listed in
 * skip, NULL-terminated). */
void gb_attr_copy(ulc_gb *b, const ulc_node *src, const char *const *skip);

ulc_value *gb_unary(ulc_gb *b, const char *op, ulc_value *x);
ulc_value *gb_binary(ulc_gb *b, const char *op, ulc_value *x, ulc_value *y);
/* Constants (initializers flagged ULC_VALUE_CONSTANT). */
ulc_value *gb_const_f32(ulc_gb *b, float v);                      /* a scalar */
ulc_value *gb_const_i64s(ulc_gb *b, const int64_t *v, int n);     /* a 1-D int64 */
ulc_value *gb_const_f32_like(ulc_gb *b, float v, const ulc_value *like); /* scalar, like's dtype */
ulc_value *gb_shape(ulc_gb *b, ulc_value *x);                      /* Shape(x) */
ulc_value *gb_reduce_sum(ulc_gb *b, ulc_value *x, const int64_t *axes, int n, int keepdims);
ulc_value *gb_unsqueeze(ulc_gb *b, ulc_value *x, const int64_t *axes, int n);
ulc_value *gb_reshape_like(ulc_gb *b, ulc_value *x, ulc_value *like); /* Reshape(x, Shape(like)) */
ulc_value *gb_transpose(ulc_gb *b, ulc_value *x, const int64_t *perm, int n);
/* dy (the gradient of forward value y, so shaped like y) summed down to the shape of forward
 * value x (numpy broadcasting undone); dy itself when the shapes agree. */
ulc_value *gb_sum_to(ulc_gb *b, ulc_value *dy, const ulc_value *y, const ulc_value *x);

/* Forward shape facts from the analysis: rank (-1 unknown) and dims (NULL unknown). */
int gb_rank(ulc_gb *b, const ulc_value *v);
const int64_t *gb_dims(ulc_gb *b, const ulc_value *v);
/* A constant's int64 values (from the analysis or an initializer): count, or -1 if unknown. */
int gb_const_ints(ulc_gb *b, const ulc_value *v, int64_t *out, int max);
/* Attribute helpers on forward nodes. */
int64_t gb_attr_i(const ulc_node *n, const char *name, int64_t def);
float gb_attr_f(const ulc_node *n, const char *name, float def);
int gb_attr_is(const ulc_node *n, const char *name, int64_t *out, int max); /* ints: count or -1 */

/* Fails with "autodiff: <node label>: <message>". */
ulc_status gb_fail(ulc_gb *b, ulc_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
