/*
 * fuzz_spec.c — the forget spec reader (jobs/spec.c, docs/spec.md): arbitrary bytes as
 * spec.json, read with ulc_spec_parse — the JSON, every key's type and range, the method's own
 * object, the training settings resolved against the method, the gates, the files named
 * relative to the spec, the forget set (forget.indices_file is a second JSON reader) and the
 * passes the spec turns into. The files the seeds name exist in the scratch directory
 * (train.safetensors, test.safetensors, reference.onnx, a Hugging Face directory hf/, and
 * indices.json with a valid row list, bad.json with an invalid one, similarity.json with megu's
 * 2x2 class similarity — megu.similarity is a third JSON reader): the parser only checks
 * that data files exist, so their content is not fuzzed here (fuzz_data.c does that).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "fuzz.h"
#include "jobs/request.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put_text(const char *name, const char *text) {
    char path[FZ_PATH_MAX];
    fz_put(name, text, strlen(text), path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    put_text("train.safetensors", "train");
    put_text("test.safetensors", "test");
    put_text("reference.onnx", "reference");
    put_text("hf/config.json", "{\"model_type\": \"resnet\"}");
    put_text("indices.json", "[0, 3, 17, 402]");
    put_text("bad.json", "[1, 1.5, -2]");
    put_text("similarity.json", "[[1, 0.25], [0.5, 1]]");
    put_text("train.jsonl", "{\"text\": \"a\"}\n"); /* text data (its keys and forget.file) */
    put_text("forget.txt", "a\n");
    put_text("tok/tokenizer.json", "{}");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FZ_PATH_MAX];
    if (fz_put("spec.json", data, size, path) != 0) return 0;
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_request rq;
    ulc_status st = ulc_spec_parse(path, &rq, &ctx); /* fills rq on failure too */
    fz_said("spec", st, ulc_ctx_message(&ctx));
    ulc_request_clear(&rq);
    return 0;
}
