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

/* ulc_status (the result codes) and ulc_status_str are the public API's (include/ulc.h): one
 * definition for the library and its users. */
#include "include/ulc.h"

#define ULC_CTX_MSG_MAX 1024

/* Error context: holds the first error's message (later errors add context in front of it). */
typedef struct ulc_ctx {
    ulc_status status;            /* status of the recorded error, ULC_OK if none */
    char msg[ULC_CTX_MSG_MAX];    /* "what, where" */
} ulc_ctx;

void ulc_ctx_init(ulc_ctx *ctx);
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
