/*
 * autodiff.h — reverse-mode differentiation as more graph (DESIGN.md §3).
 *
 * ulc_autodiff walks the nodes that lie between the parameters and the loss in reverse order
 * and appends, for each, the nodes of its backward rule (train/grad_rules.c): plain ONNX ops
 * where they say it well (Mul, ReduceSum, MatMul, Transpose, …) and ulc's own gradient ops
 * (domain "ulc", ir/ops_ulc.def) where they do not. A value read by several nodes gets the sum
 * of their contributions. Inputs that carry no gradient (integer indices, shapes, anything
 * that does not depend on a parameter) get no backward work; frozen weights get none either —
 * only the input gradient their node passes on.
 *
 *     ulc_value *grads[n];
 *     ulc_autodiff(g, opset, loss, n, params, shapes, n_shapes, grads, ctx);
 *     // grads[i]: a new value holding d loss / d params[i] (NULL if the loss does not depend
 *     // on it); make them graph outputs to read them.
 *
 * The graph must have concrete shapes for the given bindings (the same as ulc_analyze's): the
 * rules read ranks and broadcast patterns from the analysis, but compute every size that
 * depends on the batch at run time (Shape/Size nodes the planner folds), so the backward graph
 * also runs on a different batch size (the last partial batch).
 */
#ifndef ULC_TRAIN_AUTODIFF_H
#define ULC_TRAIN_AUTODIFF_H

#include "common/status.h"
#include "ir/graph.h"
#include "runtime/runtime.h"

ulc_status ulc_autodiff(ulc_graph *g, int64_t opset, ulc_value *loss, int n_wrt,
                        ulc_value *const *wrt, const ulc_rt_binding *shapes, int n_shapes,
                        ulc_value **grads, ulc_ctx *ctx);

/* 1 if autodiff has a backward rule for op (the gradient checks loop over these). */
int ulc_autodiff_has_rule(ulc_op op);

#endif
