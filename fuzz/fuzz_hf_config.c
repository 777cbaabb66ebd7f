/*
 * fuzz_hf_config.c — Hugging Face config.json (import/hf/): arbitrary bytes as config.json in a
 * checkpoint directory, imported with ulc_hf_import: the reader, the model_type dispatch and
 * the architecture's graph builder, which reads every size from the config and checks it
 * against the weights. Each supported model_type has a directory of tiny weights
 * (fixtures/hf/<type>/model.safetensors, made by make_corpus.py with the seeds' configs); the
 * input goes into the directory of the first model type its text mentions (resnet otherwise),
 * so the seeds build whole graphs and mutations explore the checks around them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "fuzz.h"
#include "import/hf/hf_import.h"
#include "ir/graph.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const k_types[] = {"gpt2", "vit", "clip", "resnet"};
#define N_TYPES (sizeof k_types / sizeof *k_types)

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    for (size_t i = 0; i < N_TYPES; i++) {
        char rel[64], name[64];
        snprintf(rel, sizeof rel, "hf/%s/model.safetensors", k_types[i]);
        snprintf(name, sizeof name, "%s/model.safetensors", k_types[i]);
        fz_fixture(rel, name);
    }
    return 0;
}

/* The first supported model type named in the text (memmem: the input need not be a string). */
static const char *pick_type(const uint8_t *data, size_t size) {
    const char *best = "resnet";
    size_t at = size;
    for (size_t i = 0; i < N_TYPES; i++) {
        size_t n = strlen(k_types[i]);
        for (size_t j = 0; j + n <= size && j < at; j++)
            if (memcmp(data + j, k_types[i], n) == 0) {
                best = k_types[i], at = j;
                break;
            }
    }
    return best;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *type = pick_type(data, size);
    char name[64], path[FZ_PATH_MAX], dir[FZ_PATH_MAX];
    snprintf(name, sizeof name, "%s/config.json", type);
    if (fz_put(name, data, size, path) != 0) return 0;
    snprintf(dir, sizeof dir, "%s/%s", fz_dir(), type);
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = NULL;
    ulc_status st = ulc_hf_import(dir, &m, &ctx);
    fz_said(type, st, ulc_ctx_message(&ctx));
    ulc_model_free(m);
    return 0;
}
