/* clone.c — structural copies of models that share their source's weights (see clone.h). */
#include "ir/clone.h"

#include <string.h>

static ulc_status nomem(ulc_ctx *ctx) {
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (cloning the graph)");
}

static ulc_status copy_vec(ulc_ptrvec *dst, const ulc_ptrvec *src, ulc_value *const *map,
                           ulc_ctx *ctx) {
    for (size_t i = 0; i < src->len; i++)
        if (ulc_ptrvec_push(dst, map[((const ulc_value *)src->items[i])->id]) != 0)
            return nomem(ctx);
    return ULC_OK;
}

static ulc_status clone_into(const ulc_model *src, ulc_model *m, ulc_ctx *ctx) {
    const ulc_graph *sg = src->graph;
    ulc_graph *g = m->graph;
    m->source_format = src->source_format;
    m->source_path = src->source_path;
    m->ir_version = src->ir_version;
    m->has_ir_version = src->has_ir_version;
    m->producer_name = src->producer_name;
    m->producer_version = src->producer_version;
    m->domain = src->domain;
    m->doc_string = src->doc_string;
    m->model_version = src->model_version;
    m->has_model_version = src->has_model_version;
    m->n_opsets = src->n_opsets;
    m->opsets = src->opsets;
    m->n_metadata = src->n_metadata;
    m->metadata = src->metadata;
    g->name = sg->name;
    g->doc_string = sg->doc_string;

    /* Values by id: ids are dense, assigned at creation in creation order. */
    size_t nv = sg->values.len;
    ulc_value **map = ulc_arena_calloc(g->arena, nv ? nv : 1, sizeof *map);
    if (!map) return nomem(ctx);
    for (size_t i = 0; i < nv; i++) {
        const ulc_value *sv = sg->values.items[i];
        ulc_value *v = ulc_graph_add_value(g, sv->name, ctx);
        if (!v) return ULC_ERR_NOMEM;
        v->flags = sv->flags;
        v->dtype = sv->dtype;
        v->rank = sv->rank;
        if (sv->rank > 0) {
            if (!(v->dims = ulc_arena_calloc(g->arena, (size_t)sv->rank, sizeof *v->dims)))
                return nomem(ctx);
            memcpy(v->dims, sv->dims, (size_t)sv->rank * sizeof *v->dims);
        }
        v->init = sv->init;
        v->type_blob = sv->type_blob;
        v->type_denotation = sv->type_denotation;
        v->extra = sv->extra;
        map[sv->id] = v;
    }
    ULC_TRY(copy_vec(&g->inputs, &sg->inputs, map, ctx));
    ULC_TRY(copy_vec(&g->outputs, &sg->outputs, map, ctx));
    ULC_TRY(copy_vec(&g->inits, &sg->inits, map, ctx));
    ULC_TRY(copy_vec(&g->value_info, &sg->value_info, map, ctx));

    for (const ulc_node *sn = sg->first; sn; sn = sn->next) {
        ulc_node *n = ulc_graph_add_node(g, sn->domain, sn->op_type, sn->name, sn->n_inputs,
                                         sn->n_outputs, 0, ctx);
        if (!n) return ULC_ERR_NOMEM;
        n->attrs = sn->attrs;
        n->n_attrs = sn->n_attrs;
        n->doc_string = sn->doc_string;
        n->extra = sn->extra;
        for (int i = 0; i < sn->n_inputs; i++)
            if (sn->inputs[i].value) ulc_node_set_input(n, i, map[sn->inputs[i].value->id]);
        for (int i = 0; i < sn->n_outputs; i++)
            if (sn->outputs[i]) ULC_TRY(ulc_node_set_output(n, i, map[sn->outputs[i]->id], ctx));
    }
    return ULC_OK;
}

ulc_status ulc_model_clone_shallow(const ulc_model *src, ulc_model **out, ulc_ctx *ctx) {
    *out = NULL;
    ulc_model *m = ulc_model_create();
    if (!m) return nomem(ctx);
    ulc_status s = clone_into(src, m, ctx);
    if (s != ULC_OK) {
        ulc_model_free(m);
        return s;
    }
    *out = m;
    return ULC_OK;
}
