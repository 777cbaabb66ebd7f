/*
 * fuzz_safetensors_index.c — sharded safetensors checkpoints: arbitrary bytes as
 * model.safetensors.index.json ({"metadata": .., "weight_map": {tensor: shard}}) beside two
 * fixed shards (fixtures/shards/: model-00001-of-00002.safetensors holds a.weight and a.bias,
 * model-00002-of-00002.safetensors holds b.weight), read through ulc_safetensors_import.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/status.h"
#include "fuzz.h"
#include "import/safetensors_import.h"
#include "ir/graph.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_fixture("shards/model-00001-of-00002.safetensors", "model-00001-of-00002.safetensors");
    fz_fixture("shards/model-00002-of-00002.safetensors", "model-00002-of-00002.safetensors");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FZ_PATH_MAX];
    if (fz_put("model.safetensors.index.json", data, size, path) != 0) return 0;
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = NULL;
    ulc_status st = ulc_safetensors_import(path, &m, &ctx);
    fz_said("index", st, ulc_ctx_message(&ctx));
    ulc_model_free(m);
    return 0;
}
