/* shape.c — the table of op-level shape facts (shape.h), indexed by op. Ops not listed have
 * none: their output shapes follow from their inputs' shapes and attributes alone. */
#include "runtime/shape.h"

#define BIT(i) (1u << (i))

static const ulc_shape_rule g_rules[ULC_OP_COUNT_] = {
    /* views */
    [ULC_OP_Identity] = {0, ULC_SHAPE_ALIAS},
    [ULC_OP_Reshape] = {BIT(1), ULC_SHAPE_ALIAS},   /* shape */
    [ULC_OP_Flatten] = {0, ULC_SHAPE_ALIAS},
    [ULC_OP_Squeeze] = {BIT(1), ULC_SHAPE_ALIAS},   /* axes (opset 13) */
    [ULC_OP_Unsqueeze] = {BIT(1), ULC_SHAPE_ALIAS}, /* axes (opset 13) */
    /* metadata */
    [ULC_OP_Shape] = {0, ULC_SHAPE_ONLY},
    [ULC_OP_Size] = {0, ULC_SHAPE_ONLY},
    /* shapes given as values */
    [ULC_OP_ConstantOfShape] = {BIT(0), 0},            /* shape */
    [ULC_OP_Range] = {BIT(0) | BIT(1) | BIT(2), 0},    /* start, limit, delta */
    [ULC_OP_Split] = {BIT(1), 0},                      /* split (opset 13) */
    [ULC_OP_Slice] = {BIT(1) | BIT(2) | BIT(3) | BIT(4), 0}, /* starts, ends, axes, steps */
    [ULC_OP_Expand] = {BIT(1), 0},                     /* shape */
    [ULC_OP_Tile] = {BIT(1), 0},                       /* repeats */
    [ULC_OP_Pad] = {BIT(1) | BIT(3), 0},               /* pads, axes */
    [ULC_OP_ReduceSum] = {BIT(1), 0},                  /* axes (input form) */
    [ULC_OP_ReduceMean] = {BIT(1), 0},
    [ULC_OP_ReduceMax] = {BIT(1), 0},
    [ULC_OP_ReduceMin] = {BIT(1), 0},
    [ULC_OP_ReduceProd] = {BIT(1), 0},
    [ULC_OP_ReduceL1] = {BIT(1), 0},
    [ULC_OP_ReduceL2] = {BIT(1), 0},
    [ULC_OP_ReduceSumSquare] = {BIT(1), 0},
    [ULC_OP_ReduceLogSum] = {BIT(1), 0},
    [ULC_OP_ReduceLogSumExp] = {BIT(1), 0},
    /* ulc's gradient ops (ir/ops_ulc.def) */
    [ULC_OP_GatherGrad] = {BIT(2), 0},      /* the data's shape */
    [ULC_OP_AveragePoolGrad] = {BIT(1), 0}, /* the input's shape */
    [ULC_OP_ConvGradData] = {BIT(2), 0},    /* the input's shape */
};

const ulc_shape_rule *ulc_shape_rule_of(ulc_op op) {
    static const ulc_shape_rule none = {0, 0};
    if ((int)op <= (int)ULC_OP_UNKNOWN || (int)op >= (int)ULC_OP_COUNT_) return &none;
    return &g_rules[op];
}
