/* io/text_data.c — text data as a dataset (text_data.h): texts tokenized into rows, forget.file's
 * texts matched or appended, the rows bound to the model's inputs. */
#include "io/text_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/file.h"
#include "common/json.h"

void ulc_data_text_free(ulc_data_text *t) {
    if (!t) return;
    ulc_texts_clear(&t->file);
    ulc_texts_clear(&t->forget_texts);
    free(t->text);
    free(t->len);
    free(t->src);
    free(t->line);
    free(t->id);
    free(t->forget);
    free(t->labels);
    free(t->row_label);
    ulc_tok_rows_clear(&t->rows);
    free(t);
}

static const char *const k_overflow[] = {"error", "truncate", "windows"};

int ulc_text_overflow_parse(const char *s) {
    for (int k = 0; s && k < 3; k++)
        if (strcmp(s, k_overflow[k]) == 0) return k;
    return -1;
}

const char *ulc_text_overflow_name(ulc_overflow o) {
    return (unsigned)o < 3 ? k_overflow[o] : "?";
}

/* ---- the model's context and tokenizer --------------------------------------------------------- */

/* A whole number > 0 under key in obj, or 0. */
static int64_t cfg_int(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e12 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return 0;
    return (int64_t)v->valuedouble;
}

/* config.json's context: n_positions, n_ctx, max_position_embeddings (its own or its
 * text_config's); 0 when it has none or cannot be read. */
static int64_t config_context(const char *dir) {
    char *p = ulc_path_join(dir, "config.json");
    ulc_mapping *m = NULL;
    ulc_ctx c;
    ulc_ctx_init(&c);
    cJSON *j = NULL;
    int64_t n = 0;
    if (p && ulc_mapping_open(p, "config", &m, &c) == ULC_OK &&
        ulc_json_parse((const char *)m->data, m->size, 0, &j, &c) == ULC_OK &&
        cJSON_IsObject(j)) {
        static const char *const keys[] = {"n_positions", "n_ctx", "max_position_embeddings"};
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(j, "text_config");
        for (int k = 0; k < 3 && !n; k++) n = cfg_int(j, keys[k]);
        if (!n && cJSON_IsObject(tc)) n = cfg_int(tc, "max_position_embeddings");
    }
    cJSON_Delete(j);
    ulc_mapping_unref(m);
    free(p);
    return n;
}

/* The fixed sequence length of the main input (its second dim), or 0. */
static int64_t fixed_length(const ulc_iface *f) {
    const ulc_value *v = f->fed[0];
    return v->rank == 2 && v->dims[1].value > 0 ? v->dims[1].value : 0;
}

int64_t ulc_text_context(const char *model_path, const ulc_iface *f) {
    int64_t n = model_path && ulc_path_is_dir(model_path) ? config_context(model_path) : 0;
    return n ? n : fixed_length(f);
}

/* Whether dir holds a tokenizer's files. */
static int dir_has_tokenizer(const char *dir) {
    static const char *const names[] = {"tokenizer.json", "vocab.json"};
    int has = 0;
    for (int k = 0; k < 2 && !has; k++) {
        char *p = ulc_path_join(dir, names[k]);
        has = p && ulc_path_exists(p);
        free(p);
    }
    return has;
}

ulc_status ulc_text_tokenizer(const ulc_text_opts *o, const char *model_path, const char *data,
                              ulc_tokenizer **tk, ulc_ctx *ctx) {
    if (o && o->tokenizer) {
        ulc_status st = ulc_tokenizer_load(o->tokenizer, tk, ctx);
        if (st != ULC_OK && o->where)
            return ulc_fail(ctx, st, "%s: key 'model.tokenizer'", o->where);
        return st;
    }
    if (model_path && ulc_path_is_dir(model_path) && dir_has_tokenizer(model_path))
        return ulc_tokenizer_load(model_path, tk, ctx);
    return ulc_fail(ctx, ULC_ERR_INVALID, "%s is text: it needs the model's tokenizer, and %s "
                    "has none (name one with %s, or give a Hugging Face directory holding "
                    "tokenizer.json)", data, model_path ? model_path : "the model",
                    o && o->where ? "the spec's model.tokenizer" : "--tokenizer");
}

/* ---- forget.file -------------------------------------------------------------------------------- */

typedef struct text_key {
    uint64_t h;
    int64_t i;
} text_key;

static uint64_t hash_text(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int cmp_key(const void *a, const void *b) {
    const text_key *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Marks every text of the data file equal to forget text s[0..n) (keys sorted by hash); the
 * number marked. */
static int64_t mark_equal(const ulc_texts *t, const text_key *keys, const char *s, size_t n,
                          uint8_t *forget) {
    uint64_t h = hash_text(s, n);
    size_t lo = 0, hi = (size_t)t->n;
    int64_t marked = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (keys[mid].h < h) lo = mid + 1;
        else hi = mid;
    }
    for (size_t k = lo; k < (size_t)t->n && keys[k].h == h; k++) {
        int64_t i = keys[k].i;
        if (t->len[i] == n && memcmp(t->text[i], s, n) == 0) {
            forget[i] = 1;
            marked++;
        }
    }
    return marked;
}

/* Every text in order (the data file's, then forget.file's unmatched ones) with its file, line
 * and label; forget.file's texts mark the texts they equal. */
static ulc_status gather_texts(ulc_data_text *dt, ulc_ctx *ctx) {
    const ulc_texts *a = &dt->file, *b = &dt->forget_texts;
    size_t cap = (size_t)(a->n + b->n) + 1;
    text_key *keys = b->n ? malloc((size_t)a->n * sizeof *keys) : NULL;
    dt->text = malloc(cap * sizeof *dt->text);
    dt->len = malloc(cap * sizeof *dt->len);
    dt->src = malloc(cap * sizeof *dt->src);
    dt->line = malloc(cap * sizeof *dt->line);
    dt->labels = malloc(cap * sizeof *dt->labels);
    dt->id = malloc(cap * sizeof *dt->id);
    dt->forget = b->n ? calloc(cap, 1) : NULL;
    if (!dt->text || !dt->len || !dt->src || !dt->line || !dt->labels || !dt->id ||
        (b->n && (!keys || !dt->forget))) {
        free(keys);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", a->path);
    }
    for (int64_t i = 0; i < a->n; i++) {
        dt->text[i] = a->text[i];
        dt->len[i] = a->len[i];
        dt->src[i] = a->path;
        dt->line[i] = a->line[i];
        dt->labels[i] = a->label[i];
        dt->id[i] = a->id[i];
        if (keys) keys[i] = (text_key){hash_text(a->text[i], a->len[i]), i};
    }
    int64_t n = a->n;
    if (keys) qsort(keys, (size_t)a->n, sizeof *keys, cmp_key);
    for (int64_t j = 0; j < b->n; j++) {
        if (mark_equal(a, keys, b->text[j], b->len[j], dt->forget)) {
            dt->n_matched++;
            continue;
        }
        dt->text[n] = b->text[j];
        dt->len[n] = b->len[j];
        dt->src[n] = b->path;
        dt->line[n] = b->line[j];
        dt->labels[n] = b->label[j];
        dt->id[n] = b->id[j];
        dt->forget[n++] = 1;
        dt->n_appended++;
    }
    dt->n_texts = n;
    free(keys);
    return ULC_OK;
}

/* The `label` column: every text has one, or none of the data file's does (then it is dropped;
 * a text without one among texts with one is named). */
static ulc_status check_labels(ulc_data_text *dt, ulc_ctx *ctx) {
    int64_t with = -1, without = -1;
    for (int64_t i = 0; i < dt->n_texts; i++) {
        if (dt->labels[i] >= 0 && with < 0) with = i;
        if (dt->labels[i] < 0 && without < 0) without = i;
    }
    if (with >= 0 && without >= 0 && dt->file.n_labels)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: no 'label', but %s:%lld has one (give "
                        "every text a label, or none)", dt->src[without],
                        (long long)dt->line[without], dt->src[with], (long long)dt->line[with]);
    if (without >= 0 || !dt->file.n_labels) {
        free(dt->labels);
        dt->labels = NULL;
    }
    return ULC_OK;
}

/* ---- rows ----------------------------------------------------------------------------------------- */

/* An option as the user gave it, for messages: "SPEC: key 'model.max_length'" from a spec,
 * "--max-length" from the command line (o->where NULL). */
static const char *opt_name(const ulc_text_opts *o, const char *key, const char *flag, char *buf,
                            size_t n) {
    if (o->where) snprintf(buf, n, "%s: key 'model.%s'", o->where, key);
    else snprintf(buf, n, "%s", flag);
    return buf;
}

/* The rows' length limit: the spec's (at most the model's context), else the context; a model
 * with a fixed sequence length takes rows of exactly that length. */
static ulc_status resolve_length(ulc_data_text *dt, const char *path, const char *model_path,
                                 const ulc_iface *f, const ulc_text_opts *o, int *pad_to_max,
                                 ulc_ctx *ctx) {
    char ml[600], sk[600];
    opt_name(o, "max_length", "--max-length", ml, sizeof ml);
    int64_t fixed = fixed_length(f);
    dt->context = ulc_text_context(model_path, f);
    if (o->max_length > 0 && dt->context && o->max_length > dt->context)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %lld is more than %s's context (%lld "
                        "positions)", ml, (long long)o->max_length, model_path,
                        (long long)dt->context);
    if (o->max_length > 0 && fixed && o->max_length != fixed)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %lld, but %s's input '%s' takes rows of "
                        "exactly %lld tokens", ml, (long long)o->max_length, model_path,
                        f->fed[0]->name, (long long)fixed);
    dt->max_length = o->max_length > 0 ? o->max_length : dt->context;
    if (!dt->max_length)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s is text, and %s does not say its context "
                        "(no config.json n_positions, no fixed sequence length): set %s", path,
                        model_path, o->where ? "model.max_length" : "--max-length");
    if (o->overflow == ULC_OVERFLOW_WINDOWS && o->stride >= dt->max_length)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %lld, but a window is %lld tokens: the stride "
                        "must be smaller", opt_name(o, "stride", "--stride", sk, sizeof sk),
                        (long long)o->stride, (long long)dt->max_length);
    *pad_to_max = fixed > 0;
    return ULC_OK;
}

/* Why text i could not be made rows (ectx says what the tokenizer said). */
static ulc_status row_error(const ulc_data_text *dt, ulc_tokenizer *tk, const ulc_text_opts *o,
                            int64_t i, const ulc_ctx *ectx, ulc_ctx *ctx) {
    if (o->overflow == ULC_OVERFLOW_ERROR) {
        ulc_ids ids = {0};
        ulc_ctx c;
        ulc_ctx_init(&c);
        ulc_status st = ulc_tokenizer_encode(tk, dt->text[i], dt->len[i], 1, &ids, &c);
        size_t n = ids.n;
        ulc_ids_clear(&ids);
        if (st == ULC_OK && (int64_t)n > dt->max_length)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: the text is %zu tokens, more than "
                            "%s (%lld); set %s to take it", dt->src[i], (long long)dt->line[i],
                            n, o->where ? "model.max_length" : "--max-length",
                            (long long)dt->max_length, o->where ? "model.overflow \"truncate\" "
                            "or \"windows\"" : "--overflow truncate or windows");
        if (st == ULC_OK && n == 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: the text has no tokens", dt->src[i],
                            (long long)dt->line[i]);
    }
    return ulc_fail(ctx, ectx->status, "%s:%lld: %s", dt->src[i], (long long)dt->line[i],
                    ectx->msg);
}

/* The texts as rows, and the label column. */
static ulc_status make_rows(ulc_data_text *dt, ulc_tokenizer *tk, const ulc_text_opts *o,
                            int pad_to_max, ulc_ctx *ctx) {
    int64_t pad = ulc_tokenizer_special(tk, "pad");
    if (pad < 0) pad = ulc_tokenizer_special(tk, "eos");
    if (pad < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the tokenizer has neither a pad nor an eos "
                        "token to pad rows with", ulc_tokenizer_path(tk));
    ulc_tok_rows_opts ro = {.max_length = dt->max_length, .overflow = o->overflow,
                            .stride = o->stride, .pad_to_max = pad_to_max, .pad_id = pad,
                            .add_special = 1};
    ulc_ctx ec;
    ulc_ctx_init(&ec);
    int64_t bad = -1;
    if (ulc_tokenizer_encode_rows(tk, (const char *const *)dt->text, dt->len, dt->n_texts, &ro,
                                  &dt->rows, &bad, &ec) != ULC_OK) {
        if (bad >= 0 && bad < dt->n_texts) return row_error(dt, tk, o, bad, &ec, ctx);
        return ulc_fail(ctx, ec.status, "%s: %s", dt->file.path, ec.msg);
    }
    dt->text_of = dt->rows.text_of;
    dt->width = dt->rows.width;
    if (!dt->labels) return ULC_OK;
    if (!(dt->row_label = malloc(((size_t)dt->rows.rows + 1) * sizeof *dt->row_label)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", dt->file.path);
    for (int64_t r = 0; r < dt->rows.rows; r++) dt->row_label[r] = dt->labels[dt->text_of[r]];
    return ULC_OK;
}

static void set_col(ulc_data_text *dt, int c, const char *name, int rank, int64_t *data) {
    ulc_tensor *t = &dt->cols[c];
    dt->dims[c][0] = dt->rows.rows;
    dt->dims[c][1] = dt->width;
    *t = (ulc_tensor){.name = name, .dtype = ULC_DT_I64, .rank = rank, .dims = dt->dims[c],
                      .numel = (uint64_t)(dt->rows.rows * (rank == 2 ? dt->width : 1)),
                      .storage = ULC_STORAGE_OWNED, .data = data, .form = ULC_FORM_RAW};
    t->nbytes = (size_t)t->numel * sizeof(int64_t);
}

/* The columns bound to the model's inputs: the main input reads the ids, attention_mask the
 * mask, a cache's pasts and position_ids are made (ulc_data_make); any other input cannot be
 * fed from text. */
static ulc_status bind_rows(ulc_data *df, const char *model_path, const ulc_iface *f,
                            ulc_ctx *ctx) {
    ulc_data_text *dt = df->text;
    int has_mask = 0, padded = 0;
    set_col(dt, 0, f->fed[0]->name, 2, dt->rows.ids);
    set_col(dt, 1, "attention_mask", 2, dt->rows.mask);
    if (dt->row_label) set_col(dt, 2, "label", 1, dt->row_label);
    for (int k = 0; k < f->n_fed; k++) {
        const ulc_value *v = f->fed[k];
        int c = k == 0 ? 0 : strcmp(v->name, "attention_mask") == 0 ? 1 : -1;
        df->cols[k] = NULL;
        if (c < 0 && ulc_iface_made(f, k)) continue; /* a cache's: ulc_data_make */
        char want[160];
        if (c < 0 || ((v->flags & ULC_VALUE_HAS_TYPE) && v->dtype != ULC_DT_I64) ||
            (v->rank >= 0 && v->rank != 2))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): %s's input '%s' (%s) cannot be fed "
                            "from text (text rows feed int64 [rows, tokens] input_ids and "
                            "attention_mask)", df->path, df->key, model_path, v->name,
                            ulc_value_shape_str(v, want, sizeof want));
        has_mask |= c == 1;
        df->cols[k] = &dt->cols[c];
    }
    for (int64_t r = 0; r < dt->rows.rows && !padded; r++) padded = dt->rows.length[r] < dt->width;
    if (padded && !has_mask)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): %s has no attention_mask input, and the "
                        "texts are of different lengths (rows would be padded)", df->path,
                        df->key, model_path);
    int n = 1 + has_mask + (dt->row_label != NULL);
    df->d.names = calloc((size_t)n + 1, sizeof *df->d.names);
    df->d.cols = calloc((size_t)n + 1, sizeof *df->d.cols);
    if (!df->d.names || !df->d.cols) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (dataset)");
    for (int c = 0; c < 3; c++) {
        if ((c == 1 && !has_mask) || (c == 2 && !dt->row_label)) continue;
        df->d.names[df->d.n_cols] = dt->cols[c].name;
        df->d.cols[df->d.n_cols++] = &dt->cols[c];
    }
    df->d.path = df->path;
    df->d.n_rows = df->rows = dt->rows.rows;
    df->label = dt->row_label ? &dt->cols[2] : NULL;
    return ulc_data_make(df, f, ctx);
}

ulc_status ulc_data_load_text(const char *key, const char *path, const char *model_path,
                              const ulc_iface *f, ulc_tokenizer *tk, const ulc_text_opts *o,
                              ulc_data *df, ulc_ctx *ctx) {
    static const ulc_text_opts defaults = {.overflow = ULC_OVERFLOW_ERROR};
    if (!o) o = &defaults;
    memset(df, 0, sizeof *df);
    df->key = key;
    df->path = path;
    ulc_data_text *dt = calloc(1, sizeof *dt);
    if (!(df->text = dt)) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", path);
    int pad_to_max = 0;
    ULC_TRY(resolve_length(dt, path, model_path, f, o, &pad_to_max, ctx));
    ULC_TRY(ulc_texts_read(path, &dt->file, ctx));
    if (o->forget_file) ULC_TRY(ulc_texts_read(o->forget_file, &dt->forget_texts, ctx));
    ULC_TRY(gather_texts(dt, ctx));
    ULC_TRY(check_labels(dt, ctx));
    dt->tokenizer = ulc_tokenizer_path(tk);
    ULC_TRY(make_rows(dt, tk, o, pad_to_max, ctx));
    return bind_rows(df, model_path, f, ctx);
}

ulc_status ulc_data_load_any(const char *key, const char *path, const char *model_path,
                             const ulc_iface *f, const ulc_text_opts *o, ulc_tokenizer **tk,
                             ulc_data *df, ulc_ctx *ctx) {
    if (ulc_text_format_of(path) == ULC_TEXT_NONE) {
        if (o && o->forget_file)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.file': the forget texts need "
                            "text training data (.jsonl or .txt), and data.train is '%s'",
                            o->where ? o->where : "spec", path);
        return ulc_data_load(key, path, model_path, f, df, ctx);
    }
    if (!*tk) ULC_TRY(ulc_text_tokenizer(o, model_path, path, tk, ctx));
    return ulc_data_load_text(key, path, model_path, f, *tk, o, df, ctx);
}
