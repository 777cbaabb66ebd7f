/*
 * op.h — operator identities. ULC_OP_<Name> for every op in ops.def (ONNX default domain);
 * ULC_OP_<Name> for ulc's own gradient ops (domain "ulc", ops_ulc.def);
 * ULC_OP_UNKNOWN for anything else (other domains, future ops), which the IR keeps and writes
 * back untouched; only executing such an op is an error.
 */
#ifndef ULC_IR_OP_H
#define ULC_IR_OP_H

typedef enum ulc_op {
    ULC_OP_UNKNOWN = 0,
#define X(name) ULC_OP_##name,
#include "ir/ops.def"
#undef X
    ULC_OP_ULC_FIRST_, /* ulc's own ops (domain "ulc", ir/ops_ulc.def) follow */
#define X(name) ULC_OP_##name,
#include "ir/ops_ulc.def"
#undef X
    ULC_OP_COUNT_
} ulc_op;

#define ULC_DOMAIN "ulc" /* the domain of ulc's own (gradient) ops */
#define ULC_ATTENTION_MAX_OPS 4 /* score transforms one ulc Attention applies (ops_ulc.def) */

/* Looks an op up by domain and op_type. domain NULL, "" and "ai.onnx" are the default domain;
 * "ulc" is ulc's own; every other domain is ULC_OP_UNKNOWN. */
ulc_op ulc_op_lookup(const char *domain, const char *op_type);
const char *ulc_op_name(ulc_op op); /* "Unknown" for ULC_OP_UNKNOWN */
const char *ulc_op_domain(ulc_op op); /* "" for the default domain, "ulc" for ulc's own */
int ulc_domain_is_default(const char *domain);

#endif
