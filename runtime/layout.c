/* layout.c — choosing blocked (NCHW8C) layouts for activations between kernels that accept them. */

#include "runtime/plan.h"

/* Bytes of a float32 [N, C, H, W] tensor in NCHW8C (channels padded to a multiple of 8). */
static size_t blocked_nbytes(const ulc_rt_tensor *t) {
    int64_t cb = (t->dims[1] + 7) / 8;
    return (size_t)t->dims[0] * (size_t)cb * 8 * (size_t)t->dims[2] * (size_t)t->dims[3] * sizeof(float);
}

/* Keeps activations in NCHW8C between kernels that all accept it (convolutions, pools), so
 * no layout copy is made between them: a value goes blocked when its producer can write it so
 * and every step reading it — as an input slot or as a fused addend — can read it so. */
void ulc_plan_choose_layouts(rt_plan *p, const ulc_graph *g) {
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *st = &p->steps[i];
        ulc_value *v = st->out0;
        if (!(st->k->flags & ULC_K_BLOCKED_OUT) || !v) continue;
        ulc_rt_tensor *t = &p->vals[v->id].t;
        if (t->rank != 4 || t->dtype != ULC_DT_F32 || (v->flags & ULC_VALUE_OUTPUT) ||
            ulc_ptrvec_find(&g->outputs, v) >= 0)
            continue;
        int ok = 1, readers = 0;
        for (int j = i + 1; j < p->n_steps && ok; j++) {
            const rt_step *r = &p->steps[j];
            for (int s = 0; s < r->kc.n_in && ok; s++) {
                if (r->in[s] != t) continue;
                readers++;
                ok = s < 32 && (r->k->blocked_inputs & (1u << s)) && !r->alias;
            }
            if (r->kc.fuse && (r->kc.fuse->mask == t || r->kc.fuse->residual == t)) {
                readers++;
                ok = 0; /* masks and residuals are read plain */
            }
            if (r->kc.fuse && r->kc.fuse->addend == t) {
                readers++;
                ok = ok && (r->k->flags & ULC_K_BLOCKED_ADDEND);
            }
        }
        if (!ok || !readers) continue;
        t->layout = ULC_LAYOUT_NCHW8C;
        t->nbytes = blocked_nbytes(t);
    }
}
