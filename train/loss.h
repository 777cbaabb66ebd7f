/*
 * loss.h — losses as graph: each call appends the nodes of one loss (plain ONNX ops, so
 * autodiff differentiates them with the ordinary rules) and returns a float32 scalar value.
 * The class axis is the last one; "rows" are every position before it ([B] or [B, T]).
 *
 *   cross_entropy      mean over rows with label >= 0 of −log softmax(z)[label]; rows whose
 *                      label is negative (−100, as torch's ignore_index) count for nothing
 *   soft_cross_entropy mean over rows of −Σ_c p_c log softmax(z)_c (p: target probabilities)
 *   kl                 Σ_rows Σ_c p_c (log p_c − log softmax(z)_c) / B, B = the first dim
 *                      (torch's reduction="batchmean"); p_c = 0 terms are 0 (0·log 0 = 0)
 *   mse                mean of (a − b)² over every element
 *   sq_l2              mean over rows of Σ_c (a − b)²  (squared L2 distance per row)
 *   entropy            mean over rows of −Σ_c softmax(z)_c log softmax(z)_c
 * `weight` (optional, float32 [rows...]) multiplies each row's term; means then divide by the
 * number of rows still (the caller chooses what the weights mean).
 */
#ifndef ULC_TRAIN_LOSS_H
#define ULC_TRAIN_LOSS_H

#include "common/status.h"
#include "ir/graph.h"

typedef enum ulc_loss_kind {
    ULC_LOSS_CROSS_ENTROPY = 0,
    ULC_LOSS_SOFT_CROSS_ENTROPY,
    ULC_LOSS_KL,
    ULC_LOSS_MSE,
    ULC_LOSS_SQ_L2,
    ULC_LOSS_ENTROPY
} ulc_loss_kind;

/* z: logits (or prediction) of rank `rank` and `classes` entries on the last axis; target:
 * int64 labels shaped like z without the last axis (CROSS_ENTROPY), float probabilities or
 * values shaped like z (SOFT_CROSS_ENTROPY, KL, MSE, SQ_L2), or NULL (ENTROPY). */
ulc_status ulc_loss_build(ulc_graph *g, int64_t opset, ulc_loss_kind kind, ulc_value *z,
                          int rank, int64_t classes, ulc_value *target, ulc_value *weight,
                          const char *name, ulc_value **loss, ulc_ctx *ctx);

/* "ce", "soft-ce", "kl", "mse", "sq-l2", "entropy" → kind; -1 if unknown. */
int ulc_loss_parse(const char *s);

#endif
