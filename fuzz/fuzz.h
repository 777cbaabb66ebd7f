/*
 * fuzz.h — the glue every libFuzzer harness in fuzz/ shares (docs/fuzzing.md).
 *
 * ulc's readers take paths and map files, and several resolve further files beside the one
 * they read (external data, shards, the safetensors beside a config.json, the data files a
 * spec names). So a harness writes each input as a regular file into a private scratch
 * directory, next to fixed fixtures copied there once, and calls the reader's ordinary entry
 * point on that path: the parser runs exactly as it does on a user's file, and no parser grew
 * a test-only entry point.
 *
 *     int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
 *         char path[FZ_PATH_MAX];
 *         if (fz_put("model.onnx", data, size, path) != 0) return 0;
 *         ... ulc_onnx_import(path, &m, &ctx) ...; free everything it made
 *         return 0;
 *     }
 *
 * The scratch directory is $TMPDIR/ulc-fuzz-XXXXXX (or /tmp), made on first use and removed
 * at exit. Fixtures come from fuzz/fixtures/ (ULC_FUZZ_FIXTURES overrides the directory);
 * fuzz/make_corpus.py generates them with the seed corpus. A harness that cannot set up
 * (no fixtures, no scratch space) aborts: that is a broken setup, not a finding to hide.
 */
#ifndef ULC_FUZZ_FUZZ_H
#define ULC_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#define FZ_PATH_MAX 4096

/* The scratch directory (made on first call). */
const char *fz_dir(void);
/* Writes data to <scratch>/<name> (replacing it; subdirectories of name are made) and puts the
 * file's path into path[FZ_PATH_MAX]. 0 on success. */
int fz_put(const char *name, const void *data, size_t size, char path[FZ_PATH_MAX]);
/* Copies fixtures/<rel> to <scratch>/<name>; aborts when the fixture is missing. */
void fz_fixture(const char *rel, const char *name);/* With ULC_FUZZ_VERBOSE set: prints what the reader said about the input ("ok", or the
 * message), for checking what seeds reach (`ULC_FUZZ_VERBOSE=1 fuzz_x -runs=0 corpus/x`). */
void fz_said(const char *what, int status, const char *message);

#endif
