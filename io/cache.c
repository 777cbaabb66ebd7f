/* cache.c — zstd-compressed blobs keyed by name (see cache.h). */
#include "io/cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zstd.h>

#include "common/file.h"

char *ulc_cache_dir(void) {
    const char *d = getenv("ULC_CACHE_DIR");
    if (d && *d) return strdup(d);
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && *x) return ulc_path_join(x, "ulc");
    const char *h = getenv("HOME");
    if (!h || !*h) return NULL;
    char *c = ulc_path_join(h, ".cache");
    char *r = c ? ulc_path_join(c, "ulc") : NULL;
    free(c);
    return r;
}

static char *key_path(const char *key) {
    char *dir = ulc_cache_dir();
    if (!dir) return NULL;
    size_t n = strlen(key) + 5;
    char *name = malloc(n);
    char *p = name ? (snprintf(name, n, "%s.zst", key), ulc_path_join(dir, name)) : NULL;
    free(name);
    free(dir);
    return p;
}

void *ulc_cache_load(const char *key, size_t size) {
    char *path = key_path(key);
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_mapping *m = NULL;
    void *out = NULL;
    if (path && ulc_path_exists(path) && ulc_mapping_open(path, "cache", &m, &ctx) == ULC_OK &&
        m->data) {
        unsigned long long want = ZSTD_getFrameContentSize(m->data, m->size);
        if (want == size && (out = malloc(size ? size : 1))) {
            size_t got = ZSTD_decompress(out, size, m->data, m->size);
            if (ZSTD_isError(got) || got != size) {
                free(out);
                out = NULL;
            }
        }
    }
    ulc_mapping_unref(m);
    free(path);
    return out;
}

static int mkdirs(const char *dir) {
    char *p = strdup(dir);
    if (!p) return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) break;
        *s = '/';
    }
    int r = mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1;
    free(p);
    return r;
}

int ulc_cache_store(const char *key, const void *data, size_t size) {
    char *dir = ulc_cache_dir(), *path = key_path(key);
    int rc = -1;
    size_t cap = ZSTD_compressBound(size);
    void *buf = path && dir && mkdirs(dir) == 0 ? malloc(cap ? cap : 1) : NULL;
    if (buf) {
        size_t n = ZSTD_compress(buf, cap, data, size, 3);
        ulc_ctx ctx;
        ulc_ctx_init(&ctx);
        ulc_outfile *o = NULL;
        if (!ZSTD_isError(n) && ulc_outfile_open(path, &o, &ctx) == ULC_OK) {
            if (ulc_outfile_write(o, buf, n, &ctx) != ULC_OK) ulc_outfile_abort(o);
            else if (ulc_outfile_commit(o, &ctx) == ULC_OK) rc = 0; /* commit frees o */
        }
    }
    free(buf);
    free(dir);
    free(path);
    return rc;
}
