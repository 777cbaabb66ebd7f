/* lora_placement.c — where the RFA paper puts LoRA adapters (lora_placement.h). */
#include "passes/lora_placement.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int weight_of_linear(const ulc_node *n) {
    if (n->op != ULC_OP_MatMul && n->op != ULC_OP_Gemm) return 0;
    if (n->n_inputs < 2 || !n->inputs[1].value) return 0;
    const ulc_value *w = n->inputs[1].value;
    if (w->flags & ULC_VALUE_INITIALIZER) return 1;
    const ulc_node *p = w->producer; /* MatMul(x, Transpose(W)) */
    return p && p->op == ULC_OP_Transpose && p->inputs[0].value &&
           (p->inputs[0].value->flags & ULC_VALUE_INITIALIZER);
}

static int is_act(const ulc_node *n) {
    return n->op == ULC_OP_Erf || n->op == ULC_OP_Tanh || n->op == ULC_OP_Gelu;
}

/* A GELU within `depth` consumer steps of v (through the elementwise ops its spellings use). */
static int feeds_gelu(const ulc_value *v, int depth) {
    if (!v || depth == 0) return 0;
    for (const ulc_use *u = v->first_use; u; u = u->next) {
        const ulc_node *c = u->node;
        if (is_act(c)) return 1;
        if (c->op == ULC_OP_Add || c->op == ULC_OP_Mul || c->op == ULC_OP_Div ||
            c->op == ULC_OP_Pow || c->op == ULC_OP_Reshape)
            for (int i = 0; i < c->n_outputs; i++)
                if (feeds_gelu(c->outputs[i], depth - 1)) return 1;
    }
    return 0;
}

/* A GELU within `depth` producer steps before v. */
static int from_gelu(const ulc_value *v, int depth) {
    if (!v || !v->producer || depth == 0) return 0;
    const ulc_node *p = v->producer;
    if (is_act(p)) return 1;
    if (p->op == ULC_OP_Add || p->op == ULC_OP_Mul || p->op == ULC_OP_Div ||
        p->op == ULC_OP_Reshape)
        for (int i = 0; i < p->n_inputs; i++)
            if (from_gelu(p->inputs[i].value, depth - 1)) return 1;
    return 0;
}

static ulc_status append(char **buf, size_t *len, size_t *cap, const char *s, ulc_ctx *ctx) {
    size_t n = strlen(s) + 1;
    if (*len + n + 1 > *cap) {
        size_t c = (*cap + n + 1) * 2;
        char *b = realloc(*buf, c);
        if (!b) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        *buf = b;
        *cap = c;
    }
    if (*len) (*buf)[(*len)++] = '|';
    memcpy(*buf + *len, s, n);
    *len += n - 1;
    return ULC_OK;
}

ulc_status ulc_lora_rfa_nodes(const ulc_model *m, char **out, int *count, ulc_ctx *ctx) {
    const ulc_graph *g = m->graph;
    *out = NULL;
    *count = 0;
    int nn = g->next_node_id;
    size_t words = ((size_t)nn + 63) / 64;
    /* anc[id]: the nodes a node depends on, itself included (bitsets, topological order) */
    uint64_t *anc = calloc((size_t)nn * words + 1, sizeof *anc);
    unsigned char *pick = calloc((size_t)nn + 1, 1);
    unsigned char *live = calloc(g->values.len + 1, 1); /* depends on a graph input */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    ulc_status st = ULC_OK;
    if (!anc || !pick || !live) {
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (placement)");
        goto done;
    }
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (!(v->flags & ULC_VALUE_INITIALIZER)) live[v->id] = 1;
    }
    for (const ulc_node *n = g->first; n; n = n->next) {
        uint64_t *a = anc + (size_t)n->id * words;
        a[n->id / 64] |= 1ull << (n->id % 64);
        int l = 0;
        for (int i = 0; i < n->n_inputs; i++) l |= n->inputs[i].value && live[n->inputs[i].value->id];
        for (int i = 0; i < n->n_outputs; i++)
            if (n->outputs[i]) live[n->outputs[i]->id] = (unsigned char)l;
        for (int i = 0; i < n->n_inputs; i++) {
            const ulc_value *v = n->inputs[i].value;
            if (!v || !v->producer) continue;
            const uint64_t *p = anc + (size_t)v->producer->id * words;
            for (size_t w = 0; w < words; w++) a[w] |= p[w];
        }
    }
    int convs = 0;
    for (const ulc_node *n = g->first; n; n = n->next) {
        if (n->op != ULC_OP_Add || n->n_inputs != 2 || !n->inputs[0].value || !n->inputs[1].value)
            continue;
        const ulc_node *pa = n->inputs[0].value->producer, *pb = n->inputs[1].value->producer;
        if (!pa || !pb || !live[n->inputs[0].value->id] || !live[n->inputs[1].value->id])
            continue; /* a bias or a constant, not a residual */
        const uint64_t *a = anc + (size_t)pa->id * words, *b = anc + (size_t)pb->id * words;
        for (const ulc_node *c = g->first; c; c = c->next) {
            if (c->op != ULC_OP_Conv || c->n_inputs < 2 || !c->inputs[1].value ||
                !(c->inputs[1].value->flags & ULC_VALUE_INITIALIZER))
                continue;
            int ina = (a[c->id / 64] >> (c->id % 64)) & 1, inb = (b[c->id / 64] >> (c->id % 64)) & 1;
            if (ina != inb && !pick[c->id]) { /* on one branch only: inside the block */
                pick[c->id] = 1;
                convs++;
            }
        }
    }
    if (!convs) { /* a transformer: the FFN linears and the head */
        for (const ulc_node *n = g->first; n; n = n->next) {
            if (!weight_of_linear(n)) continue;
            if (feeds_gelu(n->outputs[0], 7) || from_gelu(n->inputs[0].value, 7)) pick[n->id] = 1;
        }
        for (size_t i = 0; i < g->outputs.len; i++) { /* the head: the last linear before it */
            const ulc_value *v = g->outputs.items[i];
            for (int hops = 0; v && v->producer && hops < 6; hops++) {
                const ulc_node *p = v->producer;
                if (weight_of_linear(p)) {
                    pick[p->id] = 1;
                    break;
                }
                if (p->op != ULC_OP_Add && p->op != ULC_OP_Reshape && p->op != ULC_OP_Flatten &&
                    p->op != ULC_OP_Squeeze && p->op != ULC_OP_Identity && p->op != ULC_OP_Gather &&
                    p->op != ULC_OP_Slice)
                    break;
                v = p->inputs[0].value;
            }
        }
    }
    for (const ulc_node *n = g->first; n; n = n->next) {
        if (!pick[n->id]) continue;
        if (!n->name || !*n->name || strchr(n->name, '|')) continue; /* not addressable by name */
        if ((st = append(&buf, &len, &cap, n->name, ctx)) != ULC_OK) goto done;
        (*count)++;
    }
    if (!*count) {
        st = ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                      "%s: no convolution inside a residual block and no transformer FFN linear "
                      "found for RFA's default LoRA placement; name the layers in the spec's "
                      "\"lora\" (targets/include)", m->source_path ? m->source_path : "model");
        goto done;
    }
    *out = buf;
    buf = NULL;
done:
    free(anc);
    free(pick);
    free(live);
    free(buf);
    return st;
}
