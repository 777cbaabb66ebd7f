/* attn.c — fusing attention into one step of the backend's attention kernel (kernel.h, ulc_attn):
 *
 *     S = MatMul(Q, Kᵀ) → [Div | Mul by a scalar, Cast to float, Where(mask, S, fill), Add(mask)]*
 *       → Softmax over the last axis → [Cast to float] → O = MatMul(P, V)
 *
 * as ViT's and GPT-2's exports spell it (GPT-2: Div, Cast, Where with the causal mask, Add of the
 * padding mask). Each intermediate must be read only by the next node; Q, Kᵀ and V share their
 * batch dims (no broadcasting), masks broadcast to S's shape, every scalar is a plan constant.
 * The fused step takes the last MatMul's place (every input is ready there) and writes its
 * output; S, its transforms and P are never materialised, so their [.., Tq, Tk] buffers leave the
 * arena.
 *
 * The heads' split and merge fold in too: a Transpose that makes Q or V from [B, T, H, D] (read by
 * nothing else) is dropped and the kernel reads its input through a strided view, and a
 * Transpose that is the only reader of the output (back to [B, T, H, Dv]) is dropped and the
 * kernel writes its layout directly. Three [B, T, C] copies per layer leave the plan; Kᵀ's
 * Transpose stays (its view would be a transposed operand, which sgemm reads slower).
 * ULC_NO_ATTENTION_FUSION=1 keeps the nodes; ULC_NO_ATTENTION_VIEWS=1 keeps the Transposes. */
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

static int f32_scalar(const rt_val *rv) {
    return rv->known == V_CONST && rv->t.dtype == ULC_DT_F32 && ulc_rt_numel(&rv->t) == 1 && rv->t.data;
}

/* Ready when the fused step runs at position `at` (a constant, or made before it). */
static int ready_at(const rt_val *rv, int at) { return rv->known == V_CONST || (rv->step >= 0 && rv->step < at); }

/* A Cast to float32 of a float32 value: nothing to do. */
static int noop_cast(const rt_plan *p, const ulc_node *n) {
    if (n->op != ULC_OP_Cast || n->n_inputs != 1 || !n->inputs[0].value || !n->outputs[0]) return 0;
    return p->vals[n->inputs[0].value->id].t.dtype == ULC_DT_F32 &&
           p->vals[n->outputs[0]->id].t.dtype == ULC_DT_F32;
}

/* The same batch dims and rank (r >= 3), no broadcasting between Q, Kᵀ and V. */
static int same_batch(const ulc_rt_tensor *a, const ulc_rt_tensor *b) {
    if (a->rank != b->rank || a->rank < 3) return 0;
    for (int d = 0; d < a->rank - 2; d++)
        if (a->dims[d] != b->dims[d]) return 0;
    return 1;
}

typedef struct match {
    int members[12], n_members; /* steps fused, in order; the last is P · V */
    ulc_attn a;
    ulc_value *ins[3 + ULC_ATTN_MAX_OPS];
    int n_ins;
    int dropped[4], n_dropped;  /* Transposes folded in (Q, Kᵀ, V; the output's) */
    int out_step;               /* the output's Transpose, or -1 */
} match;

/* The permutation of Transpose node n (rank r; default: reversed), or 0 when it is not one. */
static int perm_of(const ulc_node *n, int r, int64_t *perm) {
    const ulc_attr *at = ulc_node_attr(n, "perm");
    if (!at) {
        for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
        return 1;
    }
    if (at->type != ULC_ATTR_INTS || (int)at->n != r) return 0;
    for (int i = 0; i < r; i++) {
        perm[i] = at->ints[i] < 0 ? at->ints[i] + r : at->ints[i];
        if (perm[i] < 0 || perm[i] >= r) return 0;
    }
    return 1;
}

/* Element strides of a dense row-major tensor t. */
static void dense_strides(const ulc_rt_tensor *t, int64_t *st) {
    int64_t s = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= t->dims[d];
    }
}

/* A Transpose step that may fold into the fused step: plain, unfused, float32. */
static int foldable_transpose(const rt_plan *p, int i) {
    if (i < 0) return 0;
    const rt_step *st = &p->steps[i];
    const ulc_node *n = st->node;
    return n->op == ULC_OP_Transpose && !st->removed && !st->kc.fuse && !st->chain && !st->attn && !st->alias &&
           n->n_inputs == 1 && n->inputs[0].value && n->n_outputs == 1 && st->out0 == n->outputs[0] &&
           p->vals[n->inputs[0].value->id].t.dtype == ULC_DT_F32 && p->vals[n->inputs[0].value->id].t.layout == 0;
}

/* The one step reading v's data: like ulc_plan_sole_reader, but Shape and Size nodes the walk
 * folded (GPT-2's exports read the heads' sizes off Q) do not count. */
static int data_reader(const rt_plan *p, const int *step_of, const ulc_graph *g, const ulc_value *v) {
    if (!v || (v->flags & ULC_VALUE_OUTPUT) || ulc_ptrvec_find(&g->outputs, v) >= 0) return -1;
    int j = -1;
    for (const ulc_use *u = v->first_use; u; u = u->next) {
        int s = step_of[u->node->id];
        if (s < 0 && (u->node->op == ULC_OP_Shape || u->node->op == ULC_OP_Size)) continue;
        if (s < 0 || j >= 0 || p->steps[s].removed) return -1;
        for (int i = 0; i < u->node->n_inputs; i++)
            if (i != u->slot && u->node->inputs[i].value == v) return -1;
        j = s;
    }
    return j;
}

/* Operand slot e of m (read by step `reader` only) when a Transpose made it: the Transpose's
 * input in its place, read through view *v. */
static void fold_input(const rt_plan *p, const int *step_of, const ulc_graph *g, match *m, int e, int reader,
                       int64_t cols, ulc_attn_view *v) {
    const ulc_value *x = m->ins[e];
    int ts = p->vals[x->id].step;
    if (!foldable_transpose(p, ts) || data_reader(p, step_of, g, x) != reader) return;
    const ulc_node *n = p->steps[ts].node;
    const ulc_rt_tensor *u = &p->vals[n->inputs[0].value->id].t;
    int r = m->a.rank;
    int64_t perm[ULC_RT_MAX_RANK], su[ULC_RT_MAX_RANK] = {0}, sx[ULC_RT_MAX_RANK] = {0};
    if (r < 2 || u->rank != r || !perm_of(n, r, perm)) return;
    dense_strides(u, su);
    for (int i = 0; i < r; i++) sx[i] = su[perm[i]]; /* x's dim i is u's dim perm[i] */
    /* rows of contiguous columns only: a Kᵀ read as K's transposed view ('T', ld H·D) made
     * sgemm slower than the Transpose it saves (ViT-S shapes: 8.3 against 8.0 ms at batch 8) */
    if (sx[r - 1] != 1 || sx[r - 2] < cols) return; /* sgemm's lda >= the columns */
    for (int d = 0; d < r - 2; d++) v->bs[d] = sx[d];
    v->rs = sx[r - 2];
    v->cs = sx[r - 1];
    m->ins[e] = n->inputs[0].value;
    m->dropped[m->n_dropped++] = ts;
}

/* The output when its only reader is a Transpose: the fused step writes the Transpose's output
 * (its view of O), and the Transpose goes. */
static void fold_output(const rt_plan *p, const int *step_of, const ulc_graph *g, match *m, int last) {
    int ts = ulc_plan_sole_reader(p, step_of, g, p->steps[last].out0);
    if (!foldable_transpose(p, ts) || ts <= last) return;
    const ulc_node *n = p->steps[ts].node;
    const ulc_rt_tensor *y = &p->vals[n->outputs[0]->id].t;
    int r = m->a.rank;
    int64_t perm[ULC_RT_MAX_RANK], sy[ULC_RT_MAX_RANK] = {0}, so[ULC_RT_MAX_RANK] = {0};
    if (r < 2 || y->rank != r || y->dtype != ULC_DT_F32 || !perm_of(n, r, perm)) return;
    dense_strides(y, sy);
    for (int i = 0; i < r; i++) so[perm[i]] = sy[i]; /* y's dim i is O's dim perm[i] */
    if (so[r - 1] != 1 || so[r - 2] < m->a.dv) return; /* the product writes rows (ldc >= Dv) */
    for (int d = 0; d < r - 2; d++) m->a.o.bs[d] = so[d];
    m->a.o.rs = so[r - 2];
    m->a.o.cs = 1;
    m->dropped[m->n_dropped++] = ts;
    m->out_step = ts;
}

/* From the MatMul at step i: the whole pattern, or 0. */
static int match_at(const rt_plan *p, const int *step_of, const ulc_graph *g, int i, match *m) {
    const rt_step *st = &p->steps[i];
    const ulc_node *n = st->node;
    if (n->op != ULC_OP_MatMul || st->removed || st->kc.fuse || st->alias || n->n_inputs != 2 || !st->out0)
        return 0;
    const ulc_value *qv = n->inputs[0].value, *kv = n->inputs[1].value;
    if (!qv || !kv) return 0;
    const ulc_rt_tensor *q = &p->vals[qv->id].t, *k = &p->vals[kv->id].t, *s = &p->vals[st->out0->id].t;
    if (q->dtype != ULC_DT_F32 || k->dtype != ULC_DT_F32 || !same_batch(q, k) || s->rank != q->rank) return 0;
    memset(m, 0, sizeof *m);
    m->members[m->n_members++] = i;
    m->ins[0] = (ulc_value *)qv;
    m->ins[1] = (ulc_value *)kv;
    m->n_ins = 3;
    ulc_value *cur = st->out0;
    int softmax = 0;
    for (;;) {
        int j = ulc_plan_sole_reader(p, step_of, g, cur);
        if (j < 0 || j <= i || m->n_members >= 11) return 0;
        const rt_step *sj = &p->steps[j];
        const ulc_node *nj = sj->node;
        if (sj->kc.fuse || sj->chain || sj->alias || nj->n_outputs != 1 || !nj->outputs[0] || sj->out0 != nj->outputs[0])
            return 0;
        if (softmax && nj->op == ULC_OP_MatMul) {
            if (nj->n_inputs != 2 || nj->inputs[0].value != cur) return 0;
            break; /* P · V, handled below */
        }
        const rt_val *out = &p->vals[nj->outputs[0]->id];
        if (out->t.dtype != ULC_DT_F32 || !ulc_rt_same_shape(&out->t, s)) return 0;
        if (noop_cast(p, nj)) {
            /* passes S (or P) through */
        } else if (softmax) {
            return 0;
        } else if ((nj->op == ULC_OP_Div || nj->op == ULC_OP_Mul) && nj->n_inputs == 2) {
            int side = nj->inputs[0].value == cur ? 1 : 0; /* the other operand */
            if (nj->op == ULC_OP_Div && side != 1) return 0; /* c / S is no scale */
            const ulc_value *o = nj->inputs[side].value;
            if (!o || o == cur || !f32_scalar(&p->vals[o->id]) || m->a.n_ops >= ULC_ATTN_MAX_OPS) return 0;
            m->a.ops[m->a.n_ops].op = nj->op == ULC_OP_Div ? ULC_ATTN_DIV : ULC_ATTN_MUL;
            m->a.ops[m->a.n_ops++].imm = *(const float *)p->vals[o->id].t.data;
        } else if (nj->op == ULC_OP_Where && nj->n_inputs == 3) {
            const ulc_value *c = nj->inputs[0].value, *x = nj->inputs[1].value, *y = nj->inputs[2].value;
            int s_is_x = x == cur;
            const ulc_value *fill = s_is_x ? y : x;
            if (!c || !fill || c == cur || (x == cur) == (y == cur) || !f32_scalar(&p->vals[fill->id])) return 0;
            const rt_val *cv = &p->vals[c->id];
            if (cv->t.dtype != ULC_DT_BOOL || !ulc_rt_broadcasts_to(&cv->t, s->rank, s->dims) || m->a.n_ops >= ULC_ATTN_MAX_OPS) return 0;
            m->a.ops[m->a.n_ops].op = ULC_ATTN_WHERE;
            m->a.ops[m->a.n_ops].s_is_x = (uint8_t)s_is_x;
            m->a.ops[m->a.n_ops].imm = *(const float *)p->vals[fill->id].t.data;
            m->a.ops[m->a.n_ops++].input = (uint8_t)m->n_ins;
            m->ins[m->n_ins++] = (ulc_value *)c;
        } else if (nj->op == ULC_OP_Add && nj->n_inputs == 2) {
            const ulc_value *o = nj->inputs[0].value == cur ? nj->inputs[1].value : nj->inputs[0].value;
            if (!o || o == cur) return 0;
            const rt_val *ov = &p->vals[o->id];
            if (ov->t.dtype != ULC_DT_F32 || !ulc_rt_broadcasts_to(&ov->t, s->rank, s->dims) || m->a.n_ops >= ULC_ATTN_MAX_OPS) return 0;
            m->a.ops[m->a.n_ops].op = ULC_ATTN_ADD; /* a scalar too: a mask of one element */
            m->a.ops[m->a.n_ops++].input = (uint8_t)m->n_ins;
            m->ins[m->n_ins++] = (ulc_value *)o;
        } else if (nj->op == ULC_OP_Softmax && nj->n_inputs == 1) {
            int64_t axis = -1;
            const ulc_attr *at = ulc_node_attr(nj, "axis");
            if (at && at->type == ULC_ATTR_INT) axis = at->i;
            /* opset < 13 flattens from `axis` (default 1): the same rows only for the last axis */
            if (!at && sj->kc.opset < 13) return 0;
            if (axis != -1 && axis != s->rank - 1) return 0;
            softmax = 1;
        } else {
            return 0;
        }
        m->members[m->n_members++] = j;
        cur = nj->outputs[0];
    }
    /* P · V */
    int j = ulc_plan_sole_reader(p, step_of, g, cur);
    if (j <= m->members[m->n_members - 1] || p->steps[j].removed) return 0;
    const rt_step *sj = &p->steps[j];
    const ulc_value *vv = sj->node->inputs[1].value;
    if (!vv || vv == cur || sj->kc.fuse || !sj->out0) return 0;
    const ulc_rt_tensor *v = &p->vals[vv->id].t, *o = &p->vals[sj->out0->id].t;
    if (v->dtype != ULC_DT_F32 || !same_batch(v, q) || v->dims[v->rank - 2] != s->dims[s->rank - 1] ||
        o->rank != q->rank || o->dims[o->rank - 2] != q->dims[q->rank - 2])
        return 0;
    m->members[m->n_members++] = j;
    m->ins[2] = (ulc_value *)vv;
    /* the geometry, every operand dense */
    ulc_attn *a = &m->a;
    a->rank = q->rank;
    memcpy(a->sdims, s->dims, sizeof a->sdims);
    a->d = q->dims[q->rank - 1];
    a->dv = v->dims[v->rank - 1];
    int64_t tq = s->dims[s->rank - 2], tk = s->dims[s->rank - 1];
    ulc_attn_dense_view(a, tq, a->d, &a->q);
    ulc_attn_dense_view(a, a->d, tk, &a->kt);
    ulc_attn_dense_view(a, tk, a->dv, &a->v);
    ulc_attn_dense_view(a, tq, a->dv, &a->o);
    m->out_step = -1;
    const char *nv = getenv("ULC_NO_ATTENTION_VIEWS");
    if (!(nv && *nv && strcmp(nv, "0") != 0)) {
        fold_input(p, step_of, g, m, 0, m->members[0], a->d, &a->q);
        fold_input(p, step_of, g, m, 1, m->members[0], tk, &a->kt);
        fold_input(p, step_of, g, m, 2, j, a->dv, &a->v);
        fold_output(p, step_of, g, m, j);
    }
    /* every input ready where the fused step runs (the last member's place) */
    for (int e = 0; e < m->n_ins; e++) {
        const rt_val *rv = &p->vals[m->ins[e]->id];
        if (!ready_at(rv, j)) return 0;
        for (int t = 0; t < m->n_members - 1; t++) /* not made by a member */
            if (rv->step == m->members[t]) return 0;
    }
    return 1;
}

ulc_status ulc_plan_fuse_attention(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx) {
    const char *e = getenv("ULC_NO_ATTENTION_FUSION");
    if ((e && *e && strcmp(e, "0") != 0) || !p->be->attn_kernel) return ULC_OK;
    int *step_of = malloc(sizeof(int) * (size_t)(g->next_node_id > 0 ? g->next_node_id : 1));
    if (!step_of) return ulc_plan_nomem(ctx, "attention fusion");
    for (int i = 0; i < g->next_node_id; i++) step_of[i] = -1;
    for (int i = 0; i < p->n_steps; i++)
        if (!p->steps[i].removed) step_of[p->steps[i].node->id] = i;
    ulc_status st = ULC_OK;
    for (int i = 0; i < p->n_steps && st == ULC_OK; i++) {
        match m;
        if (!match_at(p, step_of, g, i, &m)) continue;
        ulc_attn *a = malloc(sizeof *a);
        ulc_rt_tensor **in = malloc(sizeof(ulc_rt_tensor *) * (size_t)m.n_ins);
        ulc_value **reads = malloc(sizeof(ulc_value *) * (size_t)m.n_ins);
        if (!a || !in || !reads) {
            free(a), free(in), free(reads);
            st = ulc_plan_nomem(ctx, "attention fusion");
            break;
        }
        *a = m.a;
        for (int k = 0; k < m.n_ins; k++) {
            in[k] = &p->vals[m.ins[k]->id].t;
            reads[k] = m.ins[k];
        }
        rt_step *last = &p->steps[m.members[m.n_members - 1]];
        free(last->in);
        free(last->reads);
        last->in = in;
        last->kc.in = in;
        last->kc.n_in = m.n_ins;
        last->kc.const_inputs = 0;
        last->reads = reads;
        last->n_reads = m.n_ins;
        last->k = p->be->attn_kernel();
        last->attn = 1;
        last->kc.state = a;
        for (int k = 0; k < m.n_members - 1; k++) {
            rt_step *sk = &p->steps[m.members[k]];
            sk->removed = 1;
            p->vals[sk->out0->id].step = -1;
            step_of[sk->node->id] = -1;
        }
        int li = m.members[m.n_members - 1];
        for (int k = 0; k < m.n_dropped; k++) {
            rt_step *sk = &p->steps[m.dropped[k]];
            sk->removed = 1;
            step_of[sk->node->id] = -1;
            if (m.dropped[k] != m.out_step) p->vals[sk->out0->id].step = -1;
        }
        if (m.out_step >= 0) { /* the fused step writes the Transpose's output */
            ulc_value *y = p->steps[m.out_step].out0;
            p->vals[last->out0->id].step = -1;
            last->out0 = y;
            last->out[0] = &p->vals[y->id].t;
            p->vals[y->id].step = li;
        }
    }
    free(step_of);
    return st;
}
