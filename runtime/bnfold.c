/* bnfold.c — BatchNormalization folded into the Conv before it (a plan-time rewrite). */
#include <math.h>
#include <stdlib.h>

#include "runtime/plan.h"

/* Folds an inference BatchNormalization into the Conv before it when the weights and the
 * statistics are constants: W'[m] = W[m]·a[m], B'[m] = (B[m] − mean[m])·a[m] + beta[m] with
 * a[m] = scale[m] / √(var[m] + ε) — what torch's exporter does for eval models, done here for
 * graphs that keep the BatchNormalization (Hugging Face ResNets built by ulc, for instance). */
ulc_status ulc_plan_fold_batchnorms(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx) {
    int *step_of = malloc(sizeof(int) * (size_t)(g->next_node_id > 0 ? g->next_node_id : 1));
    if (!step_of) return ulc_plan_nomem(ctx, "fusion");
    for (int i = 0; i < g->next_node_id; i++) step_of[i] = -1;
    for (int i = 0; i < p->n_steps; i++) step_of[p->steps[i].node->id] = i;
    ulc_status st = ULC_OK;
    for (int i = 0; i < p->n_steps && st == ULC_OK; i++) {
        rt_step *cs = &p->steps[i];
        const ulc_node *cn = cs->node;
        if (cs->removed || cn->op != ULC_OP_Conv || cs->kc.n_in < 2 || !cs->in[1] || !cs->out0) continue;
        if (!(cs->kc.const_inputs & 2u) || (cs->kc.n_in > 2 && cs->in[2] && !(cs->kc.const_inputs & 4u)))
            continue;
        const ulc_rt_tensor *w = cs->in[1], *cb = cs->kc.n_in > 2 ? cs->in[2] : NULL;
        if (w->dtype != ULC_DT_F32 || w->rank < 3) continue;
        int j = ulc_plan_sole_reader(p, step_of, g, cs->out0);
        if (j < 0) continue;
        rt_step *bs = &p->steps[j];
        const ulc_node *bn = bs->node;
        if (bn->op != ULC_OP_BatchNormalization || bn->n_inputs != 5 || bs->in[0] != cs->out[0]) continue;
        const ulc_attr *tm = ulc_node_attr(bn, "training_mode");
        if (tm && tm->type == ULC_ATTR_INT && tm->i) continue;
        int extra_out = 0;
        for (int o = 1; o < bn->n_outputs; o++) extra_out |= bn->outputs[o] != NULL;
        if (extra_out || (bs->kc.const_inputs & 0x1eu) != 0x1eu) continue;
        int64_t m = w->dims[0];
        int ok = 1;
        for (int q = 1; q < 5; q++)
            ok = ok && bs->in[q]->dtype == ULC_DT_F32 && ulc_rt_numel(bs->in[q]) == (uint64_t)m;
        if (!ok || (cb && (cb->dtype != ULC_DT_F32 || ulc_rt_numel(cb) != (uint64_t)m))) continue;
        const ulc_attr *ea = ulc_node_attr(bn, "epsilon");
        float eps = ea && ea->type == ULC_ATTR_FLOAT ? ea->f : 1e-5f;
        rt_fold *f = calloc(1, sizeof *f);
        ulc_rt_tensor **in3 = cs->kc.n_in < 3 ? realloc(cs->in, 3 * sizeof *in3) : cs->in;
        if (!f || !in3) {
            free(f);
            st = ulc_plan_nomem(ctx, "folding BatchNormalization");
            break;
        }
        cs->in = in3;
        f->w = *w;
        f->w.data = ulc_plan_alloc(w->nbytes);
        f->b.dtype = ULC_DT_F32;
        f->b.rank = 1;
        f->b.dims[0] = m;
        f->b.nbytes = (size_t)m * sizeof(float);
        f->b.data = ulc_plan_alloc(f->b.nbytes);
        if (!f->w.data || !f->b.data) {
            free(f->w.data), free(f->b.data), free(f);
            st = ulc_plan_nomem(ctx, "folding BatchNormalization");
            break;
        }
        const float *scale = bs->in[1]->data, *beta = bs->in[2]->data, *mean = bs->in[3]->data,
                    *var = bs->in[4]->data, *wsrc = w->data;
        float *wd = f->w.data, *bd = f->b.data;
        uint64_t per = ulc_rt_numel(w) / (uint64_t)m;
        for (int64_t c = 0; c < m; c++) {
            float a = scale[c] / sqrtf(var[c] + eps);
            for (uint64_t e = 0; e < per; e++) wd[(uint64_t)c * per + e] = wsrc[(uint64_t)c * per + e] * a;
            bd[c] = ((cb ? ((const float *)cb->data)[c] : 0.0f) - mean[c]) * a + beta[c];
        }
        cs->fold = f;
        cs->in[1] = &f->w;
        cs->in[2] = &f->b;
        cs->kc.in = cs->in;
        cs->kc.n_in = 3;
        cs->kc.const_inputs |= 6u;
        /* the BatchNormalization's output is now the Conv's */
        p->vals[cs->out0->id].step = -1;
        cs->out0 = bn->outputs[0];
        cs->out[0] = &p->vals[cs->out0->id].t;
        p->vals[cs->out0->id].step = i;
        bs->removed = 1;
    }
    free(step_of);
    return st;
}
