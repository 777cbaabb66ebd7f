/* lm_eval.c — language-model metrics over splits and by decoding (see lm_eval.h,
 * docs/metrics.md "Language models"). */
#include "eval/lm_eval.h"

#include "io/decoder.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ulc_lm_opts ulc_lm_defaults(void) {
    return (ulc_lm_opts){.mink_frac = ULC_LM_MINK, .extract_prefix = ULC_LM_EXTRACT_PREFIX,
                         .extract_tokens = ULC_LM_EXTRACT_TOKENS,
                         .extract_rows = ULC_LM_EXTRACT_ROWS};
}

static ulc_status nomem(ulc_ctx *ctx, const char *what) {
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", what);
}

static void add_num(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

cJSON *ulc_lm_ppl_json(const ulc_scores *sc, const ulc_splits *sp) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; o && k < ULC_SPLIT_COUNT; k++)
        if (sp->present[k]) add_num(o, ulc_split_name(k), ulc_scores_ppl(sc, k));
    return o;
}

/* ---- the membership attacks ----------------------------------------------------------------- */

ulc_status ulc_lm_mia(const ulc_data *tr, const ulc_data *te, const ulc_splits *sp,
                      const ulc_scores *sc, ulc_lm_attack_result *loss, ulc_lm_attack_result *mink,
                      ulc_ctx *ctx) {
    size_t cap = (size_t)(tr->rows + te->rows + 1);
    double *buf = malloc(cap * sizeof *buf);
    if (!buf) return nomem(ctx, "membership attack");
    ulc_status st = ULC_OK;
    for (int which = 0; which < 2 && st == ULC_OK; which++) {
        double *const *score = which ? sc->mink : sc->loss;
        double *tgt = buf, *mem, *non;
        int64_t nt = 0, nm = 0, nn = 0;
        for (int64_t i = 0; i < tr->rows; i++) /* Df first, Dr after it, non-members last */
            if (sp->train[i] == ULC_SPLIT_DF && !isnan(score[0][i])) tgt[nt++] = score[0][i];
        mem = tgt + nt;
        for (int64_t i = 0; i < tr->rows; i++)
            if (sp->train[i] == ULC_SPLIT_DR && !isnan(score[0][i])) mem[nm++] = score[0][i];
        non = mem + nm;
        for (int64_t i = 0; i < te->rows; i++)
            if ((!sp->test || sp->test[i] != ULC_SPLIT_DFT) && !isnan(score[1][i]))
                non[nn++] = score[1][i];
        st = ulc_lm_attack(tgt, nt, mem, nm, non, nn, which ? mink : loss, ctx);
        if (st != ULC_OK)
            st = ulc_fail(ctx, st, "the %s attack (%lld Df, %lld Dr, %lld held-out rows with "
                          "predictions)", which ? "Min-K%" : "loss", (long long)nt, (long long)nm,
                          (long long)nn);
    }
    free(buf);
    return st;
}

cJSON *ulc_lm_attack_json(const ulc_lm_attack_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    add_num(o, "auc", r->auc);
    add_num(o, "mia", r->member_frac);
    add_num(o, "threshold", r->threshold);
    add_num(o, "attacker_bacc", r->attacker_bacc);
    cJSON_AddNumberToObject(o, "members", (double)r->n_members);
    cJSON_AddNumberToObject(o, "nonmembers", (double)r->n_nonmembers);
    cJSON_AddNumberToObject(o, "targets", (double)r->n_target);
    return o;
}

/* ---- greedy decoding ------------------------------------------------------------------------ */

/* A model being decoded: its session, the inputs it is fed, and the buffers of one run. */
typedef struct gen {
    ulc_session *s;
    const ulc_iface *f;      /* a model with a cache decoding without it: pasts fed empty */
    const char *mpath, *ids_name, *mask_name, *out_name;
    int mask_dtype;          /* the attention mask's dtype (int64 or float32) */
    int64_t vocab;
    int64_t *ids;            /* [ULC_LM_GEN_BATCH, max len] */
    int64_t *epos;           /* [ULC_LM_GEN_BATCH, max len]: position_ids with empty pasts */
    void *ones;              /* [ULC_LM_GEN_BATCH, max len] of the mask's dtype, all 1 */
    int causal;              /* -1: not probed yet; 1: decode in a fixed window; 0: on prefixes */
    float *probe;            /* [ULC_LM_GEN_BATCH, vocab]: the probe's first logits */
    /* the cache (decode_cached): */
    ulc_decoder dec;         /* dec.m NULL: none */
    ulc_session *ds;         /* the decoder's session */
    int cached;              /* -1: not checked yet (a built decoder); 1: decode with it; 0: not */
    int dmask_dtype;         /* the decoder's attention_mask dtype */
    int64_t cap;             /* the pasts' length at most: the longest row's k + m - 1 */
    int64_t batch;           /* rows a run at most (a fixed cache pads every run to it) */
    float **kv;              /* 2 * layers pasts, [rows, heads, P, head_dim] each (P <= cap) */
    int64_t *dids, *pos;     /* [ULC_LM_GEN_BATCH, T]: input_ids, position_ids */
    void *dmask;             /* [ULC_LM_GEN_BATCH, cap + T]: attention_mask */
    int used[3];             /* groups decoded with the cache, in the window, on prefixes */
} gen;

/* The index of the first maximum of z[0..n); NaN never wins. */
static int64_t first_max(const float *z, int64_t n) {
    int64_t best = 0;
    float bv = -INFINITY;
    for (int64_t c = 0; c < n; c++)
        if (z[c] > bv) {
            bv = z[c];
            best = c;
        }
    return best;
}

/* A model with a cache run on whole rows (the window, the prefixes, the check of a built
 * decoder): every past empty, [n, heads, 0, head_dim], positions 0 .. len-1 (g->pos). */
static ulc_status feed_cache_empty(gen *g, int64_t n, int64_t len, ulc_ctx *ctx) {
    const ulc_iface *f = g->f;
    ulc_rt_tensor t;
    static const float none[1];
    for (int k = f->n_fed - f->n_past; k < f->n_fed; k++) {
        const ulc_value *v = f->fed[k];
        t = (ulc_rt_tensor){.dtype = ULC_DT_F32, .rank = 4, .data = (void *)(uintptr_t)none,
                            .dims = {n, v->dims[1].value, 0, v->dims[3].value}};
        ULC_TRY(ulc_session_set_input(g->s, v->name, &t, ctx));
    }
    if (f->pos < 0) return ULC_OK;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < len; i++) g->epos[r * len + i] = i;
    t = (ulc_rt_tensor){.dtype = ULC_DT_I64, .rank = 2, .dims = {n, len}, .data = g->epos,
                        .nbytes = (size_t)(n * len) * 8};
    return ulc_session_set_input(g->s, f->fed[f->pos]->name, &t, ctx);
}

/* One run on n rows of len tokens (g->ids); next[r] = the first maximum of the logits at
 * position pos of row r; with keep, those logits are copied there ([n, vocab]). */
static ulc_status gen_run(gen *g, int64_t n, int64_t len, int64_t pos, int64_t *next, float *keep,
                          ulc_ctx *ctx) {
    ulc_rt_tensor t = {.dtype = ULC_DT_I64, .rank = 2, .dims = {n, len}, .data = g->ids,
                       .nbytes = (size_t)(n * len) * 8};
    ULC_TRY(ulc_session_set_input(g->s, g->ids_name, &t, ctx));
    if (g->mask_name) {
        t.dtype = g->mask_dtype;
        t.data = g->ones;
        t.nbytes = (size_t)(n * len) * (g->mask_dtype == ULC_DT_I64 ? 8 : 4);
        ULC_TRY(ulc_session_set_input(g->s, g->mask_name, &t, ctx));
    }
    ULC_TRY(feed_cache_empty(g, n, len, ctx));
    ULC_TRY(ulc_session_run(g->s, ctx));
    const ulc_rt_tensor *o = ulc_session_output(g->s, g->out_name);
    if (!o || o->dtype != ULC_DT_F32 || o->rank != 3 || o->dims[0] != n || o->dims[1] != len ||
        o->dims[2] != g->vocab) {
        char sh[128];
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is %s for %lld rows of %lld tokens "
                        "(expected [%lld, %lld, %lld])", g->mpath, g->out_name,
                        o ? ulc_rt_shape_str(o, sh, sizeof sh) : "missing", (long long)n,
                        (long long)len, (long long)n, (long long)len, (long long)g->vocab);
    }
    const float *z = o->data;
    for (int64_t r = 0; r < n; r++) {
        const float *zr = z + ((size_t)r * (size_t)len + (size_t)pos) * (size_t)g->vocab;
        if (keep) memcpy(keep + (size_t)r * (size_t)g->vocab, zr, (size_t)g->vocab * sizeof(float));
        next[r] = first_max(zr, g->vocab);
    }
    return ULC_OK;
}

/* A row to extract: its index in the data, prefix k and suffix length m. */
typedef struct ex_row {
    int64_t row, k, m;
} ex_row;

static int cmp_ex_row(const void *a, const void *b) {
    const ex_row *x = a, *y = b;
    if (x->k != y->k) return (x->k > y->k) - (x->k < y->k);
    return (x->row > y->row) - (x->row < y->row);
}

static int64_t id_at(const ulc_tensor *ids, int64_t i, int64_t t) {
    int64_t v;
    memcpy(&v, (const uint8_t *)ids->data + 8 * (size_t)(i * ids->dims[1] + t), 8);
    return v;
}

/* Row i's real tokens: the positions before its first attention_mask 0 (T without a mask). */
static int64_t real_len(const ulc_data *tr, const ulc_iface *f, int64_t i) {
    int64_t T = tr->cols[0]->dims[1];
    if (f->mask < 0) return T;
    const ulc_tensor *m = tr->cols[f->mask];
    for (int64_t t = 0; t < T; t++) {
        size_t at = (size_t)(i * T + t);
        if (m->dtype == ULC_DT_I64) {
            int64_t v;
            memcpy(&v, (const uint8_t *)m->data + 8 * at, 8);
            if (!v) return t;
        } else {
            float v;
            memcpy(&v, (const uint8_t *)m->data + 4 * at, 4);
            if (v == 0) return t;
        }
    }
    return T;
}

/* Decodes rows e[0..n) (one prefix length k) on their prefixes: seq [n, k + mmax] holds each
 * row's prefix and gets its continuation. Each step runs the rows still decoding at the current
 * length: a new input shape, so a plan, per step. */
static ulc_status decode_prefixes(gen *g, const ex_row *e, int64_t n, int64_t *seq, int64_t w,
                                  ulc_ctx *ctx) {
    int64_t k = e[0].k, next[ULC_LM_GEN_BATCH], act[ULC_LM_GEN_BATCH];
    for (int64_t s = 0; k + s < w; s++) {
        int64_t len = k + s, na = 0;
        for (int64_t r = 0; r <= n; r++) {
            if (r < n && e[r].m > s) {
                memcpy(g->ids + na * len, seq + r * w, (size_t)len * 8);
                act[na++] = r;
            }
            if (na == ULC_LM_GEN_BATCH || (r == n && na)) {
                ULC_TRY(gen_run(g, na, len, len - 1, next, NULL, ctx));
                for (int64_t a = 0; a < na; a++) seq[act[a] * w + len] = next[a];
                na = 0;
            }
        }
    }
    return ULC_OK;
}

/* Rows r0..r0+nr of the group into g->ids at width w: their first len tokens (fewer for a row
 * already done: the k + m it has), then `fill`. */
static void window_rows(gen *g, const ex_row *e, const int64_t *seq, int64_t r0, int64_t nr, int64_t w,
                        int64_t len, int64_t fill) {
    for (int64_t r = 0; r < nr; r++) {
        int64_t have = e[r0 + r].k + e[r0 + r].m, n = len < have ? len : have;
        memcpy(g->ids + r * w, seq + (r0 + r) * w, (size_t)n * 8);
        for (int64_t t = n; t < w; t++) g->ids[r * w + t] = fill;
    }
}

/* Decodes the group in a fixed window: every step runs chunks of the group's rows at the full
 * width w, the positions past the current length holding a filler token, and reads the logits
 * at the last real position. One input shape per chunk size, so one plan serves the whole
 * group, where decoding on the prefixes makes a plan for every length. That is exact for a
 * causal model (a position's logits depend only on the tokens up to it), which the first run
 * checks (g->causal): the rows run twice, with two fillers, and the logits they are read at
 * must agree to the bit; where they do not (the model looks ahead), the group and every later
 * one decode on their prefixes. Returns with *done 0 when it left the group to that. */
static ulc_status decode_window(gen *g, const ex_row *e, int64_t n, int64_t *seq, int64_t w,
                                int *done, ulc_ctx *ctx) {
    int64_t k = e[0].k, next[ULC_LM_GEN_BATCH], next2[ULC_LM_GEN_BATCH];
    *done = 0;
    for (int64_t s = 0; k + s < w; s++) {
        int64_t len = k + s;
        for (int64_t r0 = 0; r0 < n; r0 += ULC_LM_GEN_BATCH) {
            int64_t nr = n - r0 < ULC_LM_GEN_BATCH ? n - r0 : ULC_LM_GEN_BATCH, live = 0;
            for (int64_t r = r0; r < r0 + nr; r++) live |= e[r].m > s;
            if (!live) continue;
            window_rows(g, e, seq, r0, nr, w, len, 0);
            if (g->causal < 0) {
                ULC_TRY(gen_run(g, nr, w, len - 1, next, g->probe, ctx));
                window_rows(g, e, seq, r0, nr, w, len, 1);
                float *z2 = g->probe + (size_t)nr * (size_t)g->vocab; /* the probe's second half */
                ULC_TRY(gen_run(g, nr, w, len - 1, next2, z2, ctx));
                g->causal = memcmp(g->probe, z2, (size_t)nr * (size_t)g->vocab * sizeof(float)) == 0;
                if (!g->causal) return ULC_OK;
            } else {
                ULC_TRY(gen_run(g, nr, w, len - 1, next, NULL, ctx));
            }
            for (int64_t r = r0; r < r0 + nr; r++)
                if (e[r].m > s) seq[r * w + len] = next[r - r0];
        }
    }
    *done = 1;
    return ULC_OK;
}

/* ---- decoding with a cache (io/decoder.h) ------------------------------------------------------
 *
 * A group's rows run once on their k prefix tokens (prefill), then once per generated token on
 * that token alone, the keys and values of the tokens before it fed back as the pasts: a step
 * costs one token's work, not the window's. Where positions follow the mask (a decoder ulc
 * built, or one fed position_ids), the pasts always hold cap slots, the empty ones first and
 * masked with zeros: the prefill is [n, k] against cap + k keys and every later step [n, 1]
 * against cap + 1, so two plans serve every group (a plan per shape costs as much as a step of
 * DistilGPT2). Otherwise (a model that takes a token's position from the past's length) the
 * pasts hold exactly the tokens so far and every step has a shape, and a plan, of its own. */

/* One decoder run on n rows: T tokens each (g->dids), after P cached ones, len of the P + T
 * real (the last ones). next[r] = the first maximum of row r's last logits; with keep, its
 * logits [T, vocab] for row 0 are copied there. The presents' last P' slots (cap with a fixed
 * cache, else P + T) become the pasts. */
static ulc_status dec_run(gen *g, int64_t n, int64_t T, int64_t P, int64_t len, int64_t *next,
                          float *keep, ulc_ctx *ctx) {
    const ulc_decoder *d = &g->dec;
    int64_t H = d->heads, D = d->head_dim, K = P + T;
    char name[64], pname[64], sh[128];
    ulc_rt_tensor t = {.dtype = ULC_DT_I64, .rank = 2, .dims = {n, T}, .data = g->dids,
                       .nbytes = (size_t)(n * T) * 8};
    ULC_TRY(ulc_session_set_input(g->ds, d->ids, &t, ctx));
    if (d->position_ids) {
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < T; i++) g->pos[r * T + i] = len - T + i;
        t.data = g->pos;
        ULC_TRY(ulc_session_set_input(g->ds, d->position_ids, &t, ctx));
    }
    if (d->mask) {
        size_t es = g->dmask_dtype == ULC_DT_I64 ? 8 : 4;
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < K; j++) {
                uint8_t *at = (uint8_t *)g->dmask + (size_t)(r * K + j) * es;
                int on = j >= K - len;
                if (es == 8) *(int64_t *)(void *)at = on;
                else *(float *)(void *)at = (float)on;
            }
        t = (ulc_rt_tensor){.dtype = g->dmask_dtype, .rank = 2, .dims = {n, K}, .data = g->dmask,
                            .nbytes = (size_t)(n * K) * es};
        ULC_TRY(ulc_session_set_input(g->ds, d->mask, &t, ctx));
    }
    for (int i = 0; i < 2 * d->layers; i++) {
        t = (ulc_rt_tensor){.dtype = ULC_DT_F32, .rank = 4, .dims = {n, H, P, D}, .data = g->kv[i],
                            .nbytes = (size_t)(n * H * P * D) * 4};
        ULC_TRY(ulc_session_set_input(g->ds, ulc_decoder_past(i / 2, i % 2, name, sizeof name), &t, ctx));
    }
    ULC_TRY(ulc_session_run(g->ds, ctx));
    const ulc_rt_tensor *o = ulc_session_output(g->ds, "logits");
    if (!o || o->dtype != ULC_DT_F32 || o->rank != 3 || o->dims[0] != n || o->dims[1] != T ||
        o->dims[2] != g->vocab)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output 'logits' is %s for %lld rows of %lld "
                        "tokens after %lld cached (expected [%lld, %lld, %lld])", g->mpath,
                        o ? ulc_rt_shape_str(o, sh, sizeof sh) : "missing", (long long)n,
                        (long long)T, (long long)P, (long long)n, (long long)T, (long long)g->vocab);
    if (keep) memcpy(keep, o->data, (size_t)(T * g->vocab) * sizeof(float));
    for (int64_t r = 0; r < n; r++)
        next[r] = first_max((const float *)o->data + (size_t)((r + 1) * T - 1) * (size_t)g->vocab, g->vocab);
    int64_t keepn = d->mask_positions ? g->cap : K; /* the pasts of the next run */
    for (int i = 0; i < 2 * d->layers; i++) {
        const ulc_rt_tensor *pr = ulc_session_output(g->ds, ulc_decoder_present(i / 2, i % 2, name, sizeof name));
        if (!pr || pr->dtype != ULC_DT_F32 || pr->rank != 4 || pr->dims[0] != n || pr->dims[1] != H ||
            pr->dims[2] != K || pr->dims[3] != D)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is %s for %lld rows of %lld "
                            "tokens after %lld cached (expected [%lld, %lld, %lld, %lld], input "
                            "'%s' with %lld more)", g->mpath, name,
                            pr ? ulc_rt_shape_str(pr, sh, sizeof sh) : "missing", (long long)n,
                            (long long)T, (long long)P, (long long)n, (long long)H, (long long)K,
                            (long long)D, ulc_decoder_past(i / 2, i % 2, pname, sizeof pname), (long long)T);
        const float *src = pr->data;
        for (int64_t bh = 0; bh < n * H; bh++) /* the last keepn of each (row, head)'s K slots */
            memmove(g->kv[i] + (size_t)(bh * keepn * D), src + (size_t)((bh * K + K - keepn) * D),
                    (size_t)(keepn * D) * sizeof(float));
    }
    return ULC_OK;
}

/* A built decoder must compute what the model computes (the model may have changed since its
 * config was written: unmerged adapters, edits): row 0's prefill logits z [k, vocab] against the
 * model's own on the same tokens. Sets g->cached. */
static ulc_status check_decoder(gen *g, const int64_t *row, int64_t k, const float *z, ulc_ctx *ctx) {
    int64_t next;
    memcpy(g->ids, row, (size_t)k * 8);
    ULC_TRY(gen_run(g, 1, k, k - 1, &next, NULL, ctx));
    const float *y = ulc_session_output(g->s, g->out_name)->data;
    double worst = 0, scale = 1;
    for (int64_t i = 0; i < k * g->vocab; i++) {
        double e = fabs((double)z[i] - (double)y[i]);
        worst = e > worst || isnan(e) ? e : worst;
        scale = fabs((double)y[i]) > scale ? fabs((double)y[i]) : scale;
    }
    g->cached = worst <= 1e-4 * scale; /* float sums in another order; NaN fails */
    return ULC_OK;
}

/* Decodes the group (as decode_window) with the cache; *done 0 when check_decoder turned it
 * down, the group then left to the window. */
static ulc_status decode_cached(gen *g, const ex_row *e, int64_t n, int64_t *seq, int64_t w,
                                int *done, ulc_ctx *ctx) {
    int64_t k = e[0].k, next[ULC_LM_GEN_BATCH], fixed = g->dec.mask_positions;
    *done = 0;
    for (int64_t r0 = 0; r0 < n; r0 += ULC_LM_GEN_BATCH) {
        int64_t nr = n - r0 < ULC_LM_GEN_BATCH ? n - r0 : ULC_LM_GEN_BATCH, mmax = 0;
        /* a fixed cache runs every chunk at g->batch rows, the missing ones copies of the
         * first: a step reads every weight whatever its rows, and one shape spares a plan */
        int64_t nb = fixed && nr < g->batch ? g->batch : nr;
        for (int64_t r = r0; r < r0 + nr; r++) mmax = e[r].m > mmax ? e[r].m : mmax;
        for (int64_t r = 0; r < nb; r++)
            memcpy(g->dids + r * k, seq + (r0 + (r < nr ? r : 0)) * w, (size_t)k * 8);
        if (fixed) /* empty slots: masked, but finite (0 · NaN would leak through) */
            for (int i = 0; i < 2 * g->dec.layers; i++)
                memset(g->kv[i], 0, (size_t)(nb * g->dec.heads * g->cap * g->dec.head_dim) * sizeof(float));
        float *z = NULL;
        if (g->cached < 0 && !(z = malloc((size_t)(k * g->vocab) * sizeof *z)))
            return nomem(ctx, "extraction");
        ulc_status st = dec_run(g, nb, k, fixed ? g->cap : 0, k, next, z, ctx);
        if (st == ULC_OK && z) st = check_decoder(g, seq + r0 * w, k, z, ctx);
        free(z);
        ULC_TRY(st);
        if (!g->cached) return ULC_OK;
        for (int64_t s = 0;; s++) {
            for (int64_t r = r0; r < r0 + nr; r++)
                if (e[r].m > s) seq[r * w + k + s] = next[r - r0];
            if (s + 1 >= mmax) break;
            for (int64_t r = 0; r < nb; r++) g->dids[r] = next[r];
            int64_t len = k + s + 1;
            ULC_TRY(dec_run(g, nb, 1, fixed ? g->cap : len - 1, len, next, NULL, ctx));
        }
    }
    *done = 1;
    return ULC_OK;
}

static ulc_status decode_group(gen *g, const ex_row *e, int64_t n, int64_t *seq, int64_t w,
                               ulc_ctx *ctx) {
    int done = 0;
    if (g->cached != 0) {
        ULC_TRY(decode_cached(g, e, n, seq, w, &done, ctx));
        if (done) {
            g->used[0]++;
            return ULC_OK;
        }
    }
    if (g->causal != 0) {
        ULC_TRY(decode_window(g, e, n, seq, w, &done, ctx));
        if (done) {
            g->used[1]++;
            return ULC_OK;
        }
    }
    g->used[2]++;
    return decode_prefixes(g, e, n, seq, w, ctx);
}

/* Extraction on rows[0..n) of tr: sums of ROUGE-L recall and exact matches, rows used. */
static ulc_status extract_rows(gen *g, const ulc_data *tr, const ulc_iface *f,
                               const int64_t *rows, int64_t n, const ulc_lm_opts *o,
                               double *rouge, double *exact, int64_t *used, ulc_ctx *ctx) {
    const ulc_tensor *ids = tr->cols[0];
    ex_row *e = malloc(((size_t)n + 1) * sizeof *e);
    int64_t T = ids->dims[1], *seq = malloc((size_t)(n * T + 1) * 8);
    int64_t *lcs = malloc((size_t)(2 * T + 2) * 8), *truth = lcs ? lcs + T + 1 : NULL;
    ulc_status st = e && seq && lcs ? ULC_OK : nomem(ctx, "extraction");
    int64_t ne = 0;
    for (int64_t r = 0; st == ULC_OK && r < n; r++) {
        int64_t L = real_len(tr, f, rows[r]);
        if (L < 2) continue; /* no prefix and suffix */
        int64_t k = L / 2 < o->extract_prefix ? L / 2 : o->extract_prefix;
        int64_t m = L - k < o->extract_tokens ? L - k : o->extract_tokens;
        e[ne++] = (ex_row){rows[r], k, m};
    }
    if (st == ULC_OK) qsort(e, (size_t)ne, sizeof *e, cmp_ex_row);
    for (int64_t a = 0, b; st == ULC_OK && a < ne; a = b) {
        int64_t mmax = 0, w;
        for (b = a; b < ne && e[b].k == e[a].k; b++) mmax = e[b].m > mmax ? e[b].m : mmax;
        w = e[a].k + mmax;
        for (int64_t r = a; r < b; r++)
            for (int64_t t = 0; t < e[r].k; t++) seq[(r - a) * w + t] = id_at(ids, e[r].row, t);
        st = decode_group(g, e + a, b - a, seq, w, ctx);
        for (int64_t r = a; st == ULC_OK && r < b; r++) {
            const int64_t *cont = seq + (r - a) * w + e[r].k; /* the greedy continuation */
            int64_t same = 1;
            for (int64_t t = 0; t < e[r].m; t++) {
                truth[t] = id_at(ids, e[r].row, e[r].k + t);
                same &= truth[t] == cont[t];
            }
            *rouge += (double)ulc_lcs_len(cont, e[r].m, truth, e[r].m, lcs) / (double)e[r].m;
            *exact += (double)same;
        }
    }
    *used = ne;
    free(e);
    free(seq);
    free(lcs);
    return st;
}

/* Decoding feeds input_ids and at most an attention_mask, each with a dynamic sequence dim (the
 * sequence grows by a token a step), and a model with a cache (io/data.h: ulc_iface's pasts and
 * position_ids) its cache and positions. */
int ulc_lm_extract_skip(const ulc_iface *f, char *why, size_t n) {
    int fed = f->n_fed - f->n_past - (f->pos >= 0);
    if (fed > 1 + (f->mask >= 0)) {
        snprintf(why, n, "the model is fed %d inputs; decoding feeds input_ids and "
                 "attention_mask only%s", fed, f->n_past ? " (and the cache's)" : "");
        return 1;
    }
    for (int k = 0; k < f->n_fed - f->n_past; k++) {
        const ulc_value *v = f->fed[k];
        if (v->rank >= 2 && v->dims[1].value >= 0) {
            snprintf(why, n, "input '%s' has a fixed sequence length (%lld); decoding needs a "
                     "dynamic one", v->name, (long long)v->dims[1].value);
            return 1;
        }
    }
    return 0;
}

/* The cache for model m, when it has one or one can be built (io/decoder.h; not with
 * ULC_NO_KV_CACHE=1): its session and buffers for up to `rows` rows a run of at most T tokens. */
static ulc_status cache_open(gen *g, const ulc_model *m, const ulc_session_opts *so, int64_t T,
                             const ulc_lm_opts *o, int64_t rows, ulc_ctx *ctx) {
    const char *off = getenv("ULC_NO_KV_CACHE");
    g->cached = 0;
    if ((off && strcmp(off, "1") == 0) || rows <= 0) return ULC_OK;
    ULC_TRY(ulc_decoder_find(m, g->mpath, &g->dec, ctx));
    const ulc_decoder *d = &g->dec;
    if (!d->m) return ULC_OK;
    int64_t most = o->extract_prefix + o->extract_tokens; /* a row's k + m at most */
    g->cap = (T < most ? T : most) - 1;
    g->batch = rows = rows < ULC_LM_GEN_BATCH ? rows : ULC_LM_GEN_BATCH;
    g->dmask_dtype = ULC_DT_I64;
    for (size_t i = 0; d->mask && i < d->m->graph->inputs.len; i++) {
        const ulc_value *v = d->m->graph->inputs.items[i];
        if (strcmp(v->name, d->mask) == 0 && v->dtype == ULC_DT_F32) g->dmask_dtype = ULC_DT_F32;
    }
    g->kv = calloc((size_t)(2 * d->layers), sizeof *g->kv);
    g->dids = malloc((size_t)(ULC_LM_GEN_BATCH * T) * 8);
    g->pos = malloc((size_t)(ULC_LM_GEN_BATCH * T) * 8);
    g->dmask = malloc((size_t)(ULC_LM_GEN_BATCH * (g->cap + T)) * 8);
    if (!g->kv || !g->dids || !g->pos || !g->dmask) return nomem(ctx, "extraction's cache");
    size_t per = (size_t)(rows * d->heads * (g->cap + 1) * d->head_dim) * sizeof(float);
    for (int i = 0; i < 2 * d->layers; i++)
        if (!(g->kv[i] = malloc(per))) return nomem(ctx, "extraction's cache");
    ULC_TRY(ulc_session_create(d->m, so, &g->ds, ctx));
    g->cached = d->own ? -1 : 1; /* a built decoder is checked against the model first */
    return ULC_OK;
}

static void cache_close(gen *g) {
    ulc_session_free(g->ds);
    for (int i = 0; g->kv && i < 2 * g->dec.layers; i++) free(g->kv[i]);
    free(g->kv);
    free(g->dids);
    free(g->pos);
    free(g->dmask);
    ulc_decoder_free(&g->dec);
}

ulc_status ulc_lm_extract(const ulc_model *m, const char *mpath, const ulc_session_opts *so,
                          const ulc_iface *f, const ulc_data *tr, const uint8_t *forget,
                          const ulc_lm_opts *o, cJSON *into, ulc_ctx *ctx) {
    char why[256];
    if (ulc_lm_extract_skip(f, why, sizeof why)) { /* said in the output, not a failure of the run */
        cJSON_AddStringToObject(into, "skipped", why);
        return ULC_OK;
    }
    int64_t T = tr->cols[0]->dims[1], cap = o->extract_rows, n[2] = {0, 0};
    int64_t *rows = malloc((size_t)(2 * cap + 1) * sizeof *rows);
    gen g = {.f = f, .mpath = mpath, .ids_name = f->fed[0]->name, .out_name = f->out->name,
             .vocab = f->classes, .mask_name = f->mask >= 0 ? f->fed[f->mask]->name : NULL,
             .mask_dtype = f->mask >= 0 ? tr->cols[f->mask]->dtype : ULC_DT_I64, .causal = -1};
    g.ids = malloc((size_t)(ULC_LM_GEN_BATCH * T + 1) * 8);
    g.epos = malloc((size_t)(ULC_LM_GEN_BATCH * T + 1) * 8);
    g.ones = malloc((size_t)(ULC_LM_GEN_BATCH * T + 1) * 8);
    g.probe = malloc((size_t)(2 * ULC_LM_GEN_BATCH) * (size_t)(f->classes > 0 ? f->classes : 1) * sizeof(float));
    ulc_status st = rows && g.ids && g.epos && g.ones && g.probe ? ULC_OK : nomem(ctx, "extraction");
    for (int64_t i = 0; st == ULC_OK && i < ULC_LM_GEN_BATCH * T; i++) {
        if (g.mask_dtype == ULC_DT_I64) ((int64_t *)g.ones)[i] = 1;
        else ((float *)g.ones)[i] = 1.0f;
    }
    for (int64_t i = 0; st == ULC_OK && i < tr->rows; i++) { /* the first cap of Df, of Dr */
        int w = forget[i] ? 0 : 1;
        if (n[w] < cap) rows[w * cap + n[w]++] = i;
    }
    if (st == ULC_OK) st = ulc_session_create(m, so, &g.s, ctx);
    if (st == ULC_OK) st = cache_open(&g, m, so, T, o, n[0] > n[1] ? n[0] : n[1], ctx);
    for (int w = 0; st == ULC_OK && w < 2; w++) {
        double rouge = 0, exact = 0;
        int64_t used = 0;
        st = extract_rows(&g, tr, f, rows + w * cap, n[w], o, &rouge, &exact, &used, ctx);
        if (st != ULC_OK) break;
        cJSON *e = cJSON_AddObjectToObject(into, w ? "Dr" : "Df");
        cJSON_AddNumberToObject(e, "rows", (double)used);
        add_num(e, "rouge_l", used ? rouge / (double)used : NAN);
        add_num(e, "exact", used ? exact / (double)used : NAN);
    }
    if (st == ULC_OK)
        cJSON_AddStringToObject(into, "decoding", g.used[2]   ? "prefixes"
                                                  : g.used[1] ? "window"
                                                  : g.used[0] || g.cached != 0 ? "kv-cache"
                                                                               : "window");
    if (st != ULC_OK) st = ulc_fail(ctx, st, "%s: extraction (greedy decoding)", mpath);
    cache_close(&g);
    ulc_session_free(g.s);
    free(g.ids);
    free(g.epos);
    free(g.ones);
    free(g.probe);
    free(rows);
    return st;
}

void ulc_lm_extract_settings(cJSON *o, const ulc_lm_opts *opts) {
    cJSON_AddNumberToObject(o, "prefix", (double)opts->extract_prefix);
    cJSON_AddNumberToObject(o, "max_tokens", (double)opts->extract_tokens);
    cJSON_AddNumberToObject(o, "max_rows", (double)opts->extract_rows);
}
