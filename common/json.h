/*
 * json.h — JSON as strictly as the reference parsers (Python's json, serde_json) read it, over
 * cJSON. cJSON keeps strings NUL-terminated, so "rfa\u0000x" would be read as "rfa" and a path
 * cut at the NUL; it also takes a raw control character inside a string, and keeps an object's
 * repeated keys (a lookup then sees the first). Every JSON file ulc reads (forget specs, PEFT
 * adapter configs, Hugging Face config.json, safetensors headers and indexes) goes through here.
 *
 *     cJSON *j = NULL;
 *     if (ulc_json_parse(text, len, ULC_JSON_UNIQUE_KEYS, &j, ctx) != ULC_OK)
 *         return ulc_fail(ctx, ctx->status, "%s", path);   (messages name the key, not the file)
 *     ...
 *     cJSON_Delete(j);                                      (the caller frees what it gets)
 */
#ifndef ULC_COMMON_JSON_H
#define ULC_COMMON_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "common/status.h"

enum {
    ULC_JSON_UNIQUE_KEYS = 1u << 0 /* an object's key given twice is an error naming it */
};

/* The strings of the JSON text[0..len): a raw control character (below 0x20) inside a string,
 * or a \u0000 escape (which cJSON would cut the string at), is an error (ULC_ERR_PARSE) naming
 * the string's key path, e.g. "key 'data.train': the string holds \u0000 (NUL) ...". Other
 * syntax is left to the parser. */
ulc_status ulc_json_check_strings(const char *text, size_t len, ulc_ctx *ctx);

/* Parses text[0..len) (UTF-8; the strings checked as above; nothing but whitespace after the
 * value) into *out, which the caller frees with cJSON_Delete. Errors are ULC_ERR_PARSE: "not
 * valid JSON (near byte N, line L)", or one naming the key at fault. */
ulc_status ulc_json_parse(const char *text, size_t len, unsigned flags, cJSON **out,
                          ulc_ctx *ctx);

/* What a JSON item is, for messages: "a string", "a number", "true/false", "null", "a list",
 * "an object". */
const char *ulc_json_what(const cJSON *it);

#endif
