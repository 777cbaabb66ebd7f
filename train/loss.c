/* loss.c — losses as graph nodes (see loss.h). */
#include "train/loss.h"

#include <stdlib.h>
#include <string.h>

#include "train/grad.h"

int ulc_loss_parse(const char *s) {
    static const char *const names[] = {"ce", "soft-ce", "kl", "mse", "sq-l2", "entropy"};
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static ulc_value *sum_last(ulc_gb *b, ulc_value *x, int rank) {
    int64_t ax = rank - 1;
    return x ? ulc_gb_reduce_sum(b, x, 1, &ax, 0) : NULL;
}

static ulc_value *reduce_all(ulc_gb *b, const char *op, ulc_value *x) {
    ulc_value *r = ulc_gb_op1(b, op, x);
    if (r) ulc_gb_attr_int(b, r, "keepdims", 0);
    return r;
}

static ulc_value *log_softmax(ulc_gb *b, const char *op, ulc_value *z, int rank) {
    ulc_value *r = ulc_gb_op1(b, op, z);
    if (r) ulc_gb_attr_int(b, r, "axis", rank - 1);
    return r;
}

/* ulc's SoftmaxCrossEntropy (ir/ops_ulc.def) over z's last axis with labels y and/or soft targets
 * p: output `which` of (ce, lse, sce). */
static ulc_value *sce_op(ulc_gb *b, ulc_value *z, ulc_value *y, ulc_value *p, int which) {
    ulc_value *in[3] = {z, y, p}, *outs[3] = {NULL, NULL, NULL};
    if (!z || (!y && !p)) return NULL;
    ulc_gb_opn(b, ULC_DOMAIN, "SoftmaxCrossEntropy", p ? 3 : 2, in, p ? 3 : 2, outs);
    return outs[which];
}

ulc_status ulc_loss_build(ulc_graph *g, int64_t opset, ulc_loss_kind kind, ulc_value *z,
                          int rank, int64_t classes, ulc_value *target, ulc_value *weight,
                          const char *name, ulc_value **loss, ulc_ctx *ctx) {
    *loss = NULL;
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, g, opset, ULC_GB_NAMES_DERIVED, ctx);
    if (rank < 1) return ulc_fail(ctx, ULC_ERR_INVALID, "loss: '%s' has no class axis", z->name);
    if (kind != ULC_LOSS_ENTROPY && !target)
        return ulc_fail(ctx, ULC_ERR_INVALID, "loss: no target for '%s'", z->name);
    ulc_value *per_row = NULL, *total = NULL;
    switch (kind) {
    case ULC_LOSS_CROSS_ENTROPY: {
        /* ulc's fused op: the log-softmax and the one-hot target are never materialised (a
         * language model's [B·T, vocabulary] logits would need three such temporaries) */
        if (classes <= 0) return ulc_fail(ctx, ULC_ERR_INVALID, "loss: unknown class count");
        per_row = sce_op(b, z, target, NULL, 0);
        if (weight) per_row = ulc_gb_op2(b, "Mul", per_row, weight);
        /* rows whose label is a class count; the others (padding: -100) are ignored */
        int64_t zero = 0;
        ulc_value *lo = ulc_gb_op1(b, "Not", ulc_gb_op2(b, "Less", target, ulc_gb_vec_i64(b, 1, &zero)));
        ulc_value *hi = ulc_gb_op2(b, "Less", target, ulc_gb_vec_i64(b, 1, &classes));
        ulc_value *valid = ulc_gb_op1(b, "Cast", ulc_gb_op2(b, "And", lo, hi));
        if (valid) ulc_gb_attr_int(b, valid, "to", ULC_DT_F32);
        ulc_value *count = ulc_gb_op2(b, "Max", reduce_all(b, "ReduceSum", valid), ulc_gb_scalar_f32(b, 1.0f));
        total = ulc_gb_op2(b, "Div", reduce_all(b, "ReduceSum", per_row), count);
        break;
    }
    case ULC_LOSS_SOFT_CROSS_ENTROPY:
        per_row = sce_op(b, z, NULL, target, 2); /* -Σ p·log softmax(z) */
        break;
    case ULC_LOSS_KL: {
        ulc_value *zero = ulc_gb_scalar_f32(b, 0.0f);
        ulc_value *pos = ulc_gb_op2(b, "Greater", target, zero);
        ulc_value *plogp = ulc_gb_op2(b, "Mul", target, ulc_gb_op1(b, "Log", target));
        ulc_value *in[3] = {pos, plogp, zero};
        ulc_value *safe = pos && plogp && zero ? ulc_gb_opn(b, NULL, "Where", 3, in, 1, NULL) : NULL;
        /* Σ p log p (a constant of the target) + the fused -Σ p·log softmax(z) */
        per_row = ulc_gb_op2(b, "Add", sum_last(b, safe, rank), sce_op(b, z, NULL, target, 2));
        if (weight) per_row = ulc_gb_op2(b, "Mul", per_row, weight);
        /* batchmean: divide by the first dim, read at run time */
        int64_t zero_i = 0;
        ulc_value *bdim = ulc_gb_op2(b, "Gather", ulc_gb_shape(b, z), ulc_gb_vec_i64(b, 1, &zero_i));
        ulc_value *bf = ulc_gb_op1(b, "Cast", bdim);
        if (bf) ulc_gb_attr_int(b, bf, "to", ULC_DT_F32);
        total = ulc_gb_op2(b, "Div", reduce_all(b, "ReduceSum", per_row), bf);
        if (total) total = reduce_all(b, "ReduceSum", total); /* [1] → scalar */
        break;
    }
    case ULC_LOSS_MSE: {
        ulc_value *d = ulc_gb_op2(b, "Sub", z, target);
        total = reduce_all(b, "ReduceMean", ulc_gb_op2(b, "Mul", d, d));
        break;
    }
    case ULC_LOSS_SQ_L2: {
        ulc_value *d = ulc_gb_op2(b, "Sub", z, target);
        per_row = sum_last(b, ulc_gb_op2(b, "Mul", d, d), rank);
        break;
    }
    case ULC_LOSS_ENTROPY: {
        ulc_value *q = log_softmax(b, "Softmax", z, rank);
        ulc_value *lp = log_softmax(b, "LogSoftmax", z, rank);
        per_row = ulc_gb_op1(b, "Neg", sum_last(b, ulc_gb_op2(b, "Mul", q, lp), rank));
        break;
    }
    default: return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "loss: unknown kind %d", (int)kind);
    }
    if (!total) {
        if (per_row && weight && kind != ULC_LOSS_CROSS_ENTROPY && kind != ULC_LOSS_KL)
            per_row = ulc_gb_op2(b, "Mul", per_row, weight);
        total = reduce_all(b, "ReduceMean", per_row);
    }
    ulc_value *out = ulc_gb_named(b, total, name);
    if (!out) return ctx->status ? ctx->status : ULC_ERR_NOMEM;
    out->flags |= ULC_VALUE_LOSS;
    *loss = out;
    return ULC_OK;
}
