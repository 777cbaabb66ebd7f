/*
 * peft_export.h — the LoRA adapters injected into a model (ir/lora.h records) written as a PEFT
 * adapter directory, the layout `PeftModel.from_pretrained` and `ulc merge` read:
 *
 *   DIR/adapter_config.json        peft_type LORA, r, lora_alpha, use_rslora, target_modules
 *                                  (the module names), fan_in_fan_out, bias "none", task_type
 *                                  null, base_model_name_or_path, inference_mode true,
 *                                  rank_pattern / alpha_pattern (modules whose r or alpha differ
 *                                  from the most common one, keyed by full module name)
 *   DIR/adapter_model.safetensors  "base_model.model.M.lora_A.weight" [r, in] (conv [r, C, k...])
 *                                  and "base_model.model.M.lora_B.weight" [out, r] (conv
 *                                  [out, r, 1...]), float32, metadata {"format": "pt"}
 *
 * Merged adapters (lora-merge) are written too: their factors stay with the records. Nothing is
 * overwritten: if either file exists the export fails before writing. Both files appear
 * atomically (temporary + rename); the weights first, and they are removed again if the config
 * cannot be written.
 *
 *     if (ulc_peft_export(m, "adapter/", NULL, &ctx) != ULC_OK) ...
 */
#ifndef ULC_EXPORT_PEFT_EXPORT_H
#define ULC_EXPORT_PEFT_EXPORT_H

#include "common/status.h"
#include "ir/graph.h"

#define ULC_PEFT_CONFIG_FILE "adapter_config.json"
#define ULC_PEFT_WEIGHTS_FILE "adapter_model.safetensors"

typedef struct ulc_peft_export_opts {
    const char *base_model; /* base_model_name_or_path; NULL: the model's source path */
} ulc_peft_export_opts;

/* Fails (naming the file) if dir cannot receive an adapter: it is not a directory, or one of
 * the two files is already there. Cheap: the CLI calls it before doing any work. */
ulc_status ulc_peft_export_check_dir(const char *dir, ulc_ctx *ctx);
/* Removes the two files of an adapter written into dir (when the model that goes with it could
 * not be written). */
void ulc_peft_export_remove(const char *dir);

/* Writes m's recorded adapters (read back from the "ulc.lora" metadata if m has no records
 * yet) into dir, creating dir if needed. Fails without writing anything when there are no
 * adapters, when one cannot be expressed as PEFT's (a weight `ulc merge` would not find for its
 * module name, e.g. a Conv torch folded BatchNorm into; use_rslora differing between modules),
 * or when the files exist. */
ulc_status ulc_peft_export(ulc_model *m, const char *dir, const ulc_peft_export_opts *opts,
                           ulc_ctx *ctx);

#endif
