/*
 * rows.c — texts as rows of one width (ulc_tokenizer_encode_rows), as tokenizers gives them with
 * enable_truncation(max_length, stride, direction="right") and enable_padding(direction="right"):
 * the post-processor's tokens count against max_length, so a text keeps max_length - specials of
 * its own tokens per row; windows (tokenizers' overflowing encodings) start every
 * max_length - specials - stride tokens, the first being the main row, and stop at the one
 * that reaches the text's end; every row gets the special tokens, then padding to the width.
 */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

typedef struct row_buf {
    int64_t *ids;     /* [cap][max_length] */
    int64_t *text_of, *length;
    int64_t n, cap, w;
} row_buf;

static ulc_status add_row(row_buf *b, const ulc_tokenizer *tk, const ulc_tok_rows_opts *o,
                          const int64_t *ids, int64_t n, int64_t text, ulc_ctx *ctx) {
    if (b->n == b->cap) {
        int64_t cap = b->cap ? b->cap * 2 : 64;
        int64_t *v = realloc(b->ids, (size_t)(cap * b->w) * sizeof *v);
        if (v) b->ids = v;
        int64_t *t = v ? realloc(b->text_of, (size_t)cap * sizeof *t) : NULL;
        if (t) b->text_of = t;
        int64_t *l = t ? realloc(b->length, (size_t)cap * sizeof *l) : NULL;
        if (!l) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory making rows");
        b->length = l;
        b->cap = cap;
    }
    int64_t *row = b->ids + b->n * b->w, k = 0;
    for (int i = 0; o->add_special && i < tk->n_pre; i++) row[k++] = tk->pre[i];
    if (n) memcpy(row + k, ids, (size_t)n * sizeof *ids);
    k += n;
    for (int i = 0; o->add_special && i < tk->n_post; i++) row[k++] = tk->post[i];
    b->text_of[b->n] = text;
    b->length[b->n++] = k;
    return ULC_OK;
}

/* The rows of one text's ids (no special tokens in ids). */
static ulc_status text_rows(row_buf *b, const ulc_tokenizer *tk, const ulc_tok_rows_opts *o,
                            const ulc_ids *ids, int64_t t, int64_t *bad, ulc_ctx *ctx) {
    int64_t nspec = o->add_special ? tk->n_pre + tk->n_post : 0, eff = o->max_length - nspec;
    int64_t len = (int64_t)ids->n;
    if (len + nspec == 0) {
        *bad = t;
        return ulc_fail(ctx, ULC_ERR_INVALID, "text %lld gives no tokens", (long long)t);
    }
    if (len <= eff) return add_row(b, tk, o, ids->v, len, t, ctx);
    if (o->overflow == ULC_OVERFLOW_ERROR) {
        *bad = t;
        return ulc_fail(ctx, ULC_ERR_INVALID, "text %lld is %lld tokens, longer than max_length %lld",
                        (long long)t, (long long)(len + nspec), (long long)o->max_length);
    }
    if (o->overflow == ULC_OVERFLOW_TRUNCATE) return add_row(b, tk, o, ids->v, eff, t, ctx);
    for (int64_t s = 0;; s += eff - o->stride) {
        int64_t stop = s + eff < len ? s + eff : len;
        ULC_TRY(add_row(b, tk, o, ids->v + s, stop - s, t, ctx));
        if (stop == len) break;
    }
    return ULC_OK;
}

static ulc_status check_opts(const ulc_tokenizer *tk, const ulc_tok_rows_opts *o, ulc_ctx *ctx) {
    int64_t nspec = o->add_special ? tk->n_pre + tk->n_post : 0;
    if (o->max_length <= 0 || o->max_length > (int64_t)1 << 30)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "max_length %lld: expected 1 to 2^30", (long long)o->max_length);
    if (o->max_length <= nspec)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "max_length %lld leaves no room beside the %lld "
                        "special tokens", (long long)o->max_length, (long long)nspec);
    if (o->overflow == ULC_OVERFLOW_WINDOWS && (o->stride < 0 || o->stride >= o->max_length - nspec))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "stride %lld: expected 0 <= stride < %lld (max_length "
                        "less the special tokens)", (long long)o->stride, (long long)(o->max_length - nspec));
    return ULC_OK;
}

ulc_status ulc_tokenizer_encode_rows(ulc_tokenizer *tk, const char *const *texts, const size_t *lens,
                                     int64_t n, const ulc_tok_rows_opts *o, ulc_tok_rows *out,
                                     int64_t *bad, ulc_ctx *ctx) {
    memset(out, 0, sizeof *out);
    *bad = -1;
    ULC_TRY(check_opts(tk, o, ctx));
    row_buf b = {.w = o->max_length};
    ulc_ids ids = {0};
    ulc_status st = ULC_OK;
    for (int64_t t = 0; t < n && st == ULC_OK; t++) {
        ids.n = 0;
        st = ulc_tokenizer_encode(tk, texts[t], lens[t], 0, &ids, ctx);
        if (st != ULC_OK) {
            *bad = t;
            st = ulc_fail(ctx, st, "text %lld", (long long)t);
        } else {
            st = text_rows(&b, tk, o, &ids, t, bad, ctx);
        }
    }
    ulc_ids_clear(&ids);
    int64_t width = o->max_length;
    if (st == ULC_OK && !o->pad_to_max) {
        width = 0;
        for (int64_t r = 0; r < b.n; r++) width = b.length[r] > width ? b.length[r] : width;
    }
    if (st == ULC_OK) {
        out->ids = malloc((size_t)(b.n * width + 1) * sizeof *out->ids);
        out->mask = malloc((size_t)(b.n * width + 1) * sizeof *out->mask);
        if (!out->ids || !out->mask) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory making rows");
    }
    if (st != ULC_OK) {
        free(b.ids), free(b.text_of), free(b.length);
        ulc_tok_rows_clear(out);
        return st;
    }
    for (int64_t r = 0; r < b.n; r++)
        for (int64_t c = 0; c < width; c++) {
            int on = c < b.length[r];
            out->ids[r * width + c] = on ? b.ids[r * b.w + c] : o->pad_id;
            out->mask[r * width + c] = on;
        }
    free(b.ids);
    out->rows = b.n, out->width = width;
    out->text_of = b.text_of, out->length = b.length;
    return ULC_OK;
}
