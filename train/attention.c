/* attention.c — attention as one ulc Attention node before autodiff (see attention.h). The
 * pattern and its conditions are runtime/attn.c's, read on the graph with an analysis's shapes
 * instead of on a plan. */
#include "train/attention.h"

#include <stdlib.h>
#include <string.h>

#include "ir/builder.h"

static ulc_status nomem(ulc_ctx *ctx) {
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (attention in the training graph)");
}

/* The node reading v, when it is v's only reader and v is no graph output. */
static ulc_node *only_reader(const ulc_value *v) {
    if (!v || (v->flags & ULC_VALUE_OUTPUT) || ulc_value_num_uses(v) != 1) return NULL;
    return v->first_use->node;
}

static int known(const ulc_analysis *an, const ulc_value *v, ulc_rt_tensor *t) {
    return v && ulc_analysis_get(an, v, t);
}

/* A float32 scalar the analysis knows the value of. */
static int f32_scalar(const ulc_analysis *an, const ulc_value *v, float *f) {
    ulc_rt_tensor t;
    if (!known(an, v, &t) || t.dtype != ULC_DT_F32 || ulc_rt_numel(&t) != 1 || !t.data) return 0;
    memcpy(f, t.data, sizeof *f);
    return 1;
}

static int same_batch(const ulc_rt_tensor *a, const ulc_rt_tensor *b) {
    if (a->rank != b->rank || a->rank < 3) return 0;
    for (int d = 0; d < a->rank - 2; d++)
        if (a->dims[d] != b->dims[d]) return 0;
    return 1;
}

/* A Cast to float32 of a float32 value. */
static int noop_cast(const ulc_analysis *an, const ulc_node *n) {
    ulc_rt_tensor x, y;
    return n->op == ULC_OP_Cast && n->n_inputs == 1 && n->n_outputs == 1 && known(an, n->inputs[0].value, &x) &&
           known(an, n->outputs[0], &y) && x.dtype == ULC_DT_F32 && y.dtype == ULC_DT_F32;
}

typedef struct match {
    ulc_node *members[12];
    int n_members;                      /* the last is P · V */
    int64_t ops[ULC_ATTENTION_MAX_OPS];      /* Attention's codes (ir/ops_ulc.def) */
    float imms[ULC_ATTENTION_MAX_OPS];
    int n_ops;
    ulc_value *ins[3 + ULC_ATTENTION_MAX_OPS];
    int n_ins;
} match;

/* The whole pattern from the MatMul n, or 0. dep: per value id, 1 when it depends on a value
 * being differentiated (a mask that does keeps the nodes). */
static int match_at(const ulc_analysis *an, int64_t opset, const uint8_t *dep, ulc_node *n, match *m) {
    if (n->op != ULC_OP_MatMul || n->n_inputs != 2 || n->n_outputs != 1) return 0;
    ulc_value *qv = n->inputs[0].value, *kv = n->inputs[1].value, *cur = n->outputs[0];
    ulc_rt_tensor q, k, s;
    if (!known(an, qv, &q) || !known(an, kv, &k) || !known(an, cur, &s)) return 0;
    if (q.dtype != ULC_DT_F32 || k.dtype != ULC_DT_F32 || !same_batch(&q, &k) || s.rank != q.rank) return 0;
    memset(m, 0, sizeof *m);
    m->members[m->n_members++] = n;
    m->ins[0] = qv;
    m->ins[1] = kv;
    m->n_ins = 3;
    int softmax = 0;
    for (;;) {
        ulc_node *nj = only_reader(cur);
        if (!nj || m->n_members >= 11 || nj->n_outputs != 1 || !nj->outputs[0]) return 0;
        if (softmax && nj->op == ULC_OP_MatMul) {
            if (nj->n_inputs != 2 || nj->inputs[0].value != cur) return 0;
            break; /* P · V */
        }
        ulc_rt_tensor o;
        if (!known(an, nj->outputs[0], &o) || o.dtype != ULC_DT_F32 || !ulc_rt_same_shape(&o, &s)) return 0;
        if (noop_cast(an, nj)) {
            /* passes S (or P) through */
        } else if (softmax) {
            return 0;
        } else if ((nj->op == ULC_OP_Div || nj->op == ULC_OP_Mul) && nj->n_inputs == 2) {
            int side = nj->inputs[0].value == cur ? 1 : 0; /* the other operand */
            float f;
            if (nj->op == ULC_OP_Div && side != 1) return 0; /* c / S is no scale */
            if (nj->inputs[side].value == cur || !f32_scalar(an, nj->inputs[side].value, &f) ||
                m->n_ops >= ULC_ATTENTION_MAX_OPS)
                return 0;
            m->ops[m->n_ops] = nj->op == ULC_OP_Div ? 1 : 0;
            m->imms[m->n_ops++] = f;
        } else if (nj->op == ULC_OP_Where && nj->n_inputs == 3) {
            ulc_value *c = nj->inputs[0].value, *x = nj->inputs[1].value, *y = nj->inputs[2].value;
            ulc_rt_tensor ct;
            float f;
            if (!c || c == cur || (x == cur) == (y == cur) || !f32_scalar(an, x == cur ? y : x, &f)) return 0;
            if (!known(an, c, &ct) || ct.dtype != ULC_DT_BOOL || !ulc_rt_broadcasts_to(&ct, s.rank, s.dims) ||
                m->n_ops >= ULC_ATTENTION_MAX_OPS)
                return 0;
            m->ops[m->n_ops] = x == cur ? 2 : 3;
            m->imms[m->n_ops++] = f;
            m->ins[m->n_ins++] = c;
        } else if (nj->op == ULC_OP_Add && nj->n_inputs == 2) {
            ulc_value *ov = nj->inputs[0].value == cur ? nj->inputs[1].value : nj->inputs[0].value;
            ulc_rt_tensor ot;
            if (!ov || ov == cur || !known(an, ov, &ot) || ot.dtype != ULC_DT_F32 || !ulc_rt_broadcasts_to(&ot, s.rank, s.dims) ||
                m->n_ops >= ULC_ATTENTION_MAX_OPS)
                return 0;
            m->ops[m->n_ops] = 4;
            m->imms[m->n_ops++] = 0.0f;
            m->ins[m->n_ins++] = ov;
        } else if (nj->op == ULC_OP_Softmax && nj->n_inputs == 1) {
            const ulc_attr *at = ulc_node_attr(nj, "axis");
            int64_t axis = at && at->type == ULC_ATTR_INT ? at->i : -1;
            /* opset < 13 flattens from `axis` (default 1): the same rows only for the last axis */
            if (!at && opset < 13) return 0;
            if (axis != -1 && axis != s.rank - 1) return 0;
            softmax = 1;
        } else {
            return 0;
        }
        m->members[m->n_members++] = nj;
        cur = nj->outputs[0];
    }
    ulc_node *pv = only_reader(cur);
    ulc_value *vv = pv->inputs[1].value;
    ulc_rt_tensor v, o;
    if (!vv || vv == cur || !known(an, vv, &v) || !known(an, pv->outputs[0], &o)) return 0;
    if (v.dtype != ULC_DT_F32 || !same_batch(&v, &q) || v.dims[v.rank - 2] != s.dims[s.rank - 1] ||
        o.rank != q.rank || o.dims[o.rank - 2] != q.dims[q.rank - 2])
        return 0;
    m->members[m->n_members++] = pv;
    m->ins[2] = vv;
    for (int e = 3; e < m->n_ins; e++)
        if (dep[m->ins[e]->id]) return 0;
    return 1;
}

/* Replaces m's nodes by one Attention writing P · V's output. */
static ulc_status rewrite(ulc_graph *g, int64_t opset, const match *m, ulc_ctx *ctx) {
    ulc_node *pv = m->members[m->n_members - 1];
    ulc_value *o = pv->outputs[0];
    ulc_gb gb;
    ulc_gb_init(&gb, g, opset, ULC_GB_NAMES_DERIVED, ctx);
    gb.origin = pv;
    ulc_value *y = ulc_gb_opn(&gb, ULC_DOMAIN, "Attention", m->n_ins, m->ins, 1, NULL);
    if (!y) return ctx->status ? ctx->status : nomem(ctx);
    if (m->n_ops) {
        ulc_gb_attr_ints(&gb, y, "ops", m->n_ops, m->ops);
        float *f = ulc_arena_alloc(g->arena, sizeof(float) * (size_t)m->n_ops);
        if (!f) return nomem(ctx);
        memcpy(f, m->imms, sizeof(float) * (size_t)m->n_ops);
        ulc_attr a = {.name = "imms", .type = ULC_ATTR_FLOATS, .has_type = 1, .n = (size_t)m->n_ops, .floats = f};
        ulc_gb_attr_put(&gb, y, &a);
    }
    if (gb.status != ULC_OK) return gb.status;
    ulc_node *an = y->producer;
    for (int i = m->n_members - 1; i >= 0; i--) ulc_graph_remove_node(g, m->members[i]);
    return ulc_node_set_output(an, 0, o, ctx);
}

/* dep[v] = 1 for every value the wrt values reach (nodes in graph order: g is sorted). */
static uint8_t *depends(const ulc_graph *g, ulc_value *const *wrt, int n_wrt) {
    uint8_t *dep = calloc(g->values.len ? g->values.len : 1, 1);
    if (!dep) return NULL;
    for (int i = 0; i < n_wrt; i++)
        if (wrt[i]) dep[wrt[i]->id] = 1;
    for (const ulc_node *n = g->first; n; n = n->next) {
        int d = 0;
        for (int i = 0; i < n->n_inputs && !d; i++) d = n->inputs[i].value && dep[n->inputs[i].value->id];
        for (int o = 0; d && o < n->n_outputs; o++)
            if (n->outputs[o]) dep[n->outputs[o]->id] = 1;
    }
    return dep;
}

ulc_status ulc_train_fuse_attention(ulc_graph *g, int64_t opset, const ulc_rt_binding *bs, int nb,
                                    ulc_value *const *wrt, int n_wrt, int *fused, ulc_ctx *ctx) {
    const char *e = getenv("ULC_NO_ATTENTION_FUSION");
    *fused = 0;
    if (e && *e && strcmp(e, "0") != 0) return ULC_OK;
    size_t cap = 0;
    for (const ulc_node *n = g->first; n; n = n->next) cap += n->op == ULC_OP_Softmax;
    if (!cap) return ULC_OK;
    uint8_t *dep = depends(g, wrt, n_wrt);
    if (!dep) return nomem(ctx);
    ulc_analysis *an = NULL;
    ulc_status ast = ulc_analyze(g, opset, bs, nb, (size_t)1 << 16, &an, ctx);
    if (ast != ULC_OK) {
        free(dep);
        return ast;
    }
    /* the candidate MatMuls first: a rewrite removes nodes of its own match only */
    size_t nm = 0;
    for (const ulc_node *n = g->first; n; n = n->next) nm += n->op == ULC_OP_MatMul;
    ulc_node **mms = malloc((nm ? nm : 1) * sizeof *mms);
    if (!mms) {
        ulc_analysis_free(an);
        free(dep);
        return nomem(ctx);
    }
    nm = 0;
    for (ulc_node *n = g->first; n; n = n->next)
        if (n->op == ULC_OP_MatMul) mms[nm++] = n;
    ulc_status st = ULC_OK;
    /* a P · V MatMul is a member of the match before it, never a start: matched in order, the
     * start of every later match is still in the graph */
    ulc_node **dead = calloc(nm ? nm : 1, sizeof *dead);
    size_t nd = 0;
    for (size_t i = 0; i < nm && st == ULC_OK && dead; i++) {
        int gone = 0;
        for (size_t d = 0; d < nd && !gone; d++) gone = dead[d] == mms[i];
        match m;
        if (gone || !match_at(an, opset, dep, mms[i], &m)) continue;
        dead[nd++] = m.members[m.n_members - 1];
        st = rewrite(g, opset, &m, ctx);
        if (st == ULC_OK) (*fused)++;
    }
    if (!dead && st == ULC_OK) st = nomem(ctx);
    free(dead);
    free(mms);
    free(dep);
    ulc_analysis_free(an);
    if (st != ULC_OK) return st;
    return *fused ? ulc_graph_toposort(g, ctx) : ULC_OK;
}
