#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ulc_status_str(ulc_status s) {
    switch (s) {
    case ULC_OK: return "ok";
    case ULC_ERR_INVALID_ARG: return "invalid argument";
    case ULC_ERR_PARSE: return "parse error";
    case ULC_ERR_INVALID: return "invalid input";
    case ULC_ERR_IO: return "I/O error";
    case ULC_ERR_UNSUPPORTED: return "unsupported";
    case ULC_ERR_NOMEM: return "out of memory";
    case ULC_ERR_INTERRUPTED: return "interrupted";
    case ULC_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

void ulc_ctx_init(ulc_ctx *ctx) { memset(ctx, 0, sizeof *ctx); }

void ulc_ctx_init_from(ulc_ctx *ctx, const ulc_ctx *parent) {
    ulc_ctx_init(ctx);
    if (!parent) return;
    ctx->reads = parent->reads;
    ctx->allow_external_outside = parent->allow_external_outside;
    ctx->notes = parent->notes;
}

void ulc_ctx_clear(ulc_ctx *ctx) {
    ctx->status = ULC_OK;
    ctx->msg[0] = '\0';
}

const char *ulc_ctx_message(const ulc_ctx *ctx) {
    return ctx->msg[0] ? ctx->msg : ulc_status_str(ctx->status);
}

ulc_status ulc_fail(ulc_ctx *ctx, ulc_status s, const char *fmt, ...) {
    if (!ctx) return s;
    char add[ULC_CTX_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(add, sizeof add, fmt, ap);
    va_end(ap);
    if (ctx->status == ULC_OK || ctx->msg[0] == '\0') {
        snprintf(ctx->msg, sizeof ctx->msg, "%s", add);
        ctx->status = s;
    } else {
        /* Keep the innermost status: it names the real cause. */
        char old[ULC_CTX_MSG_MAX];
        memcpy(old, ctx->msg, sizeof old);
        size_t k = strlen(add);
        if (k > sizeof ctx->msg - 3) k = sizeof ctx->msg - 3;
        memcpy(ctx->msg, add, k);
        memcpy(ctx->msg + k, ": ", 2);
        size_t room = sizeof ctx->msg - k - 2 - 1, n = strlen(old);
        if (n > room) n = room;
        memcpy(ctx->msg + k + 2, old, n);
        ctx->msg[k + 2 + n] = '\0';
    }
    return ctx->status;
}

void ulc_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "ulc: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
