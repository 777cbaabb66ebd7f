/* fuzz.c — see fuzz.h. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef ULC_FUZZ_FIXTURES
#define ULC_FUZZ_FIXTURES "fuzz/fixtures"
#endif

static char g_dir[FZ_PATH_MAX];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void rm_scratch(void) {
    if (g_dir[0]) nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what, const char *path) {
    fprintf(stderr, "fuzz setup: %s %s: %s\n", what, path, strerror(errno));
    abort();
}

const char *fz_dir(void) {
    if (g_dir[0]) return g_dir;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/ulc-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) die("cannot make", g_dir);
    atexit(rm_scratch);
    return g_dir;
}

/* Makes the directories above <scratch>/<name>. */
static void make_parents(char *path) {
    size_t base = strlen(fz_dir());
    for (char *s = path + base + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) die("cannot make", path);
        *s = '/';
    }
}

int fz_put(const char *name, const void *data, size_t size, char path[FZ_PATH_MAX]) {
    if (snprintf(path, FZ_PATH_MAX, "%s/%s", fz_dir(), name) >= FZ_PATH_MAX) return -1;
    make_parents(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) die("cannot write", path);
    const char *p = data;
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("cannot write", path);
        p += w;
        size -= (size_t)w;
    }
    close(fd);
    return 0;
}

void fz_fixture(const char *rel, const char *name) {
    const char *root = getenv("ULC_FUZZ_FIXTURES");
    char src[FZ_PATH_MAX], dst[FZ_PATH_MAX];
    snprintf(src, sizeof src, "%s/%s", root && *root ? root : ULC_FUZZ_FIXTURES, rel);
    FILE *f = fopen(src, "rb");
    if (!f) die("missing fixture", src);
    if (fseek(f, 0, SEEK_END) != 0) die("cannot read", src);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) die("cannot read", src);
    fclose(f);
    fz_put(name, buf, (size_t)n, dst);
    free(buf);
}

void fz_said(const char *what, int status, const char *message) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("ULC_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: %s\n", what, status == 0 ? "ok" : message);
}
