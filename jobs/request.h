/*
 * request.h — an unlearning request: what to forget, from which data, by which passes, and how
 * to judge the result. A forget spec (docs/spec.md) is one written as JSON (ulc_spec_parse checks
 * it whole — keys, types, defaults, files relative to the spec — before any work); `ulc train
 * --passes` and the C API (include/ulc.h) build them in code.
 *
 * The unlearning itself is a pipeline of passes with one method among them (`passes`). A spec
 * names a method and its settings; ulc_request_passes turns those into the pipeline, with typed
 * options: lora-inject (the spec's lora key, or RFA's placement) when the method trains adapters,
 * the method with every training setting resolved, lora-merge.
 */
#ifndef ULC_JOBS_REQUEST_H
#define ULC_JOBS_REQUEST_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/status.h"
#include "eval/forget_eval.h"
#include "eval/report.h"
#include "eval/splits.h"
#include "jobs/clip.h"
#include "methods/method.h"
#include "methods/rfa.h"
#include "methods/unlearn.h"
#include "passes/pass.h"
#include "text/tokenizer.h"
#include "train/train.h"

#define ULC_SPEC_RELEARN_STEPS 10

struct ulc_request {
    const char *path;          /* the spec as given on the command line, or what made the
                                  request ("request"): messages name it */
    int is_spec;               /* read from a spec file (path is that file) */
    ulc_pipeline *passes;      /* the unlearning passes (owned); NULL until given or built */
    ulc_method_train run;      /* the run's training settings for passes given as text */
    int threads;               /* 0: the default (runtime/threads.h) */
    /* the method the spec names and its settings (what ulc_request_passes builds from) */
    ulc_method method;
    const char *method_name;   /* ulc_method_name(method) */
    /* non-rfa methods: what trains, delete's mask/temperature, scrub's alpha/gamma, ssd's
     * alpha/lambda/params */
    ulc_unlearn_opts unlearn;
    long rank;
    double alpha;
    int lora_custom;           /* targets/include/exclude given: else RFA's default placement */
    char *targets, *include, *exclude; /* '|'-joined, or NULL */
    long epochs, batch_size;
    double lr, weight_decay;
    double momentum;           /* SGD only */
    ulc_optim_kind optimizer;
    double gamma;
    ulc_rfa_norm norm;
    const char *norm_name;
    /* data and the forget set */
    char *dir;                 /* the spec's directory: relative paths start there (NULL: cwd) */
    char *train, *test;        /* data files, resolved (test may be NULL) */
    ulc_forget_kind kind;
    int64_t *classes;          /* ULC_FORGET_CLASSES */
    int n_classes;
    int64_t *indices;          /* ULC_FORGET_INDICES (from the spec or indices_file) */
    int64_t n_indices;
    char *indices_file;        /* resolved, or NULL */
    char *forget_file;         /* forget.file (texts), resolved, or NULL (kind is INDICES) */
    int forget_given;          /* a forget set was given */
    int by_concept;            /* the classes came from forget.concepts (clip.classes' names) */
    const char *delete_retain; /* delete.retain as given ("all", "none"), or NULL: the default */
    char *model_input, *model_output; /* NULL: the only one */
    /* text data (docs/spec.md, "Text data") */
    char *tokenizer;           /* model.tokenizer, resolved (a file or a directory), or NULL */
    int64_t max_length;        /* model.max_length; 0: the model's context */
    ulc_overflow overflow;     /* model.overflow (default ULC_OVERFLOW_ERROR) */
    int64_t stride;            /* model.stride (windows) */
    uint64_t seed;
    char *report;              /* resolved, or NULL */
    /* "eval": what the report adds beyond accuracy and the attacks (docs/spec.md) */
    int eval_features;         /* per-layer feature distance and CKA against IN (default 1) */
    long relearn_steps;        /* relearning probe steps (default ULC_SPEC_RELEARN_STEPS; 0: none) */
    double relearn_lr;         /* its SGD learning rate (default ULC_FE_RELEARN_LR) */
    ulc_lm_opts lm;            /* text models: mink_percent / 100, extract_prefix, extract_tokens,
                                  extract_rows (default ulc_lm_defaults()) */
    char *reference;           /* a reference model (retrain) for the activation distance, resolved */
    char *ssd_params;          /* ssd.params as given (unlearn.ssd_params points here), or NULL */
    char *megu_similarity;     /* megu.similarity resolved (unlearn.megu_similarity points here) */
    ulc_gates gates;           /* key "gates" */
    ulc_clip_spec clip;        /* key "clip" (jobs/clip.h); clip.given when a CLIP request */
    ulc_pipeline *robust;      /* key "robust": the robust pass with the spec's options, checked
                                  (owned; appended by ulc_request_passes); NULL: none */
};

/* A spec's defaults (docs/spec.md: RFA, rank 8, alpha 32, the paper's settings, seed 0), no data
 * and no forget set; path names the request in messages. */
void ulc_request_init(ulc_request *rq, const char *path);
/* Parses and checks the spec at path into rq (strings malloc'd: ulc_request_clear frees them, on
 * failure too). The message names the file and the key at fault. */
ulc_status ulc_spec_parse(const char *path, ulc_request *rq, ulc_ctx *ctx);
void ulc_request_clear(ulc_request *rq);
/* The request's forget set, for eval/ (borrows rq's arrays). */
ulc_forget_set ulc_request_forget_set(const ulc_request *rq);
/* The method's training settings resolved (methods/method.h: its defaults, then run's) into rq's
 * fields; ULC_ERR_INVALID_ARG naming `where` when they conflict. */
ulc_status ulc_request_resolve_train(ulc_request *rq, const ulc_method_train *run,
                                     const char *where, ulc_ctx *ctx);
/* Builds rq->passes from the method fields unless passes were given. */
ulc_status ulc_request_passes(ulc_request *rq, ulc_ctx *ctx);
/* Building a request in code (ulc train --passes, the C API). Each checks what it is given
 * (ULC_ERR_INVALID_ARG naming `what`, e.g. "--forget-classes") and replaces what was set. */
ulc_status ulc_request_set_data(ulc_request *rq, const char *train, const char *test,
                                ulc_ctx *ctx);
ulc_status ulc_request_set_classes(ulc_request *rq, const int64_t *classes, int n,
                                   const char *what, ulc_ctx *ctx);
ulc_status ulc_request_set_rows(ulc_request *rq, const int64_t *rows, int64_t n,
                                const char *what, ulc_ctx *ctx);
/* The passes as text (methods registered first); one unlearning method must be among them. */
ulc_status ulc_request_set_passes(ulc_request *rq, const char *pipeline, ulc_ctx *ctx);

/* The report's "hyperparameters" (without "eval") from the passes as they ran: "lora" (when
 * lora-inject ran: its options, the adapted modules), "train" (the method's resolved settings
 * and the seed), the method's own options, "rfa". NULL when out of memory. */
cJSON *ulc_request_hyperparameters(const ulc_request *rq, const ulc_method_env *env,
                                   int next_token, char *const *modules, int n_modules);
/* jobs/robust.c: the spec's "robust" key (absent: nothing) checked against the robust pass's
 * options into rq->robust (ULC_ERR_INVALID naming the key); the pass appended to p when given;
 * the report's "hyperparameters.robust" and "robust" objects (and a table line) when it ran. */
ulc_status ulc_request_parse_robust(ulc_request *rq, const cJSON *spec, ulc_ctx *ctx);
ulc_status ulc_request_append_robust(const ulc_request *rq, ulc_pipeline *p, ulc_ctx *ctx);
void ulc_request_robust_hyperparameters(cJSON *hp, const ulc_method_env *env);
void ulc_request_robust_report(cJSON *report, const ulc_method_env *env, FILE *table);
/* A JSON list of integers in the file at path (forget.indices_file, --forget-indices): checked
 * (whole numbers >= 0, no repeats, not empty) into a malloc'd array. */
ulc_status ulc_request_read_indices(const char *path, const char *what, int64_t **out,
                                    int64_t *n, ulc_ctx *ctx);

#endif
