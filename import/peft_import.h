/*
 * peft_import.h — PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors.
 *
 * Reads everything PEFT uses when merging: r, lora_alpha, use_rslora, rank_pattern,
 * alpha_pattern, fan_in_fan_out, bias, target_modules. Refuses what would merge wrongly if
 * ignored: another peft_type, DoRA, pickled adapter_model.bin.
 *
 *     ulc_lora_adapter *a;
 *     ulc_peft_import("adapter/", &a, &ctx);   // caller frees with ulc_lora_adapter_free
 */
#ifndef ULC_IMPORT_PEFT_IMPORT_H
#define ULC_IMPORT_PEFT_IMPORT_H

#include "common/status.h"
#include "ir/lora.h"

/* path: the adapter directory, or its adapter_model.safetensors (config beside it). */
ulc_status ulc_peft_import(const char *path, ulc_lora_adapter **out, ulc_ctx *ctx);

#endif
