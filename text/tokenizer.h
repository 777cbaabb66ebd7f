/*
 * text/tokenizer.h — tokenizers in C: GPT2's byte-level BPE (and, as a variant of the same
 * code, CLIP's lower-casing BPE with `</w>` word ends), read from a Hugging Face
 * `tokenizer.json`, or from `vocab.json` + `merges.txt`. Ids are those the `tokenizers`
 * library gives for the same files (tests/text checks it on many thousands of strings).
 *
 *     ulc_tokenizer *tk = NULL;
 *     if (ulc_tokenizer_load("gpt2_dir/", &tk, ctx) != ULC_OK) ...   // a file or a directory
 *     ulc_ids ids = {0};
 *     ulc_tokenizer_encode(tk, text, strlen(text), &ids, ctx);       // appends to ids
 *     char *s; size_t n;
 *     ulc_tokenizer_decode(tk, ids.v, ids.n, 0, &s, &n, ctx);
 *     free(s); ulc_ids_clear(&ids); ulc_tokenizer_free(tk);
 *
 * A tokenizer is read-only after loading except for its word cache, so one tokenizer is used by
 * one thread at a time (each thread may load its own, or use ulc_tokenizer_clone).
 * Text must be valid UTF-8: anything else is refused with the byte offset of the first bad byte.
 */
#ifndef ULC_TEXT_TOKENIZER_H
#define ULC_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct ulc_tokenizer ulc_tokenizer;

/* A growable vector of token ids. */
typedef struct ulc_ids {
    int64_t *v;
    size_t n, cap;
} ulc_ids;
void ulc_ids_clear(ulc_ids *ids); /* frees; accepts a zeroed struct */

typedef enum ulc_tok_kind {
    ULC_TOK_BYTE_BPE, /* GPT2/RoBERTa: byte-level pre-tokenizer and decoder */
    ULC_TOK_CLIP_BPE  /* CLIP: NFC + lower-case, its own split, `</w>` word ends */
} ulc_tok_kind;

/* Loads the tokenizer at path: a tokenizer.json, or a directory holding tokenizer.json, or
 * vocab.json + merges.txt (with special_tokens_map.json / tokenizer_config.json / added_tokens.json
 * when present). Anything the file says that ulc does not implement (another model type, a
 * normalizer or pre-tokenizer it does not know) is refused by name, never ignored. */
ulc_status ulc_tokenizer_load(const char *path, ulc_tokenizer **out, ulc_ctx *ctx);
void ulc_tokenizer_free(ulc_tokenizer *tk); /* accepts NULL */
/* A tokenizer of its own for another thread: loads again what tk was loaded from (the same
 * path), so the two share nothing. */
ulc_status ulc_tokenizer_clone(const ulc_tokenizer *tk, ulc_tokenizer **out, ulc_ctx *ctx);

ulc_tok_kind ulc_tokenizer_kind(const ulc_tokenizer *tk);
/* The file it was read from (for messages). */
const char *ulc_tokenizer_path(const ulc_tokenizer *tk);
/* One more than the largest id it can produce (vocabulary and added tokens). */
int64_t ulc_tokenizer_vocab_size(const ulc_tokenizer *tk);
/* The id of a special token by role — "bos", "eos", "pad", "unk" — from the files' special
 * tokens (GPT2: <|endoftext|> for bos/eos/unk, no pad), or -1. */
int64_t ulc_tokenizer_special(const ulc_tokenizer *tk, const char *role);
/* The id of token text tok (a vocabulary entry or an added token), or -1. */
int64_t ulc_tokenizer_token_id(const ulc_tokenizer *tk, const char *tok, size_t n);

/* Encodes n bytes of UTF-8 text, appending ids to out: added/special tokens are matched in the
 * text as the file says, the rest pre-tokenized and BPE-merged; the post-processor's tokens
 * (e.g. CLIP's start/end) are added when add_special is set. ULC_ERR_INVALID on invalid UTF-8,
 * naming the byte offset. */
ulc_status ulc_tokenizer_encode(ulc_tokenizer *tk, const char *text, size_t n, int add_special,
                                ulc_ids *out, ulc_ctx *ctx);

/* Decodes ids into malloc'd UTF-8 (*text, NUL-terminated, *len bytes), skipping special tokens
 * when skip_special is set; byte-level sequences that are not valid UTF-8 decode to U+FFFD as
 * `tokenizers` does. An id outside the vocabulary is an error naming it. */
ulc_status ulc_tokenizer_decode(const ulc_tokenizer *tk, const int64_t *ids, size_t n,
                                int skip_special, char **text, size_t *len, ulc_ctx *ctx);

/* Texts as rows of a fixed width: truncation and padding, as `tokenizers` does them with
 * enable_truncation(max_length, stride, direction="right") and enable_padding(pad_id,
 * direction="right", length=max_length or the longest row). */
typedef enum ulc_overflow {
    ULC_OVERFLOW_ERROR,    /* a text longer than max_length is refused (the caller names it) */
    ULC_OVERFLOW_TRUNCATE, /* its first max_length tokens */
    ULC_OVERFLOW_WINDOWS   /* windows of max_length tokens, each sharing `stride` tokens with
                              the one before (tokenizers' overflowing encodings, in order) */
} ulc_overflow;

typedef struct ulc_tok_rows_opts {
    int64_t max_length;   /* > 0 */
    ulc_overflow overflow;
    int64_t stride;       /* windows: 0 <= stride < max_length */
    int pad_to_max;       /* 1: every row max_length wide; 0: as wide as the longest row */
    int64_t pad_id;       /* the id padding positions hold (their mask is 0) */
    int add_special;      /* the post-processor's tokens, as ulc_tokenizer_encode */
} ulc_tok_rows_opts;

/* Rows made from texts: ids and mask [rows, width] (int64, row-major, malloc'd), and for each
 * row the text it came from (a text gives several rows with ULC_OVERFLOW_WINDOWS). */
typedef struct ulc_tok_rows {
    int64_t rows, width;
    int64_t *ids, *mask;
    int64_t *text_of;     /* [rows] */
    int64_t *length;      /* [rows]: tokens before padding */
} ulc_tok_rows;
void ulc_tok_rows_clear(ulc_tok_rows *r); /* accepts a zeroed struct */

/* Encodes texts[0..n) (lens[i] bytes each) into rows. With ULC_OVERFLOW_ERROR, a text longer
 * than max_length fails with ULC_ERR_INVALID and *bad = its index (else *bad = -1); an empty
 * text (no tokens) fails the same way, as does invalid UTF-8 (the message gives the offset). */
ulc_status ulc_tokenizer_encode_rows(ulc_tokenizer *tk, const char *const *texts,
                                     const size_t *lens, int64_t n, const ulc_tok_rows_opts *o,
                                     ulc_tok_rows *out, int64_t *bad, ulc_ctx *ctx);

#endif
