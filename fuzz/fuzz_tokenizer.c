/*
 * fuzz_tokenizer.c — tokenizers (text/): an input that starts with '{' is a tokenizer.json, read
 * with ulc_tokenizer_load (every key checked, vocabulary, merges, added tokens, normalizer,
 * pre-tokenizer, post-processor, the roles), then used on a few fixed texts (encode, rows,
 * decode of every id). Any other input is text for a fixed byte-level BPE (fixtures/tokenizer/:
 * 395 tokens with the whole byte alphabet and <|endoftext|>): valid UTF-8 must encode, decode
 * back to exactly the input (byte-level BPE loses nothing, special tokens included) and make
 * rows; invalid UTF-8 must be refused (ULC_ERR_INVALID), never crash. A broken round trip aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "common/utf8.h"
#include "fuzz.h"
#include "text/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ulc_tokenizer *g_tk;

static void free_tk(void) { ulc_tokenizer_free(g_tk); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char path[FZ_PATH_MAX];
    fz_fixture("tokenizer/tokenizer.json", "fixed/tokenizer.json");
    snprintf(path, sizeof path, "%s/fixed/tokenizer.json", fz_dir());
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    if (ulc_tokenizer_load(path, &g_tk, &ctx) != ULC_OK) {
        fprintf(stderr, "fuzz setup: %s\n", ulc_ctx_message(&ctx));
        abort();
    }
    atexit(free_tk);
    return 0;
}

/* Rows of the text's lines under a few settings; the results are only checked for shape. */
static void rows(ulc_tokenizer *tk, const char *text, size_t n) {
    const char *lines[8];
    size_t lens[8];
    int64_t k = 0;
    for (size_t i = 0, s = 0; i <= n && k < 8; i++)
        if (i == n || text[i] == '\n') {
            lines[k] = text + s, lens[k++] = i - s;
            s = i + 1;
        }
    for (int v = 0; v < 3; v++) {
        ulc_tok_rows_opts o = {.max_length = 3 + 4 * v, .overflow = (ulc_overflow)v, .stride = v,
                               .pad_to_max = v & 1, .pad_id = 0, .add_special = v == 2};
        ulc_tok_rows r = {0};
        int64_t bad;
        ulc_ctx ctx;
        ulc_ctx_init(&ctx);
        if (ulc_tokenizer_encode_rows(tk, lines, lens, k, &o, &r, &bad, &ctx) == ULC_OK) {
            for (int64_t i = 0; i < r.rows; i++)
                if (r.length[i] > r.width || r.text_of[i] < 0 || r.text_of[i] >= k) abort();
        }
        ulc_tok_rows_clear(&r);
    }
}

static void use_loaded(ulc_tokenizer *tk) {
    static const char *const texts[] = {"Hello world, it's 2024!", " <|endoftext|> x  y\n", "",
                                        "😀 ÀÉ  中文 'S"};
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
        ulc_ctx ctx;
        ulc_ctx_init(&ctx);
        ulc_ids ids = {0};
        if (ulc_tokenizer_encode(tk, texts[t], strlen(texts[t]), (int)(t & 1), &ids, &ctx) == ULC_OK) {
            char *s = NULL;
            size_t n;
            ulc_tokenizer_decode(tk, ids.v, ids.n, 1, &s, &n, &ctx);
            free(s);
        }
        ulc_ids_clear(&ids);
        rows(tk, texts[t], strlen(texts[t]));
    }
    int64_t n = ulc_tokenizer_vocab_size(tk), *all = malloc((size_t)(n > 4096 ? 4096 : n) * sizeof *all + 1);
    for (int64_t i = 0; all && i < n && i < 4096; i++) all[i] = i;
    char *s = NULL;
    size_t len;
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    if (all) ulc_tokenizer_decode(tk, all, (size_t)(n > 4096 ? 4096 : n), 0, &s, &len, &ctx);
    free(s);
    free(all);
    static const char *const roles[] = {"bos", "eos", "pad", "unk"};
    for (int r = 0; r < 4; r++)
        if (ulc_tokenizer_special(tk, roles[r]) >= n) abort();
}

static void text_round_trip(const uint8_t *data, size_t size) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_ids ids = {0};
    int valid = ulc_utf8_invalid_at(data, size) == (size_t)-1;
    ulc_status st = ulc_tokenizer_encode(g_tk, (const char *)data, size, 0, &ids, &ctx);
    fz_said("text", st, ulc_ctx_message(&ctx));
    if (!valid) {
        if (st != ULC_ERR_INVALID) abort(); /* invalid UTF-8 is refused */
    } else if (st == ULC_OK) {
        char *s = NULL;
        size_t n = 0;
        if (ulc_tokenizer_decode(g_tk, ids.v, ids.n, 0, &s, &n, &ctx) != ULC_OK) abort();
        if (n != size || memcmp(s, data, size) != 0) abort(); /* decode(encode(s)) == s */
        free(s);
        rows(g_tk, (const char *)data, size);
    } else if (st != ULC_ERR_NOMEM) {
        abort();
    }
    ulc_ids_clear(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size || data[0] != '{') {
        text_round_trip(data, size);
        return 0;
    }
    char path[FZ_PATH_MAX];
    if (fz_put("tok/tokenizer.json", data, size, path) != 0) return 0;
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_tokenizer *tk = NULL;
    ulc_status st = ulc_tokenizer_load(path, &tk, &ctx);
    fz_said("tokenizer", st, ulc_ctx_message(&ctx));
    if (st == ULC_OK) use_loaded(tk);
    ulc_tokenizer_free(tk);
    return 0;
}
