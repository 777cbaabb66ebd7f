/* score.c — models scored on data files and on the forget splits (see score.h). */
#include "eval/score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/lm_metrics.h"

void ulc_eval_rows(const ulc_iface *f, const ulc_data *df, ulc_rows *r) {
    memset(r, 0, sizeof *r);
    for (int k = 0; k < f->n_fed && k < ULC_ROWS_MAX_FEEDS; k++) {
        r->names[k] = f->fed[k]->name;
        r->cols[k] = df->cols[k];
    }
    r->n_feeds = f->n_fed < ULC_ROWS_MAX_FEEDS ? f->n_fed : ULC_ROWS_MAX_FEEDS;
    r->file = df->path;
    r->n = df->rows;
}

ulc_status ulc_eval_probe(ulc_session *s, const char *model_path, ulc_iface *f,
                          const ulc_data *df, ulc_ctx *ctx) {
    ulc_rows r;
    ulc_eval_rows(f, df, &r);
    r.n = 1;
    r.max_rows = 1;
    ulc_status st = df->rows ? ulc_rows_run(s, &r, NULL, NULL, NULL, ctx)
                             : ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): the data has no rows",
                                        df->path, df->key);
    if (st != ULC_OK)
        return ulc_fail(ctx, st, "%s: running the model on row 0 of %s", model_path, df->path);
    const ulc_rt_tensor *o = ulc_session_output(s, f->out->name);
    char sh[160];
    if (o && o->dtype == ULC_DT_F32 && o->dims[0] == 1 && o->rank == 2 && o->dims[1] >= 1) {
        f->classes = o->dims[1];
        return ULC_OK;
    }
    const ulc_tensor *x = df->cols[0];
    if (o && o->dtype == ULC_DT_F32 && o->dims[0] == 1 && o->rank == 3 && o->dims[2] >= 1 &&
        x->dtype == ULC_DT_I64 && x->rank == 2 && o->dims[1] == x->dims[1]) {
        f->classes = o->dims[2];
        f->next_token = 1;
        return ULC_OK;
    }
    return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is %s for one row; forget needs float32 "
                    "class scores [N, classes] (or next-token logits [N, T, vocab] for a model "
                    "fed token ids [N, T])", model_path, f->out->name,
                    o ? ulc_rt_shape_str(o, sh, sizeof sh) : "missing");
}

void ulc_row_scores_clear(ulc_row_scores *r) {
    double k = r->mink_frac;
    free(r->pred);
    free(r->ok);
    free(r->entropy);
    free(r->conf);
    free(r->nll);
    free(r->mink);
    memset(r, 0, sizeof *r);
    r->mink_frac = k;
}

static int64_t argmax_f32(const float *x, int64_t n) {
    int64_t best = 0;
    float bv = -INFINITY;
    for (int64_t c = 0; c < n; c++)
        if (x[c] > bv) { /* NaN never wins */
            bv = x[c];
            best = c;
        }
    return best;
}

static int mask_at(const ulc_tensor *m, int64_t i) {
    if (m->dtype == ULC_DT_I64) {
        int64_t v;
        memcpy(&v, (const uint8_t *)m->data + 8 * (size_t)i, 8);
        return v != 0;
    }
    float v;
    memcpy(&v, (const uint8_t *)m->data + 4 * (size_t)i, 4);
    return v != 0;
}

typedef struct score_arg {
    const char *model_name;
    const ulc_iface *f;
    const ulc_data *df;
    ulc_row_scores *rs;
    double *p; /* [classes] softmax scratch (classifiers); [T] token log-probs (text) */
} score_arg;

/* Next-token scores of rows b0 .. b0 + bn (logits z [bn, T, V]): logits at t predict input_ids
 * at t + 1. Also each row's token NLL and Min-K% Prob (docs/metrics.md, "Language models"). The
 * positions' log-softmax and argmax run in parallel, each position on its own, and the sums in
 * row order: the numbers do not depend on the thread count. */
static ulc_status score_text(const score_arg *a, int64_t b0, int64_t bn, const float *z,
                             ulc_ctx *ctx) {
    const ulc_iface *f = a->f;
    const ulc_data *df = a->df;
    const ulc_tensor *ids = df->cols[0];
    int64_t T = ids->dims[1], c = f->classes, w = T > 1 ? T - 1 : 0, np = bn * w;
    int64_t *y = malloc((size_t)np * sizeof *y + 8); /* the next token, -1 where masked out */
    double *lp = malloc((size_t)np * sizeof *lp + 8);
    uint8_t *hit = malloc((size_t)np + 1);
    ulc_status st = y && lp && hit ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (scores)");
    for (int64_t q = 0; st == ULC_OK && q < np; q++) {
        int64_t i = b0 + q / w, t = q % w;
        memcpy(&y[q], (const uint8_t *)ids->data + 8 * (size_t)(i * T + t + 1), 8);
        if (f->mask >= 0 && !mask_at(df->cols[f->mask], i * T + t + 1)) y[q] = -1;
        else if (y[q] < 0 || y[q] >= c)
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): input_ids[%lld, %lld] = %lld is outside "
                          "the model's vocabulary of %lld", df->path, df->key, (long long)i,
                          (long long)(t + 1), (long long)y[q], (long long)c);
    }
    if (st == ULC_OK) {
#pragma omp parallel for schedule(static) if (np * c >= (1 << 18))
        for (int64_t q = 0; q < np; q++) {
            if (y[q] < 0) continue;
            const float *zq = z + ((q / w) * T + q % w) * c;
            lp[q] = ulc_token_logprob(zq, c, y[q]);
            hit[q] = argmax_f32(zq, c) == y[q];
        }
    }
    for (int64_t r = 0; st == ULC_OK && r < bn; r++) {
        int64_t i = b0 + r, n = 0;
        double nll = 0;
        for (int64_t q = r * w; q < (r + 1) * w; q++) {
            if (y[q] < 0) continue;
            a->rs->pred[i]++;
            a->rs->ok[i] += hit[q];
            nll -= lp[q];
            a->p[n++] = lp[q];
        }
        a->rs->nll[i] = nll;
        a->rs->mink[i] = ulc_mink_score(a->p, n, a->rs->mink_frac);
    }
    free(y);
    free(lp);
    free(hit);
    return st;
}

static ulc_status score_batch(void *arg, ulc_session *s, int64_t b0, int64_t bn, ulc_ctx *ctx) {
    const score_arg *a = arg;
    const ulc_iface *f = a->f;
    const ulc_data *df = a->df;
    const ulc_rt_tensor *o = ulc_session_output(s, f->out->name);
    int64_t c = f->classes;
    int want_rank = f->next_token ? 3 : 2;
    if (!o || o->dtype != ULC_DT_F32 || o->rank != want_rank || o->dims[0] != bn ||
        o->dims[o->rank - 1] != c) {
        char sh[160];
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is %s for %lld rows of %s "
                        "(expected [%lld, %s%lld])", a->model_name, f->out->name,
                        o ? ulc_rt_shape_str(o, sh, sizeof sh) : "missing", (long long)bn,
                        df->path, (long long)bn, f->next_token ? "T, " : "", (long long)c);
    }
    const float *z = o->data;
    if (f->next_token) return score_text(a, b0, bn, z, ctx);
    for (int64_t r = 0; r < bn; r++) {
        int64_t i = b0 + r;
        int64_t y = ulc_data_label(df, i);
        if (y < 0 || y >= c)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): label[%lld] = %lld is outside "
                            "the model's %lld classes (output '%s')", df->path, df->key,
                            (long long)i, (long long)y, (long long)c, f->out->name);
        a->rs->pred[i] = 1;
        a->rs->ok[i] = argmax_f32(z + r * c, c) == y;
        ulc_softmax(z + r * c, c, a->p);
        a->rs->entropy[i] = ulc_entropy(a->p, c);
        a->rs->conf[i] = a->p[y];
    }
    return ULC_OK;
}

ulc_status ulc_eval_score_rows(ulc_session *s, const char *model_name, const ulc_iface *f,
                               const ulc_data *df, ulc_row_scores *rs, ulc_ctx *ctx) {
    size_t n = (size_t)df->rows;
    rs->pred = calloc(n + 1, sizeof *rs->pred);
    rs->ok = calloc(n + 1, sizeof *rs->ok);
    int text = f->next_token;
    rs->entropy = text ? NULL : calloc(n + 1, sizeof *rs->entropy);
    rs->conf = text ? NULL : calloc(n + 1, sizeof *rs->conf);
    rs->nll = text ? calloc(n + 1, sizeof *rs->nll) : NULL;
    rs->mink = text ? calloc(n + 1, sizeof *rs->mink) : NULL;
    double *p = malloc((size_t)(text ? df->cols[0]->dims[1] : f->classes) * sizeof *p + 1);
    rs->mink_frac = rs->mink_frac > 0 ? rs->mink_frac : ULC_LM_MINK;
    if (!rs->pred || !rs->ok || !p || (!text && (!rs->entropy || !rs->conf)) ||
        (text && (!rs->nll || !rs->mink))) {
        free(p);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (scores)");
    }
    if (!f->next_token && !df->label) {
        free(p);
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (%s): no tensor 'label' (int64 [N]): the "
                        "accuracy of a classifier needs labels", df->path, df->key);
    }
    ulc_rows r;
    ulc_eval_rows(f, df, &r);
    score_arg a = {.model_name = model_name, .f = f, .df = df, .rs = rs, .p = p};
    int64_t at;
    ulc_status st = ulc_rows_run(s, &r, score_batch, &a, &at, ctx);
    if (st != ULC_OK && at >= 0)
        st = ulc_fail(ctx, st, "%s on %s: the batch at row %lld", model_name, df->path,
                      (long long)at);
    free(p);
    return st;
}

/* ---- the splits ------------------------------------------------------------------------------ */

void ulc_scores_clear(ulc_scores *sc) {
    double k = sc->mink_frac;
    for (int w = 0; w < 2; w++) {
        free(sc->cls[w]);
        free(sc->entropy[w]);
        free(sc->conf[w]);
        free(sc->loss[w]);
        free(sc->mink[w]);
    }
    memset(sc, 0, sizeof *sc);
    sc->mink_frac = k;
}

double ulc_scores_ppl(const ulc_scores *sc, int split) {
    const ulc_tally *t = &sc->split[split];
    return t->pred ? exp(sc->nll[split] / (double)t->pred) : NAN;
}

static void tally_add(ulc_tally *t, const ulc_row_scores *rs, int64_t i) {
    t->rows++;
    t->pred += rs->pred[i];
    t->ok += rs->ok[i];
}

ulc_status ulc_eval_score_splits(ulc_session *s, const char *model_name, const ulc_iface *f,
                                 const ulc_data *tr, const ulc_data *te, const ulc_splits *sp,
                                 ulc_scores *out, ulc_ctx *ctx) {
    ulc_scores_clear(out);
    for (int which = 0; which < 2; which++) {
        const ulc_data *df = which ? te : tr;
        const uint8_t *split = which ? sp->test : sp->train;
        if (!df) continue;
        ulc_row_scores rs = {.mink_frac = out->mink_frac};
        ulc_status st = ulc_eval_score_rows(s, model_name, f, df, &rs, ctx);
        ulc_tally *cls = NULL;
        if (st == ULC_OK && !f->next_token &&
            !(cls = out->cls[which] = calloc((size_t)f->classes, sizeof *cls)))
            st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (scores)");
        for (int64_t i = 0; st == ULC_OK && i < df->rows; i++) {
            tally_add(&out->split[split[i]], &rs, i);
            if (cls) tally_add(&cls[ulc_data_label(df, i)], &rs, i); /* label checked */
            if (!f->next_token) continue;
            out->nll[split[i]] += rs.nll[i];
            rs.nll[i] = rs.pred[i] ? -rs.nll[i] / rs.pred[i] : NAN; /* the loss score, in place */
        }
        out->entropy[which] = rs.entropy;
        out->conf[which] = rs.conf;
        out->loss[which] = rs.nll;
        out->mink[which] = rs.mink;
        rs.entropy = rs.conf = rs.nll = rs.mink = NULL;
        ulc_row_scores_clear(&rs);
        ULC_TRY(st);
    }
    return ULC_OK;
}

ulc_status ulc_eval_mia(const ulc_data *tr, const ulc_data *te, const ulc_splits *sp,
                        const ulc_scores *sc, int svm, ulc_mia_result *res, ulc_ctx *ctx) {
    double *const *feat = svm ? sc->conf : sc->entropy;
    int64_t nm = sp->rows[ULC_SPLIT_DR], nf = sp->rows[ULC_SPLIT_DF];
    double *mem = malloc((size_t)(nm + 1) * sizeof *mem);
    double *tgt = malloc((size_t)(nf + 1) * sizeof *tgt);
    double *non = malloc((size_t)(te->rows + 1) * sizeof *non);
    if (!mem || !tgt || !non) {
        free(mem);
        free(tgt);
        free(non);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (MIA)");
    }
    int64_t a = 0, b = 0, c = 0;
    for (int64_t i = 0; i < tr->rows; i++) {
        if (sp->train[i] == ULC_SPLIT_DR) mem[a++] = feat[0][i];
        else tgt[b++] = feat[0][i];
    }
    for (int64_t i = 0; i < te->rows; i++)
        if (!sp->test || sp->test[i] != ULC_SPLIT_DFT) non[c++] = feat[1][i];
    ulc_status st = svm ? ulc_mia_svm(mem, a, non, c, tgt, b, res, ctx)
                        : ulc_mia_logreg(mem, a, non, c, tgt, b, res, ctx);
    free(mem);
    free(tgt);
    free(non);
    return st;
}
