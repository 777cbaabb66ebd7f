/* backend.c — the backends by name (the only file that names one: cpu, and cuda when it is
 * built) and the backend queries of runtime.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

/* ULC_CUDA_EMULATE=1: "cuda" is the host emulator of the CUDA backend (runtime/cuda/emu.h), so
 * the tests check the backend's kernels and device plans on machines without a GPU. */
static int emulate_cuda(void) {
    const char *e = getenv("ULC_CUDA_EMULATE");
    return e && *e && strcmp(e, "0") != 0;
}

static const ulc_backend *cuda_backend(void) {
#ifdef ULC_HAVE_CUDA_EMU
    if (emulate_cuda()) return ulc_backend_cuda_emu();
#endif
#ifdef ULC_HAVE_CUDA
    if (!emulate_cuda()) return ulc_backend_cuda();
#endif
    return NULL;
}

/* The backends, by name (the first is the default). */
const ulc_backend *ulc_backend_find(const char *name) {
    if (!name || strcmp(name, "cpu") == 0) return ulc_backend_cpu();
    if (strcmp(name, "cuda") == 0) return cuda_backend();
    return NULL;
}

int ulc_backend_on_device(const char *name) {
    const ulc_backend *be = ulc_backend_find(name);
    return be && be->device;
}

const char *ulc_backend_names(void) {
    return cuda_backend() ? (emulate_cuda() ? "cpu, cuda (emulated on the host)" : "cpu, cuda") : "cpu";
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
    enum { MAX_BACKENDS = 2 };
    static const char *lists[MAX_BACKENDS][ULC_OP_COUNT_ + 1];
    static const ulc_backend *made[MAX_BACKENDS];
    const ulc_backend *be = ulc_backend_find(backend);
    if (!be) return NULL;
    int slot = strcmp(be->name, "cpu") == 0 ? 0 : 1;
    const char **list = lists[slot];
    if (made[slot] != be) { /* benign: every caller computes the same list */
        int c = 0;
        for (int op = 1; op < ULC_OP_ULC_FIRST_; op++) /* ONNX ops (ulc's are internal) */
            if (be->kernel((ulc_op)op)) list[c++] = ulc_op_name((ulc_op)op);
        list[c] = NULL;
        made[slot] = be;
    }
    return list;
}
