/* json.c — strict JSON over cJSON; see json.h. */
#include "common/json.h"

#include <stdio.h>
#include <string.h>

#include "common/strmap.h"
#include "common/utf8.h"

#define PATH_DEPTH 64 /* deeper strings are named by their first 64 levels */
#define SHOW_MAX 60   /* bytes of a key or string a message shows */

typedef struct frame {
    char kind;         /* '{' or '[' */
    int want_key;      /* '{': the next string is a key */
    int has_key;       /* '{': key_off/key_len name the current key */
    size_t key_off, key_len;
    long index;        /* '[': the current element */
} frame;

/* Appends text[0..n) to buf (at most SHOW_MAX bytes, control characters as '?'). */
static size_t put_raw(char *buf, size_t at, size_t size, const char *text, size_t n) {
    for (size_t i = 0; i < n && at + 4 < size; i++) {
        if (i == SHOW_MAX) {
            memcpy(buf + at, "...", 3);
            at += 3;
            break;
        }
        unsigned char c = (unsigned char)text[i];
        buf[at++] = c < 0x20 ? '?' : (char)c;
    }
    buf[at] = '\0';
    return at;
}

/* "a.b[2].c" from the frames (keys as written, escapes and all). */
static const char *path_str(const char *text, const frame *st, int depth, char *buf, size_t size) {
    size_t at = 0;
    buf[0] = '\0';
    for (int d = 0; d < depth && d < PATH_DEPTH && at + 24 < size; d++) {
        if (st[d].kind == '[') {
            at += (size_t)snprintf(buf + at, size - at, "[%ld]", st[d].index);
        } else if (st[d].has_key) {
            if (at) buf[at++] = '.';
            at = put_raw(buf, at, size, text + st[d].key_off, st[d].key_len);
        }
    }
    return buf;
}

static ulc_status bad_string(const char *text, const frame *st, int depth, int is_key,
                             size_t off, size_t n, int nul, unsigned char c, ulc_ctx *ctx) {
    char path[512], shown[SHOW_MAX * 2];
    path_str(text, st, depth, path, sizeof path);
    put_raw(shown, 0, sizeof shown, text + off, n);
    char where[600];
    if (*path) snprintf(where, sizeof where, "key '%s': %s", path, is_key ? "the key" : "the string");
    else snprintf(where, sizeof where, "the string");
    if (nul)
        return ulc_fail(ctx, ULC_ERR_PARSE, "%s \"%s\" holds \\u0000 (NUL), which would cut it "
                        "short", where, shown);
    return ulc_fail(ctx, ULC_ERR_PARSE, "%s \"%s\" holds a raw control character (0x%02x), "
                    "which JSON allows only escaped", where, shown, c);
}

ulc_status ulc_json_check_strings(const char *text, size_t len, ulc_ctx *ctx) {
    frame st[PATH_DEPTH];
    int depth = 0; /* frames in use (beyond PATH_DEPTH: counted, not kept) */
    for (size_t i = 0; i < len; i++) {
        frame *top = depth > 0 && depth <= PATH_DEPTH ? &st[depth - 1] : NULL;
        switch (text[i]) {
        case '"': {
            size_t j = i + 1;
            int nul = 0, ctl = -1; /* ctl: the first raw control character */
            while (j < len && text[j] != '"') {
                if (text[j] == '\\') {
                    if (!nul && j + 5 < len && text[j + 1] == 'u' &&
                        memcmp(text + j + 2, "0000", 4) == 0)
                        nul = 1;
                    j += 2;
                    continue;
                }
                if (ctl < 0 && (unsigned char)text[j] < 0x20) ctl = (unsigned char)text[j];
                j++;
            }
            if (j >= len) return ULC_OK; /* unterminated: the parser says so */
            int is_key = top && top->kind == '{' && top->want_key;
            if (is_key) {
                top->want_key = 0;
                top->has_key = 1;
                top->key_off = i + 1;
                top->key_len = j - i - 1;
            }
            if (nul || ctl >= 0)
                return bad_string(text, st, depth, is_key, i + 1, j - i - 1, nul,
                                  (unsigned char)(ctl < 0 ? 0 : ctl), ctx);
            i = j;
            break;
        }
        case '{':
        case '[':
            if (depth < PATH_DEPTH)
                st[depth] = (frame){.kind = text[i], .want_key = text[i] == '{'};
            depth++;
            break;
        case '}':
        case ']':
            if (depth > 0) depth--;
            break;
        case ',':
            if (top && top->kind == '{') top->want_key = 1;
            else if (top) top->index++;
            break;
        default:
            break;
        }
    }
    return ULC_OK;
}

/* Refuses a key given twice in any object under j; path is j's key path so far. */
static ulc_status unique_keys(const cJSON *j, char *path, size_t at, size_t size, ulc_ctx *ctx) {
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j)) return ULC_OK;
    ulc_strmap *seen = cJSON_IsObject(j) ? ulc_strmap_create() : NULL;
    if (cJSON_IsObject(j) && !seen) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ulc_status s = ULC_OK;
    long index = 0;
    for (const cJSON *c = j->child; c && s == ULC_OK; c = c->next, index++) {
        size_t end = at;
        if (seen) {
            if (at && at + 1 < size) path[end++] = '.';
            end = put_raw(path, end, size, c->string, strlen(c->string));
            if (ulc_strmap_get(seen, c->string)) {
                s = ulc_fail(ctx, ULC_ERR_PARSE, "key '%s' appears twice", path);
                break;
            }
            if (ulc_strmap_put(seen, c->string, (void *)c) != 0) {
                s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
                break;
            }
        } else if (at + 24 < size) {
            end += (size_t)snprintf(path + at, size - at, "[%ld]", index);
        }
        s = unique_keys(c, path, end, size, ctx);
        path[at] = '\0';
    }
    ulc_strmap_free(seen);
    return s;
}

ulc_status ulc_json_parse(const char *text, size_t len, unsigned flags, cJSON **out,
                          ulc_ctx *ctx) {
    *out = NULL;
    size_t bad = ulc_utf8_invalid_at((const unsigned char *)text, len);
    if (bad != (size_t)-1)
        return ulc_fail(ctx, ULC_ERR_PARSE, "not valid UTF-8 (byte %zu)", bad);
    ULC_TRY(ulc_json_check_strings(text, len, ctx));
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    if (j) /* only whitespace may follow */
        while (at < len && strchr(" \t\r\n", text[at]) && text[at]) at++;
    if (!j || at < len) {
        size_t line = 1;
        for (size_t i = 0; i < at; i++) line += text[i] == '\n';
        cJSON_Delete(j);
        return ulc_fail(ctx, ULC_ERR_PARSE, "not valid JSON (near byte %zu, line %zu)", at, line);
    }
    if (flags & ULC_JSON_UNIQUE_KEYS) {
        char path[512] = "";
        ulc_status s = unique_keys(j, path, 0, sizeof path, ctx);
        if (s != ULC_OK) {
            cJSON_Delete(j);
            return s;
        }
    }
    *out = j;
    return ULC_OK;
}

const char *ulc_json_what(const cJSON *it) {
    if (cJSON_IsString(it)) return "a string";
    if (cJSON_IsNumber(it)) return "a number";
    if (cJSON_IsBool(it)) return "true/false";
    if (cJSON_IsNull(it)) return "null";
    if (cJSON_IsArray(it)) return "a list";
    if (cJSON_IsObject(it)) return "an object";
    return "an invalid value";
}
