/*
 * device.c — a plan on a backend that computes in its own memory (ulc_device_ops, kernel.h).
 *
 * The walk, the rewrites and placement are the same as on the cpu: plan-time folding runs on the
 * host (the values that decide shapes are needed there), and memplan.c puts the activations in
 * one device buffer. What this file adds:
 *
 *   - every constant a step reads (a weight, a folded value, a BatchNormalization folded into a
 *     Conv, a plan-keyed input) is uploaded once per session — the same host bytes once, whichever
 *     plans (batch sizes) read them (the session's rt_dcache) — and the step's tensor points at
 *     the device copy; the host bytes stay at the tensor's `host` for kernels that read
 *     values in prepare (a Slice's starts, a Pad's pads);
 *   - before a run the bound inputs go into per-plan device buffers (float16 and misaligned
 *     inputs through the host conversion session.c already made);
 *   - after a run every graph output comes back into a host copy the session hands out, after
 *     one wait for the stream.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

/* Bytes [p, p + n) inside the device arena. */
static int in_arena(const rt_plan *p, const void *d) {
    const char *a = p->arena, *c = d;
    return a && c >= a && c < a + (p->arena_size ? p->arena_size : 1);
}

static int is_input_slot(const rt_plan *p, const ulc_graph *g, const ulc_rt_tensor *t) {
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        const rt_val *rv = &p->vals[v->id];
        if (t == &rv->t && rv->known != V_CONST) return 1;
    }
    return 0;
}

/* The session's upload of bytes [host, host + bytes): shared, or made now (refs counted). */
static ulc_status cache_get(rt_plan *p, const void *host, size_t bytes, void **dev, ulc_ctx *ctx) {
    rt_dcache *c = p->dcache;
    for (int i = 0; i < c->n; i++)
        if (c->e[i].host == host && c->e[i].bytes >= bytes) {
            c->e[i].refs++;
            *dev = c->e[i].dev;
            return ULC_OK;
        }
    if (c->n == c->cap) {
        int nc = c->cap ? 2 * c->cap : 64;
        struct rt_dcache_entry *ne = realloc(c->e, (size_t)nc * sizeof *ne);
        if (!ne) return ulc_plan_nomem(ctx, "device constants");
        c->e = ne;
        c->cap = nc;
    }
    void *d = p->dops->alloc(p->dev, bytes);
    if (!d) return ulc_plan_nomem(ctx, "a constant, device memory");
    ulc_status s = p->dops->upload(p->dev, d, host, bytes, ctx);
    if (s != ULC_OK) {
        p->dops->free(p->dev, d);
        return s;
    }
    c->e[c->n++] = (struct rt_dcache_entry){.host = host, .bytes = bytes, .dev = d, .refs = 1};
    *dev = d;
    return ULC_OK;
}

static void cache_put(rt_plan *p, void *dev) {
    rt_dcache *c = p->dcache;
    for (int i = 0; i < c->n; i++) {
        if (c->e[i].dev != dev) continue;
        if (--c->e[i].refs == 0) {
            p->dops->free(p->dev, dev);
            c->e[i] = c->e[--c->n];
        }
        return;
    }
}

static ulc_status upload_one(rt_plan *p, const ulc_graph *g, ulc_rt_tensor *t, int *cap, ulc_ctx *ctx) {
    if (!t || !t->data || t->host || in_arena(p, t->data) || is_input_slot(p, g, t)) return ULC_OK;
    for (int i = 0; i < p->n_dconst; i++)
        if (p->dconst[i].t == t) return ULC_OK;
    if (p->n_dconst == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        rt_dconst *nd = realloc(p->dconst, (size_t)nc * sizeof *nd);
        if (!nd) return ulc_plan_nomem(ctx, "device constants");
        p->dconst = nd;
        *cap = nc;
    }
    rt_dconst *d = &p->dconst[p->n_dconst];
    *d = (rt_dconst){.t = t, .host = t->data};
    ULC_TRY(cache_get(p, t->data, t->nbytes, &d->dev, ctx));
    p->n_dconst++;
    t->host = t->data;
    t->data = d->dev;
    return ULC_OK;
}

ulc_status ulc_plan_upload_constants(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx) {
    int cap = 0;
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *sp = &p->steps[i];
        for (int j = 0; j < sp->kc.n_in; j++) ULC_TRY(upload_one(p, g, sp->kc.in[j], &cap, ctx));
        if (sp->kc.fuse) {
            /* the fused operands are tensors of the plan's values (const only for the kernel) */
            ULC_TRY(upload_one(p, g, (ulc_rt_tensor *)(uintptr_t)sp->kc.fuse->addend, &cap, ctx));
            ULC_TRY(upload_one(p, g, (ulc_rt_tensor *)(uintptr_t)sp->kc.fuse->mask, &cap, ctx));
            ULC_TRY(upload_one(p, g, (ulc_rt_tensor *)(uintptr_t)sp->kc.fuse->residual, &cap, ctx));
        }
        sp->kc.dev = p->dev;
    }
    size_t no = g->outputs.len ? g->outputs.len : 1;
    p->dev_in = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *p->dev_in);
    p->out_host = calloc(no, sizeof *p->out_host);
    p->out_fresh = calloc(no, 1);
    p->out_dev = calloc(no, sizeof *p->out_dev);
    p->in_dev = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *p->in_dev);
    if (!p->dev_in || !p->out_host || !p->out_fresh || !p->out_dev || !p->in_dev)
        return ulc_plan_nomem(ctx, "plan outputs");
    for (size_t i = 0; i < g->outputs.len; i++) {
        const ulc_value *v = g->outputs.items[i];
        const rt_val *rv = &p->vals[v->id];
        p->out_host[i] = ulc_plan_alloc(rv->t.nbytes);
        if (!p->out_host[i]) return ulc_plan_nomem(ctx, v->name);
    }
    /* the uploads finish before the plan is used (a failed copy is reported here) */
    return p->dops->sync(p->dev, ctx);
}

ulc_status ulc_plan_upload_inputs(rt_plan *p, const ulc_graph *g, const ulc_rt_tensor *bound,
                                  const uint8_t *is_bound, ulc_ctx *ctx) {
    for (size_t i = 0; i < g->inputs.len; i++) {
        if (!is_bound[i]) continue;
        const ulc_value *v = g->inputs.items[i];
        rt_val *rv = &p->vals[v->id];
        if (rv->known == V_CONST) continue; /* plan-keyed: a constant, uploaded with the others */
        if (is_bound[i] == 2) continue;      /* a device tensor, read in place (session.c) */
        if (!p->dev_in[i]) {
            p->dev_in[i] = p->dops->alloc(p->dev, rv->t.nbytes);
            if (!p->dev_in[i]) return ulc_plan_nomem(ctx, v->name);
        }
        /* session.c bound the host bytes (converted from halves, or realigned) at rv->t.data */
        const void *src = rv->t.data ? rv->t.data : bound[i].data;
        if (rv->t.nbytes && src) ULC_TRY(p->dops->upload(p->dev, p->dev_in[i], src, rv->t.nbytes, ctx));
        rv->t.data = p->dev_in[i];
    }
    return ULC_OK;
}

ulc_status ulc_plan_download_output(rt_plan *p, const ulc_graph *g, size_t i, ulc_ctx *ctx) {
    const ulc_value *v = g->outputs.items[i];
    const rt_val *rv = &p->vals[v->id];
    size_t n = rv->t.nbytes;
    /* computed by the run, or a bound input (its device buffer, or a device tensor); a constant
     * no step reads, an unbound input's default, stay host bytes */
    int on_device = rv->known != V_CONST && (rv->step >= 0 || (v->flags & ULC_VALUE_INPUT) || in_arena(p, rv->t.data));
    if (!n) return ULC_OK;
    if (rv->t.host) memcpy(p->out_host[i], rv->t.host, n);
    else if (on_device) ULC_TRY(p->dops->download(p->dev, p->out_host[i], rv->t.data, n, ctx));
    else if (rv->t.data) memcpy(p->out_host[i], rv->t.data, n); /* a constant no step reads */
    return ULC_OK;
}

void ulc_plan_free_device(rt_plan *p, const ulc_graph *g) {
    for (int i = p->n_dconst - 1; i >= 0; i--) {
        rt_dconst *d = &p->dconst[i];
        d->t->data = (void *)(uintptr_t)d->host;
        d->t->host = NULL;
        cache_put(p, d->dev);
    }
    free(p->dconst);
    p->dconst = NULL;
    p->n_dconst = 0;
    if (p->dev_in) {
        for (size_t i = 0; i < g->inputs.len; i++) {
            if (!p->dev_in[i]) continue;
            /* the input's slot pointed at the buffer: not bytes the plan owns */
            const ulc_value *v = g->inputs.items[i];
            if (p->vals && p->vals[v->id].t.data == p->dev_in[i]) p->vals[v->id].t.data = NULL;
            p->dops->free(p->dev, p->dev_in[i]);
        }
    }
    free(p->dev_in);
    p->dev_in = NULL;
    if (p->out_host)
        for (size_t i = 0; i < g->outputs.len; i++) free(p->out_host[i]);
    free(p->out_host);
    p->out_host = NULL;
    free(p->out_fresh);
    p->out_fresh = NULL;
    free(p->out_dev);
    p->out_dev = NULL;
    free(p->in_dev);
    p->in_dev = NULL;
}
