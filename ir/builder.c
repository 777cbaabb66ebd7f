/* builder.c — see builder.h. */
#include "ir/builder.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTR_CAP 4   /* attribute slots a node starts with; more are made as they are needed */
#define NAME_MAX_ 400

static int ok(const ulc_gb *b) { return b->status == ULC_OK; }

/* A failure already described in ctx (by the graph's own calls); out of memory without one. */
static void fail_ctx(ulc_gb *b) {
    if (!ok(b)) return;
    b->status = b->ctx->status != ULC_OK ? b->ctx->status
                                         : ulc_fail(b->ctx, ULC_ERR_NOMEM, "out of memory");
}

void ulc_gb_init(ulc_gb *b, ulc_graph *g, int64_t opset, ulc_gb_naming naming, ulc_ctx *ctx) {
    memset(b, 0, sizeof *b);
    b->g = g;
    b->ctx = ctx;
    b->opset = opset;
    b->naming = naming;
}

void ulc_gb_scope(ulc_gb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->scope, sizeof b->scope, fmt, ap);
    va_end(ap);
}

ulc_status ulc_gb_fail(ulc_gb *b, ulc_status s, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ulc_status r = ulc_fail(b->ctx, s, "%s", msg);
    if (ok(b)) b->status = r;
    return b->status;
}

ulc_status ulc_gb_finish(ulc_gb *b) {
    if (!ok(b)) return b->status;
    b->status = ulc_graph_verify(b->g, b->ctx);
    return b->status;
}

/* ---- names ------------------------------------------------------------------------------------ */

static const char *origin_name(const ulc_gb *b) {
    return b->origin && b->origin->name ? b->origin->name : NULL;
}

/* A node's name: SCOPE/Op_N (N counted anew) or ORIGIN/grad/Op.N. */
static void node_name(ulc_gb *b, const char *op, char *buf, size_t size) {
    if (b->naming == ULC_GB_NAMES_SCOPED) {
        b->counter++;
        snprintf(buf, size, "%s/%s_%d", b->scope, op, b->counter);
        return;
    }
    const char *base = origin_name(b);
    snprintf(buf, size, "%s/grad/%s.%d", base ? base : "ulc", op, b->counter++);
}

/* A new value for output `slot` of the node just named after op (slot -1: a constant). SCOPED
 * constants count like nodes; DERIVED names skip the taken ones. */
static ulc_value *fresh_value(ulc_gb *b, const char *op, int slot) {
    char name[NAME_MAX_];
    if (b->naming == ULC_GB_NAMES_SCOPED) {
        if (slot < 0) snprintf(name, sizeof name, "%s/Constant_%d", b->scope, ++b->counter);
        else snprintf(name, sizeof name, "%s/%s_%d_output_%d", b->scope, op, b->counter, slot);
    } else {
        const char *base = origin_name(b);
        if (!base) base = "";
        do {
            snprintf(name, sizeof name, "%s%s%s/grad.%s.%d", base[0] == '/' ? "" : "/", base,
                     *base ? "" : "ulc", slot < 0 ? "const" : op, b->counter++);
        } while (ulc_graph_get_value(b->g, name));
    }
    ulc_value *v = ulc_graph_add_value(b->g, name, b->ctx);
    if (!v) fail_ctx(b);
    return v;
}

/* ---- nodes ------------------------------------------------------------------------------------ */

ulc_node *ulc_gb_node(ulc_gb *b, const char *domain, const char *op, const char *name, int n_in,
                      ulc_value *const *in, int n_out, ulc_value **outs) {
    if (!ok(b)) return NULL;
    char fresh[NAME_MAX_];
    if (!name) {
        node_name(b, op, fresh, sizeof fresh);
        name = fresh;
    }
    ulc_node *n = ulc_graph_add_node(b->g, domain, op, name, n_in, n_out, ATTR_CAP, b->ctx);
    if (!n) {
        fail_ctx(b);
        return NULL;
    }
    b->last = n;
    for (int i = 0; i < n_in; i++) ulc_node_set_input(n, i, in[i]);
    for (int o = 0; o < n_out; o++) {
        ulc_value *v = outs && outs[o] ? outs[o] : fresh_value(b, op, o);
        if (!v) return NULL;
        if (ulc_node_set_output(n, o, v, b->ctx) != ULC_OK) {
            fail_ctx(b);
            return NULL;
        }
        if (outs) outs[o] = v;
    }
    return n;
}

ulc_value *ulc_gb_opn(ulc_gb *b, const char *domain, const char *op, int n_in,
                      ulc_value *const *in, int n_out, ulc_value **outs) {
    ulc_value *first = NULL, **o = outs ? outs : &first;
    if (outs)
        for (int k = 0; k < n_out; k++) outs[k] = NULL;
    ulc_node *n = ulc_gb_node(b, domain && *domain ? domain : "", op, NULL, n_in, in, n_out, o);
    return n && n_out ? n->outputs[0] : NULL;
}

ulc_value *ulc_gb_op(ulc_gb *b, const char *op, int n, ulc_value *const *in) {
    if (!ok(b)) return NULL;
    for (int i = 0; i < n; i++)
        if (!in[i]) { /* an earlier step failed: in the caller (ctx says) or our bug */
            if (b->ctx->status != ULC_OK) b->status = b->ctx->status;
            else ulc_gb_fail(b, ULC_ERR_INTERNAL, "%s: missing input %d", op, i);
            return NULL;
        }
    return ulc_gb_opn(b, NULL, op, n, in, 1, NULL);
}

ulc_value *ulc_gb_op1(ulc_gb *b, const char *op, ulc_value *x) { return ulc_gb_op(b, op, 1, &x); }

ulc_value *ulc_gb_op2(ulc_gb *b, const char *op, ulc_value *x, ulc_value *y) {
    ulc_value *in[2] = {x, y};
    return ulc_gb_op(b, op, 2, in);
}

ulc_value *ulc_gb_op3(ulc_gb *b, const char *op, ulc_value *x, ulc_value *y, ulc_value *z) {
    ulc_value *in[3] = {x, y, z};
    return ulc_gb_op(b, op, 3, in);
}

ulc_value *ulc_gb_named(ulc_gb *b, ulc_value *v, const char *name) {
    if (!ok(b) || !v) return NULL;
    ulc_value *out = ulc_graph_add_value(b->g, name, b->ctx);
    if (!out) {
        fail_ctx(b);
        return NULL;
    }
    return ulc_gb_node(b, "", "Identity", name, 1, &v, 1, &out) ? out : NULL;
}

/* ---- attributes ------------------------------------------------------------------------------- */

/* A zeroed slot on v's producer, growing the node's attribute array when it is full. */
static ulc_attr *attr_slot(ulc_gb *b, ulc_value *v, const char *name) {
    if (!ok(b) || !v) return NULL;
    ulc_node *n = v->producer;
    if (!n) {
        ulc_gb_fail(b, ULC_ERR_INTERNAL, "attribute '%s' on '%s', which no node produces", name,
                    v->name);
        return NULL;
    }
    ulc_attr *a = ulc_node_add_attr(n, name);
    if (a) return a;
    /* full: a larger array (attrs[cap] is the sentinel, type -1, ulc_node_add_attr reads) */
    int cap = n->n_attrs * 2 + ATTR_CAP;
    ulc_attr *grown = ulc_arena_calloc(b->g->arena, (size_t)cap + 1, sizeof *grown);
    if (!grown) {
        fail_ctx(b);
        return NULL;
    }
    if (n->n_attrs) memcpy(grown, n->attrs, (size_t)n->n_attrs * sizeof *grown);
    grown[cap].type = -1;
    n->attrs = grown;
    return ulc_node_add_attr(n, name);
}

static ulc_attr *new_attr(ulc_gb *b, ulc_value *v, const char *name, int type) {
    const char *s = ok(b) && v ? ulc_arena_strdup(b->g->arena, name) : NULL;
    if (ok(b) && v && !s) fail_ctx(b);
    ulc_attr *a = s ? attr_slot(b, v, s) : NULL;
    if (a) {
        a->type = type;
        a->has_type = 1;
    }
    return a;
}

void ulc_gb_attr_int(ulc_gb *b, ulc_value *v, const char *name, int64_t i) {
    ulc_attr *a = new_attr(b, v, name, ULC_ATTR_INT);
    if (a) {
        a->i = i;
        a->has_i = 1;
    }
}

void ulc_gb_attr_float(ulc_gb *b, ulc_value *v, const char *name, float f) {
    ulc_attr *a = new_attr(b, v, name, ULC_ATTR_FLOAT);
    if (a) {
        a->f = f;
        a->has_f = 1;
    }
}

void ulc_gb_attr_ints(ulc_gb *b, ulc_value *v, const char *name, int n, const int64_t *ints) {
    ulc_attr *a = new_attr(b, v, name, ULC_ATTR_INTS);
    if (!a) return;
    a->n = (size_t)n;
    a->ints = ulc_arena_calloc(b->g->arena, (size_t)(n ? n : 1), sizeof *a->ints);
    if (!a->ints) fail_ctx(b);
    else if (n) memcpy(a->ints, ints, (size_t)n * sizeof *ints);
}

void ulc_gb_attr_string(ulc_gb *b, ulc_value *v, const char *name, const char *s) {
    ulc_attr *a = new_attr(b, v, name, ULC_ATTR_STRING);
    if (!a) return;
    a->s.data = (const uint8_t *)ulc_arena_strdup(b->g->arena, s);
    a->s.len = strlen(s);
    a->has_s = 1;
    if (!a->s.data) fail_ctx(b);
}

void ulc_gb_attr_put(ulc_gb *b, ulc_value *v, const ulc_attr *src) {
    ulc_attr *a = attr_slot(b, v, src->name);
    if (!a) return;
    *a = *src; /* strings, tensors and extras shared: immutable */
    if (src->ints && src->n) { /* ints are edited in place by some passes: the node's own */
        a->ints = ulc_arena_memdup(b->g->arena, src->ints, src->n * sizeof *src->ints);
        if (!a->ints) fail_ctx(b);
    }
}

void ulc_gb_attr_copy(ulc_gb *b, ulc_value *v, const ulc_node *src, const char *const *skip) {
    for (int i = 0; i < src->n_attrs; i++) {
        const ulc_attr *s = &src->attrs[i];
        int skipped = 0;
        for (const char *const *k = skip; k && *k; k++) skipped |= s->name && !strcmp(s->name, *k);
        if (!skipped) ulc_gb_attr_put(b, v, s);
    }
}

/* ---- graph inputs, outputs, initializers, constants ------------------------------------------- */

ulc_value *ulc_gb_input(ulc_gb *b, const char *name, int dtype, int rank, const ulc_dim *dims) {
    if (!ok(b)) return NULL;
    ulc_value *v = ulc_graph_add_value(b->g, name, b->ctx);
    if (!v || ulc_value_set_shape(b->g, v, rank, dims, b->ctx) != ULC_OK ||
        ulc_ptrvec_push(&b->g->inputs, v) != 0) {
        fail_ctx(b);
        return NULL;
    }
    v->flags |= ULC_VALUE_INPUT | ULC_VALUE_HAS_TYPE;
    v->dtype = dtype;
    return v;
}

void ulc_gb_output(ulc_gb *b, ulc_value *v, const char *name, int dtype, int rank,
                   const ulc_dim *dims) {
    if (!ok(b) || !v) return;
    if (ulc_graph_get_value(b->g, name)) {
        ulc_gb_fail(b, ULC_ERR_INTERNAL, "output name '%s' is taken", name);
        return;
    }
    ulc_strmap_remove(b->g->by_name, v->name);
    v->name = ulc_arena_strdup(b->g->arena, name);
    if (!v->name || ulc_strmap_put(b->g->by_name, v->name, v) != 0 ||
        ulc_value_set_shape(b->g, v, rank, dims, b->ctx) != ULC_OK ||
        ulc_ptrvec_push(&b->g->outputs, v) != 0) {
        ulc_gb_fail(b, ULC_ERR_NOMEM, "out of memory");
        return;
    }
    v->flags |= ULC_VALUE_OUTPUT | ULC_VALUE_HAS_TYPE;
    v->dtype = dtype;
}

ulc_value *ulc_gb_set_init(ulc_gb *b, ulc_value *v, int dtype, int rank, const int64_t *dims,
                           void *data, size_t nbytes) {
    ulc_tensor *t = ok(b) && v ? ulc_tensor_new(b->g, v->name, dtype, rank, dims, b->ctx) : NULL;
    if (!t) {
        free(data);
        if (v) fail_ctx(b);
        return NULL;
    }
    if (ulc_tensor_set_owned(b->g, t, data, nbytes, b->ctx) != ULC_OK) {
        free(data);
        fail_ctx(b);
        return NULL;
    }
    if (ulc_value_set_init(b->g, v, t, b->ctx) != ULC_OK) {
        fail_ctx(b);
        return NULL;
    }
    return v;
}

static ulc_value *const_into(ulc_gb *b, ulc_value *v, int dtype, int rank, const int64_t *dims,
                             const void *data) {
    if (!v) return NULL;
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) n *= (uint64_t)dims[i];
    int over = 0;
    size_t nbytes = ulc_dtype_nbytes(dtype, n, &over);
    void *p = over ? NULL : malloc(nbytes ? nbytes : 1);
    if (!p) {
        ulc_gb_fail(b, ULC_ERR_NOMEM, "out of memory (constant '%s')", v->name);
        return NULL;
    }
    memcpy(p, data, nbytes);
    if (!ulc_gb_set_init(b, v, dtype, rank, dims, p, nbytes)) return NULL;
    v->flags |= ULC_VALUE_CONSTANT;
    return v;
}

ulc_value *ulc_gb_const_as(ulc_gb *b, const char *name, int dtype, int rank, const int64_t *dims,
                           const void *data) {
    if (!ok(b)) return NULL;
    ulc_value *v = ulc_graph_add_value(b->g, name, b->ctx);
    if (!v) fail_ctx(b);
    return const_into(b, v, dtype, rank, dims, data);
}

ulc_value *ulc_gb_const(ulc_gb *b, int dtype, int rank, const int64_t *dims, const void *data) {
    if (!ok(b)) return NULL;
    return const_into(b, fresh_value(b, "Constant", -1), dtype, rank, dims, data);
}

ulc_value *ulc_gb_const_f32(ulc_gb *b, int rank, const int64_t *dims, const float *data) {
    return ulc_gb_const(b, ULC_DT_F32, rank, dims, data);
}

ulc_value *ulc_gb_const_i64(ulc_gb *b, int rank, const int64_t *dims, const int64_t *data) {
    return ulc_gb_const(b, ULC_DT_I64, rank, dims, data);
}

ulc_value *ulc_gb_scalar_f32(ulc_gb *b, float v) { return ulc_gb_const_f32(b, 0, NULL, &v); }

ulc_value *ulc_gb_vec_i64(ulc_gb *b, int n, const int64_t *v) {
    int64_t d = n;
    return ulc_gb_const_i64(b, 1, &d, v);
}

/* ---- common ops ------------------------------------------------------------------------------- */

ulc_value *ulc_gb_shape(ulc_gb *b, ulc_value *x) { return ulc_gb_op1(b, "Shape", x); }

ulc_value *ulc_gb_dim(ulc_gb *b, ulc_value *x, int64_t axis) {
    ulc_value *d = ulc_gb_op2(b, "Gather", ulc_gb_op1(b, "Shape", x), ulc_gb_const_i64(b, 0, NULL, &axis));
    ulc_gb_attr_int(b, d, "axis", 0);
    return d;
}

ulc_value *ulc_gb_reshape_like(ulc_gb *b, ulc_value *x, ulc_value *like) {
    ulc_value *s = ulc_gb_shape(b, like);
    return s ? ulc_gb_op2(b, "Reshape", x, s) : NULL;
}

ulc_value *ulc_gb_transpose(ulc_gb *b, ulc_value *x, int n, const int64_t *perm) {
    ulc_value *r = ulc_gb_op1(b, "Transpose", x);
    ulc_gb_attr_ints(b, r, "perm", n, perm);
    return r;
}

ulc_value *ulc_gb_reduce_sum(ulc_gb *b, ulc_value *x, int n, const int64_t *axes, int keepdims) {
    ulc_value *r;
    if (b->opset >= 13) {
        ulc_value *ax = ulc_gb_vec_i64(b, n, axes);
        r = ax ? ulc_gb_op2(b, "ReduceSum", x, ax) : NULL;
    } else {
        r = ulc_gb_op1(b, "ReduceSum", x);
        ulc_gb_attr_ints(b, r, "axes", n, axes);
    }
    ulc_gb_attr_int(b, r, "keepdims", keepdims);
    return r;
}

ulc_value *ulc_gb_unsqueeze(ulc_gb *b, ulc_value *x, int n, const int64_t *axes) {
    if (b->opset >= 13) {
        ulc_value *ax = ulc_gb_vec_i64(b, n, axes);
        return ax ? ulc_gb_op2(b, "Unsqueeze", x, ax) : NULL;
    }
    ulc_value *r = ulc_gb_op1(b, "Unsqueeze", x);
    ulc_gb_attr_ints(b, r, "axes", n, axes);
    return r;
}

ulc_value *ulc_gb_gemm(ulc_gb *b, ulc_value *a, ulc_value *y) {
    if (b->opset >= 11) return ulc_gb_op2(b, "Gemm", a, y);
    const float zero = 0.0f;
    ulc_value *c = ulc_gb_const_f32(b, 0, NULL, &zero);
    return c ? ulc_gb_op3(b, "Gemm", a, y, c) : NULL;
}
