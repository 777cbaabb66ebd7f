/*
 * autodiff.c — reverse-mode differentiation as graph (see autodiff.h), and the node builders
 * the backward rules (grad_*.c) write with.
 */
#include "train/autodiff.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/grad.h"

/* ---- builders ------------------------------------------------------------------------------ */

ulc_status gb_fail(ulc_gb *b, ulc_status s, const char *fmt, ...) {
    char msg[512], label[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b->cur) ulc_node_label(b->cur, label, sizeof label);
    else snprintf(label, sizeof label, "graph");
    return ulc_fail(b->ctx, s, "autodiff: %s: %s", label, msg);
}

static ulc_value *fresh_value(ulc_gb *b, const char *hint) {
    char name[256];
    const char *base = b->cur && b->cur->name && *b->cur->name ? b->cur->name : "";
    do {
        snprintf(name, sizeof name, "%s%s%s/grad.%s.%d", base[0] == '/' ? "" : "/", base,
                 *base ? "" : "ulc", hint, b->serial++);
    } while (ulc_graph_get_value(b->g, name));
    return ulc_graph_add_value(b->g, name, b->ctx);
}

ulc_value *gb_node(ulc_gb *b, const char *domain, const char *op, int n_in,
                   ulc_value *const *in, int n_out, ulc_value **outs) {
    char name[256];
    const char *base = b->cur && b->cur->name ? b->cur->name : "ulc";
    snprintf(name, sizeof name, "%s/grad/%s.%d", base, op, b->serial++);
    ulc_node *n = ulc_graph_add_node(b->g, domain && *domain ? domain : "", op, name, n_in,
                                     n_out, 8, b->ctx);
    if (!n) return NULL;
    b->last = n;
    for (int i = 0; i < n_in; i++) ulc_node_set_input(n, i, in[i]);
    ulc_value *first = NULL;
    for (int i = 0; i < n_out; i++) {
        ulc_value *v = fresh_value(b, op);
        if (!v || ulc_node_set_output(n, i, v, b->ctx) != ULC_OK) return NULL;
        if (outs) outs[i] = v;
        if (i == 0) first = v;
    }
    return first;
}

ulc_node *gb_last(ulc_gb *b) { return b->last; }

static ulc_attr *new_attr(ulc_gb *b, const char *name, int type) {
    ulc_attr *a = ulc_node_add_attr(b->last, ulc_arena_strdup(b->g->arena, name));
    ULC_ASSERT(a); /* capacity 8 is enough for every rule */
    a->type = type;
    a->has_type = 1;
    return a;
}

void gb_attr_int(ulc_gb *b, const char *name, int64_t v) {
    ulc_attr *a = new_attr(b, name, ULC_ATTR_INT);
    a->i = v;
    a->has_i = 1;
}

void gb_attr_float(ulc_gb *b, const char *name, float v) {
    ulc_attr *a = new_attr(b, name, ULC_ATTR_FLOAT);
    a->f = v;
    a->has_f = 1;
}

void gb_attr_ints(ulc_gb *b, const char *name, const int64_t *v, int n) {
    ulc_attr *a = new_attr(b, name, ULC_ATTR_INTS);
    a->n = (size_t)n;
    a->ints = ulc_arena_calloc(b->g->arena, (size_t)(n ? n : 1), sizeof *a->ints);
    if (a->ints && n) memcpy(a->ints, v, (size_t)n * sizeof *v);
}

void gb_attr_string(ulc_gb *b, const char *name, const char *s) {
    ulc_attr *a = new_attr(b, name, ULC_ATTR_STRING);
    a->s.data = (const uint8_t *)ulc_arena_strdup(b->g->arena, s);
    a->s.len = strlen(s);
    a->has_s = 1;
}

void gb_attr_copy(ulc_gb *b, const ulc_node *src, const char *const *skip) {
    for (int i = 0; i < src->n_attrs; i++) {
        const ulc_attr *s = &src->attrs[i];
        int skipped = 0;
        for (const char *const *k = skip; k && *k; k++) skipped |= s->name && !strcmp(s->name, *k);
        if (skipped) continue;
        ulc_attr *a = ulc_node_add_attr(b->last, s->name);
        ULC_ASSERT(a);
        *a = *s; /* arena contents of the forward graph, shared (never edited) */
    }
}

ulc_value *gb_unary(ulc_gb *b, const char *op, ulc_value *x) {
    return x ? gb_node(b, NULL, op, 1, &x, 1, NULL) : NULL; /* NULL: an earlier builder failed */
}

ulc_value *gb_binary(ulc_gb *b, const char *op, ulc_value *x, ulc_value *y) {
    ulc_value *in[2] = {x, y};
    return x && y ? gb_node(b, NULL, op, 2, in, 1, NULL) : NULL;
}

static ulc_value *const_tensor(ulc_gb *b, int dtype, int rank, const int64_t *dims,
                               const void *data, size_t nbytes) {
    ulc_value *v = fresh_value(b, "const");
    if (!v) return NULL;
    ulc_tensor *t = ulc_tensor_new(b->g, v->name, dtype, rank, dims, b->ctx);
    void *p = malloc(nbytes ? nbytes : 1);
    if (!t || !p) {
        free(p);
        if (t) ulc_fail(b->ctx, ULC_ERR_NOMEM, "out of memory (autodiff constant)");
        return NULL;
    }
    memcpy(p, data, nbytes);
    if (ulc_tensor_set_owned(b->g, t, p, nbytes, b->ctx) != ULC_OK ||
        ulc_value_set_init(b->g, v, t, b->ctx) != ULC_OK)
        return NULL;
    v->flags |= ULC_VALUE_CONSTANT;
    return v;
}

ulc_value *gb_const_f32(ulc_gb *b, float v) {
    return const_tensor(b, ULC_DT_F32, 0, NULL, &v, sizeof v);
}

ulc_value *gb_const_f32_like(ulc_gb *b, float v, const ulc_value *like) {
    ulc_rt_tensor t;
    int dt = like->id < b->n_forward && ulc_analysis_get(b->a, like, &t) ? t.dtype : ULC_DT_F32;
    if (dt == ULC_DT_F64) {
        double d = v;
        return const_tensor(b, ULC_DT_F64, 0, NULL, &d, sizeof d);
    }
    return gb_const_f32(b, v);
}

ulc_value *gb_const_i64s(ulc_gb *b, const int64_t *v, int n) {
    int64_t d = n;
    return const_tensor(b, ULC_DT_I64, 1, &d, v, (size_t)n * sizeof *v);
}

ulc_value *gb_shape(ulc_gb *b, ulc_value *x) { return gb_unary(b, "Shape", x); }

ulc_value *gb_reduce_sum(ulc_gb *b, ulc_value *x, const int64_t *axes, int n, int keepdims) {
    ulc_value *r;
    if (b->opset >= 13) {
        ulc_value *ax = gb_const_i64s(b, axes, n);
        if (!ax) return NULL;
        r = gb_binary(b, "ReduceSum", x, ax);
    } else {
        r = gb_unary(b, "ReduceSum", x);
        if (r) gb_attr_ints(b, "axes", axes, n);
    }
    if (r) gb_attr_int(b, "keepdims", keepdims);
    return r;
}

ulc_value *gb_unsqueeze(ulc_gb *b, ulc_value *x, const int64_t *axes, int n) {
    if (b->opset >= 13) {
        ulc_value *ax = gb_const_i64s(b, axes, n);
        return ax ? gb_binary(b, "Unsqueeze", x, ax) : NULL;
    }
    ulc_value *r = gb_unary(b, "Unsqueeze", x);
    if (r) gb_attr_ints(b, "axes", axes, n);
    return r;
}

ulc_value *gb_reshape_like(ulc_gb *b, ulc_value *x, ulc_value *like) {
    ulc_value *s = gb_shape(b, like);
    return s ? gb_binary(b, "Reshape", x, s) : NULL;
}

ulc_value *gb_transpose(ulc_gb *b, ulc_value *x, const int64_t *perm, int n) {
    ulc_value *r = gb_unary(b, "Transpose", x);
    if (r) gb_attr_ints(b, "perm", perm, n);
    return r;
}

int gb_rank(ulc_gb *b, const ulc_value *v) {
    ulc_rt_tensor t;
    if (!v || v->id >= b->n_forward || !ulc_analysis_get(b->a, v, &t)) return -1;
    return t.rank;
}

const int64_t *gb_dims(ulc_gb *b, const ulc_value *v) {
    /* The analysis keeps each value's tensor descriptor; hand out a stable copy. */
    ulc_rt_tensor t;
    if (!v || v->id >= b->n_forward || !ulc_analysis_get(b->a, v, &t)) return NULL;
    int64_t *d = ulc_arena_calloc(b->g->arena, (size_t)(t.rank ? t.rank : 1), sizeof *d);
    if (d) memcpy(d, t.dims, (size_t)t.rank * sizeof *d);
    return d;
}

int gb_const_ints(ulc_gb *b, const ulc_value *v, int64_t *out, int max) {
    ulc_rt_tensor t;
    if (!v || v->id >= b->n_forward || !ulc_analysis_get(b->a, v, &t) || !t.data) return -1;
    uint64_t n = ulc_rt_numel(&t);
    if (n > (uint64_t)max) return -1;
    for (uint64_t i = 0; i < n; i++) {
        if (t.dtype == ULC_DT_I64) out[i] = ((const int64_t *)t.data)[i];
        else if (t.dtype == ULC_DT_I32) out[i] = ((const int32_t *)t.data)[i];
        else return -1;
    }
    return (int)n;
}

int64_t gb_attr_i(const ulc_node *n, const char *name, int64_t def) {
    const ulc_attr *a = ulc_node_attr(n, name);
    return a && a->type == ULC_ATTR_INT ? a->i : def;
}

float gb_attr_f(const ulc_node *n, const char *name, float def) {
    const ulc_attr *a = ulc_node_attr(n, name);
    return a && a->type == ULC_ATTR_FLOAT ? a->f : def;
}

int gb_attr_is(const ulc_node *n, const char *name, int64_t *out, int max) {
    const ulc_attr *a = ulc_node_attr(n, name);
    if (!a || a->type != ULC_ATTR_INTS || a->n > (size_t)max) return -1;
    for (size_t i = 0; i < a->n; i++) out[i] = a->ints[i];
    return (int)a->n;
}

ulc_value *gb_sum_to(ulc_gb *b, ulc_value *dy, const ulc_value *y, const ulc_value *x) {
    if (!dy) return NULL;
    int ry = gb_rank(b, y), rx = gb_rank(b, x);
    if (ry < 0 || rx < 0) {
        gb_fail(b, ULC_ERR_UNSUPPORTED, "the shapes of '%s' and '%s' are unknown", y->name,
                x->name);
        return NULL;
    }
    const int64_t *dyd = gb_dims(b, y), *dxd = gb_dims(b, x);
    int64_t axes[ULC_RT_MAX_RANK];
    int n = 0, lead = ry - rx;
    if (lead < 0) {
        gb_fail(b, ULC_ERR_INTERNAL, "'%s' has a higher rank than its broadcast '%s'", x->name,
                y->name);
        return NULL;
    }
    for (int i = 0; i < ry; i++)
        if (i < lead || (dxd[i - lead] == 1 && dyd[i] != 1)) axes[n++] = i;
    if (n == 0) return dy;
    ulc_value *s = gb_reduce_sum(b, dy, axes, n, 1);
    if (!s) return NULL;
    /* keepdims kept every axis: drop the leading ones by reshaping to x's shape */
    return gb_reshape_like(b, s, (ulc_value *)x);
}

/* ---- the walk --------------------------------------------------------------------------------- */

static int is_float(int dt) {
    return dt == ULC_DT_F32 || dt == ULC_DT_F64 || dt == ULC_DT_F16 || dt == ULC_DT_BF16;
}

/* Adds contribution c to the gradient of v (sum of fan-in). */
static ulc_status accumulate(ulc_gb *b, ulc_value **acc, const ulc_value *v, ulc_value *c) {
    if (!c) return ULC_OK;
    if (!acc[v->id]) {
        acc[v->id] = c;
        return ULC_OK;
    }
    ulc_value *s = gb_binary(b, "Add", acc[v->id], c);
    if (!s) return b->ctx->status ? b->ctx->status : ULC_ERR_NOMEM;
    acc[v->id] = s;
    return ULC_OK;
}

ulc_status ulc_autodiff(ulc_graph *g, int64_t opset, ulc_value *loss, int n_wrt,
                        ulc_value *const *wrt, const ulc_rt_binding *shapes, int n_shapes,
                        ulc_value **grads, ulc_ctx *ctx) {
    for (int i = 0; i < n_wrt; i++) grads[i] = NULL;
    ULC_TRY(ulc_graph_toposort(g, ctx));
    ulc_analysis *an = NULL;
    ULC_TRY(ulc_analyze(g, opset, shapes, n_shapes, (size_t)1 << 16, &an, ctx));

    int nv = (int)g->values.len;
    unsigned char *dep = calloc((size_t)nv, 1);     /* value depends on a wrt value */
    unsigned char *live = calloc((size_t)nv, 1);    /* value reaches the loss */
    ulc_node **order = malloc(sizeof *order * (size_t)(g->n_nodes ? g->n_nodes : 1));
    ulc_value **acc = NULL;
    ulc_status st = ULC_OK;
    ulc_gb b = {.g = g, .opset = opset, .a = an, .ctx = ctx, .n_forward = nv};
    if (!dep || !live || !order) {
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (autodiff)");
        goto done;
    }
    for (int i = 0; i < n_wrt; i++) dep[wrt[i]->id] = 1;
    int n_order = 0;
    for (ulc_node *n = g->first; n; n = n->next) order[n_order++] = n;
    /* Which values depend on a parameter (float ones only: indices and shapes carry no
     * gradient). Output dtypes may be unset on the IR (no value_info): the analysis has them. */
    for (int k = 0; k < n_order; k++) {
        ulc_node *n = order[k];
        int d = 0;
        for (int i = 0; i < n->n_inputs; i++)
            if (n->inputs[i].value && dep[n->inputs[i].value->id]) d = 1;
        for (int i = 0; i < n->n_outputs; i++) {
            ulc_rt_tensor t;
            ulc_value *o = n->outputs[i];
            if (!o) continue;
            dep[o->id] = (unsigned char)(d && ulc_analysis_get(an, o, &t) && is_float(t.dtype));
        }
    }
    if (!dep[loss->id]) {
        st = ulc_fail(ctx, ULC_ERR_INVALID,
                      "autodiff: the loss '%s' does not depend on any trained parameter",
                      loss->name);
        goto done;
    }
    live[loss->id] = 1;
    for (int k = n_order - 1; k >= 0; k--) {
        ulc_node *n = order[k];
        int l = 0;
        for (int i = 0; i < n->n_outputs; i++)
            if (n->outputs[i] && live[n->outputs[i]->id]) l = 1;
        if (!l) continue;
        for (int i = 0; i < n->n_inputs; i++)
            if (n->inputs[i].value && dep[n->inputs[i].value->id]) live[n->inputs[i].value->id] = 1;
    }

    acc = calloc((size_t)nv, sizeof *acc);
    if (!acc) {
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (autodiff)");
        goto done;
    }
    /* Seed: d loss / d loss = 1 in the loss's shape (a non-scalar loss means its sum). */
    {
        ulc_value *one = gb_const_f32_like(&b, 1.0f, loss);
        ulc_value *shape = one ? gb_shape(&b, loss) : NULL;
        ulc_value *seed = shape ? gb_binary(&b, "Expand", one, shape) : NULL;
        if (!seed) {
            st = ctx->status ? ctx->status : ULC_ERR_NOMEM;
            goto done;
        }
        acc[loss->id] = seed;
    }
    for (int k = n_order - 1; k >= 0; k--) {
        ulc_node *n = order[k];
        ulc_value *dy[16] = {0}, *dx[16] = {0};
        int want[16] = {0}, any_dy = 0, any_want = 0;
        if (n->n_outputs > 16 || n->n_inputs > 16) {
            int l = 0;
            for (int i = 0; i < n->n_outputs; i++) l |= n->outputs[i] && live[n->outputs[i]->id];
            if (!l) continue;
            b.cur = n;
            st = gb_fail(&b, ULC_ERR_UNSUPPORTED, "too many inputs/outputs to differentiate");
            goto done;
        }
        for (int i = 0; i < n->n_outputs; i++)
            if (n->outputs[i] && live[n->outputs[i]->id] && acc[n->outputs[i]->id]) {
                dy[i] = acc[n->outputs[i]->id];
                any_dy = 1;
            }
        for (int i = 0; i < n->n_inputs; i++)
            if (n->inputs[i].value && dep[n->inputs[i].value->id]) want[i] = any_want = 1;
        if (!any_dy || !any_want) continue;
        b.cur = n;
        ulc_op op = n->op;
        ulc_grad_rule rule = ulc_grad_rule_for(op);
        if (!rule) {
            st = gb_fail(&b, ULC_ERR_UNSUPPORTED,
                         "no backward rule for op %s%s%s (a trained parameter reaches it)",
                         n->op_type, n->domain && *n->domain ? " of domain " : "",
                         n->domain && *n->domain ? n->domain : "");
            goto done;
        }
        if ((st = rule(&b, n, dy, want, dx)) != ULC_OK) goto done;
        for (int i = 0; i < n->n_inputs; i++) {
            if (!want[i]) continue;
            if (!dx[i]) {
                st = gb_fail(&b, ULC_ERR_UNSUPPORTED,
                             "no gradient flows to input %d ('%s'), which depends on a trained "
                             "parameter", i, n->inputs[i].value->name);
                goto done;
            }
            if ((st = accumulate(&b, acc, n->inputs[i].value, dx[i])) != ULC_OK) goto done;
        }
    }
    for (int i = 0; i < n_wrt; i++) grads[i] = acc[wrt[i]->id];
done:
    free(dep);
    free(live);
    free(order);
    free(acc);
    ulc_analysis_free(an);
    return st;
}

int ulc_autodiff_has_rule(ulc_op op) { return ulc_grad_rule_for(op) != NULL; }
