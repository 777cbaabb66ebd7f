/* table.c — the table of op-level shape facts (shape.h), indexed by op. Ops not listed have
 * none: their output shapes follow from their inputs' shapes and attributes alone. */
#include <pthread.h>

#include "runtime/shape/rules.h"

#define BIT(i) (1u << (i))

static ulc_shape_rule g_rules[ULC_OP_COUNT_] = {
    /* views */
    [ULC_OP_Identity] = {0, ULC_SHAPE_ALIAS, NULL},
    [ULC_OP_Reshape] = {BIT(1), ULC_SHAPE_ALIAS, NULL},   /* shape */
    [ULC_OP_Flatten] = {0, ULC_SHAPE_ALIAS, NULL},
    [ULC_OP_Squeeze] = {BIT(1), ULC_SHAPE_ALIAS, NULL},   /* axes (opset 13) */
    [ULC_OP_Unsqueeze] = {BIT(1), ULC_SHAPE_ALIAS, NULL}, /* axes (opset 13) */
    /* metadata */
    [ULC_OP_Shape] = {0, ULC_SHAPE_ONLY, NULL},
    [ULC_OP_Size] = {0, ULC_SHAPE_ONLY, NULL},
    /* shapes given as values */
    [ULC_OP_ConstantOfShape] = {BIT(0), 0, NULL},            /* shape */
    [ULC_OP_Range] = {BIT(0) | BIT(1) | BIT(2), 0, NULL},    /* start, limit, delta */
    [ULC_OP_Split] = {BIT(1), 0, NULL},                      /* split (opset 13) */
    [ULC_OP_Slice] = {BIT(1) | BIT(2) | BIT(3) | BIT(4), 0, NULL}, /* starts, ends, axes, steps */
    [ULC_OP_Expand] = {BIT(1), 0, NULL},                     /* shape */
    [ULC_OP_Tile] = {BIT(1), 0, NULL},                       /* repeats */
    [ULC_OP_Pad] = {BIT(1) | BIT(3), 0, NULL},               /* pads, axes */
    [ULC_OP_ReduceSum] = {BIT(1), 0, NULL},                  /* axes (input form) */
    [ULC_OP_ReduceMean] = {BIT(1), 0, NULL},
    [ULC_OP_ReduceMax] = {BIT(1), 0, NULL},
    [ULC_OP_ReduceMin] = {BIT(1), 0, NULL},
    [ULC_OP_ReduceProd] = {BIT(1), 0, NULL},
    [ULC_OP_ReduceL1] = {BIT(1), 0, NULL},
    [ULC_OP_ReduceL2] = {BIT(1), 0, NULL},
    [ULC_OP_ReduceSumSquare] = {BIT(1), 0, NULL},
    [ULC_OP_ReduceLogSum] = {BIT(1), 0, NULL},
    [ULC_OP_ReduceLogSumExp] = {BIT(1), 0, NULL},
    /* ulc's gradient ops (ir/ops_ulc.def) */
    [ULC_OP_GatherGrad] = {BIT(2), 0, NULL},      /* the data's shape */
    [ULC_OP_AveragePoolGrad] = {BIT(1), 0, NULL}, /* the input's shape */
    [ULC_OP_ConvGradData] = {BIT(2), 0, NULL},    /* the input's shape */
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fill_rules(void) {
    ulc_shape_register_elementwise(g_rules);
    ulc_shape_register_movement(g_rules);
    ulc_shape_register_reduce(g_rules);
    ulc_shape_register_nn(g_rules);
    ulc_shape_register_grad(g_rules);
    ulc_shape_register_loss(g_rules);
    ulc_shape_register_attn(g_rules);
}

const ulc_shape_rule *ulc_shape_rule_of(ulc_op op) {
    static const ulc_shape_rule none = {0, 0, NULL};
    if ((int)op <= (int)ULC_OP_UNKNOWN || (int)op >= (int)ULC_OP_COUNT_) return &none;
    pthread_once(&g_once, fill_rules);
    return &g_rules[op];
}
