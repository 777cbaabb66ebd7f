/*
 * tok_json.c — a Hugging Face tokenizer.json (tokenizers' serialization) through common/json.c:
 *
 *   { "version", "truncation": null, "padding": null,
 *     "added_tokens": [{id, content, single_word, lstrip, rstrip, normalized, special}],
 *     "normalizer": null | NFC | Lowercase | Replace \s+ -> " " | a Sequence of them (CLIP's),
 *     "pre_tokenizer": ByteLevel{add_prefix_space, trim_offsets, use_regex}
 *                    | Sequence [Split (CLIP's pattern, invert, Removed), ByteLevel{use_regex: false}],
 *     "post_processor": null | ByteLevel | RobertaProcessing | BertProcessing | TemplateProcessing,
 *     "decoder": null | ByteLevel,
 *     "model": {type BPE, dropout null, unk_token, continuing_subword_prefix, end_of_word_suffix,
 *               fuse_unk, byte_fallback false, ignore_merges, vocab {tok: id},
 *               merges ["a b", ...] or [["a", "b"], ...]} }
 *
 * Every key is checked: one ulc does not know, or a value it does not implement, is refused
 * naming the file and the key path (ULC_ERR_UNSUPPORTED); a wrong type is ULC_ERR_PARSE.
 */
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/json.h"
#include "text/tok_internal.h"

typedef struct jrd {
    ulc_tokenizer *tk;
    const char *file;
    ulc_ctx *ctx;
} jrd;

static ulc_status unsupported(jrd *r, const char *key, const char *what) {
    return ulc_fail(r->ctx, ULC_ERR_UNSUPPORTED, "%s: key '%s': %s", r->file, key, what);
}

static ulc_status bad_type(jrd *r, const char *key, const char *want) {
    return ulc_fail(r->ctx, ULC_ERR_PARSE, "%s: key '%s': expected %s", r->file, key, want);
}

/* Every key of obj must be in the NULL-terminated list. */
static ulc_status known_keys(jrd *r, const cJSON *obj, const char *where, const char *const *keys) {
    if (!cJSON_IsObject(obj)) return bad_type(r, where, "an object");
    for (const cJSON *c = obj->child; c; c = c->next) {
        int ok = 0;
        for (const char *const *k = keys; *k && !ok; k++) ok = strcmp(*k, c->string) == 0;
        if (!ok)
            return ulc_fail(r->ctx, ULC_ERR_UNSUPPORTED, "%s: key '%s%s%s' is not something ulc "
                            "implements", r->file, where, *where ? "." : "", c->string);
    }
    return ULC_OK;
}

static ulc_status get_bool(jrd *r, const cJSON *obj, const char *where, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return ULC_OK;
    if (!cJSON_IsBool(v)) {
        char k[256];
        snprintf(k, sizeof k, "%s.%s", where, key);
        return bad_type(r, k, "true or false");
    }
    *out = cJSON_IsTrue(v);
    return ULC_OK;
}

/* A string or null (*out NULL) at obj.key. */
static ulc_status get_str(jrd *r, const cJSON *obj, const char *where, const char *key, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return ULC_OK;
    if (!cJSON_IsString(v)) {
        char k[256];
        snprintf(k, sizeof k, "%s.%s", where, key);
        return bad_type(r, k, "a string or null");
    }
    *out = v->valuestring;
    return ULC_OK;
}

static const char *type_of(const cJSON *obj) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static ulc_status read_vocab(jrd *r, const cJSON *vocab) {
    if (!cJSON_IsObject(vocab)) return bad_type(r, "model.vocab", "an object of token: id");
    for (const cJSON *c = vocab->child; c; c = c->next) {
        int64_t id;
        if (!cJSON_IsNumber(c) || !tk_num_id(c->valuedouble, &id)) {
            char k[128];
            snprintf(k, sizeof k, "model.vocab.%.60s", c->string);
            return bad_type(r, k, "an integer id");
        }
        if (tk_vocab_add(r->tk, c->string, strlen(c->string), id, r->ctx) != ULC_OK)
            return ulc_fail(r->ctx, r->ctx->status, "%s: model.vocab", r->file);
    }
    return ULC_OK;
}

static ulc_status read_merges(jrd *r, const cJSON *merges, const char *prefix) {
    if (!merges) return ULC_OK;
    if (!cJSON_IsArray(merges)) return bad_type(r, "model.merges", "a list");
    int32_t rank = 0;
    for (const cJSON *c = merges->child; c; c = c->next, rank++) {
        const char *a, *b;
        size_t an, bn;
        if (cJSON_IsString(c)) { /* "a b": exactly one space, as tokenizers splits it */
            a = c->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return ulc_fail(r->ctx, ULC_ERR_PARSE, "%s: key 'model.merges[%d]': '%s' is not "
                                "two tokens separated by one space", r->file, rank, a);
            an = (size_t)(sp - a), b = sp + 1, bn = strlen(b);
        } else if (cJSON_IsArray(c) && cJSON_GetArraySize(c) == 2 && cJSON_IsString(c->child) &&
                   cJSON_IsString(c->child->next)) {
            a = c->child->valuestring, b = c->child->next->valuestring;
            an = strlen(a), bn = strlen(b);
        } else {
            char k[64];
            snprintf(k, sizeof k, "model.merges[%d]", rank);
            return bad_type(r, k, "\"a b\" or [\"a\", \"b\"]");
        }
        if (tk_merge_add(r->tk, a, an, b, bn, prefix, rank, r->ctx) != ULC_OK)
            return ulc_fail(r->ctx, r->ctx->status, "%s: model.merges", r->file);
    }
    return ULC_OK;
}

static ulc_status read_model(jrd *r, const cJSON *m) {
    static const char *const keys[] = {"type", "dropout", "unk_token", "continuing_subword_prefix",
                                       "end_of_word_suffix", "fuse_unk", "byte_fallback",
                                       "ignore_merges", "vocab", "merges", NULL};
    if (!m) return ulc_fail(r->ctx, ULC_ERR_PARSE, "%s: no key 'model'", r->file);
    ULC_TRY(known_keys(r, m, "model", keys));
    const char *type = type_of(m);
    if (!type || strcmp(type, "BPE") != 0)
        return unsupported(r, "model.type", type ? "only BPE is implemented" : "missing");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (drop && !cJSON_IsNull(drop)) return unsupported(r, "model.dropout", "BPE dropout is not implemented (null only)");
    int byte_fallback = 0;
    const char *unk, *prefix, *suffix;
    ULC_TRY(get_bool(r, m, "model", "byte_fallback", &byte_fallback));
    if (byte_fallback) return unsupported(r, "model.byte_fallback", "byte fallback is not implemented (false only)");
    ULC_TRY(get_bool(r, m, "model", "fuse_unk", &r->tk->bpe.fuse_unk));
    ULC_TRY(get_bool(r, m, "model", "ignore_merges", &r->tk->bpe.ignore_merges));
    ULC_TRY(get_str(r, m, "model", "unk_token", &unk));
    ULC_TRY(get_str(r, m, "model", "continuing_subword_prefix", &prefix));
    ULC_TRY(get_str(r, m, "model", "end_of_word_suffix", &suffix));
    ULC_TRY(read_vocab(r, cJSON_GetObjectItemCaseSensitive(m, "vocab")));
    ULC_TRY(read_merges(r, cJSON_GetObjectItemCaseSensitive(m, "merges"), prefix));
    r->tk->bpe.unk_id = unk ? tk_strtab_get(&r->tk->vocab, unk, strlen(unk)) : -1;
    if (unk && r->tk->bpe.unk_id < 0)
        return ulc_fail(r->ctx, ULC_ERR_INVALID, "%s: key 'model.unk_token': '%s' is not in the "
                        "vocabulary", r->file, unk);
    return ULC_OK;
}

static ulc_status read_added(jrd *r, const cJSON *list) {
    static const char *const keys[] = {"id", "content", "single_word", "lstrip", "rstrip",
                                       "normalized", "special", NULL};
    if (!list || cJSON_IsNull(list)) return ULC_OK;
    if (!cJSON_IsArray(list)) return bad_type(r, "added_tokens", "a list");
    int i = 0;
    for (const cJSON *c = list->child; c; c = c->next, i++) {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%d]", i);
        ULC_TRY(known_keys(r, c, where, keys));
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        const char *content;
        ULC_TRY(get_str(r, c, where, "content", &content));
        int64_t want;
        if (!content || !cJSON_IsNumber(id) || !tk_num_id(id->valuedouble, &want))
            return bad_type(r, where, "an object with an integer 'id' and a string 'content'");
        tk_added a = {.content = (char *)content, .len = strlen(content), .normalized = 1};
        ULC_TRY(get_bool(r, c, where, "single_word", &a.single_word));
        ULC_TRY(get_bool(r, c, where, "lstrip", &a.lstrip));
        ULC_TRY(get_bool(r, c, where, "rstrip", &a.rstrip));
        ULC_TRY(get_bool(r, c, where, "normalized", &a.normalized));
        ULC_TRY(get_bool(r, c, where, "special", &a.special));
        if (tk_added_add(r->tk, &a, want, r->ctx) != ULC_OK)
            return ulc_fail(r->ctx, r->ctx->status, "%s: %s", r->file, where);
    }
    return ULC_OK;
}

/* One normalizer (not a Sequence) at where. */
static ulc_status read_norm_step(jrd *r, const cJSON *n, const char *where) {
    static const char *const plain[] = {"type", NULL};
    static const char *const repl[] = {"type", "pattern", "content", NULL};
    const char *type = type_of(n);
    char key[96];
    snprintf(key, sizeof key, "%s.type", where);
    if (!type) return bad_type(r, key, "a normalizer type");
    if (r->tk->n_norm == 4) return unsupported(r, where, "more than 4 normalizer steps");
    if (strcmp(type, "Lowercase") == 0) {
        ULC_TRY(known_keys(r, n, where, plain));
        r->tk->norm[r->tk->n_norm++] = TK_NORM_LOWER;
        return ULC_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        ULC_TRY(known_keys(r, n, where, repl));
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(p, "Regex");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(n, "content");
        if (!cJSON_IsString(re) || strcmp(re->valuestring, "\\s+") != 0 || !cJSON_IsString(content) ||
            strcmp(content->valuestring, " ") != 0)
            return unsupported(r, where, "a Replace other than CLIP's (Regex \\s+ -> \" \") is not implemented");
        r->tk->norm[r->tk->n_norm++] = TK_NORM_WS_TO_SPACE;
        return ULC_OK;
    }
    if (strcmp(type, "NFC") == 0) {
        ULC_TRY(known_keys(r, n, where, plain));
        r->tk->norm[r->tk->n_norm++] = TK_NORM_NFC;
        return ULC_OK;
    }
    char what[160];
    snprintf(what, sizeof what, "normalizer '%.60s' is not implemented", type);
    return unsupported(r, key, what);
}

static ulc_status read_normalizer(jrd *r, const cJSON *n) {
    static const char *const seq[] = {"type", "normalizers", NULL};
    if (!n || cJSON_IsNull(n)) return ULC_OK;
    const char *type = type_of(n);
    if (!type || strcmp(type, "Sequence") != 0) return read_norm_step(r, n, "normalizer");
    ULC_TRY(known_keys(r, n, "normalizer", seq));
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (!cJSON_IsArray(list)) return bad_type(r, "normalizer.normalizers", "a list");
    int i = 0;
    for (const cJSON *c = list->child; c; c = c->next, i++) {
        char where[64];
        snprintf(where, sizeof where, "normalizer.normalizers[%d]", i);
        ULC_TRY(read_norm_step(r, c, where));
    }
    return ULC_OK;
}

static ulc_status read_bytelevel(jrd *r, const cJSON *b, const char *where, int *prefix, int *regex) {
    static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
    int trim = 1;
    *prefix = 1, *regex = 1;
    ULC_TRY(known_keys(r, b, where, keys));
    ULC_TRY(get_bool(r, b, where, "add_prefix_space", prefix));
    ULC_TRY(get_bool(r, b, where, "trim_offsets", &trim)); /* offsets only: ulc gives none */
    return get_bool(r, b, where, "use_regex", regex);
}

#define CLIP_SPLIT "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"

static ulc_status read_split(jrd *r, const cJSON *s, const char *where) {
    static const char *const keys[] = {"type", "pattern", "behavior", "invert", NULL};
    ULC_TRY(known_keys(r, s, where, keys));
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "pattern"), "Regex");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(s, "behavior");
    int invert = 0;
    ULC_TRY(get_bool(r, s, where, "invert", &invert));
    if (!cJSON_IsString(re) || strcmp(re->valuestring, CLIP_SPLIT) != 0 || !cJSON_IsString(beh) ||
        strcmp(beh->valuestring, "Removed") != 0 || !invert)
        return unsupported(r, where, "only CLIP's Split (its regex, behavior Removed, invert) is implemented");
    r->tk->split = TK_SPLIT_CLIP;
    return ULC_OK;
}

static ulc_status read_pretok(jrd *r, const cJSON *p) {
    static const char *const seq[] = {"type", "pretokenizers", NULL};
    if (!p || cJSON_IsNull(p))
        return unsupported(r, "pre_tokenizer", "ulc's BPE needs the ByteLevel pre-tokenizer (null given)");
    const char *type = type_of(p);
    int prefix, regex;
    if (type && strcmp(type, "ByteLevel") == 0) {
        ULC_TRY(read_bytelevel(r, p, "pre_tokenizer", &prefix, &regex));
        r->tk->add_prefix_space = prefix;
        r->tk->split = regex ? TK_SPLIT_GPT2 : TK_SPLIT_NONE;
        return ULC_OK;
    }
    if (!type || strcmp(type, "Sequence") != 0)
        return unsupported(r, "pre_tokenizer.type", "only ByteLevel, or CLIP's Sequence [Split, ByteLevel], is implemented");
    ULC_TRY(known_keys(r, p, "pre_tokenizer", seq));
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2 || strcmp(type_of(list->child) ? type_of(list->child) : "", "Split") != 0 ||
        strcmp(type_of(list->child->next) ? type_of(list->child->next) : "", "ByteLevel") != 0)
        return unsupported(r, "pre_tokenizer.pretokenizers", "only CLIP's [Split, ByteLevel] is implemented");
    ULC_TRY(read_split(r, list->child, "pre_tokenizer.pretokenizers[0]"));
    ULC_TRY(read_bytelevel(r, list->child->next, "pre_tokenizer.pretokenizers[1]", &prefix, &regex));
    if (regex || prefix)
        return unsupported(r, "pre_tokenizer.pretokenizers[1]", "after a Split, ByteLevel must have use_regex and add_prefix_space false");
    r->tk->kind = ULC_TOK_CLIP_BPE;
    return ULC_OK;
}

static ulc_status read_decoder(jrd *r, const cJSON *d) {
    int prefix, regex;
    if (!d || cJSON_IsNull(d)) return ULC_OK;
    const char *type = type_of(d);
    if (!type || strcmp(type, "ByteLevel") != 0) return unsupported(r, "decoder.type", "only ByteLevel (or null) is implemented");
    r->tk->byte_decoder = 1;
    return read_bytelevel(r, d, "decoder", &prefix, &regex);
}

/* ["<s>", 0] of Roberta/Bert processors. */
static ulc_status special_pair(jrd *r, const cJSON *p, const char *key, int64_t *id) {
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2 || !cJSON_IsString(p->child) ||
        !cJSON_IsNumber(p->child->next) || !tk_num_id(p->child->next->valuedouble, id))
        return bad_type(r, key, "[token, id]");
    return ULC_OK;
}

static ulc_status template_single(jrd *r, const cJSON *p) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    if (!cJSON_IsArray(single)) return bad_type(r, "post_processor.single", "a list");
    int seen_a = 0, i = 0;
    for (const cJSON *c = single->child; c; c = c->next, i++) {
        char where[64];
        snprintf(where, sizeof where, "post_processor.single[%d]", i);
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(c, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(c, "SpecialToken");
        if (seq) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(seq, "id");
            if (!cJSON_IsString(id) || strcmp(id->valuestring, "A") != 0 || seen_a)
                return unsupported(r, where, "a single template holds sequence A once");
            seen_a = 1;
            continue;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
        if (!cJSON_IsString(name)) return bad_type(r, where, "{\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(specials, name->valuestring), "ids");
        if (!cJSON_IsArray(ids))
            return ulc_fail(r->ctx, ULC_ERR_INVALID, "%s: key '%s': special token '%s' is not in "
                            "post_processor.special_tokens", r->file, where, name->valuestring);
        for (const cJSON *v = ids->child; v; v = v->next) {
            int *n = seen_a ? &r->tk->n_post : &r->tk->n_pre;
            int64_t id;
            if (!cJSON_IsNumber(v) || !tk_num_id(v->valuedouble, &id)) return bad_type(r, where, "integer ids");
            if (*n == 4) return unsupported(r, where, "more than 4 special tokens on a side");
            (seen_a ? r->tk->post : r->tk->pre)[(*n)++] = id;
        }
    }
    if (!seen_a) return unsupported(r, "post_processor.single", "a template without sequence A");
    return ULC_OK;
}

static ulc_status read_post(jrd *r, const cJSON *p) {
    static const char *const rob[] = {"type", "sep", "cls", "trim_offsets", "add_prefix_space", NULL};
    static const char *const tpl[] = {"type", "single", "pair", "special_tokens", NULL};
    int prefix, regex;
    if (!p || cJSON_IsNull(p)) return ULC_OK;
    const char *type = type_of(p);
    if (type && strcmp(type, "ByteLevel") == 0) return read_bytelevel(r, p, "post_processor", &prefix, &regex);
    if (type && (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0)) {
        ULC_TRY(known_keys(r, p, "post_processor", rob));
        ULC_TRY(special_pair(r, cJSON_GetObjectItemCaseSensitive(p, "cls"), "post_processor.cls", &r->tk->pre[0]));
        ULC_TRY(special_pair(r, cJSON_GetObjectItemCaseSensitive(p, "sep"), "post_processor.sep", &r->tk->post[0]));
        r->tk->n_pre = r->tk->n_post = 1;
        if (r->tk->role[0] < 0) r->tk->role[0] = r->tk->pre[0];
        if (r->tk->role[1] < 0) r->tk->role[1] = r->tk->post[0];
        return ULC_OK;
    }
    if (type && strcmp(type, "TemplateProcessing") == 0) {
        ULC_TRY(known_keys(r, p, "post_processor", tpl));
        return template_single(r, p);
    }
    return unsupported(r, "post_processor.type", "only ByteLevel, RobertaProcessing, BertProcessing and "
                       "TemplateProcessing (or null) are implemented");
}

static ulc_status read_all(jrd *r, const cJSON *j) {
    static const char *const keys[] = {"version", "truncation", "padding", "added_tokens", "normalizer",
                                       "pre_tokenizer", "post_processor", "decoder", "model", NULL};
    ULC_TRY(known_keys(r, j, "", keys));
    const char *trunc[] = {"truncation", "padding"};
    for (int i = 0; i < 2; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, trunc[i]);
        if (t && !cJSON_IsNull(t))
            return unsupported(r, trunc[i], "a tokenizer's own truncation and padding are not applied: "
                               "set them null (ulc's rows take max_length, stride and padding as options)");
    }
    ULC_TRY(read_model(r, cJSON_GetObjectItemCaseSensitive(j, "model")));
    ULC_TRY(read_normalizer(r, cJSON_GetObjectItemCaseSensitive(j, "normalizer")));
    ULC_TRY(read_added(r, cJSON_GetObjectItemCaseSensitive(j, "added_tokens")));
    ULC_TRY(read_pretok(r, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer")));
    ULC_TRY(read_decoder(r, cJSON_GetObjectItemCaseSensitive(j, "decoder")));
    ULC_TRY(read_post(r, cJSON_GetObjectItemCaseSensitive(j, "post_processor")));
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
    const char *prefix = NULL, *suffix = NULL, *unk = NULL;
    get_str(r, m, "model", "continuing_subword_prefix", &prefix);
    get_str(r, m, "model", "end_of_word_suffix", &suffix);
    get_str(r, m, "model", "unk_token", &unk);
    if (tk_finish(r->tk, prefix, suffix, unk, r->ctx) != ULC_OK)
        return ulc_fail(r->ctx, r->ctx->status, "%s", r->file);
    return ULC_OK;
}

ulc_status tk_load_json(ulc_tokenizer *tk, const char *path, ulc_ctx *ctx) {
    ulc_mapping *map = NULL;
    ULC_TRY(ulc_mapping_open(path, "tokenizer", &map, ctx));
    cJSON *j = NULL;
    ulc_status st = ulc_json_parse((const char *)map->data, map->size, ULC_JSON_UNIQUE_KEYS, &j, ctx);
    ulc_mapping_unref(map);
    if (st != ULC_OK) return ulc_fail(ctx, st, "%s", path);
    jrd r = {.tk = tk, .file = path, .ctx = ctx};
    st = read_all(&r, j);
    cJSON_Delete(j);
    if (st == ULC_OK) {
        char *dir = ulc_path_dirname(path);
        if (!dir) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        st = tk_load_side_files(tk, dir, 0, ctx);
        free(dir);
    }
    return st;
}
