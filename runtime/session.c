/*
 * session.c — the session API: a model bound to a backend, plans made per input shapes and
 * thread count (up to MAX_PLANS kept, least recently used evicted), inputs bound, plans run,
 * steps profiled. With the default thread count a session follows the machine's load
 * (follow_load, runtime/threads.h): a changed count makes new plans, as oneDNN fixes a
 * primitive's thread count when it is created.
 *
 * make_plan runs the stages of plan.h in order: the walk, then (unless ULC_NO_FUSION=1)
 * BatchNormalization folding, fusion, chains, compaction and layouts, then placement, then
 * every kernel's prepare (oneDNN primitives, packed constant weights).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file.h"
#include "runtime/plan.h"
#include "runtime/threads.h"

#define MAX_PLANS 4 /* plans kept per session (least recently used goes first) */

struct ulc_session {
    const ulc_model *m;
    const ulc_backend *be;
    void *dev;        /* a device backend's context (be->device->open), or NULL */
    rt_dcache dcache; /* a device backend's uploaded constants, shared by the plans */
    const ulc_graph *g;
    int64_t opset;
    int threads;      /* this run's; plans are made for one count */
    int precision;    /* ULC_PRECISION_* (its steps' kc.precision) */
    int auto_threads; /* the default: follow the load (runtime/threads.h) */
    int pending, pending_seen; /* a different count seen at the last looks */
    double looked_at;  /* monotonic seconds of the last look */
    uint8_t *need_value; /* per value: its bytes decide a shape somewhere (plan-keyed if input) */
    uint8_t *needed;     /* per node id slot: its outputs reach a graph output */
    ulc_rt_tensor *bound; /* per graph input */
    uint8_t *is_bound;    /* per graph input: 0 not bound, 1 host data, 2 a device tensor */
    uint8_t *rebound;     /* per graph input: bound again since the last run */
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

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The process's default device (ulc_runtime_set_default_device): what every session a command
 * makes runs on unless its options say otherwise. */
static struct {
    char backend[16];
    int device, precision;
    char name[384]; /* for reports: "cpu", "cuda:0 (NVIDIA H100 80GB HBM3 (sm_90, 79 GiB))" */
} default_device = {"cpu", 0, 0, "cpu"};

const char *ulc_runtime_device_name(void) { return default_device.name; }

ulc_status ulc_runtime_set_default_device(const char *spec, int precision, ulc_ctx *ctx) {
    int device = 0;
    const char *colon = strchr(spec, ':');
    size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
    if (colon) {
        char *end = NULL;
        long d = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || d < 0 || d > 1024)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "--device %s: expected cpu, cuda or cuda:N", spec);
        device = (int)d;
    }
    if (!((nlen == 3 && strncmp(spec, "cpu", 3) == 0) || (nlen == 4 && strncmp(spec, "cuda", 4) == 0)) ||
        (colon && nlen == 3))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "--device %s: expected cpu, cuda or cuda:N", spec);
    char name[16];
    memcpy(name, spec, nlen);
    name[nlen] = 0;
    if (!ulc_backend_find(name))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--device %s: this ulc was built without the CUDA backend "
                        "(backends: %s)", spec, ulc_backend_names());
    /* fail now, with the reason, rather than at the first session */
    const ulc_backend *be = ulc_backend_find(name);
    const char *prec = precision == ULC_PRECISION_TF32 ? ", tf32" : precision == ULC_PRECISION_BF16 ? ", bf16" : "";
    if (be->device) {
        void *dev = NULL;
        ULC_TRY(be->device->open(device, precision, &dev, ctx));
        snprintf(default_device.name, sizeof default_device.name, "%s:%d (%s)%s", name, device,
                 be->device->describe(dev), prec);
        be->device->close(dev);
    } else {
        if (precision != ULC_PRECISION_FP32 && !be->check_precision)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--precision: the %s backend computes in float32 only", name);
        if (be->check_precision) ULC_TRY(be->check_precision(precision, ctx));
        snprintf(default_device.name, sizeof default_device.name, "%s%s", name, prec);
    }
    memcpy(default_device.backend, name, nlen + 1);
    default_device.device = device;
    default_device.precision = precision;
    return ULC_OK;
}

ulc_session_opts ulc_session_defaults(void) {
    return (ulc_session_opts){.backend = default_device.backend, .threads = 0,
                              .device = default_device.device, .precision = default_device.precision};
}

ulc_status ulc_session_create(const ulc_model *m, const ulc_session_opts *opts, ulc_session **out,
                              ulc_ctx *ctx) {
    *out = NULL;
    ulc_session_opts o = opts ? *opts : ulc_session_defaults();
    const ulc_backend *be = ulc_backend_find(o.backend);
    if (!be)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "unknown backend '%s' (available: %s)", o.backend,
                        ulc_backend_names());
    const ulc_graph *g = m->graph;
    char why[256], label[160];
    /* a device backend's plan folds constant nodes on the host: what the cpu runs is accepted
     * here, and a node that then has to run on the device without a kernel fails at planning */
    for (const ulc_node *n = g->first; n; n = n->next)
        if (!ulc_backend_supports(o.backend, n, why, sizeof why) &&
            !(be->device && ulc_backend_supports("cpu", n, label, sizeof label)))
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: %s", ulc_node_label(n, label, sizeof label), why);
    if (!be->device && o.precision != ULC_PRECISION_FP32) {
        if (!be->check_precision)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "the %s backend computes in float32 only", o.backend);
        ULC_TRY(be->check_precision(o.precision, ctx));
    }
    ulc_session *s = calloc(1, sizeof *s);
    if (!s) return ulc_plan_nomem(ctx, "session");
    s->m = m;
    s->precision = o.precision;
    s->g = g;
    s->be = be;
    if (be->device) {
        ulc_status ds = be->device->open(o.device, o.precision, &s->dev, ctx);
        if (ds != ULC_OK) {
            free(s);
            return ds;
        }
    }
    s->opset = ulc_model_opset(m, "");
    if (s->opset < 0) s->opset = 21;
    s->threads = ulc_threads_pick(o.threads);
    s->auto_threads = o.threads <= 0;
    s->looked_at = mono_ms() / 1e3;
    s->profile = o.profile;
    const char *nf = getenv("ULC_NO_FUSION");
    s->no_fusion = nf && *nf && strcmp(nf, "0") != 0;
    size_t nv = g->values.len ? g->values.len : 1;
    s->need_value = calloc(nv, 1);
    s->needed = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), 1);
    s->bound = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *s->bound);
    s->is_bound = calloc(g->inputs.len ? g->inputs.len : 1, 1);
    s->rebound = calloc(g->inputs.len ? g->inputs.len : 1, 1);
    if (s->profile) {
        s->node_ms = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), sizeof *s->node_ms);
        s->node_calls = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), sizeof *s->node_calls);
    }
    if (!s->need_value || !s->needed || !s->bound || !s->is_bound || !s->rebound ||
        (s->profile && (!s->node_ms || !s->node_calls))) {
        ulc_session_free(s);
        return ulc_plan_nomem(ctx, "session");
    }
    /* Backwards: which values' bytes decide shapes, and which nodes reach an output. */
    uint8_t *live = calloc(nv, 1);
    if (!live) {
        ulc_session_free(s);
        return ulc_plan_nomem(ctx, "session");
    }
    for (size_t i = 0; i < g->outputs.len; i++) live[((ulc_value *)g->outputs.items[i])->id] = 1;
    for (const ulc_node *n = g->last; n; n = n->prev) {
        const ulc_shape_rule *rule = ulc_shape_rule_of(n->op);
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
            if ((need && !(rule->flags & ULC_SHAPE_ONLY)) || (i < 32 && (rule->value_inputs & (1u << i))))
                s->need_value[v->id] = 1;
        }
    }
    free(live);
    be->set_threads(s->threads);
    *out = s;
    return ULC_OK;
}

void ulc_session_free(ulc_session *s) {
    if (!s) return;
    for (int i = 0; i < s->n_plans; i++) ulc_plan_free(s->plans[i], s->g);
    free(s->dcache.e); /* empty: the plans released every upload */
    if (s->dev) s->be->device->close(s->dev);
    free(s->need_value);
    free(s->needed);
    free(s->bound);
    free(s->is_bound);
    free(s->rebound);
    free(s->node_ms);
    free(s->node_calls);
    free(s);
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
        if (!ulc_plan_dtype_ok(ulc_k_compute_dtype(t->dtype)))
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
        s->bound[i].host = NULL; /* a plan's field, never a caller's */
        s->bound[i].nbytes = ulc_rt_numel(t) * ulc_dtype_bits(t->dtype) / 8;
        s->is_bound[i] = 1;
        s->rebound[i] = 1;
        return ULC_OK;
    }
    return ulc_fail(ctx, ULC_ERR_INVALID, "the model has no input named '%s'", name);
}

/* Does plan p fit the bound inputs (shapes, and bytes of plan-keyed inputs)? */
static int plan_matches(const ulc_session *s, const rt_plan *p) {
    const ulc_graph *g = s->g;
    if (p->threads != s->threads) return 0;
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

/* A step's thread count: the plan's, or one when the step is too small for a team to pay. A
 * parallel region costs microseconds to start — more when waiting threads sleep, as they do
 * under ulc (tools/ulc.c) — so a step of about 50 µs or less of single-threaded work runs on one
 * thread. The work is estimated from the shapes: multiply-adds of the products at ~25 GFLOP/s,
 * other ops at a nanosecond per element read or written. Results never depend on the count. */
#define STEP_PARALLEL_NS 50000.0

static double step_work_ns(const rt_step *sp) {
    const ulc_rt_tensor *y = sp->kc.n_out > 0 ? sp->out[0] : NULL;
    const ulc_rt_tensor *a = sp->kc.n_in > 0 ? sp->in[0] : NULL;
    const ulc_rt_tensor *b = sp->kc.n_in > 1 ? sp->in[1] : NULL;
    double ny = y ? (double)ulc_rt_numel(y) : 0, na = a ? (double)ulc_rt_numel(a) : 0;
    double nb = b ? (double)ulc_rt_numel(b) : 0;
    double macs = 0;
    if (!sp->chain) {
        switch (sp->node->op) {
        case ULC_OP_Conv: /* W [M, C/g, k...]: C/g·Πk per output element */
            if (b && b->rank >= 1 && b->dims[0] > 0) macs = ny * nb / (double)b->dims[0];
            break;
        case ULC_OP_ConvTranspose: /* W [C, M/g, k...]: M/g·Πk per input element */
        case ULC_OP_ConvGradData:  /* the forward's products: dy [N, M, ...], W [M, C/g, k...] */
            if (b && b->rank >= 1 && b->dims[0] > 0) macs = na * nb / (double)b->dims[0];
            break;
        case ULC_OP_ConvGradWeight: /* dW [M, C/g, k...] sums N·Πout products each */
            if (y && y->rank >= 1 && y->dims[0] > 0) macs = ny * na / (double)y->dims[0];
            break;
        case ULC_OP_MatMul:
        case ULC_OP_Gemm:
            if (a && a->rank >= 1) {
                int gemm_ta = sp->node->op == ULC_OP_Gemm && ulc_k_attr_int(&sp->kc, "transA", 0);
                int64_t k = a->rank >= 2 && gemm_ta ? a->dims[a->rank - 2] : a->dims[a->rank - 1];
                macs = ny * (double)k;
            }
            break;
        default:
            break;
        }
    }
    double ns = macs * 2.0 / 25.0; /* 25 GFLOP/s: flops / 25 = ns */
    double moved = ny;
    for (int i = 0; i < sp->kc.n_in; i++)
        if (sp->in[i]) moved += (double)ulc_rt_numel(sp->in[i]);
    return ns + moved;
}

static int step_threads(const rt_step *sp, int threads) {
    return threads > 1 && step_work_ns(sp) < STEP_PARALLEL_NS ? 1 : threads;
}

/* A kernel that packed a constant input (a weight copied into its layout, transformed, or
 * folded with a BatchNormalization first) never reads the model's bytes of it again: where they
 * are the mapped file's own, their pages leave the resident set (common/file.h), so a packed
 * weight is held once, not twice. Another step reading the same initializer faults them back. */
static void drop_packed_pages(const rt_step *sp) {
    uint32_t bits = sp->kc.packed_inputs;
    const ulc_node *n = sp->node;
    for (int i = 0; bits && i < n->n_inputs && i < 32; i++) {
        const ulc_value *v = n->inputs[i].value;
        if (!(bits & (1u << i)) || !v) continue;
        const ulc_tensor *t = v->init;
        if ((v->flags & ULC_VALUE_INITIALIZER) && t && t->map)
            ulc_mapping_drop_pages(t->map, t->data, t->nbytes);
    }
}

/* An initializer the plan had to copy (unaligned in its file, or a half type converted), or a
 * constant it folded (an imported linear layer's transposed weight), that only packing steps read is never read again once the last of them is prepared: the copy is
 * freed then, so the weight is held once, in the kernel's layout, and the copies do not pile up
 * while the plan is prepared. Kept when anything else reads it (another step, a fused chain or
 * addend, a view of its bytes, the graph's inputs and outputs). readers[] counts every step's
 * reads of each value (count_readers); packing steps count down. */
static int *count_readers(const rt_plan *p, const ulc_graph *g) {
    int *readers = calloc(g->values.len ? g->values.len : 1, sizeof *readers);
    if (!readers) return NULL; /* only memory is lost */
    for (int i = 0; i < p->n_steps; i++) {
        const rt_step *sp = &p->steps[i];
        const ulc_node *n = sp->node;
        for (int j = 0; j < n->n_inputs; j++)
            if (n->inputs[j].value) readers[n->inputs[j].value->id]++;
        for (int j = 0; j < sp->n_reads; j++) readers[sp->reads[j]->id]++;
        if (sp->addend) readers[sp->addend->id]++;
        if (sp->mask) readers[sp->mask->id]++;
        if (sp->residual) readers[sp->residual->id]++;
    }
    return readers;
}

/* v's owned bytes, if nothing else reads them: not a graph input or output, no other value a view
 * into them. */
static void free_if_unviewed(rt_plan *p, const ulc_graph *g, const ulc_value *v) {
    rt_val *rv = &p->vals[v->id];
    if (!rv->owned || rv->known != V_CONST || (v->flags & (ULC_VALUE_INPUT | ULC_VALUE_OUTPUT))) return;
    const char *lo = rv->owned, *hi = lo + rv->t.nbytes;
    for (size_t o = 0; o < g->values.len; o++) {
        const char *d = p->vals[o].t.data;
        if (o != (size_t)v->id && d && d >= lo && d < hi) return;
    }
    free(rv->owned);
    rv->owned = NULL;
    rv->t.data = NULL;
}

/* Constants the plan made that no step reads: copies only plan-time folding needed (the aligned
 * copy of a weight a Transpose was folded from). */
static void free_unread_constants(rt_plan *p, const ulc_graph *g, const int *readers) {
    if (!readers) return;
    for (size_t id = 0; id < g->values.len; id++)
        if (!readers[id] && p->vals[id].owned && ulc_ptrvec_find(&g->outputs, g->values.items[id]) < 0)
            free_if_unviewed(p, g, g->values.items[id]);
}

static void free_packed_copies(rt_plan *p, const ulc_graph *g, const rt_step *sp, int *readers) {
    const ulc_node *n = sp->node;
    if (!readers || sp->removed) return;
    for (int j = 0; j < n->n_inputs && j < 32; j++) {
        const ulc_value *v = n->inputs[j].value;
        if (!v || !(sp->kc.packed_inputs >> j & 1u) || --readers[v->id] != 0) continue;
        free_if_unviewed(p, g, v); /* an initializer's copy, or a constant folded at plan time */
    }
}

static ulc_status make_plan(ulc_session *s, rt_plan **out, ulc_ctx *ctx) {
    const ulc_graph *g = s->g;
    size_t nv = g->values.len;
    rt_plan *p = calloc(1, sizeof *p);
    if (!p) return ulc_plan_nomem(ctx, "plan");
    p->threads = s->threads;
    p->vals = calloc(nv ? nv : 1, sizeof *p->vals);
    p->key = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *p->key);
    p->outs = calloc(g->outputs.len ? g->outputs.len : 1, sizeof *p->outs);
    p->out_owned = calloc(g->outputs.len ? g->outputs.len : 1, sizeof *p->out_owned);
    ulc_rt_binding *bind = calloc(g->inputs.len ? g->inputs.len : 1, sizeof *bind);
    ulc_status st = ULC_OK;
    if (!p->vals || !p->key || !p->outs || !p->out_owned || !bind) {
        st = ulc_plan_nomem(ctx, "plan");
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
                st = ulc_plan_nomem(ctx, v->name);
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
    p->dops = s->be->device;
    p->dev = s->dev;
    p->dcache = &s->dcache;
    rt_walk w = {.g = g, .be = s->be, .opset = s->opset, .vals = p->vals, .needed = s->needed,
                 .precision = s->precision, .ctx = ctx};
    st = ulc_plan_walk(&w, bind, nb, s->need_value);
    p->steps = w.steps;
    p->n_steps = w.n_steps;
    if (st != ULC_OK) goto done;
    if (!s->no_fusion) {
        if ((st = ulc_plan_fold_batchnorms(p, g, ctx)) != ULC_OK) goto done;
        if ((st = ulc_plan_fuse_steps(p, g, s->opset, ctx)) != ULC_OK) goto done;
        if ((st = ulc_plan_fuse_attention(p, g, ctx)) != ULC_OK) goto done;
        if (p->be->chain_kernel && (st = ulc_plan_fuse_chains(p, g, ctx)) != ULC_OK) goto done;
        ulc_plan_compact(p);
        ulc_plan_choose_layouts(p, g);
    }
    st = ulc_plan_place(p, g, ctx);
    if (st != ULC_OK) goto done;
    int *readers = count_readers(p, g);
    free_unread_constants(p, g, readers);
    if (p->dops && (st = ulc_plan_upload_constants(p, g, ctx)) != ULC_OK) {
        free(readers);
        goto done;
    }
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *sp = &p->steps[i];
        sp->kc.threads = step_threads(sp, s->threads);
        sp->kc.precision = s->precision;
        s->be->set_threads(sp->kc.threads); /* oneDNN fixes a primitive's split when created */
        if (sp->k->prepare && sp->alias != 2) {
            st = sp->k->prepare(&sp->kc);
            if (st != ULC_OK) {
                /* whatever a failed prepare kept is released here, as plan-time folding does */
                if (sp->k->release) sp->k->release(sp->kc.state);
                sp->kc.state = NULL;
                free(readers);
                goto done;
            }
        }
        sp->prepared = 1;
        if (sp->fold && (sp->kc.packed_inputs & 2u) && !p->dops) {
            /* the folded W was packed into the kernel: only its bias is read from here on */
            free(sp->fold->w.data);
            sp->fold->w.data = NULL;
        }
        drop_packed_pages(sp);
        if (!p->dops) free_packed_copies(p, g, sp, readers); /* device constants keep their host bytes */
    }
    free(readers);
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
        p->outs[i].host = NULL;
        if (p->dops) p->outs[i].data = p->out_host[i];
        if ((v->flags & ULC_VALUE_HAS_TYPE) && ulc_k_compute_dtype(v->dtype) != v->dtype &&
            rv->t.dtype == ULC_DT_F32) {
            p->outs[i].dtype = v->dtype;
            p->outs[i].nbytes = ulc_rt_numel(&rv->t) * 2;
            p->out_owned[i] = malloc(p->outs[i].nbytes ? p->outs[i].nbytes : 1);
            if (!p->out_owned[i]) {
                st = ulc_plan_nomem(ctx, v->name);
                goto done;
            }
            p->outs[i].data = p->out_owned[i];
        }
    }
done:
    free(bind);
    if (st != ULC_OK) {
        ulc_plan_free(p, g);
        return st;
    }
    *out = p;
    return ULC_OK;
}

/* The default thread count follows the load: looked at twice a second at most, and changed when
 * two looks in a row agree on another count. Plans made for the old count are dropped (the
 * results do not depend on it; their memory is better given back). */
static void follow_load(ulc_session *s) {
    double now = mono_ms() / 1e3;
    if (now - s->looked_at < 0.5 && !ulc_threads_test_picks()) return;
    s->looked_at = now;
    int t = ulc_threads_pick(0);
    if (t == s->threads) {
        s->pending_seen = 0;
        return;
    }
    if (t != s->pending) {
        s->pending = t;
        s->pending_seen = 1;
        return;
    }
    if (++s->pending_seen < 2) return;
    s->threads = t;
    s->pending_seen = 0;
    for (int i = 0; i < s->n_plans;) {
        if (s->plans[i]->threads != t) {
            if (s->cur == s->plans[i]) s->cur = NULL;
            ulc_plan_free(s->plans[i], s->g);
            s->plans[i] = s->plans[--s->n_plans];
        } else {
            i++;
        }
    }
}

ulc_status ulc_session_run(ulc_session *s, ulc_ctx *ctx) {
    const ulc_graph *g = s->g;
    rt_plan *p = NULL;
    if (s->auto_threads && !s->be->device) follow_load(s); /* a device's plans do not depend on it */
    s->be->set_threads(s->threads); /* another session may have run on another count since */
    for (int i = 0; i < s->n_plans; i++)
        if (plan_matches(s, s->plans[i])) p = s->plans[i];
    if (!p) {
        ULC_TRY(make_plan(s, &p, ctx));
        if (s->n_plans == MAX_PLANS) { /* evict the least recently used */
            int lru = 0;
            for (int i = 1; i < s->n_plans; i++)
                if (s->plans[i]->used < s->plans[lru]->used) lru = i;
            ulc_plan_free(s->plans[lru], g);
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
        if (s->is_bound[i] == 2) { /* another session's device tensor (set_input_device) */
            rv->t.data = t->data;
            continue;
        }
        if (ulc_k_compute_dtype(t->dtype) != t->dtype) {
            if (!rv->owned) {
                rv->owned = ulc_plan_alloc(rv->t.nbytes);
                if (!rv->owned) return ulc_plan_nomem(ctx, v->name);
            }
            ulc_plan_halves_to_f32(t->dtype, t->data, rv->owned, ulc_rt_numel(t));
            rv->t.data = rv->owned;
        } else if (t->data && ((uintptr_t)t->data % ulc_k_dtype_size(t->dtype)) != 0) {
            if (!rv->owned) {
                rv->owned = ulc_plan_alloc(rv->t.nbytes);
                if (!rv->owned) return ulc_plan_nomem(ctx, v->name);
            }
            memcpy(rv->owned, t->data, t->nbytes);
            rv->t.data = rv->owned;
        } else {
            rv->t.data = t->data;
        }
    }
    if (p->dops) {
        memset(p->out_fresh, 0, g->outputs.len ? g->outputs.len : 1); /* a failed run serves nothing old */
        ULC_TRY(p->dops->enter(p->dev, ctx));
        ULC_TRY(ulc_plan_upload_inputs(p, g, s->bound, s->is_bound, ctx));
    }
    memset(s->rebound, 0, g->inputs.len ? g->inputs.len : 1);
    int cur_threads = -1;
    for (int i = 0; i < p->n_steps; i++) {
        rt_step *st = &p->steps[i];
        if (st->alias) {
            st->out[0]->data = st->in[0]->data;
            if (st->alias == 2) continue; /* nothing but the view */
        }
        st->kc.err = ctx;
        if (st->kc.threads != cur_threads) {
            cur_threads = st->kc.threads;
            s->be->set_threads(cur_threads);
        }
        if (!s->profile || fresh) {
            ULC_TRY(st->k->run(&st->kc));
            continue;
        }
        double t0 = mono_ms();
        ULC_TRY(st->k->run(&st->kc));
        if (p->dops) ULC_TRY(p->dops->sync(p->dev, ctx)); /* the step's own time */
        s->node_ms[st->node->id] += mono_ms() - t0;
        s->node_calls[st->node->id]++;
    }
    if (cur_threads != s->threads) s->be->set_threads(s->threads); /* for work between runs */
    if (p->dops) {
        /* the stream is done (another session may read this one's device tensors next); the
         * outputs come back to the host when asked for (ulc_session_output) */
        ULC_TRY(p->dops->sync(p->dev, ctx));
        memset(p->out_fresh, 0, g->outputs.len ? g->outputs.len : 1);
        return ULC_OK;
    }
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        rt_val *rv = &p->vals[v->id];
        if (p->out_owned[i]) ulc_plan_f32_to_halves(p->outs[i].dtype, rv->t.data, p->out_owned[i], ulc_rt_numel(&rv->t));
        else p->outs[i].data = rv->t.data;
    }
    return ULC_OK;
}

const ulc_rt_tensor *ulc_session_output(const ulc_session *s, const char *name) {
    rt_plan *p = s->cur;
    if (!p) return NULL;
    for (size_t i = 0; i < s->g->outputs.len; i++) {
        ulc_value *v = s->g->outputs.items[i];
        if (strcmp(v->name, name) != 0) continue;
        if (p->dops && !p->out_fresh[i]) { /* a device plan's output: copied back once per run */
            ulc_ctx c;
            ulc_ctx_init(&c);
            const rt_val *rv = &p->vals[v->id];
            ulc_status st = ulc_plan_download_output(p, s->g, i, &c);
            ulc_ctx_clear(&c);
            if (st != ULC_OK) return NULL;
            if (p->out_owned[i])
                ulc_plan_f32_to_halves(p->outs[i].dtype, p->out_host[i], p->out_owned[i], ulc_rt_numel(&rv->t));
            p->out_fresh[i] = 1;
        }
        return &p->outs[i];
    }
    return NULL;
}

const ulc_rt_tensor *ulc_session_output_device(const ulc_session *s, const char *name) {
    rt_plan *p = s->cur;
    if (!p || !p->dops) return NULL;
    for (size_t i = 0; i < s->g->outputs.len; i++) {
        ulc_value *v = s->g->outputs.items[i];
        if (strcmp(v->name, name) != 0) continue;
        const rt_val *rv = &p->vals[v->id];
        /* a constant output (uploaded or not) or an unbound input's default: ulc_session_output
         * gives it; only what the run computed, or a bound input, is on the device */
        if (rv->known == V_CONST || rv->t.host || !rv->t.data) return NULL;
        p->out_dev[i] = rv->t;
        p->out_dev[i].host = NULL;
        return &p->out_dev[i];
    }
    return NULL;
}

const ulc_rt_tensor *ulc_session_input_device(const ulc_session *s, const char *name) {
    rt_plan *p = s->cur;
    if (!s->be->device) return NULL;
    for (size_t i = 0; i < s->g->inputs.len; i++) {
        ulc_value *v = s->g->inputs.items[i];
        if (strcmp(v->name, name) != 0 || !s->is_bound[i]) continue;
        if (s->is_bound[i] == 2) return &s->bound[i]; /* bound to a device tensor */
        if (!p || s->rebound[i]) return NULL;         /* the last run read other bytes */
        const rt_val *rv = &p->vals[v->id];
        if (rv->known == V_CONST) return NULL; /* plan-keyed: a constant of the plan */
        p->in_dev[i] = rv->t;
        p->in_dev[i].host = NULL;
        return &p->in_dev[i];
    }
    return NULL;
}

int ulc_session_on_device(const ulc_session *s) { return s->be->device != NULL; }

void *ulc_session_device_alloc(ulc_session *s, size_t bytes) {
    return s->be->device ? s->be->device->alloc(s->dev, bytes) : NULL;
}

void ulc_session_device_free(ulc_session *s, void *p) {
    if (s->be->device) s->be->device->free(s->dev, p);
}

static ulc_status need_device(const ulc_session *s, ulc_ctx *ctx) {
    if (s->be->device) return s->be->device->enter(s->dev, ctx); /* its device, current */
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "device memory asked of a session on the %s", s->be->name);
}

ulc_status ulc_session_device_upload(ulc_session *s, void *dst, const void *src, size_t bytes,
                                     ulc_ctx *ctx) {
    ULC_TRY(need_device(s, ctx));
    return s->be->device->upload(s->dev, dst, src, bytes, ctx);
}

ulc_status ulc_session_device_download(ulc_session *s, void *dst, const void *src, size_t bytes,
                                       ulc_ctx *ctx) {
    ULC_TRY(need_device(s, ctx));
    return s->be->device->download(s->dev, dst, src, bytes, ctx);
}

ulc_status ulc_session_device_copy(ulc_session *s, void *dst, const void *src, size_t bytes,
                                   ulc_ctx *ctx) {
    ULC_TRY(need_device(s, ctx));
    return s->be->device->copy(s->dev, dst, src, bytes, ctx);
}

ulc_status ulc_session_device_zero(ulc_session *s, void *dst, size_t bytes, ulc_ctx *ctx) {
    ULC_TRY(need_device(s, ctx));
    return s->be->device->zero(s->dev, dst, bytes, ctx);
}

ulc_status ulc_session_device_optim(ulc_session *s, const ulc_rt_optim *o, float *p, const float *g,
                                    float *m, float *v, size_t n, ulc_ctx *ctx) {
    ULC_TRY(need_device(s, ctx));
    return s->be->device->optim(s->dev, o, p, g, m, v, n, ctx);
}

ulc_status ulc_session_device_gather_rows(ulc_session *s, void *dst, const void *src, size_t row_bytes,
                                          const int64_t *idx, int64_t n, ulc_ctx *ctx) {
    ULC_TRY(need_device(s, ctx));
    return s->be->device->gather_rows(s->dev, dst, src, row_bytes, idx, n, ctx);
}

ulc_status ulc_session_device_count_nonfinite(ulc_session *s, const float *x, size_t n,
                                              unsigned *count, ulc_ctx *ctx) {
    ULC_TRY(need_device(s, ctx));
    return s->be->device->count_nonfinite(s->dev, x, n, count, ctx);
}

int ulc_session_input_decides_shapes(const ulc_session *s, const char *name) {
    for (size_t i = 0; i < s->g->inputs.len; i++) {
        const ulc_value *v = s->g->inputs.items[i];
        if (strcmp(v->name, name) == 0) return s->need_value[v->id] != 0;
    }
    return 0;
}

ulc_status ulc_session_set_input_device(ulc_session *s, const char *name, const ulc_rt_tensor *t,
                                        ulc_ctx *ctx) {
    if (!s->be->device)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "input '%s': a device tensor given to a session on "
                        "the %s", name, s->be->name);
    if (ulc_session_input_decides_shapes(s, name))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "input '%s' decides shapes: its bytes must be "
                        "given from the host", name);
    if (ulc_k_compute_dtype(t->dtype) != t->dtype)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "input '%s': a device tensor cannot be %s (float16 "
                        "and bfloat16 inputs are converted on the host)", name, ulc_dtype_name(t->dtype));
    ULC_TRY(ulc_session_set_input(s, name, t, ctx)); /* checked before: never bound as host bytes */
    for (size_t i = 0; i < s->g->inputs.len; i++)
        if (strcmp(((ulc_value *)s->g->inputs.items[i])->name, name) == 0) s->is_bound[i] = 2;
    return ULC_OK;
}

ulc_status ulc_session_device_sync(ulc_session *s, ulc_ctx *ctx) {
    ULC_TRY(need_device(s, ctx));
    return s->be->device->sync(s->dev, ctx);
}

size_t ulc_session_device_free_bytes(ulc_session *s) {
    return s->be->device ? s->be->device->free_bytes(s->dev) : 0;
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
    fprintf(out, "profile (every run so far, %.3f ms in kernels, %d thread%s)\n%-24s %12s %7s %8s %10s\n",
            total, s->threads, s->threads == 1 ? "" : "s", "op", "total ms", "share", "calls", "mean ms");
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

ulc_status ulc_session_set_f32(ulc_session *s, const char *name, float *data, int rank,
                               const int64_t *dims, ulc_ctx *ctx) {
    ulc_rt_tensor t = {.dtype = ULC_DT_F32, .rank = rank, .data = data};
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)(t.dims[i] = dims[i]);
    t.nbytes = n * sizeof(float);
    return ulc_session_set_input(s, name, &t, ctx);
}
