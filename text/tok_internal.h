/*
 * tok_internal.h — what text/'s files share about a tokenizer: the byte-string table, the
 * Unicode helpers, the pre-tokenizer scanners, the BPE model with its word cache, and the
 * tokenizer struct the loaders fill and tokenizer.c runs. Nothing outside text/ includes it.
 *
 * The model works on bytes: a byte-level vocabulary entry ("Ġthe") is kept both as written (for
 * lookups by text and for decoding) and as the bytes it stands for (" the"), so a pre-token's
 * bytes go to the BPE without being mapped to characters and back.
 */
#ifndef ULC_TEXT_TOK_INTERNAL_H
#define ULC_TEXT_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "text/tokenizer.h"

/* ---- byte strings -> int64 (open addressing; keys copied into a pool) ---------------------- */
typedef struct tk_entry {
    uint64_t off;  /* key bytes in the pool */
    uint32_t len;
    uint32_t hash;
    int64_t val;
} tk_entry;

typedef struct tk_strtab {
    uint32_t *slot;  /* entry index + 1; 0 = empty */
    size_t cap;      /* slots, a power of two */
    tk_entry *ent;
    size_t n, ent_cap;
    char *pool;
    size_t pool_n, pool_cap;
} tk_strtab;

uint32_t tk_hash(const void *p, size_t n);
/* The value of key p[0..n), or -1. */
int64_t tk_strtab_get(const tk_strtab *t, const void *p, size_t n);
/* Inserts or replaces; *prev (may be NULL) gets the value replaced, or -1. 0, or -1 on ENOMEM. */
int tk_strtab_put(tk_strtab *t, const void *p, size_t n, int64_t val, int64_t *prev);
void tk_strtab_free(tk_strtab *t);
const char *tk_strtab_key(const tk_strtab *t, size_t i, size_t *len);

/* ---- Unicode (unicode.c; tables from scripts/gen_unicode.py) -------------------------------- */
enum { TK_UC_L = 1, TK_UC_N = 2, TK_UC_S = 4, TK_UC_W = 8 };
unsigned tk_uc_class(uint32_t cp);
/* Decodes the code point at p[0..n) (valid UTF-8, n >= 1); *len its bytes. */
uint32_t tk_utf8_next(const unsigned char *p, size_t n, size_t *len);
size_t tk_utf8_put(uint32_t cp, char *out); /* 1..4 bytes */
/* The lower-case mapping of cp: writes 1..3 code points to out, returns how many. */
int tk_uc_lower(uint32_t cp, uint32_t out[3]);
/* Appends the UTF-8 of bytes[0..n) to out, each maximal invalid part as U+FFFD (as Rust's
 * String::from_utf8_lossy). out must hold 3 * n bytes; returns the bytes written. */
size_t tk_utf8_lossy(const unsigned char *p, size_t n, char *out);
/* NFC of valid UTF-8 in[0..n) into *out (malloc'd, *len bytes; nfc.c). */
ulc_status tk_nfc(const char *in, size_t n, char **out, size_t *len, ulc_ctx *ctx);
/* GPT2's byte <-> character mapping (bytes_to_unicode). */
uint32_t tk_byte_char(unsigned b);
int tk_char_byte(uint32_t cp); /* -1 when cp is no byte's character */

/* ---- pre-tokenizers (pretok.c) --------------------------------------------------------------- */
typedef enum tk_split {
    TK_SPLIT_NONE,  /* the whole piece is one word */
    TK_SPLIT_GPT2,  /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    TK_SPLIT_CLIP   /* CLIP's Split (invert, Removed): <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|
                       'm|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ kept, the rest dropped */
} tk_split;

/* The length of the word at p[0..n) (n > 0), and in *skip the bytes before it that the split
 * drops (CLIP's whitespace); a return of 0 means only dropped bytes were left. */
size_t tk_pretok_next(tk_split mode, const unsigned char *p, size_t n, size_t *skip);

/* ---- the BPE model (bpe.c) ------------------------------------------------------------------- */
typedef struct tk_merge {
    uint64_t key;     /* (uint64)left << 32 | right; 0 = empty slot (ids are offset by one) */
    int32_t rank, id; /* rank, and the id of the merged token */
} tk_merge;

typedef struct tk_cache_ent {
    uint64_t off;  /* word bytes in the cache pool, then its ids */
    uint32_t len, nids;
    uint32_t hash;
} tk_cache_ent;

typedef struct tk_bpe {
    tk_merge *merges;
    size_t merge_cap, n_merges;
    /* the first symbols of a word: the id of byte b as [first?][last?] position of the word,
     * with the prefix/suffix the model adds; -1 when not in the vocabulary */
    int32_t byte_id[2][2][256];
    int64_t unk_id; /* -1: characters out of the vocabulary are dropped, as tokenizers does */
    int fuse_unk, ignore_merges;
    const tk_strtab *bytes_vocab; /* ignore_merges: whole words looked up by their bytes */
    /* word cache: word bytes -> ids */
    uint32_t *cache_slot;
    size_t cache_cap, cache_n;
    tk_cache_ent *cache_ent;
    unsigned char *cache_pool;
    size_t cache_pool_n, cache_pool_cap;
    /* scratch for one word's merge */
    int32_t *sym, *prev, *next;
    uint64_t *heap;
    size_t scratch_cap;
} tk_bpe;

/* Adds merge rank (left, right) -> id; a repeated pair takes the later rank, as tokenizers'
 * map does. -1 on ENOMEM. */
int tk_bpe_add_merge(tk_bpe *b, int32_t left, int32_t right, int32_t id, int32_t rank);
/* Appends the ids of one word (its bytes, pre-tokenized) to out. */
ulc_status tk_bpe_word(tk_bpe *b, const unsigned char *w, size_t n, ulc_ids *out, ulc_ctx *ctx);
void tk_bpe_free(tk_bpe *b);
void tk_bpe_cache_clear(tk_bpe *b);
int tk_ids_push(ulc_ids *ids, int64_t id);
/* 1 when d (a JSON number) is an id: an integer in [0, 2^31 - 1); *out gets it. */
static inline int tk_num_id(double d, int64_t *out) {
    if (!(d >= 0 && d < 2147483647.0) || d != (double)(int64_t)d) return 0;
    *out = (int64_t)d;
    return 1;
}

/* ---- the tokenizer --------------------------------------------------------------------------- */
typedef struct tk_added {
    char *content;    /* as matched (normalized when `normalized` and there is a normalizer) */
    size_t len;
    int64_t id;
    int special, lstrip, rstrip, single_word, normalized;
} tk_added;

typedef struct tk_matcher {   /* leftmost-longest matching of added tokens */
    tk_added **tok;           /* sorted by first byte, then longest first */
    size_t n;
    uint8_t first[256];       /* 1 when some token starts with the byte */
} tk_matcher;

typedef enum tk_norm_step { TK_NORM_NFC, TK_NORM_WS_TO_SPACE, TK_NORM_LOWER } tk_norm_step;

struct ulc_tokenizer {
    ulc_tok_kind kind;
    char *path;            /* the file read (tokenizer.json or vocab.json) */
    char *src;             /* the path given to ulc_tokenizer_load */
    tk_strtab vocab;       /* token text (as in the file) -> id */
    tk_strtab bvocab;      /* the bytes a byte-level token stands for -> id */
    int64_t n_ids;         /* one more than the largest id */
    char *dec_pool;        /* per id, what decoding it gives (byte-level decoded) */
    uint64_t *dec_off;     /* [n_ids + 1]; an id with dec_len -1 has no token */
    int64_t *dec_len;
    uint8_t *is_special;   /* [n_ids] */
    tk_added *added;       /* added tokens, in file order */
    size_t n_added;
    tk_matcher raw_match, norm_match; /* non-normalized / normalized added tokens */
    tk_norm_step norm[4];  /* the normalizer's steps */
    int n_norm;
    tk_split split;
    int add_prefix_space;
    int byte_decoder;      /* decoder ByteLevel (else tokens are joined with spaces) */
    int64_t pre[4], post[4]; /* the post-processor's ids around a sequence */
    int n_pre, n_post;
    int64_t role[4];       /* bos, eos, pad, unk */
    tk_bpe bpe;
    char *scratch;         /* a piece with its prefix space, a normalized piece */
    size_t scratch_cap;
};

/* Loaders (tok_json.c, tok_files.c); the tokenizer is zeroed with its roles at -1 before. */
ulc_status tk_load_json(ulc_tokenizer *tk, const char *path, ulc_ctx *ctx);
ulc_status tk_load_vocab_merges(ulc_tokenizer *tk, const char *dir, ulc_ctx *ctx);
/* Reads dir's special_tokens_map.json / tokenizer_config.json for the roles (and, with
 * add_tokens, registers their tokens as special added tokens, as transformers' slow tokenizer
 * does). */
ulc_status tk_load_side_files(ulc_tokenizer *tk, const char *dir, int add_tokens, ulc_ctx *ctx);

/* Shared by the loaders (tokenizer.c): registers vocabulary entry tok -> id (the text, and its
 * bytes when byte-level), then, once all are in, finishes the tables. */
ulc_status tk_vocab_add(ulc_tokenizer *tk, const char *tok, size_t n, int64_t id, ulc_ctx *ctx);
/* Adds an added token with tokenizers' id rule (the vocabulary's id, else the next free one);
 * want_id >= 0 must agree. */
ulc_status tk_added_add(ulc_tokenizer *tk, const tk_added *a, int64_t want_id, ulc_ctx *ctx);
/* Adds merge rank `a b`, checked against the vocabulary (prefix: the model's continuing
 * subword prefix, dropped from b in the merged token). */
ulc_status tk_merge_add(ulc_tokenizer *tk, const char *a, size_t an, const char *b, size_t bn,
                        const char *prefix, int32_t rank, ulc_ctx *ctx);
ulc_status tk_finish(ulc_tokenizer *tk, const char *prefix, const char *suffix,
                     const char *unk, ulc_ctx *ctx);

#endif
