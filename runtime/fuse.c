/* fuse.c — fusing the Add and activation (or ReluGrad mask) after a step into it, when its
 * kernel accepts them (can_fuse), and compacting the schedule after every fusion. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

/* The one step reading v (v not a graph output), or -1. */
int ulc_plan_sole_reader(const rt_plan *p, const int *step_of, const ulc_graph *g, const ulc_value *v) {
    if (!v || (v->flags & ULC_VALUE_OUTPUT) || ulc_ptrvec_find(&g->outputs, v) >= 0) return -1;
    const ulc_use *u = v->first_use;
    if (!u || u->next) return -1;
    int j = step_of[u->node->id];
    if (j < 0 || p->steps[j].removed) return -1;
    for (int i = 0; i < u->node->n_inputs; i++) /* read once (Mul(x, x) is not fusable) */
        if (i != u->slot && u->node->inputs[i].value == v) return -1;
    return j;
}

/* An activation node as a fused act, or ULC_ACT_NONE. */
static ulc_kact fusable_act(const rt_plan *p, const ulc_node *n, float *a, float *b, int64_t opset) {
    if (n->n_outputs != 1 || !n->outputs[0]) return ULC_ACT_NONE;
    switch (n->op) {
    case ULC_OP_Relu: return ULC_ACT_RELU;
    case ULC_OP_Sigmoid: return ULC_ACT_SIGMOID;
    case ULC_OP_Tanh: return ULC_ACT_TANH;
    case ULC_OP_LeakyRelu: {
        const ulc_attr *at = ulc_node_attr(n, "alpha");
        *a = at && at->type == ULC_ATTR_FLOAT ? at->f : 0.01f;
        return ULC_ACT_LEAKY_RELU;
    }
    case ULC_OP_Clip: {
        *a = -INFINITY;
        *b = INFINITY;
        if (opset < 11) {
            const ulc_attr *lo = ulc_node_attr(n, "min"), *hi = ulc_node_attr(n, "max");
            if (lo && lo->type == ULC_ATTR_FLOAT) *a = lo->f;
            if (hi && hi->type == ULC_ATTR_FLOAT) *b = hi->f;
            return ULC_ACT_CLIP;
        }
        for (int i = 1; i < 3 && i < n->n_inputs; i++) {
            const ulc_value *v = n->inputs[i].value;
            if (!v) continue;
            const rt_val *rv = &p->vals[v->id];
            if (rv->known != V_CONST || rv->t.dtype != ULC_DT_F32 || ulc_rt_numel(&rv->t) != 1)
                return ULC_ACT_NONE;
            *(i == 1 ? a : b) = *(const float *)rv->t.data;
        }
        return ULC_ACT_CLIP;
    }
    case ULC_OP_FastGelu: {
        const ulc_attr *ap = ulc_node_attr(n, "approximate");
        if (ap && ap->type == ULC_ATTR_STRING && ap->s.data && strcmp((const char *)ap->s.data, "none") == 0)
            return ULC_ACT_GELU_ERF;
        return ULC_ACT_GELU_TANH;
    }
    case ULC_OP_Gelu: {
        const ulc_attr *ap = ulc_node_attr(n, "approximate");
        if (ap && ap->type == ULC_ATTR_STRING && ap->s.data && strcmp((const char *)ap->s.data, "tanh") == 0)
            return ULC_ACT_GELU_TANH;
        return ULC_ACT_GELU_ERF;
    }
    default: return ULC_ACT_NONE;
    }
}



/* A fused operand: computed before step i (or a plan constant), in the step's output dtype. */
static int ready_before(const rt_val *v, int i, const rt_val *v0) {
    return v && (v->known == V_CONST || v->step < i) && v->t.dtype == v0->t.dtype;
}

/* Folds Add (of an operand ready before the producer) and an activation after a step whose
 * kernel can apply them: Conv → Add → Relu of a residual block, MatMul → Add of a bias; and,
 * where the kernel takes a residual (the products), a second Add after the first — a
 * transformer layer's MatMul → Add(bias) → Add(residual stream) is one step (oneDNN's binary
 * post-op on the packed matmul). ULC_NO_RESIDUAL_FUSION=1 keeps that Add a step. */
ulc_status ulc_plan_fuse_steps(rt_plan *p, const ulc_graph *g, int64_t opset, ulc_ctx *ctx) {
    int *step_of = malloc(sizeof(int) * (size_t)(g->next_node_id > 0 ? g->next_node_id : 1));
    if (!step_of) return ulc_plan_nomem(ctx, "fusion");
    for (int i = 0; i < g->next_node_id; i++) step_of[i] = -1;
    for (int i = 0; i < p->n_steps; i++) step_of[p->steps[i].node->id] = i;
    const char *nr = getenv("ULC_NO_RESIDUAL_FUSION");
    int no_residual = nr && *nr && strcmp(nr, "0") != 0;
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *st = &p->steps[i];
        if (st->removed || !st->k->can_fuse || !st->out0 || st->alias) continue;
        const rt_val *v0 = &p->vals[st->out0->id];
        ulc_kfuse f = {0};
        int drop[3] = {-1, -1, -1};
        ulc_value *cur = st->out0, *addend = NULL, *after_add = NULL, *mask = NULL;
        int j = ulc_plan_sole_reader(p, step_of, g, cur);
        if (j >= 0 && p->steps[j].node->op == ULC_OP_Add && p->steps[j].node->n_inputs == 2) {
            const ulc_node *an = p->steps[j].node;
            ulc_value *other = an->inputs[0].value == cur ? an->inputs[1].value : an->inputs[0].value;
            const rt_val *ov = other ? &p->vals[other->id] : NULL;
            const rt_val *out = an->outputs[0] ? &p->vals[an->outputs[0]->id] : NULL;
            if (ready_before(ov, i, v0) && out && ulc_rt_same_shape(&out->t, &v0->t)) {
                f.addend = &ov->t;
                addend = other;
                drop[0] = j;
                cur = an->outputs[0];
                after_add = cur;
                j = ulc_plan_sole_reader(p, step_of, g, cur);
            } else {
                j = -1;
            }
        }
        const ulc_node *rn = j >= 0 ? p->steps[j].node : NULL;
        if (rn && rn->op == ULC_OP_ReluGrad && rn->n_inputs == 2 && rn->n_outputs == 1 &&
            rn->inputs[0].value == cur && rn->inputs[1].value && rn->inputs[1].value != cur) {
            /* a gradient through Relu: the mask (Relu's output) is ready before this step */
            ulc_value *mv = rn->inputs[1].value;
            const rt_val *m = &p->vals[mv->id];
            const rt_val *out = rn->outputs[0] ? &p->vals[rn->outputs[0]->id] : NULL;
            if (ready_before(m, i, v0) && ulc_rt_same_shape(&m->t, &v0->t) && out &&
                ulc_rt_same_shape(&out->t, &v0->t)) {
                f.mask = &m->t;
                mask = mv;
                drop[1] = j;
                cur = rn->outputs[0];
            }
        } else if (j >= 0) {
            ulc_kact act = fusable_act(p, p->steps[j].node, &f.a, &f.b, opset);
            if (act != ULC_ACT_NONE) {
                f.act = act;
                drop[1] = j;
                cur = p->steps[j].node->outputs[0];
            }
        }
        /* a residual Add last: y = act(op + addend) + r, r ready before and of y's shape */
        ulc_value *before_res = cur, *residual = NULL;
        int jr = drop[0] >= 0 && !mask && !no_residual && (st->k->flags & ULC_K_RESIDUAL)
                     ? ulc_plan_sole_reader(p, step_of, g, cur)
                     : -1;
        if (jr >= 0 && p->steps[jr].node->op == ULC_OP_Add && p->steps[jr].node->n_inputs == 2 &&
            !p->steps[jr].kc.fuse && !p->steps[jr].chain) {
            const ulc_node *an = p->steps[jr].node;
            ulc_value *other = an->inputs[0].value == cur ? an->inputs[1].value : an->inputs[0].value;
            const rt_val *ov = other && other != cur ? &p->vals[other->id] : NULL;
            const rt_val *out = an->outputs[0] ? &p->vals[an->outputs[0]->id] : NULL;
            if (ready_before(ov, i, v0) && v0->t.dtype == ULC_DT_F32 && ulc_rt_same_shape(&ov->t, &v0->t) && out &&
                ulc_rt_same_shape(&out->t, &v0->t)) {
                f.residual = &ov->t;
                residual = other;
                drop[2] = jr;
                cur = an->outputs[0];
            }
        }
        if (drop[0] < 0 && drop[1] < 0) continue;
        int ok = st->k->can_fuse(&st->kc, &f);
        if (!ok && residual) { /* without the residual, perhaps */
            f.residual = NULL;
            residual = NULL;
            drop[2] = -1;
            cur = before_res;
            ok = st->k->can_fuse(&st->kc, &f);
        }
        if (!ok) {
            if (!addend || (f.act == ULC_ACT_NONE && !f.mask)) continue;
            f.act = ULC_ACT_NONE; /* the Add alone, perhaps */
            f.mask = NULL;
            mask = NULL;
            drop[1] = -1;
            cur = after_add;
            if (!st->k->can_fuse(&st->kc, &f)) continue;
        }
        st->fuse = f;
        st->kc.fuse = &st->fuse;
        st->addend = addend;
        st->mask = mask;
        st->residual = residual;
        /* every value between the product and the last fused op is never materialised */
        p->vals[st->out0->id].step = -1;
        for (int d = 0; d < 2; d++)
            if (drop[d] >= 0 && p->steps[drop[d]].node->outputs[0] != cur)
                p->vals[p->steps[drop[d]].node->outputs[0]->id].step = -1;
        st->out0 = cur;
        st->out[0] = &p->vals[cur->id].t;
        p->vals[cur->id].step = i;
        for (int d = 0; d < 3; d++)
            if (drop[d] >= 0) p->steps[drop[d]].removed = 1;
    }
    free(step_of);
    return ULC_OK;
}


/* Drops the steps fused into others; renumbers the steps that produce each value. */
void ulc_plan_compact(rt_plan *p) {
    /* compact; renumber the steps that produce each value */
    int w = 0;
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *st = &p->steps[i];
        if (st->removed) {
            free(st->in);
            free(st->out);
            continue;
        }
        if (w != i) p->steps[w] = *st;
        st = &p->steps[w];
        if (st->kc.fuse) st->kc.fuse = &st->fuse; /* the struct moved */
        for (int o = 0; o < st->node->n_outputs; o++) {
            ulc_value *ov = o == 0 ? st->out0 : st->node->outputs[o];
            if (ov) p->vals[ov->id].step = w;
        }
        w++;
    }
    p->n_steps = w;
}
