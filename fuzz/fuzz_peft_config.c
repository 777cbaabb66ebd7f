/*
 * fuzz_peft_config.c — PEFT adapter_config.json (import/peft_import.c): arbitrary bytes as the
 * config beside a fixed adapter_model.safetensors (fixtures/peft/: one LoRA pair for a Linear
 * and one for a Conv), read with ulc_peft_import on the directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/status.h"
#include "fuzz.h"
#include "import/peft_import.h"
#include "ir/lora.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_fixture("peft/adapter_model.safetensors", "adapter/adapter_model.safetensors");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FZ_PATH_MAX], dir[FZ_PATH_MAX];
    if (fz_put("adapter/adapter_config.json", data, size, path) != 0) return 0;
    snprintf(dir, sizeof dir, "%s/adapter", fz_dir());
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_lora_adapter *a = NULL;
    ulc_status st = ulc_peft_import(dir, &a, &ctx);
    fz_said("adapter", st, ulc_ctx_message(&ctx));
    ulc_lora_adapter_free(a);
    return 0;
}
