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
 *
 * Injected adapters (passes/lora_inject.c) are recorded per adapted node in the model
 * (ulc_model.lora, a list of ulc_lora_record) and persisted as the model metadata "ulc.lora", so
 * that a model written to ONNX and read back can still be merged or emitted as a PEFT adapter:
 *
 *     ulc_lora_records_load(m, ctx);            // rebuilds m->lora from "ulc.lora" if empty
 *     for (size_t i = 0; i < m->lora.len; i++) { const ulc_lora_record *r = m->lora.items[i]; ... }
 *     ulc_lora_records_save(m, ctx);            // rewrites "ulc.lora" after a change
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
    int use_dora;        /* DoRA: lora_magnitude_vector per module, W' = m * (W + dW) / ||W + dW|| */
    int lora_bias;       /* lora_B has a bias, merged into the base layer's bias */
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

/* alpha / r, or alpha / sqrt(r) with rsLoRA: PEFT's scaling. */
double ulc_lora_scale(int r, double alpha, int rslora);

/* ---- adapters injected into a graph ------------------------------------------------------- */

/* How the adapted node reads its weight, which decides the layout of the graph's factors:
 *   LINEAR_IN_OUT   W [in, out]: MatMul(x, W), Gemm(x, W) with transB=0 (GPT2's Conv1D, torch's
 *                   transposed copies of nn.Linear weights)
 *   LINEAR_OUT_IN   W [out, in]: Gemm(x, W) with transB=1, MatMul(x, Transpose(W))
 *   CONV            W [out, C, k...]: Conv with group 1
 * Graph factors: linear A_g [in, r] and B_g [r, out] (x @ A_g @ B_g, any rank of x); conv
 * A_g [r, C, k...] and B_g [out, r, 1...] (PEFT's own layout). PEFT's lora_A [r, in] and lora_B
 * [out, r] are A_g and B_g transposed for the linear kinds. */
typedef enum ulc_lora_kind {
    ULC_LORA_LINEAR_IN_OUT = 0,
    ULC_LORA_LINEAR_OUT_IN,
    ULC_LORA_CONV
} ulc_lora_kind;

/* One injected adapter. The branch it added, all named after the module:
 *     base_out = <base node>(x, W, ...)                  (the base node's output, renamed)
 *     a  = MatMul|Conv(x, A_g)      node "<module>.lora_A", A_g "<module>.lora_A.weight"
 *     b  = MatMul|Conv(a, B_g)      node "<module>.lora_B", B_g "<module>.lora_B.weight"
 *     s  = Mul(b, scaling)          node "<module>.lora_scale", scaling "<module>.lora_scaling"
 *     out = Add(base_out, s)        node "<module>.lora_add", out: the base node's old output
 * A_g and B_g are float32 initializers flagged ULC_VALUE_PARAM; scaling is a float32 scalar
 * (ULC_VALUE_CONSTANT). Strings live in the model's arena. */
typedef struct ulc_lora_record {
    const char *module;    /* PEFT module name ("encoder.layer.0.attention.query") */
    const char *node;      /* the adapted (base) node: keeps its name */
    const char *weight;    /* its weight initializer */
    ulc_lora_kind kind;
    const char *a, *b;     /* A_g, B_g initializer names */
    const char *out;       /* the base node's original output name (now the Add's) */
    const char *base_out;  /* the base node's output now */
    int r;
    double alpha;
    int rslora;
    int peft_ok;           /* `ulc merge` of a PEFT adapter for `module` finds this weight in
                              this layout (the module's own weight, or torch's MatMul/Gemm copy
                              in its scope); 0 e.g. for a Conv weight torch folded BatchNorm into */
    /* set by lora-merge: the branch is gone from the graph, the factors stay reachable here */
    int merged;
    const ulc_tensor *a_t, *b_t;
} ulc_lora_record;

#define ULC_META_LORA "ulc.lora" /* the records, as text (ulc_lora_records_save) */

/* Appends a copy of rec (strings copied into m's arena). */
ulc_status ulc_lora_record_add(ulc_model *m, const ulc_lora_record *rec, ulc_ctx *ctx);
/* The record whose base node is named node, or NULL. */
ulc_lora_record *ulc_lora_record_find(const ulc_model *m, const char *node);
/* A_g (which 0) or B_g (1) of a record: the graph's initializer, or the kept tensor once merged;
 * NULL if missing. */
const ulc_tensor *ulc_lora_record_tensor(const ulc_model *m, const ulc_lora_record *rec, int which);
/* PEFT's lora_A / lora_B of a record as float32 (malloc'd, caller frees): A [r, in] or
 * [r, C, k...], B [out, r] or [out, r, 1...]; dims written to adims/bdims (rank in *arank,
 * *brank, at most 8). */
ulc_status ulc_lora_record_peft_factors(const ulc_model *m, const ulc_lora_record *rec,
                                        float **a, int64_t *adims, int *arank, float **b,
                                        int64_t *bdims, int *brank, ulc_ctx *ctx);

/* Writes the records not yet merged into the metadata "ulc.lora" (replacing it; removing it when
 * there are none). Format: a line "ulc.lora 1", then one line per record of space-separated
 * key=value fields (module, node, weight, kind = linear_in_out|linear_out_in|conv, a, b, out,
 * base_out, r, alpha, rslora, peft_ok); values are percent-encoded (bytes <= 0x20, '%', 0x7f). */
ulc_status ulc_lora_records_save(ulc_model *m, ulc_ctx *ctx);
/* If m has no records and its metadata has "ulc.lora", rebuilds them, checks that their nodes
 * and float32 factors exist, and flags the factors ULC_VALUE_PARAM again (ONNX does not keep
 * that flag). A no-op otherwise. */
ulc_status ulc_lora_records_load(ulc_model *m, ulc_ctx *ctx);

#endif
