/*
 * fuzz_text_data.c — text data files (io/text_file.c, io/text_data.c; docs/spec.md "Text data"):
 * arbitrary bytes as a JSONL or plain text data file, read into texts (lines, blank lines, JSON
 * per line, `text`/`label`/`id`, UTF-8, repeated ids), then tokenized with a fixed byte-level BPE
 * (fixtures/data/tokenizer/, the tiny GPT2's) into rows bound to a text model's input_ids and
 * attention_mask (fixtures/data/text.onnx), with each overflow mode, and every row's text read
 * back. The first byte picks the format (bit 0: JSONL or .txt) and the overflow (bits 1-2: error,
 * truncate, windows); the bytes after a line "--forget--" are a forget.file of the same format,
 * matched against the data's texts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "fuzz.h"
#include "import/onnx_import.h"
#include "io/data.h"
#include "io/text_data.h"
#include "ir/graph.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ulc_model *g_model;
static ulc_iface g_iface;
static ulc_tokenizer *g_tk;

static void free_fixtures(void) {
    ulc_model_free(g_model);
    ulc_tokenizer_free(g_tk);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char path[FZ_PATH_MAX];
    fz_fixture("data/text.onnx", "text.onnx");
    fz_fixture("data/tokenizer/tokenizer.json", "tokenizer/tokenizer.json");
    fz_fixture("data/tokenizer/special_tokens_map.json", "tokenizer/special_tokens_map.json");
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    snprintf(path, sizeof path, "%s/text.onnx", fz_dir());
    ulc_status st = ulc_onnx_import(path, &g_model, &ctx);
    if (st == ULC_OK) st = ulc_iface_resolve(g_model, "text.onnx", NULL, NULL, NULL, &g_iface, &ctx);
    snprintf(path, sizeof path, "%s/tokenizer", fz_dir());
    if (st == ULC_OK) st = ulc_tokenizer_load(path, &g_tk, &ctx);
    if (st != ULC_OK) {
        fprintf(stderr, "fuzz setup: %s\n", ulc_ctx_message(&ctx));
        abort();
    }
    atexit(free_fixtures);
    return 0;
}

/* Where the forget file begins (after a line "--forget--"), or size. */
static size_t split_at(const uint8_t *data, size_t size, size_t *rest) {
    static const char mark[] = "\n--forget--\n";
    size_t n = sizeof mark - 1;
    for (size_t j = 0; j + n <= size; j++)
        if (memcmp(data + j, mark, n) == 0) {
            *rest = j + n;
            return j + 1;
        }
    *rest = size;
    return size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int jsonl = data[0] & 1;
    ulc_overflow ov = (ulc_overflow)(((data[0] >> 1) & 3) % 3);
    data++, size--;
    size_t rest, end = split_at(data, size, &rest);
    char path[FZ_PATH_MAX], fpath[FZ_PATH_MAX];
    if (fz_put(jsonl ? "data.jsonl" : "data.txt", data, end, path) != 0) return 0;
    int has_forget = rest < size || end < size;
    if (has_forget &&
        fz_put(jsonl ? "forget.jsonl" : "forget.txt", data + rest, size - rest, fpath) != 0)
        return 0;
    ulc_text_opts o = {.max_length = 16, .overflow = ov, .stride = ov == ULC_OVERFLOW_WINDOWS ? 4 : 0,
                       .forget_file = has_forget ? fpath : NULL, .where = "spec.json"};
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_data df = {0};
    ulc_status st = ulc_data_load_text("data.train", path, "text.onnx", &g_iface, g_tk, &o, &df,
                                       &ctx);
    fz_said("text data", st, ulc_ctx_message(&ctx));
    if (st == ULC_OK) {
        const ulc_data_text *t = df.text;
        volatile size_t sum = 0; /* keeps the reads */
        for (int64_t r = 0; r < df.rows; r++) {
            int64_t i = t->text_of[r];
            sum += t->len[i] + (size_t)t->line[i] + (size_t)t->rows.length[r];
            if (df.label) sum += (size_t)ulc_data_label(&df, r);
        }
        (void)sum;
    }
    ulc_data_clear(&df);
    return 0;
}
