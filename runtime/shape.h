/*
 * shape.h — op-level shape facts, owned by the op, not by a backend: every backend, the planner
 * and ulc_analyze read the same table (STYLE.md: "shape rules belong to the op").
 *
 *   value_inputs  input slots whose *values* (not only shapes) decide the output shapes:
 *                 Reshape's shape, Slice's starts/ends/axes/steps, Range's scalars, … The
 *                 planner requires them to be known at plan time and keys plans by the bytes
 *                 of graph inputs that reach them.
 *   ULC_SHAPE_ONLY   the op reads its inputs' shapes only, never their data (Shape, Size): the
 *                    planner evaluates it at plan time whenever the shapes are known.
 *   ULC_SHAPE_ALIAS  output 0 is input 0's bytes under another shape (Identity, Reshape,
 *                    Flatten, Squeeze, Unsqueeze): the planner points the output at the input's
 *                    bytes and calls the kernel's run only when the node has other outputs;
 *                    then out[0]->data == in[0]->data and run must not copy output 0.
 *
 *   infer         the op's output dtypes and shapes, with every attribute, dtype and shape
 *                 error, naming the node.
 *
 * The table (shape.c) holds the facts; each family file of runtime/shape/ fills its ops' infer
 * (s_elementwise.c, s_movement.c, s_reduce.c, s_nn.c, s_grad.c). Decoders a rule shares with
 * the kernels of its op are in runtime/shape/params.h (params_ew.h for the elementwise ops).
 * No backend is needed to infer shapes: the planner and ulc_analyze ask this table, and a
 * backend only says whether it runs an op (its kernel table) and runs it.
 */
#ifndef ULC_RUNTIME_SHAPE_H
#define ULC_RUNTIME_SHAPE_H

#include <stdint.h>

#include "common/status.h"
#include "ir/op.h"
#include "runtime/kernel.h"

enum {
    ULC_SHAPE_ONLY = 1u << 0,
    ULC_SHAPE_ALIAS = 1u << 1
};

typedef struct ulc_shape_rule {
    uint32_t value_inputs; /* bit i set: input i's data decides the output shapes */
    unsigned flags;        /* ULC_SHAPE_* */
    /* From the inputs' dtypes and shapes (and, for the value_inputs slots, their data) sets every
     * present output's dtype, rank and dims; attribute, dtype and shape errors are reported
     * here, naming the node. Reads k's node, opset, inputs and outputs only. NULL: no rule. */
    ulc_status (*infer)(ulc_kctx *k);
} ulc_shape_rule;

/* The facts of op (all zero for an op with none, or out of range); never NULL. */
const ulc_shape_rule *ulc_shape_rule_of(ulc_op op);

#endif
