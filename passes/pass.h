/*
 * pass.h — compile passes over a model, and pipelines of them written as text.
 *
 * A pass is data: a name, the option keys it accepts (an unknown key is an error, as in MLIR's
 * pass options), and a run function. A pipeline is a comma-separated list of passes, each
 * with optional `{key=value,...}` options; list values inside an option are separated by '|':
 *
 *     specialize{batch=8},cleanup
 *     specialize{shapes=input_ids:1x128|attention_mask:1x128},cleanup{limit=65536}
 *
 *     ulc_pipeline *p = NULL;
 *     if (ulc_pipeline_parse("specialize{batch=1},cleanup", &p, ctx) != ULC_OK) ...
 *     ulc_pipeline_opts o = {.verify_each = 1};
 *     ulc_pipeline_run(p, model, &o, ctx);
 *     ulc_pipeline_free(p);
 *
 * The verifier runs after every pass with verify_each; print_ir_after dumps the model after
 * the named pass ("all": after each).
 */
#ifndef ULC_PASSES_PASS_H
#define ULC_PASSES_PASS_H

#include <stdio.h>

#include "common/status.h"
#include "ir/graph.h"

typedef struct ulc_pass_opt {
    const char *key, *value;
} ulc_pass_opt;

typedef struct ulc_pass_opts {
    int n;
    const ulc_pass_opt *kv;
    int quiet; /* no summary lines on stderr (callers' -q) */
} ulc_pass_opts;

typedef struct ulc_pass {
    const char *name;
    const char *const *keys; /* accepted option keys, NULL-terminated */
    const char *summary;     /* one line for --help and error messages */
    ulc_status (*run)(ulc_model *m, const ulc_pass_opts *opts, ulc_ctx *ctx);
} ulc_pass;

/* The registered passes, NULL-terminated; lookup by name (NULL if unknown). */
const ulc_pass *const *ulc_passes(void);
const ulc_pass *ulc_pass_find(const char *name);

/* Option helpers for passes: the value of key (NULL if absent); integers/sizes parsed strictly
 * with an error naming the pass and key. */
const char *ulc_pass_opt_get(const ulc_pass_opts *o, const char *key);
ulc_status ulc_pass_opt_int(const ulc_pass_opts *o, const char *pass, const char *key, long long lo,
                            long long hi, long long def, long long *out, ulc_ctx *ctx);

typedef struct ulc_pipeline ulc_pipeline;

ulc_status ulc_pipeline_parse(const char *text, ulc_pipeline **out, ulc_ctx *ctx);
void ulc_pipeline_free(ulc_pipeline *p); /* accepts NULL */

typedef struct ulc_pipeline_opts {
    int verify_each;            /* run the verifier after every pass */
    const char *print_ir_after; /* a pass name, or "all"; NULL: none */
    FILE *print_to;             /* default stdout */
} ulc_pipeline_opts;

ulc_status ulc_pipeline_run(const ulc_pipeline *p, ulc_model *m, const ulc_pipeline_opts *o,
                            ulc_ctx *ctx);

/* The passes (specialize.c, cleanup.c). */
extern const ulc_pass ulc_pass_specialize;
extern const ulc_pass ulc_pass_cleanup;
/* lora_inject.c: LoRA adapters into the graph (trainable) and folded back out. */
extern const ulc_pass ulc_pass_lora_inject;
extern const ulc_pass ulc_pass_lora_merge;

/* Shared by specialize and cleanup: replaces every node the analysis folded by initializers
 * for the outputs something still reads (flagged ULC_VALUE_CONSTANT), then removes dead nodes.
 * Returns the number of nodes removed. */
struct ulc_analysis;
ulc_status ulc_fold_and_prune(ulc_model *m, const struct ulc_analysis *a, int *removed, ulc_ctx *ctx);
/* 1 if the graph computes in float16/bfloat16 anywhere (typed values, initializers, Cast to a
 * half, half Constant tensors): the runtime computes those as float32, so a float32 result of
 * an analysis may stand for a half value. */
int ulc_graph_has_halves(const ulc_graph *g);
/* Removes nodes none of whose outputs is read or is a graph output, and unread initializers
 * that ulc created (ULC_VALUE_CONSTANT); model weights stay. */
int ulc_prune_dead(ulc_model *m);

#endif
