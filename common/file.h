/*
 * file.h — read-only file mappings shared by everything that borrows their bytes, and output
 * files that appear atomically.
 *
 * A ulc_mapping is reference counted: a graph whose weights point into a model file holds a
 * reference, so the file stays mapped exactly as long as some weight borrows from it. The
 * descriptor stays open too, so an exporter can copy unchanged weight bytes file-to-file in the
 * kernel (copy_file_range) without ever faulting them into memory.
 *
 * A ulc_outfile writes to a temporary file beside the destination and renames it over the
 * destination on commit; abort (or a signal, through ulc_outfile_cleanup_all) removes the
 * temporary, so a failed write never leaves a partial or clobbered file.
 *
 *     ulc_outfile *o;
 *     if (ulc_outfile_open("out.onnx", &o, ctx)) return ...;
 *     ulc_outfile_write(o, buf, n, ctx) ... ulc_outfile_commit(o, ctx);  // or ulc_outfile_abort(o)
 */
#ifndef ULC_COMMON_FILE_H
#define ULC_COMMON_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/status.h"

typedef struct ulc_mapping {
    char *path;        /* as given when opened (malloc'd) */
    int fd;            /* kept open for copy_file_range; -1 when closed */
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
    dev_t dev;         /* identity, to detect "output is the input" */
    ino_t ino;
    int refs;
} ulc_mapping;

/* Maps a whole file read-only. what names the file's role in messages ("model", "external data"). */
ulc_status ulc_mapping_open(const char *path, const char *what, ulc_mapping **out, ulc_ctx *ctx);
ulc_mapping *ulc_mapping_ref(ulc_mapping *m);
void ulc_mapping_unref(ulc_mapping *m); /* accepts NULL; unmaps at zero */

typedef struct ulc_outfile ulc_outfile;

ulc_status ulc_outfile_open(const char *path, ulc_outfile **out, ulc_ctx *ctx);
ulc_status ulc_outfile_write(ulc_outfile *o, const void *p, size_t n, ulc_ctx *ctx);
/* Copies len bytes at offset off of src_fd into the output (in the kernel where possible). */
ulc_status ulc_outfile_copy_from(ulc_outfile *o, int src_fd, uint64_t off, uint64_t len,
                                 ulc_ctx *ctx);
/* Copies len bytes at src_off of src_fd to offset dst_off of the output on a background thread
 * (in the kernel where possible), while the caller goes on writing: the region must lie where
 * the caller skips (ulc_outfile_skip) or writes nothing. src_fd must stay open until commit or
 * abort; commit waits for every copy and fails with the first copy's error. */
ulc_status ulc_outfile_copy_at(ulc_outfile *o, uint64_t dst_off, int src_fd, uint64_t src_off,
                               uint64_t len, ulc_ctx *ctx);
/* Writes out what ulc_outfile_write has buffered. */
ulc_status ulc_outfile_flush(ulc_outfile *o, ulc_ctx *ctx);
/* Moves the write position len bytes on, leaving them to ulc_outfile_copy_at. */
ulc_status ulc_outfile_skip(ulc_outfile *o, uint64_t len, ulc_ctx *ctx);
ulc_status ulc_outfile_pad_to(ulc_outfile *o, uint64_t alignment, ulc_ctx *ctx);
uint64_t ulc_outfile_tell(const ulc_outfile *o);
const char *ulc_outfile_path(const ulc_outfile *o); /* the final destination */
/* Flushes, closes and renames over the destination; frees o whatever happens. */
ulc_status ulc_outfile_commit(ulc_outfile *o, ulc_ctx *ctx);
/* Removes the temporary file; frees o. Accepts NULL. */
void ulc_outfile_abort(ulc_outfile *o);
/* Async-signal-safe: unlinks every temporary file still open. For signal handlers. */
void ulc_outfile_cleanup_all(void);

/* 1 if both paths name the same existing file (same device and inode). */
int ulc_path_same_file(const char *a, const char *b);
int ulc_path_exists(const char *p);
int ulc_path_is_dir(const char *p);
/* Directory part of path ("." when none), malloc'd. */
char *ulc_path_dirname(const char *path);
/* dir + "/" + rel, malloc'd (rel returned alone when dir is "."). */
char *ulc_path_join(const char *dir, const char *rel);
/* NULL if rel is a safe relative path (not absolute, no ".." component, not empty), else why. */
const char *ulc_path_unsafe_reason(const char *rel);

#endif
