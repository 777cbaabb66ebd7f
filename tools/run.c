/*
 * run.c — `ulc run`, `ulc eval` and `ulc ops`: executing a model on the CPU runtime.
 *
 *   ulc run MODEL --input IN.safetensors -o OUT.safetensors [--threads N] [--repeat N] [--profile]
 *   ulc eval MODEL --data DATA.safetensors [--json] [--batch N] [--threads N]
 *   ulc ops [--backend cpu]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/file.h"
#include "export/safetensors_export.h"
#include "import/safetensors_import.h"
#include "runtime/runtime.h"
#include "passes/autodiff.h"
#include "tools/cli.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A runtime view of a safetensors tensor (its bytes stay in the mapped file). */
static ulc_status tensor_view(const ulc_tensor *t, const char *file, ulc_rt_tensor *rt, ulc_ctx *ctx) {
    if (t->rank > ULC_RT_MAX_RANK)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %d (at most %d)", file,
                        t->name, t->rank, ULC_RT_MAX_RANK);
    memset(rt, 0, sizeof *rt);
    rt->dtype = t->dtype;
    rt->rank = t->rank;
    for (int d = 0; d < t->rank; d++) rt->dims[d] = t->dims[d];
    rt->data = (void *)(uintptr_t)t->data;
    rt->nbytes = t->nbytes;
    return ULC_OK;
}

/* The graph inputs a caller must feed: inputs that are not also initializers (defaults). */
static int is_fed_input(const ulc_value *v) { return !(v->flags & ULC_VALUE_INITIALIZER); }

static int parse_threads(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 4096) return 0;
    *out = (int)v;
    return 1;
}

/* ---- ulc run ------------------------------------------------------------------------------- */

int ulc_cli_run(int argc, char **argv) {
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    ulc_session_opts so = ulc_session_defaults();
    int repeat = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--input") == 0 || strcmp(a, "-i") == 0) {
            if (!has_val) return ulc_cli_usage_error("run: %s needs a path", a);
            in_path = argv[++i];
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!has_val) return ulc_cli_usage_error("run: %s needs a path", a);
            out_path = argv[++i];
        } else if (strcmp(a, "--threads") == 0) {
            if (!has_val || !parse_threads(argv[i + 1], &so.threads))
                return ulc_cli_usage_error("run: --threads needs a count (0 = every core)");
            i++;
        } else if (strcmp(a, "--repeat") == 0) {
            char *end;
            long v = has_val ? strtol(argv[i + 1], &end, 10) : 0;
            if (!has_val || *end || v < 1 || v > 1000000)
                return ulc_cli_usage_error("run: --repeat needs a count >= 1");
            repeat = (int)v;
            i++;
        } else if (strcmp(a, "--profile") == 0) {
            so.profile = 1;
        } else if (strcmp(a, "--backend") == 0) {
            if (!has_val) return ulc_cli_usage_error("run: --backend needs a name");
            so.backend = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return ulc_cli_usage_error("run: unknown option '%s'", a);
        } else if (model_path) {
            return ulc_cli_usage_error("run: more than one model given ('%s')", a);
        } else {
            model_path = a;
        }
    }
    if (!model_path) return ulc_cli_usage_error("run: no model given");
    if (!in_path) return ulc_cli_usage_error("run: no input given (--input IN.safetensors)");
    if (!out_path) return ulc_cli_usage_error("run: no output given (-o OUT.safetensors)");
    if (ulc_path_same_file(out_path, model_path) || ulc_path_same_file(out_path, in_path))
        return ulc_cli_usage_error("run: the output '%s' would overwrite an input", out_path);

    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = NULL, *in = NULL, *out = NULL;
    ulc_session *s = NULL;
    double *times = NULL;
    int rc = ULC_EXIT_OK;
    if (ulc_cli_load_model(model_path, &m, &ctx) != ULC_OK) goto fail;
    if (ulc_safetensors_import(in_path, &in, &ctx) != ULC_OK) goto fail;
    if (ulc_session_create(m, &so, &s, &ctx) != ULC_OK) goto fail;
    /* every tensor of IN feeds a graph input; every fed input must be there */
    const ulc_graph *g = m->graph;
    for (size_t i = 0; i < in->graph->inits.len; i++) {
        ulc_value *tv = in->graph->inits.items[i];
        ulc_value *gv = ulc_graph_get_value(g, tv->name);
        if (!gv || !(gv->flags & ULC_VALUE_INPUT)) {
            ulc_fail(&ctx, ULC_ERR_INVALID, "%s: tensor '%s' is not an input of %s (its inputs: ",
                     in_path, tv->name, model_path);
            size_t o = strlen(ctx.msg);
            for (size_t j = 0; j < g->inputs.len && o < sizeof ctx.msg; j++)
                o += (size_t)snprintf(ctx.msg + o, sizeof ctx.msg - o, "%s'%s'", j ? ", " : "",
                                      ((ulc_value *)g->inputs.items[j])->name);
            if (o < sizeof ctx.msg) snprintf(ctx.msg + o, sizeof ctx.msg - o, ")");
            goto fail;
        }
        ulc_rt_tensor rt;
        if (tensor_view(tv->init, in_path, &rt, &ctx) != ULC_OK) goto fail;
        if (ulc_session_set_input(s, tv->name, &rt, &ctx) != ULC_OK) {
            ulc_fail(&ctx, ctx.status, "%s", in_path);
            goto fail;
        }
    }
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (is_fed_input(v) && !ulc_graph_get_value(in->graph, v->name)) {
            ulc_fail(&ctx, ULC_ERR_INVALID, "%s: no tensor for the model's input '%s'", in_path, v->name);
            goto fail;
        }
    }
    times = calloc((size_t)repeat, sizeof *times);
    if (!times) {
        ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int r = 0; r < repeat; r++) {
        double t0 = now_ms();
        if (ulc_session_run(s, &ctx) != ULC_OK) goto fail;
        times[r] = now_ms() - t0;
    }
    if (repeat > 1) {
        double first = times[0];
        qsort(times + 1, (size_t)repeat - 1, sizeof *times, cmp_double);
        size_t planned, unshared;
        ulc_session_memory(s, &planned, &unshared);
        fprintf(stderr, "ulc run: first run (with planning) %.3f ms; median of %d more %.3f ms, "
                        "min %.3f ms; activations %.1f MiB (%.1f MiB unshared)\n",
                first, repeat - 1, times[1 + (repeat - 1) / 2], times[1], planned / 1048576.0,
                unshared / 1048576.0);
    }
    if (so.profile) ulc_session_profile(s, stderr);
    /* outputs, copied into a weights-only model and written atomically */
    out = ulc_model_create();
    if (!out) {
        ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    out->source_format = ULC_FORMAT_SAFETENSORS;
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (ulc_graph_get_value(out->graph, v->name)) continue; /* listed twice */
        const ulc_rt_tensor *t = ulc_session_output(s, v->name);
        ulc_tensor *ot = ulc_tensor_new(out->graph, v->name, t->dtype, t->rank, t->dims, &ctx);
        if (!ot) goto fail;
        void *copy = malloc(t->nbytes ? t->nbytes : 1);
        if (!copy) {
            ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory (output '%s')", v->name);
            goto fail;
        }
        if (t->nbytes) memcpy(copy, t->data, t->nbytes);
        ulc_value *ov = ulc_graph_add_value(out->graph, v->name, &ctx);
        if (!ov || ulc_tensor_set_owned(out->graph, ot, copy, t->nbytes, &ctx) != ULC_OK ||
            ulc_value_set_init(out->graph, ov, ot, &ctx) != ULC_OK)
            goto fail;
    }
    if (ulc_safetensors_export(out, out_path, NULL, &ctx) != ULC_OK) goto fail;
    goto done;
fail:
    rc = ulc_cli_report(&ctx);
done:
    free(times);
    ulc_session_free(s);
    ulc_model_free(out);
    ulc_model_free(in);
    ulc_model_free(m);
    return rc;
}

/* ---- ulc eval ------------------------------------------------------------------------------ */

int ulc_cli_eval(int argc, char **argv) {
    const char *model_path = NULL, *data_path = NULL, *in_name = NULL, *out_name = NULL;
    ulc_session_opts so = ulc_session_defaults();
    int json = 0;
    long batch = 64;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--data") == 0) {
            if (!has_val) return ulc_cli_usage_error("eval: --data needs a path");
            data_path = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--threads") == 0) {
            if (!has_val || !parse_threads(argv[i + 1], &so.threads))
                return ulc_cli_usage_error("eval: --threads needs a count (0 = every core)");
            i++;
        } else if (strcmp(a, "--batch") == 0) {
            char *end;
            batch = has_val ? strtol(argv[i + 1], &end, 10) : 0;
            if (!has_val || *end || batch < 1 || batch > 1 << 20)
                return ulc_cli_usage_error("eval: --batch needs a size >= 1");
            i++;
        } else if (strcmp(a, "--input") == 0) {
            if (!has_val) return ulc_cli_usage_error("eval: --input needs the model input's name");
            in_name = argv[++i];
        } else if (strcmp(a, "--output") == 0) {
            if (!has_val) return ulc_cli_usage_error("eval: --output needs the model output's name");
            out_name = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return ulc_cli_usage_error("eval: unknown option '%s'", a);
        } else if (model_path) {
            return ulc_cli_usage_error("eval: more than one model given ('%s')", a);
        } else {
            model_path = a;
        }
    }
    if (!model_path) return ulc_cli_usage_error("eval: no model given");
    if (!data_path) return ulc_cli_usage_error("eval: no data given (--data DATA.safetensors)");

    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = NULL, *data = NULL;
    ulc_session *s = NULL;
    int64_t *confusion = NULL;
    int rc = ULC_EXIT_OK;
    if (ulc_cli_load_model(model_path, &m, &ctx) != ULC_OK) goto fail;
    if (ulc_safetensors_import(data_path, &data, &ctx) != ULC_OK) goto fail;
    const ulc_graph *g = m->graph;
    /* the model's input and output */
    const ulc_value *gin = NULL, *gout = NULL;
    int n_fed = 0;
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (!is_fed_input(v)) continue;
        n_fed++;
        if (!in_name || strcmp(v->name, in_name) == 0) gin = gin && !in_name ? gin : v;
    }
    if (in_name && !gin) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: no input named '%s'", model_path, in_name);
        goto fail;
    }
    if (!in_name && n_fed != 1) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s has %d inputs; name the one the data feeds with --input",
                 model_path, n_fed);
        goto fail;
    }
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (out_name ? strcmp(v->name, out_name) == 0 : i == 0) gout = v;
    }
    if (!gout) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: no output named '%s'", model_path, out_name ? out_name : "");
        goto fail;
    }
    /* the data: `input` (or the model input's own name) and `label` */
    ulc_value *xv = ulc_graph_get_value(data->graph, "input");
    if (!xv) xv = ulc_graph_get_value(data->graph, gin->name);
    if (!xv) xv = ulc_graph_get_value(data->graph, "input_ids");
    ulc_value *yv = ulc_graph_get_value(data->graph, "label");
    if (!xv || !yv || !xv->init || !yv->init) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: expected tensors 'input' (the model's input) and 'label' "
                 "(int64 [N])", data_path);
        goto fail;
    }
    const ulc_tensor *X = xv->init, *Y = yv->init;
    if (Y->dtype != ULC_DT_I64 || Y->rank != 1 || X->rank < 1 || X->dims[0] != Y->dims[0]) {
        ulc_fail(&ctx, ULC_ERR_INVALID, "%s: 'label' must be int64 [N] with N = the first dim of '%s' "
                 "(%lld)", data_path, xv->name, X->rank ? (long long)X->dims[0] : 0LL);
        goto fail;
    }
    if (ulc_session_create(m, &so, &s, &ctx) != ULC_OK) goto fail;
    int64_t n = X->dims[0], n_classes = 0, correct = 0;
    size_t row_bytes = n ? X->nbytes / (size_t)n : 0;
    const uint8_t *xb = X->data;
    for (int64_t b0 = 0; b0 < n; b0 += batch) {
        int64_t bn = n - b0 < batch ? n - b0 : batch;
        ulc_rt_tensor xt;
        if (tensor_view(X, data_path, &xt, &ctx) != ULC_OK) goto fail;
        xt.dims[0] = bn;
        xt.data = (void *)(uintptr_t)(xb + (size_t)b0 * row_bytes);
        xt.nbytes = (size_t)bn * row_bytes;
        if (ulc_session_set_input(s, gin->name, &xt, &ctx) != ULC_OK ||
            ulc_session_run(s, &ctx) != ULC_OK) {
            ulc_fail(&ctx, ctx.status, "%s: batch at row %lld", data_path, (long long)b0);
            goto fail;
        }
        const ulc_rt_tensor *o = ulc_session_output(s, gout->name);
        if (o->rank != 2 || o->dims[0] != bn || o->dims[1] < 1 ||
            (o->dtype != ULC_DT_F32 && o->dtype != ULC_DT_F64)) {
            char sh[128];
            ulc_fail(&ctx, ULC_ERR_INVALID, "%s: output '%s' is %s; eval needs float scores [N, classes]",
                     model_path, gout->name, ulc_rt_shape_str(o, sh, sizeof sh));
            goto fail;
        }
        if (!confusion) {
            n_classes = o->dims[1];
            confusion = calloc((size_t)(n_classes * n_classes), sizeof *confusion);
            if (!confusion) {
                ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
        for (int64_t r = 0; r < bn; r++) {
            int64_t label;
            memcpy(&label, (const uint8_t *)Y->data + 8 * (size_t)(b0 + r), 8);
            if (label < 0 || label >= n_classes) {
                ulc_fail(&ctx, ULC_ERR_INVALID, "%s: label[%lld] = %lld is outside the model's %lld classes",
                         data_path, (long long)(b0 + r), (long long)label, (long long)n_classes);
                goto fail;
            }
            int64_t best = 0;
            double bv = -INFINITY;
            for (int64_t c = 0; c < n_classes; c++) {
                double v = o->dtype == ULC_DT_F32 ? ((const float *)o->data)[r * n_classes + c]
                                                  : ((const double *)o->data)[r * n_classes + c];
                if (v > bv) { /* first maximum wins, as argmax does; NaN never wins */
                    bv = v;
                    best = c;
                }
            }
            confusion[label * n_classes + best]++;
            correct += best == label;
        }
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model_path);
        cJSON_AddStringToObject(o, "data", data_path);
        cJSON_AddNumberToObject(o, "n", (double)n);
        cJSON_AddNumberToObject(o, "correct", (double)correct);
        cJSON_AddNumberToObject(o, "accuracy", n ? (double)correct / (double)n : 0.0);
        cJSON *pc = cJSON_AddArrayToObject(o, "per_class");
        cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
        for (int64_t c = 0; c < n_classes; c++) {
            int64_t cn = 0;
            cJSON *row = cJSON_CreateArray();
            for (int64_t p = 0; p < n_classes; p++) {
                cn += confusion[c * n_classes + p];
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)confusion[c * n_classes + p]));
            }
            cJSON_AddItemToArray(cm, row);
            int64_t cc = confusion[c * n_classes + c];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "class", (double)c);
            cJSON_AddNumberToObject(e, "n", (double)cn);
            cJSON_AddNumberToObject(e, "correct", (double)cc);
            if (cn) cJSON_AddNumberToObject(e, "accuracy", (double)cc / (double)cn);
            else cJSON_AddNullToObject(e, "accuracy"); /* a class with no samples has none */
            cJSON_AddItemToArray(pc, e);
        }
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        if (!text) {
            ulc_fail(&ctx, ULC_ERR_NOMEM, "out of memory");
            goto fail;
        }
        printf("%s\n", text);
        free(text);
    } else {
        printf("%s on %s: accuracy %.4f (%lld/%lld)\n\n", model_path, data_path,
               n ? (double)correct / (double)n : 0.0, (long long)correct, (long long)n);
        printf("class        n  correct  accuracy\n");
        for (int64_t c = 0; c < n_classes; c++) {
            int64_t cn = 0;
            for (int64_t p = 0; p < n_classes; p++) cn += confusion[c * n_classes + p];
            int64_t cc = confusion[c * n_classes + c];
            if (cn) printf("%5lld %8lld %8lld    %.4f\n", (long long)c, (long long)cn, (long long)cc,
                           (double)cc / (double)cn);
            else printf("%5lld %8lld %8lld         -\n", (long long)c, 0LL, 0LL);
        }
        printf("\nconfusion matrix (rows: label, columns: predicted)\n     ");
        for (int64_t p = 0; p < n_classes; p++) printf(" %5lld", (long long)p);
        printf("\n");
        for (int64_t c = 0; c < n_classes; c++) {
            printf("%5lld", (long long)c);
            for (int64_t p = 0; p < n_classes; p++) printf(" %5lld", (long long)confusion[c * n_classes + p]);
            printf("\n");
        }
    }
    goto done;
fail:
    rc = ulc_cli_report(&ctx);
done:
    free(confusion);
    ulc_session_free(s);
    ulc_model_free(data);
    ulc_model_free(m);
    return rc;
}

/* ---- ulc ops ------------------------------------------------------------------------------- */

int ulc_cli_ops(int argc, char **argv) {
    const char *backend = "cpu";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) backend = argv[++i];
        else if (strcmp(argv[i], "--grad") == 0) { /* the ops autodiff can differentiate */
            for (int op = 1; op < ULC_OP_ULC_FIRST_; op++)
                if (ulc_autodiff_has_rule((ulc_op)op)) printf("%s\n", ulc_op_name((ulc_op)op));
            return ULC_EXIT_OK;
        } else return ulc_cli_usage_error("ops: unknown argument '%s'", argv[i]);
    }
    const char *const *ops = ulc_backend_ops(backend);
    if (!ops) return ulc_cli_usage_error("ops: unknown backend '%s' (available: cpu)", backend);
    for (int i = 0; ops[i]; i++) printf("%s\n", ops[i]);
    return ULC_EXIT_OK;
}
