/* verify.c — structural invariants of a graph; see ulc_graph_verify in graph.h. */
#include <stdlib.h>
#include <string.h>

#include "ir/graph.h"

static ulc_status check_tensor(const ulc_tensor *t, const char *where, ulc_ctx *ctx) {
    if (!ulc_dtype_valid(t->dtype))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: tensor '%s' has unknown data type %d", where,
                        t->name ? t->name : "", t->dtype);
    if (t->dtype == ULC_DT_STRING || t->storage == ULC_STORAGE_NONE) return ULC_OK;
    int of = 0;
    size_t need = ulc_dtype_nbytes(t->dtype, t->numel, &of);
    if (of || need != t->nbytes)
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "%s: tensor '%s' holds %zu bytes but %llu elements of %s need %zu", where,
                        t->name ? t->name : "", t->nbytes, (unsigned long long)t->numel,
                        ulc_dtype_name(t->dtype), need);
    return ULC_OK;
}

static ulc_status check_attr(const ulc_node *n, const ulc_attr *a, ulc_ctx *ctx) {
    char lb[160];
    if (!a->name || !*a->name)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: attribute without a name",
                        ulc_node_label(n, lb, sizeof lb));
    for (int j = 0; j < n->n_attrs; j++) {
        const ulc_attr *b = &n->attrs[j];
        if (b != a && b->name && strcmp(b->name, a->name) == 0 && b < a)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: attribute '%s' appears twice",
                            ulc_node_label(n, lb, sizeof lb), a->name);
    }
    if (a->type == ULC_ATTR_TENSOR && a->t) {
        char where[200];
        ulc_node_label(n, lb, sizeof lb);
        snprintf(where, sizeof where, "%s attribute '%s'", lb, a->name);
        return check_tensor(a->t, where, ctx);
    }
    if (a->type == ULC_ATTR_TENSORS) {
        for (size_t k = 0; k < a->n; k++) {
            char where[200];
            ulc_node_label(n, lb, sizeof lb);
            snprintf(where, sizeof where, "%s attribute '%s'[%zu]", lb, a->name, k);
            ULC_TRY(check_tensor(a->tensors[k], where, ctx));
        }
    }
    return ULC_OK;
}

ulc_status ulc_graph_verify(const ulc_graph *g, ulc_ctx *ctx) {
    char lb[160];
    size_t nv = g->values.len;
    /* defined[v->id]: 1 once the value is available to later nodes. */
    unsigned char *defined = calloc(nv ? nv : 1, 1);
    if (!defined) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (verifier)");
    ulc_status s = ULC_OK;

    for (size_t i = 0; i < nv && s == ULC_OK; i++) {
        const ulc_value *v = g->values.items[i];
        if (ulc_graph_get_value(g, v->name) != v)
            s = ulc_fail(ctx, ULC_ERR_INTERNAL, "value '%s' is missing from the name table",
                         v->name);
        else if ((v->flags & ULC_VALUE_INITIALIZER) && v->producer)
            s = ulc_fail(ctx, ULC_ERR_INVALID, "initializer '%s' is also produced by %s", v->name,
                         ulc_node_label(v->producer, lb, sizeof lb));
        else if ((v->flags & ULC_VALUE_INITIALIZER) && !v->init)
            s = ulc_fail(ctx, ULC_ERR_INTERNAL, "initializer '%s' has no tensor", v->name);
        else if (v->init)
            s = check_tensor(v->init, "initializer", ctx);
        if (s == ULC_OK && (v->flags & (ULC_VALUE_INPUT | ULC_VALUE_INITIALIZER |
                                        ULC_VALUE_OPAQUE_INIT)))
            defined[v->id] = 1;
        if (s == ULC_OK && (v->flags & ULC_VALUE_INPUT) && v->producer)
            s = ulc_fail(ctx, ULC_ERR_INVALID, "graph input '%s' is also produced by %s", v->name,
                         ulc_node_label(v->producer, lb, sizeof lb));
    }

    int count = 0;
    for (const ulc_node *n = g->first; n && s == ULC_OK; n = n->next, count++) {
        if (!n->op_type || !*n->op_type) {
            s = ulc_fail(ctx, ULC_ERR_INVALID, "%s has no op_type", ulc_node_label(n, lb, sizeof lb));
            break;
        }
        for (int i = 0; i < n->n_inputs && s == ULC_OK; i++) {
            const ulc_use *u = &n->inputs[i];
            if (u->node != n || u->slot != i)
                s = ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: input %d has a broken use record",
                             ulc_node_label(n, lb, sizeof lb), i);
            else if (u->value && !defined[u->value->id])
                s = ulc_fail(ctx, ULC_ERR_INVALID,
                             u->value->producer
                                 ? "%s reads '%s' before the node that produces it"
                                   " (the graph is not in topological order, or has a cycle)"
                                 : "%s reads '%s', which no node produces and which is neither"
                                   " a graph input nor an initializer",
                             ulc_node_label(n, lb, sizeof lb), u->value->name);
        }
        for (int i = 0; i < n->n_outputs && s == ULC_OK; i++) {
            const ulc_value *v = n->outputs[i];
            if (!v) continue;
            if (v->producer != n || v->producer_slot != i)
                s = ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: output '%s' has a broken producer link",
                             ulc_node_label(n, lb, sizeof lb), v->name);
            else if (defined[v->id])
                s = ulc_fail(ctx, ULC_ERR_INVALID, "%s writes '%s', which is already defined",
                             ulc_node_label(n, lb, sizeof lb), v->name);
            else
                defined[v->id] = 1;
        }
        for (int i = 0; i < n->n_attrs && s == ULC_OK; i++) s = check_attr(n, &n->attrs[i], ctx);
    }
    if (s == ULC_OK && count != g->n_nodes)
        s = ulc_fail(ctx, ULC_ERR_INTERNAL, "node count %d does not match the list (%d)",
                     g->n_nodes, count);
    for (size_t i = 0; i < g->outputs.len && s == ULC_OK; i++) {
        const ulc_value *v = g->outputs.items[i];
        if (!defined[v->id])
            s = ulc_fail(ctx, ULC_ERR_INVALID,
                         "graph output '%s' is not produced by any node, input or initializer",
                         v->name);
    }
    free(defined);
    return s;
}
