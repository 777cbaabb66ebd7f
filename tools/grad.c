/*
 * grad.c — `ulc grad`: gradients of a model's output with respect to its inputs and weights,
 * computed by ulc's autodiff and CPU runtime (for checking them against finite differences or
 * another framework, and for debugging backward rules).
 *
 *   ulc grad MODEL --input FEEDS.safetensors -o GRADS.safetensors [--output NAME]
 *            [--wrt GLOB|GLOB] [--threads N]
 *
 * The differentiated scalar is L = Σ output ⊙ S, where S is the feeds' tensor "grad:<output>"
 * (torch's y.backward(S)), or all ones when there is none. --wrt picks graph inputs and
 * initializers by name (default: every float32 graph input). GRADS holds "loss" and
 * "grad:<name>" for each picked value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/glob.h"
#include "export/safetensors_export.h"
#include "import/safetensors_import.h"
#include "ir/clone.h"
#include "train/autodiff.h"
#include "runtime/runtime.h"
#include "io/model.h"
#include "tools/cli.h"

#define MAX_WRT 4096

static ulc_value *node1(ulc_graph *g, const char *op, const char *name, ulc_value *a,
                        ulc_value *b, ulc_ctx *ctx) {
    ulc_node *n = ulc_graph_add_node(g, "", op, name, b ? 2 : 1, 1, 1, ctx);
    ulc_value *v = n ? ulc_graph_add_value(g, name, ctx) : NULL;
    if (!v) return NULL;
    ulc_node_set_input(n, 0, a);
    if (b) ulc_node_set_input(n, 1, b);
    if (ulc_node_set_output(n, 0, v, ctx) != ULC_OK) return NULL;
    return v;
}

static ulc_status grad_main(const char *model_path, const char *feeds_path, const char *out_path,
                            const char *out_name, const char *globs, int threads, ulc_ctx *ctx) {
    ulc_model *m = NULL, *feeds = NULL, *t = NULL, *res = NULL;
    ulc_session *s = NULL;
    ulc_rt_binding *bs = NULL;
    ulc_value **wrt = NULL, **grads = NULL;
    ulc_status st;
    if ((st = ulc_io_load_model(model_path, NULL, &m, ctx)) != ULC_OK) goto done;
    if ((st = ulc_safetensors_import(feeds_path, &feeds, ctx)) != ULC_OK) goto done;
    if ((st = ulc_model_clone_shallow(m, &t, ctx)) != ULC_OK) goto done;
    ulc_graph *g = t->graph;
    int nb = 0, nw = 0;
    bs = calloc(MAX_WRT + 64, sizeof *bs);
    wrt = calloc(MAX_WRT, sizeof *wrt);
    grads = calloc(MAX_WRT, sizeof *grads);
    if (!bs || !wrt || !grads) {
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* feeds bind graph inputs; picked initializers become inputs bound to their own data */
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        ulc_value *f = ulc_graph_get_value(feeds->graph, v->name);
        if (!f || !f->init) {
            st = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: no tensor for model input '%s'", feeds_path,
                          v->name);
            goto done;
        }
        bs[nb].name = v->name;
        if ((st = ulc_rt_tensor_view(f->init, feeds_path, &bs[nb++].t, ctx)) != ULC_OK) goto done;
        if (nw < MAX_WRT && f->init->dtype == ULC_DT_F32 && (globs ? ulc_glob_any(globs, v->name) : 1))
            wrt[nw++] = v;
    }
    for (size_t i = 0; globs && i < g->inits.len; i++) {
        ulc_value *v = g->inits.items[i];
        if (!v->init || v->init->dtype != ULC_DT_F32 || !ulc_glob_any(globs, v->name) || nw == MAX_WRT)
            continue;
        const ulc_tensor *data = v->init;
        ulc_ptrvec_remove(&g->inits, v);
        i--;
        v->flags = (v->flags & ~(uint32_t)ULC_VALUE_INITIALIZER) | ULC_VALUE_INPUT;
        v->init = NULL;
        if (ulc_ptrvec_push(&g->inputs, v) != 0) {
            st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
            goto done;
        }
        bs[nb].name = v->name;
        if ((st = ulc_rt_tensor_view(data, model_path, &bs[nb++].t, ctx)) != ULC_OK) goto done;
        wrt[nw++] = v;
    }
    if (!nw) {
        st = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "nothing to differentiate: --wrt matches no float32 "
                      "input or initializer");
        goto done;
    }
    ulc_value *y = NULL;
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (out_name ? strcmp(v->name, out_name) == 0 : i == 0) y = v;
    }
    if (!y) {
        st = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: no output '%s'", model_path,
                      out_name ? out_name : "");
        goto done;
    }
    char seed_name[512];
    snprintf(seed_name, sizeof seed_name, "grad:%s", y->name);
    ulc_value *seed_feed = ulc_graph_get_value(feeds->graph, seed_name), *prod = y;
    if (seed_feed && seed_feed->init) {
        ulc_value *sv = ulc_graph_add_value(g, seed_name, ctx);
        if (!sv) { st = ctx->status; goto done; }
        sv->flags |= ULC_VALUE_INPUT;
        if (ulc_ptrvec_push(&g->inputs, sv) != 0) { st = ULC_ERR_NOMEM; goto done; }
        bs[nb].name = sv->name;
        if ((st = ulc_rt_tensor_view(seed_feed->init, feeds_path, &bs[nb++].t, ctx)) != ULC_OK) goto done;
        if (!(prod = node1(g, "Mul", "ulc.grad.prod", y, sv, ctx))) { st = ctx->status; goto done; }
    }
    ulc_value *loss = node1(g, "ReduceSum", "ulc.grad.loss", prod, NULL, ctx);
    if (!loss) { st = ctx->status; goto done; }
    ulc_attr *kd = ulc_node_add_attr(loss->producer, "keepdims");
    kd->type = ULC_ATTR_INT;
    kd->i = 0;
    kd->has_i = 1;
    int64_t opset = ulc_model_opset(m, "");
    if ((st = ulc_autodiff(g, opset, loss, nw, wrt, bs, nb, grads, ctx)) != ULC_OK) goto done;
    for (size_t i = 0; i < g->outputs.len; i++)
        ((ulc_value *)g->outputs.items[i])->flags &= ~(uint32_t)ULC_VALUE_OUTPUT;
    ulc_ptrvec_clear(&g->outputs);
    loss->flags |= ULC_VALUE_OUTPUT;
    ulc_ptrvec_push(&g->outputs, loss);
    for (int i = 0; i < nw; i++)
        if (grads[i] && !(grads[i]->flags & ULC_VALUE_OUTPUT)) {
            grads[i]->flags |= ULC_VALUE_OUTPUT;
            ulc_ptrvec_push(&g->outputs, grads[i]);
        }
    ulc_session_opts so = ulc_session_defaults();
    so.threads = threads;
    if ((st = ulc_session_create(t, &so, &s, ctx)) != ULC_OK) goto done;
    for (int i = 0; i < nb; i++)
        if ((st = ulc_session_set_input(s, bs[i].name, &bs[i].t, ctx)) != ULC_OK) goto done;
    if ((st = ulc_session_run(s, ctx)) != ULC_OK) goto done;
    if (!(res = ulc_model_create())) { st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = -1; i < nw; i++) {
        char name[512];
        const ulc_value *src = i < 0 ? loss : grads[i];
        if (i < 0) snprintf(name, sizeof name, "loss");
        else snprintf(name, sizeof name, "grad:%s", wrt[i]->name);
        const ulc_rt_tensor *r = src ? ulc_session_output(s, src->name) : NULL;
        ulc_rt_tensor zero = {.dtype = ULC_DT_F32};
        if (!r) { /* no path from this value to the output: its gradient is zero */
            ulc_rt_tensor *b = NULL;
            for (int k = 0; k < nb && !b; k++) if (!strcmp(bs[k].name, wrt[i]->name)) b = &bs[k].t;
            zero = *b;
            zero.data = NULL;
        }
        const ulc_rt_tensor *o = r ? r : &zero;
        ulc_tensor *ot = ulc_tensor_new(res->graph, name, o->dtype, o->rank, o->dims, ctx);
        size_t nbytes = ulc_rt_numel(o) * sizeof(float);
        void *copy = calloc(1, nbytes ? nbytes : 1);
        ulc_value *ov = ulc_graph_add_value(res->graph, name, ctx);
        if (!ot || !copy || !ov) { free(copy); st = ULC_ERR_NOMEM; goto done; }
        if (o->data) memcpy(copy, o->data, nbytes);
        if ((st = ulc_tensor_set_owned(res->graph, ot, copy, nbytes, ctx)) != ULC_OK ||
            (st = ulc_value_set_init(res->graph, ov, ot, ctx)) != ULC_OK)
            goto done;
    }
    st = ulc_safetensors_export(res, out_path, NULL, ctx);
done:
    ulc_session_free(s);
    ulc_model_free(res);
    ulc_model_free(t);
    ulc_model_free(feeds);
    ulc_model_free(m);
    free(bs);
    free(wrt);
    free(grads);
    return st;
}

int ulc_cli_grad(int argc, char **argv) {
    const char *in = NULL, *feeds = NULL, *out = NULL, *out_name = NULL, *globs = NULL;
    int threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--input") || !strcmp(a, "-o") || !strcmp(a, "--output") ||
             !strcmp(a, "--wrt") || !strcmp(a, "--threads")) && i + 1 >= argc)
            return ulc_cli_usage_error("grad: %s needs a value", a);
        if (!strcmp(a, "--input")) feeds = argv[++i];
        else if (!strcmp(a, "-o")) out = argv[++i];
        else if (!strcmp(a, "--output")) out_name = argv[++i];
        else if (!strcmp(a, "--wrt")) globs = argv[++i];
        else if (!strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (a[0] == '-' && a[1]) return ulc_cli_usage_error("grad: unknown option '%s'", a);
        else if (in) return ulc_cli_usage_error("grad: more than one model given ('%s')", a);
        else in = a;
    }
    if (!in || !feeds || !out)
        return ulc_cli_usage_error("grad: usage: ulc grad MODEL --input FEEDS.safetensors -o OUT.safetensors");
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    if (grad_main(in, feeds, out, out_name, globs, threads, &ctx) != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}
