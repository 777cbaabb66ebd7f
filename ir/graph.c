/* graph.c — construction and mutation of the IR: values, tensors, nodes, use lists, topo sort. */
#include "ir/graph.h"
#include "ir/schema.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

ulc_model *ulc_model_create(void) {
    ulc_model *m = calloc(1, sizeof *m);
    ulc_graph *g = calloc(1, sizeof *g);
    if (!m || !g) goto fail;
    g->arena = ulc_arena_create(0);
    g->by_name = ulc_strmap_create();
    if (!g->arena || !g->by_name) goto fail;
    m->graph = g;
    return m;
fail:
    if (g) {
        ulc_arena_free(g->arena);
        ulc_strmap_free(g->by_name);
    }
    free(g);
    free(m);
    return NULL;
}

void ulc_model_free(ulc_model *m) {
    if (!m) return;
    ulc_graph *g = m->graph;
    if (g) {
        for (size_t i = 0; i < g->maps.len; i++) ulc_mapping_unref(g->maps.items[i]);
        for (size_t i = 0; i < g->sources.len; i++) {
            ulc_tensor_source *src = g->sources.items[i];
            if (src->release) src->release(src->state);
            free(src);
        }
        for (size_t i = 0; i < g->owned.len; i++) free(g->owned.items[i]);
        ulc_ptrvec_clear(&g->sources);
        ulc_ptrvec_clear(&g->maps);
        ulc_ptrvec_clear(&g->owned);
        ulc_ptrvec_clear(&g->values);
        ulc_ptrvec_clear(&g->inputs);
        ulc_ptrvec_clear(&g->outputs);
        ulc_ptrvec_clear(&g->inits);
        ulc_ptrvec_clear(&g->value_info);
        ulc_strmap_free(g->by_name);
        ulc_arena_free(g->arena);
        free(g);
    }
    ulc_ptrvec_clear(&m->lora);
    free(m);
}

int64_t ulc_model_opset(const ulc_model *m, const char *domain) {
    int want_default = ulc_domain_is_default(domain);
    for (int i = 0; i < m->n_opsets; i++) {
        const char *d = m->opsets[i].domain;
        if (want_default ? ulc_domain_is_default(d) : (d && strcmp(d, domain) == 0))
            return m->opsets[i].version;
    }
    /* A model without one (built in code: ONNX files must import it) is at the newest. */
    return want_default ? ULC_ONNX_OPSET_MAX : -1;
}

const char *ulc_model_metadata(const ulc_model *m, const char *key) {
    for (int i = 0; i < m->n_metadata; i++)
        if (m->metadata[i].key && strcmp(m->metadata[i].key, key) == 0) return m->metadata[i].value;
    return NULL;
}

ulc_status ulc_model_add_metadata(ulc_model *m, const char *key, const char *value, ulc_ctx *ctx) {
    if (ulc_model_metadata(m, key)) return ULC_OK;
    ulc_arena *a = m->graph->arena;
    ulc_kv *kv = ulc_arena_calloc(a, (size_t)m->n_metadata + 1, sizeof *kv);
    const char *k = ulc_arena_strdup(a, key), *v = ulc_arena_strdup(a, value);
    if (!kv || !k || !v) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (metadata)");
    if (m->n_metadata) memcpy(kv, m->metadata, (size_t)m->n_metadata * sizeof *kv);
    kv[m->n_metadata].key = k;
    kv[m->n_metadata].value = v;
    m->metadata = kv;
    m->n_metadata++;
    return ULC_OK;
}

ulc_status ulc_model_set_metadata(ulc_model *m, const char *key, const char *value, ulc_ctx *ctx) {
    for (int i = 0; i < m->n_metadata; i++)
        if (m->metadata[i].key && strcmp(m->metadata[i].key, key) == 0) {
            const char *v = ulc_arena_strdup(m->graph->arena, value);
            if (!v) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (metadata)");
            m->metadata[i].value = v;
            return ULC_OK;
        }
    return ulc_model_add_metadata(m, key, value, ctx);
}

const char *ulc_model_reads_file(const ulc_model *m, const char *path) {
    if (m->source_path && ulc_path_same_file(path, m->source_path)) return m->source_path;
    for (size_t i = 0; i < m->graph->maps.len; i++) {
        const ulc_mapping *mp = m->graph->maps.items[i];
        if (ulc_path_same_file(path, mp->path)) return mp->path;
    }
    return NULL;
}

uint64_t ulc_tensor_file_offset(const ulc_tensor *t) {
    ULC_ASSERT(t->storage == ULC_STORAGE_BORROWED && t->map);
    return (uint64_t)((const uint8_t *)t->data - t->map->data);
}

/* ---- values ------------------------------------------------------------------------------- */

static ulc_status nomem(ulc_ctx *ctx, const char *what) {
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", what);
}

ulc_value *ulc_graph_get_value(const ulc_graph *g, const char *name) {
    return name ? ulc_strmap_get(g->by_name, name) : NULL;
}

ulc_value *ulc_graph_add_value(ulc_graph *g, const char *name, ulc_ctx *ctx) {
    if (!name || !*name) {
        ulc_fail(ctx, ULC_ERR_INVALID, "a value needs a non-empty name");
        return NULL;
    }
    if (ulc_graph_get_value(g, name)) {
        ulc_fail(ctx, ULC_ERR_INVALID, "value '%s' is defined twice", name);
        return NULL;
    }
    ulc_value *v = ulc_arena_alloc(g->arena, sizeof *v);
    if (!v || !(v->name = ulc_arena_strdup(g->arena, name))) {
        nomem(ctx, "value");
        return NULL;
    }
    v->rank = -1;
    v->id = (int)g->values.len;
    if (ulc_ptrvec_push(&g->values, v) != 0 || ulc_strmap_put(g->by_name, v->name, v) != 0) {
        nomem(ctx, "value table");
        return NULL;
    }
    return v;
}

ulc_value *ulc_graph_ensure_value(ulc_graph *g, const char *name, ulc_ctx *ctx) {
    ulc_value *v = ulc_graph_get_value(g, name);
    return v ? v : ulc_graph_add_value(g, name, ctx);
}

ulc_status ulc_value_set_shape(ulc_graph *g, ulc_value *v, int rank, const ulc_dim *dims,
                               ulc_ctx *ctx) {
    if (rank < 0) {
        v->rank = -1;
        v->dims = NULL;
        return ULC_OK;
    }
    ulc_dim *d = rank ? ulc_arena_calloc(g->arena, (size_t)rank, sizeof *d) : NULL;
    if (rank && !d) return nomem(ctx, "shape");
    for (int i = 0; i < rank; i++) d[i] = dims[i];
    v->rank = rank;
    v->dims = d;
    return ULC_OK;
}

int ulc_value_num_uses(const ulc_value *v) {
    int n = 0;
    for (const ulc_use *u = v->first_use; u; u = u->next) n++;
    return n;
}

/* ---- tensors ------------------------------------------------------------------------------ */

ulc_tensor *ulc_tensor_new(ulc_graph *g, const char *name, int dtype, int rank,
                           const int64_t *dims, ulc_ctx *ctx) {
    ulc_tensor *t = ulc_arena_alloc(g->arena, sizeof *t);
    if (!t) {
        nomem(ctx, "tensor");
        return NULL;
    }
    t->name = ulc_arena_strdup(g->arena, name);
    t->dtype = dtype;
    t->rank = rank;
    t->numel = 1;
    if (rank > 0) {
        t->dims = ulc_arena_memdup(g->arena, dims, (size_t)rank * sizeof *dims);
        if (!t->dims) {
            nomem(ctx, "tensor dims");
            return NULL;
        }
    }
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) {
            ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s': dimension %d is %lld, expected >= 0",
                     name ? name : "", i, (long long)dims[i]);
            return NULL;
        }
        if (dims[i] && t->numel > UINT64_MAX / (uint64_t)dims[i]) {
            ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s': element count overflows 64 bits",
                     name ? name : "");
            return NULL;
        }
        t->numel *= (uint64_t)dims[i];
    }
    return t;
}

ulc_status ulc_tensor_set_owned(ulc_graph *g, ulc_tensor *t, void *data, size_t nbytes,
                                ulc_ctx *ctx) {
    if (data && ulc_ptrvec_push(&g->owned, data) != 0) {
        free(data);
        return nomem(ctx, "weight list");
    }
    t->storage = ULC_STORAGE_OWNED;
    t->data = data;
    t->nbytes = nbytes;
    t->map = NULL;
    t->source = NULL;
    return ULC_OK;
}

ulc_status ulc_tensor_set_borrowed(ulc_graph *g, ulc_tensor *t, ulc_mapping *map,
                                   const void *data, size_t nbytes, ulc_ctx *ctx) {
    if (ulc_ptrvec_find(&g->maps, map) < 0) {
        if (ulc_ptrvec_push(&g->maps, map) != 0) return nomem(ctx, "mapping list");
        ulc_mapping_ref(map);
    }
    t->storage = ULC_STORAGE_BORROWED;
    t->data = data;
    t->nbytes = nbytes;
    t->map = map;
    t->source = NULL;
    return ULC_OK;
}

ulc_status ulc_tensor_set_lazy(ulc_graph *g, ulc_tensor *t, ulc_tensor_source *source,
                               size_t nbytes, ulc_ctx *ctx) {
    if (ulc_ptrvec_push(&g->sources, source) != 0) {
        if (source->release) source->release(source->state);
        free(source);
        return nomem(ctx, "tensor source list");
    }
    t->storage = ULC_STORAGE_LAZY;
    t->data = NULL;
    t->nbytes = nbytes;
    t->map = NULL;
    t->source = source;
    return ULC_OK;
}

ulc_status ulc_tensor_materialize(ulc_graph *g, ulc_tensor *t, ulc_ctx *ctx) {
    if (t->storage != ULC_STORAGE_LAZY) return ULC_OK;
    void *d = malloc(t->nbytes ? t->nbytes : 1);
    if (!d) return nomem(ctx, t->name ? t->name : "tensor");
    ulc_status s = t->source->read(t->source->state, 0, t->nbytes, d, ctx);
    if (s != ULC_OK) {
        free(d);
        return s;
    }
    t->source = NULL;
    return ulc_tensor_set_owned(g, t, d, t->nbytes, ctx);
}

/* ---- streams ---------------------------------------------------------------------------------
 * LAZY tensors are produced on the caller's thread into a ring of buffers while a writer thread
 * hands earlier bytes to the sink, across tensor boundaries: producing (a merge's arithmetic)
 * and writing (the kernel's copy into the page cache) overlap, and the pipeline does not drain
 * between tensors. The sink and skip run on the writer thread, one call at a time, in order. */
#define STREAM_CHUNK ((size_t)1 << 20)
#define STREAM_SLOTS 4   /* buffers in the ring */
#define STREAM_QUEUE 64  /* items waiting for the writer */

typedef struct stream_item {
    const void *p;   /* bytes to write (not a skip) */
    uint64_t n;
    int slot;        /* the ring buffer holding p, or -1 */
    int skip;        /* skip n bytes instead */
    int end;         /* no more items */
} stream_item;

struct ulc_stream {
    ulc_stream_sink_fn sink;
    ulc_stream_skip_fn skip;
    void *arg;
    int threaded;                 /* 0: every item is done at once on the caller's thread */
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    stream_item q[STREAM_QUEUE];
    int qhead, qlen;
    uint8_t *slot[STREAM_SLOTS];
    size_t cap[STREAM_SLOTS];
    int busy[STREAM_SLOTS];       /* filled and not yet written */
    ulc_status st;                /* the writer's first failure */
    ulc_ctx wctx;                 /* its message */
};

static ulc_status stream_do(ulc_stream *s, const stream_item *it, ulc_ctx *ctx) {
    if (!it->skip) return s->sink(s->arg, it->p, (size_t)it->n, ctx);
    if (!s->skip) return ulc_fail(ctx, ULC_ERR_INTERNAL, "stream: a skip without a skip function");
    return s->skip(s->arg, it->n, ctx);
}

static void *stream_writer_main(void *arg) {
    ulc_stream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->qlen) pthread_cond_wait(&s->cv, &s->mu);
        stream_item it = s->q[s->qhead];
        if (it.end) break;
        int failed = s->st != ULC_OK;
        pthread_mutex_unlock(&s->mu);
        ulc_status st = failed ? ULC_OK : stream_do(s, &it, &s->wctx);
        pthread_mutex_lock(&s->mu);
        if (st != ULC_OK) s->st = st;
        if (it.slot >= 0) s->busy[it.slot] = 0;
        s->qhead = (s->qhead + 1) % STREAM_QUEUE;
        s->qlen--;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The writer's failure as the caller's error (its own message). */
static ulc_status stream_failed(ulc_stream *s, ulc_ctx *ctx) {
    return ulc_fail(ctx, s->st, "%s", ulc_ctx_message(&s->wctx));
}

/* Queues an item (threaded), or does it now. */
static ulc_status stream_push(ulc_stream *s, stream_item it, ulc_ctx *ctx) {
    if (!s->threaded) return it.end ? ULC_OK : stream_do(s, &it, ctx);
    pthread_mutex_lock(&s->mu);
    while (s->qlen == STREAM_QUEUE && s->st == ULC_OK) pthread_cond_wait(&s->cv, &s->mu);
    ulc_status st = s->st;
    if (st == ULC_OK || it.end) { /* the end always goes in: the writer must stop */
        while (s->qlen == STREAM_QUEUE) pthread_cond_wait(&s->cv, &s->mu);
        s->q[(s->qhead + s->qlen) % STREAM_QUEUE] = it;
        s->qlen++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return st == ULC_OK ? ULC_OK : stream_failed(s, ctx);
}

ulc_status ulc_stream_open(ulc_stream_sink_fn sink, ulc_stream_skip_fn skip, void *arg,
                           ulc_stream **out, ulc_ctx *ctx) {
    ulc_stream *s = calloc(1, sizeof *s);
    if (!s) return nomem(ctx, "stream");
    s->sink = sink;
    s->skip = skip;
    s->arg = arg;
    ulc_ctx_init(&s->wctx);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->threaded = pthread_create(&s->tid, NULL, stream_writer_main, s) == 0; /* else: in turn */
    *out = s;
    return ULC_OK;
}

ulc_status ulc_stream_skip(ulc_stream *s, uint64_t n, ulc_ctx *ctx) {
    return n ? stream_push(s, (stream_item){NULL, n, -1, 1, 0}, ctx) : ULC_OK;
}

/* A free ring buffer of at least n bytes (waits for the writer to free one). */
static ulc_status stream_slot(ulc_stream *s, size_t n, int *slot, ulc_ctx *ctx) {
    int k = -1;
    if (s->threaded) {
        pthread_mutex_lock(&s->mu);
        for (;;) {
            for (int i = 0; i < STREAM_SLOTS && k < 0; i++)
                if (!s->busy[i]) k = i;
            if (k >= 0 || s->st != ULC_OK) break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        ulc_status st = s->st;
        pthread_mutex_unlock(&s->mu);
        if (st != ULC_OK) return stream_failed(s, ctx);
    } else {
        k = 0;
    }
    if (s->cap[k] < n) {
        free(s->slot[k]);
        s->cap[k] = 0;
        if (!(s->slot[k] = malloc(n))) return nomem(ctx, "stream buffer");
        s->cap[k] = n;
    }
    *slot = k;
    return ULC_OK;
}

ulc_status ulc_stream_put(ulc_stream *s, const ulc_tensor *t, ulc_ctx *ctx) {
    if (t->nbytes == 0) return ULC_OK;
    if (t->storage != ULC_STORAGE_LAZY) { /* in memory until the graph goes: written from there */
        if (!t->data)
            return ulc_fail(ctx, ULC_ERR_INVALID, "tensor '%s' has no data to write",
                            t->name ? t->name : "");
        return stream_push(s, (stream_item){t->data, t->nbytes, -1, 0, 0}, ctx);
    }
    size_t g = t->source->granule ? t->source->granule : 1;
    size_t chunk = STREAM_CHUNK > g ? STREAM_CHUNK / g * g : g;
    for (uint64_t off = 0; off < t->nbytes; off += chunk) {
        size_t n = t->nbytes - off < chunk ? (size_t)(t->nbytes - off) : chunk;
        int k = 0;
        ULC_TRY(stream_slot(s, n, &k, ctx));
        ULC_TRY(t->source->read(t->source->state, off, n, s->slot[k], ctx));
        if (s->threaded) {
            pthread_mutex_lock(&s->mu);
            s->busy[k] = 1;
            pthread_mutex_unlock(&s->mu);
        }
        ULC_TRY(stream_push(s, (stream_item){s->slot[k], n, k, 0, 0}, ctx));
    }
    return ULC_OK;
}

ulc_status ulc_stream_close(ulc_stream *s, ulc_ctx *ctx) {
    if (!s) return ULC_OK;
    ulc_status st = ULC_OK;
    if (s->threaded) {
        stream_push(s, (stream_item){NULL, 0, -1, 0, 1}, NULL);
        pthread_join(s->tid, NULL);
        if (s->st != ULC_OK && ctx) st = stream_failed(s, ctx);
        else st = s->st;
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    for (int i = 0; i < STREAM_SLOTS; i++) free(s->slot[i]);
    free(s);
    return st;
}

ulc_status ulc_tensor_stream(const ulc_tensor *t, ulc_stream_sink_fn sink, void *arg, ulc_ctx *ctx) {
    if (t->nbytes == 0) return ULC_OK;
    size_t g = t->storage == ULC_STORAGE_LAZY && t->source->granule ? t->source->granule : 1;
    if (t->storage != ULC_STORAGE_LAZY) return sink(arg, t->data, t->nbytes, ctx);
    if (t->nbytes <= (STREAM_CHUNK > g ? STREAM_CHUNK / g * g : g)) { /* one chunk: in turn */
        void *buf = malloc(t->nbytes);
        if (!buf) return nomem(ctx, "stream buffer");
        ulc_status s = t->source->read(t->source->state, 0, t->nbytes, buf, ctx);
        if (s == ULC_OK) s = sink(arg, buf, t->nbytes, ctx);
        free(buf);
        return s;
    }
    ulc_stream *s = NULL;
    ULC_TRY(ulc_stream_open(sink, NULL, arg, &s, ctx));
    ulc_status st = ulc_stream_put(s, t, ctx);
    ulc_status cs = ulc_stream_close(s, st == ULC_OK ? ctx : NULL);
    return st != ULC_OK ? st : cs;
}

ulc_status ulc_value_set_init(ulc_graph *g, ulc_value *v, ulc_tensor *t, ulc_ctx *ctx) {
    if (v->flags & ULC_VALUE_INITIALIZER)
        return ulc_fail(ctx, ULC_ERR_INVALID, "initializer '%s' is defined twice", v->name);
    if (ulc_ptrvec_push(&g->inits, v) != 0) return nomem(ctx, "initializer list");
    v->init = t;
    v->flags |= ULC_VALUE_INITIALIZER;
    /* A value described by value_info/input keeps that description; otherwise the tensor's. */
    if (!(v->flags & ULC_VALUE_HAS_TYPE)) {
        v->flags |= ULC_VALUE_HAS_TYPE;
        v->dtype = t->dtype;
        ulc_dim *d = t->rank ? ulc_arena_calloc(g->arena, (size_t)t->rank, sizeof *d) : NULL;
        if (t->rank && !d) return nomem(ctx, "shape");
        for (int i = 0; i < t->rank; i++) d[i].value = t->dims[i];
        v->rank = t->rank;
        v->dims = d;
    }
    return ULC_OK;
}

/* ---- nodes -------------------------------------------------------------------------------- */

ulc_node *ulc_graph_add_node(ulc_graph *g, const char *domain, const char *op_type,
                             const char *name, int n_in, int n_out, int n_attr_cap,
                             ulc_ctx *ctx) {
    ulc_node *n = ulc_arena_alloc(g->arena, sizeof *n);
    if (!n) goto oom;
    n->domain = ulc_arena_strdup(g->arena, domain);
    n->op_type = ulc_arena_strdup(g->arena, op_type ? op_type : "");
    n->name = ulc_arena_strdup(g->arena, name);
    if (!n->op_type || (domain && !n->domain) || (name && !n->name)) goto oom;
    n->op = ulc_op_lookup(domain, op_type);
    n->n_inputs = n_in;
    n->n_outputs = n_out;
    if (n_in && !(n->inputs = ulc_arena_calloc(g->arena, (size_t)n_in, sizeof *n->inputs)))
        goto oom;
    if (n_out && !(n->outputs = ulc_arena_calloc(g->arena, (size_t)n_out, sizeof *n->outputs)))
        goto oom;
    if (n_attr_cap && !(n->attrs = ulc_arena_calloc(g->arena, (size_t)n_attr_cap + 1,
                                                    sizeof *n->attrs)))
        goto oom;
    /* attrs[cap] is a sentinel with name NULL marking capacity; see ulc_node_add_attr. */
    if (n_attr_cap) n->attrs[n_attr_cap].type = -1;
    for (int i = 0; i < n_in; i++) {
        n->inputs[i].node = n;
        n->inputs[i].slot = i;
    }
    n->id = g->next_node_id++;
    n->prev = g->last;
    if (g->last) g->last->next = n;
    else g->first = n;
    g->last = n;
    g->n_nodes++;
    return n;
oom:
    nomem(ctx, "node");
    return NULL;
}

static void unlink_use(ulc_use *u) {
    if (!u->value) return;
    if (u->prev) u->prev->next = u->next;
    else u->value->first_use = u->next;
    if (u->next) u->next->prev = u->prev;
    u->next = u->prev = NULL;
    u->value = NULL;
}

void ulc_node_set_input(ulc_node *n, int i, ulc_value *v) {
    ULC_ASSERT(i >= 0 && i < n->n_inputs);
    ulc_use *u = &n->inputs[i];
    unlink_use(u);
    if (!v) return;
    u->value = v;
    u->prev = NULL;
    u->next = v->first_use;
    if (v->first_use) v->first_use->prev = u;
    v->first_use = u;
}

ulc_status ulc_node_set_output(ulc_node *n, int i, ulc_value *v, ulc_ctx *ctx) {
    ULC_ASSERT(i >= 0 && i < n->n_outputs);
    if (n->outputs[i]) {
        n->outputs[i]->producer = NULL;
        n->outputs[i] = NULL;
    }
    if (!v) return ULC_OK;
    if (v->producer) {
        char a[128], b[128];
        return ulc_fail(ctx, ULC_ERR_INVALID, "value '%s' is produced by two nodes: %s and %s",
                        v->name, ulc_node_label(v->producer, a, sizeof a),
                        ulc_node_label(n, b, sizeof b));
    }
    v->producer = n;
    v->producer_slot = i;
    n->outputs[i] = v;
    return ULC_OK;
}

ulc_attr *ulc_node_add_attr(ulc_node *n, const char *name) {
    if (!n->attrs || n->attrs[n->n_attrs].type == -1) return NULL;
    ulc_attr *a = &n->attrs[n->n_attrs++];
    a->name = name;
    return a;
}

const ulc_attr *ulc_node_attr(const ulc_node *n, const char *name) {
    for (int i = 0; i < n->n_attrs; i++)
        if (n->attrs[i].name && strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

void ulc_graph_remove_node(ulc_graph *g, ulc_node *n) {
    for (int i = 0; i < n->n_inputs; i++) unlink_use(&n->inputs[i]);
    for (int i = 0; i < n->n_outputs; i++)
        if (n->outputs[i]) n->outputs[i]->producer = NULL;
    if (n->prev) n->prev->next = n->next;
    else g->first = n->next;
    if (n->next) n->next->prev = n->prev;
    else g->last = n->prev;
    n->prev = n->next = NULL;
    g->n_nodes--;
}

const char *ulc_node_label(const ulc_node *n, char *buf, size_t size) {
    if (n->name && *n->name) snprintf(buf, size, "node '%s' (%s)", n->name, n->op_type);
    else snprintf(buf, size, "node #%d (%s)", n->id, n->op_type);
    return buf;
}

/* Kahn's algorithm, taking ready nodes in their current order so sorted input stays as is. */
ulc_status ulc_graph_toposort(ulc_graph *g, ulc_ctx *ctx) {
    int n = g->n_nodes;
    if (n == 0) return ULC_OK;
    ulc_node **order = malloc((size_t)n * sizeof *order);
    int *pending = calloc((size_t)g->next_node_id, sizeof *pending);
    ulc_node **pos = calloc((size_t)g->next_node_id, sizeof *pos);
    ulc_node **ready = malloc((size_t)n * sizeof *ready);
    if (!order || !pending || !pos || !ready) {
        free(order), free(pending), free(pos), free(ready);
        return nomem(ctx, "topological sort");
    }
    int idx = 0;
    for (ulc_node *x = g->first; x; x = x->next) {
        order[idx++] = x;
        for (int i = 0; i < x->n_inputs; i++) {
            ulc_value *v = x->inputs[i].value;
            if (v && v->producer && v->producer != x) pending[x->id]++;
        }
    }
    /* ready is a min-heap on original position would be ideal; a sorted insertion into a small
     * array keeps source order and is fine for graph sizes we meet. Use original index. */
    int *rank = calloc((size_t)g->next_node_id, sizeof *rank);
    if (!rank) {
        free(order), free(pending), free(pos), free(ready);
        return nomem(ctx, "topological sort");
    }
    for (int i = 0; i < n; i++) rank[order[i]->id] = i;
    int nready = 0, out = 0;
    for (int i = 0; i < n; i++)
        if (pending[order[i]->id] == 0) ready[nready++] = order[i];
    ulc_node **result = pos; /* reuse: result list has n entries <= next_node_id */
    while (nready > 0) {
        /* take the ready node with the smallest source position */
        int best = 0;
        for (int i = 1; i < nready; i++)
            if (rank[ready[i]->id] < rank[ready[best]->id]) best = i;
        ulc_node *x = ready[best];
        ready[best] = ready[--nready];
        result[out++] = x;
        for (int o = 0; o < x->n_outputs; o++) {
            ulc_value *v = x->outputs[o];
            if (!v) continue;
            for (ulc_use *u = v->first_use; u; u = u->next)
                if (u->node != x && --pending[u->node->id] == 0) ready[nready++] = u->node;
        }
    }
    ulc_status s = ULC_OK;
    if (out != n) {
        ulc_node *stuck = NULL;
        for (int i = 0; i < n && !stuck; i++)
            if (pending[order[i]->id] > 0) stuck = order[i];
        char b[128];
        s = ulc_fail(ctx, ULC_ERR_INVALID, "the graph has a cycle through %s",
                     stuck ? ulc_node_label(stuck, b, sizeof b) : "?");
    } else {
        g->first = result[0];
        for (int i = 0; i < n; i++) {
            result[i]->prev = i ? result[i - 1] : NULL;
            result[i]->next = i + 1 < n ? result[i + 1] : NULL;
        }
        g->last = result[n - 1];
    }
    free(order), free(pending), free(pos), free(ready), free(rank);
    return s;
}
