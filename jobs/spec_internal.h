/*
 * spec_internal.h — what the spec readers share (spec.c, clip.c, robust.c): the key check and a
 * path from the spec. Not for use outside jobs/.
 */
#ifndef ULC_JOBS_SPEC_INTERNAL_H
#define ULC_JOBS_SPEC_INTERNAL_H

#include <cjson/cJSON.h>

#include "common/status.h"

/* Every key of obj must be one of keys (NULL-terminated), once; file names the spec and prefix
 * the object's key path ("lora") in messages. */
ulc_status ulc_spec_check_keys(const char *file, const cJSON *obj, const char *prefix,
                               const char *const *keys, ulc_ctx *ctx);

/* A path from the spec at `spec`: absolute as written, else relative to dir. It must exist (a
 * regular file, or a directory when dir_ok); the message names the key. *out is malloc'd. */
ulc_status ulc_spec_resolve(const char *spec, const char *dir, const char *key, const char *rel,
                            int dir_ok, char **out, ulc_ctx *ctx);

#endif
