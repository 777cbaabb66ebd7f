/* grad.c — `ulc grad`: gradients by ulc's autodiff on the runtime (jobs/grad.h). */
#include "jobs/grad.h"

#include "common/fileset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/glob.h"
#include "export/safetensors_export.h"
#include "import/safetensors_import.h"
#include "io/model.h"
#include "ir/builder.h"
#include "ir/clone.h"
#include "runtime/runtime.h"
#include "train/attention.h"
#include "train/autodiff.h"

#define MAX_WRT 4096

/* One run: the model's copy t whose graph gets the loss and the backward, what is bound to its
 * inputs, the values differentiated and their gradients. */
typedef struct grad_run {
    const ulc_grad_job *j;
    ulc_model *m, *feeds, *t;
    ulc_rt_binding *bs;
    int nb;
    ulc_value **wrt, **grads;
    int nw;
    ulc_value *loss;
} grad_run;

/* Binds `data` (from file) to v, an input of the graph. */
static ulc_status bind(grad_run *r, const ulc_value *v, const ulc_tensor *data, const char *file,
                       ulc_ctx *ctx) {
    r->bs[r->nb].name = v->name;
    return ulc_rt_tensor_view(data, file, &r->bs[r->nb++].t, ctx);
}

/* Feeds bind graph inputs; picked initializers become inputs bound to their own data. */
static ulc_status bind_inputs(grad_run *r, ulc_ctx *ctx) {
    const ulc_grad_job *j = r->j;
    ulc_graph *g = r->t->graph;
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        ulc_value *f = ulc_graph_get_value(r->feeds->graph, v->name);
        if (!f || !f->init)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: no tensor for model input '%s'",
                            j->feeds, v->name);
        ULC_TRY(bind(r, v, f->init, j->feeds, ctx));
        if (r->nw < MAX_WRT && f->init->dtype == ULC_DT_F32 &&
            (j->wrt ? ulc_glob_any(j->wrt, v->name) : 1))
            r->wrt[r->nw++] = v;
    }
    for (size_t i = 0; j->wrt && i < g->inits.len; i++) {
        ulc_value *v = g->inits.items[i];
        if (!v->init || v->init->dtype != ULC_DT_F32 || !ulc_glob_any(j->wrt, v->name) ||
            r->nw == MAX_WRT)
            continue;
        const ulc_tensor *data = v->init;
        ulc_ptrvec_remove(&g->inits, v);
        i--;
        v->flags = (v->flags & ~(uint32_t)ULC_VALUE_INITIALIZER) | ULC_VALUE_INPUT;
        v->init = NULL;
        if (ulc_ptrvec_push(&g->inputs, v) != 0)
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        ULC_TRY(bind(r, v, data, j->model, ctx));
        r->wrt[r->nw++] = v;
    }
    if (!r->nw)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "nothing to differentiate: --wrt matches no "
                        "float32 input or initializer");
    return ULC_OK;
}

/* A node of op named `name` whose output value is called the same. */
static ulc_value *named_op(ulc_gb *b, const char *op, const char *name, ulc_value *x,
                           ulc_value *y) {
    ulc_value *in[2] = {x, y};
    ulc_value *out = ulc_graph_add_value(b->g, name, b->ctx);
    if (!out) return NULL;
    return ulc_gb_node(b, NULL, op, name, y ? 2 : 1, in, 1, &out) ? out : NULL;
}

/* The scalar L = ReduceSum(y ⊙ S) (S: the feeds' "grad:<y>", or none) as the graph's loss. */
static ulc_status add_loss(grad_run *r, ulc_ctx *ctx) {
    const ulc_grad_job *j = r->j;
    ulc_graph *g = r->t->graph;
    ulc_value *y = NULL;
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (j->output ? strcmp(v->name, j->output) == 0 : i == 0) y = v;
    }
    if (!y)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: no output '%s'", j->model,
                        j->output ? j->output : "");
    ulc_gb b;
    ulc_gb_init(&b, g, ulc_model_opset(r->m, ""), ULC_GB_NAMES_DERIVED, ctx);
    char seed_name[512];
    snprintf(seed_name, sizeof seed_name, "grad:%s", y->name);
    ulc_value *seed_feed = ulc_graph_get_value(r->feeds->graph, seed_name), *prod = y;
    if (seed_feed && seed_feed->init) {
        ulc_value *sv = ulc_graph_add_value(g, seed_name, ctx);
        if (!sv) return ctx->status;
        sv->flags |= ULC_VALUE_INPUT;
        if (ulc_ptrvec_push(&g->inputs, sv) != 0) return ULC_ERR_NOMEM;
        ULC_TRY(bind(r, sv, seed_feed->init, j->feeds, ctx));
        if (!(prod = named_op(&b, "Mul", "ulc.grad.prod", y, sv))) return ctx->status;
    }
    r->loss = named_op(&b, "ReduceSum", "ulc.grad.loss", prod, NULL);
    ulc_gb_attr_int(&b, r->loss, "keepdims", 0);
    return r->loss ? b.status : ctx->status;
}

/* The backward graph; the loss and the gradients become the graph's only outputs. */
static ulc_status add_backward(grad_run *r, ulc_ctx *ctx) {
    ulc_graph *g = r->t->graph;
    int64_t opset = ulc_model_opset(r->m, "");
    int attns = 0; /* attention as one node, as training graphs have it */
    ULC_TRY(ulc_train_fuse_attention(g, opset, r->bs, r->nb, r->wrt, r->nw, &attns, ctx));
    ULC_TRY(ulc_autodiff(g, opset, r->loss, r->nw, r->wrt, r->bs, r->nb, r->grads, ctx));
    for (size_t i = 0; i < g->outputs.len; i++)
        ((ulc_value *)g->outputs.items[i])->flags &= ~(uint32_t)ULC_VALUE_OUTPUT;
    ulc_ptrvec_clear(&g->outputs);
    r->loss->flags |= ULC_VALUE_OUTPUT;
    ulc_ptrvec_push(&g->outputs, r->loss);
    for (int i = 0; i < r->nw; i++)
        if (r->grads[i] && !(r->grads[i]->flags & ULC_VALUE_OUTPUT)) {
            r->grads[i]->flags |= ULC_VALUE_OUTPUT;
            ulc_ptrvec_push(&g->outputs, r->grads[i]);
        }
    return ULC_OK;
}

/* Copies o into res as tensor `name`. */
static ulc_status add_result(ulc_model *res, const char *name, const ulc_rt_tensor *o,
                             ulc_ctx *ctx) {
    ulc_tensor *ot = ulc_tensor_new(res->graph, name, o->dtype, o->rank, o->dims, ctx);
    size_t nbytes = ulc_rt_numel(o) * sizeof(float);
    void *copy = calloc(1, nbytes ? nbytes : 1);
    ulc_value *ov = ulc_graph_add_value(res->graph, name, ctx);
    if (!ot || !copy || !ov) {
        free(copy);
        return ULC_ERR_NOMEM;
    }
    if (o->data) memcpy(copy, o->data, nbytes);
    ULC_TRY(ulc_tensor_set_owned(res->graph, ot, copy, nbytes, ctx));
    return ulc_value_set_init(res->graph, ov, ot, ctx);
}

/* Runs the graph and writes "loss" and "grad:<name>" (zeros: no path to the output). */
static ulc_status run_and_write(grad_run *r, ulc_ctx *ctx) {
    ulc_session_opts so = ulc_session_defaults();
    so.threads = r->j->threads;
    ulc_session *s = NULL;
    ulc_model *res = NULL;
    ulc_status st = ulc_session_create(r->t, &so, &s, ctx);
    for (int i = 0; st == ULC_OK && i < r->nb; i++)
        st = ulc_session_set_input(s, r->bs[i].name, &r->bs[i].t, ctx);
    if (st == ULC_OK) st = ulc_session_run(s, ctx);
    if (st == ULC_OK && !(res = ulc_model_create()))
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int i = -1; st == ULC_OK && i < r->nw; i++) {
        char name[512];
        const ulc_value *src = i < 0 ? r->loss : r->grads[i];
        if (i < 0) snprintf(name, sizeof name, "loss");
        else snprintf(name, sizeof name, "grad:%s", r->wrt[i]->name);
        const ulc_rt_tensor *o = src ? ulc_session_output(s, src->name) : NULL;
        ulc_rt_tensor zero = {.dtype = ULC_DT_F32};
        if (!o) { /* no path from this value to the output: its gradient is zero */
            for (int k = 0; k < r->nb; k++)
                if (!strcmp(r->bs[k].name, r->wrt[i]->name)) zero = r->bs[k].t;
            zero.data = NULL;
            o = &zero;
        }
        st = add_result(res, name, o, ctx);
    }
    if (st == ULC_OK) st = ulc_safetensors_export(res, r->j->out, NULL, ctx);
    ulc_session_free(s);
    ulc_model_free(res);
    return st;
}

ulc_status ulc_grad_files(const ulc_grad_job *j, ulc_ctx *ctx) {
    grad_run r = {.j = j};
    ulc_fileset fs;
    ulc_fileset_begin(&fs, 0, ctx);
    ulc_fileset_tag(&fs, "model", 1);
    ulc_status st = ulc_io_load_model(j->model, NULL, &r.m, ctx);
    ulc_fileset_tag(&fs, "feeds (--input)", 0);
    if (st == ULC_OK) st = ulc_safetensors_import(j->feeds, &r.feeds, ctx);
    if (st == ULC_OK) st = ulc_fileset_check_output(&fs, "output", j->out, ctx);
    if (st == ULC_OK) st = ulc_model_clone_shallow(r.m, &r.t, ctx);
    if (st == ULC_OK) {
        r.bs = calloc(MAX_WRT + 64, sizeof *r.bs);
        r.wrt = calloc(MAX_WRT, sizeof *r.wrt);
        r.grads = calloc(MAX_WRT, sizeof *r.grads);
        if (!r.bs || !r.wrt || !r.grads) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    if (st == ULC_OK) st = bind_inputs(&r, ctx);
    if (st == ULC_OK) st = add_loss(&r, ctx);
    if (st == ULC_OK) st = add_backward(&r, ctx);
    if (st == ULC_OK) st = run_and_write(&r, ctx);
    ulc_model_free(r.t);
    ulc_model_free(r.feeds);
    ulc_model_free(r.m);
    free(r.bs);
    free(r.wrt);
    free(r.grads);
    return ulc_fileset_end(&fs, st, ctx);
}

void ulc_grad_print_ops(FILE *out) {
    for (int op = 1; op < ULC_OP_ULC_FIRST_; op++)
        if (ulc_autodiff_has_rule((ulc_op)op)) fprintf(out, "%s\n", ulc_op_name((ulc_op)op));
}
