/* backend.c — the backends by name (the only file that names one: the CUDA backend will be a
 * second entry here) and the backend queries of runtime.h. */
#include <stdio.h>
#include <string.h>

#include "runtime/plan.h"

/* The backends, by name (the first is the default). */
const ulc_backend *ulc_backend_find(const char *name) {
    const ulc_backend *all[] = {ulc_backend_cpu()};
    if (!name) return all[0];
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}

int ulc_backend_supports(const char *backend, const ulc_node *n, char *why, size_t why_size) {
    const ulc_backend *be = ulc_backend_find(backend);
    if (!be) {
        snprintf(why, why_size, "unknown backend '%s'", backend);
        return 0;
    }
    if (!be->kernel(n->op)) {
        snprintf(why, why_size, "op %s%s%s%s is not supported by backend %s", n->op_type,
                 n->domain && *n->domain ? " (domain " : "", n->domain && *n->domain ? n->domain : "",
                 n->domain && *n->domain ? ")" : "", be->name);
        return 0;
    }
    for (int i = 0; i < n->n_attrs; i++) {
        int t = n->attrs[i].type;
        if (t == ULC_ATTR_GRAPH || t == ULC_ATTR_GRAPHS) {
            snprintf(why, why_size, "attribute '%s' holds a subgraph, which backend %s does not run",
                     n->attrs[i].name, be->name);
            return 0;
        }
    }
    return 1;
}

const char *const *ulc_backend_ops(const char *backend) {
    static const char *list[ULC_OP_COUNT_ + 1];
    static int n = -1;
    const ulc_backend *be = ulc_backend_find(backend);
    if (!be) return NULL;
    if (n < 0) { /* benign: every caller computes the same list (one backend for now) */
        int c = 0;
        for (int op = 1; op < ULC_OP_ULC_FIRST_; op++) /* ONNX ops (ulc's are internal) */
            if (be->kernel((ulc_op)op)) list[c++] = ulc_op_name((ulc_op)op);
        list[c] = NULL;
        n = c;
    }
    return list;
}
