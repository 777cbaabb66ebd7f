/*
 * plan.c — the walk that makes a plan: planning a graph for fixed input shapes.
 *
 * A plan is made by one walk over the nodes in topological order (the graph is verified, so
 * producers come first):
 *
 *   1. every value gets a runtime tensor: initializers point at the model's bytes (copied only
 *      when misaligned for their dtype, or converted when float16/bfloat16), bound inputs take
 *      their shapes (and, for the few inputs whose *values* decide shapes downstream, their
 *      bytes, which then key the plan);
 *   2. each node's shape rule (runtime/shape.h) infers its outputs' dtypes and shapes, and
 *      the rule's value_inputs must be known; a node whose inputs are all
 *      known at plan time (constants, Shape of a known shape, …) is run right there and its
 *      outputs become constants of the plan — this is how the Shape→Gather→Concat→Reshape
 *      chains of exported graphs disappear; the rest become steps of the schedule, except
 *      nodes nothing needs (their outputs reach no graph output).
 *
 * The rewrites of the schedule (bnfold.c, fuse.c, chain.c, layout.c), liveness and placement
 * (memplan.c) and preparing the kernels (session.c's make_plan) follow; plan.h lists them.
 * The analysis API (ulc_analyze, analysis.c) is the same walk with partial knowledge and no
 * schedule.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "ir/schema.h"
#include "common/file.h"
#include "runtime/plan.h"

/* ---- small helpers ------------------------------------------------------------------------- */

void *ulc_plan_alloc(size_t n) {
    size_t sz = (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
    return aligned_alloc(PLAN_ALIGN, sz ? sz : PLAN_ALIGN);
}

/* numel × compute-dtype size, with overflow → SIZE_MAX. */
size_t ulc_plan_nbytes(const ulc_rt_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0) return SIZE_MAX;
        if (t->dims[i] && n > UINT64_MAX / (uint64_t)t->dims[i]) return SIZE_MAX;
        n *= (uint64_t)t->dims[i];
    }
    size_t es = ulc_k_dtype_size(t->dtype);
    if (n > SIZE_MAX / (es ? es : 1)) return SIZE_MAX;
    return (size_t)n * es;
}

/* The walk's invariant (kutil.h): every dim >= 0, the product of the non-zero dims at most
 * ULC_RT_MAX_NUMEL. A tensor that breaks it is refused before a shape rule computes with it. */
static ulc_status check_dims(const char *what, const char *name, int rank, const int64_t *dims,
                             ulc_ctx *ctx) {
    if (ulc_k_dims_ok(rank, dims)) return ULC_OK;
    char b[160];
    return ulc_fail(ctx, ULC_ERR_INVALID,
                    "%s '%s': shape %s has a negative dim or more than 2^48 elements", what,
                    name ? name : "", ulc_k_dims_str(rank, dims, b, sizeof b));
}

/* Converts n halves (f16 or bf16) to float32. */
void ulc_plan_halves_to_f32(int dt, const void *src, float *dst, uint64_t n) {
    const uint8_t *p = src;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
        dst[i] = dt == ULC_DT_F16 ? ulc_f16_to_f32(h) : ulc_bf16_to_f32(h);
    }
}

void ulc_plan_f32_to_halves(int dt, const float *src, void *dst, uint64_t n) {
    uint8_t *p = dst;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h = dt == ULC_DT_F16 ? ulc_f32_to_f16(src[i]) : ulc_f32_to_bf16(src[i]);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* ---- plan data ------------------------------------------------------------------------------ */

ulc_status ulc_plan_nomem(ulc_ctx *ctx, const char *what) {
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", what);
}

void ulc_plan_free(rt_plan *p, const ulc_graph *g) {
    if (!p) return;
    if (p->dops) ulc_plan_free_device(p, g); /* first: tensors get their host bytes back */
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *s = &p->steps[i];
        if (s->prepared && s->k->release) s->k->release(s->kc.state);
        else if (s->chain || s->attn) free(s->kc.state); /* the plan failed before prepare */
        free(s->reads);
        if (s->fold) {
            free(s->fold->w.data);
            free(s->fold->b.data);
            free(s->fold);
        }
        free(s->in);
        free(s->out);
    }
    free(p->steps);
    if (p->vals)
        for (size_t i = 0; i < g->values.len; i++) free(p->vals[i].owned);
    free(p->vals);
    if (p->key)
        for (size_t i = 0; i < g->inputs.len; i++) free(p->key[i].bytes);
    free(p->key);
    if (p->out_owned)
        for (size_t i = 0; i < g->outputs.len; i++) free(p->out_owned[i]);
    free(p->out_owned);
    free(p->outs);
    if (p->dops) p->dops->free(p->dev, p->arena);
    else free(p->arena);
    free(p);
}

/* Initializer bytes as a constant of the plan: borrowed when aligned and already in the
 * compute dtype, otherwise an owned (aligned, converted) copy. */
typedef struct copy_sink {
    uint8_t *dst;
    size_t off;
} copy_sink;

static ulc_status copy_sink_fn(void *arg, const void *p, size_t n, ulc_ctx *ctx) {
    (void)ctx;
    copy_sink *cs = arg;
    memcpy(cs->dst + cs->off, p, n);
    cs->off += n;
    return ULC_OK;
}

static ulc_status load_tensor(const ulc_tensor *t, rt_val *rv, const char *what, ulc_ctx *ctx) {
    int cdt = ulc_k_compute_dtype(t->dtype);
    if (!ulc_plan_dtype_ok(cdt)) return ULC_OK; /* stays unknown: an error only if a kernel reads it */
    if (t->rank > ULC_RT_MAX_RANK)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s '%s': rank %d exceeds the runtime's %d",
                        what, t->name ? t->name : "", t->rank, ULC_RT_MAX_RANK);
    ULC_TRY(check_dims(what, t->name, t->rank, t->dims, ctx));
    if (t->storage == ULC_STORAGE_DEVICE || t->storage == ULC_STORAGE_NONE) return ULC_OK;
    ulc_k_set(&rv->t, cdt, t->rank, t->dims);
    rv->t.nbytes = ulc_plan_nbytes(&rv->t);
    size_t es = ulc_k_dtype_size(cdt);
    int half = cdt != t->dtype;
    if (!half && t->storage != ULC_STORAGE_LAZY && t->data &&
        ((uintptr_t)t->data % es) == 0) {
        rv->t.data = (void *)(uintptr_t)t->data; /* the model's own bytes, read in place */
        rv->known = V_CONST;
        return ULC_OK;
    }
    uint8_t *raw = NULL;
    const void *src = t->data;
    if (t->storage == ULC_STORAGE_LAZY) {
        raw = malloc(t->nbytes ? t->nbytes : 1);
        if (!raw) return ulc_plan_nomem(ctx, t->name ? t->name : what);
        copy_sink cs = {raw, 0};
        ulc_status s = ulc_tensor_stream(t, copy_sink_fn, &cs, ctx);
        if (s != ULC_OK) {
            free(raw);
            return s;
        }
        src = raw;
    }
    void *d = ulc_plan_alloc(rv->t.nbytes);
    if (!d) {
        free(raw);
        return ulc_plan_nomem(ctx, t->name ? t->name : what);
    }
    if (half) {
        ulc_plan_halves_to_f32(t->dtype, src, d, t->numel);
        if (t->map) ulc_mapping_drop_pages(t->map, t->data, t->nbytes);
    } else if (rv->t.nbytes) {
        /* the plan reads its copy: the mapped pages it is made from leave the resident set as
         * the copy goes, so a large weight is never resident twice */
        const size_t chunk = (size_t)8 << 20;
        for (size_t o = 0; o < rv->t.nbytes; o += chunk) {
            size_t n = rv->t.nbytes - o < chunk ? rv->t.nbytes - o : chunk;
            memcpy((char *)d + o, (const char *)src + o, n);
            if (t->map) ulc_mapping_drop_pages(t->map, (const char *)src + o, n);
        }
    }
    free(raw);
    rv->owned = d;
    rv->t.data = d;
    rv->known = V_CONST;
    return ULC_OK;
}

static ulc_status push_step(rt_walk *w, rt_step **out) {
    if (w->n_steps == w->cap_steps) {
        int nc = w->cap_steps ? 2 * w->cap_steps : 64;
        rt_step *ns = realloc(w->steps, (size_t)nc * sizeof *ns);
        if (!ns) return ulc_plan_nomem(w->ctx, "plan steps");
        w->steps = ns;
        w->cap_steps = nc;
    }
    *out = &w->steps[w->n_steps++];
    memset(*out, 0, sizeof **out);
    return ULC_OK;
}

/* A view node whose only product is the view itself: nothing to run. */
int ulc_plan_alias_only(const ulc_node *n) {
    if (!(ulc_shape_rule_of(n->op)->flags & ULC_SHAPE_ALIAS)) return 0;
    for (int i = 1; i < n->n_outputs; i++)
        if (n->outputs[i]) return 0;
    return 1;
}

/* Runs kernel k on a node whose inputs are all known, at plan time; outputs become constants. */
static ulc_status fold_node(rt_walk *w, const ulc_kernel *k, ulc_kctx *kc) {
    const ulc_node *n = kc->node;
    int alias = (ulc_shape_rule_of(n->op)->flags & ULC_SHAPE_ALIAS) != 0;
    for (int i = 0; i < n->n_outputs; i++) {
        if (!kc->out[i]) continue;
        rt_val *rv = &w->vals[n->outputs[i]->id];
        if (alias) {
            if (i == 0) {
                rv->t.data = kc->in[0]->data;
                rv->known = V_CONST;
                continue;
            }
        }
        rv->owned = ulc_plan_alloc(rv->t.nbytes);
        if (!rv->owned) return ulc_plan_nomem(w->ctx, n->outputs[i]->name);
        rv->t.data = rv->owned;
        rv->known = V_CONST;
    }
    if (ulc_plan_alias_only(n)) return ULC_OK;
    ulc_status s = ULC_OK;
    kc->state = NULL;
    if (k->prepare) s = k->prepare(kc);
    if (s == ULC_OK) s = k->run(kc);
    if (k->prepare && k->release) k->release(kc->state);
    kc->state = NULL;
    /* a large mapped weight the fold made a new constant of (a Transpose of it): the plan reads
     * the result, so the weight's pages leave the resident set (a later reader faults them in) */
    for (int i = 0; s == ULC_OK && !alias && i < n->n_inputs; i++) {
        const ulc_value *v = n->inputs[i].value;
        const ulc_tensor *t = v && (v->flags & ULC_VALUE_INITIALIZER) ? v->init : NULL;
        if (t && t->map && t->nbytes >= ((size_t)1 << 20)) ulc_mapping_drop_pages(t->map, t->data, t->nbytes);
    }
    return s;
}

static ulc_status walk_node(rt_walk *w, const ulc_node *n) {
    ulc_ctx *ctx = w->ctx;
    char label[160];
    if (w->needed && !w->needed[n->id]) return ULC_OK; /* reaches no output */
    /* shapes come from the op's rule; the backend's kernel (analyses: if it has one) runs it */
    const ulc_shape_rule *rule = ulc_shape_rule_of(n->op);
    const ulc_kernel *k = w->be ? w->be->kernel(n->op) : NULL;
    /* folding runs on the host: a device backend's plan folds with the cpu's kernels */
    const ulc_kernel *fk = w->be && w->be->device ? ulc_backend_cpu()->kernel(n->op) : k;
    if (!k && !fk && !w->analysis)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s%s%s: not supported by backend %s",
                        ulc_node_label(n, label, sizeof label),
                        n->domain && *n->domain ? ", domain " : "", n->domain ? n->domain : "",
                        w->be->name);
    ULC_TRY(ulc_op_check_attrs(n, w->opset, ctx)); /* names, types and opsets (ir/attrs.def) */
    if (!rule->infer) {
        if (w->analysis) return ULC_OK; /* an op without a shape rule: its outputs stay unknown */
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: op has a kernel but no shape rule",
                        ulc_node_label(n, label, sizeof label));
    }
    ulc_rt_tensor *ins[64] = {0}, *outs[64] = {0}; /* slots past the node's count read as missing */
    if (n->n_inputs > 64 || n->n_outputs > 64)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: more than 64 inputs or outputs",
                        ulc_node_label(n, label, sizeof label));
    if (n->n_outputs < 1 || !n->outputs[0]) { /* every op with a shape rule has output 0 */
        if (w->analysis) return ULC_OK;
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: its first output is missing",
                        ulc_node_label(n, label, sizeof label));
    }
    int all_const = 1;
    uint32_t const_mask = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        ulc_value *v = n->inputs[i].value;
        ins[i] = NULL;
        if (!v) continue;
        rt_val *rv = &w->vals[v->id];
        if (rv->known == V_UNKNOWN) {
            if (w->analysis) return ULC_OK;
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                            "%s: input '%s' has a type the %s backend cannot compute with (%s)",
                            ulc_node_label(n, label, sizeof label), v->name,
                            w->be ? w->be->name : "cpu", ulc_dtype_name(v->dtype));
        }
        ins[i] = &rv->t;
        if (rv->known == V_CONST) {
            if (i < 32) const_mask |= 1u << i;
        } else {
            all_const = 0;
            if (i < 32 && (rule->value_inputs & (1u << i))) {
                if (w->analysis) return ULC_OK;
                return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                                "%s: input %d ('%s') decides the output's shape but is computed "
                                "from run-time data; ulc plans shapes ahead of the run",
                                ulc_node_label(n, label, sizeof label), i, v->name);
            }
        }
    }
    if (rule->flags & ULC_SHAPE_ONLY) all_const = 1;
    for (int i = 0; i < n->n_outputs; i++) {
        ulc_value *v = n->outputs[i];
        outs[i] = v ? &w->vals[v->id].t : NULL;
        if (v) memset(&w->vals[v->id].t, 0, sizeof(ulc_rt_tensor));
    }
    ulc_kctx kc = {.node = n, .opset = w->opset, .n_in = n->n_inputs, .n_out = n->n_outputs,
                   .in = ins, .out = outs, .const_inputs = const_mask, .threads = 0, .err = ctx};
    ULC_TRY(rule->infer(&kc));
    for (int i = 0; i < n->n_outputs; i++) {
        if (!outs[i]) continue;
        rt_val *rv = &w->vals[n->outputs[i]->id];
        if (!ulc_plan_dtype_ok(outs[i]->dtype) || outs[i]->rank < 0 ||
            outs[i]->rank > ULC_RT_MAX_RANK)
            return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: shape rule inferred an invalid output %d",
                            ulc_node_label(n, label, sizeof label), i);
        /* the invariant every later rule relies on (kutil.h); a rule that let a negative dim
         * through would be ulc's bug, but the message is the same either way */
        outs[i]->nbytes = ulc_plan_nbytes(outs[i]);
        if (outs[i]->nbytes == SIZE_MAX || !ulc_k_dims_ok(outs[i]->rank, outs[i]->dims)) {
            char b[160];
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s: output '%s' is too large (shape %s; at most 2^48 elements)",
                            ulc_node_label(n, label, sizeof label), n->outputs[i]->name,
                            ulc_k_dims_str(outs[i]->rank, outs[i]->dims, b, sizeof b));
        }
        rv->known = V_SHAPE;
    }
    if (all_const && fk) { /* folding runs the kernel */
        size_t out_bytes = 0;
        for (int i = 0; i < n->n_outputs; i++)
            if (outs[i]) out_bytes += outs[i]->nbytes;
        /* plans fold everything; an analysis only what is small (a pass must not duplicate
         * weights as folded copies) */
        int fold = !w->analysis || out_bytes <= w->limit_bytes;
        if (fold) {
            ULC_TRY(fold_node(w, fk, &kc));
            if (w->folded) w->folded[n->id] = 1;
            return ULC_OK;
        }
    }
    if (w->analysis || (w->needed && !w->needed[n->id])) return ULC_OK;
    if (!k)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s%s%s: not supported by backend %s",
                        ulc_node_label(n, label, sizeof label),
                        n->domain && *n->domain ? ", domain " : "", n->domain ? n->domain : "",
                        w->be->name);
    rt_step *s = NULL;
    ULC_TRY(push_step(w, &s));
    s->node = n;
    s->k = k;
    s->kc = kc;
    s->in = malloc(sizeof(ulc_rt_tensor *) * (size_t)(n->n_inputs ? n->n_inputs : 1));
    s->out = malloc(sizeof(ulc_rt_tensor *) * (size_t)(n->n_outputs ? n->n_outputs : 1));
    if (!s->in || !s->out) return ulc_plan_nomem(ctx, "plan steps");
    memcpy(s->in, ins, sizeof(ulc_rt_tensor *) * (size_t)n->n_inputs);
    memcpy(s->out, outs, sizeof(ulc_rt_tensor *) * (size_t)n->n_outputs);
    s->kc.in = s->in;
    s->kc.out = s->out;
    s->kc.precision = w->precision;
    s->out0 = n->n_outputs ? n->outputs[0] : NULL;
    s->alias = !(rule->flags & ULC_SHAPE_ALIAS) ? 0 : ulc_plan_alias_only(n) ? 2 : 1;
    for (int i = 0; i < n->n_outputs; i++)
        if (n->outputs[i]) w->vals[n->outputs[i]->id].step = w->n_steps - 1;
    return ULC_OK;
}

/* Initializers and bound inputs, then every node. */
ulc_status ulc_plan_walk(rt_walk *w, const ulc_rt_binding *bind, int n_bind,
                             const uint8_t *keyed) {
    const ulc_graph *g = w->g;
    size_t nv = g->values.len;
    for (size_t i = 0; i < nv; i++) {
        ulc_value *v = g->values.items[i];
        rt_val *rv = &w->vals[v->id];
        rv->step = -1;
        rv->root = v->id;
        rv->decl_dtype = v->dtype;
        if (!(v->flags & ULC_VALUE_INITIALIZER) || !v->init) continue;
        if ((v->flags & ULC_VALUE_PARAM) && w->analysis) {
            /* a trainable weight: its shape is known, its value is not a constant to fold */
            const ulc_tensor *t = v->init;
            int cdt = ulc_k_compute_dtype(t->dtype);
            if (!ulc_plan_dtype_ok(cdt) || t->rank > ULC_RT_MAX_RANK) continue;
            ULC_TRY(check_dims("initializer", t->name, t->rank, t->dims, w->ctx));
            ulc_k_set(&rv->t, cdt, t->rank, t->dims);
            rv->t.nbytes = ulc_plan_nbytes(&rv->t);
            rv->known = V_SHAPE;
            continue;
        }
        ULC_TRY(load_tensor(v->init, rv, "initializer", w->ctx));
    }
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        rt_val *rv = &w->vals[v->id];
        const ulc_rt_binding *b = NULL;
        for (int j = 0; j < n_bind; j++)
            if (strcmp(bind[j].name, v->name) == 0) b = &bind[j];
        if (!b) {
            if (rv->known) continue; /* an input with a default initializer */
            /* declared fully concrete shape: known to the analysis */
            if (w->analysis && v->rank >= 0 && v->rank <= ULC_RT_MAX_RANK &&
                (v->flags & ULC_VALUE_HAS_TYPE) && ulc_plan_dtype_ok(ulc_k_compute_dtype(v->dtype))) {
                int64_t dims[ULC_RT_MAX_RANK];
                for (int d = 0; d < v->rank; d++) dims[d] = v->dims[d].value;
                if (ulc_k_dims_ok(v->rank, dims)) { /* else a hint to ignore: stays unknown */
                    rv->t.dtype = ulc_k_compute_dtype(v->dtype);
                    rv->t.rank = v->rank;
                    for (int d = 0; d < v->rank; d++) rv->t.dims[d] = v->dims[d].value;
                    rv->t.nbytes = ulc_plan_nbytes(&rv->t);
                    rv->known = V_SHAPE;
                }
            }
            continue;
        }
        if (b->t.rank < 0 || b->t.rank > ULC_RT_MAX_RANK)
            return ulc_fail(w->ctx, ULC_ERR_INVALID, "input '%s': rank %d (0 to %d)", v->name,
                            b->t.rank, ULC_RT_MAX_RANK);
        ULC_TRY(check_dims("input", v->name, b->t.rank, b->t.dims, w->ctx));
        free(rv->owned);
        rv->owned = NULL;
        rv->t = b->t;
        rv->t.host = NULL;
        rv->t.dtype = ulc_k_compute_dtype(b->t.dtype);
        rv->t.nbytes = ulc_plan_nbytes(&rv->t);
        rv->t.data = NULL;
        rv->known = V_SHAPE;
        if (b->t.data && (w->analysis || (keyed && keyed[v->id]))) {
            /* its bytes decide shapes: a constant of this plan */
            void *d = ulc_plan_alloc(rv->t.nbytes);
            if (!d) return ulc_plan_nomem(w->ctx, v->name);
            if (ulc_k_compute_dtype(b->t.dtype) != b->t.dtype)
                ulc_plan_halves_to_f32(b->t.dtype, b->t.data, d, ulc_rt_numel(&rv->t));
            else if (rv->t.nbytes)
                memcpy(d, b->t.data, rv->t.nbytes);
            rv->owned = d;
            rv->t.data = d;
            rv->known = V_CONST;
        }
    }
    for (const ulc_node *n = g->first; n; n = n->next) ULC_TRY(walk_node(w, n));
    return ULC_OK;
}

