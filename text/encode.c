/*
 * encode.c — text to ids and back, and texts to rows, in tokenizers' order of work:
 *
 *   1. added tokens whose `normalized` is false are found in the raw text (leftmost-longest,
 *      with their single_word / lstrip / rstrip rules), splitting it;
 *   2. the pieces between them are normalized (CLIP: NFC, whitespace runs to one space, lower case),
 *      then split again on the normalized added tokens;
 *   3. each remaining piece gets its prefix space (ByteLevel add_prefix_space, when it does not
 *      start with one), is split into words by the pre-tokenizer's scanner (pretok.c), and each
 *      word's bytes go through the BPE (bpe.c);
 *   4. the post-processor's tokens go around the whole when add_special is set.
 *
 * Decoding joins the tokens' decoded bytes (tokenizer.c's tables) and replaces what is not
 * valid UTF-8 with U+FFFD as from_utf8_lossy does. Rows follow Encoding::truncate (windows that
 * start every max_length - stride tokens, the first one the main row) and pad on the right.
 */
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "text/tok_internal.h"

static int ensure_scratch(ulc_tokenizer *tk, size_t n) {
    if (n <= tk->scratch_cap) return 0;
    size_t cap = tk->scratch_cap ? tk->scratch_cap : 256;
    while (cap < n) cap *= 2;
    char *s = realloc(tk->scratch, cap);
    if (!s) return -1;
    tk->scratch = s;
    tk->scratch_cap = cap;
    return 0;
}

/* Step 3: one piece through the pre-tokenizer and the model. */
static ulc_status encode_piece(ulc_tokenizer *tk, const char *p, size_t n, ulc_ids *out, ulc_ctx *ctx) {
    if (!n) return ULC_OK;
    if (tk->add_prefix_space && p[0] != ' ') {
        if (ensure_scratch(tk, n + 1) != 0) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory encoding text");
        tk->scratch[0] = ' ';
        memcpy(tk->scratch + 1, p, n);
        p = tk->scratch, n++;
    }
    const unsigned char *u = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        size_t skip, len = tk_pretok_next(tk->split, u + i, n - i, &skip);
        if (len) ULC_TRY(tk_bpe_word(&tk->bpe, u + i + skip, len, out, ctx));
        i += skip + len;
    }
    return ULC_OK;
}

/* Rust regex \w at the end of p[0..n) / at its start (single_word). */
static int ends_with_word(const unsigned char *p, size_t n) {
    if (!n) return 0;
    size_t i = n - 1, len;
    while (i > 0 && (p[i] & 0xc0) == 0x80) i--;
    return (tk_uc_class(tk_utf8_next(p + i, n - i, &len)) & TK_UC_W) != 0;
}

static int starts_with_word(const unsigned char *p, size_t n) {
    size_t len;
    return n && (tk_uc_class(tk_utf8_next(p, n, &len)) & TK_UC_W) != 0;
}

/* Where the whitespace run that ends p[0..n) starts (n when there is none). */
static size_t space_left(const unsigned char *p, size_t n) {
    size_t at = n;
    while (at > 0) {
        size_t i = at - 1, len;
        while (i > 0 && (p[i] & 0xc0) == 0x80) i--;
        if (!(tk_uc_class(tk_utf8_next(p + i, at - i, &len)) & TK_UC_S)) break;
        at = i;
    }
    return at;
}

static size_t space_right(const unsigned char *p, size_t n) {
    size_t i = 0, len;
    while (i < n && (tk_uc_class(tk_utf8_next(p + i, n - i, &len)) & TK_UC_S)) i += len;
    return i;
}

static ulc_status encode_normalized(ulc_tokenizer *tk, const char *p, size_t n, ulc_ids *out, ulc_ctx *ctx);

/* Steps 1-2: text split on the matcher's tokens (AddedVocabulary::find_matches); the pieces
 * between go on to normalization (raw pass) or to the pre-tokenizer (normalized pass). */
static ulc_status split_added(ulc_tokenizer *tk, const tk_matcher *m, int raw, const char *text,
                              size_t n, ulc_ids *out, ulc_ctx *ctx) {
    const unsigned char *u = (const unsigned char *)text;
    size_t done = 0; /* start_offset: the end of the last token taken */
    for (size_t i = 0; m->n && i < n;) {
        if (!m->first[u[i]]) {
            i++;
            continue;
        }
        const tk_added *hit = NULL;
        for (size_t k = 0; k < m->n && !hit; k++) {
            const tk_added *a = m->tok[k];
            if ((unsigned char)a->content[0] == u[i] && a->len <= n - i && memcmp(a->content, u + i, a->len) == 0)
                hit = a;
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t start = i, stop = i + hit->len;
        i = stop; /* the search goes on after the match, taken or not */
        if (hit->single_word && ((start && ends_with_word(u, start)) || starts_with_word(u + stop, n - stop)))
            continue;
        if (hit->lstrip) {
            size_t s = space_left(u, start);
            start = s > done ? s : done;
        }
        if (hit->rstrip) stop += space_right(u + stop, n - stop);
        if (done < start)
            ULC_TRY(raw ? encode_normalized(tk, text + done, start - done, out, ctx)
                        : encode_piece(tk, text + done, start - done, out, ctx));
        if (tk_ids_push(out, hit->id) != 0) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory encoding text");
        done = stop;
    }
    if (done < n)
        ULC_TRY(raw ? encode_normalized(tk, text + done, n - done, out, ctx)
                    : encode_piece(tk, text + done, n - done, out, ctx));
    return ULC_OK;
}

/* The normalizer's steps over p[0..n) into *buf (malloc'd), *len bytes. */
static ulc_status normalize(const ulc_tokenizer *tk, const char *p, size_t n, char **buf, size_t *len,
                            ulc_ctx *ctx) {
    char *cur = malloc(n + 1);
    if (!cur) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory normalizing text");
    memcpy(cur, p, n);
    for (int s = 0; s < tk->n_norm; s++) {
        if (tk->norm[s] == TK_NORM_NFC) {
            char *nfc = NULL;
            ulc_status st = tk_nfc(cur, n, &nfc, &n, ctx);
            free(cur);
            if (st != ULC_OK) return st;
            cur = nfc;
            continue;
        }
        char *next = malloc(3 * n + 1); /* a lower-case mapping is at most 3 times longer */
        if (!next) {
            free(cur);
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory normalizing text");
        }
        size_t o = 0, l;
        const unsigned char *u = (const unsigned char *)cur;
        for (size_t i = 0; i < n; i += l) {
            uint32_t cp = tk_utf8_next(u + i, n - i, &l), lo[3];
            if (tk->norm[s] == TK_NORM_WS_TO_SPACE && (tk_uc_class(cp) & TK_UC_S)) {
                size_t j = i + l + space_right(u + i + l, n - i - l);
                next[o++] = ' ';
                l = j - i;
            } else if (tk->norm[s] == TK_NORM_LOWER) {
                int k = tk_uc_lower(cp, lo);
                for (int t = 0; t < k; t++) o += tk_utf8_put(lo[t], next + o);
            } else {
                memcpy(next + o, cur + i, l);
                o += l;
            }
        }
        free(cur);
        cur = next, n = o;
    }
    *buf = cur, *len = n;
    return ULC_OK;
}

static ulc_status encode_normalized(ulc_tokenizer *tk, const char *p, size_t n, ulc_ids *out, ulc_ctx *ctx) {
    if (!tk->n_norm) return split_added(tk, &tk->norm_match, 0, p, n, out, ctx);
    char *buf = NULL;
    size_t len = 0;
    ULC_TRY(normalize(tk, p, n, &buf, &len, ctx));
    ulc_status st = split_added(tk, &tk->norm_match, 0, buf, len, out, ctx);
    free(buf);
    return st;
}

ulc_status ulc_tokenizer_encode(ulc_tokenizer *tk, const char *text, size_t n, int add_special,
                                ulc_ids *out, ulc_ctx *ctx) {
    size_t bad = ulc_utf8_invalid_at((const unsigned char *)text, n);
    if (bad != (size_t)-1)
        return ulc_fail(ctx, ULC_ERR_INVALID, "the text is not valid UTF-8 at byte %zu (0x%02x)", bad,
                        (unsigned char)text[bad]);
    size_t start = out->n;
    for (int i = 0; add_special && i < tk->n_pre; i++)
        if (tk_ids_push(out, tk->pre[i]) != 0) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory encoding text");
    ulc_status st = split_added(tk, &tk->raw_match, 1, text, n, out, ctx);
    for (int i = 0; st == ULC_OK && add_special && i < tk->n_post; i++)
        if (tk_ids_push(out, tk->post[i]) != 0) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory encoding text");
    if (st != ULC_OK) out->n = start;
    return st;
}

ulc_status ulc_tokenizer_decode(const ulc_tokenizer *tk, const int64_t *ids, size_t n, int skip_special,
                                char **text, size_t *len, ulc_ctx *ctx) {
    *text = NULL, *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tk->n_ids || tk->dec_len[ids[i]] < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "id %lld (position %zu) is not in the vocabulary "
                            "(%lld ids)", (long long)ids[i], i, (long long)tk->n_ids);
        total += (size_t)tk->dec_len[ids[i]] + 1;
    }
    char *raw = malloc(total + 1), *res = malloc(3 * total + 1);
    if (!raw || !res) {
        free(raw), free(res);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory decoding");
    }
    size_t k = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && tk->is_special[ids[i]]) continue;
        if (!tk->byte_decoder && kept++) raw[k++] = ' '; /* no decoder: tokens joined by spaces */
        memcpy(raw + k, tk->dec_pool + tk->dec_off[ids[i]], (size_t)tk->dec_len[ids[i]]);
        k += (size_t)tk->dec_len[ids[i]];
    }
    size_t o = tk_utf8_lossy((const unsigned char *)raw, k, res);
    free(raw);
    res[o] = '\0';
    *text = res, *len = o;
    return ULC_OK;
}

void ulc_tok_rows_clear(ulc_tok_rows *r) {
    free(r->ids);
    free(r->mask);
    free(r->text_of);
    free(r->length);
    memset(r, 0, sizeof *r);
}
