#include "ir/op.h"

#include <stdlib.h>
#include <string.h>

static const char *const k_names[ULC_OP_COUNT_] = {
    "Unknown",
#define X(name) #name,
#include "ir/ops.def"
#undef X
    "",
#define X(name) #name,
#include "ir/ops_ulc.def"
#undef X
};

int ulc_domain_is_default(const char *domain) {
    return !domain || !*domain || strcmp(domain, "ai.onnx") == 0;
}

/* Both tables are sorted (strcmp order): binary search over k_names[lo..hi]. */
static ulc_op search(const char *op_type, int lo, int hi) {
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(op_type, k_names[mid]);
        if (c == 0) return (ulc_op)mid;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return ULC_OP_UNKNOWN;
}

ulc_op ulc_op_lookup(const char *domain, const char *op_type) {
    if (!op_type) return ULC_OP_UNKNOWN;
    if (ulc_domain_is_default(domain)) return search(op_type, 1, ULC_OP_ULC_FIRST_ - 1);
    if (strcmp(domain, ULC_DOMAIN) == 0)
        return search(op_type, ULC_OP_ULC_FIRST_ + 1, ULC_OP_COUNT_ - 1);
    return ULC_OP_UNKNOWN;
}

const char *ulc_op_name(ulc_op op) {
    return (op > 0 && op < ULC_OP_COUNT_ && op != ULC_OP_ULC_FIRST_) ? k_names[op] : "Unknown";
}

const char *ulc_op_domain(ulc_op op) {
    return op > ULC_OP_ULC_FIRST_ && op < ULC_OP_COUNT_ ? ULC_DOMAIN : "";
}
