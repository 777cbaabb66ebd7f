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

/* ---- what only gradients need, on top of the builder ---------------------------------------- */

/* The ulc_grad around a rule's builder (grad.h: rules only ever get &grad.b). */
static ulc_grad *grad_of(ulc_gb *b) { return (ulc_grad *)(void *)b; }

ulc_status ulc_grad_fail(ulc_gb *b, ulc_status s, const char *fmt, ...) {
    char msg[512], label[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b->origin) ulc_node_label(b->origin, label, sizeof label);
    else snprintf(label, sizeof label, "graph");
    return ulc_gb_fail(b, s, "autodiff: %s: %s", label, msg);
}

ulc_value *ulc_grad_const_like(ulc_gb *b, float v, const ulc_value *like) {
    const ulc_grad *r = grad_of(b);
    ulc_rt_tensor t;
    int dt = like->id < r->n_forward && ulc_analysis_get(r->a, like, &t) ? t.dtype : ULC_DT_F32;
    if (dt == ULC_DT_F64) {
        double d = v;
        return ulc_gb_const(b, ULC_DT_F64, 0, NULL, &d);
    }
    return ulc_gb_scalar_f32(b, v);
}

ulc_value *ulc_grad_cast_like(ulc_gb *b, ulc_value *x, const ulc_value *like) {
    if (b->opset >= 15) {
        ulc_value *in[2] = {x, (ulc_value *)like};
        return ulc_gb_opn(b, NULL, "CastLike", 2, in, 1, NULL);
    }
    const ulc_grad *r = grad_of(b);
    ulc_rt_tensor t;
    int dt = like->id < r->n_forward && ulc_analysis_get(r->a, like, &t) ? t.dtype : ULC_DT_F32;
    ulc_value *y = ulc_gb_op1(b, "Cast", x);
    ulc_gb_attr_int(b, y, "to", dt);
    return y;
}

int ulc_grad_rank(ulc_gb *b, const ulc_value *v) {
    ulc_rt_tensor t;
    if (!v || v->id >= grad_of(b)->n_forward || !ulc_analysis_get(grad_of(b)->a, v, &t)) return -1;
    return t.rank;
}

const int64_t *ulc_grad_dims(ulc_gb *b, const ulc_value *v) {
    /* The analysis keeps each value's tensor descriptor; hand out a stable copy. */
    ulc_rt_tensor t;
    if (!v || v->id >= grad_of(b)->n_forward || !ulc_analysis_get(grad_of(b)->a, v, &t)) return NULL;
    int64_t *d = ulc_arena_calloc(b->g->arena, (size_t)(t.rank ? t.rank : 1), sizeof *d);
    if (d) memcpy(d, t.dims, (size_t)t.rank * sizeof *d);
    return d;
}

int ulc_grad_const_ints(ulc_gb *b, const ulc_value *v, int64_t *out, int max) {
    ulc_rt_tensor t;
    if (!v || v->id >= grad_of(b)->n_forward || !ulc_analysis_get(grad_of(b)->a, v, &t) || !t.data) return -1;
    uint64_t n = ulc_rt_numel(&t);
    if (n > (uint64_t)max) return -1;
    for (uint64_t i = 0; i < n; i++) {
        if (t.dtype == ULC_DT_I64) out[i] = ((const int64_t *)t.data)[i];
        else if (t.dtype == ULC_DT_I32) out[i] = ((const int32_t *)t.data)[i];
        else return -1;
    }
    return (int)n;
}

int64_t ulc_grad_attr_i(const ulc_node *n, const char *name, int64_t def) {
    const ulc_attr *a = ulc_node_attr(n, name);
    return a && a->type == ULC_ATTR_INT ? a->i : def;
}

float ulc_grad_attr_f(const ulc_node *n, const char *name, float def) {
    const ulc_attr *a = ulc_node_attr(n, name);
    return a && a->type == ULC_ATTR_FLOAT ? a->f : def;
}

int ulc_grad_attr_is(const ulc_node *n, const char *name, int64_t *out, int max) {
    const ulc_attr *a = ulc_node_attr(n, name);
    if (!a || a->type != ULC_ATTR_INTS || a->n > (size_t)max) return -1;
    for (size_t i = 0; i < a->n; i++) out[i] = a->ints[i];
    return (int)a->n;
}

ulc_value *ulc_grad_sum_to(ulc_gb *b, ulc_value *dy, const ulc_value *y, const ulc_value *x) {
    if (!dy) return NULL;
    int ry = ulc_grad_rank(b, y), rx = ulc_grad_rank(b, x);
    if (ry < 0 || rx < 0) {
        ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "the shapes of '%s' and '%s' are unknown", y->name,
                x->name);
        return NULL;
    }
    const int64_t *dyd = ulc_grad_dims(b, y), *dxd = ulc_grad_dims(b, x);
    int64_t axes[ULC_RT_MAX_RANK];
    int n = 0, lead = ry - rx;
    if (lead < 0) {
        ulc_grad_fail(b, ULC_ERR_INTERNAL, "'%s' has a higher rank than its broadcast '%s'", x->name,
                y->name);
        return NULL;
    }
    for (int i = 0; i < ry; i++)
        if (i < lead || (dxd[i - lead] == 1 && dyd[i] != 1)) axes[n++] = i;
    if (n == 0) return dy;
    ulc_value *s = ulc_gb_reduce_sum(b, dy, n, axes, 1);
    if (!s) return NULL;
    /* keepdims kept every axis: drop the leading ones by reshaping to x's shape */
    return ulc_gb_reshape_like(b, s, (ulc_value *)x);
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
    ulc_value *s = ulc_gb_op2(b, "Add", acc[v->id], c);
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
    ulc_grad grad = {.a = an, .n_forward = nv};
    ulc_gb *b = &grad.b;
    ulc_gb_init(b, g, opset, ULC_GB_NAMES_DERIVED, ctx);
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
        ulc_value *one = ulc_grad_const_like(b, 1.0f, loss);
        ulc_value *shape = one ? ulc_gb_shape(b, loss) : NULL;
        ulc_value *seed = shape ? ulc_gb_op2(b, "Expand", one, shape) : NULL;
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
            b->origin = n;
            st = ulc_grad_fail(b, ULC_ERR_UNSUPPORTED, "too many inputs/outputs to differentiate");
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
        b->origin = n;
        ulc_op op = n->op;
        ulc_grad_rule rule = ulc_grad_rule_for(op);
        if (!rule) {
            st = ulc_grad_fail(b, ULC_ERR_UNSUPPORTED,
                         "no backward rule for op %s%s%s (a trained parameter reaches it)",
                         n->op_type, n->domain && *n->domain ? " of domain " : "",
                         n->domain && *n->domain ? n->domain : "");
            goto done;
        }
        if ((st = rule(b, n, dy, want, dx)) != ULC_OK) goto done;
        for (int i = 0; i < n->n_inputs; i++) {
            if (!want[i]) continue;
            if (!dx[i]) {
                st = ulc_grad_fail(b, ULC_ERR_UNSUPPORTED,
                             "no gradient flows to input %d ('%s'), which depends on a trained "
                             "parameter", i, n->inputs[i].value->name);
                goto done;
            }
            if ((st = accumulate(b, acc, n->inputs[i].value, dx[i])) != ULC_OK) goto done;
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
