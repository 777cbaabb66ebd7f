/*
 * lora.h — LoRA adapters as data: the hyperparameters PEFT's adapter_config.json carries and
 * the adapter's tensors, shared by the PEFT reader (import/), the merge (passes/) and, later,
 * the adapter writer (export/).
 *
 * PEFT's math, per adapted module M with lora_A (r x in) and lora_B (out x r):
 *   delta(M) = scale(M) * B @ A            (transposed when the base stores [in, out])
 *   scale(M) = alpha(M) / r(M), or alpha(M) / sqrt(r(M)) with use_rslora
 * r(M), alpha(M): rank_pattern / alpha_pattern entry for the first pattern key K (rank_pattern's
 * keys, then alpha_pattern's) such that M matches the regular expression ".*\.K$"; else the key
 * M itself; else the defaults r and lora_alpha.
 */
#ifndef ULC_IR_LORA_H
#define ULC_IR_LORA_H

#include "common/status.h"
#include "ir/graph.h"

typedef struct ulc_lora_pattern {
    const char *key;
    double value;
} ulc_lora_pattern;

typedef struct ulc_lora_config {
    int r;
    double alpha;
    int use_rslora;
    int fan_in_fan_out;  /* base weights of the adapted (Conv1D-style) modules are [in, out] */
    int n_rank_pattern, n_alpha_pattern;
    ulc_lora_pattern *rank_pattern, *alpha_pattern;
    const char *bias;    /* "none", "all", "lora_only" */
    int n_targets;
    const char **target_modules; /* as listed (a single regex string is one entry) */
    const char *base_model;      /* base_model_name_or_path, informational */
} ulc_lora_config;

/* An adapter: its config and its tensors (a weights-only model whose initializers are named as
 * in adapter_model.safetensors). The caller frees it with ulc_lora_adapter_free. */
typedef struct ulc_lora_adapter {
    ulc_lora_config cfg;
    ulc_model *weights; /* owns every string and array of cfg too (its arena) */
    const char *path;
} ulc_lora_adapter;

void ulc_lora_adapter_free(ulc_lora_adapter *a); /* accepts NULL */

/* PEFT's per-module rank, alpha and scale (see the top of this file). */
ulc_status ulc_lora_module_params(const ulc_lora_config *c, const char *module, int *r,
                                  double *alpha, double *scale, ulc_ctx *ctx);

#endif
