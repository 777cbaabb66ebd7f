/*
 * plan.c — sessions: planning a graph for fixed input shapes, and running the plan.
 *
 * A plan is made by one walk over the nodes in topological order (the graph is verified, so
 * producers come first):
 *
 *   1. every value gets a runtime tensor: initializers point at the model's bytes (copied only
 *      when misaligned for their dtype, or converted when float16/bfloat16), bound inputs take
 *      their shapes (and, for the few inputs whose *values* decide shapes downstream, their
 *      bytes, which then key the plan);
 *   2. each node's kernel infers its outputs' dtypes and shapes; a node whose inputs are all
 *      known at plan time (constants, Shape of a known shape, …) is run right there and its
 *      outputs become constants of the plan — this is how the Shape→Gather→Concat→Reshape
 *      chains of exported graphs disappear; the rest become steps of the schedule, except
 *      nodes nothing needs (their outputs reach no graph output);
 *   3. liveness: every scheduled value's lifetime is [step that makes it, last step that reads
 *      it, or any step that reads a view of it]; graph outputs live to the end. Views (Reshape,
 *      Squeeze, … flagged ULC_K_ALIAS) share their source's bytes and extend its lifetime;
 *   4. placement: values are laid out in one 64-byte-aligned buffer, largest first, each at the
 *      lowest offset not used by a value whose lifetime overlaps (greedy by size, as TFLite's
 *      and onnxruntime's planners do), so memory is reused as soon as a value dies;
 *   5. kernels prepare (oneDNN primitives, packed constant weights).
 *
 * The analysis API (ulc_analyze) is the same walk with partial knowledge and no schedule.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/half.h"
#include "runtime/kernel.h"

#define PLAN_ALIGN 64
#define MAX_PLANS 4 /* plans kept per session (least recently used goes first) */

/* ---- small helpers ------------------------------------------------------------------------- */

uint64_t ulc_rt_numel(const ulc_rt_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= (uint64_t)t->dims[i];
    return n;
}

int ulc_rt_same_shape(const ulc_rt_tensor *a, const ulc_rt_tensor *b) {
    return a->rank == b->rank && memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0;
}

const char *ulc_rt_shape_str(const ulc_rt_tensor *t, char *buf, size_t size) {
    if (!t) {
        snprintf(buf, size, "(none)");
        return buf;
    }
    size_t o = (size_t)snprintf(buf, size, "%s[", ulc_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

static void *xaligned(size_t n) {
    size_t sz = (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
    return aligned_alloc(PLAN_ALIGN, sz ? sz : PLAN_ALIGN);
}

static int rt_dtype_supported(int dt) { return ulc_k_dtype_size(dt) != 0; }

/* numel × compute-dtype size, with overflow → SIZE_MAX. */
static size_t rt_nbytes(const ulc_rt_tensor *t) {
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

/* Converts n halves (f16 or bf16) to float32. */
static void halves_to_f32(int dt, const void *src, float *dst, uint64_t n) {
    const uint8_t *p = src;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
        dst[i] = dt == ULC_DT_F16 ? ulc_f16_to_f32(h) : ulc_bf16_to_f32(h);
    }
}

static void f32_to_halves(int dt, const float *src, void *dst, uint64_t n) {
    uint8_t *p = dst;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h = dt == ULC_DT_F16 ? ulc_f32_to_f16(src[i]) : ulc_f32_to_bf16(src[i]);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* ---- plan data ------------------------------------------------------------------------------ */

enum { V_UNKNOWN = 0, V_SHAPE, V_CONST }; /* what the plan knows about a value */

typedef struct rt_val {
    ulc_rt_tensor t;  /* compute dtype, shape, data (constants, or placed in the arena) */
    int known;        /* V_* */
    int decl_dtype;   /* the graph's dtype (F16/BF16 before the float32 mapping) */
    void *owned;      /* malloc'd bytes this plan frees (constants, converted inputs) */
    int step;         /* scheduled step that produces it, -1 otherwise */
    int root;         /* value id whose bytes these are (itself, or a view's source) */
    int last;         /* last step reading it (roots: of any of their views); INT32_MAX: kept */
    size_t offset;    /* roots placed in the arena */
    int placed;
} rt_val;

typedef struct rt_step {
    const ulc_node *node;
    const ulc_kernel *k;
    ulc_kctx kc;
    ulc_rt_tensor **in, **out;
    int prepared;
    ulc_value *out0;     /* the value output 0 writes (node->outputs[0], or the last fused node's) */
    ulc_value *addend;   /* fused addend read by this step, or NULL */
    ulc_value *mask;     /* fused ReluGrad mask read by this step, or NULL */
    ulc_kfuse fuse;      /* kc.fuse points here when something was fused */
    struct rt_fold *fold; /* a Conv with a BatchNormalization folded in: its new W and B */
    ulc_value **reads;   /* a fused chain: the values it reads (malloc'd), instead of the node's */
    int n_reads;
    int removed;         /* fused into an earlier step */
    int chain;           /* runs the backend's chain kernel; kc.state is its program */
} rt_step;

/* Weights a plan computed for a step (BatchNormalization folded into a Conv). */
typedef struct rt_fold {
    ulc_rt_tensor w, b;
} rt_fold;

typedef struct rt_key_input {
    int rank;
    int64_t dims[ULC_RT_MAX_RANK];
    void *bytes; /* plan-keyed inputs: a copy of their data */
    size_t nbytes;
} rt_key_input;

typedef struct rt_plan {
    rt_val *vals;        /* graph->values.len */
    rt_step *steps;
    int n_steps;
    void *arena;
    size_t arena_size, unshared;
    rt_key_input *key;   /* per graph input */
    ulc_rt_tensor *outs; /* per graph output, in its declared dtype */
    void **out_owned;    /* per graph output: converted bytes (declared half dtypes) */
    uint64_t used;       /* LRU stamp */
    int no_gelu;         /* ULC_NO_GELU_FUSION=1: GELU chains stay as their ops */
    const ulc_backend *be;
} rt_plan;

struct ulc_session {
    const ulc_model *m;
    const ulc_backend *be;
    const ulc_graph *g;
    int64_t opset;
    int threads;
    uint8_t *need_value; /* per value: its bytes decide a shape somewhere (plan-keyed if input) */
    uint8_t *needed;     /* per node id slot: its outputs reach a graph output */
    ulc_rt_tensor *bound; /* per graph input */
    uint8_t *is_bound;
    rt_plan *plans[MAX_PLANS];
    int n_plans;
    rt_plan *cur;
    int plan_count;
    uint64_t clock;
    int profile;
    int no_fusion;    /* ULC_NO_FUSION=1 in the environment: every node runs on its own */
    double *node_ms;  /* profile: per node id, summed over runs */
    int64_t *node_calls;
};

static ulc_status nomem(ulc_ctx *ctx, const char *what) {
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", what);
}

static void plan_free(rt_plan *p, const ulc_graph *g) {
    if (!p) return;
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *s = &p->steps[i];
        if (s->prepared && s->k->release) s->k->release(s->kc.state);
        else if (s->chain) free(s->kc.state); /* the plan failed before prepare */
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
    free(p->arena);
    free(p);
}

/* ---- the walk (shared by plans and analyses) ------------------------------------------------ */

typedef struct walk {
    const ulc_graph *g;
    const ulc_backend *be;
    int64_t opset;
    rt_val *vals;
    int analysis;        /* 1: partial knowledge, no schedule, size-limited folding */
    size_t limit_bytes;  /* analysis folding limit */
    const uint8_t *needed; /* plans: nodes to schedule (NULL = all) */
    uint8_t *folded;     /* analysis: per node id */
    rt_step *steps;
    int n_steps, cap_steps;
    ulc_ctx *ctx;
} walk;

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
    if (!rt_dtype_supported(cdt)) return ULC_OK; /* stays unknown: an error only if a kernel reads it */
    if (t->rank > ULC_RT_MAX_RANK)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s '%s': rank %d exceeds the runtime's %d",
                        what, t->name ? t->name : "", t->rank, ULC_RT_MAX_RANK);
    if (t->storage == ULC_STORAGE_DEVICE || t->storage == ULC_STORAGE_NONE) return ULC_OK;
    ulc_k_set(&rv->t, cdt, t->rank, t->dims);
    rv->t.nbytes = rt_nbytes(&rv->t);
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
        if (!raw) return nomem(ctx, t->name ? t->name : what);
        copy_sink cs = {raw, 0};
        ulc_status s = ulc_tensor_stream(t, copy_sink_fn, &cs, ctx);
        if (s != ULC_OK) {
            free(raw);
            return s;
        }
        src = raw;
    }
    void *d = xaligned(rv->t.nbytes);
    if (!d) {
        free(raw);
        return nomem(ctx, t->name ? t->name : what);
    }
    if (half) halves_to_f32(t->dtype, src, d, t->numel);
    else if (rv->t.nbytes) memcpy(d, src, rv->t.nbytes);
    free(raw);
    rv->owned = d;
    rv->t.data = d;
    rv->known = V_CONST;
    return ULC_OK;
}

static ulc_status push_step(walk *w, rt_step **out) {
    if (w->n_steps == w->cap_steps) {
        int nc = w->cap_steps ? 2 * w->cap_steps : 64;
        rt_step *ns = realloc(w->steps, (size_t)nc * sizeof *ns);
        if (!ns) return nomem(w->ctx, "plan steps");
        w->steps = ns;
        w->cap_steps = nc;
    }
    *out = &w->steps[w->n_steps++];
    memset(*out, 0, sizeof **out);
    return ULC_OK;
}

/* A view node whose only product is the view itself: nothing to run. */
static int alias_only(const ulc_kernel *k, const ulc_node *n) {
    if (!(k->flags & ULC_K_ALIAS)) return 0;
    for (int i = 1; i < n->n_outputs; i++)
        if (n->outputs[i]) return 0;
    return 1;
}

/* Runs kernel k on a node whose inputs are all known, at plan time; outputs become constants. */
static ulc_status fold_node(walk *w, const ulc_kernel *k, ulc_kctx *kc) {
    const ulc_node *n = kc->node;
    for (int i = 0; i < n->n_outputs; i++) {
        if (!kc->out[i]) continue;
        rt_val *rv = &w->vals[n->outputs[i]->id];
        if (k->flags & ULC_K_ALIAS) {
            if (i == 0) {
                rv->t.data = kc->in[0]->data;
                rv->known = V_CONST;
                continue;
            }
        }
        rv->owned = xaligned(rv->t.nbytes);
        if (!rv->owned) return nomem(w->ctx, n->outputs[i]->name);
        rv->t.data = rv->owned;
        rv->known = V_CONST;
    }
    if (alias_only(k, n)) return ULC_OK;
    ulc_status s = ULC_OK;
    kc->state = NULL;
    if (k->prepare) s = k->prepare(kc);
    if (s == ULC_OK) s = k->run(kc);
    if (k->prepare && k->release) k->release(kc->state);
    kc->state = NULL;
    return s;
}

static ulc_status walk_node(walk *w, const ulc_node *n) {
    ulc_ctx *ctx = w->ctx;
    char label[160];
    if (w->needed && !w->needed[n->id]) return ULC_OK; /* reaches no output */
    const ulc_kernel *k = w->be->kernel(n->op);
    if (!k) {
        if (w->analysis) return ULC_OK;
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s%s%s: not supported by backend %s",
                        ulc_node_label(n, label, sizeof label),
                        n->domain && *n->domain ? ", domain " : "", n->domain ? n->domain : "",
                        w->be->name);
    }
    ulc_rt_tensor *ins[64], *outs[64];
    if (n->n_inputs > 64 || n->n_outputs > 64)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: more than 64 inputs or outputs",
                        ulc_node_label(n, label, sizeof label));
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
                            "%s: input '%s' has a type the cpu backend cannot compute with (%s)",
                            ulc_node_label(n, label, sizeof label), v->name,
                            ulc_dtype_name(v->dtype));
        }
        ins[i] = &rv->t;
        if (rv->known == V_CONST) {
            if (i < 32) const_mask |= 1u << i;
        } else {
            all_const = 0;
            if (i < 32 && (k->value_inputs & (1u << i))) {
                if (w->analysis) return ULC_OK;
                return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                                "%s: input %d ('%s') decides the output's shape but is computed "
                                "from run-time data; ulc plans shapes ahead of the run",
                                ulc_node_label(n, label, sizeof label), i, v->name);
            }
        }
    }
    if (k->flags & ULC_K_SHAPE_ONLY) all_const = 1;
    for (int i = 0; i < n->n_outputs; i++) {
        ulc_value *v = n->outputs[i];
        outs[i] = v ? &w->vals[v->id].t : NULL;
        if (v) memset(&w->vals[v->id].t, 0, sizeof(ulc_rt_tensor));
    }
    ulc_kctx kc = {.node = n, .opset = w->opset, .n_in = n->n_inputs, .n_out = n->n_outputs,
                   .in = ins, .out = outs, .const_inputs = const_mask, .threads = 0, .err = ctx};
    ULC_TRY(k->infer(&kc));
    for (int i = 0; i < n->n_outputs; i++) {
        if (!outs[i]) continue;
        rt_val *rv = &w->vals[n->outputs[i]->id];
        if (!rt_dtype_supported(outs[i]->dtype) || outs[i]->rank < 0 ||
            outs[i]->rank > ULC_RT_MAX_RANK)
            return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: kernel inferred an invalid output %d",
                            ulc_node_label(n, label, sizeof label), i);
        outs[i]->nbytes = rt_nbytes(outs[i]);
        if (outs[i]->nbytes == SIZE_MAX)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is too large",
                            ulc_node_label(n, label, sizeof label), n->outputs[i]->name);
        rv->known = V_SHAPE;
    }
    if (all_const) {
        size_t out_bytes = 0;
        for (int i = 0; i < n->n_outputs; i++)
            if (outs[i]) out_bytes += outs[i]->nbytes;
        /* plans fold everything; an analysis only what is small (a pass must not duplicate
         * weights as folded copies) */
        int fold = !w->analysis || out_bytes <= w->limit_bytes;
        if (fold) {
            ULC_TRY(fold_node(w, k, &kc));
            if (w->folded) w->folded[n->id] = 1;
            return ULC_OK;
        }
    }
    if (w->analysis || (w->needed && !w->needed[n->id])) return ULC_OK;
    rt_step *s = NULL;
    ULC_TRY(push_step(w, &s));
    s->node = n;
    s->k = k;
    s->kc = kc;
    s->in = malloc(sizeof(ulc_rt_tensor *) * (size_t)(n->n_inputs ? n->n_inputs : 1));
    s->out = malloc(sizeof(ulc_rt_tensor *) * (size_t)(n->n_outputs ? n->n_outputs : 1));
    if (!s->in || !s->out) return nomem(ctx, "plan steps");
    memcpy(s->in, ins, sizeof(ulc_rt_tensor *) * (size_t)n->n_inputs);
    memcpy(s->out, outs, sizeof(ulc_rt_tensor *) * (size_t)n->n_outputs);
    s->kc.in = s->in;
    s->kc.out = s->out;
    s->out0 = n->n_outputs ? n->outputs[0] : NULL;
    for (int i = 0; i < n->n_outputs; i++)
        if (n->outputs[i]) w->vals[n->outputs[i]->id].step = w->n_steps - 1;
    return ULC_OK;
}

/* Initializers and bound inputs, then every node. */
static ulc_status walk_graph(walk *w, const ulc_rt_binding *bind, int n_bind,
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
            if (!rt_dtype_supported(cdt) || t->rank > ULC_RT_MAX_RANK) continue;
            ulc_k_set(&rv->t, cdt, t->rank, t->dims);
            rv->t.nbytes = rt_nbytes(&rv->t);
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
                (v->flags & ULC_VALUE_HAS_TYPE) && rt_dtype_supported(ulc_k_compute_dtype(v->dtype))) {
                int ok = 1;
                for (int d = 0; d < v->rank; d++)
                    if (v->dims[d].value < 0) ok = 0;
                if (ok) {
                    rv->t.dtype = ulc_k_compute_dtype(v->dtype);
                    rv->t.rank = v->rank;
                    for (int d = 0; d < v->rank; d++) rv->t.dims[d] = v->dims[d].value;
                    rv->t.nbytes = rt_nbytes(&rv->t);
                    rv->known = V_SHAPE;
                }
            }
            continue;
        }
        free(rv->owned);
        rv->owned = NULL;
        rv->t = b->t;
        rv->t.dtype = ulc_k_compute_dtype(b->t.dtype);
        rv->t.nbytes = rt_nbytes(&rv->t);
        rv->t.data = NULL;
        rv->known = V_SHAPE;
        if (b->t.data && (w->analysis || (keyed && keyed[v->id]))) {
            /* its bytes decide shapes: a constant of this plan */
            void *d = xaligned(rv->t.nbytes);
            if (!d) return nomem(w->ctx, v->name);
            if (ulc_k_compute_dtype(b->t.dtype) != b->t.dtype)
                halves_to_f32(b->t.dtype, b->t.data, d, ulc_rt_numel(&rv->t));
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

/* ---- liveness and placement ---------------------------------------------------------------- */

typedef struct place_item {
    int id;
    size_t size;
    int def, last;
} place_item;

static int by_size_desc(const void *a, const void *b) {
    const place_item *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->id - y->id;
}

/* ---- fusion -------------------------------------------------------------------------------- */

/* The one step reading v (v not a graph output), or -1. */
static int sole_reader(const rt_plan *p, const int *step_of, const ulc_graph *g, const ulc_value *v) {
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
    case ULC_OP_Gelu: {
        const ulc_attr *ap = ulc_node_attr(n, "approximate");
        if (ap && ap->type == ULC_ATTR_STRING && ap->s.data && strcmp((const char *)ap->s.data, "tanh") == 0)
            return ULC_ACT_GELU_TANH;
        return ULC_ACT_GELU_ERF;
    }
    default: return ULC_ACT_NONE;
    }
}


/* Folds an inference BatchNormalization into the Conv before it when the weights and the
 * statistics are constants: W'[m] = W[m]·a[m], B'[m] = (B[m] − mean[m])·a[m] + beta[m] with
 * a[m] = scale[m] / √(var[m] + ε) — what torch's exporter does for eval models, done here for
 * graphs that keep the BatchNormalization (Hugging Face ResNets built by ulc, for instance). */
static ulc_status fold_batchnorms(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx) {
    int *step_of = malloc(sizeof(int) * (size_t)(g->next_node_id > 0 ? g->next_node_id : 1));
    if (!step_of) return nomem(ctx, "fusion");
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
        int j = sole_reader(p, step_of, g, cs->out0);
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
            st = nomem(ctx, "folding BatchNormalization");
            break;
        }
        cs->in = in3;
        f->w = *w;
        f->w.data = xaligned(w->nbytes);
        f->b.dtype = ULC_DT_F32;
        f->b.rank = 1;
        f->b.dims[0] = m;
        f->b.nbytes = (size_t)m * sizeof(float);
        f->b.data = xaligned(f->b.nbytes);
        if (!f->w.data || !f->b.data) {
            free(f->w.data), free(f->b.data), free(f);
            st = nomem(ctx, "folding BatchNormalization");
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

/* A fused operand: computed before step i (or a plan constant), in the step's output dtype. */
static int ready_before(const rt_val *v, int i, const rt_val *v0) {
    return v && (v->known == V_CONST || v->step < i) && v->t.dtype == v0->t.dtype;
}

/* Folds Add (of an operand ready before the producer) and an activation after a step whose
 * kernel can apply them: Conv → Add → Relu of a residual block, MatMul → Add of a bias. */
static ulc_status fuse_steps(rt_plan *p, const ulc_graph *g, int64_t opset, ulc_ctx *ctx) {
    int *step_of = malloc(sizeof(int) * (size_t)(g->next_node_id > 0 ? g->next_node_id : 1));
    if (!step_of) return nomem(ctx, "fusion");
    for (int i = 0; i < g->next_node_id; i++) step_of[i] = -1;
    for (int i = 0; i < p->n_steps; i++) step_of[p->steps[i].node->id] = i;
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *st = &p->steps[i];
        if (st->removed || !st->k->can_fuse || !st->out0 || (st->k->flags & ULC_K_ALIAS)) continue;
        const rt_val *v0 = &p->vals[st->out0->id];
        ulc_kfuse f = {0};
        int drop[2] = {-1, -1};
        ulc_value *cur = st->out0, *addend = NULL, *after_add = NULL, *mask = NULL;
        int j = sole_reader(p, step_of, g, cur);
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
                j = sole_reader(p, step_of, g, cur);
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
        if (drop[0] < 0 && drop[1] < 0) continue;
        if (!st->k->can_fuse(&st->kc, &f)) {
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
        p->vals[st->out0->id].step = -1; /* never materialised */
        if (drop[0] >= 0 && drop[1] >= 0) p->vals[after_add->id].step = -1;
        st->out0 = cur;
        st->out[0] = &p->vals[cur->id].t;
        p->vals[cur->id].step = i;
        for (int d = 0; d < 2; d++)
            if (drop[d] >= 0) p->steps[drop[d]].removed = 1;
    }
    free(step_of);
    return ULC_OK;
}


/* Drops the steps fused into others; renumbers the steps that produce each value. */
static void compact_steps(rt_plan *p) {
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

/* ---- layouts ------------------------------------------------------------------------------- */

/* Bytes of a float32 [N, C, H, W] tensor in NCHW8C (channels padded to a multiple of 8). */
static size_t blocked_nbytes(const ulc_rt_tensor *t) {
    int64_t cb = (t->dims[1] + 7) / 8;
    return (size_t)t->dims[0] * (size_t)cb * 8 * (size_t)t->dims[2] * (size_t)t->dims[3] * sizeof(float);
}

/* Keeps activations in NCHW8C between kernels that all accept it (convolutions, pools), so
 * no layout copy is made between them: a value goes blocked when its producer can write it so
 * and every step reading it — as an input slot or as a fused addend — can read it so. */
static void choose_layouts(rt_plan *p, const ulc_graph *g) {
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
                ok = s < 32 && (r->k->blocked_inputs & (1u << s)) && !(r->k->flags & ULC_K_ALIAS);
            }
            if (r->kc.fuse && r->kc.fuse->mask == t) {
                readers++;
                ok = 0; /* masks are read plain */
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

/* ---- elementwise chains ---------------------------------------------------------------------- */

static int chain_opcode(const ulc_node *n) {
    switch (n->op) {
    case ULC_OP_Add: return ULC_CH_ADD;
    case ULC_OP_Sub: return ULC_CH_SUB;
    case ULC_OP_Mul: return ULC_CH_MUL;
    case ULC_OP_Div: return ULC_CH_DIV;
    case ULC_OP_Pow: return ULC_CH_POW;
    case ULC_OP_Neg: return ULC_CH_NEG;
    case ULC_OP_Relu: return ULC_CH_RELU;
    case ULC_OP_Exp: return ULC_CH_EXP;
    case ULC_OP_Log: return ULC_CH_LOG;
    case ULC_OP_Sqrt: return ULC_CH_SQRT;
    case ULC_OP_Reciprocal: return ULC_CH_RECIP;
    case ULC_OP_Abs: return ULC_CH_ABS;
    case ULC_OP_Tanh: return ULC_CH_TANH;
    case ULC_OP_Erf: return ULC_CH_ERF;
    case ULC_OP_Sigmoid: return ULC_CH_SIGMOID;
    case ULC_OP_Gelu: {
        const ulc_attr *ap = ulc_node_attr(n, "approximate");
        return ap && ap->type == ULC_ATTR_STRING && ap->s.data &&
                       strcmp((const char *)ap->s.data, "tanh") == 0
                   ? ULC_CH_GELU_TANH
                   : ULC_CH_GELU_ERF;
    }
    default: return -1;
    }
}

/* A float32 scalar constant (any rank, one element). */
static int scalar_const(const rt_val *rv) {
    return rv->known == V_CONST && rv->t.dtype == ULC_DT_F32 && ulc_rt_numel(&rv->t) == 1;
}

/* Can step st join a chain: a float32 elementwise op whose operands are tensors shaped like
 * its output or scalar constants? */
static int chain_eligible(const rt_plan *p, const rt_step *st) {
    const ulc_node *n = st->node;
    if (st->removed || st->kc.fuse || chain_opcode(n) < 0 || n->n_outputs != 1 || !st->out0) return 0;
    const rt_val *ov = &p->vals[st->out0->id];
    if (ov->t.dtype != ULC_DT_F32) return 0;
    int arity = n->op == ULC_OP_Add || n->op == ULC_OP_Sub || n->op == ULC_OP_Mul ||
                        n->op == ULC_OP_Div || n->op == ULC_OP_Pow ? 2 : 1;
    if (n->n_inputs != arity) return 0;
    int tensors = 0;
    for (int i = 0; i < arity; i++) {
        const ulc_value *v = n->inputs[i].value;
        if (!v) return 0;
        const rt_val *rv = &p->vals[v->id];
        if (scalar_const(rv)) continue;
        if (rv->t.dtype != ULC_DT_F32 || !ulc_rt_same_shape(&rv->t, &ov->t)) return 0;
        tensors++;
    }
    return tensors > 0;
}

static int uf_find(int *parent, int i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
}

/* Builds the program of the chain whose members are steps[idx[0..m)] (in order) into c;
 * externals get input slots in ext. 0 when it does not fit the register file. */
static int build_chain(const rt_plan *p, const int *idx, int m, ulc_chain *c, ulc_value **ext,
                       int *n_ext) {
    /* registers: by value id, with last-use counts to free them */
    enum { MAXV = 2 * ULC_CHAIN_MAX };
    const ulc_value *regv[ULC_CHAIN_REGS];
    int reg_uses[ULC_CHAIN_REGS];
    int nregs_free = ULC_CHAIN_REGS;
    (void)nregs_free;
    for (int r = 0; r < ULC_CHAIN_REGS; r++) {
        regv[r] = NULL;
        reg_uses[r] = 0;
    }
    c->n_ins = 0;
    *n_ext = 0;
    for (int k = 0; k < m; k++) {
        const ulc_node *n = p->steps[idx[k]].node;
        int opc = chain_opcode(n);
        int arity = n->n_inputs;
        uint8_t opr[2] = {0, 0};
        int imm_side = 0;
        float imm = 0;
        for (int i = 0; i < arity; i++) {
            const ulc_value *v = n->inputs[i].value;
            const rt_val *rv = &p->vals[v->id];
            if (scalar_const(rv) && arity == 2) {
                imm_side = i + 1;
                imm = *(const float *)rv->t.data;
                continue;
            }
            int r = -1;
            for (int q = 0; q < ULC_CHAIN_REGS; q++)
                if (regv[q] == v) r = q;
            if (r < 0) { /* an external: load it (again, if its register was reused) */
                int slot = -1;
                for (int e = 0; e < *n_ext; e++)
                    if (ext[e] == v) slot = e;
                if (slot < 0) {
                    if (*n_ext >= MAXV) return 0;
                    slot = (*n_ext)++;
                    ext[slot] = (ulc_value *)v;
                }
                for (int q = 0; q < ULC_CHAIN_REGS && r < 0; q++)
                    if (!regv[q]) r = q;
                if (r < 0 || c->n_ins >= ULC_CHAIN_MAX) return 0;
                regv[r] = v;
                /* uses of v left in the chain, counting this one */
                int uses = 0;
                for (int k2 = k; k2 < m; k2++) {
                    const ulc_node *n2 = p->steps[idx[k2]].node;
                    for (int i2 = 0; i2 < n2->n_inputs; i2++) uses += n2->inputs[i2].value == v;
                }
                reg_uses[r] = uses;
                c->ins[c->n_ins++] = (ulc_chain_ins){.op = ULC_CH_LOAD, .dst = (uint8_t)r,
                                                     .input = (int16_t)slot};
            }
            opr[i] = (uint8_t)r;
        }
        if (imm_side == 0 && arity == 2 && n->inputs[0].value == n->inputs[1].value) opr[1] = opr[0];
        /* free the operand registers whose value has no more uses here */
        for (int i = 0; i < arity; i++) {
            if (imm_side == i + 1) continue;
            int r = opr[i];
            if (--reg_uses[r] <= 0) regv[r] = NULL;
        }
        int dst = -1;
        for (int q = 0; q < ULC_CHAIN_REGS && dst < 0; q++)
            if (!regv[q]) dst = q;
        if (dst < 0 || c->n_ins >= ULC_CHAIN_MAX) return 0;
        const ulc_value *out = n->outputs[0];
        int uses = 0;
        for (int k2 = k + 1; k2 < m; k2++) {
            const ulc_node *n2 = p->steps[idx[k2]].node;
            for (int i2 = 0; i2 < n2->n_inputs; i2++) uses += n2->inputs[i2].value == out;
        }
        regv[dst] = out;
        reg_uses[dst] = uses > 0 ? uses : 1;
        ulc_chain_ins ins = {.op = (uint8_t)opc, .dst = (uint8_t)dst, .imm_side = (uint8_t)imm_side,
                             .imm = imm};
        if (arity == 2) {
            if (imm_side == 1) ins.b = opr[1];
            else if (imm_side == 2) ins.a = opr[0];
            else {
                ins.a = opr[0];
                ins.b = opr[1];
            }
        } else {
            ins.a = opr[0];
        }
        c->ins[c->n_ins++] = ins;
        c->out = dst;
    }
    return 1;
}


/* Which GELU a single-input chain computes, probed on values across its range: ULC_ACT_GELU_ERF,
 * ULC_ACT_GELU_TANH, or ULC_ACT_NONE. Exporters spell GELU in many orders of the same five to
 * eight ops; comparing values recognises them all without matching their shapes. */
static ulc_kact chain_gelu(const rt_plan *p, const ulc_chain *c) {
    enum { NP = 64 };
    float x[NP], y[NP];
    for (int i = 0; i < NP; i++) x[i] = -7.0f + 14.0f * (float)i / (NP - 1) + 0.013f;
    const float *ins[1] = {x};
    p->be->chain_eval(c, ins, y, NP);
    int erf_ok = 1, tanh_ok = 1;
    for (int i = 0; i < NP; i++) {
        double v = x[i];
        double ge = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
        double gt = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); /* √(2/π) */
        if (!(fabs(y[i] - ge) <= 1e-5 * fabs(ge) + 1e-6)) erf_ok = 0;
        if (!(fabs(y[i] - gt) <= 1e-5 * fabs(gt) + 1e-6)) tanh_ok = 0;
    }
    return erf_ok ? ULC_ACT_GELU_ERF : tanh_ok ? ULC_ACT_GELU_TANH : ULC_ACT_NONE;
}

/* A chain that computes GELU(x): folded into x's producer as its activation when that kernel
 * takes it and x feeds nothing else, else run as one GELU instruction. 1 if folded. */
static int gelu_chain(rt_plan *p, const int *idx, int m, ulc_chain *c, ulc_value *x) {
    ulc_kact act = chain_gelu(p, c);
    if (act == ULC_ACT_NONE) return 0;
    rt_step *root = &p->steps[idx[m - 1]];
    int pi = p->vals[x->id].step;
    if (pi >= 0) {
        rt_step *ps = &p->steps[pi];
        int only_chain = ps->out0 == x && !(x->flags & ULC_VALUE_OUTPUT);
        for (const ulc_use *u = x->first_use; u && only_chain; u = u->next) {
            int in_chain = 0;
            for (int k = 0; k < m; k++) in_chain |= p->steps[idx[k]].node == u->node;
            only_chain = in_chain;
        }
        ulc_kfuse f = ps->kc.fuse ? *ps->kc.fuse : (ulc_kfuse){0};
        if (only_chain && !ps->removed && ps->k->can_fuse && f.act == ULC_ACT_NONE &&
            !(ps->k->flags & ULC_K_ALIAS)) {
            f.act = act;
            if (ps->k->can_fuse(&ps->kc, &f)) {
                ps->fuse = f;
                ps->kc.fuse = &ps->fuse;
                p->vals[x->id].step = -1;
                ps->out0 = root->out0;
                ps->out[0] = &p->vals[root->out0->id].t;
                p->vals[root->out0->id].step = pi;
                for (int k = 0; k < m; k++) {
                    p->steps[idx[k]].removed = 1;
                    if (k < m - 1) p->vals[p->steps[idx[k]].out0->id].step = -1;
                }
                return 1;
            }
        }
    }
    c->n_ins = 2;
    c->ins[0] = (ulc_chain_ins){.op = ULC_CH_LOAD, .dst = 0, .input = 0};
    c->ins[1] = (ulc_chain_ins){.op = (uint8_t)(act == ULC_ACT_GELU_ERF ? ULC_CH_GELU_ERF : ULC_CH_GELU_TANH),
                                .dst = 1, .a = 0};
    c->out = 1;
    return 0;
}

/* Fuses connected chains of float32 elementwise steps (linked by values read once, by the next
 * member) into one step running the backend's chain kernel at the last member's place. */
static ulc_status fuse_chains(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx) {
    int ns = p->n_steps;
    int *parent = malloc(sizeof(int) * (size_t)(ns ? ns : 1));
    int *step_of = malloc(sizeof(int) * (size_t)(g->next_node_id > 0 ? g->next_node_id : 1));
    int *idx = malloc(sizeof(int) * (size_t)(ns ? ns : 1));
    uint8_t *ok = calloc((size_t)(ns ? ns : 1), 1);
    if (!parent || !step_of || !idx || !ok) {
        free(parent), free(step_of), free(idx), free(ok);
        return nomem(ctx, "fusion");
    }
    for (int i = 0; i < g->next_node_id; i++) step_of[i] = -1;
    for (int i = 0; i < ns; i++) {
        parent[i] = i;
        if (!p->steps[i].removed) step_of[p->steps[i].node->id] = i;
        ok[i] = (uint8_t)chain_eligible(p, &p->steps[i]);
    }
    for (int j = 0; j < ns; j++) {
        if (!ok[j]) continue;
        const ulc_node *n = p->steps[j].node;
        for (int i = 0; i < n->n_inputs; i++) {
            const ulc_value *v = n->inputs[i].value;
            if (!v || p->vals[v->id].step < 0) continue;
            int pi = p->vals[v->id].step;
            if (!ok[pi] || p->steps[pi].out0 != v) continue;
            if (sole_reader(p, step_of, g, v) != j) continue;
            parent[uf_find(parent, pi)] = uf_find(parent, j);
        }
    }
    ulc_status st = ULC_OK;
    for (int root = 0; root < ns && st == ULC_OK; root++) {
        if (!ok[root] || uf_find(parent, root) != root) continue;
        int m = 0;
        for (int i = 0; i < ns; i++)
            if (ok[i] && uf_find(parent, i) == root) idx[m++] = i;
        if (m < 2 || idx[m - 1] != root) continue;
        ulc_chain *c = malloc(sizeof *c);
        ulc_value **ext = malloc(sizeof(ulc_value *) * 2 * ULC_CHAIN_MAX);
        int n_ext = 0;
        if (!c || !ext) {
            free(c), free(ext);
            st = nomem(ctx, "fusion");
            break;
        }
        if (m > ULC_CHAIN_MAX / 2 || !build_chain(p, idx, m, c, ext, &n_ext)) {
            free(c), free(ext);
            continue;
        }
        if (n_ext == 1 && m >= 4 && !p->no_gelu && gelu_chain(p, idx, m, c, ext[0])) {
            free(c), free(ext);
            continue;
        }
        rt_step *rs = &p->steps[root];
        ulc_rt_tensor **in = malloc(sizeof(ulc_rt_tensor *) * (size_t)n_ext);
        if (!in) {
            free(c), free(ext);
            st = nomem(ctx, "fusion");
            break;
        }
        for (int e = 0; e < n_ext; e++) in[e] = &p->vals[ext[e]->id].t;
        free(rs->in);
        rs->in = in;
        rs->kc.in = in;
        rs->kc.n_in = n_ext;
        rs->k = p->be->chain_kernel();
        rs->chain = 1;
        rs->kc.state = c;
        rs->reads = ext;
        rs->n_reads = n_ext;
        for (int i = 0; i < m - 1; i++) {
            p->steps[idx[i]].removed = 1;
            p->vals[p->steps[idx[i]].out0->id].step = -1;
        }
    }
    free(parent), free(step_of), free(idx), free(ok);
    return st;
}

static ulc_status place_values(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx) {
    size_t nv = g->values.len;
    rt_val *vals = p->vals;
    /* roots: views share their source's root */
    for (int s = 0; s < p->n_steps; s++) {
        rt_step *st = &p->steps[s];
        const ulc_node *n = st->node;
        for (int i = 0; i < n->n_outputs; i++) {
            ulc_value *ov = i == 0 ? st->out0 : n->outputs[i];
            if (!ov) continue;
            rt_val *rv = &vals[ov->id];
            rv->last = s;
            if ((st->k->flags & ULC_K_ALIAS) && i == 0 && n->inputs[0].value) {
                /* a view: of a scheduled value (its root), or of bytes outside the arena
                 * (a constant, a graph input: -1) */
                rt_val *src = &vals[n->inputs[0].value->id];
                rv->root = src->step >= 0 ? src->root : -1;
            }
        }
        int nr = st->reads ? st->n_reads : n->n_inputs;
        for (int i = 0; i <= nr + 1; i++) {
            ulc_value *v = i < nr ? (st->reads ? st->reads[i] : n->inputs[i].value)
                                  : i == nr ? st->addend : st->mask;
            if (!v) continue;
            rt_val *rv = &vals[v->id];
            if (rv->step < 0 || rv->root < 0) continue;
            if (vals[rv->root].last < s) vals[rv->root].last = s;
        }
    }
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        rt_val *rv = &vals[v->id];
        if (rv->step >= 0 && rv->root >= 0) vals[rv->root].last = INT32_MAX;
    }
    /* items to place: scheduled roots that are not views */
    place_item *items = malloc(sizeof *items * (nv ? nv : 1));
    place_item **active = malloc(sizeof *active * (nv ? nv : 1));
    if (!items || !active) {
        free(items);
        free(active);
        return nomem(ctx, "memory plan");
    }
    int ni = 0;
    size_t unshared = 0;
    for (size_t i = 0; i < nv; i++) {
        ulc_value *v = g->values.items[i];
        rt_val *rv = &vals[v->id];
        if (rv->step < 0 || rv->root != v->id) continue;
        size_t sz = (rv->t.nbytes + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
        if (!sz) sz = PLAN_ALIGN;
        items[ni++] = (place_item){v->id, sz, rv->step, rv->last};
        unshared += sz;
    }
    qsort(items, (size_t)ni, sizeof *items, by_size_desc);
    size_t total = 0;
    for (int i = 0; i < ni; i++) {
        /* the placed items alive at the same time, by offset; take the lowest gap that fits */
        int na = 0;
        for (int j = 0; j < i; j++)
            if (items[j].def <= items[i].last && items[i].def <= items[j].last) active[na++] = &items[j];
        for (int a = 1; a < na; a++) { /* insertion sort by offset (na is small) */
            place_item *x = active[a];
            int b = a - 1;
            while (b >= 0 && vals[active[b]->id].offset > vals[x->id].offset) {
                active[b + 1] = active[b];
                b--;
            }
            active[b + 1] = x;
        }
        size_t off = 0;
        for (int a = 0; a < na; a++) {
            size_t o = vals[active[a]->id].offset;
            if (o >= off + items[i].size) break;
            size_t end = o + active[a]->size;
            if (end > off) off = end;
        }
        vals[items[i].id].offset = off;
        vals[items[i].id].placed = 1;
        if (off + items[i].size > total) total = off + items[i].size;
    }
    free(items);
    free(active);
    p->arena_size = total;
    p->unshared = unshared;
    p->arena = xaligned(total);
    if (!p->arena) return nomem(ctx, "activation buffer");
    for (size_t i = 0; i < nv; i++) {
        ulc_value *v = g->values.items[i];
        rt_val *rv = &vals[v->id];
        if (rv->step >= 0 && rv->root == v->id) rv->t.data = (uint8_t *)p->arena + rv->offset;
    }
    return ULC_OK;
}

/* ---- sessions ------------------------------------------------------------------------------ */

ulc_session_opts ulc_session_defaults(void) {
    return (ulc_session_opts){.backend = "cpu", .threads = 0};
}

/* The backends, by name (the first is the default). */
static const ulc_backend *find_backend(const char *name) {
    const ulc_backend *all[] = {ulc_backend_cpu()};
    if (!name) return all[0];
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}

int ulc_backend_supports(const char *backend, const ulc_node *n, char *why, size_t why_size) {
    const ulc_backend *be = find_backend(backend);
    if (!be) {
        snprintf(why, why_size, "unknown backend '%s'", backend);
        return 0;
    }
    if (!be->kernel(n->op)) {
        snprintf(why, why_size, "op %s%s%s%s is not supported by backend %s", n->op_type,
                 n->domain && *n->domain ? " (domain " : "", n->domain && *n->domain ? n->domain : "",
                 n->domain && *n->domain ? ")" : "", be->name);
        return 0;
    }
    for (int i = 0; i < n->n_attrs; i++) {
        int t = n->attrs[i].type;
        if (t == ULC_ATTR_GRAPH || t == ULC_ATTR_GRAPHS) {
            snprintf(why, why_size, "attribute '%s' holds a subgraph, which backend %s does not run",
                     n->attrs[i].name, be->name);
            return 0;
        }
    }
    return 1;
}

const char *const *ulc_backend_ops(const char *backend) {
    static const char *list[ULC_OP_COUNT_ + 1];
    static int n = -1;
    const ulc_backend *be = find_backend(backend);
    if (!be) return NULL;
    if (n < 0) { /* benign: every caller computes the same list (one backend for now) */
        int c = 0;
        for (int op = 1; op < ULC_OP_ULC_FIRST_; op++) /* ONNX ops (ulc's are internal) */
            if (be->kernel((ulc_op)op)) list[c++] = ulc_op_name((ulc_op)op);
        list[c] = NULL;
        n = c;
    }
    return list;
}

ulc_status ulc_session_create(const ulc_model *m, const ulc_session_opts *opts, ulc_session **out,
                              ulc_ctx *ctx) {
    *out = NULL;
    ulc_session_opts o = opts ? *opts : ulc_session_defaults();
    const ulc_backend *be = find_backend(o.backend);
    if (!be)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "unknown backend '%s' (available: cpu)", o.backend);
    const ulc_graph *g = m->graph;
    char why[256], label[160];
    for (const ulc_node *n = g->first; n; n = n->next)
        if (!ulc_backend_supports(o.backend, n, why, sizeof why))
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: %s", ulc_node_label(n, label, sizeof label), why);
    ulc_session *s = calloc(1, sizeof *s);
    if (!s) return nomem(ctx, "session");
    s->m = m;
    s->g = g;
    s->be = be;
    s->opset = ulc_model_opset(m, "");
    if (s->opset < 0) s->opset = 21;
    s->threads = o.threads;
    s->profile = o.profile;
    const char *nf = getenv("ULC_NO_FUSION");
    s->no_fusion = nf && *nf && strcmp(nf, "0") != 0;
    size_t nv = g->values.len ? g->values.len : 1;
    s->need_value = calloc(nv, 1);
    s->needed = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), 1);
    s->bound = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *s->bound);
    s->is_bound = calloc(g->inputs.len ? g->inputs.len : 1, 1);
    if (s->profile) {
        s->node_ms = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), sizeof *s->node_ms);
        s->node_calls = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), sizeof *s->node_calls);
    }
    if (!s->need_value || !s->needed || !s->bound || !s->is_bound ||
        (s->profile && (!s->node_ms || !s->node_calls))) {
        ulc_session_free(s);
        return nomem(ctx, "session");
    }
    /* Backwards: which values' bytes decide shapes, and which nodes reach an output. */
    uint8_t *live = calloc(nv, 1);
    if (!live) {
        ulc_session_free(s);
        return nomem(ctx, "session");
    }
    for (size_t i = 0; i < g->outputs.len; i++) live[((ulc_value *)g->outputs.items[i])->id] = 1;
    for (const ulc_node *n = g->last; n; n = n->prev) {
        const ulc_kernel *k = be->kernel(n->op);
        int need = 0, reach = 0;
        for (int i = 0; i < n->n_outputs; i++) {
            if (!n->outputs[i]) continue;
            need |= s->need_value[n->outputs[i]->id];
            reach |= live[n->outputs[i]->id];
        }
        if (reach) s->needed[n->id] = 1;
        for (int i = 0; i < n->n_inputs; i++) {
            ulc_value *v = n->inputs[i].value;
            if (!v) continue;
            if (reach) live[v->id] = 1;
            if ((need && !(k->flags & ULC_K_SHAPE_ONLY)) || (i < 32 && (k->value_inputs & (1u << i))))
                s->need_value[v->id] = 1;
        }
    }
    free(live);
    be->set_threads(o.threads);
    *out = s;
    return ULC_OK;
}

void ulc_session_free(ulc_session *s) {
    if (!s) return;
    for (int i = 0; i < s->n_plans; i++) plan_free(s->plans[i], s->g);
    free(s->need_value);
    free(s->needed);
    free(s->bound);
    free(s->is_bound);
    free(s->node_ms);
    free(s->node_calls);
    free(s);
}

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

ulc_status ulc_session_set_input(ulc_session *s, const char *name, const ulc_rt_tensor *t,
                                 ulc_ctx *ctx) {
    const ulc_graph *g = s->g;
    char sh[160];
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (strcmp(v->name, name) != 0) continue;
        if ((v->flags & ULC_VALUE_HAS_TYPE) && t->dtype != v->dtype)
            return ulc_fail(ctx, ULC_ERR_INVALID, "input '%s': got %s, the model expects %s",
                            name, ulc_rt_shape_str(t, sh, sizeof sh), ulc_dtype_name(v->dtype));
        if (!rt_dtype_supported(ulc_k_compute_dtype(t->dtype)))
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "input '%s': dtype %s is not supported by the runtime",
                            name, ulc_dtype_name(t->dtype));
        if (t->rank < 0 || t->rank > ULC_RT_MAX_RANK)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "input '%s': rank %d (at most %d)", name,
                            t->rank, ULC_RT_MAX_RANK);
        if (v->rank >= 0 && v->rank != t->rank)
            return ulc_fail(ctx, ULC_ERR_INVALID, "input '%s': got %s, the model expects rank %d",
                            name, ulc_rt_shape_str(t, sh, sizeof sh), v->rank);
        for (int d = 0; v->rank >= 0 && d < v->rank; d++)
            if (v->dims[d].value >= 0 && v->dims[d].value != t->dims[d])
                return ulc_fail(ctx, ULC_ERR_INVALID,
                                "input '%s': got %s, the model fixes dim %d to %lld", name,
                                ulc_rt_shape_str(t, sh, sizeof sh), d, (long long)v->dims[d].value);
        for (int d = 0; d < t->rank; d++)
            if (t->dims[d] < 0)
                return ulc_fail(ctx, ULC_ERR_INVALID, "input '%s': negative dim", name);
        s->bound[i] = *t;
        s->bound[i].nbytes = ulc_rt_numel(t) * ulc_dtype_bits(t->dtype) / 8;
        s->is_bound[i] = 1;
        return ULC_OK;
    }
    return ulc_fail(ctx, ULC_ERR_INVALID, "the model has no input named '%s'", name);
}

/* Does plan p fit the bound inputs (shapes, and bytes of plan-keyed inputs)? */
static int plan_matches(const ulc_session *s, const rt_plan *p) {
    const ulc_graph *g = s->g;
    for (size_t i = 0; i < g->inputs.len; i++) {
        const rt_key_input *k = &p->key[i];
        const ulc_rt_tensor *t = &s->bound[i];
        if (!s->is_bound[i]) {
            if (k->rank != -1) return 0;
            continue;
        }
        if (k->rank != t->rank) return 0;
        for (int d = 0; d < t->rank; d++)
            if (k->dims[d] != t->dims[d]) return 0;
        if (k->bytes && (k->nbytes != t->nbytes || memcmp(k->bytes, t->data, t->nbytes) != 0))
            return 0;
    }
    return 1;
}

static ulc_status make_plan(ulc_session *s, rt_plan **out, ulc_ctx *ctx) {
    const ulc_graph *g = s->g;
    size_t nv = g->values.len;
    rt_plan *p = calloc(1, sizeof *p);
    if (!p) return nomem(ctx, "plan");
    p->vals = calloc(nv ? nv : 1, sizeof *p->vals);
    p->key = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *p->key);
    p->outs = calloc(g->outputs.len ? g->outputs.len : 1, sizeof *p->outs);
    p->out_owned = calloc(g->outputs.len ? g->outputs.len : 1, sizeof *p->out_owned);
    ulc_rt_binding *bind = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *bind);
    ulc_status st = ULC_OK;
    if (!p->vals || !p->key || !p->outs || !p->out_owned || !bind) {
        st = nomem(ctx, "plan");
        goto done;
    }
    int nb = 0;
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        rt_key_input *k = &p->key[i];
        k->rank = -1;
        if (!s->is_bound[i]) {
            if ((v->flags & ULC_VALUE_INITIALIZER) && v->init) continue;
            st = ulc_fail(ctx, ULC_ERR_INVALID, "input '%s' was not given", v->name);
            goto done;
        }
        const ulc_rt_tensor *t = &s->bound[i];
        k->rank = t->rank;
        memcpy(k->dims, t->dims, sizeof k->dims);
        if (s->need_value[v->id]) {
            k->nbytes = t->nbytes;
            k->bytes = malloc(t->nbytes ? t->nbytes : 1);
            if (!k->bytes) {
                st = nomem(ctx, v->name);
                goto done;
            }
            if (t->nbytes) memcpy(k->bytes, t->data, t->nbytes);
        }
        bind[nb].name = v->name;
        bind[nb].t = *t;
        nb++;
    }
    const char *ng = getenv("ULC_NO_GELU_FUSION");
    p->no_gelu = ng && *ng && strcmp(ng, "0") != 0;
    p->be = s->be;
    walk w = {.g = g, .be = s->be, .opset = s->opset, .vals = p->vals, .needed = s->needed, .ctx = ctx};
    st = walk_graph(&w, bind, nb, s->need_value);
    p->steps = w.steps;
    p->n_steps = w.n_steps;
    if (st != ULC_OK) goto done;
    if (!s->no_fusion) {
        if ((st = fold_batchnorms(p, g, ctx)) != ULC_OK) goto done;
        if ((st = fuse_steps(p, g, s->opset, ctx)) != ULC_OK) goto done;
        if (p->be->chain_kernel && (st = fuse_chains(p, g, ctx)) != ULC_OK) goto done;
        compact_steps(p);
        choose_layouts(p, g);
    }
    st = place_values(p, g, ctx);
    if (st != ULC_OK) goto done;
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *sp = &p->steps[i];
        sp->kc.threads = s->threads;
        if (sp->k->prepare && !alias_only(sp->k, sp->node)) {
            st = sp->k->prepare(&sp->kc);
            if (st != ULC_OK) goto done;
        }
        sp->prepared = 1;
        if (sp->fold && (sp->kc.packed_inputs & 2u)) {
            /* the folded W was packed into the kernel: only its bias is read from here on */
            free(sp->fold->w.data);
            sp->fold->w.data = NULL;
        }
    }
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        rt_val *rv = &p->vals[v->id];
        if (rv->known == V_UNKNOWN) {
            st = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "output '%s' cannot be computed", v->name);
            goto done;
        }
        if ((v->flags & ULC_VALUE_HAS_TYPE) && ulc_k_compute_dtype(v->dtype) != rv->t.dtype) {
            st = ulc_fail(ctx, ULC_ERR_INVALID, "output '%s' is declared %s but computes %s", v->name,
                          ulc_dtype_name(v->dtype), ulc_dtype_name(rv->t.dtype));
            goto done;
        }
        p->outs[i] = rv->t;
        if ((v->flags & ULC_VALUE_HAS_TYPE) && ulc_k_compute_dtype(v->dtype) != v->dtype &&
            rv->t.dtype == ULC_DT_F32) {
            p->outs[i].dtype = v->dtype;
            p->outs[i].nbytes = ulc_rt_numel(&rv->t) * 2;
            p->out_owned[i] = malloc(p->outs[i].nbytes ? p->outs[i].nbytes : 1);
            if (!p->out_owned[i]) {
                st = nomem(ctx, v->name);
                goto done;
            }
            p->outs[i].data = p->out_owned[i];
        }
    }
done:
    free(bind);
    if (st != ULC_OK) {
        plan_free(p, g);
        return st;
    }
    *out = p;
    return ULC_OK;
}

ulc_status ulc_session_run(ulc_session *s, ulc_ctx *ctx) {
    const ulc_graph *g = s->g;
    rt_plan *p = NULL;
    for (int i = 0; i < s->n_plans; i++)
        if (plan_matches(s, s->plans[i])) p = s->plans[i];
    if (!p) {
        ULC_TRY(make_plan(s, &p, ctx));
        if (s->n_plans == MAX_PLANS) { /* evict the least recently used */
            int lru = 0;
            for (int i = 1; i < s->n_plans; i++)
                if (s->plans[i]->used < s->plans[lru]->used) lru = i;
            plan_free(s->plans[lru], g);
            s->plans[lru] = s->plans[--s->n_plans];
        }
        s->plans[s->n_plans++] = p;
        s->plan_count++;
    }
    int fresh = p->used == 0; /* planned by this call: its run is not profiled */
    p->used = ++s->clock;
    s->cur = p;
    /* bind inputs: user bytes in place, halves converted to float32 into the input's slot */
    for (size_t i = 0; i < g->inputs.len; i++) {
        if (!s->is_bound[i]) continue;
        ulc_value *v = g->inputs.items[i];
        rt_val *rv = &p->vals[v->id];
        if (rv->known == V_CONST && p->key[i].bytes) continue; /* plan-keyed: already there */
        const ulc_rt_tensor *t = &s->bound[i];
        if (ulc_k_compute_dtype(t->dtype) != t->dtype) {
            if (!rv->owned) {
                rv->owned = xaligned(rv->t.nbytes);
                if (!rv->owned) return nomem(ctx, v->name);
            }
            halves_to_f32(t->dtype, t->data, rv->owned, ulc_rt_numel(t));
            rv->t.data = rv->owned;
        } else if (t->data && ((uintptr_t)t->data % ulc_k_dtype_size(t->dtype)) != 0) {
            if (!rv->owned) {
                rv->owned = xaligned(rv->t.nbytes);
                if (!rv->owned) return nomem(ctx, v->name);
            }
            memcpy(rv->owned, t->data, t->nbytes);
            rv->t.data = rv->owned;
        } else {
            rv->t.data = t->data;
        }
    }
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *st = &p->steps[i];
        if (st->k->flags & ULC_K_ALIAS) {
            st->out[0]->data = st->in[0]->data;
            if (alias_only(st->k, st->node)) continue;
        }
        st->kc.err = ctx;
        if (!s->profile || fresh) {
            ULC_TRY(st->k->run(&st->kc));
            continue;
        }
        double t0 = mono_ms();
        ULC_TRY(st->k->run(&st->kc));
        s->node_ms[st->node->id] += mono_ms() - t0;
        s->node_calls[st->node->id]++;
    }
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        rt_val *rv = &p->vals[v->id];
        if (p->out_owned[i]) f32_to_halves(p->outs[i].dtype, rv->t.data, p->out_owned[i], ulc_rt_numel(&rv->t));
        else p->outs[i].data = rv->t.data;
    }
    return ULC_OK;
}

const ulc_rt_tensor *ulc_session_output(const ulc_session *s, const char *name) {
    if (!s->cur) return NULL;
    for (size_t i = 0; i < s->g->outputs.len; i++) {
        ulc_value *v = s->g->outputs.items[i];
        if (strcmp(v->name, name) == 0) return &s->cur->outs[i];
    }
    return NULL;
}

typedef struct prof_row {
    const char *name;
    double ms;
    int64_t calls;
    const ulc_node *node;
} prof_row;

static int by_ms_desc(const void *a, const void *b) {
    const prof_row *x = a, *y = b;
    return (x->ms < y->ms) - (x->ms > y->ms);
}

void ulc_session_profile(const ulc_session *s, FILE *out) {
    if (!s->profile) return;
    const ulc_graph *g = s->g;
    int nn = g->next_node_id;
    prof_row *ops = calloc((size_t)(nn > 0 ? nn : 1), sizeof *ops);
    prof_row *nodes = calloc((size_t)(nn > 0 ? nn : 1), sizeof *nodes);
    if (!ops || !nodes) {
        free(ops);
        free(nodes);
        return;
    }
    int nops = 0, nnodes = 0;
    double total = 0;
    for (const ulc_node *n = g->first; n; n = n->next) {
        if (!s->node_calls[n->id]) continue;
        double ms = s->node_ms[n->id];
        total += ms;
        nodes[nnodes++] = (prof_row){n->op_type, ms, s->node_calls[n->id], n};
        int j = 0;
        while (j < nops && strcmp(ops[j].name, n->op_type) != 0) j++;
        if (j == nops) ops[nops++] = (prof_row){n->op_type, 0, 0, NULL};
        ops[j].ms += ms;
        ops[j].calls += s->node_calls[n->id];
    }
    qsort(ops, (size_t)nops, sizeof *ops, by_ms_desc);
    qsort(nodes, (size_t)nnodes, sizeof *nodes, by_ms_desc);
    fprintf(out, "profile (every run so far, %.3f ms in kernels)\n%-24s %12s %7s %8s %10s\n", total,
            "op", "total ms", "share", "calls", "mean ms");
    for (int i = 0; i < nops; i++)
        fprintf(out, "%-24s %12.3f %6.1f%% %8lld %10.4f\n", ops[i].name, ops[i].ms,
                total > 0 ? 100.0 * ops[i].ms / total : 0.0, (long long)ops[i].calls,
                ops[i].ms / (double)ops[i].calls);
    fprintf(out, "slowest nodes\n");
    for (int i = 0; i < nnodes && i < 10; i++) {
        char label[160];
        fprintf(out, "  %-60s %10.4f ms/call\n", ulc_node_label(nodes[i].node, label, sizeof label),
                nodes[i].ms / (double)nodes[i].calls);
    }
    free(ops);
    free(nodes);
}

int ulc_session_plan_count(const ulc_session *s) { return s->plan_count; }

void ulc_session_memory(const ulc_session *s, size_t *planned, size_t *unshared) {
    *planned = s->cur ? s->cur->arena_size : 0;
    *unshared = s->cur ? s->cur->unshared : 0;
}

/* ---- analysis ------------------------------------------------------------------------------ */

struct ulc_analysis {
    const ulc_graph *g;
    size_t n_vals; /* values and node ids when analysed (the graph may grow afterwards) */
    int n_node_ids;
    rt_val *vals;
    uint8_t *folded;
};

ulc_status ulc_analyze(const ulc_graph *g, int64_t opset, const ulc_rt_binding *inputs,
                       int n_inputs, size_t limit_bytes, ulc_analysis **out, ulc_ctx *ctx) {
    *out = NULL;
    ulc_analysis *a = calloc(1, sizeof *a);
    if (!a) return nomem(ctx, "analysis");
    a->g = g;
    a->n_vals = g->values.len;
    a->n_node_ids = g->next_node_id;
    a->vals = calloc(g->values.len ? g->values.len : 1, sizeof *a->vals);
    a->folded = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), 1);
    if (!a->vals || !a->folded) {
        ulc_analysis_free(a);
        return nomem(ctx, "analysis");
    }
    walk w = {.g = g, .be = ulc_backend_cpu(), .opset = opset < 0 ? 21 : opset, .vals = a->vals,
              .analysis = 1,
              .limit_bytes = limit_bytes, .folded = a->folded, .ctx = ctx};
    ulc_status s = walk_graph(&w, inputs, n_inputs, NULL);
    free(w.steps);
    if (s != ULC_OK) {
        ulc_analysis_free(a);
        return s;
    }
    *out = a;
    return ULC_OK;
}

void ulc_analysis_free(ulc_analysis *a) {
    if (!a) return;
    if (a->vals)
        for (size_t i = 0; i < a->n_vals; i++) free(a->vals[i].owned);
    free(a->vals);
    free(a->folded);
    free(a);
}

int ulc_analysis_get(const ulc_analysis *a, const ulc_value *v, ulc_rt_tensor *t) {
    if ((size_t)v->id >= a->n_vals) return 0; /* created after the analysis */
    const rt_val *rv = &a->vals[v->id];
    if (rv->known == V_UNKNOWN) return 0;
    *t = rv->t;
    if (rv->known != V_CONST) t->data = NULL;
    return 1;
}

int ulc_analysis_folded(const ulc_analysis *a, const ulc_node *n) {
    return n->id < a->n_node_ids && a->folded[n->id] != 0;
}
