/*
 * lora_placement.h — where LoRA adapters go when the user names no layers.
 */
#ifndef ULC_PASSES_LORA_PLACEMENT_H
#define ULC_PASSES_LORA_PLACEMENT_H

#include "common/status.h"
#include "ir/graph.h"

/* RFA's adapter placement for a graph (lora-inject{placement=rfa}, and the forget spec's
 * default): the Conv nodes inside residual blocks (on one
 * branch of a residual Add, not the other: the stem and the head are outside) when there are
 * any; otherwise the linear layers (MatMul/Gemm with a weight initializer) that feed a GELU or
 * read one (a transformer's FFN) plus the layer that produces the output (the head). Writes
 * the base node names as a '|'-separated list for lora-inject's nodes= option into a malloc'd
 * string (*out); 0 nodes is an error naming the model. */
ulc_status ulc_lora_rfa_nodes(const ulc_model *m, char **out, int *count, ulc_ctx *ctx);

#endif
