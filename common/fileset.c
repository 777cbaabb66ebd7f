/* fileset.c — the files one job reads: the output check and the change check (fileset.h). */
#include "common/fileset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ulc_fileset_begin(ulc_fileset *s, int hash, ulc_ctx *ctx) {
    memset(s, 0, sizeof *s);
    s->hash = hash;
    s->prev = ctx->reads;
    ctx->reads = s;
}

void ulc_fileset_tag(ulc_fileset *s, const char *role, int replaceable) {
    s->tag = role;
    s->tag_replaceable = replaceable;
}

static ulc_status add(ulc_fileset *s, const char *role, const char *path, dev_t dev, ino_t ino,
                      ulc_mapping *m, ulc_ctx *ctx) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        ulc_fileset_entry *v = realloc(s->v, cap * sizeof *v);
        if (!v) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (files read)");
        s->v = v;
        s->cap = cap;
    }
    ulc_fileset_entry *e = &s->v[s->n];
    memset(e, 0, sizeof *e);
    e->path = strdup(path);
    e->role = strdup(s->tag ? s->tag : role);
    if (!e->path || !e->role) {
        free(e->path);
        free(e->role);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (files read)");
    }
    e->dev = dev;
    e->ino = ino;
    e->replaceable = s->tag_replaceable;
    e->weights = role && strcmp(role, "external data file") == 0;
    e->map = ulc_mapping_ref(m);
    for (size_t i = 0; m && s->hash && i < s->n; i++) { /* the same file mapped again */
        const ulc_fileset_entry *o = &s->v[i];
        if (o->hashed && o->map && o->dev == dev && o->ino == ino && o->map->size == m->size &&
            !memcmp(&o->map->mtime, &m->mtime, sizeof m->mtime)) {
            memcpy(e->sha, o->sha, sizeof e->sha);
            e->hashed = 1;
        }
    }
    if (m && s->hash && !e->hashed) { /* the bytes as mapped now: the bytes the job reads */
        ulc_sha256_buf_hex(m->data, m->size, e->sha);
        e->hashed = 1;
    }
    s->n++;
    return ULC_OK;
}

ulc_status ulc_fileset_add_mapping(ulc_fileset *s, const char *role, ulc_mapping *m, ulc_ctx *ctx) {
    return add(s, role, m->path, m->dev, m->ino, m, ctx);
}

ulc_status ulc_fileset_add_path(ulc_fileset *s, const char *role, const char *path, ulc_ctx *ctx) {
    struct stat st;
    if (!path || stat(path, &st) != 0) return ULC_OK;
    return add(s, role, path, st.st_dev, st.st_ino, NULL, ctx);
}

ulc_status ulc_fileset_check_output(const ulc_fileset *s, const char *what, const char *out,
                                    ulc_ctx *ctx) {
    struct stat st;
    if (!s || stat(out, &st) != 0) return ULC_OK; /* a new file aliases nothing */
    for (size_t i = 0; i < s->n; i++) {
        const ulc_fileset_entry *e = &s->v[i];
        if (e->dev != st.st_dev || e->ino != st.st_ino || (s->in_place && e->replaceable)) continue;
        const char *link = strcmp(out, e->path) ? " (the same file)" : "";
        const char *opt = s->in_place_option ? " (use --in-place)" : "";
        if (e->replaceable && e->weights)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: refusing to overwrite '%s'%s, which "
                            "the input model reads its weights from%s", out, e->path, link, opt);
        if (e->replaceable)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: refusing to overwrite the input model: "
                            "the %s is the input model '%s'%s%s", out, what, e->path, link, opt);
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: the %s would overwrite an input: the %s "
                        "'%s'%s; write it under another name", out, what, e->role, e->path, link);
    }
    return ULC_OK;
}

static int ts_eq(struct timespec a, struct timespec b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* Why m's file is no longer what was mapped, or NULL. */
static const char *change_of(const ulc_mapping *m, char *buf, size_t n) {
    if (__atomic_load_n(&m->changed, __ATOMIC_ACQUIRE)) return "it was truncated";
    struct stat st;
    if (m->fd < 0 || fstat(m->fd, &st) != 0) return NULL;
    if ((size_t)st.st_size != m->size) {
        snprintf(buf, n, "it has %lld bytes, it had %zu", (long long)st.st_size, m->size);
        return buf;
    }
    /* a rename over it or its deletion changes ctime and the link count, not the bytes */
    if (!ts_eq(st.st_mtim, m->mtime) || (!ts_eq(st.st_ctim, m->ctime) && st.st_nlink == m->nlink))
        return "it was modified";
    return NULL;
}

ulc_status ulc_fileset_verify(const ulc_fileset *s, ulc_ctx *ctx) {
    for (size_t i = 0; s && i < s->n; i++) {
        const ulc_fileset_entry *e = &s->v[i];
        char buf[96];
        const char *why = e->map ? change_of(e->map, buf, sizeof buf) : NULL;
        if (why)
            return ulc_fail(ctx, ULC_ERR_IO, "%s: the %s changed while ulc was reading it (%s); "
                            "nothing was written", e->path, e->role, why);
    }
    return ULC_OK;
}

ulc_status ulc_fileset_end(ulc_fileset *s, ulc_status st, ulc_ctx *ctx) {
    ulc_ctx v;
    ulc_ctx_init(&v);
    if (ulc_fileset_verify(s, &v) != ULC_OK) { /* the real cause of whatever failed */
        ulc_ctx_clear(ctx);
        st = ulc_fail(ctx, v.status, "%s", v.msg);
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].path);
        free(s->v[i].role);
        ulc_mapping_unref(s->v[i].map);
    }
    free(s->v);
    ctx->reads = s->prev;
    memset(s, 0, sizeof *s);
    return st;
}

ulc_status ulc_fileset_sha256(ulc_fileset *s, const char *path, const char *role,
                              char hex[ULC_SHA256_HEX], ulc_ctx *ctx) {
    for (size_t i = 0; i < s->n; i++) {
        ulc_fileset_entry *e = &s->v[i];
        if (!(e->map || e->hashed) || strcmp(e->path, path) != 0) continue;
        if (!e->hashed) {
            ulc_sha256_buf_hex(e->map->data, e->map->size, e->sha);
            e->hashed = 1;
        }
        memcpy(hex, e->sha, ULC_SHA256_HEX);
        return ULC_OK;
    }
    /* not read through the set (a spec, parsed before the job): its bytes now, remembered; it
     * is read whole, so its later changes do not concern the job */
    ulc_mapping *m = NULL;
    ulc_ctx sub;
    ulc_ctx_init_from(&sub, ctx);
    sub.reads = NULL;
    if (ulc_mapping_open(path, role, &m, &sub) != ULC_OK) return ulc_fail(ctx, sub.status, "%s", sub.msg);
    const char *tag = s->tag;
    int rep = s->tag_replaceable;
    ulc_fileset_tag(s, role, 0);
    ulc_status st = add(s, role, path, m->dev, m->ino, NULL, ctx);
    ulc_fileset_tag(s, tag, rep);
    if (st == ULC_OK) {
        ulc_fileset_entry *e = &s->v[s->n - 1];
        ulc_sha256_buf_hex(m->data, m->size, e->sha);
        e->hashed = 1;
        memcpy(hex, e->sha, ULC_SHA256_HEX);
    }
    ulc_mapping_unref(m);
    return st;
}

ulc_status ulc_file_sha256(const char *path, const char *role, char hex[ULC_SHA256_HEX],
                           ulc_ctx *ctx) {
    if (ctx && ctx->reads) return ulc_fileset_sha256(ctx->reads, path, role, hex, ctx);
    return ulc_sha256_file(path, hex, ctx);
}
