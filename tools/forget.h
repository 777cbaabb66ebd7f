/*
 * forget.h — the forget spec (docs/spec.md) as the main command reads it: parsed and checked
 * whole (keys, types, defaults, files relative to the spec) before any work.
 */
#ifndef ULC_TOOLS_FORGET_H
#define ULC_TOOLS_FORGET_H

#include <stdint.h>

#include "common/status.h"
#include "methods/rfa.h"
#include "train/train.h"
#include "methods/unlearn.h"
#include "eval/forget_eval.h"
#include "eval/report.h"
#include "eval/splits.h"

#define ULC_SPEC_RELEARN_STEPS 10

typedef enum forget_kind { FORGET_CLASSES, FORGET_INDICES } forget_kind;


typedef struct spec {
    const char *path;          /* as given on the command line */
    ulc_method method;
    const char *method_name;   /* ulc_method_name(method) */
    /* non-rfa methods: what trains, delete's mask/temperature, scrub's alpha/gamma (the
     * forget_classes pointer is s->classes); input/output and teacher_logits are the caller's */
    ulc_unlearn_opts unlearn;
    char *dir;                 /* its directory: relative paths start there */
    char *train, *test;        /* data files, resolved (test may be NULL) */
    forget_kind kind;
    int64_t *classes;          /* FORGET_CLASSES */
    int n_classes;
    int64_t *indices;          /* FORGET_INDICES (from the spec or indices_file) */
    int64_t n_indices;
    char *indices_file;        /* resolved, or NULL */
    char *model_input, *model_output; /* NULL: the only one */
    long rank;
    double alpha;
    int lora_custom;           /* targets/include/exclude given: else RFA's default placement */
    char *targets, *include, *exclude; /* '|'-joined, or NULL */
    long epochs, batch_size;
    double lr, weight_decay;
    double momentum;           /* SGD only */
    ulc_optim_kind optimizer;
    uint64_t seed;
    double gamma;
    ulc_rfa_norm norm;
    const char *norm_name;
    char *report;              /* resolved, or NULL */
    /* "eval": what the report adds beyond accuracy and the attacks (docs/spec.md) */
    int eval_features;         /* per-layer feature distance and CKA against IN (default 1) */
    long relearn_steps;        /* relearning probe steps (default ULC_SPEC_RELEARN_STEPS; 0: none) */
    double relearn_lr;         /* its SGD learning rate (default ULC_FE_RELEARN_LR) */
    char *reference;           /* a reference model (retrain) for the activation distance, resolved */
    ulc_gates gates;           /* key "gates" */
} spec;

/* Parses and checks the spec at path into s (strings malloc'd: spec_clear frees them, on
 * failure too). The message names the file and the key at fault. */
ulc_status spec_parse(const char *path, spec *s, ulc_ctx *ctx);
void spec_clear(spec *s);
/* The spec's forget set, for eval/ (borrows s's arrays). */
ulc_forget_set spec_forget_set(const spec *s);

#endif
