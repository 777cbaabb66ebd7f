/*
 * op.h — operator identities. ULC_OP_<Name> for every op in ops.def (ONNX default domain);
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
    ULC_OP_COUNT_
} ulc_op;

/* Looks an op up by domain and op_type. domain NULL, "" and "ai.onnx" are the default domain. */
ulc_op ulc_op_lookup(const char *domain, const char *op_type);
const char *ulc_op_name(ulc_op op); /* "Unknown" for ULC_OP_UNKNOWN */
int ulc_domain_is_default(const char *domain);

#endif
