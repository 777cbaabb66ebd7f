/*
 * cache.h — ulc's result cache: blobs (DELETE's teacher logits on a classifier, …; a text model's
 * teacher runs per batch and is not cached) stored zstd-compressed under
 * $ULC_CACHE_DIR, else $XDG_CACHE_HOME/ulc, else ~/.cache/ulc, one file per key. A key names
 * everything the blob depends on (hashes of the model and data, the rows, …); a file that does
 * not decompress to the expected size is ignored (and rewritten). Writes are atomic, and a cache
 * that cannot be written is not an error (the run only loses its shortcut).
 */
#ifndef ULC_IO_CACHE_H
#define ULC_IO_CACHE_H

#include <stddef.h>

/* The blob stored under key if there is one of exactly size bytes: malloc'd, else NULL. */
void *ulc_cache_load(const char *key, size_t size);
/* Stores size bytes under key; 0 on success, -1 if the cache could not be written. */
int ulc_cache_store(const char *key, const void *data, size_t size);
/* The cache directory in use (malloc'd), or NULL if there is no home for it. */
char *ulc_cache_dir(void);

#endif
