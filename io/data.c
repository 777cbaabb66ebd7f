/* io/data.c — data files and their binding to a model's inputs (data.h). */
#include "io/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/safetensors_import.h"
#include "io/decoder.h"
#include "io/text_data.h"

const char *ulc_value_shape_str(const ulc_value *v, char *buf, size_t n) {
    const char *dt = (v->flags & ULC_VALUE_HAS_TYPE) ? ulc_dtype_name(v->dtype) : "?";
    size_t o = (size_t)snprintf(buf, n, "%s", dt);
    if (v->rank < 0) {
        if (o < n) snprintf(buf + o, n - o, "[?]");
        return buf;
    }
    for (int d = 0; d < v->rank && o < n; d++) {
        const ulc_dim *dm = &v->dims[d];
        const char *sep = d ? "," : "[";
        if (dm->value >= 0)
            o += (size_t)snprintf(buf + o, n - o, "%s%lld", sep, (long long)dm->value);
        else o += (size_t)snprintf(buf + o, n - o, "%s%s", sep, dm->param ? dm->param : "?");
    }
    if (o < n) snprintf(buf + o, n - o, v->rank ? "]" : "[]");
    return buf;
}

const char *ulc_tensor_shape_str(const ulc_tensor *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "%s[", ulc_dtype_name(t->dtype));
    for (int d = 0; d < t->rank && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? "," : "", (long long)t->dims[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* The inputs a caller feeds (not defaulted by an initializer), or the outputs, into names for
 * messages. */
static void value_list(const ulc_graph *g, int outputs, char *buf, size_t n) {
    const ulc_ptrvec *list = outputs ? &g->outputs : &g->inputs;
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0, k = 0; i < list->len && o < n; i++) {
        const ulc_value *v = list->items[i];
        if (!outputs && (v->flags & ULC_VALUE_INITIALIZER)) continue;
        o += (size_t)snprintf(buf + o, n - o, "%s'%s'", k++ ? ", " : "", v->name);
    }
}

/* The main input: `input` by name, else the only fed one, else input_ids. */
static ulc_status main_input(const ulc_model *m, const char *model_path, const char *input,
                             const char *where, const ulc_value **out, ulc_ctx *ctx) {
    const ulc_graph *g = m->graph;
    const ulc_value *main_in = NULL;
    int n_fed = 0;
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        n_fed++;
        if (input ? strcmp(v->name, input) == 0 : n_fed == 1) main_in = v;
    }
    char names[512];
    value_list(g, 0, names, sizeof names);
    if (input && !main_in)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' is not an input of %s (its inputs: %s)",
                        where ? where : "model.input", input, model_path, names);
    if (!input && n_fed > 1) {
        main_in = ulc_graph_get_value(g, "input_ids");
        if (!main_in || !(main_in->flags & ULC_VALUE_INPUT))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s has %d inputs (%s): name the one the data's "
                            "'input' feeds in the spec's model.input", model_path, n_fed, names);
    }
    if (!main_in) return ulc_fail(ctx, ULC_ERR_INVALID, "%s has no inputs to feed", model_path);
    if (n_fed > ULC_IO_MAX_FED)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s has %d inputs (at most %d are supported)",
                        model_path, n_fed, ULC_IO_MAX_FED);
    *out = main_in;
    return ULC_OK;
}

/* The fed inputs after the main one: the others in graph order, a cache's pasts last. */
static void other_inputs(const ulc_graph *g, const ulc_value *main_in, ulc_iface *f) {
    for (int past = 0; past < 2; past++)
        for (size_t i = 0; i < g->inputs.len; i++) {
            const ulc_value *v = g->inputs.items[i];
            if ((v->flags & ULC_VALUE_INITIALIZER) || v == main_in ||
                ulc_decoder_is_past(v) != past)
                continue;
            if (strcmp(v->name, "attention_mask") == 0) f->mask = f->n_fed;
            f->fed[f->n_fed++] = v;
            f->n_past += past;
        }
}

/* A model with past_key_values inputs: they must make a cache (io/decoder.h), the main input
 * is its input_ids, and its output is `logits` unless named. */
static ulc_status cache_inputs(const ulc_model *m, const char *model_path, const char *output,
                               ulc_iface *f, ulc_ctx *ctx) {
    ulc_decoder d;
    ULC_TRY(ulc_decoder_check(m, model_path, &d, ctx));
    if (strcmp(f->fed[0]->name, d.ids) != 0)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: model.input '%s': a model with a cache "
                        "(past_key_values inputs) is fed its text in '%s'", model_path,
                        f->fed[0]->name, d.ids);
    for (int k = 0; k < f->n_fed; k++)
        if (d.position_ids && strcmp(f->fed[k]->name, d.position_ids) == 0) f->pos = k;
    if (!output) f->out = ulc_graph_get_value(m->graph, "logits"); /* checked: an output */
    return ULC_OK;
}

ulc_status ulc_iface_resolve(const ulc_model *m, const char *model_path, const char *input,
                             const char *output, const char *where, ulc_iface *f, ulc_ctx *ctx) {
    const ulc_graph *g = m->graph;
    memset(f, 0, sizeof *f);
    f->mask = f->pos = -1;
    const ulc_value *main_in = NULL;
    char in_where[512], out_where[512], names[512];
    snprintf(in_where, sizeof in_where, "%s%smodel.input%s", where ? where : "",
             where ? ": key '" : "", where ? "'" : "");
    snprintf(out_where, sizeof out_where, "%s%smodel.output%s", where ? where : "",
             where ? ": key '" : "", where ? "'" : "");
    ULC_TRY(main_input(m, model_path, input, in_where, &main_in, ctx));
    f->fed[f->n_fed++] = main_in;
    other_inputs(g, main_in, f);
    if (f->n_past) ULC_TRY(cache_inputs(m, model_path, output, f, ctx));
    value_list(g, 1, names, sizeof names);
    for (size_t i = 0; !f->out && i < g->outputs.len; i++) {
        const ulc_value *v = g->outputs.items[i];
        if (output ? strcmp(v->name, output) == 0 : g->outputs.len == 1) f->out = v;
    }
    if (!f->out && output)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: '%s' is not an output of %s (its outputs: %s)",
                        out_where, output, model_path, names);
    if (!f->out)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s has %zu outputs (%s): name the class scores in "
                        "the spec's model.output", model_path, g->outputs.len, names);
    /* every batch size must be possible: training and scoring use their own */
    for (int k = 0; k < f->n_fed; k++) {
        const ulc_value *v = f->fed[k];
        if (v->rank >= 1 && v->dims[0].value >= 0) {
            char sh[160];
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: input '%s' is %s: its first (batch) "
                            "dim is fixed; forget needs a dynamic batch dim (export the model "
                            "with one)", model_path, v->name, ulc_value_shape_str(v, sh, sizeof sh));
        }
    }
    return ULC_OK;
}

int ulc_iface_made(const ulc_iface *f, int k) {
    return k >= f->n_fed - f->n_past || k == f->pos;
}

/* The columns ulc makes: each a tensor with its dims; positions' bytes. */
typedef struct ulc_data_made {
    ulc_tensor t[ULC_IO_MAX_FED];
    int64_t dims[ULC_IO_MAX_FED][4];
    int64_t *pos;
} ulc_data_made;

/* Past input v fed empty: float32 [rows, heads, 0, head_dim] (its heads and head_dim fixed:
 * ulc_decoder_check). */
static void empty_past(ulc_tensor *t, int64_t *dims, const ulc_value *v, int64_t rows) {
    static const float none[1];
    dims[0] = rows;
    dims[1] = v->dims[1].value;
    dims[2] = 0;
    dims[3] = v->dims[3].value;
    *t = (ulc_tensor){.name = v->name, .dtype = ULC_DT_F32, .rank = 4, .dims = dims,
                      .storage = ULC_STORAGE_OWNED, .data = none, .form = ULC_FORM_RAW};
}

ulc_status ulc_data_make(ulc_data *df, const ulc_iface *f, ulc_ctx *ctx) {
    int n = 0;
    for (int k = 0; k < f->n_fed; k++) n += ulc_iface_made(f, k) && !df->cols[k];
    if (!n) return ULC_OK;
    ulc_data_made *dm = df->made = calloc(1, sizeof *dm);
    const char **names = realloc(df->d.names, ((size_t)df->d.n_cols + (size_t)n + 1) * sizeof *names);
    if (names) df->d.names = names;
    const ulc_tensor **cols = realloc(df->d.cols, ((size_t)df->d.n_cols + (size_t)n + 1) * sizeof *cols);
    if (cols) df->d.cols = cols;
    int64_t W = df->cols[0]->rank == 2 ? df->cols[0]->dims[1] : 0;
    if (!dm || !names || !cols) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (dataset)");
    for (int k = 0; k < f->n_fed; k++) {
        if (!ulc_iface_made(f, k) || df->cols[k]) continue;
        ulc_tensor *t = &dm->t[k];
        const ulc_value *v = f->fed[k];
        if (k == f->pos) { /* 0, 1, ... in every row: transformers' positions of right-padded rows */
            if (!(dm->pos = malloc((size_t)(df->rows * W + 1) * sizeof *dm->pos)))
                return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (dataset)");
            for (int64_t i = 0; i < df->rows * W; i++) dm->pos[i] = i % W;
            dm->dims[k][0] = df->rows;
            dm->dims[k][1] = W;
            *t = (ulc_tensor){.name = v->name, .dtype = ULC_DT_I64, .rank = 2, .dims = dm->dims[k],
                              .numel = (uint64_t)(df->rows * W), .storage = ULC_STORAGE_OWNED,
                              .data = dm->pos, .form = ULC_FORM_RAW};
            t->nbytes = (size_t)t->numel * sizeof(int64_t);
        } else {
            empty_past(t, dm->dims[k], v, df->rows);
        }
        df->cols[k] = t;
        df->d.names[df->d.n_cols] = v->name;
        df->d.cols[df->d.n_cols++] = t;
    }
    return ULC_OK;
}

ulc_status ulc_data_open(const char *key, const char *path, ulc_data *df, ulc_ctx *ctx) {
    df->key = key;
    df->path = path;
    ULC_TRY(ulc_safetensors_import(path, &df->m, ctx));
    const ulc_graph *g = df->m->graph;
    df->d.n_cols = (int)g->inits.len;
    df->d.names = calloc((size_t)df->d.n_cols + 1, sizeof *df->d.names);
    df->d.cols = calloc((size_t)df->d.n_cols + 1, sizeof *df->d.cols);
    df->d.path = path;
    if (!df->d.names || !df->d.cols) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (dataset)");
    for (int i = 0; i < df->d.n_cols; i++) {
        const ulc_value *v = g->inits.items[i];
        df->d.names[i] = v->name;
        df->d.cols[i] = v->init;
    }
    ULC_TRY(ulc_dataset_check(&df->d, ctx));
    df->rows = df->d.n_rows;
    return ULC_OK;
}

/* The column fed input k reads: the main input `input`, `input_ids` or its own name; others
 * their own names. -1 if none. */
static int find_column(const ulc_dataset *d, const ulc_value *v, int k) {
    int c = -1;
    if (k == 0) {
        c = ulc_dataset_find(d, "input");
        if (c < 0) c = ulc_dataset_find(d, "input_ids");
    }
    return c < 0 ? ulc_dataset_find(d, v->name) : c;
}

/* Renames each bound column after its input; a column that bears a fed input's name but is not
 * the one that input reads leaves the view (the trainer finds inputs by name). */
static void name_bound_columns(ulc_data *df, const ulc_iface *f, const int *bound) {
    int w = 0;
    for (int c = 0; c < df->d.n_cols; c++) {
        const char *name = df->d.names[c];
        int keep = 1;
        for (int k = 0; k < f->n_fed; k++) {
            if (bound[k] == c) name = f->fed[k]->name;
            else if (strcmp(df->d.names[c], f->fed[k]->name) == 0) keep = 0;
        }
        if (!keep) continue;
        df->d.names[w] = name;
        df->d.cols[w++] = df->d.cols[c];
    }
    df->d.n_cols = w;
}

ulc_status ulc_data_load(const char *key, const char *path, const char *model_path,
                         const ulc_iface *f, ulc_data *df, ulc_ctx *ctx) {
    ulc_status st = ulc_data_open(key, path, df, ctx);
    if (st != ULC_OK) return df->m ? ulc_fail(ctx, st, "%s", key) : st;
    char sh[160], want[160];
    int bound[ULC_IO_MAX_FED];
    for (int k = 0; k < f->n_fed; k++) {
        const ulc_value *v = f->fed[k];
        int c = bound[k] = k >= f->n_fed - f->n_past ? -1 : find_column(&df->d, v, k);
        df->cols[k] = NULL;
        if (c < 0 && ulc_iface_made(f, k)) continue; /* ulc_data_make */
        if (c < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): no tensor for the model's input '%s' "
                            "(expected %s%s'%s')", path, key, v->name,
                            k == 0 ? "'input' or 'input_ids'" : "", k == 0 ? " or " : "",
                            v->name);
        const ulc_tensor *t = df->d.cols[c];
        int bad = t->dtype != ULC_DT_F32 && t->dtype != ULC_DT_I64;
        if ((v->flags & ULC_VALUE_HAS_TYPE) && t->dtype != v->dtype) bad = 1;
        if (v->rank >= 0 && t->rank != v->rank) bad = 1;
        for (int d = 1; !bad && v->rank >= 0 && d < v->rank; d++)
            if (v->dims[d].value >= 0 && v->dims[d].value != t->dims[d]) bad = 1;
        if (bad)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): tensor '%s' is %s; %s's input '%s' "
                            "needs %s", path, key, df->d.names[c],
                            ulc_tensor_shape_str(t, sh, sizeof sh), model_path, v->name,
                            ulc_value_shape_str(v, want, sizeof want));
        df->cols[k] = t;
    }
    int lc = ulc_dataset_find(&df->d, "label");
    if (lc >= 0) {
        const ulc_tensor *t = df->d.cols[lc];
        if (t->dtype != ULC_DT_I64 || t->rank != 1)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): tensor 'label' is %s; expected int64 "
                            "[%lld] (one class per row)", path, key,
                            ulc_tensor_shape_str(t, sh, sizeof sh), (long long)df->rows);
        df->label = t;
    }
    name_bound_columns(df, f, bound);
    return ulc_data_make(df, f, ctx);
}

void ulc_data_clear(ulc_data *df) {
    if (!df) return;
    free(df->d.names);
    free(df->d.cols);
    ulc_model_free(df->m);
    ulc_data_text_free(df->text);
    if (df->made) free(df->made->pos);
    free(df->made);
    memset(df, 0, sizeof *df);
}

int64_t ulc_data_label(const ulc_data *df, int64_t i) {
    int64_t y;
    memcpy(&y, (const uint8_t *)df->label->data + 8 * (size_t)i, 8); /* may be unaligned */
    return y;
}
