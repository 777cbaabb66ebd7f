/*
 * specialize.c — pin the graph's input shapes, infer every shape, fold what becomes constant.
 *
 *   specialize{batch=N, dims=NAME:N|NAME:N, shapes=INPUT:AxBxC|INPUT:AxB, limit=BYTES}
 *
 * Each fed input's shape is its declared one with symbolic dims replaced: `shapes` gives an
 * input's whole shape, `dims` binds symbolic dim names ("batch", "sequence"), and `batch`
 * sets a symbolic or unknown first dim. Every dim must end up concrete. The CPU runtime's
 * kernels then infer every value's shape and evaluate what is now constant — the Shape →
 * Gather → Concat → Reshape chains exporters write become plain initializers — and the
 * inferred shapes are recorded on the values (graph inputs, outputs, and value_info for the
 * rest), so later passes and the exported model see fixed shapes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass.h"
#include "runtime/runtime.h"

static const ulc_pass_optdef k_opts[] = {
    {.key = "batch", .kind = ULC_OPT_INT, .ilo = 0, .ihi = 1LL << 40,
     .help = "pin every input's first dim (the batch) to this"},
    {.key = "dims", .kind = ULC_OPT_STR, .help = "NAME:N|...: pin symbolic dims by name"},
    {.key = "shapes", .kind = ULC_OPT_STR, .help = "INPUT:AxBxC|...: pin whole input shapes"},
    {.key = "limit", .kind = ULC_OPT_INT, .ilo = 0, .ihi = 1LL << 40,
     .help = "fold results up to this many bytes (1 MiB)"},
    {0}};

/* "1x3x224x224" → dims; returns rank or -1. */
static int parse_shape(const char *s, int64_t *dims) {
    int rank = 0;
    if (!*s) return -1;
    if (strcmp(s, "scalar") == 0) return 0;
    while (*s) {
        if (rank == ULC_RT_MAX_RANK) return -1;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || v < 0) return -1;
        dims[rank++] = v;
        if (*end == 'x') s = end + 1;
        else if (*end) return -1;
        else s = end;
    }
    return rank;
}

/* Finds "name:value" in a '|'-separated list; copies value into buf. */
static int list_lookup(const char *list, const char *name, char *buf, size_t size) {
    if (!list) return 0;
    size_t nl = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        /* the name may itself hold ':' (ONNX names can); split at the last one */
        for (const char *q = p; q < p + len; q++)
            if (*q == ':') colon = q;
        if (colon && (size_t)(colon - p) == nl && memcmp(p, name, nl) == 0) {
            size_t vl = len - nl - 1;
            if (vl >= size) vl = size - 1;
            memcpy(buf, colon + 1, vl);
            buf[vl] = 0;
            return 1;
        }
        p += len + (e ? 1 : 0);
    }
    return 0;
}

/* Every entry of a '|'-list must name something that exists (typos are errors). */
static ulc_status check_list(const char *list, const char *key, const ulc_graph *g, int dims_kind,
                             ulc_ctx *ctx) {
    if (!list) return ULC_OK;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *colon = NULL;
        for (const char *q = p; q < p + len; q++)
            if (*q == ':') colon = q;
        if (!colon)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass specialize: %s entry '%.*s' is not NAME:VALUE",
                            key, (int)len, p);
        int found = 0;
        for (size_t i = 0; i < g->inputs.len && !found; i++) {
            const ulc_value *v = g->inputs.items[i];
            if (!dims_kind) {
                found = strlen(v->name) == (size_t)(colon - p) && memcmp(v->name, p, (size_t)(colon - p)) == 0;
                continue;
            }
            for (int d = 0; d < v->rank && !found; d++)
                found = v->dims[d].param && strlen(v->dims[d].param) == (size_t)(colon - p) &&
                        memcmp(v->dims[d].param, p, (size_t)(colon - p)) == 0;
        }
        if (!found)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass specialize: %s names '%.*s', which is no %s",
                            key, (int)(colon - p), p, dims_kind ? "symbolic dim of an input" : "graph input");
        p += len + (e ? 1 : 0);
    }
    return ULC_OK;
}

static ulc_status run_specialize(ulc_model *m, const ulc_pass_opts *o, ulc_pass_ctx *pc,
                                 ulc_ctx *ctx) {
    (void)pc;
    ulc_graph *g = m->graph;
    long long batch = ulc_pass_opt_i(o, "batch", -1), limit = ulc_pass_opt_i(o, "limit", 1 << 20);
    const char *dims_opt = ulc_pass_opt_str(o, "dims", NULL);
    const char *shapes_opt = ulc_pass_opt_str(o, "shapes", NULL);
    ULC_TRY(check_list(dims_opt, "dims", g, 1, ctx));
    ULC_TRY(check_list(shapes_opt, "shapes", g, 0, ctx));

    ulc_rt_binding *bind = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *bind);
    if (!bind) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    int nb = 0;
    ulc_status s = ULC_OK;
    for (size_t i = 0; i < g->inputs.len && s == ULC_OK; i++) {
        ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue; /* a default: stays as it is */
        ulc_rt_binding *b = &bind[nb];
        b->name = v->name;
        b->t.dtype = v->dtype;
        char buf[256];
        if (list_lookup(shapes_opt, v->name, buf, sizeof buf)) {
            int r = parse_shape(buf, b->t.dims);
            if (r < 0) {
                s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass specialize: shape '%s' of input '%s' is not "
                             "like 1x3x224x224", buf, v->name);
                break;
            }
            if (v->rank >= 0 && r != v->rank) {
                s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass specialize: input '%s' has rank %d, the "
                             "shape given has %d dims", v->name, v->rank, r);
                break;
            }
            for (int d = 0; d < r && d < v->rank; d++)
                if (v->dims[d].value >= 0 && v->dims[d].value != b->t.dims[d]) {
                    s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass specialize: input '%s' fixes dim %d "
                                 "to %lld, the shape given says %lld", v->name, d,
                                 (long long)v->dims[d].value, (long long)b->t.dims[d]);
                    break;
                }
            b->t.rank = r;
            nb++;
            continue;
        }
        if (v->rank < 0) {
            s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass specialize: input '%s' has no declared shape; "
                         "give it with shapes=%s:AxB...", v->name, v->name);
            break;
        }
        if (v->rank > ULC_RT_MAX_RANK) {
            s = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "pass specialize: input '%s' has rank %d", v->name, v->rank);
            break;
        }
        b->t.rank = v->rank;
        for (int d = 0; d < v->rank; d++) {
            const ulc_dim *dim = &v->dims[d];
            int64_t val = dim->value;
            if (val < 0 && dim->param && list_lookup(dims_opt, dim->param, buf, sizeof buf)) {
                char *end;
                val = strtoll(buf, &end, 10);
                if (*end || end == buf || val < 0) {
                    s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass specialize: dims %s:%s is not a size",
                                 dim->param, buf);
                    break;
                }
            }
            if (val < 0 && d == 0 && batch >= 0) val = batch;
            if (val < 0) {
                s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass specialize: dim %d of input '%s' (%s) is not "
                             "pinned; give %s", d, v->name, dim->param ? dim->param : "unknown",
                             dim->param ? "dims=NAME:SIZE" : d == 0 ? "batch=N or shapes=" : "shapes=");
                break;
            }
            b->t.dims[d] = val;
        }
        nb++;
    }
    ulc_analysis *a = NULL;
    if (s == ULC_OK && (s = ulc_analyze(g, ulc_model_opset(m, ""), bind, nb, (size_t)limit, &a, ctx)) != ULC_OK)
        ulc_fail(ctx, s, "pass specialize");
    /* record shapes before folding removes producers */
    int halves = ulc_graph_has_halves(g);
    for (size_t i = 0; i < g->values.len && s == ULC_OK; i++) {
        ulc_value *v = g->values.items[i];
        ulc_rt_tensor t;
        if ((v->flags & ULC_VALUE_INITIALIZER) || !ulc_analysis_get(a, v, &t)) continue;
        if (!v->producer && !(v->flags & ULC_VALUE_INPUT)) continue;
        ulc_dim dims[ULC_RT_MAX_RANK];
        memset(dims, 0, sizeof dims);
        for (int d = 0; d < t.rank; d++) dims[d].value = t.dims[d];
        if (v->flags & ULC_VALUE_HAS_TYPE) {
            /* declared dtype stays (halves are computed as float32) */
        } else if (t.dtype != ULC_DT_F32 || !halves) {
            v->dtype = t.dtype;
            v->flags |= ULC_VALUE_HAS_TYPE;
        } else {
            continue; /* float32 or a half computed as float32: leave it undeclared */
        }
        s = ulc_value_set_shape(g, v, t.rank, dims, ctx);
        if (s == ULC_OK && v->producer && !(v->flags & (ULC_VALUE_OUTPUT | ULC_VALUE_VALUE_INFO))) {
            if (ulc_ptrvec_push(&g->value_info, v) != 0) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
            v->flags |= ULC_VALUE_VALUE_INFO;
        }
    }
    if (s == ULC_OK) s = ulc_fold_and_prune(m, a, NULL, ctx);
    ulc_analysis_free(a);
    free(bind);
    return s;
}

const ulc_pass ulc_pass_specialize = {
    .name = "specialize",
    .opts = k_opts,
    .summary = "pin input shapes (batch=, dims=NAME:N|..., shapes=INPUT:AxB|...), infer every shape, "
               "fold Shape/Gather/Concat chains to constants",
    .run = run_specialize,
};
