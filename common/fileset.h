/*
 * fileset.h — the files one job reads, for the checks every command shares: no output may be
 * (or alias) one of them, and no output is committed once one of them changed under the job.
 *
 * A job makes a fileset and hangs it on its context (ctx->reads); every ulc_mapping_open with
 * that context joins it (the set takes a reference on the mapping, and with `hash` set hashes
 * the bytes as they were mapped). Before any expensive work the job checks each file it will
 * write with ulc_fileset_check_output (same inode through any path, symlink or hard link: a
 * usage error); ulc_outfile_open checks again, and ulc_outfile_commit verifies the set (a
 * mapping a SIGBUS was caught in, common/fault.h, or whose file's size or mtime — or ctime, when
 * no link was removed — differ from when it was opened fails with "changed while ulc was reading
 * it"). Per job, never per process: two requests in one process keep their own sets.
 *
 *     ulc_fileset fs;
 *     ulc_fileset_begin(&fs, 0, ctx);                  // ctx->reads = &fs
 *     ulc_fileset_tag(&fs, "model", 1);
 *     ... ulc_io_load_model(in, ...) ...
 *     ulc_fileset_tag(&fs, "data", 0);
 *     ... load the data ...
 *     st = ulc_fileset_check_output(&fs, "output", out, ctx);
 *     ... the work, the writes ...
 *     st = ulc_fileset_end(&fs, st, ctx);              // a changed file's message wins
 */
#ifndef ULC_COMMON_FILESET_H
#define ULC_COMMON_FILESET_H

#include <stddef.h>
#include <sys/types.h>

#include "common/file.h"
#include "common/sha256.h"
#include "common/status.h"

typedef struct ulc_fileset_entry {
    char *path;        /* as opened (malloc'd) */
    char *role;        /* what it is to the job, for messages (malloc'd) */
    int weights;       /* the model's external data (not its main file) */
    dev_t dev;         /* identity */
    ino_t ino;
    ulc_mapping *map;  /* referenced; NULL for a file named only (ulc_fileset_add_path) */
    int replaceable;   /* the model's own files: --in-place may replace them */
    int hashed;
    char sha[ULC_SHA256_HEX]; /* of the bytes mapped, when hashed */
} ulc_fileset_entry;

typedef struct ulc_fileset ulc_fileset;
struct ulc_fileset {
    ulc_fileset_entry *v;
    size_t n, cap;
    int hash;            /* hash every mapping as it joins */
    int in_place;        /* outputs may replace replaceable entries (--in-place given) */
    int in_place_option; /* the command has --in-place (messages say so) */
    const char *tag;     /* the role new entries take (NULL: the mapping's own word) */
    int tag_replaceable; /* new entries are replaceable */
    ulc_fileset *prev;   /* the set ctx->reads held before begin (restored by end) */
};

/* Starts an empty set and hangs it on ctx (ctx->reads). */
void ulc_fileset_begin(ulc_fileset *s, int hash, ulc_ctx *ctx);
/* Verifies the set (when st is ULC_OK, or a file changed: its message then replaces st's),
 * takes it off ctx and frees it. Returns the job's status. */
ulc_status ulc_fileset_end(ulc_fileset *s, ulc_status st, ulc_ctx *ctx);
/* The role (and replaceability) of the entries that join from now on. */
void ulc_fileset_tag(ulc_fileset *s, const char *role, int replaceable);

/* A mapping joins (ulc_mapping_open calls this for ctx->reads). */
ulc_status ulc_fileset_add_mapping(ulc_fileset *s, const char *role, ulc_mapping *m, ulc_ctx *ctx);
/* A file named by path joins by identity only (nothing if it does not exist). */
ulc_status ulc_fileset_add_path(ulc_fileset *s, const char *role, const char *path, ulc_ctx *ctx);

/* The shared check: ULC_ERR_INVALID_ARG (naming both) if out is, or aliases, a file of s. */
ulc_status ulc_fileset_check_output(const ulc_fileset *s, const char *what, const char *out,
                                    ulc_ctx *ctx);
/* ULC_ERR_IO naming the first file that changed since it joined; ULC_OK if none. */
ulc_status ulc_fileset_verify(const ulc_fileset *s, ulc_ctx *ctx);
/* The sha256 of the bytes read from path (hashed when it joined, or now if it was mapped
 * unhashed); a path not in the set is read and hashed now, and joins by identity and hash. */
ulc_status ulc_fileset_sha256(ulc_fileset *s, const char *path, const char *role,
                              char hex[ULC_SHA256_HEX], ulc_ctx *ctx);
/* ulc_fileset_sha256 on ctx->reads; without a set, the file's bytes now. */
ulc_status ulc_file_sha256(const char *path, const char *role, char hex[ULC_SHA256_HEX],
                           ulc_ctx *ctx);

#endif
