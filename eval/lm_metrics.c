/* lm_metrics.c — language-model metrics over plain arrays (see lm_metrics.h). */
#include "eval/lm_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double ulc_token_logprob(const float *z, int64_t v, int64_t y) {
    double m = -INFINITY;
    for (int64_t c = 0; c < v; c++) {
        if (isnan(z[c])) return NAN;
        if (z[c] > m) m = z[c];
    }
    if (m == -INFINITY) return NAN; /* every logit -inf: no distribution */
    double s = 0;
    for (int64_t c = 0; c < v; c++) s += exp((double)z[c] - m);
    return ((double)z[y] - m) - log(s);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ulc_mink_score(double *lp, int64_t n, double frac) {
    if (n <= 0) return NAN;
    qsort(lp, (size_t)n, sizeof *lp, cmp_double);
    int64_t k = (int64_t)floor(frac * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    double s = 0;
    for (int64_t i = 0; i < k; i++) s += lp[i];
    return s / (double)k;
}

int64_t ulc_lcs_len(const int64_t *a, int64_t na, const int64_t *b, int64_t nb, int64_t *row) {
    /* row[j] = LCS(a[0..i), b[0..j)) for the current i, updated in place with the diagonal kept */
    for (int64_t j = 0; j <= nb; j++) row[j] = 0;
    for (int64_t i = 0; i < na; i++) {
        int64_t diag = 0; /* LCS(a[0..i), b[0..j)) before row[j] is overwritten */
        for (int64_t j = 1; j <= nb; j++) {
            int64_t up = row[j];
            row[j] = a[i] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    return row[nb];
}

/* A sorted copy of x[0..n) (n + 1 doubles allocated). */
static double *sorted_copy(const double *x, int64_t n) {
    double *s = malloc(((size_t)n + 1) * sizeof *s);
    if (!s) return NULL;
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return s;
}

/* The number of entries of sorted s [n] below x (strict = 1) or at most x (strict = 0). */
static int64_t count_below(const double *s, int64_t n, double x, int strict) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (strict ? s[mid] < x : s[mid] <= x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

ulc_status ulc_auc(const double *pos, int64_t np, const double *neg, int64_t nn, double *auc,
                   ulc_ctx *ctx) {
    if (np <= 0 || nn <= 0) {
        *auc = NAN;
        return ULC_OK;
    }
    double *s = sorted_copy(neg, nn);
    if (!s) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (AUC)");
    double u = 0;
    for (int64_t i = 0; i < np; i++) {
        int64_t lt = count_below(s, nn, pos[i], 1), le = count_below(s, nn, pos[i], 0);
        u += (double)lt + 0.5 * (double)(le - lt);
    }
    free(s);
    *auc = u / ((double)np * (double)nn);
    return ULC_OK;
}

ulc_status ulc_threshold_balanced(const double *mem, int64_t nm, const double *non, int64_t nn,
                                  double *t, double *bacc, ulc_ctx *ctx) {
    if (nm <= 0 || nn <= 0)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "threshold: %lld members, %lld non-members "
                        "(both are needed)", (long long)nm, (long long)nn);
    double *sm = sorted_copy(mem, nm), *sn = sorted_copy(non, nn);
    if (!sm || !sn) {
        free(sm);
        free(sn);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (attack threshold)");
    }
    /* +inf first: nobody is called member (TPR 0, TNR 1, balanced accuracy 1/2); then every
     * distinct value ascending; a later one wins only when strictly better */
    double best_t = INFINITY, best = 0.5;
    int64_t i = 0, j = 0;
    while (i < nm || j < nn) {
        double x = i < nm && (j >= nn || sm[i] <= sn[j]) ? sm[i] : sn[j];
        int64_t mem_ge = nm - count_below(sm, nm, x, 1), non_lt = count_below(sn, nn, x, 1);
        double ba = 0.5 * ((double)mem_ge / (double)nm + (double)non_lt / (double)nn);
        if (ba > best) {
            best = ba;
            best_t = x;
        }
        while (i < nm && sm[i] <= x) i++;
        while (j < nn && sn[j] <= x) j++;
    }
    free(sm);
    free(sn);
    *t = best_t;
    *bacc = best;
    return ULC_OK;
}

ulc_status ulc_lm_attack(const double *target, int64_t nt, const double *mem, int64_t nm,
                         const double *non, int64_t nn, ulc_lm_attack_result *r, ulc_ctx *ctx) {
    memset(r, 0, sizeof *r);
    r->n_members = nm;
    r->n_nonmembers = nn;
    r->n_target = nt;
    if (nt <= 0)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "membership attack: no target rows");
    ULC_TRY(ulc_auc(target, nt, non, nn, &r->auc, ctx));
    ULC_TRY(ulc_threshold_balanced(mem, nm, non, nn, &r->threshold, &r->attacker_bacc, ctx));
    int64_t called = 0;
    for (int64_t i = 0; i < nt; i++) called += target[i] >= r->threshold;
    r->member_frac = (double)called / (double)nt;
    return ULC_OK;
}
