/* rt_tensor.c — runtime views of imported tensors (no copy: the bytes stay where the importer
 * left them, usually a mapped file). */
#include <stdint.h>
#include <string.h>

#include "runtime/runtime.h"

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
