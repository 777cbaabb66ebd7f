/*
 * lora_inject.c — the lora-inject and lora-merge passes: LoRA adapters put into a graph as
 * trainable initializers and ordinary ONNX nodes, and folded back into the base weights.
 *
 * lora-inject adds, for every selected Conv / Gemm / MatMul node with a float weight
 * initializer (f32, f16 or bf16; the factors are float32 either way, so the node's input must
 * be float32, as in ulc's Hugging Face graphs), the branch ir/lora.h describes
 * (y = base(x) + scale * B(A(x))), named after the PEFT module the weight belongs to, and
 * records it (ulc_model.lora, metadata "ulc.lora"):
 *
 *     before:  y = MatMul(x, W)                                         (y: read by consumers)
 *     after:   M.base_layer.output = MatMul(x, W)                       (same node, same W)
 *              y = Add(M.base_layer.output,
 *                      Mul(MatMul(MatMul(x, M.lora_A.weight), M.lora_B.weight), M.lora_scaling))
 *
 * The module name is the weight's name without ".weight" (torch's Conv/Gemm weights, HF
 * checkpoints), else the node's torch scope ("/encoder/layer.0/attention/query/MatMul" ->
 * "encoder.layer.0.attention.query", "/layer1/layer1.0/conv1/Conv" -> "layer1.0.conv1": torch
 * repeats the parent in a numbered child's scope). Factors start as PEFT's do: B = 0 and A
 * kaiming-uniform (U(-1/sqrt(fan_in), 1/sqrt(fan_in))); init=random draws B the same way (PEFT's
 * init_lora_weights=False). The generator is splitmix64 seeded per module from seed and the
 * module's name, so a module's factors do not depend on which other modules were selected.
 *
 * lora-merge folds every recorded branch into its base weight with passes/lora_merge.c's
 * arithmetic (W += scale * B @ A in the weight's layout, computed in float32 and rounded once,
 * to nearest even, into W's dtype: f16 and bf16 weights stay half) — the same bits
 * `ulc merge` gives for the emitted PEFT adapter — removes the branch and gives the base node
 * its output back, so the graph has its original nodes, names and order again. A branch whose
 * B (or A) is all zeros leaves the weight untouched (bit for bit: no -0.0 turns into +0.0).
 *
 * A tied head (GPT-2's lm_head: MatMul(x, Transpose(wte)) whose weight is otherwise only the table
 * of Gathers, the input embedding) is adapted when chosen by name (nodes=, placement=rfa,
 * include=; never by "every linear"), named after the node's scope ("lm_head"). Its
 * merge cannot go into the shared weight — the input embedding would change with it — so it goes
 * into a copy named after the module ("lm_head.weight") that the Transpose reads from then on,
 * and a Hugging Face config (metadata "ulc.hf_config") gets tie_word_embeddings false, so
 * transformers loads the merged head as its own weight and the embeddings as they were.
 */
#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"
#include "ir/builder.h"
#include "ir/lora.h"
#include "passes/lora_merge.h"
#include "passes/lora_placement.h"
#include "passes/pass.h"

#define PASS "lora-inject"

enum { T_CONV = 1, T_GEMM = 2, T_MATMUL = 4 };

typedef struct glob_list {
    int n;
    char **pat;
    char *buf; /* the option's copy; pat[] point into it */
} glob_list;

typedef struct inject_opts {
    int targets;       /* T_* mask */
    glob_list include, exclude;
    glob_list nodes;   /* base node names (nodes=), e.g. RFA's default placement */
    int rank;
    double alpha;
    int rslora;
    uint64_t seed;
    int random_b;      /* init=random */
} inject_opts;

static void glob_free(glob_list *l) {
    free(l->pat);
    free(l->buf);
    memset(l, 0, sizeof *l);
}

static ulc_status glob_parse(const char *v, const char *key, glob_list *l, ulc_ctx *ctx) {
    memset(l, 0, sizeof *l);
    if (!v) return ULC_OK;
    size_t cap = 1;
    for (const char *c = v; *c; c++) cap += *c == '|';
    l->buf = strdup(v);
    l->pat = calloc(cap, sizeof *l->pat);
    if (!l->buf || !l->pat) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    char *save = NULL;
    for (char *p = strtok_r(l->buf, "|", &save); p; p = strtok_r(NULL, "|", &save))
        l->pat[l->n++] = p;
    if (!l->n)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s=%s: expected module name "
                        "patterns separated by '|'", PASS, key, v);
    return ULC_OK;
}

static int glob_any(const glob_list *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (fnmatch(l->pat[i], s, 0) == 0) return 1;
    return 0;
}

static const char *const k_init_names[] = {"peft", "random", NULL};
static const char *const k_placements[] = {"all", "rfa", NULL};

static ulc_status parse_targets(const char *t, inject_opts *io, ulc_ctx *ctx) {
    if (!t) {
        io->targets = T_CONV | T_GEMM | T_MATMUL;
        return ULC_OK;
    }
    char *copy = strdup(t), *save = NULL;
    if (!copy) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (char *p = strtok_r(copy, "|", &save); p; p = strtok_r(NULL, "|", &save)) {
        int bit = strcmp(p, "Conv") == 0 ? T_CONV : strcmp(p, "Gemm") == 0 ? T_GEMM
                : strcmp(p, "MatMul") == 0 ? T_MATMUL : 0;
        if (!bit) {
            ulc_status s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option targets=%s: "
                                    "unknown op type '%s' (expected Conv, Gemm and/or MatMul, "
                                    "separated by '|')", PASS, t, p);
            free(copy);
            return s;
        }
        io->targets |= bit;
    }
    free(copy);
    if (!io->targets)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option targets=%s: no op type "
                        "given (expected Conv, Gemm and/or MatMul)", PASS, t);
    return ULC_OK;
}

/* placement=rfa: the nodes RFA's paper adapts (lora_placement.h), as a nodes= list. */
static ulc_status rfa_placement(const ulc_model *m, const ulc_pass_opts *o, char **nodes,
                                ulc_ctx *ctx) {
    static const char *const own[] = {"targets", "include", "exclude", "nodes"};
    for (size_t k = 0; k < sizeof own / sizeof *own; k++)
        if (ulc_pass_opt_find(o, own[k]))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option placement=rfa chooses the "
                            "layers itself; it does not go with %s=", PASS, own[k]);
    int count = 0;
    return ulc_lora_rfa_nodes(m, nodes, &count, ctx);
}

static ulc_status parse_inject_opts(const ulc_model *m, const ulc_pass_opts *o,
                                    const ulc_pass_ctx *pc, inject_opts *io, ulc_ctx *ctx) {
    memset(io, 0, sizeof *io);
    ULC_TRY(parse_targets(ulc_pass_opt_str(o, "targets", NULL), io, ctx));
    io->rank = (int)ulc_pass_opt_i(o, "rank", 8);
    io->rslora = (int)ulc_pass_opt_i(o, "rslora", 0);
    io->seed = (uint64_t)ulc_pass_opt_i(o, "seed", (long long)(pc->seed & INT64_MAX));
    io->alpha = ulc_pass_opt_num(o, "alpha", io->rank);
    io->random_b = strcmp(ulc_pass_opt_str(o, "init", "peft"), "random") == 0;
    const char *nodes = ulc_pass_opt_str(o, "nodes", NULL);
    char *placed = NULL;
    if (strcmp(ulc_pass_opt_str(o, "placement", "all"), "rfa") == 0) {
        ULC_TRY(rfa_placement(m, o, &placed, ctx));
        nodes = placed;
    }
    ulc_status s = glob_parse(nodes, "nodes", &io->nodes, ctx);
    free(placed);
    ULC_TRY(s);
    ULC_TRY(glob_parse(ulc_pass_opt_str(o, "include", NULL), "include", &io->include, ctx));
    return glob_parse(ulc_pass_opt_str(o, "exclude", NULL), "exclude", &io->exclude, ctx);
}

/* ---- seeded initialisation ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t module_stream(uint64_t seed, const char *module) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)module; *c; c++)
        h = (h ^ *c) * 0x100000001b3ull;
    uint64_t s = seed ^ h;
    splitmix64(&s);
    return s;
}

/* n values uniform in [-bound, bound) (24-bit resolution, as a float draws). */
static void fill_uniform(float *p, uint64_t n, double bound, uint64_t *state) {
    for (uint64_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(state) >> 40) * (1.0 / 16777216.0);
        p[i] = (float)((2.0 * u - 1.0) * bound);
    }
}

/* ---- selection ------------------------------------------------------------------------------ */

/* A node to adapt. */
typedef struct target {
    ulc_node *node;
    ulc_value *w;       /* the weight initializer */
    ulc_lora_kind kind;
    char *module;       /* malloc'd */
    int64_t in, out;    /* linear: features; conv: C and out channels */
    int64_t fan_in;     /* A's fan-in for the kaiming bound */
    double gemm_alpha;  /* Gemm's alpha (the branch is scaled by it too); 1 otherwise */
    int peft_ok;
    int skip;           /* dropped after selection (a duplicate module name) */
} target;

static int is_lora_factor(const ulc_model *m, const ulc_value *v) {
    for (size_t i = 0; i < m->lora.len; i++) {
        const ulc_lora_record *r = m->lora.items[i];
        if (!r->merged && (strcmp(r->a, v->name) == 0 || strcmp(r->b, v->name) == 0)) return 1;
    }
    return 0;
}

static const ulc_attr *attr_of(const ulc_node *n, const char *name) { return ulc_node_attr(n, name); }

static int64_t attr_int(const ulc_node *n, const char *name, int64_t def) {
    const ulc_attr *a = attr_of(n, name);
    return a && a->type == ULC_ATTR_INT ? a->i : def;
}

typedef struct skips {
    int n;
    char lines[32][512]; /* the first ones, for the summary */
} skips;

static void note_skip(skips *sk, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void note_skip(skips *sk, const char *fmt, ...) {
    if (sk->n < 32) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sk->lines[sk->n], sizeof sk->lines[0], fmt, ap);
        va_end(ap);
    }
    sk->n++;
}

static int is_float(int dt) { return dt == ULC_DT_F32 || dt == ULC_DT_F16 || dt == ULC_DT_BF16; }

/* A tied output embedding: w read by the head's Transpose and otherwise only as the table of
 * Gathers (the input embedding, tie_word_embeddings). */
static int tied_head(const ulc_value *w, const ulc_node *transpose) {
    int gathers = 0;
    for (const ulc_use *u = w->first_use; u; u = u->next) {
        if (u->node == transpose) continue;
        if (u->node->op != ULC_OP_Gather || u->slot != 0) return 0;
        gathers++;
    }
    return gathers > 0;
}

/* Decides whether n is a target; fills t. Returns 1 for a target, 0 for not (noted in sk when
 * the user might have expected it), or an error through *err. */
static int select_node(ulc_model *m, ulc_node *n, const inject_opts *io, target *t, skips *sk,
                       ulc_status *err, ulc_ctx *ctx) {
    memset(t, 0, sizeof *t);
    *err = ULC_OK;
    int bit = n->op == ULC_OP_Conv ? T_CONV : n->op == ULC_OP_Gemm ? T_GEMM
            : n->op == ULC_OP_MatMul ? T_MATMUL : 0;
    if (!(bit & io->targets) || n->n_inputs < 2 || !n->inputs[0].value || !n->inputs[1].value ||
        n->n_outputs < 1 || !n->outputs[0])
        return 0;
    if (io->nodes.n && (!n->name || !glob_any(&io->nodes, n->name))) return 0;
    ulc_value *w = n->inputs[1].value;
    ulc_lora_kind kind;
    ulc_value *via = NULL; /* the Transpose's output, for MatMul(x, Transpose(W)) */
    if (w->flags & ULC_VALUE_INITIALIZER) {
        kind = n->op == ULC_OP_Conv ? ULC_LORA_CONV
             : n->op == ULC_OP_MatMul || !attr_int(n, "transB", 0) ? ULC_LORA_LINEAR_IN_OUT
             : ULC_LORA_LINEAR_OUT_IN;
    } else if (n->op == ULC_OP_MatMul && w->producer && w->producer->op == ULC_OP_Transpose &&
               w->producer->n_inputs == 1 && w->producer->inputs[0].value &&
               (w->producer->inputs[0].value->flags & ULC_VALUE_INITIALIZER)) {
        /* the graph builders' linear: MatMul(x, Transpose(W [out, in])) */
        const ulc_attr *perm = attr_of(w->producer, "perm");
        if (perm && !(perm->n == 2 && perm->ints[0] == 1 && perm->ints[1] == 0)) return 0;
        via = w;
        w = w->producer->inputs[0].value;
        if (w->init->rank != 2) return 0;
        kind = ULC_LORA_LINEAR_OUT_IN;
    } else {
        return 0; /* activations times activations */
    }
    if (is_lora_factor(m, w)) return 0; /* a branch lora-inject added */
    int tied = via && ulc_value_num_uses(via) == 1 && tied_head(w, via->producer);
    const char *label = n->name ? n->name : "(unnamed)";
    const ulc_lora_record *had = ulc_lora_record_find(m, n->name);
    if (had && !had->merged) {
        note_skip(sk, "%s: already adapted (module '%s')", label, had->module);
        return 0;
    }
    /* the module name */
    size_t wl = strlen(w->name);
    if (tied) t->module = n->name ? ulc_lora_scope_module(n->name) : NULL; /* lm_head, not wte */
    else if (wl > 7 && strcmp(w->name + wl - 7, ".weight") == 0) t->module = strndup(w->name, wl - 7);
    else t->module = ulc_lora_scope_module(n->name);
    if (!t->module) {
        note_skip(sk, "%s: no module name (weight '%s' is not named M.weight and the node has "
                  "no torch scope)", label, w->name);
        return 0;
    }
    if ((io->include.n && !glob_any(&io->include, t->module)) || glob_any(&io->exclude, t->module)) {
        free(t->module);
        t->module = NULL;
        return 0;
    }
    /* a tied head is adapted only when chosen by name (nodes=, which placement=rfa fills, or
     * include=): "every linear" leaves the output layer out, as PEFT's all-linear does, since its
     * merge unties it from the input embedding (lora-merge, below) */
    if (tied && !io->nodes.n && !io->include.n) {
        note_skip(sk, "%s: a head tied to the input embedding '%s' (adapt it by name: "
                  "include=%s, or placement=rfa)", t->module, w->name, t->module);
        free(t->module);
        t->module = NULL;
        return 0;
    }
    const ulc_tensor *wt = w->init;
    const char *why = !n->name || !*n->name ? "the node has no name"
                    : (w->flags & ULC_VALUE_PARAM) ? "its weight is already a trained parameter"
                    : (w->flags & ULC_VALUE_CONSTANT) ? "its weight is a graph constant, not a weight"
                    : (w->flags & ULC_VALUE_INPUT) ? "its weight is also a graph input"
                    : !is_float(wt->dtype) ? "its weight is not floating point"
                    : !tied && (ulc_value_num_uses(w) != 1 || (via && ulc_value_num_uses(via) != 1))
                        ? "its weight is shared with other nodes"
                    : NULL;
    if (why) {
        note_skip(sk, "%s: %s", t->module, why);
        goto not_target;
    }
    char lb[200];
    ulc_node_label(n, lb, sizeof lb);
    /* Half weights are fine (the factors are float32, lora-merge rounds the sum into the
     * weight's dtype once); half activations are not: A and B would meet them in one node. */
    const ulc_value *x = n->inputs[0].value;
    if ((x->flags & ULC_VALUE_HAS_TYPE) && x->dtype != ULC_DT_F32 && is_float(x->dtype)) {
        *err = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "pass %s: %s (module '%s'): its input '%s' is "
                        "%s; LoRA adapters are float32 and need float32 activations (half "
                        "weights are fine; leave it out with exclude=%s)", PASS, lb, t->module,
                        x->name, ulc_dtype_name(x->dtype), t->module);
        goto not_target;
    }
    if (kind == ULC_LORA_CONV) {
        int64_t group = attr_int(n, "group", 1);
        if (wt->rank < 3 || wt->rank > 8) {
            *err = ulc_fail(ctx, ULC_ERR_INVALID, "pass %s: %s: weight '%s' has rank %d, a Conv "
                            "weight needs [out, C, k...] (1 to 6 spatial dims)", PASS, lb, w->name,
                            wt->rank);
            goto not_target;
        }
        if (group != 1) {
            *err = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "pass %s: %s (module '%s') is a grouped "
                            "convolution (group=%lld); LoRA supports group=1 only (PEFT's Conv2d "
                            "too): leave it out with exclude=%s", PASS, lb, t->module,
                            (long long)group, t->module);
            goto not_target;
        }
        t->out = wt->dims[0];
        t->in = wt->dims[1];
        t->fan_in = 1;
        for (int i = 1; i < wt->rank; i++) t->fan_in *= wt->dims[i];
    } else {
        if (wt->rank != 2) {
            note_skip(sk, "%s: its weight '%s' is not a matrix", t->module, w->name);
            goto not_target;
        }
        if (n->op == ULC_OP_Gemm && attr_int(n, "transA", 0)) {
            *err = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "pass %s: %s (module '%s') has transA=1; "
                            "LoRA injection supports Gemm with transA=0 only", PASS, lb, t->module);
            goto not_target;
        }
        int io_layout = kind == ULC_LORA_LINEAR_IN_OUT;
        t->in = wt->dims[io_layout ? 0 : 1];
        t->out = wt->dims[io_layout ? 1 : 0];
        t->fan_in = t->in;
    }
    if (t->in < 1 || t->out < 1 || t->fan_in < 1) {
        note_skip(sk, "%s: its weight '%s' is empty", t->module, w->name);
        goto not_target;
    }
    t->gemm_alpha = 1.0;
    if (n->op == ULC_OP_Gemm) {
        const ulc_attr *al = attr_of(n, "alpha");
        if (al && al->type == ULC_ATTR_FLOAT) t->gemm_alpha = al->f;
    }
    t->node = n;
    t->w = w;
    t->kind = kind;
    return 1;
not_target:
    free(t->module);
    t->module = NULL;
    return 0;
}

/* ---- building the branch -------------------------------------------------------------------- */

/* A value for a name lora-inject makes: new, or one a merge left behind (no producer, no uses,
 * not an initializer, input or output), reset. */
static ulc_value *fresh_value(ulc_graph *g, const char *name, ulc_ctx *ctx) {
    ulc_value *v = ulc_graph_get_value(g, name);
    if (!v) return ulc_graph_add_value(g, name, ctx);
    if (v->producer || v->first_use || (v->flags & (ULC_VALUE_INITIALIZER | ULC_VALUE_INPUT |
                                                    ULC_VALUE_OUTPUT | ULC_VALUE_VALUE_INFO))) {
        ulc_fail(ctx, ULC_ERR_INVALID, "pass %s: the graph already has a value named '%s'", PASS,
                 name);
        return NULL;
    }
    v->flags = 0;
    v->rank = -1;
    v->dims = NULL;
    v->init = NULL;
    return v;
}

static char *cat(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

/* An initializer of dtype dt holding data (malloc'd, taken over). */
static ulc_value *add_init_as(ulc_gb *b, const char *name, int dt, int rank, const int64_t *dims,
                              void *data, uint32_t flags) {
    uint64_t numel = 1;
    for (int i = 0; i < rank; i++) numel *= (uint64_t)dims[i];
    int overflow = 0;
    size_t nbytes = ulc_dtype_nbytes(dt, numel, &overflow);
    ulc_value *v = overflow ? NULL : fresh_value(b->g, name, b->ctx);
    if (!v) free(data);
    else if ((v = ulc_gb_set_init(b, v, dt, rank, dims, data, nbytes)))
        v->flags |= flags;
    return v;
}

/* A float32 one (the factors and the scale). */
static ulc_value *add_init(ulc_gb *b, const char *name, int rank, const int64_t *dims,
                           float *data, uint32_t flags) {
    return add_init_as(b, name, ULC_DT_F32, rank, dims, data, flags);
}

/* Moves n (just appended) to right after anchor in the node list. */
static void place_after(ulc_graph *g, ulc_node *anchor, ulc_node *n) {
    if (anchor->next == n) return;
    /* unlink n (it is the last node) */
    if (n->prev) n->prev->next = n->next;
    else g->first = n->next;
    if (n->next) n->next->prev = n->prev;
    else g->last = n->prev;
    n->prev = anchor;
    n->next = anchor->next;
    if (anchor->next) anchor->next->prev = n;
    else g->last = n;
    anchor->next = n;
}

/* Appends op(x, y) -> out named `name` after *anchor, which then becomes the new node. */
static ulc_node *add_node(ulc_gb *b, const char *op, const char *name, ulc_value *x,
                          ulc_value *y, ulc_value *out, ulc_node **anchor) {
    ulc_value *in[2] = {x, y};
    ulc_node *n = ulc_gb_node(b, "", op, name, 2, in, 1, &out);
    if (!n) return NULL;
    place_after(b->g, *anchor, n);
    *anchor = n;
    return n;
}

/* The names of everything the branch of module M adds. */
typedef struct branch_names {
    char *a_w, *b_w, *scaling, *a_out, *b_out, *s_out, *base_out;
    char *a_node, *b_node, *s_node, *add_node;
} branch_names;

static void names_free(branch_names *b) {
    char **all[] = {&b->a_w, &b->b_w, &b->scaling, &b->a_out, &b->b_out, &b->s_out, &b->base_out,
                    &b->a_node, &b->b_node, &b->s_node, &b->add_node};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
}

static int names_make(branch_names *b, const char *m) {
    b->a_w = cat(m, ".lora_A.weight");
    b->b_w = cat(m, ".lora_B.weight");
    b->scaling = cat(m, ".lora_scaling");
    b->a_out = cat(m, ".lora_A.output");
    b->b_out = cat(m, ".lora_B.output");
    b->s_out = cat(m, ".lora_scale.output");
    b->base_out = cat(m, ".base_layer.output");
    b->a_node = cat(m, ".lora_A");
    b->b_node = cat(m, ".lora_B");
    b->s_node = cat(m, ".lora_scale");
    b->add_node = cat(m, ".lora_add");
    return b->a_w && b->b_w && b->scaling && b->a_out && b->b_out && b->s_out && b->base_out &&
           b->a_node && b->b_node && b->s_node && b->add_node;
}

/* Checks that none of the names is taken (values: unless left behind by a merge). */
static ulc_status names_free_in(const ulc_graph *g, const ulc_strmap *node_names,
                                const branch_names *b, ulc_ctx *ctx) {
    const char *vals[] = {b->a_w, b->b_w, b->scaling, b->a_out, b->b_out, b->s_out, b->base_out};
    const char *nodes[] = {b->a_node, b->b_node, b->s_node, b->add_node};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        const ulc_value *v = ulc_graph_get_value(g, vals[i]);
        if (v && (v->producer || v->first_use ||
                  (v->flags & (ULC_VALUE_INITIALIZER | ULC_VALUE_INPUT | ULC_VALUE_OUTPUT |
                               ULC_VALUE_VALUE_INFO))))
            return ulc_fail(ctx, ULC_ERR_INVALID, "pass %s: the graph already has a value named "
                            "'%s'", PASS, vals[i]);
    }
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++)
        if (ulc_strmap_get(node_names, nodes[i]))
            return ulc_fail(ctx, ULC_ERR_INVALID, "pass %s: the graph already has a node named "
                            "'%s'", PASS, nodes[i]);
    return ULC_OK;
}

static ulc_status inject_one(ulc_model *m, const target *t, const inject_opts *io,
                             const branch_names *nm, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    ulc_node *n = t->node;
    const int64_t r = io->rank;
    int conv = t->kind == ULC_LORA_CONV;
    const ulc_tensor *wt = t->w->init;
    /* factors, in the graph's layout */
    int64_t adims[8], bdims[8];
    int arank = conv ? wt->rank : 2, brank = arank;
    if (conv) {
        adims[0] = r;
        for (int i = 1; i < wt->rank; i++) adims[i] = wt->dims[i];
        bdims[0] = t->out;
        bdims[1] = r;
        for (int i = 2; i < wt->rank; i++) bdims[i] = 1;
    } else {
        adims[0] = t->in, adims[1] = r;
        bdims[0] = r, bdims[1] = t->out;
    }
    uint64_t na = (uint64_t)t->fan_in * (uint64_t)r, nb = (uint64_t)t->out * (uint64_t)r;
    float *A = malloc((size_t)na * sizeof *A), *B = calloc((size_t)nb, sizeof *B);
    float *S = malloc(sizeof *S);
    if (!A || !B || !S) {
        free(A), free(B), free(S);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (LoRA factors of '%s')", t->module);
    }
    /* PEFT draws A [r, fan_in] row by row (kaiming_uniform_ on lora_A.weight); draw in that order
     * and store transposed for the linear layout */
    uint64_t st = module_stream(io->seed, t->module);
    float *tmp = conv ? A : malloc((size_t)na * sizeof *tmp);
    if (!tmp) {
        free(A), free(B), free(S);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    fill_uniform(tmp, na, 1.0 / sqrt((double)t->fan_in), &st);
    if (!conv) {
        for (int64_t q = 0; q < r; q++)
            for (int64_t i = 0; i < t->in; i++) A[i * r + q] = tmp[q * t->in + i];
        free(tmp);
    }
    if (io->random_b) {
        float *tb = conv ? B : malloc((size_t)nb * sizeof *tb);
        if (!tb) {
            free(A), free(B), free(S);
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        }
        fill_uniform(tb, nb, 1.0 / sqrt((double)r), &st); /* B [out, r]: nn.Linear(r, out)'s init */
        if (!conv) {
            for (int64_t o = 0; o < t->out; o++)
                for (int64_t q = 0; q < r; q++) B[q * t->out + o] = tb[o * r + q];
            free(tb);
        }
    }
    *S = (float)(ulc_lora_scale(io->rank, io->alpha, io->rslora) * t->gemm_alpha);
    ulc_gb gb;
    ulc_gb_init(&gb, g, 0, ULC_GB_NAMES_DERIVED, ctx); /* every name is given */
    ulc_value *va = add_init(&gb, nm->a_w, arank, adims, A, ULC_VALUE_PARAM); /* takes A */
    if (!va) {
        free(B), free(S);
        return ctx->status;
    }
    ulc_value *vb = add_init(&gb, nm->b_w, brank, bdims, B, ULC_VALUE_PARAM);
    if (!vb) {
        free(S);
        return ctx->status;
    }
    ulc_value *vs = add_init(&gb, nm->scaling, 0, NULL, S, ULC_VALUE_CONSTANT);
    if (!vs) return ctx->status;

    /* the base node's output moves to a new value; the Add takes over the old one */
    ulc_value *out = n->outputs[0];
    ulc_value *base_out = fresh_value(g, nm->base_out, ctx);
    ulc_value *a_out = base_out ? fresh_value(g, nm->a_out, ctx) : NULL;
    ulc_value *b_out = a_out ? fresh_value(g, nm->b_out, ctx) : NULL;
    ulc_value *s_out = b_out ? fresh_value(g, nm->s_out, ctx) : NULL;
    if (!s_out) return ctx->status;
    ULC_TRY(ulc_node_set_output(n, 0, base_out, ctx));
    ulc_value *x = n->inputs[0].value;
    ulc_node *anchor = n;
    const char *op = conv ? "Conv" : "MatMul";
    ulc_node *na_ = add_node(&gb, op, nm->a_node, x, va, a_out, &anchor);
    ulc_node *nb_ = na_ ? add_node(&gb, op, nm->b_node, a_out, vb, b_out, &anchor) : NULL;
    if (!nb_ || !add_node(&gb, "Mul", nm->s_node, b_out, vs, s_out, &anchor) ||
        !add_node(&gb, "Add", nm->add_node, base_out, s_out, out, &anchor))
        return ctx->status;
    if (conv) {
        /* A: the base's window (kernel, strides, pads, dilations); B: 1x1 */
        static const char *const copy[] = {"auto_pad", "dilations", "kernel_shape", "pads",
                                           "strides"};
        for (size_t i = 0; i < sizeof copy / sizeof *copy; i++) {
            const ulc_attr *a = attr_of(n, copy[i]);
            if (a) ulc_gb_attr_put(&gb, a_out, a);
        }
        int64_t ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        if (attr_of(n, "kernel_shape")) ulc_gb_attr_ints(&gb, b_out, "kernel_shape", wt->rank - 2, ones);
        if (gb.status != ULC_OK) return gb.status;
    }
    ulc_lora_record rec = {0};
    rec.module = t->module;
    rec.node = n->name;
    rec.weight = t->w->name;
    rec.kind = t->kind;
    rec.a = nm->a_w;
    rec.b = nm->b_w;
    rec.out = out->name;
    rec.base_out = nm->base_out;
    rec.r = io->rank;
    rec.alpha = io->alpha;
    rec.rslora = io->rslora;
    rec.peft_ok = t->peft_ok;
    /* a merged record of this node is replaced */
    for (size_t i = 0; i < m->lora.len; i++) {
        ulc_lora_record *old = m->lora.items[i];
        if (old->merged && strcmp(old->node, n->name) == 0) {
            ulc_ptrvec_remove(&m->lora, old);
            break;
        }
    }
    return ulc_lora_record_add(m, &rec, ctx);
}

static ulc_status run_inject(ulc_model *m, const ulc_pass_opts *o, ulc_pass_ctx *pc,
                             ulc_ctx *ctx) {
    inject_opts io;
    ulc_status s = parse_inject_opts(m, o, pc, &io, ctx);
    ulc_graph *g = m->graph;
    target *ts = NULL;
    int nt = 0;
    skips *sk = calloc(1, sizeof *sk);
    ulc_strmap *node_names = ulc_strmap_create(), *modules = ulc_strmap_create();
    if (s == ULC_OK && (!sk || !node_names || !modules))
        s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (s == ULC_OK) s = ulc_lora_records_load(m, ctx);
    if (s == ULC_OK && !(ts = calloc((size_t)g->n_nodes + 1, sizeof *ts)))
        s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");

    /* 1. select, and check everything before changing anything */
    for (ulc_node *n = g->first; s == ULC_OK && n; n = n->next) {
        if (n->name && ulc_strmap_put(node_names, n->name, n) != 0)
            s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        if (s == ULC_OK && select_node(m, n, &io, &ts[nt], sk, &s, ctx)) nt++;
    }
    /* a module name must name one node (and no node adapted before) */
    for (int i = 0; s == ULC_OK && i < nt; i++) {
        target *prev = ulc_strmap_get(modules, ts[i].module);
        if (prev) {
            if (!prev->skip)
                note_skip(sk, "%s: several nodes have this module name ('%s', '%s')", prev->module,
                          prev->node->name, ts[i].node->name);
            prev->skip = ts[i].skip = 1;
            continue;
        }
        if (ulc_strmap_put(modules, ts[i].module, &ts[i]) != 0)
            s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; s == ULC_OK && i < m->lora.len; i++) {
        const ulc_lora_record *r = m->lora.items[i];
        target *t = r->merged ? NULL : ulc_strmap_get(modules, r->module);
        if (t && !t->skip) {
            note_skip(sk, "%s: the module is already adapted at node '%s'", t->module, r->node);
            t->skip = 1;
        }
    }
    /* would `ulc merge` of a PEFT adapter for the module find this weight, in this layout? */
    for (int i = 0; s == ULC_OK && i < nt; i++) {
        int via = 0, tr = 0;
        ulc_ctx quiet;
        ulc_ctx_init(&quiet);
        ulc_value *found = ulc_lora_find_base(g, ts[i].module, &via, &tr, &quiet);
        ts[i].peft_ok = found == ts[i].w && (!via || tr == (ts[i].kind == ULC_LORA_LINEAR_IN_OUT));
    }
    branch_names *nms = s == ULC_OK ? calloc((size_t)nt + 1, sizeof *nms) : NULL;
    if (s == ULC_OK && !nms) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int i = 0; s == ULC_OK && i < nt; i++) {
        if (ts[i].skip) continue;
        if (!names_make(&nms[i], ts[i].module)) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        else s = names_free_in(g, node_names, &nms[i], ctx);
    }

    /* 2. inject */
    int done = 0;
    for (int i = 0; s == ULC_OK && i < nt; i++) {
        if (ts[i].skip) continue;
        s = inject_one(m, &ts[i], &io, &nms[i], ctx);
        if (s == ULC_OK) done++;
    }
    if (s == ULC_OK && done) s = ulc_lora_records_save(m, ctx);
    if (s == ULC_OK && !pc->quiet) {
        FILE *log = pc->progress ? pc->progress : stderr;
        fprintf(log, "ulc: %s: %d module%s adapted (rank %d, alpha %g%s)", PASS, done,
                done == 1 ? "" : "s", io.rank, io.alpha, io.rslora ? ", rsLoRA" : "");
        if (sk->n) fprintf(log, ", %d skipped:", sk->n);
        fputc('\n', log);
        for (int i = 0; i < sk->n && i < 32; i++) fprintf(log, "  skipped %s\n", sk->lines[i]);
        if (sk->n > 32) fprintf(log, "  ... and %d more\n", sk->n - 32);
    }
    for (int i = 0; nms && i < nt; i++) names_free(&nms[i]);
    for (int i = 0; ts && i < nt; i++) free(ts[i].module);
    free(nms);
    free(ts);
    free(sk);
    ulc_strmap_free(node_names);
    ulc_strmap_free(modules);
    glob_free(&io.include);
    glob_free(&io.exclude);
    glob_free(&io.nodes);
    return s;
}

/* ---- lora-merge ------------------------------------------------------------------------------ */

/* A recorded branch, found in the graph. */
typedef struct branch {
    ulc_lora_record *rec;
    ulc_node *base, *na, *nb, *ns, *nadd;
    ulc_value *out, *base_out, *a_out, *b_out, *s_out, *va, *vb, *vs, *w;
} branch;

static int used_once_by(const ulc_value *v, const ulc_node *n) {
    return v && v->first_use && !v->first_use->next && v->first_use->node == n &&
           !(v->flags & ULC_VALUE_OUTPUT);
}

static ulc_status find_branch(ulc_model *m, ulc_lora_record *rec, branch *b, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    memset(b, 0, sizeof *b);
    b->rec = rec;
    const char *why = NULL;
    b->out = ulc_graph_get_value(g, rec->out);
    b->base_out = ulc_graph_get_value(g, rec->base_out);
    b->va = ulc_graph_get_value(g, rec->a);
    b->vb = ulc_graph_get_value(g, rec->b);
    b->w = ulc_graph_get_value(g, rec->weight);
    int conv = rec->kind == ULC_LORA_CONV;
    ulc_op fop = conv ? ULC_OP_Conv : ULC_OP_MatMul;
    b->nadd = b->out ? b->out->producer : NULL;
    b->base = b->base_out ? b->base_out->producer : NULL;
    if (!b->nadd || b->nadd->op != ULC_OP_Add || b->nadd->n_inputs != 2)
        why = "no Add produces its output";
    else if (!b->base || !b->base->name || strcmp(b->base->name, rec->node) != 0)
        why = "its base node does not produce the branch's base output";
    else if (b->nadd->inputs[0].value != b->base_out || !used_once_by(b->base_out, b->nadd))
        why = "the base output is read by something else than the branch's Add";
    else if (!(b->s_out = b->nadd->inputs[1].value) || !(b->ns = b->s_out->producer) ||
             b->ns->op != ULC_OP_Mul || b->ns->n_inputs != 2 || !used_once_by(b->s_out, b->nadd))
        why = "the Add's second input is not the branch's scaling Mul";
    else if (!(b->b_out = b->ns->inputs[0].value) || !(b->nb = b->b_out->producer) ||
             b->nb->op != fop || !used_once_by(b->b_out, b->ns) || b->nb->inputs[1].value != b->vb)
        why = "the Mul does not scale the lora_B node's output";
    else if (!(b->vs = b->ns->inputs[1].value) || !(b->vs->flags & ULC_VALUE_INITIALIZER))
        why = "the scaling is not an initializer";
    else if (!(b->a_out = b->nb->inputs[0].value) || !(b->na = b->a_out->producer) ||
             b->na->op != fop || !used_once_by(b->a_out, b->nb) || b->na->inputs[1].value != b->va ||
             b->na->inputs[0].value != b->base->inputs[0].value)
        why = "lora_B does not read the lora_A node of the base node's input";
    else if (!b->va || !b->vb || !used_once_by(b->va, b->na) || !used_once_by(b->vb, b->nb))
        why = "its factors are missing or read by other nodes too";
    else if (!b->w || !(b->w->flags & ULC_VALUE_INITIALIZER))
        why = "its base weight is not an initializer";
    if (why)
        return ulc_fail(ctx, ULC_ERR_INVALID, "pass lora-merge: module '%s' (node '%s'): %s; the "
                        "graph no longer holds the branch lora-inject made", rec->module,
                        rec->node, why);
    return ULC_OK;
}

static int all_zero(const ulc_tensor *t) {
    const uint8_t *p = t->data;
    if (!p) return 0;
    for (size_t i = 0; i + 4 <= t->nbytes; i += 4) {
        uint32_t u;
        memcpy(&u, p + i, 4);
        if (u & 0x7fffffffu) return 0;
    }
    return 1;
}

static void drop_init(ulc_graph *g, ulc_value *v) {
    ulc_ptrvec_remove(&g->inits, v);
    ulc_ptrvec_remove(&g->inputs, v);
    v->flags &= ~(uint32_t)(ULC_VALUE_INITIALIZER | ULC_VALUE_PARAM | ULC_VALUE_CONSTANT |
                            ULC_VALUE_INPUT);
    v->init = NULL;
}

static void drop_info(ulc_graph *g, ulc_value *v) {
    if (v->flags & ULC_VALUE_VALUE_INFO) {
        ulc_ptrvec_remove(&g->value_info, v);
        v->flags &= ~(uint32_t)ULC_VALUE_VALUE_INFO;
    }
}

/* A Hugging Face config's tie_word_embeddings set to false (no config: nothing to do). */
static ulc_status untie_config(ulc_model *m, ulc_ctx *ctx) {
    const char *txt = ulc_model_metadata(m, ULC_META_HF_CONFIG);
    if (!txt) return ULC_OK;
    cJSON *j = cJSON_Parse(txt);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ulc_fail(ctx, ULC_ERR_INVALID, "pass lora-merge: the model's Hugging Face config "
                        "(metadata '%s') is not a JSON object", ULC_META_HF_CONFIG);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(j, "tie_word_embeddings");
    char *out = cJSON_AddFalseToObject(j, "tie_word_embeddings") ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!out) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ulc_status s = ulc_model_set_metadata(m, ULC_META_HF_CONFIG, out, ctx);
    free(out);
    return s;
}

/* A tied head's merge target: a copy of the shared weight named after the module, read by the
 * head's Transpose from now on (the Gathers keep the original). */
static ulc_status untie_head(ulc_model *m, branch *b, ulc_ctx *ctx) {
    ulc_node *tr = b->base->inputs[1].value->producer;
    const ulc_tensor *w = b->w->init;
    char *name = cat(b->rec->module, ".weight");
    void *data = name && w->data ? malloc(w->nbytes + 1) : NULL;
    ulc_status s = ULC_OK;
    if (!data) {
        s = name && !w->data ? ulc_fail(ctx, ULC_ERR_INVALID, "pass lora-merge: '%s' has no data",
                                        b->w->name)
                             : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    } else if (ulc_graph_get_value(m->graph, name)) {
        free(data);
        s = ulc_fail(ctx, ULC_ERR_INVALID, "pass lora-merge: module '%s' is a head tied to '%s', "
                     "but the untied copy's name '%s' is taken", b->rec->module, b->w->name, name);
    } else {
        memcpy(data, w->data, w->nbytes);
        ulc_gb gb;
        ulc_gb_init(&gb, m->graph, 0, ULC_GB_NAMES_DERIVED, ctx);
        /* in the shared weight's dtype: a half head stays half */
        ulc_value *copy = add_init_as(&gb, name, w->dtype, w->rank, w->dims, data, 0);
        if (!copy) s = ctx->status ? ctx->status : ULC_ERR_NOMEM;
        else {
            ulc_node_set_input(tr, 0, copy);
            b->w = copy;
            s = untie_config(m, ctx);
        }
    }
    free(name);
    return s;
}

static ulc_status run_merge(ulc_model *m, const ulc_pass_opts *o, ulc_pass_ctx *pc,
                            ulc_ctx *ctx) {
    (void)o;
    (void)pc;
    ULC_TRY(ulc_lora_records_load(m, ctx));
    ulc_graph *g = m->graph;
    int n = 0;
    for (size_t i = 0; i < m->lora.len; i++) n += !((ulc_lora_record *)m->lora.items[i])->merged;
    if (!n)
        return ulc_fail(ctx, ULC_ERR_INVALID, "pass lora-merge: the model has no LoRA adapters to "
                        "merge (run lora-inject first; a model read back from ONNX keeps them in "
                        "its '%s' metadata)", ULC_META_LORA);
    branch *bs = calloc((size_t)n, sizeof *bs);
    if (!bs) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ulc_status s = ULC_OK;
    int k = 0;
    /* 1. find every branch before changing anything */
    for (size_t i = 0; s == ULC_OK && i < m->lora.len; i++) {
        ulc_lora_record *r = m->lora.items[i];
        if (!r->merged) s = find_branch(m, r, &bs[k++], ctx);
    }
    /* 2. fold: W += scale * B @ A (skipped when the product is zero: W stays bit for bit) */
    ulc_lora_merge_report rep = {0};
    ulc_lora_merge_opts mo = {0};
    mo.weight = 1.0;
    for (int i = 0; s == ULC_OK && i < n; i++) {
        const ulc_lora_record *r = bs[i].rec;
        if (all_zero(bs[i].va->init) || all_zero(bs[i].vb->init)) continue;
        const ulc_value *via = bs[i].base->inputs[1].value;
        if (via != bs[i].w && via->producer && via->producer->op == ULC_OP_Transpose &&
            tied_head(bs[i].w, via->producer) && (s = untie_head(m, &bs[i], ctx)) != ULC_OK)
            break;
        float *A = NULL, *B = NULL;
        int64_t ad[8], bd[8];
        int ar = 0, br = 0;
        s = ulc_lora_record_peft_factors(m, r, &A, ad, &ar, &B, bd, &br, ctx);
        if (s != ULC_OK) break;
        ulc_tensor ta = {0}, tb = {0};
        ta.dtype = tb.dtype = ULC_DT_F32;
        ta.rank = ar, ta.dims = ad, ta.data = A, ta.storage = ULC_STORAGE_OWNED;
        tb.rank = br, tb.dims = bd, tb.data = B, tb.storage = ULC_STORAGE_OWNED;
        ta.numel = tb.numel = 1;
        for (int d = 0; d < ar; d++) ta.numel *= (uint64_t)ad[d];
        for (int d = 0; d < br; d++) tb.numel *= (uint64_t)bd[d];
        ta.nbytes = (size_t)ta.numel * 4, tb.nbytes = (size_t)tb.numel * 4;
        s = ulc_lora_merge_module(m, r->module, bs[i].w, &ta, &tb,
                                  r->kind == ULC_LORA_LINEAR_IN_OUT,
                                  ulc_lora_scale(r->r, r->alpha, r->rslora), &mo, &rep, ctx);
        free(A);
        free(B);
        if (s != ULC_OK) s = ulc_fail(ctx, s, "pass lora-merge");
    }
    ulc_lora_merge_report_clear(&rep);
    /* 3. remove the branches; the base nodes get their outputs back */
    for (int i = 0; s == ULC_OK && i < n; i++) {
        branch *b = &bs[i];
        ulc_graph_remove_node(g, b->nadd);
        ulc_graph_remove_node(g, b->ns);
        ulc_graph_remove_node(g, b->nb);
        ulc_graph_remove_node(g, b->na);
        s = ulc_node_set_output(b->base, b->base_out->producer_slot, b->out, ctx);
        b->rec->a_t = b->va->init;
        b->rec->b_t = b->vb->init;
        b->rec->merged = 1;
        drop_init(g, b->va);
        drop_init(g, b->vb);
        if (!b->vs->first_use) drop_init(g, b->vs);
        ulc_value *gone[] = {b->va, b->vb, b->vs, b->a_out, b->b_out, b->s_out, b->base_out};
        for (size_t j = 0; j < sizeof gone / sizeof *gone; j++)
            if (!gone[j]->producer && !(gone[j]->flags & ULC_VALUE_INITIALIZER))
                drop_info(g, gone[j]);
    }
    free(bs);
    if (s == ULC_OK) s = ulc_lora_records_save(m, ctx);
    return s;
}

static const ulc_pass_optdef k_inject_opts[] = {
    {.key = "targets", .kind = ULC_OPT_STR,
     .help = "op types to adapt, '|'-separated: Conv, Gemm, MatMul (all three)"},
    {.key = "include", .kind = ULC_OPT_STR, .help = "module-name globs to adapt, '|'-separated"},
    {.key = "exclude", .kind = ULC_OPT_STR, .help = "module-name globs to leave alone"},
    {.key = "nodes", .kind = ULC_OPT_STR, .help = "node-name globs to adapt, '|'-separated"},
    {.key = "placement", .kind = ULC_OPT_STR, .choices = k_placements,
     .help = "all (every targeted layer) or rfa (the RFA paper's layers: residual-block convs, "
             "else FFN linears and the head)"},
    {.key = "rank", .kind = ULC_OPT_INT, .ilo = 1, .ihi = 1 << 16, .help = "r (8)"},
    {.key = "alpha", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1e9,
     .help = "scale numerator: alpha/r, alpha/sqrt(r) with rslora (the rank)"},
    {.key = "rslora", .kind = ULC_OPT_INT, .ilo = 0, .ihi = 1, .help = "1: rsLoRA scaling (0)"},
    {.key = "seed", .kind = ULC_OPT_INT, .ilo = 0, .ihi = INT64_MAX,
     .help = "the A (and B) initialisation's seed (the run's seed)"},
    {.key = "init", .kind = ULC_OPT_STR, .choices = k_init_names,
     .help = "peft (B = 0, as PEFT) or random (B random too)"},
    {0}};

const ulc_pass ulc_pass_lora_inject = {
    .name = "lora-inject",
    .opts = k_inject_opts,
    .summary = "add LoRA adapters (trainable A/B initializers and MatMul/Conv nodes) to Conv, "
               "Gemm and MatMul nodes",
    .run = run_inject,
};

const ulc_pass ulc_pass_lora_merge = {
    .name = "lora-merge",
    .opts = NULL,
    .summary = "fold the LoRA adapters lora-inject added into their base weights",
    .run = run_merge,
};
