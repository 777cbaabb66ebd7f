/* inspect.c — `ulc inspect`: what a model is, for people (text) and machines (--json). */
#include "jobs/inspect.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model.h"
#include "jobs/history.h"

typedef struct op_count {
    const char *domain, *op_type;
    int count;
} op_count;

typedef struct summary {
    op_count *ops;
    int n_ops;
    uint64_t numel[ULC_DT_COUNT_ + 1], bytes[ULC_DT_COUNT_ + 1], tensors[ULC_DT_COUNT_ + 1];
    uint64_t total_numel, total_bytes;
} summary;

static int cmp_ops(const void *a, const void *b) {
    const op_count *x = a, *y = b;
    if (x->count != y->count) return y->count - x->count;
    return strcmp(x->op_type, y->op_type);
}

static int summarize(const ulc_model *m, summary *s) {
    const ulc_graph *g = m->graph;
    memset(s, 0, sizeof *s);
    s->ops = calloc((size_t)g->n_nodes + 1, sizeof *s->ops);
    if (!s->ops) return -1;
    for (const ulc_node *n = g->first; n; n = n->next) {
        const char *d = ulc_domain_is_default(n->domain) ? "" : n->domain;
        int k = 0;
        while (k < s->n_ops && !(strcmp(s->ops[k].op_type, n->op_type) == 0 &&
                                 strcmp(s->ops[k].domain, d) == 0))
            k++;
        if (k == s->n_ops) {
            s->ops[k].domain = d;
            s->ops[k].op_type = n->op_type;
            s->n_ops++;
        }
        s->ops[k].count++;
    }
    qsort(s->ops, (size_t)s->n_ops, sizeof *s->ops, cmp_ops);
    for (size_t i = 0; i < g->inits.len; i++) {
        const ulc_tensor *t = ((const ulc_value *)g->inits.items[i])->init;
        int dt = ulc_dtype_valid(t->dtype) ? t->dtype : ULC_DT_COUNT_;
        s->numel[dt] += t->numel;
        s->bytes[dt] += t->nbytes;
        s->tensors[dt]++;
        s->total_numel += t->numel;
        s->total_bytes += t->nbytes;
    }
    return 0;
}

static void shape_str(const ulc_value *v, char *buf, size_t size) {
    size_t k = 0;
    if (v->type_blob.len) {
        snprintf(buf, size, "(non-tensor type)");
        return;
    }
    k += (size_t)snprintf(buf + k, size - k, "%s",
                          (v->flags & ULC_VALUE_HAS_TYPE) ? ulc_dtype_name(v->dtype) : "?");
    if (v->rank < 0) {
        snprintf(buf + k, size - k, "[unknown shape]");
        return;
    }
    k += (size_t)snprintf(buf + k, size - k, "[");
    for (int i = 0; i < v->rank && k < size; i++) {
        const ulc_dim *d = &v->dims[i];
        if (d->value >= 0)
            k += (size_t)snprintf(buf + k, size - k, "%s%" PRId64, i ? "," : "", d->value);
        else
            k += (size_t)snprintf(buf + k, size - k, "%s%s", i ? "," : "", d->param ? d->param : "?");
    }
    if (k < size) snprintf(buf + k, size - k, "]");
}

static cJSON *value_json(const ulc_value *v) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", v->name);
    cJSON_AddStringToObject(o, "dtype",
                            (v->flags & ULC_VALUE_HAS_TYPE) ? ulc_dtype_name(v->dtype) : "unknown");
    if (v->rank >= 0) {
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int i = 0; i < v->rank; i++) {
            if (v->dims[i].value >= 0) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)v->dims[i].value));
            else cJSON_AddItemToArray(sh, cJSON_CreateString(v->dims[i].param ? v->dims[i].param : "?"));
        }
    } else {
        cJSON_AddNullToObject(o, "shape");
    }
    return o;
}

/* Files other than the model itself that weights are read from. */
static int is_external(const ulc_model *m, const ulc_mapping *mp) {
    return !(m->source_path && strcmp(mp->path, m->source_path) == 0);
}

/* The JSON document; history (m's parsed "ulc_history", or NULL) is moved into it. */
static ulc_status inspect_json(FILE *out, const ulc_model *m, const char *path, const summary *s,
                               cJSON *history, ulc_ctx *ctx) {
    const ulc_graph *g = m->graph;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "path", path);
    cJSON_AddStringToObject(root, "format", m->source_format == ULC_FORMAT_SAFETENSORS ? "safetensors"
                                            : m->source_format == ULC_FORMAT_HF        ? "huggingface"
                                                                                       : "onnx");
    if (m->has_ir_version) cJSON_AddNumberToObject(root, "ir_version", (double)m->ir_version);
    cJSON_AddStringToObject(root, "producer_name", m->producer_name ? m->producer_name : "");
    cJSON_AddStringToObject(root, "producer_version", m->producer_version ? m->producer_version : "");
    cJSON *ops = cJSON_AddObjectToObject(root, "opsets");
    for (int i = 0; i < m->n_opsets; i++)
        cJSON_AddNumberToObject(ops, *m->opsets[i].domain ? m->opsets[i].domain : "ai.onnx",
                                (double)m->opsets[i].version);
    cJSON_AddStringToObject(root, "graph_name", g->name ? g->name : "");
    cJSON *in = cJSON_AddArrayToObject(root, "inputs");
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (!(v->flags & ULC_VALUE_INITIALIZER)) cJSON_AddItemToArray(in, value_json(v));
    }
    cJSON *outs = cJSON_AddArrayToObject(root, "outputs");
    for (size_t i = 0; i < g->outputs.len; i++) cJSON_AddItemToArray(outs, value_json(g->outputs.items[i]));
    cJSON_AddNumberToObject(root, "nodes", g->n_nodes);
    cJSON *hist = cJSON_AddObjectToObject(root, "op_histogram");
    for (int i = 0; i < s->n_ops; i++) {
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", s->ops[i].domain, *s->ops[i].domain ? "." : "",
                 s->ops[i].op_type);
        cJSON_AddNumberToObject(hist, key, s->ops[i].count);
    }
    cJSON *par = cJSON_AddObjectToObject(root, "parameters");
    cJSON_AddNumberToObject(par, "initializers", (double)g->inits.len);
    cJSON_AddNumberToObject(par, "count", (double)s->total_numel);
    cJSON_AddNumberToObject(par, "bytes", (double)s->total_bytes);
    cJSON *by = cJSON_AddObjectToObject(par, "by_dtype");
    for (int dt = 0; dt <= ULC_DT_COUNT_; dt++) {
        if (!s->tensors[dt]) continue;
        cJSON *d = cJSON_AddObjectToObject(by, dt < ULC_DT_COUNT_ ? ulc_dtype_name(dt) : "other");
        cJSON_AddNumberToObject(d, "tensors", (double)s->tensors[dt]);
        cJSON_AddNumberToObject(d, "count", (double)s->numel[dt]);
        cJSON_AddNumberToObject(d, "bytes", (double)s->bytes[dt]);
    }
    cJSON *ext = cJSON_AddArrayToObject(root, "external_files");
    for (size_t i = 0; i < g->maps.len; i++) {
        const ulc_mapping *mp = g->maps.items[i];
        if (!is_external(m, mp)) continue;
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", mp->path);
        cJSON_AddNumberToObject(f, "bytes", (double)mp->size);
        cJSON_AddItemToArray(ext, f);
    }
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    for (int i = 0; i < m->n_metadata; i++)
        cJSON_AddStringToObject(meta, m->metadata[i].key ? m->metadata[i].key : "",
                                m->metadata[i].value ? m->metadata[i].value : "");
    cJSON_AddItemToObject(root, "history", history ? history : cJSON_CreateArray());
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    if (!txt) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory while writing JSON");
    fprintf(out, "%s\n", txt);
    free(txt);
    return ULC_OK;
}

static void human_bytes(uint64_t n, char *buf, size_t size) {
    if (n >= (uint64_t)1 << 30) snprintf(buf, size, "%.2f GiB", (double)n / (1 << 30));
    else if (n >= (uint64_t)1 << 20) snprintf(buf, size, "%.2f MiB", (double)n / (1 << 20));
    else if (n >= 1024) snprintf(buf, size, "%.2f KiB", (double)n / 1024);
    else snprintf(buf, size, "%" PRIu64 " B", n);
}

static void print_params(FILE *out, const ulc_model *m, const summary *s) {
    char b[64];
    human_bytes(s->total_bytes, b, sizeof b);
    fprintf(out, "parameters: %" PRIu64 " in %zu tensors (%s)\n", s->total_numel, m->graph->inits.len, b);
    for (int dt = 0; dt <= ULC_DT_COUNT_; dt++) {
        if (!s->tensors[dt]) continue;
        human_bytes(s->bytes[dt], b, sizeof b);
        fprintf(out, "  %-6s %" PRIu64 " elements in %" PRIu64 " tensors, %s\n",
               dt < ULC_DT_COUNT_ ? ulc_dtype_name(dt) : "other", s->numel[dt], s->tensors[dt], b);
    }
}

/* A weights-only checkpoint (safetensors): no graph to describe. */
static void inspect_text_weights(FILE *out, const ulc_model *m, const char *path, const summary *s) {
    char b[64];
    fprintf(out, "model:     %s (safetensors)\n", path);
    print_params(out, m, s);
    for (int i = 0; i < m->n_metadata; i++)
        fprintf(out, "%s %s = %s\n", i ? "          " : "metadata: ", m->metadata[i].key,
               m->metadata[i].value);
    fprintf(out, "files:\n");
    for (size_t i = 0; i < m->graph->maps.len; i++) {
        const ulc_mapping *mp = m->graph->maps.items[i];
        human_bytes(mp->size, b, sizeof b);
        fprintf(out, "  %s (%s)\n", mp->path, b);
    }
}

static void inspect_text(FILE *out, const ulc_model *m, const char *path, const summary *s) {
    const ulc_graph *g = m->graph;
    char b[512];
    if (m->source_format == ULC_FORMAT_SAFETENSORS) {
        inspect_text_weights(out, m, path, s);
        return;
    }
    if (m->source_format == ULC_FORMAT_HF)
        fprintf(out, "model:     %s (Hugging Face checkpoint; graph built from config.json)\n", path);
    else
        fprintf(out, "model:     %s (ONNX, ir_version %" PRId64 ")\n", path, m->ir_version);
    fprintf(out, "producer:  %s%s%s\n", m->producer_name && *m->producer_name ? m->producer_name : "(none)",
           m->producer_version && *m->producer_version ? " " : "",
           m->producer_version ? m->producer_version : "");
    fprintf(out, "opsets:   ");
    for (int i = 0; i < m->n_opsets; i++)
        fprintf(out, " %s %" PRId64 "%s", *m->opsets[i].domain ? m->opsets[i].domain : "ai.onnx",
               m->opsets[i].version, i + 1 < m->n_opsets ? "," : "");
    fprintf(out, "\ngraph:     %s, %d nodes, %zu initializers\n", g->name ? g->name : "(unnamed)",
           g->n_nodes, g->inits.len);
    fprintf(out, "inputs:\n");
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        shape_str(v, b, sizeof b);
        fprintf(out, "  %-24s %s\n", v->name, b);
    }
    fprintf(out, "outputs:\n");
    for (size_t i = 0; i < g->outputs.len; i++) {
        const ulc_value *v = g->outputs.items[i];
        shape_str(v, b, sizeof b);
        fprintf(out, "  %-24s %s\n", v->name, b);
    }
    fprintf(out, "ops:\n");
    for (int i = 0; i < s->n_ops; i++) {
        char op[256];
        snprintf(op, sizeof op, "%s%s%s", s->ops[i].domain, *s->ops[i].domain ? "." : "",
                 s->ops[i].op_type);
        fprintf(out, "  %-24s %d\n", op, s->ops[i].count);
    }
    print_params(out, m, s);
    int any = 0;
    for (size_t i = 0; i < g->maps.len; i++) {
        const ulc_mapping *mp = g->maps.items[i];
        if (!is_external(m, mp)) continue;
        if (!any++) fprintf(out, "external data:\n");
        human_bytes(mp->size, b, sizeof b);
        fprintf(out, "  %s (%s)\n", mp->path, b);
    }
    if (!any) fprintf(out, "external data: none\n");
}

/* What an entry of the history forgot: "classes 3, 5" or "120 of 1437 rows of data sha256 0123456789ab". */
static void print_forgot(FILE *out, const cJSON *forget) {
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(forget, "classes");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(forget, "rows");
    if (cJSON_IsArray(cl)) {
        fprintf(out, "class%s", cJSON_GetArraySize(cl) == 1 ? "" : "es");
        const char *sep = " ";
        for (const cJSON *v = cl->child; v; v = v->next, sep = ", ")
            fprintf(out, "%s%.0f", sep, v->valuedouble);
        return;
    }
    const char *sha = cJSON_GetObjectItemCaseSensitive(forget, "data_sha256")->valuestring;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(forget, "data_rows");
    fprintf(out, "%d", cJSON_GetArraySize(rows));
    if (cJSON_IsNumber(n)) fprintf(out, " of %.0f", n->valuedouble);
    fprintf(out, " rows of data sha256 %.12s", sha);
}

/* One line per request of the history (checked by ulc_history_read). */
static void print_history(FILE *out, const cJSON *history) {
    int n = cJSON_GetArraySize(history), i = 0;
    fprintf(out, "history:   %d unlearning request%s\n", n, n == 1 ? "" : "s");
    for (const cJSON *e = history->child; e; e = e->next) {
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(e, "ulc");
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(e, "spec_sha256");
        fprintf(out, "  %d. %s: forgot ", ++i,
                cJSON_GetObjectItemCaseSensitive(e, "method")->valuestring);
        print_forgot(out, cJSON_GetObjectItemCaseSensitive(e, "forget"));
        fprintf(out, " (ulc %s", cJSON_IsString(ver) ? ver->valuestring : "?");
        if (cJSON_IsString(spec))
            fprintf(out, ", spec sha256 %.12s", spec->valuestring);
        fprintf(out, ")\n");
    }
}

ulc_status ulc_inspect_model(const ulc_model *m, const char *path, int json, FILE *out,
                             ulc_ctx *ctx) {
    cJSON *history = NULL;
    ULC_TRY(ulc_history_read(m, &history, ctx)); /* a malformed history is an error */
    summary s;
    if (summarize(m, &s) != 0) {
        cJSON_Delete(history);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    ulc_status st = ULC_OK;
    if (json) {
        st = inspect_json(out, m, path, &s, history, ctx);
    } else {
        inspect_text(out, m, path, &s);
        if (history) print_history(out, history);
        cJSON_Delete(history);
    }
    free(s.ops);
    return st;
}

ulc_status ulc_inspect_file(const char *path, int json, FILE *out, ulc_ctx *ctx) {
    ulc_model *m = NULL;
    ULC_TRY(ulc_io_load_model(path, NULL, &m, ctx));
    ulc_status st = ulc_inspect_model(m, path, json, out, ctx);
    ulc_model_free(m);
    return st;
}
