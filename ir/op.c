#include "ir/op.h"

#include <stdlib.h>
#include <string.h>

static const char *const k_names[ULC_OP_COUNT_] = {
    "Unknown",
#define X(name) #name,
#include "ir/ops.def"
#undef X
};

int ulc_domain_is_default(const char *domain) {
    return !domain || !*domain || strcmp(domain, "ai.onnx") == 0;
}

ulc_op ulc_op_lookup(const char *domain, const char *op_type) {
    if (!op_type || !ulc_domain_is_default(domain)) return ULC_OP_UNKNOWN;
    /* ops.def is sorted (strcmp order), so binary search over k_names[1..]. */
    int lo = 1, hi = ULC_OP_COUNT_ - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(op_type, k_names[mid]);
        if (c == 0) return (ulc_op)mid;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return ULC_OP_UNKNOWN;
}

const char *ulc_op_name(ulc_op op) {
    return (op >= 0 && op < ULC_OP_COUNT_) ? k_names[op] : "Unknown";
}
