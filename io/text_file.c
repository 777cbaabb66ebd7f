/* io/text_file.c — text data files read into texts (text_data.h): JSONL and plain text, one text
 * a line, every error naming the file and the line. */
#include "io/text_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "common/file.h"
#include "common/json.h"
#include "common/utf8.h"

ulc_text_format ulc_text_format_of(const char *path) {
    size_t n = path ? strlen(path) : 0;
    if (n > 6 && strcasecmp(path + n - 6, ".jsonl") == 0) return ULC_TEXT_JSONL;
    if (n > 4 && strcasecmp(path + n - 4, ".txt") == 0) return ULC_TEXT_TXT;
    return ULC_TEXT_NONE;
}

void ulc_texts_clear(ulc_texts *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n; i++) {
        free(t->text[i]);
        if (t->id) free(t->id[i]);
    }
    free(t->text);
    free(t->len);
    free(t->line);
    free(t->label);
    free(t->id);
    memset(t, 0, sizeof *t);
}

/* Room for one more text. */
static ulc_status grow(ulc_texts *t, ulc_ctx *ctx) {
    if (t->n < t->cap) return ULC_OK;
    int64_t cap = t->cap ? 2 * t->cap : 64;
    char **text = realloc(t->text, (size_t)cap * sizeof *text);
    if (text) t->text = text;
    size_t *len = realloc(t->len, (size_t)cap * sizeof *len);
    if (len) t->len = len;
    int64_t *line = realloc(t->line, (size_t)cap * sizeof *line);
    if (line) t->line = line;
    int64_t *label = realloc(t->label, (size_t)cap * sizeof *label);
    if (label) t->label = label;
    char **id = realloc(t->id, (size_t)cap * sizeof *id);
    if (id) t->id = id;
    if (!text || !len || !line || !label || !id)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory (%lld texts)", t->path,
                        (long long)t->n);
    t->cap = cap;
    return ULC_OK;
}

/* Appends text s[0..n) (copied) read on line `line`. */
static ulc_status add_text(ulc_texts *t, const char *s, size_t n, int64_t line, ulc_ctx *ctx) {
    ULC_TRY(grow(t, ctx));
    char *c = malloc(n + 1);
    if (!c) return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", t->path);
    memcpy(c, s, n);
    c[n] = '\0';
    t->text[t->n] = c;
    t->len[t->n] = n;
    t->line[t->n] = line;
    t->label[t->n] = -1;
    t->id[t->n] = NULL;
    t->n++;
    return ULC_OK;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}


static int json_whole(const cJSON *it, double lo) {
    return cJSON_IsNumber(it) && isfinite(it->valuedouble) &&
           it->valuedouble == floor(it->valuedouble) && it->valuedouble >= lo &&
           it->valuedouble <= 9007199254740992.0;
}

/* `label` and `id` of the object on a JSONL line (the text already added as the last one). */
static ulc_status label_and_id(ulc_texts *t, const cJSON *j, int64_t line, ulc_ctx *ctx) {
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(j, "label");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    int64_t k = t->n - 1;
    if (lb && !json_whole(lb, 0)) {
        char got[64];
        if (cJSON_IsNumber(lb)) snprintf(got, sizeof got, "%.17g", lb->valuedouble);
        else snprintf(got, sizeof got, "%s", ulc_json_what(lb));
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: 'label': expected an integer >= 0, got "
                        "%s", t->path, (long long)line, got);
    }
    if (lb) {
        t->label[k] = (int64_t)lb->valuedouble;
        t->n_labels++;
    }
    if (!id) return ULC_OK;
    char buf[32];
    const char *s = NULL;
    if (cJSON_IsString(id)) s = id->valuestring;
    else if (json_whole(id, -9007199254740992.0)) {
        snprintf(buf, sizeof buf, "%lld", (long long)id->valuedouble);
        s = buf;
    } else
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: 'id': expected a string or an integer, "
                        "got %s", t->path, (long long)line, ulc_json_what(id));
    if (!(t->id[k] = strdup(s))) return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", t->path);
    return ULC_OK;
}

/* One JSONL line s[0..n): an object with a non-empty string `text`. */
static ulc_status jsonl_line(ulc_texts *t, const char *s, size_t n, int64_t line, ulc_ctx *ctx) {
    cJSON *j = NULL;
    ulc_ctx jc;
    ulc_ctx_init(&jc);
    if (ulc_json_parse(s, n, ULC_JSON_UNIQUE_KEYS, &j, &jc) != ULC_OK)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: not a JSON object: %s", t->path,
                        (long long)line, jc.msg);
    ulc_status st = ULC_OK;
    const cJSON *tx = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
    if (!cJSON_IsObject(j))
        st = ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: expected a JSON object ({\"text\": "
                      "\"...\"}), got %s", t->path, (long long)line, ulc_json_what(j));
    else if (!tx)
        st = ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: no key 'text' (each line is {\"text\": "
                      "\"...\"})", t->path, (long long)line);
    else if (!cJSON_IsString(tx))
        st = ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: 'text': expected a string, got %s",
                      t->path, (long long)line, ulc_json_what(tx));
    else if (!tx->valuestring[0])
        st = ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: 'text' is empty", t->path,
                      (long long)line);
    if (st == ULC_OK) {
        size_t k = strlen(tx->valuestring), bad;
        /* escapes may decode to what is not UTF-8 (a lone surrogate) */
        if ((bad = ulc_utf8_invalid_at((const unsigned char *)tx->valuestring, k)) != (size_t)-1)
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: 'text' is not valid UTF-8 once its "
                          "escapes are decoded (byte %zu of the text)", t->path, (long long)line,
                          bad);
        else st = add_text(t, tx->valuestring, k, line, ctx);
    }
    if (st == ULC_OK) st = label_and_id(t, j, line, ctx);
    cJSON_Delete(j);
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* No `id` twice (compared as written: the string "7" and the integer 7 are the same id). */
static ulc_status unique_ids(ulc_texts *t, ulc_ctx *ctx) {
    int64_t n = 0;
    for (int64_t i = 0; i < t->n; i++) n += t->id[i] != NULL;
    if (n < 2) return ULC_OK;
    char **s = malloc((size_t)n * sizeof *s);
    if (!s) return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", t->path);
    n = 0;
    for (int64_t i = 0; i < t->n; i++)
        if (t->id[i]) s[n++] = t->id[i];
    qsort(s, (size_t)n, sizeof *s, cmp_str);
    const char *dup = NULL;
    for (int64_t i = 1; i < n && !dup; i++)
        if (strcmp(s[i], s[i - 1]) == 0) dup = s[i];
    free(s);
    if (!dup) return ULC_OK;
    int64_t a = -1, b = -1; /* the two lines, in file order */
    for (int64_t i = 0; i < t->n && b < 0; i++)
        if (t->id[i] && strcmp(t->id[i], dup) == 0) {
            if (a < 0) a = t->line[i];
            else b = t->line[i];
        }
    return ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: 'id' \"%.200s\" is given twice (first on "
                    "line %lld)", t->path, (long long)b, dup, (long long)a);
}

ulc_status ulc_texts_parse(const char *path, ulc_text_format fmt, const char *bytes, size_t n,
                           ulc_texts *t, ulc_ctx *ctx) {
    memset(t, 0, sizeof *t);
    t->path = path;
    if (fmt != ULC_TEXT_JSONL && fmt != ULC_TEXT_TXT)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: not a text data file (.jsonl or .txt)", path);
    int64_t line = 0;
    size_t at0 = n >= 3 && memcmp(bytes, "\xef\xbb\xbf", 3) == 0 ? 3 : 0; /* a UTF-8 BOM */
    for (size_t at = at0; at < n;) {
        const char *s = bytes + at;
        const char *nl = memchr(s, '\n', n - at);
        size_t k = nl ? (size_t)(nl - s) : n - at, bad;
        line++;
        if ((bad = ulc_utf8_invalid_at((const unsigned char *)s, k)) != (size_t)-1)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s:%lld: invalid UTF-8 at byte %zu of the line "
                            "(byte %zu of the file)", path, (long long)line, bad, at + bad);
        size_t next = at + k + 1;
        if (k && s[k - 1] == '\r') k--; /* CRLF line ends */
        if (!blank(s, k)) {
            if (fmt == ULC_TEXT_JSONL) ULC_TRY(jsonl_line(t, s, k, line, ctx));
            else ULC_TRY(add_text(t, s, k, line, ctx));
        }
        at = next;
    }
    if (!t->n)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %s: no texts (every text is one %s)", path,
                        n ? "only blank lines" : "the file is empty",
                        fmt == ULC_TEXT_JSONL ? "line {\"text\": \"...\"}" : "non-blank line");
    if (fmt == ULC_TEXT_JSONL) ULC_TRY(unique_ids(t, ctx));
    return ULC_OK;
}

ulc_status ulc_texts_read(const char *path, ulc_texts *t, ulc_ctx *ctx) {
    ulc_mapping *m = NULL;
    memset(t, 0, sizeof *t);
    ULC_TRY(ulc_mapping_open(path, "text data", &m, ctx));
    ulc_status st = ulc_texts_parse(path, ulc_text_format_of(path), (const char *)m->data,
                                    m->size, t, ctx);
    ulc_mapping_unref(m);
    return st;
}
