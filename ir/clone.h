/*
 * clone.h — a structural copy of a model that shares the weights of its source.
 *
 * Training builds its graph (forward + loss + backward) on a clone, so the model the user
 * exports never sees a gradient node, and the trainer can turn parameters into graph inputs
 * without touching the original. The clone copies nodes, values (names, flags, types,
 * shapes), graph inputs/outputs/initializers and opsets; it shares with the source the
 * ulc_tensor structs (initializer data), attribute arrays, strings and format extras. So:
 * the source must outlive the clone and stay unchanged while the clone is in use, and
 * attributes of cloned nodes must not be edited in place (nodes added to the clone are its
 * own).
 */
#ifndef ULC_IR_CLONE_H
#define ULC_IR_CLONE_H

#include "common/status.h"
#include "ir/graph.h"

ulc_status ulc_model_clone_shallow(const ulc_model *src, ulc_model **out, ulc_ctx *ctx);

#endif
