/*
 * fuzz_data.c — data files (io/data.c, docs/spec.md "Data"): arbitrary bytes as a safetensors
 * data file, opened as columns (one row count, rank >= 1) and bound to a model's inputs the way
 * `ulc eval` and the main job bind them (ulc_data_load: the main input's column by its three
 * names, further inputs by theirs, dtype/rank/fixed dims against the declaration, `label` int64
 * [rows]), then every label read. Two fixed models (fixtures/data/): an image classifier
 * (input f32 [N,1,8,8] -> logits [N,4]) and a text model (input_ids, attention_mask int64
 * [N,T] -> logits [N,T,8]); an input that mentions input_ids is bound to the text model.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "fuzz.h"
#include "import/onnx_import.h"
#include "io/data.h"
#include "ir/graph.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fixture_model {
    const char *name;
    ulc_model *m;
    ulc_iface f;
} fixture_model;

static fixture_model g_models[] = {{"image.onnx", NULL, {0}}, {"text.onnx", NULL, {0}}};

static void free_models(void) {
    for (size_t i = 0; i < sizeof g_models / sizeof *g_models; i++) ulc_model_free(g_models[i].m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    for (size_t i = 0; i < sizeof g_models / sizeof *g_models; i++) {
        fixture_model *fm = &g_models[i];
        char rel[64], path[FZ_PATH_MAX];
        snprintf(rel, sizeof rel, "data/%s", fm->name);
        fz_fixture(rel, fm->name);
        snprintf(path, sizeof path, "%s/%s", fz_dir(), fm->name);
        ulc_ctx ctx;
        ulc_ctx_init(&ctx);
        if (ulc_onnx_import(path, &fm->m, &ctx) != ULC_OK ||
            ulc_iface_resolve(fm->m, fm->name, NULL, NULL, NULL, &fm->f, &ctx) != ULC_OK) {
            fprintf(stderr, "fuzz setup: %s: %s\n", rel, ulc_ctx_message(&ctx));
            abort();
        }
    }
    atexit(free_models);
    return 0;
}

static int mentions(const uint8_t *data, size_t size, const char *s) {
    size_t n = strlen(s);
    for (size_t j = 0; j + n <= size; j++)
        if (memcmp(data + j, s, n) == 0) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FZ_PATH_MAX];
    if (fz_put("data.safetensors", data, size, path) != 0) return 0;
    const fixture_model *fm = &g_models[mentions(data, size, "input_ids") ? 1 : 0];
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_data df = {0};
    ulc_status st = ulc_data_load("data.train", path, fm->name, &fm->f, &df, &ctx);
    fz_said(fm->name, st, ulc_ctx_message(&ctx));
    if (st == ULC_OK && df.label) {
        volatile int64_t label = 0; /* keeps the reads */
        for (int64_t i = 0; i < df.rows; i++) label = ulc_data_label(&df, i);
        (void)label;
    }
    ulc_data_clear(&df);
    return 0;
}
