/* rt_tensor.c — runtime tensor helpers (element counts, shape comparison and printing) and
 * views of imported tensors (no copy: the bytes stay where the importer left them, usually a
 * mapped file). Depends on nothing else in runtime/: the planner, kernels and kutil.c use it. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime/runtime.h"

uint64_t ulc_rt_numel(const ulc_rt_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= (uint64_t)t->dims[i];
    return n;
}

int ulc_rt_same_shape(const ulc_rt_tensor *a, const ulc_rt_tensor *b) {
    return a->rank == b->rank && memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0;
}

int ulc_rt_broadcasts_to(const ulc_rt_tensor *m, int rank, const int64_t *dims) {
    if (m->rank > rank) return 0;
    for (int d = 0; d < m->rank; d++) {
        int64_t md = m->dims[m->rank - 1 - d], sd = dims[rank - 1 - d];
        if (md != sd && md != 1) return 0;
    }
    return 1;
}

const char *ulc_rt_shape_str(const ulc_rt_tensor *t, char *buf, size_t size) {
    if (!t) {
        snprintf(buf, size, "(none)");
        return buf;
    }
    size_t o = (size_t)snprintf(buf, size, "%s[", ulc_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

ulc_status ulc_rt_tensor_view(const ulc_tensor *t, const char *file, ulc_rt_tensor *rt,
                              ulc_ctx *ctx) {
    if (t->rank > ULC_RT_MAX_RANK)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %d (at most %d)", file,
                        t->name, t->rank, ULC_RT_MAX_RANK);
    memset(rt, 0, sizeof *rt);
    rt->dtype = t->dtype;
    rt->rank = t->rank;
    for (int d = 0; d < t->rank; d++) rt->dims[d] = t->dims[d];
    rt->data = (void *)(uintptr_t)t->data;
    rt->nbytes = t->nbytes;
    return ULC_OK;
}
