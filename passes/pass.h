/*
 * pass.h — compile passes over a model, and pipelines of them, written as text or built in code.
 *
 * A pass is data: a name, its options with their types and ranges (an unknown key, a value of
 * the wrong type or out of range is an error when the pipeline is built, as MLIR's registered
 * pass options), and a run function. A pipeline is a list of passes with their options. As text,
 * passes are separated by commas, options go in braces, and a list inside a string option is
 * separated by '|':
 *
 *     specialize{batch=8},cleanup
 *     lora-inject{rank=8,alpha=32,placement=rfa},rfa{gamma=0.5},lora-merge
 *
 *     ulc_pipeline *p = NULL;
 *     if (ulc_pipeline_parse("specialize{batch=1},cleanup", &p, ctx) != ULC_OK) ...
 *
 * In code, options are set typed, so no number goes through text:
 *
 *     ulc_pipeline_create(&p, ctx);
 *     ulc_pipeline_append(p, "lora-inject", ctx);
 *     ulc_pipeline_set_int(p, "rank", 8, ctx);         // on the pass appended last
 *     ulc_pipeline_set_num(p, "alpha", 32.0, ctx);
 *     ulc_pass_ctx pc = ulc_pass_ctx_defaults();          // quiet, threads, seed, cancel, env
 *     ulc_pipeline_opts o = {.verify_each = 1, .pass_ctx = &pc};
 *     ulc_pipeline_run(p, model, &o, ctx);
 *     ulc_pipeline_free(p);
 *
 * Besides the graph rewrites registered here, higher rooms register their own passes
 * (ulc_pass_register: methods/registry.c adds the unlearning methods). The verifier runs after
 * every pass with verify_each; print_ir_after dumps the model after the named pass ("all": after
 * each).
 */
#ifndef ULC_PASSES_PASS_H
#define ULC_PASSES_PASS_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "ir/graph.h"

/* ---- options ----------------------------------------------------------------------------------- */

typedef enum ulc_opt_kind {
    ULC_OPT_INT = 0, /* a whole number in [ilo, ihi] */
    ULC_OPT_NUM,     /* a finite number in [lo, hi] (lo excluded when lo_open) */
    ULC_OPT_STR      /* text; one of `choices` when given */
} ulc_opt_kind;

/* One option a pass accepts. */
typedef struct ulc_pass_optdef {
    const char *key;
    ulc_opt_kind kind;
    long long ilo, ihi;         /* INT: the range */
    double lo, hi;              /* NUM: the range */
    int lo_open;                /* NUM: lo itself is refused (a positive number) */
    const char *const *choices; /* STR: the accepted values, NULL-terminated; NULL: any text */
    const char *help;           /* one line: what it sets and its default */
} ulc_pass_optdef;

/* One option given, with its value in its kind. */
typedef struct ulc_pass_opt {
    const ulc_pass_optdef *def;
    long long i;     /* INT */
    double num;      /* NUM, and INT converted */
    const char *str; /* STR (owned by the pipeline) */
} ulc_pass_opt;

typedef struct ulc_pass_opts {
    int n;
    const ulc_pass_opt *kv;
} ulc_pass_opts;

/* The given option key, or NULL. */
const ulc_pass_opt *ulc_pass_opt_find(const ulc_pass_opts *o, const char *key);
/* Typed reads: the given value, or def when the option was not given (values were checked
 * against the option's kind and range when they were set). */
long long ulc_pass_opt_i(const ulc_pass_opts *o, const char *key, long long def);
double ulc_pass_opt_num(const ulc_pass_opts *o, const char *key, double def);
const char *ulc_pass_opt_str(const ulc_pass_opts *o, const char *key, const char *def);

/* ---- the pass context ------------------------------------------------------------------------ */

/* What a pass may need beyond the model and its options: shared settings, cancellation, and what
 * unlearning methods read (the frozen teacher, the data, the forget set: methods/method.h). */
typedef struct ulc_method_env ulc_method_env;
typedef struct ulc_pass_ctx {
    int quiet;      /* no summary lines or progress on stderr */
    int threads;    /* 0: every core */
    int profile;    /* training passes: the per-op time table after training */
    uint64_t seed;  /* what a pass draws at random (LoRA init, row order), unless its own seed */
    FILE *progress; /* where progress goes (stderr when NULL) */
    const volatile sig_atomic_t *stop; /* set (e.g. by SIGINT) to stop training after a step */
    ulc_method_env *env; /* unlearning methods' inputs and results; NULL: none given */
} ulc_pass_ctx;

/* quiet 0, every core, seed 0, progress on stderr, no stop flag, no method env. */
ulc_pass_ctx ulc_pass_ctx_defaults(void);

/* ---- passes ------------------------------------------------------------------------------------ */

typedef struct ulc_pass {
    const char *name;
    const ulc_pass_optdef *opts; /* accepted options, ended by an entry with key NULL */
    const char *summary;         /* one line for --help and error messages */
    ulc_status (*run)(ulc_model *m, const ulc_pass_opts *opts, ulc_pass_ctx *pc, ulc_ctx *ctx);
} ulc_pass;

/* Adds a NULL-terminated list of passes to the registry (at most 8 lists; thread-safe; a list
 * added twice counts once). Names must not repeat a registered one: ULC_ERR_INTERNAL. */
ulc_status ulc_pass_register(const ulc_pass *const *list, ulc_ctx *ctx);
/* Every registered pass, in registration order (graph rewrites first): at most cap into out;
 * returns how many there are. */
int ulc_passes_list(const ulc_pass **out, int cap);
/* The registered pass called name, or NULL. */
const ulc_pass *ulc_pass_find(const char *name);

/* ---- pipelines --------------------------------------------------------------------------------- */

typedef struct ulc_pipeline ulc_pipeline;

ulc_status ulc_pipeline_parse(const char *text, ulc_pipeline **out, ulc_ctx *ctx);
/* An empty pipeline to append to. */
ulc_status ulc_pipeline_create(ulc_pipeline **out, ulc_ctx *ctx);
void ulc_pipeline_free(ulc_pipeline *p); /* accepts NULL */

/* Appends the registered pass called name (unknown: ULC_ERR_INVALID_ARG listing the passes). */
ulc_status ulc_pipeline_append(ulc_pipeline *p, const char *name, ulc_ctx *ctx);
/* Sets an option of the pass appended last, checked as the text form is (unknown key, kind,
 * range, choices, given twice: ULC_ERR_INVALID_ARG naming the pass and key). An INT value may
 * set a NUM option. The string is copied. */
ulc_status ulc_pipeline_set_int(ulc_pipeline *p, const char *key, long long v, ulc_ctx *ctx);
ulc_status ulc_pipeline_set_num(ulc_pipeline *p, const char *key, double v, ulc_ctx *ctx);
ulc_status ulc_pipeline_set_str(ulc_pipeline *p, const char *key, const char *v, ulc_ctx *ctx);

/* The number of passes, and pass i with its options. */
int ulc_pipeline_length(const ulc_pipeline *p);
const ulc_pass *ulc_pipeline_pass(const ulc_pipeline *p, int i, const ulc_pass_opts **opts);
/* The pipeline as text that ulc_pipeline_parse reads back to the same pipeline (numbers in
 * the fewest digits that read back exactly); malloc'd, NULL when out of memory. */
char *ulc_pipeline_text(const ulc_pipeline *p);

typedef struct ulc_pipeline_opts {
    int verify_each;            /* run the verifier after every pass */
    const char *print_ir_after; /* a pass name, or "all"; NULL: none */
    FILE *print_to;             /* default stdout */
    ulc_pass_ctx *pass_ctx;     /* NULL: ulc_pass_ctx_defaults() */
} ulc_pipeline_opts;

ulc_status ulc_pipeline_run(const ulc_pipeline *p, ulc_model *m, const ulc_pipeline_opts *o,
                            ulc_ctx *ctx);
/* Runs passes [first, first + count) only (a caller that does work between passes). */
ulc_status ulc_pipeline_run_range(const ulc_pipeline *p, int first, int count, ulc_model *m,
                                  const ulc_pipeline_opts *o, ulc_ctx *ctx);

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
