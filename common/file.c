#define _GNU_SOURCE /* copy_file_range */
#include "common/file.h"

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/fileset.h"

/* ---- mappings ---------------------------------------------------------------------------- */

const char *ulc_file_kind(mode_t mode) {
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISREG(mode)) return "a regular file";
    return "not a regular file";
}

ulc_status ulc_mapping_open(const char *path, const char *what, ulc_mapping **out, ulc_ctx *ctx) {
    *out = NULL;
    /* O_NONBLOCK: a FIFO must not block us in open() before fstat can refuse it */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot open %s: %s", path, what, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot stat %s: %s", path, what, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot read %s: it is %s, not a regular file", path,
                        what, ulc_file_kind(st.st_mode));
    }
    ulc_mapping *m = calloc(1, sizeof *m);
    char *p = strdup(path);
    if (!m || !p) {
        free(m);
        free(p);
        close(fd);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", path);
    }
    m->path = p;
    m->fd = fd;
    m->size = (size_t)st.st_size;
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    m->mtime = st.st_mtim;
    m->ctime = st.st_ctim;
    m->nlink = st.st_nlink;
    m->guard = -1;
    m->refs = 1;
    if (m->size > 0) {
        void *d = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (d == MAP_FAILED) {
            int e = errno;
            ulc_mapping_unref(m);
            return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot map %s: %s", path, what, strerror(e));
        }
        m->data = d;
        m->guard = ulc_fault_guard(d, m->size, &m->changed);
    }
    if (ctx && ctx->reads && ulc_fileset_add_mapping(ctx->reads, what, m, ctx) != ULC_OK) {
        ulc_mapping_unref(m);
        return ctx->status;
    }
    *out = m;
    return ULC_OK;
}

ulc_mapping *ulc_mapping_ref(ulc_mapping *m) {
    if (m) m->refs++;
    return m;
}

void ulc_mapping_unref(ulc_mapping *m) {
    if (!m || --m->refs > 0) return;
    ulc_fault_unguard(m->guard);
    if (m->data) munmap((void *)m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    free(m->path);
    free(m);
}

size_t ulc_mapping_drop_pages(const ulc_mapping *m, const void *p, size_t n) {
    if (!m || !m->data || !p || n == 0) return 0;
    uintptr_t lo = (uintptr_t)m->data, hi = lo + m->size, a = (uintptr_t)p;
    if (a < lo || a > hi || n > hi - a) return 0;
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096;
    uintptr_t b = (a + page - 1) & ~(page - 1), e = (a + n) & ~(page - 1);
    if (e <= b) return 0;
    /* read-only and private, never written: the pages come back from the file on a later read */
    if (madvise((void *)b, e - b, MADV_DONTNEED) != 0) return 0;
    return e - b;
}

/* ---- atomic output files ----------------------------------------------------------------- */

#define OUTBUF_SIZE ((size_t)1 << 20)
#define MAX_OPEN_TMP 64

/* A copy the background copier does (ulc_outfile_copy_at). */
typedef struct copy_job {
    int src_fd;
    uint64_t src_off, dst_off, len;
} copy_job;

typedef struct copier {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    copy_job *jobs;
    size_t n, cap, next; /* jobs[next..n) are waiting */
    int busy;            /* a job is being copied */
    int quit;            /* abort: stop between chunks */
    ulc_status st;       /* its first failure */
    char msg[ULC_CTX_MSG_MAX];
} copier;

struct ulc_outfile {
    char *path;    /* destination */
    char *tmp;     /* temporary beside it */
    int fd;
    uint64_t pos;  /* bytes written, buffered included */
    size_t nbuf;
    int slot;      /* index in the cleanup registry */
    unsigned char *buf;
    copier *cp;    /* started by the first ulc_outfile_copy_at */
};

/* Temporaries to remove if a signal ends the process. Plain array of pointers so that the
 * signal handler only reads it; slots are taken and given back atomically (threads write
 * outputs concurrently, e.g. a model and its adapter). */
static char *g_tmp_paths[MAX_OPEN_TMP];

static int register_tmp(char *tmp) {
    for (int i = 0; i < MAX_OPEN_TMP; i++) {
        char *none = NULL;
        if (__atomic_compare_exchange_n(&g_tmp_paths[i], &none, tmp, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
            return i;
    }
    return -1;
}

static void unregister_tmp(int slot) {
    if (slot >= 0) __atomic_store_n(&g_tmp_paths[slot], NULL, __ATOMIC_SEQ_CST);
}

void ulc_outfile_cleanup_all(void) {
    for (int i = 0; i < MAX_OPEN_TMP; i++) {
        char *p = __atomic_load_n(&g_tmp_paths[i], __ATOMIC_SEQ_CST);
        if (p) unlink(p);
    }
}

static ulc_status flush_buf(ulc_outfile *o, ulc_ctx *ctx);

/* ---- the background copier ---------------------------------------------------------------- */

#define COPY_CHUNK ((uint64_t)8 << 20) /* between checks for quit */
/* The kernel copies whole large folios fastest: after a head up to the next boundary, every
 * chunk starts at a multiple of this in the source (and so in the destination too when the two
 * offsets are congruent, as in a merge, whose output has its input's layout). Measured on ext4:
 * a 249 MB copy starting 12,345 bytes in takes 1.4x as long in one call as with the head split
 * off. */
#define COPY_ALIGN ((uint64_t)64 << 10)

/* One job, in the kernel where it can (copy_file_range with both offsets given, so the file
 * position the writer uses is untouched), else through a buffer with pread/pwrite. */
static ulc_status copy_one(copier *c, int dst_fd, const char *path, const copy_job *j,
                           unsigned char **buf) {
    loff_t in = (loff_t)j->src_off, out = (loff_t)j->dst_off;
    uint64_t left = j->len;
    int kernel = 1;
    while (left > 0) {
        if (__atomic_load_n(&c->quit, __ATOMIC_RELAXED)) return ULC_OK;
        size_t want = left > COPY_CHUNK ? (size_t)COPY_CHUNK : (size_t)left;
        if ((uint64_t)in % COPY_ALIGN && want > COPY_ALIGN - (uint64_t)in % COPY_ALIGN)
            want = (size_t)(COPY_ALIGN - (uint64_t)in % COPY_ALIGN); /* later chunks start aligned */
        ssize_t n;
        if (kernel) {
            n = copy_file_range(j->src_fd, &in, dst_fd, &out, want, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { /* not supported here (or a short source): through a buffer */
                kernel = 0;
                continue;
            }
        } else {
            if (!*buf && !(*buf = malloc(OUTBUF_SIZE))) {
                snprintf(c->msg, sizeof c->msg, "%s: out of memory", path);
                return ULC_ERR_NOMEM;
            }
            if (want > OUTBUF_SIZE) want = OUTBUF_SIZE;
            n = pread(j->src_fd, *buf, want, in);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                snprintf(c->msg, sizeof c->msg, "%s: reading source data failed: %s", path,
                         n < 0 ? strerror(errno) : "unexpected end of file");
                return ULC_ERR_IO;
            }
            for (ssize_t d = 0; d < n;) {
                ssize_t w = pwrite(dst_fd, *buf + d, (size_t)(n - d), out + d);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) {
                    snprintf(c->msg, sizeof c->msg, "%s: write failed: %s", path,
                             w < 0 ? strerror(errno) : "no progress");
                    return ULC_ERR_IO;
                }
                d += w;
            }
            in += n;
            out += n;
        }
        left -= (uint64_t)n;
    }
    return ULC_OK;
}

typedef struct copier_arg {
    copier *c;
    int fd;
    const char *path;
} copier_arg;

static void *copier_main(void *arg) {
    copier_arg a = *(copier_arg *)arg;
    free(arg);
    copier *c = a.c;
    unsigned char *buf = NULL;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->next == c->n && !c->quit) pthread_cond_wait(&c->cv, &c->mu);
        if (c->quit) break;
        copy_job j = c->jobs[c->next++];
        c->busy = 1;
        int failed = c->st != ULC_OK;
        pthread_mutex_unlock(&c->mu);
        ulc_status s = failed ? ULC_OK : copy_one(c, a.fd, a.path, &j, &buf);
        pthread_mutex_lock(&c->mu);
        if (s != ULC_OK && c->st == ULC_OK) c->st = s;
        c->busy = 0;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    free(buf);
    return NULL;
}

/* Waits for every queued copy (quit: for the one in progress only), stops the thread; returns
 * the copier's status, its message in ctx. */
static ulc_status copier_finish(ulc_outfile *o, int quit, ulc_ctx *ctx) {
    copier *c = o->cp;
    if (!c) return ULC_OK;
    pthread_mutex_lock(&c->mu);
    if (quit) __atomic_store_n(&c->quit, 1, __ATOMIC_RELAXED);
    while (!c->quit && (c->next < c->n || c->busy)) pthread_cond_wait(&c->cv, &c->mu);
    __atomic_store_n(&c->quit, 1, __ATOMIC_RELAXED); /* copy_one reads it without the lock */
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->tid, NULL);
    ulc_status s = c->st;
    if (s != ULC_OK && ctx) s = ulc_fail(ctx, s, "%s", c->msg);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->jobs);
    free(c);
    o->cp = NULL;
    return s;
}

ulc_status ulc_outfile_copy_at(ulc_outfile *o, uint64_t dst_off, int src_fd, uint64_t src_off,
                               uint64_t len, ulc_ctx *ctx) {
    if (len == 0) return ULC_OK;
    if (!o->cp) {
        copier *c = calloc(1, sizeof *c);
        copier_arg *a = malloc(sizeof *a);
        if (!c || !a) {
            free(c);
            free(a);
            return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", o->path);
        }
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv, NULL);
        *a = (copier_arg){c, o->fd, o->path};
        if (pthread_create(&c->tid, NULL, copier_main, a) != 0) {
            pthread_mutex_destroy(&c->mu);
            pthread_cond_destroy(&c->cv);
            free(c);
            free(a);
            /* no thread: copy now, in place */
            copier tmp = {0};
            unsigned char *buf = NULL;
            copy_job j = {src_fd, src_off, dst_off, len};
            ulc_status s = copy_one(&tmp, o->fd, o->path, &j, &buf);
            free(buf);
            return s == ULC_OK ? ULC_OK : ulc_fail(ctx, s, "%s", tmp.msg);
        }
        o->cp = c;
    }
    copier *c = o->cp;
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        copy_job *j = realloc(c->jobs, cap * sizeof *j);
        if (!j) {
            pthread_mutex_unlock(&c->mu);
            return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", o->path);
        }
        c->jobs = j;
        c->cap = cap;
    }
    c->jobs[c->n++] = (copy_job){src_fd, src_off, dst_off, len};
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return ULC_OK;
}

ulc_status ulc_outfile_flush(ulc_outfile *o, ulc_ctx *ctx) { return flush_buf(o, ctx); }

ulc_status ulc_outfile_skip(ulc_outfile *o, uint64_t len, ulc_ctx *ctx) {
    ULC_TRY(flush_buf(o, ctx));
    if (len && lseek(o->fd, (off_t)len, SEEK_CUR) < 0)
        return ulc_fail(ctx, ULC_ERR_IO, "%s: seek failed: %s", o->path, strerror(errno));
    o->pos += len;
    return ULC_OK;
}

static void outfile_free(ulc_outfile *o) {
    unregister_tmp(o->slot);
    free(o->buf);
    free(o->tmp);
    free(o->path);
    free(o);
}

/* 1 if name is a temporary of ulc's naming: ".NAME.ulc-tmp-XXXXXX". */
static int is_tmp_name(const char *name) {
    const char *t = strstr(name, ".ulc-tmp-");
    return name[0] == '.' && t && t > name + 1 && strlen(t + 9) == 6;
}

/* Removes the temporaries of ulc's naming in dir that no live process holds (their writer
 * keeps an exclusive flock until commit or abort), with a notice for each. */
static void remove_stale_tmps(const char *dir, ulc_ctx *ctx) {
    DIR *d = opendir(dir);
    if (!d) return;
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_tmp_name(e->d_name)) continue;
        int fd = openat(dfd, e->d_name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat a, b;
        if (fstat(fd, &a) == 0 && S_ISREG(a.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            fstatat(dfd, e->d_name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev && unlinkat(dfd, e->d_name, 0) == 0 && ctx && ctx->notes)
            fprintf(ctx->notes, "ulc: removed %s/%s, a temporary file left by an interrupted "
                    "run\n", dir, e->d_name);
        close(fd); /* drops the lock */
    }
    closedir(d);
}

/* Creates the temporary and takes its lock. A cleaner in another process may take the lock
 * between the two and remove the file: then the name no longer leads to our file, and we try
 * another name. */
static int create_tmp(char *tmp, size_t n, const char *dir, const char *base) {
    for (int tries = 0; tries < 16; tries++) {
        snprintf(tmp, n, "%s/.%s.ulc-tmp-XXXXXX", dir, base);
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) return -1;
        struct stat a, b;
        if (flock(fd, LOCK_EX) == 0 && fstat(fd, &a) == 0 && stat(tmp, &b) == 0 &&
            a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            return fd;
        close(fd);
    }
    errno = EAGAIN;
    return -1;
}

ulc_status ulc_outfile_open(const char *path, ulc_outfile **out, ulc_ctx *ctx) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return ulc_fail(ctx, ULC_ERR_IO, "%s: output path is a directory", path);
    if (ctx && ctx->reads) ULC_TRY(ulc_fileset_check_output(ctx->reads, "output", path, ctx));
    ulc_outfile *o = calloc(1, sizeof *o);
    if (!o) return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", path);
    o->fd = -1;
    o->slot = -1;
    o->path = strdup(path);
    char *dir = ulc_path_dirname(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = (dir ? strlen(dir) : 0) + strlen(base) + 32;
    o->tmp = malloc(n);
    o->buf = malloc(OUTBUF_SIZE);
    if (!o->path || !dir || !o->tmp || !o->buf) {
        free(dir);
        outfile_free(o);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", path);
    }
    remove_stale_tmps(dir, ctx);
    o->fd = create_tmp(o->tmp, n, dir, base);
    free(dir);
    if (o->fd < 0) {
        int e = errno;
        outfile_free(o);
        return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot create output file: %s", path, strerror(e));
    }
    o->slot = register_tmp(o->tmp);
    /* mkstemp makes 0600; give the result the permissions a plain create would. */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(o->fd, 0666 & ~um) != 0) { /* not fatal: the file is still correct */
    }
    *out = o;
    return ULC_OK;
}

static ulc_status write_all(ulc_outfile *o, const void *p, size_t n, ulc_ctx *ctx) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(o->fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return ulc_fail(ctx, ULC_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
    return ULC_OK;
}

static ulc_status flush_buf(ulc_outfile *o, ulc_ctx *ctx) {
    if (o->nbuf == 0) return ULC_OK;
    ulc_status s = write_all(o, o->buf, o->nbuf, ctx);
    o->nbuf = 0;
    return s;
}

ulc_status ulc_outfile_write(ulc_outfile *o, const void *p, size_t n, ulc_ctx *ctx) {
    o->pos += n;
    if (n >= OUTBUF_SIZE / 4) { /* big enough to skip the copy into the buffer */
        ULC_TRY(flush_buf(o, ctx));
        return write_all(o, p, n, ctx);
    }
    if (o->nbuf + n > OUTBUF_SIZE) ULC_TRY(flush_buf(o, ctx));
    memcpy(o->buf + o->nbuf, p, n);
    o->nbuf += n;
    return ULC_OK;
}

ulc_status ulc_outfile_copy_from(ulc_outfile *o, int src_fd, uint64_t off, uint64_t len,
                                 ulc_ctx *ctx) {
    ULC_TRY(flush_buf(o, ctx));
    o->pos += len;
    loff_t in_off = (loff_t)off;
    while (len > 0) {
        size_t chunk = len > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)len;
        ssize_t c = copy_file_range(src_fd, &in_off, o->fd, NULL, chunk, 0);
        if (c < 0 && errno == EINTR) continue;
        if (c <= 0) break; /* not supported here, or short source: fall back to pread */
        len -= (uint64_t)c;
    }
    while (len > 0) {
        size_t chunk = len > OUTBUF_SIZE ? OUTBUF_SIZE : (size_t)len;
        ssize_t r = pread(src_fd, o->buf, chunk, in_off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return ulc_fail(ctx, ULC_ERR_IO, "%s: reading source data failed: %s", o->path,
                            r < 0 ? strerror(errno) : "unexpected end of file");
        ULC_TRY(write_all(o, o->buf, (size_t)r, ctx));
        in_off += r;
        len -= (uint64_t)r;
    }
    return ULC_OK;
}

ulc_status ulc_outfile_pad_to(ulc_outfile *o, uint64_t alignment, ulc_ctx *ctx) {
    static const unsigned char zeros[4096];
    while (alignment > 1 && o->pos % alignment) {
        uint64_t need = alignment - o->pos % alignment;
        size_t n = need > sizeof zeros ? sizeof zeros : (size_t)need;
        ULC_TRY(ulc_outfile_write(o, zeros, n, ctx));
    }
    return ULC_OK;
}

uint64_t ulc_outfile_tell(const ulc_outfile *o) { return o->pos; }
const char *ulc_outfile_path(const ulc_outfile *o) { return o->path; }

/* fsync of the directory path's entry lives in, so a rename survives a power cut. */
static int sync_dir_of(const char *path) {
    char *dir = ulc_path_dirname(path);
    if (!dir) return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int r = fsync(fd);
    if (r != 0 && (errno == EINVAL || errno == EROFS)) r = 0; /* not syncable here */
    close(fd);
    return r;
}

ulc_status ulc_outfile_commit(ulc_outfile *o, ulc_ctx *ctx) {
    /* the writes first, under a scratch context: an input that changed names the cause */
    ulc_ctx w;
    ulc_ctx_init_from(&w, ctx);
    ulc_status s = flush_buf(o, &w);
    ulc_status cs = copier_finish(o, s != ULC_OK, s == ULC_OK ? &w : NULL);
    if (s == ULC_OK) s = cs;
    if (s == ULC_OK && fsync(o->fd) != 0 && errno != EINVAL)
        s = ulc_fail(&w, ULC_ERR_IO, "%s: fsync failed: %s", o->path, strerror(errno));
    ulc_status vs = ctx && ctx->reads ? ulc_fileset_verify(ctx->reads, ctx) : ULC_OK;
    if (vs == ULC_OK && s != ULC_OK && ctx) ulc_fail(ctx, s, "%s", w.msg);
    if (vs != ULC_OK) s = vs;
    if (s == ULC_OK && rename(o->tmp, o->path) != 0)
        s = ulc_fail(ctx, ULC_ERR_IO, "%s: cannot rename temporary file into place: %s", o->path,
                     strerror(errno));
    if (s == ULC_OK && sync_dir_of(o->path) != 0)
        s = ulc_fail(ctx, ULC_ERR_IO, "%s: fsync of its directory failed: %s", o->path,
                     strerror(errno));
    if (s != ULC_OK) unlink(o->tmp); /* (after a failed directory sync, o->tmp is gone) */
    if (close(o->fd) != 0 && s == ULC_OK) /* the lock goes with it */
        s = ulc_fail(ctx, ULC_ERR_IO, "%s: close failed: %s", o->path, strerror(errno));
    o->fd = -1;
    outfile_free(o);
    return s;
}

void ulc_outfile_abort(ulc_outfile *o) {
    if (!o) return;
    copier_finish(o, 1, NULL);
    if (o->fd >= 0) close(o->fd);
    unlink(o->tmp);
    outfile_free(o);
}

/* ---- paths --------------------------------------------------------------------------------- */

ulc_status ulc_path_check_writable_dir(const char *what, const char *dir, ulc_ctx *ctx) {
    if (access(dir, W_OK | X_OK) != 0)
        return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot create the %s in this directory: %s", dir,
                        what, strerror(errno));
    return ULC_OK;
}

int ulc_path_within(const char *dir_real, const char *real) {
    size_t n = strlen(dir_real);
    while (n > 1 && dir_real[n - 1] == '/') n--;
    if (n == 1 && dir_real[0] == '/') return real[0] == '/';
    return strncmp(real, dir_real, n) == 0 && (real[n] == '/' || real[n] == '\0');
}

ulc_status ulc_path_confine(const char *dir, const ulc_mapping *m, int allow, ulc_ctx *ctx) {
    if (allow) return ULC_OK;
    char *dreal = realpath(dir, NULL), *real = realpath(m->path, NULL);
    struct stat st;
    ulc_status s = ULC_OK;
    if (!dreal || !real)
        s = ulc_fail(ctx, ULC_ERR_IO, "cannot be resolved: %s", strerror(errno));
    else if (!ulc_path_within(dreal, real))
        s = ulc_fail(ctx, ULC_ERR_INVALID, "resolves to '%s', outside the model's folder '%s' "
                     "(--allow-external-outside allows it)", real, dreal);
    else if (stat(real, &st) != 0 || st.st_dev != m->dev || st.st_ino != m->ino)
        s = ulc_fail(ctx, ULC_ERR_IO, "changed while it was opened ('%s')", real);
    free(dreal);
    free(real);
    return s;
}

int ulc_path_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int ulc_path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

int ulc_path_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *ulc_path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

char *ulc_path_join(const char *dir, const char *rel) {
    if (strcmp(dir, ".") == 0) return strdup(rel);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rel);
    return p;
}

const char *ulc_path_unsafe_reason(const char *rel) {
    if (!rel || !*rel) return "the path is empty";
    if (rel[0] == '/') return "absolute paths are refused";
    if (strchr(rel, '\\')) return "backslashes are refused";
    const char *p = rel;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return "'..' components are refused";
        if (!e) break;
        p = e + 1;
    }
    return NULL;
}
