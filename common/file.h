/*
 * file.h — read-only file mappings shared by everything that borrows their bytes, and output
 * files that appear atomically.
 *
 * A ulc_mapping is reference counted: a graph whose weights point into a model file holds a
 * reference, so the file stays mapped exactly as long as some weight borrows from it. The
 * descriptor stays open too, so an exporter can copy unchanged weight bytes file-to-file in the
 * kernel (copy_file_range) without ever faulting them into memory.
 *
 * A ulc_outfile writes to a temporary file beside the destination (`.NAME.ulc-tmp-XXXXXX`, held
 * under an exclusive flock while it lives) and on commit fsyncs it, renames it over the
 * destination and fsyncs the directory; abort (or a signal, through ulc_outfile_cleanup_all)
 * removes the temporary, so a failed write never leaves a partial or clobbered file. A
 * temporary of ulc's naming that no live process holds (a run killed with SIGKILL) is removed
 * by the next ulc_outfile_open into its folder, with a notice to ctx->notes.
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
#include <time.h>

#include "common/status.h"

typedef struct ulc_mapping {
    char *path;        /* as given when opened (malloc'd) */
    int fd;            /* kept open for copy_file_range and for fstat checks; -1 when closed */
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
    dev_t dev;         /* identity, to detect "output is the input" */
    ino_t ino;
    struct timespec mtime, ctime; /* at open: a file modified since differs here */
    nlink_t nlink;
    int changed;       /* set by the SIGBUS guard (common/fault.h): zeros were mapped in */
    int guard;         /* the guard's slot, -1 when unguarded */
    int refs;
} ulc_mapping;

/* Maps a whole file read-only. what names the file's role in messages ("model", "external
 * data"). Only regular files: the path is opened without blocking (O_NONBLOCK) and a FIFO,
 * device, socket or directory is refused, saying what it is. The mapping is guarded against
 * truncation (common/fault.h) and joins ctx->reads when the context has a fileset. */
ulc_status ulc_mapping_open(const char *path, const char *what, ulc_mapping **out, ulc_ctx *ctx);
ulc_mapping *ulc_mapping_ref(ulc_mapping *m);
void ulc_mapping_unref(ulc_mapping *m); /* accepts NULL; unmaps at zero */
/* Drops this process's resident pages of [p, p + n) when the range lies inside m's mapping (only
 * the whole pages within it): a kernel that packed a weight into its own copy never reads the
 * mapped bytes again, and keeping both would count every such weight twice in the resident set.
 * The bytes stay readable: a later read faults them back in from the page cache. Returns the
 * bytes dropped; 0 (nothing done) for a range outside the mapping, where the advice would
 * discard heap memory. */
size_t ulc_mapping_drop_pages(const ulc_mapping *m, const void *p, size_t n);

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
/* Flushes, fsyncs, verifies ctx->reads (no input changed), renames over the destination and
 * fsyncs its directory; frees o whatever happens. */
ulc_status ulc_outfile_commit(ulc_outfile *o, ulc_ctx *ctx);
/* Removes the temporary file; frees o. Accepts NULL. */
void ulc_outfile_abort(ulc_outfile *o);
/* Async-signal-safe: unlinks every temporary file still open. For signal handlers. */
void ulc_outfile_cleanup_all(void);

/* "a FIFO (named pipe)", "a directory", ... for a file type that is not a regular file. */
const char *ulc_file_kind(mode_t mode);
/* ULC_OK if ulc may create files in the directory of path (what names it: "output"). */
ulc_status ulc_path_check_writable_dir(const char *what, const char *dir, ulc_ctx *ctx);
/* 1 if the real path real lies inside the directory whose real path is dir_real. */
int ulc_path_within(const char *dir_real, const char *real);

/* The rule for files a model names (ONNX external data): the real path of m's file (symlinks
 * and symlinked folders resolved) must lie inside dir's real path, unless allow; checked on
 * the file m has open, so a link swapped after the check changes nothing. ULC_ERR_INVALID
 * ("resolves to '...', outside the model's folder '...'"). */
ulc_status ulc_path_confine(const char *dir, const ulc_mapping *m, int allow, ulc_ctx *ctx);

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
