/*
 * fuzz_safetensors.c — the safetensors reader (import/safetensors_import.c) on arbitrary bytes
 * as one model.safetensors: the header length, the JSON header (names, dtypes, shapes, offsets,
 * __metadata__) and the layout checks against the file's length. A model that loads is also
 * offered to ulc_hf_build_from_names, which recognises torchvision ResNet state_dicts by their
 * tensor names and builds the graph over them (what `ulc` does with a weights-only file).
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/status.h"
#include "fuzz.h"
#include "import/hf/hf_import.h"
#include "import/safetensors_import.h"
#include "ir/graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FZ_PATH_MAX];
    if (fz_put("model.safetensors", data, size, path) != 0) return 0;
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = NULL;
    ulc_status st = ulc_safetensors_import(path, &m, &ctx);
    fz_said("import", st, ulc_ctx_message(&ctx));
    if (st == ULC_OK) {
        int built = 0;
        ulc_ctx_clear(&ctx);
        st = ulc_hf_build_from_names(m, &built, &ctx);
        fz_said(built ? "torchvision resnet" : "by names", st, ulc_ctx_message(&ctx));
    }
    ulc_model_free(m);
    return 0;
}
