/*
 * memplan.c — liveness and placement of a plan's activations.
 *
 * Liveness: every scheduled value's lifetime is [step that makes it, last step that reads it,
 * or any step that reads a view of it]; graph outputs live to the end. Views (Reshape,
 * Squeeze, … ULC_SHAPE_ALIAS in shape.h) share their source's bytes and extend its lifetime.
 * Placement: values are laid out in one 64-byte-aligned buffer, largest first, each at the
 * lowest offset not used by a value whose lifetime overlaps (greedy by size, as TFLite's and
 * onnxruntime's planners do), so memory is reused as soon as a value dies.
 */
#include <stdint.h>
#include <stdlib.h>

#include "runtime/plan.h"


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

ulc_status ulc_plan_place(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx) {
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
            if (st->alias && i == 0 && n->inputs[0].value) {
                /* a view: of a scheduled value (its root), or of bytes outside the arena
                 * (a constant, a graph input: -1) */
                rt_val *src = &vals[n->inputs[0].value->id];
                rv->root = src->step >= 0 ? src->root : -1;
            }
        }
        int nr = st->reads ? st->n_reads : n->n_inputs;
        for (int i = 0; i <= nr + 2; i++) {
            ulc_value *v = i < nr ? (st->reads ? st->reads[i] : n->inputs[i].value)
                           : i == nr ? st->addend : i == nr + 1 ? st->mask : st->residual;
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
        return ulc_plan_nomem(ctx, "memory plan");
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
    p->arena = p->dops ? p->dops->alloc(p->dev, total) : ulc_plan_alloc(total);
    if (!p->arena) return ulc_plan_nomem(ctx, p->dops ? "activation buffer, device memory" : "activation buffer");
    for (size_t i = 0; i < nv; i++) {
        ulc_value *v = g->values.items[i];
        rt_val *rv = &vals[v->id];
        if (rv->step >= 0 && rv->root == v->id) rv->t.data = (uint8_t *)p->arena + rv->offset;
    }
    return ULC_OK;
}
