/* schema.c — model and attribute checks against ONNX's rules; see schema.h. The attribute
 * table is ir/attrs.def. */
#include "ir/schema.h"

#include <stdio.h>
#include <string.h>

#include "ir/dtype.h"

enum { ATTR_DTYPE = 100 }; /* an INT attribute naming a TensorProto.DataType */

typedef struct attr_row {
    ulc_op op;
    const char *name; /* NULL: the op's own row (since = the opset it appeared in) */
    int type;         /* ulc_attr_type, or ATTR_DTYPE */
    int since, until; /* opsets [since, until); until 0: still current */
} attr_row;

#define ULC_ATTR_DTYPE ATTR_DTYPE
static const attr_row k_rows[] = {
#define OP(op, since) {ULC_OP_##op, NULL, 0, since, 0},
#define A(op, attr, type, since, until) {ULC_OP_##op, #attr, ULC_ATTR_##type, since, until},
#include "ir/attrs.def"
#undef A
#undef OP
};
#undef ULC_ATTR_DTYPE

#define N_ROWS (sizeof k_rows / sizeof *k_rows)

/* Index of op's own row (rows are grouped by op in ops.def order), or -1. */
static int op_row(ulc_op op) {
    size_t lo = 0, hi = N_ROWS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((int)k_rows[mid].op < (int)op) lo = mid + 1;
        else hi = mid;
    }
    return lo < N_ROWS && k_rows[lo].op == op && !k_rows[lo].name ? (int)lo : -1;
}

int ulc_op_has_schema(ulc_op op) { return op_row(op) >= 0; }

static const char *type_name(int t) {
    static const char *const names[] = {"UNDEFINED", "FLOAT", "INT", "STRING", "TENSOR", "GRAPH",
                                        "FLOATS", "INTS", "STRINGS", "TENSORS", "GRAPHS",
                                        "SPARSE_TENSOR", "SPARSE_TENSORS", "TYPE_PROTO",
                                        "TYPE_PROTOS"};
    if (t == ATTR_DTYPE) return "INT";
    return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "an unknown type";
}

/* The type an attribute has: stated, or (IR version 1 had no type field) read off its value. */
static int attr_type(const ulc_attr *a) {
    if (a->has_type || a->type) return a->type;
    if (a->has_f) return ULC_ATTR_FLOAT;
    if (a->has_i) return ULC_ATTR_INT;
    if (a->has_s) return ULC_ATTR_STRING;
    if (a->t) return ULC_ATTR_TENSOR;
    if (a->floats) return ULC_ATTR_FLOATS;
    if (a->ints) return ULC_ATTR_INTS;
    if (a->strings) return ULC_ATTR_STRINGS;
    if (a->tensors) return ULC_ATTR_TENSORS;
    return ULC_ATTR_UNDEFINED;
}

static int in_range(const attr_row *r, int64_t opset) {
    return opset >= r->since && (r->until == 0 || opset < r->until);
}

/* The names op takes at opset, ", "-separated, into buf (for messages). */
static const char *names_at(int first, int64_t opset, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = (size_t)first + 1; i < N_ROWS && k_rows[i].name; i++) {
        if (!in_range(&k_rows[i], opset) || (i > (size_t)first + 1 && k_rows[i - 1].name &&
                                             strcmp(k_rows[i - 1].name, k_rows[i].name) == 0 &&
                                             in_range(&k_rows[i - 1], opset)))
            continue;
        int w = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", k_rows[i].name);
        if (w < 0 || (size_t)w >= size - len) break;
        len += (size_t)w;
    }
    return len ? buf : "none";
}

static ulc_status check_attr(const ulc_node *n, const ulc_attr *a, int first, int64_t opset,
                             ulc_ctx *ctx) {
    char lb[160], names[512];
    const char *op = ulc_op_name(n->op);
    const attr_row *named = NULL, *typed = NULL;
    int t = attr_type(a);
    for (size_t i = (size_t)first + 1; i < N_ROWS && k_rows[i].name; i++) {
        const attr_row *r = &k_rows[i];
        if (strcmp(r->name, a->name) != 0) continue;
        if (!named) named = r;
        if (in_range(r, opset)) {
            named = r;
            if (t == r->type || (r->type == ATTR_DTYPE && t == ULC_ATTR_INT)) typed = r;
        }
    }
    ulc_node_label(n, lb, sizeof lb);
    if (!named)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: unknown attribute '%s' (%s at opset %lld "
                        "takes: %s)", lb, a->name, op, (long long)opset,
                        names_at(first, opset, names, sizeof names));
    if (!in_range(named, opset)) {
        if (named->until && opset >= named->until)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: attribute '%s' is not part of %s at "
                            "opset %lld (it was removed in opset %d)", lb, a->name, op,
                            (long long)opset, named->until);
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: attribute '%s' is not part of %s at opset "
                        "%lld (it was added in opset %d)", lb, a->name, op, (long long)opset,
                        named->since);
    }
    if (!typed)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: attribute '%s' is %s, but %s takes %s", lb,
                        a->name, type_name(t), op, type_name(named->type));
    if (typed->type == ULC_ATTR_TENSOR && !a->t)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: attribute '%s' is TENSOR but holds no tensor",
                        lb, a->name);
    if (typed->type == ATTR_DTYPE && !ulc_dtype_valid((int)a->i))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: attribute '%s' is %lld, not a known "
                        "TensorProto.DataType", lb, a->name, (long long)a->i);
    return ULC_OK;
}

/* ---- input and output counts (ir/arity.def) ----------------------------------------------- */

typedef struct arity_row {
    ulc_op op;
    int since, min_in, max_in, min_out, max_out; /* max -1: no bound */
} arity_row;

static const arity_row k_arity[] = {
#define ARITY(op, since, min_in, max_in, min_out, max_out) \
    {ULC_OP_##op, since, min_in, max_in, min_out, max_out},
#include "ir/arity.def"
#undef ARITY
};

#define N_ARITY (sizeof k_arity / sizeof *k_arity)

/* The row in effect for op at opset (its newest version at or before it), or NULL. */
static const arity_row *arity_at(ulc_op op, int64_t opset) {
    size_t lo = 0, hi = N_ARITY;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((int)k_arity[mid].op < (int)op) lo = mid + 1;
        else hi = mid;
    }
    const arity_row *best = NULL;
    for (size_t i = lo; i < N_ARITY && k_arity[i].op == op; i++)
        if (k_arity[i].since <= opset) best = &k_arity[i];
    return best;
}

static ulc_status check_arity(const ulc_node *n, int64_t opset, ulc_ctx *ctx) {
    const arity_row *r = arity_at(n->op, opset);
    if (!r) return ULC_OK;
    char lb[160];
    int nin = n->n_inputs, nout = n->n_outputs;
    while (nin > 0 && !n->inputs[nin - 1].value) nin--; /* trailing empty names: left out */
    while (nout > 0 && !n->outputs[nout - 1]) nout--;
    if (r->max_in >= 0 && nin > r->max_in)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %d inputs, but %s at opset %lld takes at most %d",
                        ulc_node_label(n, lb, sizeof lb), nin, ulc_op_name(n->op), (long long)opset,
                        r->max_in);
    for (int i = 0; i < r->min_in; i++)
        if (i >= n->n_inputs || !n->inputs[i].value)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: input %d is missing; %s at opset %lld needs "
                            "at least %d", ulc_node_label(n, lb, sizeof lb), i, ulc_op_name(n->op),
                            (long long)opset, r->min_in);
    if (r->max_out >= 0 && nout > r->max_out)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %d outputs, but %s at opset %lld has at most %d",
                        ulc_node_label(n, lb, sizeof lb), nout, ulc_op_name(n->op), (long long)opset,
                        r->max_out);
    for (int i = 0; i < r->min_out; i++)
        if (i >= n->n_outputs || !n->outputs[i])
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output %d is missing; %s at opset %lld has "
                            "%d required", ulc_node_label(n, lb, sizeof lb), i, ulc_op_name(n->op),
                            (long long)opset, r->min_out);
    return ULC_OK;
}

ulc_status ulc_op_check_attrs(const ulc_node *n, int64_t opset, ulc_ctx *ctx) {
    if (!ulc_domain_is_default(n->domain)) return ULC_OK;
    int first = op_row(n->op);
    if (first < 0) return ULC_OK;
    char lb[160];
    if (opset < k_rows[first].since)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %s does not exist at opset %lld (it was added "
                        "in opset %d)", ulc_node_label(n, lb, sizeof lb), ulc_op_name(n->op),
                        (long long)opset, k_rows[first].since);
    ULC_TRY(check_arity(n, opset, ctx));
    for (int i = 0; i < n->n_attrs; i++) ULC_TRY(check_attr(n, &n->attrs[i], first, opset, ctx));
    return ULC_OK;
}

/* ---- the model ----------------------------------------------------------------------------- */

static ulc_status check_opsets(const ulc_model *m, ulc_ctx *ctx) {
    if (m->n_opsets == 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "opset_import is missing: the model must import "
                        "an ai.onnx opset (IR version 3 and later require one; onnxruntime "
                        "requires one at every IR version)");
    for (int i = 0; i < m->n_opsets; i++) {
        const ulc_opset *o = &m->opsets[i];
        const char *d = o->domain && *o->domain ? o->domain : "ai.onnx";
        if (!o->has_version || o->version < 1)
            return ulc_fail(ctx, ULC_ERR_INVALID, "opset_import of domain '%s': version %lld, "
                            "expected 1 or more", d, (long long)o->version);
        for (int j = 0; j < i; j++) {
            const char *e = m->opsets[j].domain && *m->opsets[j].domain ? m->opsets[j].domain
                                                                         : "ai.onnx";
            if (strcmp(d, e) == 0)
                return ulc_fail(ctx, ULC_ERR_INVALID, "opset_import lists domain '%s' twice",
                                d);
        }
        if (ulc_domain_is_default(o->domain) && o->version > ULC_ONNX_OPSET_MAX)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "opset_import: ai.onnx opset %lld is newer "
                            "than the newest ulc implements (%d)", (long long)o->version,
                            ULC_ONNX_OPSET_MAX);
    }
    return ULC_OK;
}

static ulc_status check_value_types(const ulc_graph *g, ulc_ctx *ctx) {
    for (size_t i = 0; i < g->values.len; i++) {
        const ulc_value *v = g->values.items[i];
        if (!(v->flags & ULC_VALUE_HAS_TYPE) || ulc_dtype_valid(v->dtype)) continue;
        const char *role = (v->flags & ULC_VALUE_INPUT)    ? "input"
                           : (v->flags & ULC_VALUE_OUTPUT) ? "output"
                                                           : "value_info";
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s '%s': elem_type %d is not a known "
                        "TensorProto.DataType", role, v->name, v->dtype);
    }
    return ULC_OK;
}

static int imports_default(const ulc_model *m) {
    for (int i = 0; i < m->n_opsets; i++)
        if (ulc_domain_is_default(m->opsets[i].domain)) return 1;
    return 0;
}

ulc_status ulc_model_check(const ulc_model *m, ulc_ctx *ctx) {
    if (m->ir_version < 1)
        return ulc_fail(ctx, ULC_ERR_INVALID, "ir_version %lld, expected 1 or more",
                        (long long)m->ir_version);
    if (m->ir_version > ULC_ONNX_IR_VERSION_MAX)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "ir_version %lld is newer than the newest ulc "
                        "implements (%d)", (long long)m->ir_version, ULC_ONNX_IR_VERSION_MAX);
    ULC_TRY(check_opsets(m, ctx));
    ULC_TRY(check_value_types(m->graph, ctx));
    int64_t opset = ulc_model_opset(m, "");
    for (const ulc_node *n = m->graph->first; n; n = n->next) {
        if (!ulc_domain_is_default(n->domain) || n->op == ULC_OP_UNKNOWN) continue;
        if (m->n_opsets > 0 && !imports_default(m))
            return ulc_fail(ctx, ULC_ERR_INVALID, "node '%s' (%s): the model imports no ai.onnx "
                            "opset", n->name ? n->name : "", n->op_type);
        ULC_TRY(ulc_op_check_attrs(n, opset, ctx));
    }
    return ULC_OK;
}
