/*
 * tokenizer.c — a tokenizer's tables (tok_internal.h) as the loaders fill them, and the public
 * calls that are not encoding: load (a tokenizer.json, or a directory), free, accessors, clone.
 *
 * The rules are tokenizers' (0.15): a merge `a b` needs a, b and a+b (b without the continuing
 * prefix) in the vocabulary, a repeated pair keeps its later rank; an added token takes the
 * vocabulary's id for its text, else the next free id; a special token's role (bos, eos, pad,
 * unk) comes from the files beside it (special_tokens_map.json, tokenizer_config.json), the
 * model's unk_token and the post-processor, GPT2's <|endoftext|> standing for bos/eos/unk.
 */
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "text/tok_internal.h"

void ulc_ids_clear(ulc_ids *ids) {
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

ulc_status tk_vocab_add(ulc_tokenizer *tk, const char *tok, size_t n, int64_t id, ulc_ctx *ctx) {
    if (id < 0 || id >= INT32_MAX)
        return ulc_fail(ctx, ULC_ERR_INVALID, "token '%.*s' has id %lld, expected 0 to %d",
                        (int)(n > 60 ? 60 : n), tok, (long long)id, INT32_MAX - 1);
    int64_t prev;
    if (tk_strtab_put(&tk->vocab, tok, n, id, &prev) != 0)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory reading the vocabulary");
    if (prev >= 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "token '%.*s' is in the vocabulary twice",
                        (int)(n > 60 ? 60 : n), tok);
    if (id + 1 > tk->n_ids) tk->n_ids = id + 1;
    /* its bytes, when every character is a byte's */
    char buf[1024];
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len;
        int b = tk_char_byte(tk_utf8_next((const unsigned char *)tok + i, n - i, &len));
        if (b < 0 || k == sizeof buf) return ULC_OK;
        buf[k++] = (char)b;
        i += len;
    }
    if (tk_strtab_put(&tk->bvocab, buf, k, id, NULL) != 0)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory reading the vocabulary");
    return ULC_OK;
}

ulc_status tk_added_add(ulc_tokenizer *tk, const tk_added *a, int64_t want_id, ulc_ctx *ctx) {
    if (!a->len) return ULC_OK; /* tokenizers skips an empty token */
    int64_t max_added = -1;
    for (size_t i = 0; i < tk->n_added; i++) {
        if (tk->added[i].len == a->len && memcmp(tk->added[i].content, a->content, a->len) == 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "added token '%s' is given twice", a->content);
        if (tk->added[i].id > max_added) max_added = tk->added[i].id;
    }
    int64_t vsize = (int64_t)tk->vocab.n;
    int64_t id = tk_strtab_get(&tk->vocab, a->content, a->len);
    if (id < 0) id = max_added < 0 ? vsize : (max_added >= vsize || vsize == 0 ? max_added + 1 : vsize);
    if (want_id >= 0 && want_id != id)
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "added token '%s' has id %lld, but tokenizers gives it %lld (the "
                        "vocabulary's id for its text, else the next free id)",
                        a->content, (long long)want_id, (long long)id);
    tk_added *v = realloc(tk->added, (tk->n_added + 1) * sizeof *v);
    if (!v) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    tk->added = v;
    v[tk->n_added] = *a;
    v[tk->n_added].id = id;
    v[tk->n_added].content = malloc(a->len + 1);
    if (!v[tk->n_added].content) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    memcpy(v[tk->n_added].content, a->content, a->len + 1);
    tk->n_added++;
    if (id + 1 > tk->n_ids) tk->n_ids = id + 1;
    return ULC_OK;
}

ulc_status tk_merge_add(ulc_tokenizer *tk, const char *a, size_t an, const char *b, size_t bn,
                        const char *prefix, int32_t rank, ulc_ctx *ctx) {
    int64_t ia = tk_strtab_get(&tk->vocab, a, an), ib = tk_strtab_get(&tk->vocab, b, bn);
    if (ia < 0 || ib < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "merge %d ('%.*s %.*s'): '%.*s' is not in the vocabulary",
                        rank + 1, (int)an, a, (int)bn, b, ia < 0 ? (int)an : (int)bn, ia < 0 ? a : b);
    size_t pn = prefix ? strlen(prefix) : 0;
    if (pn && (bn < pn || memcmp(b, prefix, pn) != 0))
        return ulc_fail(ctx, ULC_ERR_INVALID, "merge %d ('%.*s %.*s'): '%.*s' does not start with "
                        "the continuing subword prefix '%s'", rank + 1, (int)an, a, (int)bn, b,
                        (int)bn, b, prefix);
    char stack[512], *m = an + bn < sizeof stack ? stack : malloc(an + bn + 1);
    if (!m) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    memcpy(m, a, an);
    memcpy(m + an, b + pn, bn - pn);
    int64_t id = tk_strtab_get(&tk->vocab, m, an + bn - pn);
    ulc_status st = ULC_OK;
    if (id < 0)
        st = ulc_fail(ctx, ULC_ERR_INVALID, "merge %d ('%.*s %.*s'): the merged token '%.*s' is not "
                      "in the vocabulary", rank + 1, (int)an, a, (int)bn, b, (int)(an + bn - pn), m);
    else if (tk_bpe_add_merge(&tk->bpe, (int32_t)ia, (int32_t)ib, (int32_t)id, rank) != 0)
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory reading the merges");
    if (m != stack) free(m);
    return st;
}

/* Sorts the matcher's tokens by first byte, then longest first (leftmost-longest matching). */
static int added_cmp(const void *x, const void *y) {
    const tk_added *a = *(tk_added *const *)x, *b = *(tk_added *const *)y;
    if ((unsigned char)a->content[0] != (unsigned char)b->content[0])
        return (unsigned char)a->content[0] - (unsigned char)b->content[0];
    return a->len < b->len ? 1 : a->len > b->len ? -1 : 0;
}

static ulc_status build_matchers(ulc_tokenizer *tk, ulc_ctx *ctx) {
    for (int pass = 0; pass < 2; pass++) {
        tk_matcher *m = pass ? &tk->norm_match : &tk->raw_match;
        m->tok = calloc(tk->n_added + 1, sizeof *m->tok);
        if (!m->tok) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < tk->n_added; i++) {
            if (tk->added[i].normalized != pass) continue;
            m->tok[m->n++] = &tk->added[i];
            m->first[(unsigned char)tk->added[i].content[0]] = 1;
        }
        qsort(m->tok, m->n, sizeof *m->tok, added_cmp);
    }
    return ULC_OK;
}

/* The id of prefix + char(b) + suffix, or -1. */
static int32_t byte_symbol(const ulc_tokenizer *tk, unsigned b, const char *prefix, const char *suffix) {
    char buf[256];
    size_t pn = prefix ? strlen(prefix) : 0, sn = suffix ? strlen(suffix) : 0;
    if (pn + sn + 4 > sizeof buf) return -1;
    memcpy(buf, prefix ? prefix : "", pn);
    size_t k = pn + tk_utf8_put(tk_byte_char(b), buf + pn);
    memcpy(buf + k, suffix ? suffix : "", sn);
    return (int32_t)tk_strtab_get(&tk->vocab, buf, k + sn);
}

/* Per id, what decoding gives: the byte-level decoder's bytes (a token with a character that is
 * no byte's decodes to its own UTF-8, as tokenizers' ByteLevel decoder does), else the text. */
static ulc_status decode_tables(ulc_tokenizer *tk, ulc_ctx *ctx) {
    size_t n = (size_t)tk->n_ids, total = 0;
    const char **text = calloc(n + 1, sizeof *text);
    size_t *tlen = calloc(n + 1, sizeof *tlen);
    tk->dec_off = calloc(n + 1, sizeof *tk->dec_off);
    tk->dec_len = malloc((n + 1) * sizeof *tk->dec_len);
    tk->is_special = calloc(n + 1, 1);
    if (!text || !tlen || !tk->dec_off || !tk->dec_len || !tk->is_special) {
        free(text), free(tlen);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < tk->vocab.n; i++) {
        size_t id = (size_t)tk->vocab.ent[i].val;
        if (text[id]) {
            ulc_fail(ctx, ULC_ERR_INVALID, "id %zu is given to two tokens ('%s' and '%s')", id,
                     text[id], tk->vocab.pool + tk->vocab.ent[i].off);
            free(text), free(tlen);
            return ctx->status;
        }
        text[id] = tk->vocab.pool + tk->vocab.ent[i].off;
        tlen[id] = tk->vocab.ent[i].len;
    }
    for (size_t i = 0; i < tk->n_added; i++) { /* added tokens come first, as in id_to_token */
        text[tk->added[i].id] = tk->added[i].content;
        tlen[tk->added[i].id] = tk->added[i].len;
        tk->is_special[tk->added[i].id] = (uint8_t)tk->added[i].special;
    }
    for (size_t i = 0; i < n; i++) total += tlen[i];
    tk->dec_pool = malloc(total + 1);
    if (!tk->dec_pool) {
        free(text), free(tlen);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        tk->dec_off[i] = at;
        tk->dec_len[i] = text[i] ? (int64_t)tlen[i] : -1;
        if (!text[i]) continue;
        size_t k = 0, ok = tk->byte_decoder;
        for (size_t j = 0; j < tlen[i] && ok;) {
            size_t len;
            int b = tk_char_byte(tk_utf8_next((const unsigned char *)text[i] + j, tlen[i] - j, &len));
            if (b < 0) ok = 0;
            else tk->dec_pool[at + k++] = (char)b;
            j += len;
        }
        if (!ok) memcpy(tk->dec_pool + at, text[i], k = tlen[i]);
        tk->dec_len[i] = (int64_t)k;
        at += k;
    }
    free(text), free(tlen);
    return ULC_OK;
}

ulc_status tk_finish(ulc_tokenizer *tk, const char *prefix, const char *suffix, const char *unk,
                     ulc_ctx *ctx) {
    tk->bpe.unk_id = -1;
    if (unk) {
        tk->bpe.unk_id = tk_strtab_get(&tk->vocab, unk, strlen(unk));
        if (tk->bpe.unk_id < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "the unk_token '%s' is not in the vocabulary", unk);
        if (tk->role[3] < 0) tk->role[3] = tk->bpe.unk_id;
    }
    for (int first = 0; first < 2; first++)
        for (int last = 0; last < 2; last++)
            for (unsigned b = 0; b < 256; b++)
                tk->bpe.byte_id[first][last][b] =
                    byte_symbol(tk, b, first ? NULL : prefix, last ? suffix : NULL);
    tk->bpe.bytes_vocab = &tk->bvocab;
    ULC_TRY(build_matchers(tk, ctx));
    ULC_TRY(decode_tables(tk, ctx));
    for (int i = 0; i < tk->n_pre + tk->n_post; i++) {
        int64_t id = i < tk->n_pre ? tk->pre[i] : tk->post[i - tk->n_pre];
        if (id >= tk->n_ids || tk->dec_len[id] < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "post_processor: id %lld is no token's", (long long)id);
    }
    /* GPT2's convention when the files name no roles */
    int64_t eot = -1;
    for (size_t i = 0; i < tk->n_added; i++)
        if (tk->added[i].special && strcmp(tk->added[i].content, "<|endoftext|>") == 0) eot = tk->added[i].id;
    if (eot >= 0 && tk->kind == ULC_TOK_BYTE_BPE)
        for (int r = 0; r < 4; r++)
            if (r != 2 && tk->role[r] < 0) tk->role[r] = eot;
    return ULC_OK;
}

static void tk_free_tables(ulc_tokenizer *tk) {
    tk_strtab_free(&tk->vocab);
    tk_strtab_free(&tk->bvocab);
    for (size_t i = 0; i < tk->n_added; i++) free(tk->added[i].content);
    free(tk->added);
    free(tk->raw_match.tok);
    free(tk->norm_match.tok);
    free(tk->dec_pool);
    free(tk->dec_off);
    free(tk->dec_len);
    free(tk->is_special);
    tk_bpe_free(&tk->bpe);
    free(tk->scratch);
}

void ulc_tokenizer_free(ulc_tokenizer *tk) {
    if (!tk) return;
    tk_free_tables(tk);
    free(tk->path);
    free(tk->src);
    free(tk);
}

ulc_status ulc_tokenizer_load(const char *path, ulc_tokenizer **out, ulc_ctx *ctx) {
    *out = NULL;
    ulc_tokenizer *tk = calloc(1, sizeof *tk);
    if (!tk) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int r = 0; r < 4; r++) tk->role[r] = -1;
    ulc_status st;
    if (!(tk->src = strdup(path))) {
        free(tk);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    if (ulc_path_is_dir(path)) {
        char *json = ulc_path_join(path, "tokenizer.json");
        char *vocab = ulc_path_join(path, "vocab.json");
        if (!json || !vocab) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        else if (ulc_path_exists(json)) {
            tk->path = json, json = NULL;
            st = tk_load_json(tk, tk->path, ctx);
        } else if (ulc_path_exists(vocab)) {
            tk->path = vocab, vocab = NULL;
            st = tk_load_vocab_merges(tk, path, ctx);
        } else {
            st = ulc_fail(ctx, ULC_ERR_IO, "%s: no tokenizer.json, nor vocab.json + merges.txt, in "
                          "the directory", path);
        }
        free(json), free(vocab);
    } else {
        tk->path = strdup(path);
        st = tk->path ? tk_load_json(tk, path, ctx) : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    if (st != ULC_OK) {
        ulc_tokenizer_free(tk);
        return st;
    }
    *out = tk;
    return ULC_OK;
}

ulc_status ulc_tokenizer_clone(const ulc_tokenizer *tk, ulc_tokenizer **out, ulc_ctx *ctx) {
    return ulc_tokenizer_load(tk->src, out, ctx);
}

ulc_tok_kind ulc_tokenizer_kind(const ulc_tokenizer *tk) { return tk->kind; }
const char *ulc_tokenizer_path(const ulc_tokenizer *tk) { return tk->path; }
int64_t ulc_tokenizer_vocab_size(const ulc_tokenizer *tk) { return tk->n_ids; }

int64_t ulc_tokenizer_special(const ulc_tokenizer *tk, const char *role) {
    static const char *const names[4] = {"bos", "eos", "pad", "unk"};
    for (int r = 0; r < 4; r++)
        if (strcmp(role, names[r]) == 0) return tk->role[r];
    return -1;
}

int64_t ulc_tokenizer_token_id(const ulc_tokenizer *tk, const char *tok, size_t n) {
    for (size_t i = 0; i < tk->n_added; i++)
        if (tk->added[i].len == n && memcmp(tk->added[i].content, tok, n) == 0) return tk->added[i].id;
    return tk_strtab_get(&tk->vocab, tok, n);
}
