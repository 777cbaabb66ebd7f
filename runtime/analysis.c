/* analysis.c — ulc_analyze: the planner's walk with partial knowledge (inputs pinned or not,
 * folding limited to small results) and no schedule; what specialize and cleanup build on. */
#include <stdlib.h>

#include "runtime/plan.h"

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
    if (!a) return ulc_plan_nomem(ctx, "analysis");
    a->g = g;
    a->n_vals = g->values.len;
    a->n_node_ids = g->next_node_id;
    a->vals = calloc(g->values.len ? g->values.len : 1, sizeof *a->vals);
    a->folded = calloc((size_t)(g->next_node_id > 0 ? g->next_node_id : 1), 1);
    if (!a->vals || !a->folded) {
        ulc_analysis_free(a);
        return ulc_plan_nomem(ctx, "analysis");
    }
    rt_walk w = {.g = g, .be = ulc_backend_find(NULL), .opset = opset < 0 ? 21 : opset, .vals = a->vals,
              .analysis = 1,
              .limit_bytes = limit_bytes, .folded = a->folded, .ctx = ctx};
    ulc_status s = ulc_plan_walk(&w, inputs, n_inputs, NULL);
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
