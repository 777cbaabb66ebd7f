/*
 * tokenize.h — `ulc tokenize`: texts to token ids (or rows of a fixed width with their mask),
 * or ids back to text, with a tokenizer read by text/tokenizer.h.
 *
 *     ulc_tokenize_job j = {.tokenizer = "gpt2/", .file = "texts.jsonl", .out = "ids.jsonl"};
 *     if (ulc_tokenize_files(&j, stdout, ctx) != ULC_OK) ...
 *
 * Input: one text (--text), or a file of texts — JSON Lines (a name ending in .jsonl: one object
 * per line with a string "text"; with decode, a list "ids") or plain text (one text per line, a
 * final '\r' dropped). Output: JSON Lines, {"ids": [...]} per text; with max_length, one
 * {"text": i, "ids": [...], "mask": [...]} per row; with decode, {"text": "..."} per line. Errors
 * name the file and line (and the byte offset of invalid UTF-8); nothing is written on error.
 */
#ifndef ULC_JOBS_TOKENIZE_H
#define ULC_JOBS_TOKENIZE_H

#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "text/tokenizer.h"

typedef struct ulc_tokenize_job {
    const char *tokenizer;  /* a tokenizer.json or a directory */
    const char *text;       /* one text (or, with decode, a JSON list of ids); or NULL */
    const char *file;       /* a file of texts; or NULL */
    const char *out;        /* the output file; NULL: the stream given to ulc_tokenize_files */
    int decode;             /* ids to text */
    int skip_special;       /* decode: leave special tokens out */
    int add_special;        /* the post-processor's tokens */
    int64_t max_length;     /* > 0: rows (text/tokenizer.h's ulc_tokenizer_encode_rows) */
    ulc_overflow overflow;
    int64_t stride;
    int pad;                /* rows max_length wide (else as wide as the longest) */
    int64_t pad_id;         /* < 0: the tokenizer's pad token, else its eos, else 0 */
    double encode_seconds;  /* out: the time spent encoding/decoding (no file reading or writing) */
} ulc_tokenize_job;

ulc_status ulc_tokenize_files(ulc_tokenize_job *j, FILE *out, ulc_ctx *ctx);

#endif
