/*
 * status.h — result codes and the error context every fallible ulc function reports into.
 *
 * Library code never exits or aborts on bad input: it returns a ulc_status and leaves a
 * human-readable message ("model.onnx: initializer 'fc.weight': raw_data has 12 bytes, dims [4,4]
 * of float need 64") in the caller's ulc_ctx. Only tools/ulc.c turns a status into an exit code.
 *
 *     ulc_ctx ctx; ulc_ctx_init(&ctx);
 *     ulc_model *m = NULL;
 *     if (ulc_onnx_import("in.onnx", &m, &ctx) != ULC_OK)
 *         fprintf(stderr, "error: %s\n", ulc_ctx_message(&ctx));
 */
#ifndef ULC_COMMON_STATUS_H
#define ULC_COMMON_STATUS_H

#include <stddef.h>
#include <stdio.h>

/* ulc_status (the result codes) and ulc_status_str are the public API's (include/ulc.h): one
 * definition for the library and its users. */
#include "include/ulc.h"

#define ULC_CTX_MSG_MAX 1024

struct ulc_fileset;

/* Error context: holds the first error's message (later errors add context in front of it),
 * and the settings of the request it serves. ulc_ctx_clear forgets the error only. */
typedef struct ulc_ctx {
    ulc_status status;            /* status of the recorded error, ULC_OK if none */
    char msg[ULC_CTX_MSG_MAX];    /* "what, where" */
    /* the files the running job reads (common/fileset.h), borrowed; NULL: none kept. Every
     * mapping opened with this context joins it, every output committed checks it */
    struct ulc_fileset *reads;
    int allow_external_outside;   /* ONNX external data may resolve outside the model's folder */
    FILE *notes;                  /* where notices go (a stale temporary removed); NULL: nowhere */
} ulc_ctx;

/* Zeroes everything: no error, default settings. */
void ulc_ctx_init(ulc_ctx *ctx);
/* A fresh context for a sub-step (its error is the caller's to word) with parent's settings. */
void ulc_ctx_init_from(ulc_ctx *ctx, const ulc_ctx *parent);
void ulc_ctx_clear(ulc_ctx *ctx);
const char *ulc_ctx_message(const ulc_ctx *ctx);

/* Records an error (printf-style) and returns s, so callers can `return ulc_fail(...)`.
 * If an error is already recorded, the new text is prepended as context: "outer: inner". */
ulc_status ulc_fail(ulc_ctx *ctx, ulc_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Programmer-bug assertion: never used for user input. */
#define ULC_ASSERT(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) ulc_assert_fail(#cond, __FILE__, __LINE__);                              \
    } while (0)
void ulc_assert_fail(const char *expr, const char *file, int line);

/* Forward a failing status unchanged. */
#define ULC_TRY(expr)                                                                         \
    do {                                                                                      \
        ulc_status ulc_try_s_ = (expr);                                                       \
        if (ulc_try_s_ != ULC_OK) return ulc_try_s_;                                          \
    } while (0)

#endif
