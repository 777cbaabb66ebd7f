/* tokenize.c — `ulc tokenize` (jobs/tokenize.h): texts read whole, encoded (or decoded) into an
 * in-memory JSON Lines buffer, written only when everything succeeded. */
#include "jobs/tokenize.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file.h"
#include "common/json.h"
#include "common/utf8.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static void put_ids(sbuf *b, const int64_t *v, size_t n) {
    char num[32];
    put(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(num, sizeof num, i ? ",%lld" : "%lld", (long long)v[i]);
        put(b, num, (size_t)k);
    }
    put(b, "]", 1);
}

static void put_json_str(sbuf *b, const char *s, size_t n) {
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(b, esc, 6);
        } else {
            put(b, s + i, 1);
        }
    }
    put(b, "\"", 1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The inputs: texts (or id lists' JSON) with the line each came from. */
typedef struct inputs {
    char **text;
    size_t *len;
    long *line;
    int64_t n, cap;
    const char *name; /* for messages: the file, or "--text" */
} inputs;

static void inputs_free(inputs *in) {
    for (int64_t i = 0; i < in->n; i++) free(in->text[i]);
    free(in->text), free(in->len), free(in->line);
}

static ulc_status inputs_add(inputs *in, const char *s, size_t n, long line, ulc_ctx *ctx) {
    if (in->n == in->cap) {
        int64_t cap = in->cap ? in->cap * 2 : 256;
        char **t = realloc(in->text, (size_t)cap * sizeof *t);
        if (t) in->text = t;
        size_t *l = t ? realloc(in->len, (size_t)cap * sizeof *l) : NULL;
        if (l) in->len = l;
        long *ln = l ? realloc(in->line, (size_t)cap * sizeof *ln) : NULL;
        if (!ln) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory reading texts");
        in->line = ln, in->cap = cap;
    }
    char *c = malloc(n + 1);
    if (!c) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory reading texts");
    memcpy(c, s, n);
    c[n] = '\0';
    in->text[in->n] = c, in->len[in->n] = n, in->line[in->n++] = line;
    return ULC_OK;
}

/* One JSON Lines line: its "text" string (or, decoding, its "ids" list kept as JSON). */
static ulc_status jsonl_line(inputs *in, const char *s, size_t n, long line, int decode, ulc_ctx *ctx) {
    cJSON *j = NULL;
    if (ulc_json_parse(s, n, ULC_JSON_UNIQUE_KEYS, &j, ctx) != ULC_OK)
        return ulc_fail(ctx, ctx->status, "%s: line %ld", in->name, line);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, decode ? "ids" : "text");
    ulc_status st;
    if (decode ? !cJSON_IsArray(v) : !cJSON_IsString(v)) {
        st = ulc_fail(ctx, ULC_ERR_PARSE, "%s: line %ld: expected an object with %s", in->name, line,
                      decode ? "a list \"ids\"" : "a string \"text\"");
    } else if (decode) {
        st = inputs_add(in, s, n, line, ctx);
    } else {
        st = inputs_add(in, v->valuestring, strlen(v->valuestring), line, ctx);
    }
    cJSON_Delete(j);
    return st;
}

static ulc_status read_inputs(const ulc_tokenize_job *j, inputs *in, ulc_ctx *ctx) {
    if (j->text) {
        in->name = "--text";
        return inputs_add(in, j->text, strlen(j->text), 1, ctx);
    }
    in->name = j->file;
    ulc_mapping *m = NULL;
    ULC_TRY(ulc_mapping_open(j->file, "texts", &m, ctx));
    size_t fl = strlen(j->file);
    int jsonl = j->decode || (fl >= 6 && strcmp(j->file + fl - 6, ".jsonl") == 0);
    const char *p = (const char *)m->data, *end = p + m->size;
    ulc_status st = ULC_OK;
    for (long line = 1; st == ULC_OK && p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        size_t n = (size_t)(e - p);
        size_t bad = ulc_utf8_invalid_at((const unsigned char *)p, n);
        if (bad != (size_t)-1)
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: line %ld: not valid UTF-8 at byte %zu of the "
                          "file (column %zu: 0x%02x)", in->name, line,
                          (size_t)(p - (const char *)m->data) + bad, bad + 1, (unsigned char)p[bad]);
        else if (jsonl && n) st = jsonl_line(in, p, n, line, j->decode, ctx);
        else if (!jsonl) st = inputs_add(in, p, n && p[n - 1] == '\r' ? n - 1 : n, line, ctx);
        p = nl ? nl + 1 : end;
    }
    ulc_mapping_unref(m);
    return st;
}

static ulc_status do_decode(ulc_tokenize_job *j, ulc_tokenizer *tk, const inputs *in, sbuf *b, ulc_ctx *ctx) {
    ulc_ids ids = {0};
    ulc_status st = ULC_OK;
    for (int64_t i = 0; i < in->n && st == ULC_OK; i++) {
        cJSON *js = NULL;
        ids.n = 0;
        st = ulc_json_parse(in->text[i], in->len[i], 0, &js, ctx);
        const cJSON *list = cJSON_IsArray(js) ? js : cJSON_GetObjectItemCaseSensitive(js, "ids");
        if (st == ULC_OK && !cJSON_IsArray(list))
            st = ulc_fail(ctx, ULC_ERR_PARSE, "expected a list of ids");
        for (const cJSON *v = st == ULC_OK ? list->child : NULL; v && st == ULC_OK; v = v->next) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble > -9e15 && v->valuedouble < 9e15) ||
                v->valuedouble != (double)(int64_t)v->valuedouble)
                st = ulc_fail(ctx, ULC_ERR_PARSE, "ids must be integers");
            else if (ids.n == ids.cap) {
                size_t cap = ids.cap ? ids.cap * 2 : 64;
                int64_t *nv = realloc(ids.v, cap * sizeof *nv);
                if (!nv) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
                else ids.v = nv, ids.cap = cap;
            }
            if (st == ULC_OK) ids.v[ids.n++] = (int64_t)v->valuedouble;
        }
        cJSON_Delete(js);
        char *text = NULL;
        size_t len = 0;
        double t0 = now();
        if (st == ULC_OK) st = ulc_tokenizer_decode(tk, ids.v, ids.n, j->skip_special, &text, &len, ctx);
        j->encode_seconds += now() - t0;
        if (st != ULC_OK) {
            st = ulc_fail(ctx, ctx->status, "%s: line %ld", in->name, in->line[i]);
        } else {
            puts_(b, "{\"text\":");
            put_json_str(b, text, len);
            puts_(b, "}\n");
        }
        free(text);
    }
    ulc_ids_clear(&ids);
    return st;
}

static ulc_status do_encode(ulc_tokenize_job *j, ulc_tokenizer *tk, const inputs *in, sbuf *b, ulc_ctx *ctx) {
    ulc_ids ids = {0};
    ulc_status st = ULC_OK;
    double t0 = now();
    for (int64_t i = 0; i < in->n && st == ULC_OK; i++) {
        ids.n = 0;
        st = ulc_tokenizer_encode(tk, in->text[i], in->len[i], j->add_special, &ids, ctx);
        if (st != ULC_OK) {
            st = ulc_fail(ctx, ctx->status, "%s: line %ld", in->name, in->line[i]);
            break;
        }
        puts_(b, "{\"ids\":");
        put_ids(b, ids.v, ids.n);
        puts_(b, "}\n");
    }
    j->encode_seconds += now() - t0;
    ulc_ids_clear(&ids);
    return st;
}

static ulc_status do_rows(ulc_tokenize_job *j, ulc_tokenizer *tk, const inputs *in, sbuf *b, ulc_ctx *ctx) {
    int64_t pad = j->pad_id;
    if (pad < 0) pad = ulc_tokenizer_special(tk, "pad");
    if (pad < 0) pad = ulc_tokenizer_special(tk, "eos");
    if (pad < 0) pad = 0;
    ulc_tok_rows_opts o = {.max_length = j->max_length, .overflow = j->overflow, .stride = j->stride,
                           .pad_to_max = j->pad, .pad_id = pad, .add_special = j->add_special};
    ulc_tok_rows r = {0};
    int64_t bad = -1;
    double t0 = now();
    ulc_status st = ulc_tokenizer_encode_rows(tk, (const char *const *)in->text, in->len, in->n, &o, &r, &bad, ctx);
    j->encode_seconds += now() - t0;
    if (st != ULC_OK) {
        if (bad >= 0) return ulc_fail(ctx, st, "%s: line %ld", in->name, in->line[bad]);
        return st;
    }
    char head[48];
    for (int64_t i = 0; i < r.rows; i++) {
        snprintf(head, sizeof head, "{\"text\":%lld,\"ids\":", (long long)r.text_of[i]);
        puts_(b, head);
        put_ids(b, r.ids + i * r.width, (size_t)r.width);
        puts_(b, ",\"mask\":");
        put_ids(b, r.mask + i * r.width, (size_t)r.width);
        puts_(b, "}\n");
    }
    ulc_tok_rows_clear(&r);
    return ULC_OK;
}

static ulc_status write_out(const ulc_tokenize_job *j, const sbuf *b, FILE *out, ulc_ctx *ctx) {
    if (!j->out) {
        if (out && b->n && fwrite(b->p, 1, b->n, out) != b->n)
            return ulc_fail(ctx, ULC_ERR_IO, "writing the output failed");
        return ULC_OK;
    }
    ulc_outfile *o = NULL;
    ULC_TRY(ulc_outfile_open(j->out, &o, ctx));
    if (ulc_outfile_write(o, b->p, b->n, ctx) != ULC_OK) {
        ulc_outfile_abort(o);
        return ctx->status;
    }
    return ulc_outfile_commit(o, ctx);
}

ulc_status ulc_tokenize_files(ulc_tokenize_job *j, FILE *out, ulc_ctx *ctx) {
    j->encode_seconds = 0;
    if (!j->text == !j->file)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "tokenize: give one of --text and --file");
    ulc_tokenizer *tk = NULL;
    ULC_TRY(ulc_tokenizer_load(j->tokenizer, &tk, ctx));
    inputs in = {0};
    sbuf b = {0};
    ulc_status st = read_inputs(j, &in, ctx);
    if (st == ULC_OK) {
        if (j->decode) st = do_decode(j, tk, &in, &b, ctx);
        else if (j->max_length > 0) st = do_rows(j, tk, &in, &b, ctx);
        else st = do_encode(j, tk, &in, &b, ctx);
    }
    if (st == ULC_OK && b.oom) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory writing the output");
    if (st == ULC_OK) st = write_out(j, &b, out, ctx);
    free(b.p);
    inputs_free(&in);
    ulc_tokenizer_free(tk);
    return st;
}
