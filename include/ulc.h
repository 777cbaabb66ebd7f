/*
 * ulc.h — the public C API of ulc, the unlearning compiler.
 *
 * ulc reads a trained model (ONNX, safetensors, a Hugging Face checkpoint directory), makes it
 * forget what a request names (classes or rows of its training data) with an unlearning method
 * run as compile passes, and writes it back in the format it came in; ulc_merge bakes PEFT LoRA
 * adapters into a model's files, as `ulc merge` does. This header is the whole public
 * interface: handles are opaque, every fallible function returns a ulc_status, and the detail of
 * a failure (which file, tensor or key, and what was expected) is in the ulc_ctx the caller
 * passes, as SQLite keeps a per-connection message beside its result code.
 *
 *     ulc_ctx *ctx = NULL;
 *     ulc_model *m = NULL;
 *     ulc_request *rq = NULL;
 *     ulc_result *res = NULL;
 *     int64_t digit = 3;
 *     ulc_ctx_create(&ctx);
 *     if (ulc_model_load("digits.onnx", &m, ctx) != ULC_OK ||
 *         ulc_request_create("train.safetensors", &rq, ctx) != ULC_OK ||
 *         ulc_request_forget_classes(rq, &digit, 1, ctx) != ULC_OK ||
 *         ulc_forget(m, rq, &res, ctx) != ULC_OK ||           // m is now the unlearned model
 *         ulc_model_save(m, "digits_forget3.onnx", ctx) != ULC_OK)
 *         fprintf(stderr, "ulc: %s\n", ulc_ctx_message(ctx));
 *     else
 *         printf("forget-set accuracy %.3f -> %.3f\n", ulc_result_accuracy(res, "Df", 0),
 *                ulc_result_accuracy(res, "Df", 1));
 *     ulc_result_free(res);
 *     ulc_request_free(rq);
 *     ulc_model_free(m);
 *     ulc_ctx_free(ctx);
 *
 * Ownership: each _create/_load/ulc_forget output is the caller's and is freed with the matching
 * _free, which accepts NULL. Strings the library returns belong to the handle they came from.
 * Errors: each fallible call clears the context it is given, so ulc_ctx_message tells about the
 * last call (ulc_request_set_passes is the exception: clear a context holding an earlier failure
 * before it); a NULL context is accepted (the message is then lost). Out-pointers are set to NULL
 * when a call fails. The full reference: docs/api.md.
 * Handles are not shared between threads; distinct handles may be used from distinct threads.
 * Nothing here exits, aborts or installs signal handlers.
 *
 * Link with `pkg-config --cflags --libs ulc`, or CMake's `find_package(ulc)` and
 * `target_link_libraries(app PRIVATE ulc::ulc)` (ulc::ulc_static for the static library).
 */
#ifndef ULC_H
#define ULC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ULC_API __attribute__((visibility("default")))
#else
#define ULC_API
#endif

#define ULC_VERSION_MAJOR 0
#define ULC_VERSION_MINOR 1
#define ULC_VERSION_PATCH 0

/* "0.1.0": the library's version (may be newer than the header's). */
ULC_API const char *ulc_version(void);

/* ---- result codes ----------------------------------------------------------------------------- */

typedef enum ulc_status {
    ULC_OK = 0,
    ULC_ERR_INVALID_ARG, /* the caller passed something unusable (usage errors, bad options) */
    ULC_ERR_PARSE,       /* an input file is malformed or not of the expected format */
    ULC_ERR_INVALID,     /* well-formed input that breaks a rule (graph verifier, size mismatch) */
    ULC_ERR_IO,          /* open/read/write/rename failed */
    ULC_ERR_UNSUPPORTED, /* valid input that ulc does not handle (yet) */
    ULC_ERR_NOMEM,       /* allocation failed or a size is absurd */
    ULC_ERR_INTERRUPTED, /* stopped by a signal or a stop flag */
    ULC_ERR_INTERNAL     /* a ulc bug */
} ulc_status;

/* Short fixed name of a status ("parse error"); never NULL. */
ULC_API const char *ulc_status_str(ulc_status s);

/* ---- error contexts ----------------------------------------------------------------------------- */

/* Where a failing call leaves its message. */
typedef struct ulc_ctx ulc_ctx;

ULC_API ulc_status ulc_ctx_create(ulc_ctx **out);
ULC_API void ulc_ctx_free(ulc_ctx *ctx);
/* The last call's failure ("what, where"), or the status name: "ok" after a success. */
ULC_API const char *ulc_ctx_message(const ulc_ctx *ctx);
/* Forgets the recorded failure (a context is reusable after clearing it). */
ULC_API void ulc_ctx_clear(ulc_ctx *ctx);
/* Models loaded with this context may read ONNX external data that resolves outside the
 * model's folder (a symlink leading out); refused by default (the CLI's
 * --allow-external-outside). allow: 0 or 1. */
ULC_API void ulc_ctx_set_allow_external_outside(ulc_ctx *ctx, int allow);

/* ---- models ------------------------------------------------------------------------------------- */

typedef struct ulc_model ulc_model;

/* Reads a model: an ONNX file, a safetensors file (or sharded index), or a Hugging Face
 * checkpoint directory (config.json + safetensors), told apart by content. Weights stay in the
 * mapped file until written. */
ULC_API ulc_status ulc_model_load(const char *path, ulc_model **out, ulc_ctx *ctx);
/* Writes m to path in the format its name asks for (.onnx, .safetensors, or a directory),
 * atomically; refuses to overwrite a file m reads from, and a directory that does not exist. */
ULC_API ulc_status ulc_model_save(ulc_model *m, const char *path, ulc_ctx *ctx);
ULC_API void ulc_model_free(ulc_model *m);
/* Runs a pipeline of graph passes on m ("specialize{batch=1},cleanup"; see docs/cli.md), with the
 * verifier after each. Unlearning methods are refused: they need data and run through ulc_forget.
 * On failure m may be partly transformed: free it. */
ULC_API ulc_status ulc_model_apply(ulc_model *m, const char *pipeline, ulc_ctx *ctx);
/* The unlearning requests m went through (its metadata, a JSON list), or NULL if none. */
ULC_API const char *ulc_model_history(const ulc_model *m);

/* ---- unlearning requests ------------------------------------------------------------------------ */

/* What to forget, from which data, and how. */
typedef struct ulc_request ulc_request;

/* A request read from a forget spec (docs/spec.md): everything in it, checked. */
ULC_API ulc_status ulc_request_from_spec(const char *spec_path, ulc_request **out, ulc_ctx *ctx);
/* A request on the training data in train_data (safetensors: the model's input column and int64
 * `label`), with the defaults of a spec that names only the data: RFA with LoRA adapters placed as
 * the paper does, the paper's settings (1 epoch), seed 0. Name the forget set before running it. */
ULC_API ulc_status ulc_request_create(const char *train_data, ulc_request **out, ulc_ctx *ctx);
/* Forget every row whose label is one of classes[0..n) (class forgetting). */
ULC_API ulc_status ulc_request_forget_classes(ulc_request *rq, const int64_t *classes, int n,
                                              ulc_ctx *ctx);
/* Forget rows rows[0..n) of the training data (sample forgetting). */
ULC_API ulc_status ulc_request_forget_rows(ulc_request *rq, const int64_t *rows, int64_t n,
                                           ulc_ctx *ctx);
/* Held-out data to score on (Dft/Drt or Dt), as a spec's data.test. */
ULC_API ulc_status ulc_request_set_test_data(ulc_request *rq, const char *path, ulc_ctx *ctx);
/* The passes that unlearn, as text: "lora-inject{rank=8,alpha=32,placement=rfa},rfa{gamma=0.5},
 * lora-merge", "delete{epochs=20}", ... (one unlearning method among them), replacing the defaults.
 * rq and pipeline must not be NULL. */
ULC_API ulc_status ulc_request_set_passes(ulc_request *rq, const char *pipeline, ulc_ctx *ctx);
/* The seed of everything random (adapter init, row order); 0 by default. */
ULC_API void ulc_request_set_seed(ulc_request *rq, uint64_t seed);
/* Worker threads (0, or less: as many as the cores the process may use and other work leaves
 * free; docs/cli.md#threads). The bytes never depend on the thread count. */
ULC_API void ulc_request_set_threads(ulc_request *rq, int threads);
ULC_API void ulc_request_free(ulc_request *rq);

/* ---- running a request -------------------------------------------------------------------------- */

/* What a request did: accuracies before and after, the report. */
typedef struct ulc_result ulc_result;

/* Makes m forget what rq names: m is scored, unlearned in place (same inputs, outputs, nodes and
 * names; only weights change), scored again, and its metadata gains the request. The frozen
 * teacher the method and the scores compare with is a copy of m taken first. A request on a
 * model that already forgot something keeps those rows or classes out of the retain set. The
 * weights are those `ulc IN --forget SPEC` writes for the same request, seed and threads.
 * A request with no forget set, data that does not fit the model, or a forget set the data does
 * not have is refused before m changes; a failure later (interrupted, out of memory, a bad label)
 * may leave m partly changed: free it. Once m changed (here or by ulc_model_apply) it no longer
 * stands for its file: a later report's "input" is null. */
ULC_API ulc_status ulc_forget(ulc_model *m, const ulc_request *rq, ulc_result **out,
                              ulc_ctx *ctx);
/* Accuracy on a split ("Df", "Dr", "Dft", "Drt", "Dt") before (after = 0) or after (1)
 * unlearning, in [0, 1]; a NaN when the request has no such split. */
ULC_API double ulc_result_accuracy(const ulc_result *res, const char *split, int after);
/* The report as JSON text (the document `ulc IN --forget SPEC --report r.json` writes; its
 * "output" is null: nothing was written). */
ULC_API const char *ulc_result_report(const ulc_result *res);
/* How many of the request's gates failed (0 when it has none). */
ULC_API int ulc_result_gates_failed(const ulc_result *res);
ULC_API void ulc_result_free(ulc_result *res);

/* ---- merging adapters --------------------------------------------------------------------------- */

/* ulc_merge's flags, or'ed. */
#define ULC_MERGE_UNMERGE 1u  /* subtract the adapters instead of adding them */
#define ULC_MERGE_UNTIE 2u    /* an adapter may change one side of tied embeddings (they are untied) */
#define ULC_MERGE_IN_PLACE 4u /* out may be base itself (its files are replaced) */

/* Bakes PEFT LoRA adapters (directories with adapter_config.json and adapter_model.safetensors)
 * into the weights of the model at base (a safetensors file or sharded index, a Hugging Face
 * checkpoint directory, or an ONNX model), adapters[i] scaled by weights[i] (weights NULL: each
 * 1), in order, and writes the result to out in base's format: `ulc merge` as one call, on
 * files (docs/cli.md). threads: for the low-rank products (0, or less: the default). */
ULC_API ulc_status ulc_merge(const char *base, const char *const *adapters, const double *weights,
                             int n_adapters, const char *out, unsigned flags, int threads,
                             ulc_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif
