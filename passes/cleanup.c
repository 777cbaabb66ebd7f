/*
 * cleanup.c — constant folding and dead-code removal.
 *
 *   cleanup{limit=BYTES}
 *
 * A node whose inputs are all constants (initializers, Constant nodes, and what follows from
 * them — with the shapes the graph declares, Shape nodes too) is evaluated by the CPU runtime's
 * kernels and replaced by an initializer, when its result is at most `limit` bytes (default
 * 64 KiB: shape vectors and scalars fold, a weight is never duplicated). Identity nodes are
 * bypassed. Nodes whose results nothing reads are removed, and so are the constants ulc made
 * that nothing reads any more; the model's own weights always stay.
 */
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "passes/pass.h"
#include "runtime/runtime.h"

/* Does the model compute in half precision anywhere? (The runtime computes halves as float32,
 * so a folded float32 result may stand for a float16 value when its type is not declared.) */
int ulc_graph_has_halves(const ulc_graph *g) {
    for (size_t i = 0; i < g->values.len; i++) {
        const ulc_value *v = g->values.items[i];
        if ((v->flags & ULC_VALUE_HAS_TYPE) && (v->dtype == ULC_DT_F16 || v->dtype == ULC_DT_BF16)) return 1;
        if (v->init && (v->init->dtype == ULC_DT_F16 || v->init->dtype == ULC_DT_BF16)) return 1;
    }
    for (const ulc_node *n = g->first; n; n = n->next)
        for (int i = 0; i < n->n_attrs; i++) {
            const ulc_attr *a = &n->attrs[i];
            if (a->type == ULC_ATTR_INT && strcmp(a->name, "to") == 0 &&
                (a->i == ULC_DT_F16 || a->i == ULC_DT_BF16))
                return 1;
            if (a->type == ULC_ATTR_TENSOR && a->t &&
                (a->t->dtype == ULC_DT_F16 || a->t->dtype == ULC_DT_BF16))
                return 1;
        }
    return 0;
}

static int is_graph_output(const ulc_graph *g, const ulc_value *v) {
    return (v->flags & ULC_VALUE_OUTPUT) || ulc_ptrvec_find(&g->outputs, v) >= 0;
}

int ulc_prune_dead(ulc_model *m) {
    ulc_graph *g = m->graph;
    int removed = 0;
    for (ulc_node *n = g->last, *prev; n; n = prev) {
        prev = n->prev;
        int used = 0;
        for (int i = 0; i < n->n_outputs && !used; i++) {
            const ulc_value *v = n->outputs[i];
            used = v && (ulc_value_num_uses(v) > 0 || is_graph_output(g, v));
        }
        if (!used) {
            ulc_graph_remove_node(g, n);
            removed++;
        }
    }
    /* constants ulc made that nothing reads; and value_info of values that no longer exist */
    for (size_t i = g->inits.len; i-- > 0;) {
        ulc_value *v = g->inits.items[i];
        if (!(v->flags & ULC_VALUE_CONSTANT) || ulc_value_num_uses(v) > 0 || is_graph_output(g, v) ||
            (v->flags & ULC_VALUE_INPUT))
            continue;
        ulc_ptrvec_remove(&g->inits, v);
        v->flags &= ~(uint32_t)(ULC_VALUE_INITIALIZER | ULC_VALUE_CONSTANT);
        v->init = NULL;
    }
    for (size_t i = g->value_info.len; i-- > 0;) {
        ulc_value *v = g->value_info.items[i];
        if (!v->producer && !(v->flags & (ULC_VALUE_INITIALIZER | ULC_VALUE_INPUT))) {
            ulc_ptrvec_remove(&g->value_info, v);
            v->flags &= ~(uint32_t)ULC_VALUE_VALUE_INFO;
        }
    }
    return removed;
}

/* The bytes of a folded value in the dtype the graph has for it. */
static ulc_status folded_tensor(ulc_graph *g, ulc_value *v, const ulc_rt_tensor *t, int dtype,
                                ulc_tensor **out, ulc_ctx *ctx) {
    ulc_tensor *tt = ulc_tensor_new(g, v->name, dtype, t->rank, t->dims, ctx);
    if (!tt) return ctx->status;
    uint64_t n = ulc_rt_numel(t);
    size_t nbytes = dtype == t->dtype ? t->nbytes : (size_t)n * 2;
    void *d = malloc(nbytes ? nbytes : 1);
    if (!d) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (folding '%s')", v->name);
    if (dtype == t->dtype) {
        if (nbytes) memcpy(d, t->data, nbytes);
    } else { /* a half value computed as float32 */
        const float *f = t->data;
        uint8_t *p = d;
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = dtype == ULC_DT_F16 ? ulc_f32_to_f16(f[i]) : ulc_f32_to_bf16(f[i]);
            p[2 * i] = (uint8_t)h;
            p[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
    ULC_TRY(ulc_tensor_set_owned(g, tt, d, nbytes, ctx));
    *out = tt;
    return ULC_OK;
}

ulc_status ulc_fold_and_prune(ulc_model *m, const ulc_analysis *a, int *removed, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    int halves = ulc_graph_has_halves(g);
    uint8_t *drop = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), 1);
    if (!drop) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    /* which folded nodes can go: every output's dtype must be certain */
    for (ulc_node *n = g->first; n; n = n->next) {
        if (!ulc_analysis_folded(a, n)) continue;
        int ok = 1;
        for (int i = 0; i < n->n_outputs && ok; i++) {
            ulc_value *v = n->outputs[i];
            ulc_rt_tensor t;
            if (!v) continue;
            if (!ulc_analysis_get(a, v, &t) || !t.data) ok = 0;
            else if (t.dtype == ULC_DT_F32 && halves && !(v->flags & ULC_VALUE_HAS_TYPE)) ok = 0;
        }
        drop[n->id] = (uint8_t)ok;
    }
    ulc_status s = ULC_OK;
    int count = 0;
    for (ulc_node *n = g->first, *next; n && s == ULC_OK; n = next) {
        next = n->next;
        if (!drop[n->id]) continue;
        /* outputs something kept still reads become initializers */
        ulc_tensor *keep[64] = {0};
        for (int i = 0; i < n->n_outputs && i < 64 && s == ULC_OK; i++) {
            ulc_value *v = n->outputs[i];
            if (!v) continue;
            int read = is_graph_output(g, v);
            for (const ulc_use *u = v->first_use; u && !read; u = u->next) read = !drop[u->node->id];
            if (!read) continue;
            ulc_rt_tensor t;
            ulc_analysis_get(a, v, &t);
            int dtype = (v->flags & ULC_VALUE_HAS_TYPE) ? v->dtype : t.dtype;
            if (dtype != t.dtype && !(t.dtype == ULC_DT_F32 && (dtype == ULC_DT_F16 || dtype == ULC_DT_BF16)))
                dtype = t.dtype;
            s = folded_tensor(g, v, &t, dtype, &keep[i], ctx);
        }
        if (s != ULC_OK) break;
        ulc_graph_remove_node(g, n);
        count++;
        for (int i = 0; i < n->n_outputs && i < 64 && s == ULC_OK; i++) {
            if (!keep[i]) continue;
            s = ulc_value_set_init(g, n->outputs[i], keep[i], ctx);
            n->outputs[i]->flags |= ULC_VALUE_CONSTANT;
        }
    }
    free(drop);
    if (s != ULC_OK) return s;
    count += ulc_prune_dead(m);
    if (removed) *removed = count;
    return ULC_OK;
}

/* Bypasses Identity nodes: readers of the output read the input instead (unless the output is
 * a graph output, whose name must stay). */
static void bypass_identities(ulc_graph *g) {
    for (ulc_node *n = g->first; n; n = n->next) {
        if (n->op != ULC_OP_Identity || n->n_inputs != 1 || n->n_outputs != 1) continue;
        ulc_value *in = n->inputs[0].value, *out = n->outputs[0];
        if (!in || !out || is_graph_output(g, out)) continue;
        while (out->first_use) {
            ulc_use *u = out->first_use;
            ulc_node_set_input(u->node, u->slot, in);
        }
    }
}

static const ulc_pass_optdef k_cleanup_opts[] = {
    {.key = "limit", .kind = ULC_OPT_INT, .ilo = 0, .ihi = 1LL << 40,
     .help = "fold results up to this many bytes (65536)"},
    {0}};

static ulc_status run_cleanup(ulc_model *m, const ulc_pass_opts *o, ulc_pass_ctx *pc,
                              ulc_ctx *ctx) {
    (void)pc;
    long long limit = ulc_pass_opt_i(o, "limit", 65536);
    bypass_identities(m->graph);
    ulc_analysis *a = NULL;
    ulc_status st = ulc_analyze(m->graph, ulc_model_opset(m, ""), NULL, 0, (size_t)limit, &a, ctx);
    if (st != ULC_OK) return ulc_fail(ctx, st, "pass cleanup");
    ulc_status s = ulc_fold_and_prune(m, a, NULL, ctx);
    ulc_analysis_free(a);
    return s;
}

const ulc_pass ulc_pass_cleanup = {
    .name = "cleanup",
    .opts = k_cleanup_opts,
    .summary = "fold constant subgraphs (results up to limit bytes), bypass Identity, remove dead nodes",
    .run = run_cleanup,
};
