/*
 * lora_merge.h — bake LoRA adapters into a model's weights, exactly as PEFT's merge_and_unload.
 *
 * For each adapted module M of the adapter (keys "base_model.model.M.lora_A.weight" ...):
 *   Linear / Conv1D:  W += w * scale(M) * B @ A        (W [out,in]; transposed for [in,out])
 *   Conv2d k x k:     W[o,i,:,:] += w * scale(M) * sum_r B[o,r] A[r,i,:,:]  (any number of
 *                     spatial dims: A [r, in, k...], B [out, r, 1...])
 *   Embedding:        W += w * scale(M) * (B @ A)^T    (lora_embedding_A [r,num], _B [dim,r])
 * with scale(M) from ir/lora.h and w the adapter's weight (--lora DIR:W); --unmerge subtracts.
 * Other adapter tensors (trained biases, modules_to_save) replace the base tensor of that name.
 * Arithmetic is float32 whatever the storage; results are rounded once to the base dtype
 * (f32, f16, bf16). A result that is not finite is refused, as PEFT's safe_merge does.
 *
 * The base weight of M is found as "M.weight", or as the unique initializer named "*.M.weight",
 * or (ONNX) as the weight input of the MatMul/Gemm node torch named after M's scope — the
 * transposed copies torch's exporter makes of nn.Linear weights (the scope read as written,
 * "/mlp/mlp.0/MatMul" -> ".mlp.mlp.0.", or as a module path, -> ".mlp.0.").
 *
 * Names, shapes, ranks, dtypes and tied embeddings are all checked before anything changes; a
 * non-finite result then stops the merge part-way, and the model must be discarded (the CLI
 * writes nothing).
 */
#ifndef ULC_PASSES_LORA_MERGE_H
#define ULC_PASSES_LORA_MERGE_H

#include "common/status.h"
#include "ir/graph.h"
#include "ir/lora.h"

typedef struct ulc_lora_merge_opts {
    double weight;              /* adapter weight (1 = PEFT's merge) */
    int unmerge;                /* subtract instead of add */
    /* Tied embeddings (an HF checkpoint with tie_word_embeddings, whose output embedding is
     * not stored): the stored input embedding and the output name that shares it. */
    const char *tied_input, *tied_output;
    int untie;                  /* 1: give the output its own copy instead of refusing */
    /* Known architecture: NULL-terminated module-name suffixes whose weights are stored
     * [in, out] (GPT2's Conv1D: "c_attn", ...); every other module is then [out, in]. Settles
     * square weights, which shapes cannot (PEFT's own fan_in_fan_out flag is unreliable: it
     * is reset when an nn.Linear is targeted too). Graph consumers (MatMul, Gemm's transB)
     * settle it first where the model has nodes. */
    const char *const *conv1d_modules;
    int threads;                /* worker threads for the low-rank products; 0: every core */
    /* 1: leave merged tensors LAZY (ULC_STORAGE_LAZY): they are produced, a few MiB at a time,
     * as the model is written, so no merged tensor is ever held whole. The report's
     * max_abs_delta values, and the refusal of non-finite results, then come with that write:
     * keep the report alive until it is done. 0: produce them now. */
    int deferred;
} ulc_lora_merge_opts;

typedef struct ulc_lora_merge_entry {
    const char *tensor;  /* base tensor changed */
    const char *module;  /* adapter module (or the replaced tensor's own name) */
    double max_abs_delta;
    int transposed;      /* the base stores the weight [in, out] */
    int replaced;        /* a full replacement, not a low-rank update */
} ulc_lora_merge_entry;

typedef struct ulc_lora_merge_report {
    int n;
    ulc_lora_merge_entry *entries; /* malloc'd; ulc_lora_merge_report_clear frees */
    int untied;                    /* the output embedding was given its own tensor */
} ulc_lora_merge_report;

void ulc_lora_merge_report_clear(ulc_lora_merge_report *r);

ulc_status ulc_lora_merge(ulc_model *base, const ulc_lora_adapter *ad,
                          const ulc_lora_merge_opts *opts, ulc_lora_merge_report *report,
                          ulc_ctx *ctx);

/* The module torch's exporter names a node after: its scope ('/'-separated parts, the last
 * one the op) read as a module path, where a part "P.k" right after a part P is P's child k
 * (torch repeats the parent in a numbered child's scope): "/layer1/layer1.0/conv1/Conv" ->
 * "layer1.0.conv1", "/encoder/layer.0/attention/query/MatMul" ->
 * "encoder.layer.0.attention.query". NULL (or out of memory) when the name is not a scope.
 * The caller frees the result. */
char *ulc_lora_scope_module(const char *node);

/* The base weight PEFT module m adapts, by the rule at the top of this file: "m.weight", the
 * unique "*.m.weight", or the weight input of the MatMul/Gemm nodes in m's torch scope (then
 * *via_node = 1, and *transposed = 1 when the node reads it [in, out]). NULL when there is none;
 * NULL with an error in ctx when the choice is ambiguous. */
ulc_value *ulc_lora_find_base(ulc_graph *g, const char *m, int *via_node, int *transposed,
                              ulc_ctx *ctx);

/* One module whose base weight the caller already knows (lora-merge, from its records):
 * w += weight * scale * B @ A with PEFT's factors a ([r, in] or [r, C, k...]) and b ([out, r]
 * or [out, r, 1...]); transposed: w is stored [in, out]. The same checks and arithmetic as
 * ulc_lora_merge (report entry appended; opts may be NULL: weight 1, every core, not deferred). */
ulc_status ulc_lora_merge_module(ulc_model *base, const char *module_name, ulc_value *w,
                                 const ulc_tensor *a, const ulc_tensor *b, int transposed,
                                 double scale, const ulc_lora_merge_opts *opts,
                                 ulc_lora_merge_report *report, ulc_ctx *ctx);

#endif
