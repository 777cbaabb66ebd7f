/*
 * test_text.c — unit tests of text/tokenizer.h's C surface that the CLI suites (tests/text) do
 * not reach: roles, token ids, the vocabulary size, clone, the kind, encode appending to what
 * ids hold, decode's refusal of an id that is no token's, encode_rows' *bad index and its
 * option checks, and an unknown file. Runs on fuzz/fixtures/tokenizer/tokenizer.json (argv[1]).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "text/tokenizer.h"

#include "tests/unit/check.h"

static void test_tables(ulc_tokenizer *tk) {
    int64_t eot = ulc_tokenizer_token_id(tk, "<|endoftext|>", 13);
    CHECK(eot >= 0);
    CHECK(ulc_tokenizer_special(tk, "bos") == eot && ulc_tokenizer_special(tk, "eos") == eot);
    CHECK(ulc_tokenizer_special(tk, "unk") == eot && ulc_tokenizer_special(tk, "pad") == -1);
    CHECK(ulc_tokenizer_special(tk, "cls") == -1);
    CHECK(ulc_tokenizer_kind(tk) == ULC_TOK_BYTE_BPE);
    CHECK(ulc_tokenizer_vocab_size(tk) == 395); /* the trainer ran out of merges before 400 */
    CHECK(ulc_tokenizer_token_id(tk, "\xc4\xa0", 2) >= 0); /* "Ġ", the space's character */
    CHECK(ulc_tokenizer_token_id(tk, "no such token", 13) == -1);
    CHECK(strstr(ulc_tokenizer_path(tk), "tokenizer.json") != NULL);
}

static void test_encode_decode(ulc_tokenizer *tk) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_ids ids = {0};
    const char *t = "the quick brown fox <|endoftext|> héllo 😀";
    CHECK(ulc_tokenizer_encode(tk, t, strlen(t), 1, &ids, &ctx) == ULC_OK);
    size_t first = ids.n;
    CHECK(ulc_tokenizer_encode(tk, t, strlen(t), 1, &ids, &ctx) == ULC_OK); /* appends */
    CHECK(ids.n == 2 * first && memcmp(ids.v, ids.v + first, first * sizeof *ids.v) == 0);
    char *s = NULL;
    size_t n = 0;
    CHECK(ulc_tokenizer_decode(tk, ids.v, first, 0, &s, &n, &ctx) == ULC_OK);
    CHECK(s && n == strlen(t) && strcmp(s, t) == 0);
    free(s);
    CHECK(ulc_tokenizer_decode(tk, ids.v, first, 1, &s, &n, &ctx) == ULC_OK); /* no <|endoftext|> */
    CHECK(s && strcmp(s, "the quick brown fox  héllo 😀") == 0);
    free(s);
    int64_t bad[2] = {1, 395};
    CHECK(ulc_tokenizer_decode(tk, bad, 2, 0, &s, &n, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "id 395 (position 1)");
    ulc_ctx_clear(&ctx);
    size_t before = ids.n;
    CHECK(ulc_tokenizer_encode(tk, "ab\xc3", 3, 0, &ids, &ctx) == ULC_ERR_INVALID);
    CHECK(ids.n == before);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "byte 2");
    ulc_ids_clear(&ids);
    ulc_ids_clear(&ids); /* a cleared struct is zeroed */
}

static void test_rows(ulc_tokenizer *tk) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    const char *texts[3] = {"the fox", "the quick brown fox jumps over the lazy dog", "x\xff"};
    size_t lens[3] = {strlen(texts[0]), strlen(texts[1]), 3};
    ulc_tok_rows_opts o = {.max_length = 4, .overflow = ULC_OVERFLOW_ERROR, .pad_id = 9};
    ulc_tok_rows r = {0};
    int64_t bad = 0;
    CHECK(ulc_tokenizer_encode_rows(tk, texts, lens, 2, &o, &r, &bad, &ctx) == ULC_ERR_INVALID);
    CHECK(bad == 1 && r.rows == 0 && r.ids == NULL);
    ulc_ctx_clear(&ctx);
    CHECK(ulc_tokenizer_encode_rows(tk, texts, lens, 3, &(ulc_tok_rows_opts){.max_length = 64}, &r, &bad, &ctx) ==
          ULC_ERR_INVALID);
    CHECK(bad == 2);
    ulc_ctx_clear(&ctx);
    o.overflow = ULC_OVERFLOW_WINDOWS;
    o.stride = 1;
    CHECK(ulc_tokenizer_encode_rows(tk, texts, lens, 2, &o, &r, &bad, &ctx) == ULC_OK && bad == -1);
    CHECK(r.rows >= 3 && r.width == 4 && r.text_of[0] == 0 && r.text_of[r.rows - 1] == 1);
    for (int64_t i = 1; i + 1 < r.rows; i++) /* windows of text 1 share one token */
        if (r.text_of[i] == 1 && r.text_of[i + 1] == 1) CHECK(r.ids[i * 4 + 3] == r.ids[(i + 1) * 4]);
    CHECK(r.mask[0] == 1 && (r.length[0] == 4 || r.ids[r.length[0]] == 9));
    ulc_tok_rows_clear(&r);
    o.stride = 4;
    CHECK(ulc_tokenizer_encode_rows(tk, texts, lens, 2, &o, &r, &bad, &ctx) == ULC_ERR_INVALID_ARG);
    ulc_ctx_clear(&ctx);
    o.stride = 0, o.max_length = 0;
    CHECK(ulc_tokenizer_encode_rows(tk, texts, lens, 2, &o, &r, &bad, &ctx) == ULC_ERR_INVALID_ARG);
    ulc_tok_rows_clear(&r);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_text TOKENIZER.json\n");
        return 2;
    }
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_tokenizer *tk = NULL, *copy = NULL;
    if (ulc_tokenizer_load(argv[1], &tk, &ctx) != ULC_OK) {
        fprintf(stderr, "test_text: %s\n", ulc_ctx_message(&ctx));
        return 1;
    }
    test_tables(tk);
    test_encode_decode(tk);
    test_rows(tk);
    CHECK(ulc_tokenizer_clone(tk, &copy, &ctx) == ULC_OK);
    if (copy) test_tables(copy);
    ulc_tokenizer_free(copy);
    ulc_tokenizer_free(tk);
    ulc_tokenizer_free(NULL);
    tk = (ulc_tokenizer *)1;
    CHECK(ulc_tokenizer_load("/nonexistent/tokenizer.json", &tk, &ctx) == ULC_ERR_IO && tk == NULL);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "/nonexistent/tokenizer.json");
    printf("test_text: %s (%d failed checks)\n", g_failed_checks ? "FAILED" : "ok", g_failed_checks);
    return g_failed_checks ? 1 : 0;
}
