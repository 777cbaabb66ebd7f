/*
 * fuzz_onnx.c — the ONNX importer (import/onnx_import.c) on arbitrary bytes as model.onnx.
 *
 * What a model goes through before anything runs: the import with its IR checks (the graph is
 * verified), then what `ulc run` does before the first batch: shape inference and constant
 * evaluation over the graph (ulc_analyze, every op's shape rule, results capped at 64 KiB) and
 * the CPU backend's per-node support checks (ulc_session_create). Nothing is executed on
 * inputs. External data resolves beside the model, where the fixture weights.bin lies (seeds
 * reference it).
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/status.h"
#include "fuzz.h"
#include "import/onnx_import.h"
#include "ir/graph.h"
#include "runtime/runtime.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_fixture("onnx/weights.bin", "weights.bin");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FZ_PATH_MAX];
    if (fz_put("model.onnx", data, size, path) != 0) return 0;
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = NULL;
    ulc_status st = ulc_onnx_import(path, &m, &ctx);
    fz_said("import", st, ulc_ctx_message(&ctx));
    if (st != ULC_OK) return 0;
    ulc_analysis *a = NULL;
    ulc_ctx_clear(&ctx);
    st = ulc_analyze(m->graph, ulc_model_opset(m, ""), NULL, 0, (size_t)1 << 16, &a, &ctx);
    fz_said("analyze", st, ulc_ctx_message(&ctx));
    ulc_analysis_free(a);
    ulc_session *s = NULL;
    ulc_ctx_clear(&ctx);
    st = ulc_session_create(m, NULL, &s, &ctx);
    fz_said("session", st, ulc_ctx_message(&ctx));
    ulc_session_free(s);
    ulc_model_free(m);
    return 0;
}
