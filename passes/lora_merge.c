/* lora_merge.c — see lora_merge.h for the math. */
#include "passes/lora_merge.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/strmap.h"
#include "passes/lora_merge_kernels.h"
#include "runtime/runtime.h"

#define PREFIX "base_model.model."

typedef enum kind { K_LINEAR, K_CONV, K_EMBED } kind;

typedef struct module {
    const char *name;
    const ulc_tensor *a, *b;
    const ulc_tensor *mag;    /* DoRA's lora_magnitude_vector, or NULL */
    const ulc_tensor *bias_b; /* lora_B.bias (lora_bias), or NULL */
    int embedding;      /* lora_embedding_A/B */
    /* resolved */
    ulc_value *base;
    kind kind;
    int transposed;
    double scale;
    ulc_value *bias;    /* the base layer's bias lora_B.bias adds to */
    struct module *next;
} module;

typedef struct replacement {
    const char *name;   /* base tensor name (PEFT's ".base_layer" removed) */
    const char *key;    /* as stored in the adapter */
    const ulc_tensor *t;
    ulc_value *base;
    int tied;           /* names the (unstored) tied output embedding */
    int transposed;     /* the base stores it [in, out] (an ONNX MatMul copy) */
    int noop;           /* identical to the base: nothing to do */
    struct replacement *next;
} replacement;

void ulc_lora_merge_report_clear(ulc_lora_merge_report *r) {
    free(r->entries);
    memset(r, 0, sizeof *r);
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static int is_float_dtype(int dt) { return dt == ULC_DT_F32 || dt == ULC_DT_F16 || dt == ULC_DT_BF16; }

static float load(const ulc_tensor *t, uint64_t i) {
    const uint8_t *p = t->data;
    if (t->dtype == ULC_DT_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->dtype == ULC_DT_F16 ? ulc_f16_to_f32(h) : ulc_bf16_to_f32(h);
}

/* Stores f rounded to dt; returns the stored value read back as float. */
static float store(uint8_t *p, int dt, uint64_t i, float f) {
    if (dt == ULC_DT_F32) {
        memcpy(p + 4 * i, &f, 4);
        return f;
    }
    uint16_t h = dt == ULC_DT_F16 ? ulc_f32_to_f16(f) : ulc_f32_to_bf16(f);
    memcpy(p + 2 * i, &h, 2);
    return dt == ULC_DT_F16 ? ulc_f16_to_f32(h) : ulc_bf16_to_f32(h);
}

/* See lora_merge.h. */
char *ulc_lora_scope_module(const char *node) {
    if (!node || node[0] != '/') return NULL;
    const char *last = strrchr(node, '/');
    if (last == node) return NULL; /* "/Op": no module */
    char *out = malloc((size_t)(last - node) + 1);
    if (!out) return NULL;
    size_t o = 0, prevlen = 0;
    const char *prev = NULL;
    for (const char *p = node + 1; p <= last;) {
        const char *e = strchr(p, '/'); /* never past last */
        size_t k = (size_t)(e - p), skip = 0;
        if (k == 0) { /* "//": not a torch scope */
            free(out);
            return NULL;
        }
        if (prev && k > prevlen + 1 && strncmp(p, prev, prevlen) == 0 && p[prevlen] == '.')
            skip = prevlen + 1; /* "layer1/layer1.0": child 0 of layer1 */
        if (o) out[o++] = '.';
        memcpy(out + o, p + skip, k - skip);
        o += k - skip;
        prev = p; /* a child repeats its parent's part as written */
        prevlen = k;
        p = e + 1;
    }
    out[o] = 0;
    return out;
}

/* The initializer "m.leaf", or the unique one ending in ".m.leaf" (a wrapper's prefix); NULL
 * when there is none, and NULL with an error in ctx when several end so. */
static ulc_value *init_named(ulc_graph *g, const char *m, const char *leaf, ulc_ctx *ctx) {
    size_t n = strlen(m) + strlen(leaf) + 3;
    char *suffix = malloc(n);
    if (!suffix) {
        ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(suffix, n, ".%s.%s", m, leaf);
    ulc_value *v = ulc_graph_get_value(g, suffix + 1);
    if (v && !(v->flags & ULC_VALUE_INITIALIZER)) v = NULL;
    int hits = 0;
    ulc_value *last = NULL;
    for (size_t i = 0; !v && i < g->inits.len; i++)
        if (ends_with(((ulc_value *)g->inits.items[i])->name, suffix))
            last = g->inits.items[i], hits++;
    if (hits > 1) {
        ulc_fail(ctx, ULC_ERR_INVALID, "module '%s': %d initializers end in '%s'; which one the "
                 "adapter means is ambiguous", m, hits, suffix);
        last = NULL;
    }
    free(suffix);
    return v ? v : last;
}

ulc_value *ulc_lora_find_base(ulc_graph *g, const char *m, int *via_node, int *transposed,
                              ulc_ctx *ctx) {
    *via_node = 0;
    *transposed = 0;
    ulc_value *v = init_named(g, m, "weight", ctx);
    if (!v && ctx->status != ULC_OK) return NULL;
    size_t n = strlen(m) + 16;
    char *suffix = v ? NULL : malloc(n + 1);
    if (!v && !suffix) {
        ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (!v) {
        /* torch names nodes by module scope: "/m/transformer/h.0/attn/c_attn/Gemm". With '/'
         * read as '.', the scope of M appears as ".M." inside the node name. */
        snprintf(suffix, n + 1, ".%s.", m);
        ulc_node *found = NULL;
        for (ulc_node *x = g->first; x; x = x->next) {
            if (!x->name || (x->op != ULC_OP_MatMul && x->op != ULC_OP_Gemm) || x->n_inputs < 2)
                continue;
            ulc_value *w = x->inputs[1].value;
            if (!w || !(w->flags & ULC_VALUE_INITIALIZER)) continue;
            size_t k = strlen(x->name);
            char *dotted = malloc(k + 2);
            if (!dotted) break;
            dotted[0] = '.';
            for (size_t j = 0; j <= k; j++) dotted[j + 1] = x->name[j] == '/' ? '.' : x->name[j];
            int hit = strstr(dotted, suffix) != NULL;
            if (!hit) {
                /* the scope as module names: "/mlp/mlp.0/MatMul" is module "mlp.0" */
                char *sm = ulc_lora_scope_module(x->name);
                if (sm) {
                    snprintf(dotted, k + 2, ".%s.", sm);
                    hit = strstr(dotted, suffix) != NULL;
                }
                free(sm);
            }
            if (hit) {
                if (found && found->inputs[1].value != w) {
                    ulc_fail(ctx, ULC_ERR_INVALID, "module '%s': several MatMul/Gemm nodes in its "
                             "scope ('%s', '%s'); which weight the adapter means is ambiguous",
                             m, found->name, x->name);
                    free(dotted), free(suffix);
                    return NULL;
                }
                found = x;
            }
            free(dotted);
        }
        if (found) {
            v = found->inputs[1].value;
            *via_node = 1;
            const ulc_attr *tb = ulc_node_attr(found, "transB");
            *transposed = found->op == ULC_OP_MatMul || !(tb && tb->i);
        }
    }
    free(suffix);
    return v;
}

static ulc_status shape_error(const module *md, const char *why, ulc_ctx *ctx) {
    const ulc_tensor *w = md->base->init;
    char shp[128];
    size_t k = 0;
    for (int i = 0; i < w->rank && k < sizeof shp; i++)
        k += (size_t)snprintf(shp + k, sizeof shp - k, "%s%lld", i ? "," : "", (long long)w->dims[i]);
    return ulc_fail(ctx, ULC_ERR_INVALID,
                    "module '%s': lora_A [%lld,%lld%s] and lora_B [%lld,%lld%s] do not fit base "
                    "tensor '%s' [%s]: %s", md->name, (long long)md->a->dims[0],
                    (long long)md->a->dims[1], md->a->rank > 2 ? ",…" : "",
                    (long long)md->b->dims[0], (long long)md->b->dims[1],
                    md->b->rank > 2 ? ",…" : "", md->base->name, shp, why);
}

/* How the graph reads w: 1 as MatMul's B or Gemm's B without transB ([in, out]), 0 as Gemm's
 * B with transB ([out, in]), -1 when no node says. */
static int consumer_layout(const ulc_value *w) {
    for (const ulc_use *u = w->first_use; u; u = u->next) {
        if (u->slot != 1) continue;
        if (u->node->op == ULC_OP_MatMul) return 1;
        if (u->node->op == ULC_OP_Gemm) {
            const ulc_attr *tb = ulc_node_attr(u->node, "transB");
            return (tb && tb->i) ? 0 : 1;
        }
    }
    return -1;
}

static int arch_layout(const char *mod, const char *const *conv1d) {
    if (!conv1d) return -1;
    for (; *conv1d; conv1d++) {
        size_t n = strlen(mod), k = strlen(*conv1d);
        if (n >= k && strcmp(mod + n - k, *conv1d) == 0 && (n == k || mod[n - k - 1] == '.'))
            return 1;
    }
    return 0;
}

/* Decides the module's kind and layout from the shapes (see lora_merge.h); hint settles
 * square weights (-1: unknown, then the config's fan_in_fan_out). */
static ulc_status resolve_layout(module *md, const ulc_lora_config *cfg, int via_node,
                                 int node_transposed, int hint, ulc_ctx *ctx) {
    const ulc_tensor *a = md->a, *b = md->b, *w = md->base->init;
    if (md->embedding) {
        /* A [r, num], B [dim, r] -> W [num, dim] */
        if (a->rank != 2 || b->rank != 2) return shape_error(md, "embedding factors must be 2-D", ctx);
        if (a->dims[0] != b->dims[1]) return shape_error(md, "A/B rank mismatch", ctx);
        if (w->rank != 2 || w->dims[0] != a->dims[1] || w->dims[1] != b->dims[0])
            return shape_error(md, "expected the embedding [num, dim] = [A cols, B rows]", ctx);
        md->kind = K_EMBED;
        return ULC_OK;
    }
    if (a->rank >= 3) {
        /* A [r, in, k...], B [out, r, 1...] -> W [out, in, k...] (Conv2d: k = kh, kw) */
        int ones = b->rank == a->rank;
        for (int i = 2; ones && i < b->rank; i++) ones = b->dims[i] == 1;
        if (!ones) return shape_error(md, "conv lora_B must be [out, r, 1, 1]", ctx);
        if (a->dims[0] != b->dims[1]) return shape_error(md, "A/B rank mismatch", ctx);
        int fits = w->rank == a->rank && w->dims[0] == b->dims[0];
        for (int i = 1; fits && i < a->rank; i++) fits = w->dims[i] == a->dims[i];
        if (!fits)
            return shape_error(md, "expected a conv weight [B rows, A cols, kh, kw] (grouped "
                               "convolutions are not supported)", ctx);
        md->kind = K_CONV;
        return ULC_OK;
    }
    if (a->rank != 2 || b->rank != 2) return shape_error(md, "expected 2-D (or conv 4-D) factors", ctx);
    if (a->dims[0] != b->dims[1]) return shape_error(md, "A/B rank mismatch", ctx);
    int64_t out = b->dims[0], in = a->dims[1];
    if (w->rank != 2) return shape_error(md, "the base tensor is not 2-D", ctx);
    int fits_normal = w->dims[0] == out && w->dims[1] == in;
    int fits_t = w->dims[0] == in && w->dims[1] == out;
    md->kind = K_LINEAR;
    if (via_node) {
        md->transposed = node_transposed;
        if (!(node_transposed ? fits_t : fits_normal))
            return shape_error(md, "the node's weight layout does not match", ctx);
    } else if (fits_normal && fits_t) {
        md->transposed = hint >= 0 ? hint : cfg->fan_in_fan_out; /* square */
    } else if (fits_normal || fits_t) {
        md->transposed = fits_t;
    } else {
        return shape_error(md, "expected [out, in] or, for Conv1D, [in, out]", ctx);
    }
    return ULC_OK;
}

static ulc_status add_untied_copy(ulc_graph *g, const char *out_name, const ulc_value *src,
                                  ulc_value **made, ulc_ctx *ctx) {
    const ulc_tensor *t = src->init;
    ulc_tensor *c = ulc_tensor_new(g, out_name, t->dtype, t->rank, t->dims, ctx);
    if (!c) return ctx->status;
    void *d = malloc(t->nbytes ? t->nbytes : 1);
    if (!d) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    memcpy(d, t->data, t->nbytes);
    ULC_TRY(ulc_tensor_set_owned(g, c, d, t->nbytes, ctx));
    ulc_value *v = ulc_graph_add_value(g, out_name, ctx);
    if (!v) return ctx->status;
    ULC_TRY(ulc_value_set_init(g, v, c, ctx));
    *made = v;
    return ULC_OK;
}


#define DELTA_ROWS ULC_MERGE_DELTA_ROWS

static void load_row(const ulc_tensor *t, uint64_t at, uint64_t n, float *dst) {
    ulc_merge_load(t->data, t->dtype, at, n, dst);
}

/* A merged tensor, produced on demand: row i is base[i] + scale * sum_q U[i][q] V[q][:],
 * rounded once to the base dtype. The base bytes stay alive with the graph (its mappings and
 * owned buffers outlive every source). */
typedef struct merge_source {
    const uint8_t *base;
    int dtype;
    size_t esize;
    float *U, *V;
    uint64_t r, n, rows;
    float scale;
    int threads;
    const char *module, *tensor;
    ulc_lora_merge_report *report; /* entry `index` gets max |delta| when rows are produced */
    int index;
    float *dora;   /* DoRA: the factor m / ||W + dW|| per output feature, or NULL */
    int dora_cols; /* 1: output features are the columns (a weight stored [in, out]; an
                    * embedding [num, dim], whose norms run over the vocabulary) */
} merge_source;

/* One thread's share of a read: rows [lo, hi) into out (which holds rows from `first`). */
typedef struct merge_job {
    const merge_source *ms;
    uint8_t *out;
    uint64_t first, lo, hi;
    uint64_t *next;   /* shared by the read's jobs: the next row block to claim (atomic) */
    float maxd;
    uint64_t bad; /* element index of a non-finite result, or UINT64_MAX */
    int nomem;
} merge_job;

/* new = base + delta * scale, rounded once to the base dtype; tracks max |new - base| and the
 * first non-finite result. */
/* DoRA's row: new = factor * (base + delta * scale), the factor of the row's output feature or
 * of each column's; the same rounding, tracking and refusal as merge_row. */
static void merge_row_dora(merge_job *jb, const float *delta, const float *base, uint64_t i) {
    const merge_source *ms = jb->ms;
    const uint64_t n = ms->n;
    uint8_t *orow = jb->out + (i - jb->first) * n * ms->esize;
    float rowmax = 0;
    for (uint64_t j = 0; j < n; j++) {
        float f = ms->dora[ms->dora_cols ? j : i];
        float back = store(orow, ms->dtype, j, (base[j] + delta[j] * ms->scale) * f);
        float ad = fabsf(back - base[j]);
        if ((ad != ad || ad > FLT_MAX) && jb->bad == UINT64_MAX) jb->bad = i * n + j;
        rowmax = ad > rowmax ? ad : rowmax;
    }
    if (rowmax > jb->maxd) jb->maxd = rowmax;
}

static void merge_row(merge_job *jb, const float *delta, const float *base, uint64_t i) {
    const merge_source *ms = jb->ms;
    if (ms->dora) {
        merge_row_dora(jb, delta, base, i);
        return;
    }
    const uint64_t n = ms->n;
    const int dt = ms->dtype;
    const float scale = ms->scale;
    float rowmax = 0;
    int finite = 1;
    uint8_t *orow = jb->out + (i - jb->first) * n * ms->esize;
    if (dt == ULC_DT_F32) {
        float *o = (float *)(void *)orow;
        uint64_t j = 0;
        j = ulc_merge_add_f32(o, base, delta, scale, n, &rowmax, &finite);
        for (; j < n; j++) {
            float nv = base[j] + delta[j] * scale;
            float ad = fabsf(nv - base[j]);
            finite &= !(ad != ad || ad > FLT_MAX);
            rowmax = ad > rowmax ? ad : rowmax;
            memcpy(o + j, &nv, 4);
        }
    } else {
        uint64_t j = 0;
        j = ulc_merge_add_half(orow, base, delta, scale, n, dt == ULC_DT_F16, &rowmax, &finite);
        for (; j < n; j++) {
            float nv = base[j] + delta[j] * scale;
            uint16_t h = dt == ULC_DT_F16 ? ulc_f32_to_f16(nv) : ulc_f32_to_bf16(nv);
            memcpy(orow + 2 * j, &h, 2);
            float back = dt == ULC_DT_F16 ? ulc_f16_to_f32(h) : ulc_bf16_to_f32(h);
            float ad = fabsf(back - base[j]);
            finite &= !(ad != ad || ad > FLT_MAX);
            rowmax = ad > rowmax ? ad : rowmax;
        }
    }
    if (!finite && jb->bad == UINT64_MAX) { /* the first element the check above failed on */
        uint64_t j = 0;
        for (; j + 1 < n; j++) {
            uint8_t tmp[4];
            float back = store(tmp, dt, 0, base[j] + delta[j] * scale);
            float ad = fabsf(back - base[j]);
            if (ad != ad || ad > FLT_MAX) break;
        }
        jb->bad = i * n + j;
    }
    if (rowmax > jb->maxd) jb->maxd = rowmax;
}

#define CLAIM_ROWS (4 * DELTA_ROWS)

static void *merge_rows(void *arg) {
    merge_job *jb = arg;
    const merge_source *ms = jb->ms;
    const uint64_t n = ms->n, r = ms->r;
    float *delta = malloc((size_t)n * DELTA_ROWS * sizeof *delta);
    float *base = malloc((size_t)n * sizeof *base);
    if (!delta || !base) {
        jb->nomem = 1;
    } else {
        /* Blocks of CLAIM_ROWS rows are claimed one at a time, so a thread the scheduler
         * holds up (the writer and the copier share the cores) leaves its share to the others.
         * Each row's bits do not depend on which thread makes it. */
        for (;;) {
            uint64_t lo = __atomic_fetch_add(jb->next, CLAIM_ROWS, __ATOMIC_RELAXED);
            if (lo >= jb->hi || jb->bad != UINT64_MAX) break;
            uint64_t hi = jb->hi - lo < CLAIM_ROWS ? jb->hi : lo + CLAIM_ROWS;
            for (uint64_t i = lo; i < hi && jb->bad == UINT64_MAX; i += DELTA_ROWS) {
                uint64_t k = hi - i < DELTA_ROWS ? hi - i : DELTA_ROWS;
                ulc_merge_delta_rows(ms->U + i * r, ms->V, r, n, k, delta);
                for (uint64_t x = 0; x < k; x++) {
                    ulc_merge_load(ms->base, ms->dtype, (i + x) * n, n, base);
                    merge_row(jb, delta + x * n, base, i + x);
                }
            }
        }
    }
    free(delta);
    free(base);
    return NULL;
}

static int merge_threads(int requested) {
    int n = ulc_threads_pick_recent(requested); /* the default: what the load leaves (runtime/threads.h) */
    return n > 64 ? 64 : n;
}

/* Rows [lo, hi) into out, split across threads in whole DELTA_ROWS blocks. */
static ulc_status merge_produce(merge_source *ms, uint64_t lo, uint64_t hi, uint8_t *out,
                                ulc_ctx *ctx) {
    int nt = merge_threads(ms->threads);
    uint64_t blocks = (hi - lo + DELTA_ROWS - 1) / DELTA_ROWS;
    if ((uint64_t)nt > blocks) nt = (int)blocks;
    if ((hi - lo) * ms->n < (1u << 16)) nt = 1; /* not worth a thread */
    merge_job jobs[64];
    pthread_t tid[64];
    int started[64] = {0};
    uint64_t next = lo; /* lo is a whole number of DELTA_ROWS blocks in (the source's granule) */
    for (int k = 0; k < nt; k++) {
        jobs[k] = (merge_job){ms, out, lo, lo, hi, &next, 0, UINT64_MAX, 0};
        if (k > 0) started[k] = pthread_create(&tid[k], NULL, merge_rows, &jobs[k]) == 0;
    }
    if (nt > 0) merge_rows(&jobs[0]);
    for (int k = 1; k < nt; k++) {
        if (started[k]) pthread_join(tid[k], NULL);
        else merge_rows(&jobs[k]); /* no thread: do its share here */
    }
    float maxd = 0;
    uint64_t bad = UINT64_MAX;
    int nomem = 0;
    for (int k = 0; k < nt; k++) {
        maxd = jobs[k].maxd > maxd ? jobs[k].maxd : maxd;
        if (jobs[k].bad < bad) bad = jobs[k].bad;
        nomem |= jobs[k].nomem;
    }
    if (nomem) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (bad != UINT64_MAX)
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "module '%s': merging gives a non-finite value in '%s' (element %llu); "
                        "the adapter looks broken, nothing was written",
                        ms->module, ms->tensor, (unsigned long long)bad);
    ulc_lora_merge_entry *e = &ms->report->entries[ms->index];
    if (maxd > e->max_abs_delta) e->max_abs_delta = maxd;
    return ULC_OK;
}

static ulc_status merge_read(void *state, uint64_t off, size_t len, void *dst, ulc_ctx *ctx) {
    merge_source *ms = state;
    const uint64_t row = ms->n * ms->esize;
    uint64_t lo = off / row, hi = (off + len + row - 1) / row;
    if (off % row == 0 && (len % row == 0 || off + len == ms->rows * row))
        return merge_produce(ms, lo, hi, dst, ctx);
    /* a range that cuts rows: produce the rows it touches, copy out the part asked for */
    uint8_t *tmp = malloc((size_t)((hi - lo) * row));
    if (!tmp) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ulc_status s = merge_produce(ms, lo, hi, tmp, ctx);
    if (s == ULC_OK) memcpy(dst, tmp + (off - lo * row), len);
    free(tmp);
    return s;
}

static void merge_release(void *state) {
    merge_source *ms = state;
    free(ms->U);
    free(ms->V);
    free(ms->dora);
    free(ms);
}

/* DoRA's factors m / ||W + scale * dW|| (PEFT's dora_factor, the norm taken over each output
 * feature's weights: a row of [out, in(, k...)], a column of [in, out] or of an embedding
 * [num, dim]), from one pass over the tensor before any row is produced. */
static ulc_status dora_factors(merge_source *ms, const ulc_tensor *mag, ulc_ctx *ctx) {
    const uint64_t n = ms->n, groups = ms->dora_cols ? n : ms->rows;
    double *acc = calloc((size_t)groups, sizeof *acc);
    float *delta = malloc((size_t)n * DELTA_ROWS * sizeof *delta);
    float *base = malloc((size_t)n * sizeof *base);
    ms->dora = malloc((size_t)groups * sizeof *ms->dora);
    ulc_status s = acc && delta && base && ms->dora ? ULC_OK
                                                    : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; s == ULC_OK && i < ms->rows; i += DELTA_ROWS) {
        uint64_t k = ms->rows - i < DELTA_ROWS ? ms->rows - i : DELTA_ROWS;
        ulc_merge_delta_rows(ms->U + i * ms->r, ms->V, ms->r, n, k, delta);
        for (uint64_t x = 0; x < k; x++) {
            ulc_merge_load(ms->base, ms->dtype, (i + x) * n, n, base);
            for (uint64_t j = 0; j < n; j++) {
                float v = base[j] + delta[x * n + j] * ms->scale;
                acc[ms->dora_cols ? j : i + x] += (double)v * v;
            }
        }
    }
    for (uint64_t q = 0; s == ULC_OK && q < groups; q++)
        ms->dora[q] = load(mag, q) / (float)sqrt(acc[q]);
    free(acc), free(delta), free(base);
    return s;
}

static ulc_status apply_module(ulc_graph *g, const module *md, double w, const ulc_lora_merge_opts *opts,
                               ulc_lora_merge_report *report, int index, ulc_ctx *ctx) {
    const ulc_tensor *a = md->a, *b = md->b;
    ulc_tensor *t = md->base->init;
    const uint64_t r = (uint64_t)a->dims[0];
    /* The delta in the base tensor's own layout, as rows x n: row i is sum_q U[i][q] V[q][:].
     *   Linear / Conv (base [out, in(, kh, kw)]): U = B [out, r], V = A [r, in*kh*kw]
     *   Linear stored [in, out] (GPT2 Conv1D, an ONNX MatMul copy) and Embedding (base
     *   [num, dim], PEFT's delta (B A)^T): U = A^T [rows, r], V = B^T [r, n] */
    int swap = md->kind == K_EMBED || (md->kind == K_LINEAR && md->transposed);
    uint64_t na = (uint64_t)a->numel / r; /* A's columns: in(*kh*kw), or num */
    uint64_t nb = (uint64_t)b->numel / r; /* B's rows: out, or dim */
    merge_source *ms = calloc(1, sizeof *ms);
    ulc_tensor_source *src = calloc(1, sizeof *src);
    float *U = malloc((size_t)((swap ? na : nb) * r) * sizeof *U);
    float *V = malloc((size_t)(r * (swap ? nb : na)) * sizeof *V);
    /* B [nb, r] and A [r, na] as f32: U and V themselves, or (swap) staging for their transposes */
    float *A = swap ? malloc((size_t)(r * na) * sizeof *A) : V;
    float *B = swap ? malloc((size_t)(nb * r) * sizeof *B) : U;
    if (!ms || !src || !U || !V || !A || !B) {
        free(ms), free(src), free(U), free(V);
        if (swap) free(A), free(B);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    load_row(a, 0, r * na, A);
    load_row(b, 0, nb * r, B);
    if (swap) {
        for (uint64_t i = 0; i < na; i++)
            for (uint64_t q = 0; q < r; q++) U[i * r + q] = A[q * na + i];
        for (uint64_t q = 0; q < r; q++)
            for (uint64_t j = 0; j < nb; j++) V[q * nb + j] = B[j * r + q];
        free(A), free(B);
    }
    /* PEFT: delta = (B @ A) * scale, in float32; the adapter weight multiplies the scale. */
    *ms = (merge_source){t->data, t->dtype, t->dtype == ULC_DT_F32 ? 4 : 2, U, V, r,
                         swap ? nb : na, swap ? na : nb, (float)(md->scale * w),
                         opts ? opts->threads : 0, md->name, md->base->name, report, index, NULL, 0};
    ms->dora_cols = swap;
    if (md->mag) {
        ulc_status s = dora_factors(ms, md->mag, ctx);
        if (s != ULC_OK) {
            merge_release(ms);
            free(src);
            return s;
        }
    }
    /* chunks of whole DELTA_ROWS blocks: every block but a tensor's last takes the vector path */
    *src = (ulc_tensor_source){merge_read, merge_release, ms, (size_t)(ms->n * ms->esize) * DELTA_ROWS};
    ulc_lora_merge_entry *e = &report->entries[index];
    e->tensor = md->base->name;
    e->module = md->name;
    e->transposed = md->transposed;
    ULC_TRY(ulc_tensor_set_lazy(g, t, src, t->nbytes, ctx));
    return opts && opts->deferred ? ULC_OK : ulc_tensor_materialize(g, t, ctx);
}

static int same_shape(const ulc_tensor *a, const ulc_tensor *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

/* Element index in the base tensor of the replacement's element i. */
static uint64_t rep_index(const replacement *rp, uint64_t i) {
    if (!rp->transposed) return i;
    uint64_t rows = (uint64_t)rp->t->dims[0], cols = (uint64_t)rp->t->dims[1];
    return (i % cols) * rows + i / cols;
}

/* The replacement holds exactly the base's values (PEFT saves wrapped embeddings whole). */
static int same_as_base(const replacement *rp) {
    const ulc_tensor *b = rp->base->init, *t = rp->t;
    if (b->numel != t->numel || b->dtype != t->dtype) return 0;
    if (!rp->transposed) return same_shape(b, t) && memcmp(b->data, t->data, t->nbytes) == 0;
    if (!is_float_dtype(t->dtype)) return 0;
    for (uint64_t i = 0; i < t->numel; i++)
        if (ulc_f32_bits(load(t, i)) != ulc_f32_bits(load(b, rep_index(rp, i)))) return 0;
    return 1;
}

static ulc_status apply_replacement(ulc_graph *g, const replacement *rp, double w, int unmerge,
                                    ulc_lora_merge_entry *e, ulc_ctx *ctx) {
    ulc_tensor *t = rp->base->init;
    const ulc_tensor *src = rp->t;
    if (unmerge || w != 1.0)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                        "adapter tensor '%s' replaces the base tensor outright; it cannot be "
                        "weighted or unmerged", rp->name);
    uint8_t *out = malloc(t->nbytes ? t->nbytes : 1);
    if (!out) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    double maxd = 0;
    if (rp->transposed) {
        for (uint64_t i = 0; i < src->numel; i++) {
            uint64_t j = rep_index(rp, i);
            float v = store(out, t->dtype, j, load(src, i));
            double d = fabs((double)v - (double)load(t, j));
            if (d > maxd) maxd = d;
        }
    } else if (src->dtype == t->dtype) {
        memcpy(out, src->data, t->nbytes);
        if (is_float_dtype(t->dtype))
            for (uint64_t i = 0; i < t->numel; i++) {
                double d = fabs((double)load(src, i) - (double)load(t, i));
                if (d > maxd) maxd = d;
            }
    } else {
        for (uint64_t i = 0; i < t->numel; i++) {
            float v = store(out, t->dtype, i, load(src, i));
            double d = fabs((double)v - (double)load(t, i));
            if (d > maxd) maxd = d;
        }
    }
    ULC_TRY(ulc_tensor_set_owned(g, t, out, t->nbytes, ctx));
    e->tensor = rp->base->name;
    e->module = rp->name;
    e->max_abs_delta = maxd;
    e->replaced = 1;
    return ULC_OK;
}

/* One adapter's merge, planned whole before anything changes. */
typedef struct merge_plan {
    ulc_graph *g;
    const ulc_lora_adapter *ad;
    const ulc_lora_merge_opts *opts;
    ulc_arena *arena;     /* module records live as long as the base graph */
    ulc_strmap *mods;
    module *first;
    replacement *reps;
    int n_mods, n_reps, n_bias, need_untie;
} merge_plan;

enum { PART_A, PART_B, PART_MAG, PART_BIAS };

static const struct {
    const char *suffix;
    int part, embedding;
} k_parts[] = {{".lora_A.weight", PART_A, 0},         {".lora_B.weight", PART_B, 0},
               {".lora_embedding_A", PART_A, 1},      {".lora_embedding_B", PART_B, 1},
               {".lora_magnitude_vector", PART_MAG, 0}, {".lora_B.bias", PART_BIAS, 0}};
#define N_PARTS (int)(sizeof k_parts / sizeof *k_parts)

/* A whole tensor the adapter stores instead of factors (PEFT's modules_to_save, and the embedding
 * layers it wraps, saved as "M.base_layer.weight"). */
static ulc_status add_replacement(merge_plan *mp, const ulc_value *v, const char *key,
                                  ulc_ctx *ctx) {
    replacement *rp = ulc_arena_alloc(mp->arena, sizeof *rp);
    if (!rp) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    const char *bl = strstr(key, ".base_layer.");
    rp->key = key;
    rp->name = key;
    if (bl) {
        size_t k = (size_t)(bl - key);
        char *nm = ulc_arena_alloc(mp->arena, strlen(key) + 1);
        if (!nm) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        memcpy(nm, key, k);
        strcpy(nm + k, bl + strlen(".base_layer"));
        rp->name = nm;
    }
    rp->t = v->init;
    rp->next = mp->reps;
    mp->reps = rp;
    mp->n_reps++;
    return ULC_OK;
}

/* 1. The adapter's tensors grouped by module. */
static ulc_status group_tensors(merge_plan *mp, ulc_ctx *ctx) {
    const ulc_graph *ag = mp->ad->weights->graph;
    for (size_t i = 0; i < ag->inits.len; i++) {
        const ulc_value *v = ag->inits.items[i];
        const char *key = strncmp(v->name, PREFIX, strlen(PREFIX)) == 0 ? v->name + strlen(PREFIX) : v->name;
        int part = -1;
        for (int k = 0; k < N_PARTS && part < 0; k++)
            if (ends_with(key, k_parts[k].suffix)) part = k;
        if (part < 0) {
            if (strstr(key, "lora_"))
                return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: adapter tensor '%s' is of a kind "
                                "ulc does not merge", mp->ad->path, v->name);
            ULC_TRY(add_replacement(mp, v, key, ctx));
            continue;
        }
        char *mname = ulc_arena_strndup(mp->arena, key, strlen(key) - strlen(k_parts[part].suffix));
        module *md = mname ? ulc_strmap_get(mp->mods, mname) : NULL;
        if (mname && !md) {
            md = ulc_arena_alloc(mp->arena, sizeof *md);
            if (md) {
                md->name = mname;
                md->next = mp->first;
                mp->first = md;
                mp->n_mods++;
                if (ulc_strmap_put(mp->mods, mname, md) != 0) md = NULL;
            }
        }
        if (!md) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        switch (k_parts[part].part) {
        case PART_A: md->a = v->init; break;
        case PART_B: md->b = v->init; break;
        case PART_MAG: md->mag = v->init; break;
        default: md->bias_b = v->init; break;
        }
        md->embedding |= k_parts[part].embedding;
    }
    return ULC_OK;
}

/* A module's base tensor through a tied embedding: *tied_out when the module is the output
 * embedding that is not stored (it is the input embedding). Refused unless --untie-embeddings. */
static ulc_status resolve_tied(merge_plan *mp, module *md, int *tied_out, ulc_ctx *ctx) {
    const ulc_lora_merge_opts *opts = mp->opts;
    *tied_out = opts && opts->tied_output && opts->tied_input && !md->base;
    if (*tied_out) {
        size_t k = strlen(md->name);
        *tied_out = strncmp(opts->tied_output, md->name, k) == 0 &&
                    strcmp(opts->tied_output + k, ".weight") == 0;
        if (*tied_out) md->base = ulc_graph_get_value(mp->g, opts->tied_input);
    }
    int tied_in = opts && opts->tied_output && opts->tied_input && md->base &&
                  strcmp(md->base->name, opts->tied_input) == 0 &&
                  !ulc_graph_get_value(mp->g, opts->tied_output);
    if (!*tied_out && !tied_in) return ULC_OK;
    if (!opts->untie)
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "%s: module '%s' changes '%s', which is tied to '%s' "
                        "(tie_word_embeddings); merging would change both. Pass "
                        "--untie-embeddings to give '%s' its own copy", mp->ad->path, md->name,
                        *tied_out ? opts->tied_output : opts->tied_input,
                        *tied_out ? opts->tied_input : opts->tied_output, opts->tied_output);
    mp->need_untie = 1;
    return ULC_OK;
}

/* DoRA's magnitude checked against the config and the module: one float per output feature
 * (lora_B's rows), and a plain merge (PEFT's merge; a weighted or undone DoRA merge has no
 * definition: W cannot be recovered from m * (W + dW) / ||W + dW|| without the norms). */
static ulc_status resolve_dora(merge_plan *mp, const module *md, ulc_ctx *ctx) {
    const ulc_lora_adapter *ad = mp->ad;
    if (!md->mag && !ad->cfg.use_dora) return ULC_OK;
    if (!md->mag)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the config sets use_dora, but module '%s' has "
                        "no lora_magnitude_vector", ad->path, md->name);
    if (!ad->cfg.use_dora)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: module '%s' has a lora_magnitude_vector, but "
                        "the config does not set use_dora", ad->path, md->name);
    if (!is_float_dtype(md->mag->dtype) || md->mag->numel != (uint64_t)md->b->dims[0])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: module '%s': lora_magnitude_vector has %lld "
                        "%s values, expected %lld float values (one per output feature: lora_B's "
                        "rows)", ad->path, md->name, (long long)md->mag->numel,
                        ulc_dtype_name(md->mag->dtype), (long long)md->b->dims[0]);
    const ulc_lora_merge_opts *o = mp->opts;
    if (o && (o->unmerge || o->weight != 1.0))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: module '%s' is DoRA; a DoRA adapter merges "
                        "only whole (weight 1), and cannot be unmerged (W is not recoverable from "
                        "the merged weight without the norms PEFT caches)", ad->path, md->name);
    return ULC_OK;
}

/* The bias lora_B.bias adds to: "M.bias" or the unique "*.M.bias"; in an ONNX graph, the C
 * input of the Gemm that reads M's weight, or the initializer an Add puts on its MatMul. */
static ulc_value *find_bias(ulc_graph *g, const module *md, ulc_ctx *ctx) {
    ulc_value *v = init_named(g, md->name, "bias", ctx);
    if (!v && ctx->status != ULC_OK) return NULL;
    for (const ulc_use *u = md->base->first_use; !v && u; u = u->next) {
        if (u->slot != 1) continue;
        const ulc_node *x = u->node;
        if (x->op == ULC_OP_Gemm && x->n_inputs > 2) v = x->inputs[2].value;
        else if (x->op == ULC_OP_MatMul && x->n_outputs == 1 && x->outputs[0]) {
            const ulc_use *a = x->outputs[0]->first_use;
            if (a && !a->next && a->node->op == ULC_OP_Add && a->node->n_inputs == 2)
                v = a->node->inputs[1 - a->slot].value;
        }
        if (v && !(v->flags & ULC_VALUE_INITIALIZER)) v = NULL;
    }
    return v;
}

/* lora_bias: base bias += scale * lora_B.bias (PEFT's merge), one value per output feature. */
static ulc_status resolve_bias(merge_plan *mp, module *md, ulc_ctx *ctx) {
    const ulc_lora_adapter *ad = mp->ad;
    if (!ad->cfg.lora_bias)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: module '%s' has a lora_B.bias, but the config "
                        "does not set lora_bias", ad->path, md->name);
    if (md->kind == K_EMBED || !is_float_dtype(md->bias_b->dtype) ||
        md->bias_b->numel != (uint64_t)md->b->dims[0])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: module '%s': lora_B.bias has %lld values, "
                        "expected %lld (lora_B's rows)", ad->path, md->name,
                        (long long)md->bias_b->numel, (long long)md->b->dims[0]);
    md->bias = find_bias(mp->g, md, ctx);
    if (!md->bias && ctx->status != ULC_OK) return ctx->status;
    if (!md->bias)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: module '%s' has a lora_B.bias, but its base "
                        "layer has no bias ('%s.bias' or the bias of the node reading '%s'); PEFT "
                        "refuses this merge too", ad->path, md->name, md->name, md->base->name);
    const ulc_tensor *t = md->bias->init;
    if (!is_float_dtype(t->dtype) || t->numel != (uint64_t)md->b->dims[0])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: module '%s': base bias '%s' has %lld %s values, "
                        "expected %lld float values", ad->path, md->name, md->bias->name,
                        (long long)t->numel, ulc_dtype_name(t->dtype), (long long)md->b->dims[0]);
    mp->n_bias++;
    return ULC_OK;
}

/* The bias update: bias += w * scale * lora_B.bias, rounded once to the bias dtype. */
static ulc_status apply_bias(ulc_graph *g, const module *md, double w, ulc_lora_merge_entry *e,
                             ulc_ctx *ctx) {
    ulc_tensor *t = md->bias->init;
    ULC_TRY(ulc_tensor_materialize(g, t, ctx));
    uint8_t *out = malloc(t->nbytes ? t->nbytes : 1);
    if (!out) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    const float scale = (float)(md->scale * w);
    double maxd = 0;
    for (uint64_t i = 0; i < t->numel; i++) {
        float old = load(t, i), v = store(out, t->dtype, i, old + load(md->bias_b, i) * scale);
        double d = fabs((double)v - (double)old);
        if (!(d <= DBL_MAX)) {
            free(out);
            return ulc_fail(ctx, ULC_ERR_INVALID, "module '%s': merging lora_B.bias gives a "
                            "non-finite value in '%s' (element %llu); the adapter looks broken",
                            md->name, md->bias->name, (unsigned long long)i);
        }
        if (d > maxd) maxd = d;
    }
    ULC_TRY(ulc_tensor_set_owned(g, t, out, t->nbytes, ctx));
    e->tensor = md->bias->name;
    e->module = md->name;
    e->max_abs_delta = maxd;
    return ULC_OK;
}

/* 2a. A module resolved to its base tensor, layout, rank and scale, and checked. */
static ulc_status resolve_module(merge_plan *mp, module *md, ulc_ctx *ctx) {
    const ulc_lora_adapter *ad = mp->ad;
    if (!md->a || !md->b)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: module '%s' has lora_%s but no lora_%s",
                        ad->path, md->name, md->a ? "A" : "B", md->a ? "B" : "A");
    if (!is_float_dtype(md->a->dtype) || !is_float_dtype(md->b->dtype))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: module '%s' has %s factors; expected "
                        "f32, f16 or bf16", ad->path, md->name, ulc_dtype_name(md->a->dtype));
    int via_node = 0, node_t = 0, tied_out = 0;
    md->base = ulc_lora_find_base(mp->g, md->name, &via_node, &node_t, ctx);
    if (!md->base && ctx->status != ULC_OK) return ctx->status;
    ULC_TRY(resolve_tied(mp, md, &tied_out, ctx));
    if (!md->base)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: adapter module '%s' names no tensor of the "
                        "base model (looked for '%s.weight')", ad->path, md->name, md->name);
    if (!is_float_dtype(md->base->init->dtype))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "base tensor '%s' is %s; ulc merges into f32, "
                        "f16 and bf16 weights", md->base->name, ulc_dtype_name(md->base->init->dtype));
    int hint = consumer_layout(md->base);
    if (hint < 0) hint = arch_layout(md->name, mp->opts ? mp->opts->conv1d_modules : NULL);
    ULC_TRY(resolve_layout(md, &ad->cfg, via_node, node_t, hint, ctx));
    int r;
    double alpha;
    ulc_status s = ulc_lora_module_params(&ad->cfg, md->name, &r, &alpha, &md->scale, ctx);
    if (s == ULC_OK && r != md->a->dims[0])
        s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: module '%s': the config gives rank %d "
                     "(r / rank_pattern), its lora_A has rank %lld", ad->path, md->name, r,
                     (long long)md->a->dims[0]);
    md->transposed = md->kind == K_LINEAR ? md->transposed : 0;
    if (tied_out) md->transposed = 0;
    if (s == ULC_OK) s = resolve_dora(mp, md, ctx);
    if (s == ULC_OK && md->bias_b) s = resolve_bias(mp, md, ctx);
    return s;
}

/* 2b. A whole-tensor replacement resolved to the base tensor it replaces, and checked; an
 * unchanged one is dropped. */
static ulc_status resolve_replacement(merge_plan *mp, replacement *rp, ulc_ctx *ctx) {
    const ulc_lora_merge_opts *opts = mp->opts;
    const char *path = mp->ad->path;
    rp->base = ulc_graph_get_value(mp->g, rp->name);
    if (!rp->base && opts && opts->tied_output && opts->tied_input &&
        strcmp(rp->name, opts->tied_output) == 0) {
        rp->base = ulc_graph_get_value(mp->g, opts->tied_input);
        rp->tied = 1;
    }
    if (!rp->base && ends_with(rp->name, ".weight")) {
        /* as for modules: a prefixed name, or an ONNX MatMul/Gemm weight in M's scope */
        char *mname = ulc_arena_strndup(mp->arena, rp->name, strlen(rp->name) - strlen(".weight"));
        int via_node = 0;
        rp->base = mname ? ulc_lora_find_base(mp->g, mname, &via_node, &rp->transposed, ctx) : NULL;
        if (!rp->base && ctx->status != ULC_OK) return ctx->status;
        if (rp->base && rp->transposed && !(rp->t->rank == 2 && rp->base->init->rank == 2 &&
                                            rp->t->dims[0] == rp->base->init->dims[1] &&
                                            rp->t->dims[1] == rp->base->init->dims[0]))
            rp->transposed = 0; /* shapes say it is stored as is */
    }
    if (rp->base && (rp->base->flags & ULC_VALUE_INITIALIZER) && same_as_base(rp)) {
        rp->noop = 1; /* PEFT stores wrapped embeddings whole; unchanged ones change nothing */
        mp->n_reps--;
        return ULC_OK;
    }
    if (rp->tied && !(opts && opts->untie))
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "%s: adapter tensor '%s' changes '%s', which is tied to '%s' "
                        "(tie_word_embeddings); merging would change both. Pass "
                        "--untie-embeddings to give '%s' its own copy", path, rp->key,
                        opts->tied_output, opts->tied_input, opts->tied_output);
    if (rp->tied) mp->need_untie = 1;
    if (!rp->base || !(rp->base->flags & ULC_VALUE_INITIALIZER))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: adapter tensor '%s' replaces '%s', which the "
                        "base model does not have", path, rp->key, rp->name);
    if (!rp->transposed && !same_shape(rp->base->init, rp->t))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: adapter tensor '%s' does not have the shape "
                        "of the base tensor", path, rp->name);
    if (rp->base->init->dtype != rp->t->dtype &&
        !(is_float_dtype(rp->base->init->dtype) && is_float_dtype(rp->t->dtype)))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: adapter tensor '%s' is %s, the base's is %s",
                        path, rp->name, ulc_dtype_name(rp->t->dtype),
                        ulc_dtype_name(rp->base->init->dtype));
    return ULC_OK;
}

/* 3. The plan applied: the untied copy first, then every module and replacement. */
static ulc_status apply_plan(merge_plan *mp, ulc_lora_merge_report *report, ulc_ctx *ctx) {
    const ulc_lora_merge_opts *opts = mp->opts;
    double w = opts ? opts->weight : 1.0;
    int unmerge = opts && opts->unmerge;
    ulc_lora_merge_entry *ents =
        realloc(report->entries, (size_t)(report->n + mp->n_mods + mp->n_reps + mp->n_bias) * sizeof *ents);
    if (!ents) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    report->entries = ents;
    if (mp->need_untie) {
        ulc_value *copy = NULL;
        ULC_TRY(add_untied_copy(mp->g, opts->tied_output,
                                ulc_graph_get_value(mp->g, opts->tied_input), &copy, ctx));
        /* modules and replacements of the output embedding now target the copy */
        for (module *md = mp->first; md; md = md->next) {
            size_t k = strlen(md->name);
            if (strncmp(opts->tied_output, md->name, k) == 0 && strcmp(opts->tied_output + k, ".weight") == 0)
                md->base = copy;
        }
        for (replacement *rp = mp->reps; rp; rp = rp->next)
            if (rp->tied) rp->base = copy;
        report->untied = 1;
    }
    double signed_w = unmerge ? -w : w;
    for (module *md = mp->first; md; md = md->next) {
        memset(&report->entries[report->n], 0, sizeof *report->entries);
        ULC_TRY(apply_module(mp->g, md, signed_w, opts, report, report->n, ctx));
        report->n++;
        if (md->bias) {
            memset(&report->entries[report->n], 0, sizeof *report->entries);
            ULC_TRY(apply_bias(mp->g, md, signed_w, &report->entries[report->n], ctx));
            report->n++;
        }
    }
    for (replacement *rp = mp->reps; rp; rp = rp->next) {
        if (rp->noop) continue;
        ulc_lora_merge_entry *e = &report->entries[report->n];
        memset(e, 0, sizeof *e);
        ULC_TRY(apply_replacement(mp->g, rp, w, unmerge, e, ctx));
        report->n++;
    }
    return ULC_OK;
}

ulc_status ulc_lora_merge(ulc_model *base, const ulc_lora_adapter *ad,
                          const ulc_lora_merge_opts *opts, ulc_lora_merge_report *report,
                          ulc_ctx *ctx) {
    merge_plan mp = {.g = base->graph, .ad = ad, .opts = opts, .arena = base->graph->arena,
                     .mods = ulc_strmap_create()};
    ulc_status s = mp.mods ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    /* tensors an earlier (deferred) merge left pending are produced now: this one reads them */
    for (size_t i = 0; s == ULC_OK && i < mp.g->inits.len; i++)
        s = ulc_tensor_materialize(mp.g, ((ulc_value *)mp.g->inits.items[i])->init, ctx);
    if (s == ULC_OK) s = group_tensors(&mp, ctx);
    /* 2. resolve and check everything before changing anything */
    for (module *md = mp.first; s == ULC_OK && md; md = md->next) s = resolve_module(&mp, md, ctx);
    for (replacement *rp = mp.reps; s == ULC_OK && rp; rp = rp->next)
        s = resolve_replacement(&mp, rp, ctx);
    if (s == ULC_OK && mp.n_mods + mp.n_reps == 0)
        s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: the adapter holds no LoRA tensors", ad->path);
    if (s == ULC_OK) s = apply_plan(&mp, report, ctx);
    ulc_strmap_free(mp.mods);
    return s;
}

ulc_status ulc_lora_merge_module(ulc_model *base, const char *module_name, ulc_value *w,
                                 const ulc_tensor *a, const ulc_tensor *b, int transposed,
                                 double scale, const ulc_lora_merge_opts *opts,
                                 ulc_lora_merge_report *report, ulc_ctx *ctx) {
    ulc_graph *g = base->graph;
    if (!(w->flags & ULC_VALUE_INITIALIZER) || !w->init)
        return ulc_fail(ctx, ULC_ERR_INVALID, "module '%s': '%s' is not an initializer",
                        module_name, w->name);
    if (!is_float_dtype(w->init->dtype))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "base tensor '%s' is %s; ulc merges into f32, "
                        "f16 and bf16 weights", w->name, ulc_dtype_name(w->init->dtype));
    if (!is_float_dtype(a->dtype) || !is_float_dtype(b->dtype))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "module '%s' has %s factors; expected f32, f16 "
                        "or bf16", module_name, ulc_dtype_name(a->dtype));
    ULC_TRY(ulc_tensor_materialize(g, w->init, ctx));
    module md = {0};
    md.name = module_name;
    md.a = a;
    md.b = b;
    md.base = w;
    md.scale = scale;
    ulc_lora_config cfg = {0};
    cfg.fan_in_fan_out = transposed;
    ULC_TRY(resolve_layout(&md, &cfg, a->rank == 2, transposed, transposed, ctx));
    md.transposed = md.kind == K_LINEAR ? md.transposed : 0;
    ulc_lora_merge_entry *ents = realloc(report->entries, (size_t)(report->n + 1) * sizeof *ents);
    if (!ents) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    report->entries = ents;
    memset(&ents[report->n], 0, sizeof *ents);
    double wt = opts ? opts->weight : 1.0;
    ulc_status s = apply_module(g, &md, opts && opts->unmerge ? -wt : wt, opts, report,
                                report->n, ctx);
    if (s == ULC_OK) report->n++;
    return s;
}
