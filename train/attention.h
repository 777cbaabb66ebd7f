/*
 * attention.h — attention as one node in graphs that are about to be differentiated.
 *
 * ulc_train_fuse_attention replaces each
 *
 *     S = MatMul(Q, Kᵀ) → [Div | Mul by a scalar, Cast to float, Where(mask, S, fill), Add(mask)]*
 *       → Softmax over the last axis → [Cast to float] → O = MatMul(P, V)
 *
 * (ViT's, CLIP's and GPT-2's spellings, as runtime/attn.c fuses them for inference) by one ulc
 * Attention node (ir/ops_ulc.def), whose backward is one AttentionGrad: the probabilities are
 * recomputed block by block instead of being kept for the backward pass, so a training step
 * holds no [.., T, T] tensor, and the backward is five products per head instead of a dozen
 * nodes. Intermediates must have no other reader and not be graph outputs (a tapped attention
 * map keeps its nodes), and masks must not depend on what is differentiated (wrt: a learned
 * attention bias trains through the nodes). The shapes come from an analysis under the bindings;
 * *fused counts the rewrites. ULC_NO_ATTENTION_FUSION=1 keeps the nodes (as it does for inference).
 */
#ifndef ULC_TRAIN_ATTENTION_H
#define ULC_TRAIN_ATTENTION_H

#include "common/status.h"
#include "ir/graph.h"
#include "runtime/runtime.h"

ulc_status ulc_train_fuse_attention(ulc_graph *g, int64_t opset, const ulc_rt_binding *bs, int nb,
                                    ulc_value *const *wrt, int n_wrt, int *fused, ulc_ctx *ctx);

#endif
