/*
 * sha256.h — SHA-256 (FIPS 180-4), incremental over buffers and whole files.
 *
 * Used for the hashes in `ulc forget`'s report (input model, spec, data, output model), so a
 * report says exactly which bytes went in and came out. Output is the usual lowercase hex.
 *
 *     ulc_sha256 h;
 *     uint8_t d[ULC_SHA256_BYTES];
 *     ulc_sha256_init(&h);
 *     ulc_sha256_update(&h, "abc", 3);
 *     ulc_sha256_final(&h, d);             // ba7816bf...
 *
 *     char hex[ULC_SHA256_HEX];
 *     if (ulc_sha256_file("model.onnx", hex, ctx) != ULC_OK) ...
 */
#ifndef ULC_COMMON_SHA256_H
#define ULC_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ULC_SHA256_BYTES 32
#define ULC_SHA256_HEX 65 /* 64 hex digits and the NUL */

typedef struct ulc_sha256 {
    uint32_t h[8];      /* chaining state */
    uint64_t bytes;     /* message length so far */
    uint8_t block[64];  /* the partial block */
    size_t fill;        /* bytes in block */
} ulc_sha256;

void ulc_sha256_init(ulc_sha256 *s);
void ulc_sha256_update(ulc_sha256 *s, const void *data, size_t n);
/* Pads, writes the digest; s must be initialised again before reuse. */
void ulc_sha256_final(ulc_sha256 *s, uint8_t out[ULC_SHA256_BYTES]);

/* Digest as 64 lowercase hex digits plus NUL. */
void ulc_sha256_hex(const uint8_t d[ULC_SHA256_BYTES], char hex[ULC_SHA256_HEX]);
/* One-shot digest of a buffer, as hex. */
void ulc_sha256_buf_hex(const void *data, size_t n, char hex[ULC_SHA256_HEX]);
/* Hex digest of a regular file's contents (mapped read-only and hashed in place; an empty file
 * is fine). Fails with ULC_ERR_IO naming the file. */
ulc_status ulc_sha256_file(const char *path, char hex[ULC_SHA256_HEX], ulc_ctx *ctx);

#endif
