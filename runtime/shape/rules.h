/*
 * rules.h — what the shape-rule files of runtime/shape/ share: each family file fills its ops'
 * `infer` in the table of runtime/shape/table.c (whose entries already carry the op-level facts).
 * Private to runtime/shape/.
 */
#ifndef ULC_RUNTIME_SHAPE_RULES_H
#define ULC_RUNTIME_SHAPE_RULES_H

#include "runtime/kutil.h"
#include "runtime/shape.h"
#include "runtime/shape/params.h"

void ulc_shape_register_elementwise(ulc_shape_rule *table); /* s_elementwise.c */
void ulc_shape_register_movement(ulc_shape_rule *table);    /* s_movement.c */
void ulc_shape_register_reduce(ulc_shape_rule *table);      /* s_reduce.c */
void ulc_shape_register_nn(ulc_shape_rule *table);          /* s_nn.c */
void ulc_shape_register_grad(ulc_shape_rule *table);        /* s_grad.c */
void ulc_shape_register_loss(ulc_shape_rule *table);        /* s_loss.c */
void ulc_shape_register_attn(ulc_shape_rule *table);        /* s_attn.c */

#endif
