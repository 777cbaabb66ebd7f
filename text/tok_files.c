/*
 * tok_files.c — the directory form of a byte-level BPE, as transformers' GPT2Tokenizer reads
 * it: vocab.json ({token: id}), merges.txt (an optional first line "#version: ...", then one
 * merge "a b" per line, rank by rank; blank lines skipped), and beside them, when present,
 * added_tokens.json ({token: id}), special_tokens_map.json and tokenizer_config.json (the
 * bos/eos/unk/pad tokens as strings or {"content": ...}; tokenizer_config's add_prefix_space and
 * added_tokens_decoder). GPT2Tokenizer's defaults: <|endoftext|> as bos, eos and unk, no
 * prefix space; its special tokens are matched in text as added tokens. The ByteLevel
 * pre-tokenizer (GPT2's regex) and decoder, no post-processor. Of tokenizer_config.json only
 * those keys are read: it is transformers' settings file, holding many keys about Python classes.
 */
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/json.h"
#include "common/utf8.h"
#include "text/tok_internal.h"

/* The JSON object in dir/name into *out (NULL when the file is absent). */
static ulc_status read_json(const char *dir, const char *name, char **path, cJSON **out, ulc_ctx *ctx) {
    *out = NULL;
    *path = ulc_path_join(dir, name);
    if (!*path) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (!ulc_path_exists(*path)) return ULC_OK;
    ulc_mapping *map = NULL;
    ULC_TRY(ulc_mapping_open(*path, "tokenizer", &map, ctx));
    ulc_status st = ulc_json_parse((const char *)map->data, map->size, ULC_JSON_UNIQUE_KEYS, out, ctx);
    ulc_mapping_unref(map);
    if (st != ULC_OK) return ulc_fail(ctx, st, "%s", *path);
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return ulc_fail(ctx, ULC_ERR_PARSE, "%s: expected a JSON object", *path);
    }
    return ULC_OK;
}

/* A special token's text: a string, or an object with "content" (transformers' AddedToken). */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static ulc_status roles_from(const cJSON *j, const char *path, const char **names,
                             ulc_ctx *ctx) {
    static const char *const keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    for (int r = 0; r < 4; r++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[r]);
        if (!v || cJSON_IsNull(v)) continue;
        const char *t = token_text(v);
        if (!t)
            return ulc_fail(ctx, ULC_ERR_PARSE, "%s: key '%s': expected a string or {\"content\": ...}",
                            path, keys[r]);
        names[r] = t;
    }
    return ULC_OK;
}

/* tokenizer_config.json's added_tokens_decoder: {"id": {content, special, lstrip, ...}}. */
static ulc_status added_decoder(ulc_tokenizer *tk, const cJSON *j, const char *path, ulc_ctx *ctx) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "added_tokens_decoder");
    if (!d) return ULC_OK;
    for (const cJSON *c = d->child; c; c = c->next) {
        const char *content = token_text(c);
        char *end;
        long long id = strtoll(c->string ? c->string : "", &end, 10);
        if (!content || *end || id < 0)
            return ulc_fail(ctx, ULC_ERR_PARSE, "%s: key 'added_tokens_decoder.%.40s': expected an id "
                            "and {\"content\": ...}", path, c->string ? c->string : "");
        if (ulc_tokenizer_token_id(tk, content, strlen(content)) >= 0 &&
            tk_strtab_get(&tk->vocab, content, strlen(content)) < 0)
            continue; /* already added */
        tk_added a = {.content = (char *)content, .len = strlen(content)};
        const char *flags[5] = {"special", "lstrip", "rstrip", "single_word", "normalized"};
        int *fv[5] = {&a.special, &a.lstrip, &a.rstrip, &a.single_word, &a.normalized};
        for (int k = 0; k < 5; k++) *fv[k] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, flags[k]));
        int already = 0;
        for (size_t i = 0; i < tk->n_added; i++) already |= strcmp(tk->added[i].content, content) == 0;
        if (!already && tk_added_add(tk, &a, id, ctx) != ULC_OK)
            return ulc_fail(ctx, ctx->status, "%s: added_tokens_decoder", path);
    }
    return ULC_OK;
}

ulc_status tk_load_side_files(ulc_tokenizer *tk, const char *dir, int add_tokens, ulc_ctx *ctx) {
    const char *names[4] = {NULL, NULL, NULL, NULL};
    const char *files[2] = {"tokenizer_config.json", "special_tokens_map.json"};
    cJSON *j[2] = {NULL, NULL};
    char *path[2] = {NULL, NULL};
    ulc_status st = ULC_OK;
    for (int f = 0; f < 2 && st == ULC_OK; f++) {
        st = read_json(dir, files[f], &path[f], &j[f], ctx);
        if (st == ULC_OK && j[f]) st = roles_from(j[f], path[f], names, ctx);
    }
    if (st == ULC_OK && add_tokens) {
        if (j[0]) {
            const cJSON *aps = cJSON_GetObjectItemCaseSensitive(j[0], "add_prefix_space");
            if (aps && !cJSON_IsBool(aps))
                st = ulc_fail(ctx, ULC_ERR_PARSE, "%s: key 'add_prefix_space': expected true or false", path[0]);
            tk->add_prefix_space = cJSON_IsTrue(aps);
            if (st == ULC_OK) st = added_decoder(tk, j[0], path[0], ctx);
        }
        for (int r = 0; r < 4 && st == ULC_OK; r++) {
            if (!names[r] && r != 2) names[r] = "<|endoftext|>"; /* GPT2Tokenizer's defaults */
            if (!names[r]) continue;
            int already = 0;
            for (size_t i = 0; i < tk->n_added; i++) already |= strcmp(tk->added[i].content, names[r]) == 0;
            tk_added a = {.content = (char *)names[r], .len = strlen(names[r]), .special = 1};
            if (!already && tk_strtab_get(&tk->vocab, a.content, a.len) >= 0)
                st = tk_added_add(tk, &a, -1, ctx);
        }
    }
    for (int r = 0; r < 4 && st == ULC_OK; r++) {
        if (!names[r]) continue;
        int64_t id = ulc_tokenizer_token_id(tk, names[r], strlen(names[r]));
        if (id >= 0) tk->role[r] = id;
        else if (!add_tokens)
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: the %s token '%s' is not in the vocabulary",
                          dir, r == 0 ? "bos" : r == 1 ? "eos" : r == 2 ? "pad" : "unk", names[r]);
    }
    for (int f = 0; f < 2; f++) {
        cJSON_Delete(j[f]);
        free(path[f]);
    }
    return st;
}

static ulc_status read_merges_txt(ulc_tokenizer *tk, const char *path, ulc_ctx *ctx) {
    ulc_mapping *map = NULL;
    ULC_TRY(ulc_mapping_open(path, "merges", &map, ctx));
    const char *p = (const char *)map->data, *end = p + map->size;
    size_t off = ulc_utf8_invalid_at((const unsigned char *)p, map->size);
    ulc_status st = ULC_OK;
    if (off != (size_t)-1) st = ulc_fail(ctx, ULC_ERR_PARSE, "%s: not valid UTF-8 at byte %zu", path, off);
    int32_t rank = 0;
    for (long line = 1; st == ULC_OK && p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r') n--;
        if (line == 1 && n >= 8 && memcmp(p, "#version", 8) == 0) {
        } else if (n) {
            const char *sp = memchr(p, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - p)))
                st = ulc_fail(ctx, ULC_ERR_PARSE, "%s: line %ld: expected two tokens separated by one "
                              "space", path, line);
            else if (tk_merge_add(tk, p, (size_t)(sp - p), sp + 1, n - (size_t)(sp + 1 - p), NULL, rank++,
                                  ctx) != ULC_OK)
                st = ulc_fail(ctx, ctx->status, "%s: line %ld", path, line);
        }
        p = nl ? nl + 1 : end;
    }
    ulc_mapping_unref(map);
    return st;
}

ulc_status tk_load_vocab_merges(ulc_tokenizer *tk, const char *dir, ulc_ctx *ctx) {
    char *path = NULL;
    cJSON *v = NULL;
    ulc_status st = read_json(dir, "vocab.json", &path, &v, ctx);
    for (const cJSON *c = v ? v->child : NULL; c && st == ULC_OK; c = c->next) {
        int64_t id;
        if (!cJSON_IsNumber(c) || !tk_num_id(c->valuedouble, &id))
            st = ulc_fail(ctx, ULC_ERR_PARSE, "%s: key '%.60s': expected an integer id", path, c->string);
        else if (tk_vocab_add(tk, c->string, strlen(c->string), id, ctx) != ULC_OK)
            st = ulc_fail(ctx, ctx->status, "%s", path);
    }
    cJSON_Delete(v);
    free(path);
    path = NULL;
    if (st != ULC_OK) return st;
    char *mpath = ulc_path_join(dir, "merges.txt");
    if (!mpath) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    st = ulc_path_exists(mpath) ? read_merges_txt(tk, mpath, ctx)
                                : ulc_fail(ctx, ULC_ERR_IO, "%s: vocab.json without merges.txt", dir);
    free(mpath);
    cJSON *added = NULL;
    if (st == ULC_OK) st = read_json(dir, "added_tokens.json", &path, &added, ctx);
    for (const cJSON *c = added ? added->child : NULL; c && st == ULC_OK; c = c->next) {
        tk_added a = {.content = c->string, .len = strlen(c->string), .normalized = 1};
        int64_t id;
        if (!cJSON_IsNumber(c) || !tk_num_id(c->valuedouble, &id))
            st = ulc_fail(ctx, ULC_ERR_PARSE, "%s: key '%.60s': expected an integer id", path, c->string);
        else if (tk_added_add(tk, &a, id, ctx) != ULC_OK)
            st = ulc_fail(ctx, ctx->status, "%s", path);
    }
    cJSON_Delete(added);
    free(path);
    tk->split = TK_SPLIT_GPT2;
    tk->byte_decoder = 1;
    if (st == ULC_OK) st = tk_load_side_files(tk, dir, 1, ctx);
    if (st == ULC_OK) st = tk_finish(tk, NULL, NULL, NULL, ctx);
    return st;
}
