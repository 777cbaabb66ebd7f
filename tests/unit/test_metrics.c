/*
 * test_metrics.c — unit tests for eval/metrics.h on small hand-computed cases: softmax and
 * entropy, H-mean, activation distance, L1 feature distance, linear CKA (both computation paths),
 * the logistic regression on separable and non-separable toys, and the SMO solver on a toy; and
 * eval/lm_metrics.h: token log-probabilities, Min-K% Prob, LCS (ROUGE-L), AUC with ties, the
 * balanced-accuracy threshold and the LM membership attack; the CLIP Q/U scores.
 * CHECK records a failure and continues; ends with "N passed, M failed".
 *
 * Also a driver for tests/e2e/test_eval_forget.py, which compares the attackers with sklearn:
 *   test_metrics --logreg FILE   prints "w b" then one 0/1 prediction per query
 *   test_metrics --svm FILE      prints one "prediction decision" line per query
 * FILE: "n m", then n lines "x y" (y 0 or 1), then m lines "x" (queries).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/lm_metrics.h"
#include "eval/metrics.h"

#include "tests/unit/check.h"

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void test_softmax_entropy(void) {
    float z[4] = {0, 0, 0, 0};
    double p[4];
    ulc_softmax(z, 4, p);
    for (int k = 0; k < 4; k++) CHECK(near(p[k], 0.25, 1e-15));
    CHECK(near(ulc_entropy(p, 4), log(4.0), 1e-15));
    float z2[3] = {-INFINITY, 1000.0f, 1000.0f}; /* -inf gets 0; large logits do not overflow */
    ulc_softmax(z2, 3, p);
    CHECK(p[0] == 0.0 && near(p[1], 0.5, 1e-15) && near(p[2], 0.5, 1e-15));
    CHECK(near(ulc_entropy(p, 3), log(2.0), 1e-15)); /* 0 · log 0 = 0 */
    double one[3] = {0, 1, 0};
    CHECK(ulc_entropy(one, 3) == 0.0);
}

static void test_hmean(void) {
    CHECK(near(ulc_hmean(0.9, 0.8), 1.44 / 1.7, 1e-15));
    CHECK(near(ulc_hmean(95.31, 97.0), 2 * 95.31 * 97.0 / (95.31 + 97.0), 1e-12));
    CHECK(ulc_hmean(0.0, 0.9) == 0.0);
    CHECK(ulc_hmean(0.9, -3.0) == 0.0);
    CHECK(near(ulc_hmean(0.5, 0.5), 0.5, 1e-15));
}

static void test_distances(void) {
    /* row 0: softmax [0, 0] = [.5, .5] vs softmax [log 3, 0] = [.75, .25]: sqrt(2 · 1/16);
     * row 1: identical */
    float za[4] = {0, 0, 1, 2}, zb[4] = {(float)log(3.0), 0, 1, 2};
    double d = ulc_activation_distance(za, zb, 2, 2);
    CHECK(near(d, sqrt(0.125) / 2, 1e-7));
    CHECK(ulc_activation_distance(za, zb, 0, 2) == 0.0);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 3, 5, 5, 3};
    CHECK(near(ulc_feature_l1(a, b, 2, 3), (2.0 + 4.0) / 2, 1e-15));
}

static void test_cka(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    /* by hand: X = [[1,0],[0,1],[0,0]], Y = [1,2,3]ᵀ. Centred: YᵀX = [-1, 0], ||·||² = 1;
     * XᵀX = [[2/3,-1/3],[-1/3,2/3]], ||·||_F = √10/3; YᵀY = 2. CKA = 3 / (2√10). */
    float x[6] = {1, 0, 0, 1, 0, 0}, y[3] = {1, 2, 3};
    double c = 0;
    CHECK(ulc_cka_linear(x, 3, 2, 2, y, 1, 1, &c, &ctx) == ULC_OK);
    CHECK(near(c, 3.0 / (2.0 * sqrt(10.0)), 1e-12));
    /* the same through the Gram path: 48 zero columns added (p > n) */
    float xw[3 * 50] = {0};
    for (int i = 0; i < 3; i++) xw[i * 50] = x[i * 2], xw[i * 50 + 1] = x[i * 2 + 1];
    CHECK(ulc_cka_linear(xw, 3, 50, 50, y, 1, 1, &c, &ctx) == ULC_OK);
    CHECK(near(c, 3.0 / (2.0 * sqrt(10.0)), 1e-12));
    /* CKA(X, X) = 1 and CKA(X, XQ) = 1 for a rotation Q, on 5 rows of 2 (direct) and 4 rows of 40
     * (Gram) */
    float r[5 * 2] = {0.3f, -1.2f, 2.0f, 0.1f, -0.7f, 0.4f, 1.1f, 1.9f, -0.2f, -0.5f}, rq[5 * 2];
    double th = 0.7, cs = cos(th), sn = sin(th);
    for (int i = 0; i < 5; i++) {
        rq[i * 2] = (float)(cs * r[i * 2] - sn * r[i * 2 + 1]);
        rq[i * 2 + 1] = (float)(sn * r[i * 2] + cs * r[i * 2 + 1]);
    }
    CHECK(ulc_cka_linear(r, 5, 2, 2, r, 2, 2, &c, &ctx) == ULC_OK && near(c, 1.0, 1e-12));
    CHECK(ulc_cka_linear(r, 5, 2, 2, rq, 2, 2, &c, &ctx) == ULC_OK && near(c, 1.0, 1e-6));
    float big[4 * 40], bigq[4 * 40];
    for (int i = 0; i < 4 * 40; i++) big[i] = (float)sin(1.0 + 0.37 * i * i);
    for (int i = 0; i < 4; i++) /* rotate each consecutive pair of columns */
        for (int k = 0; k < 40; k += 2) {
            float u = big[i * 40 + k], v = big[i * 40 + k + 1];
            bigq[i * 40 + k] = (float)(cs * u - sn * v);
            bigq[i * 40 + k + 1] = (float)(sn * u + cs * v);
        }
    CHECK(ulc_cka_linear(big, 4, 40, 40, big, 40, 40, &c, &ctx) == ULC_OK && near(c, 1.0, 1e-12));
    CHECK(ulc_cka_linear(big, 4, 40, 40, bigq, 40, 40, &c, &ctx) == ULC_OK && near(c, 1.0, 1e-6));
    /* strides: the first 2 columns of big against themselves */
    CHECK(ulc_cka_linear(big, 4, 2, 40, big, 2, 40, &c, &ctx) == ULC_OK && near(c, 1.0, 1e-12));
    /* a constant side has no CKA */
    float k3[3] = {2, 2, 2};
    CHECK(ulc_cka_linear(k3, 3, 1, 1, y, 1, 1, &c, &ctx) == ULC_OK && isnan(c));
    CHECK(ulc_cka_linear(y, 1, 1, 1, y, 1, 1, &c, &ctx) == ULC_ERR_INVALID_ARG);
}

static double sig(double z) { return 1.0 / (1.0 + exp(-z)); }

static void test_logreg(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_logreg m;
    /* separable and symmetric: b = 0 and w solves w = 4σ(-2w) + 2σ(-w) (the gradient's zero) */
    double x[4] = {-2, -1, 1, 2};
    uint8_t y[4] = {0, 0, 1, 1};
    CHECK(ulc_logreg_fit(x, y, 4, 1.0, 1, &m, &ctx) == ULC_OK);
    CHECK(near(m.b, 0.0, 1e-10));
    CHECK(near(m.w, 4 * sig(-2 * m.w) + 2 * sig(-m.w), 1e-10));
    CHECK(m.w > 1.0 && m.w < 3.0);
    for (int i = 0; i < 4; i++) CHECK(ulc_logreg_predict(&m, x[i]) == y[i]);
    /* not separable, no signal: w = b = 0 exactly solves it; P = 0.5 predicts 0 */
    double x2[4] = {0, 0, 1, 1};
    uint8_t y2[4] = {0, 1, 0, 1};
    CHECK(ulc_logreg_fit(x2, y2, 4, 1.0, 1, &m, &ctx) == ULC_OK);
    CHECK(near(m.w, 0.0, 1e-12) && near(m.b, 0.0, 1e-12));
    CHECK(ulc_logreg_predict(&m, 0.5) == 0);
    /* unbalanced classes: with balancing, 1 positive among 3 weighs as much as 2 negatives.
     * x = [0, 0, 1], y = [0, 0, 1], weights 3/4, 3/4, 3/2. Stationarity:
     * ∂b: 1.5·σ(0·w+b)... checked through the gradient directly. */
    double x3[3] = {0, 0, 1};
    uint8_t y3[3] = {0, 0, 1};
    CHECK(ulc_logreg_fit(x3, y3, 3, 1.0, 1, &m, &ctx) == ULC_OK);
    double gb = 2 * 0.75 * sig(m.b) + 1.5 * (sig(m.w + m.b) - 1);
    double gw = m.w + 1.5 * (sig(m.w + m.b) - 1);
    CHECK(near(gb, 0.0, 1e-10) && near(gw, 0.0, 1e-10));
    uint8_t bad[3] = {0, 0, 0};
    CHECK(ulc_logreg_fit(x3, bad, 3, 1.0, 1, &m, &ctx) == ULC_ERR_INVALID_ARG);
}

static void test_svm(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_svm m;
    double x[4] = {-2, -1, 1, 2};
    uint8_t y[4] = {0, 0, 1, 1};
    CHECK(ulc_svm_fit(x, 1, y, 4, 3.0, 1.0, 1e-3, &m, &ctx) == ULC_OK);
    for (int i = 0; i < 4; i++) CHECK(ulc_svm_predict(&m, &x[i]) == y[i]);
    double zero = 0.0, a = 0.5, b = -0.5;
    CHECK(near(ulc_svm_decision(&m, &zero), 0.0, 1e-3)); /* symmetric data: 0 to SMO's tol */
    CHECK(near(ulc_svm_decision(&m, &a), -ulc_svm_decision(&m, &b), 1e-3));
    double sum = 0.0;
    for (int64_t k = 0; k < m.n_sv; k++) {
        sum += m.coef[k];
        CHECK(fabs(m.coef[k]) <= 3.0 + 1e-12); /* 0 <= α <= C */
    }
    CHECK(near(sum, 0.0, 1e-12)); /* yᵀα = 0 */
    /* the inner points are the support vectors; with two points the dual is solved by hand:
     * α = 1 / (1 - K(-1, 1)) each (K = e^{-4}), unless that exceeds C */
    ulc_svm_free(&m);
    double x2[2] = {-1, 1};
    uint8_t y2[2] = {0, 1};
    CHECK(ulc_svm_fit(x2, 1, y2, 2, 3.0, 1.0, 1e-6, &m, &ctx) == ULC_OK);
    CHECK(m.n_sv == 2);
    for (int64_t k = 0; k < m.n_sv; k++) CHECK(near(fabs(m.coef[k]), 1.0 / (1.0 - exp(-4.0)), 1e-9));
    ulc_svm_free(&m);
    /* labels may be given in any order; overlapping classes still train */
    double x3[6] = {0.1, 0.2, 0.15, 0.3, 0.25, 0.12};
    uint8_t y3[6] = {1, 0, 1, 0, 1, 0};
    CHECK(ulc_svm_fit(x3, 1, y3, 6, 3.0, 1.0, 1e-3, &m, &ctx) == ULC_OK);
    ulc_svm_free(&m);
}

static void test_mia(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    /* members have low entropy, non-members high: targets below the boundary count as members */
    double mem[4] = {0.0, 0.1, 0.2, 0.1}, non[3] = {1.5, 2.0, 1.8}, tgt[4] = {0.05, 2.1, 0.3, 1.9};
    ulc_mia_result r;
    CHECK(ulc_mia_logreg(mem, 4, non, 3, tgt, 4, &r, &ctx) == ULC_OK);
    CHECK(near(r.member_frac, 0.5, 1e-15) && r.train_acc == 1.0 && r.n_members == 4);
    CHECK(ulc_mia_svm(mem, 4, non, 3, tgt, 4, &r, &ctx) == ULC_OK);
    CHECK(near(r.member_frac, 0.5, 1e-15) && r.n_members == 3 && r.n_nonmembers == 3);
}

static void test_lm_metrics(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    /* log softmax: uniform over 4; large logits do not overflow; a -inf logit gets -inf */
    float z[4] = {0, 0, 0, 0}, z2[3] = {1000.0f, 1000.0f, -INFINITY};
    CHECK(near(ulc_token_logprob(z, 4, 2), -log(4.0), 1e-15));
    CHECK(near(ulc_token_logprob(z2, 3, 0), -log(2.0), 1e-15));
    CHECK(ulc_token_logprob(z2, 3, 2) == -INFINITY);
    /* Min-K%: k = max(1, floor(frac n)) lowest, sorted in place */
    double lp[5] = {-1, -5, -3, -2, -4};
    CHECK(ulc_mink_score(lp, 5, 0.2) == -5.0);
    CHECK(lp[0] == -5 && lp[4] == -1);
    CHECK(near(ulc_mink_score(lp, 5, 0.5), -4.5, 1e-15)); /* floor(2.5) = 2 */
    CHECK(ulc_mink_score(lp, 5, 0.01) == -5.0);           /* at least one token */
    CHECK(near(ulc_mink_score(lp, 5, 1.0), -3.0, 1e-15));
    CHECK(isnan(ulc_mink_score(lp, 0, 0.2)));
    /* LCS: ABCBDAB / BDCABA = 4 (BCBA); empty; identical; reversed */
    int64_t a[7] = {1, 2, 3, 2, 4, 1, 2}, b[6] = {2, 4, 3, 1, 2, 1}, sc[8];
    CHECK(ulc_lcs_len(a, 7, b, 6, sc) == 4);
    CHECK(ulc_lcs_len(b, 6, a, 7, sc) == 4);
    CHECK(ulc_lcs_len(a, 0, b, 6, sc) == 0 && ulc_lcs_len(a, 7, b, 0, sc) == 0);
    CHECK(ulc_lcs_len(a, 7, a, 7, sc) == 7);
    int64_t r1[3] = {1, 2, 3}, r2[3] = {3, 2, 1};
    CHECK(ulc_lcs_len(r1, 3, r2, 3, sc) == 1);
    /* AUC with a tie counted half: pairs (3,2) (3,0) (2,0) win, (2,2) ties, (1,0) wins, (1,2)
     * loses: 4.5 / 6 */
    double pos[3] = {3, 2, 1}, neg[2] = {2, 0}, auc = 0;
    CHECK(ulc_auc(pos, 3, neg, 2, &auc, &ctx) == ULC_OK && near(auc, 0.75, 1e-15));
    CHECK(ulc_auc(neg, 2, pos, 3, &auc, &ctx) == ULC_OK && near(auc, 0.25, 1e-15));
    CHECK(ulc_auc(pos, 3, neg, 0, &auc, &ctx) == ULC_OK && isnan(auc));
    /* threshold: t = 3 gives TPR 1, TNR 2/3; t = 4 ties (2/3, 1) and the smaller wins */
    double mem[3] = {5, 4, 3}, non[3] = {1, 2, 3}, t = 0, ba = 0;
    CHECK(ulc_threshold_balanced(mem, 3, non, 3, &t, &ba, &ctx) == ULC_OK);
    CHECK(t == 3.0 && near(ba, 5.0 / 6.0, 1e-15));
    CHECK(ulc_threshold_balanced(mem, 0, non, 3, &t, &ba, &ctx) == ULC_ERR_INVALID_ARG);
    /* no information: +inf (nobody called member) */
    double same[2] = {1, 2};
    CHECK(ulc_threshold_balanced(same, 2, same, 2, &t, &ba, &ctx) == ULC_OK);
    CHECK(t == INFINITY && ba == 0.5);
    /* the attack: AUC of the targets against the non-members, the fraction at or above t */
    double tgt[3] = {3, 2.5, 6};
    ulc_lm_attack_result r;
    CHECK(ulc_lm_attack(tgt, 3, mem, 3, non, 3, &r, &ctx) == ULC_OK);
    CHECK(near(r.auc, 7.5 / 9.0, 1e-15) && near(r.member_frac, 2.0 / 3.0, 1e-15));
    CHECK(r.threshold == 3.0 && r.n_members == 3 && r.n_nonmembers == 3 && r.n_target == 3);
    CHECK(ulc_lm_attack(tgt, 0, mem, 3, non, 3, &r, &ctx) == ULC_ERR_INVALID_ARG);
}

/* ---- the sklearn comparison driver ----------------------------------------------------------- */

static int driver(const char *mode, const char *path) {
    FILE *f = fopen(path, "r");
    long n = 0, m = 0;
    if (!f || fscanf(f, "%ld %ld", &n, &m) != 2 || n < 1 || m < 0) {
        fprintf(stderr, "%s: expected 'n m' first\n", path);
        if (f) fclose(f);
        return 2;
    }
    double *x = malloc((size_t)(n + m) * sizeof *x);
    uint8_t *y = malloc((size_t)n);
    int ok = x && y;
    for (long i = 0; ok && i < n; i++) {
        int yi;
        ok = fscanf(f, "%lf %d", &x[i], &yi) == 2 && (yi == 0 || yi == 1);
        if (ok) y[i] = (uint8_t)yi;
    }
    for (long i = 0; ok && i < m; i++) ok = fscanf(f, "%lf", &x[n + i]) == 1;
    fclose(f);
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    int rc = 0;
    if (!ok) {
        fprintf(stderr, "%s: malformed\n", path);
        rc = 2;
    } else if (!strcmp(mode, "--logreg")) {
        ulc_logreg lr;
        if (ulc_logreg_fit(x, y, n, 1.0, 1, &lr, &ctx) != ULC_OK) rc = 1;
        else {
            printf("%.17g %.17g\n", lr.w, lr.b);
            for (long i = 0; i < m; i++) printf("%d\n", ulc_logreg_predict(&lr, x[n + i]));
        }
    } else {
        ulc_svm sv;
        if (ulc_svm_fit(x, 1, y, n, 3.0, 1.0, 1e-3, &sv, &ctx) != ULC_OK) rc = 1;
        else {
            for (long i = 0; i < m; i++)
                printf("%d %.17g\n", ulc_svm_predict(&sv, &x[n + i]), ulc_svm_decision(&sv, &x[n + i]));
            ulc_svm_free(&sv);
        }
    }
    if (rc == 1) fprintf(stderr, "error: %s\n", ulc_ctx_message(&ctx));
    free(x);
    free(y);
    return rc;
}

/* Q/U (Tan & Gong) on hand-computed cases: the cap at 1, before = 0, unmeasured splits. */
static void test_clip_qu(void) {
    ulc_clip_acc b = {0.9, 0.8, 0.6, 0.95, -1, -1}, a = {0.3, 0.9, 0.3, 0.76, -1, -1};
    ulc_clip_qu q = ulc_clip_qu_of(&b, &a);
    CHECK(near(q.a_df_fine, 1.0 / 3.0, 1e-15) && q.a_dr_fine == 1.0);   /* capped */
    CHECK(near(q.a_df_coarse, 0.5, 1e-15) && near(q.a_dr_coarse, 0.8, 1e-15));
    CHECK(near(q.q, 2.0 / 3.0, 1e-15) && near(q.u, (1.0 + 0.8 + 0.5) / 3.0, 1e-15));
    CHECK(near(q.qu, 2 * q.q * q.u / (q.q + q.u), 1e-15));
    ulc_clip_acc z = {0, 0.5, 0, 0.5, -1, -1}, z2 = {0, 0.25, 0, 0.5, -1, -1};
    q = ulc_clip_qu_of(&z, &z2); /* nothing to forget or keep on Df: Ā = 1 */
    CHECK(q.a_df_fine == 1.0 && q.q == 0.0 && q.a_df_coarse == 1.0 && q.qu == 0.0);
    CHECK(near(q.u, (0.5 + 1.0 + 1.0) / 3.0, 1e-15));
    ulc_clip_acc nc = {0.9, 0.8, -1, -1, -1, -1};
    q = ulc_clip_qu_of(&nc, &nc); /* no taxonomy: U and Q-U undefined */
    CHECK(q.q == 0.0 && isnan(q.u) && isnan(q.qu));
}

int main(int argc, char **argv) {
    if (argc == 3 && (!strcmp(argv[1], "--logreg") || !strcmp(argv[1], "--svm")))
        return driver(argv[1], argv[2]);
    test_softmax_entropy();
    test_hmean();
    test_distances();
    test_cka();
    test_logreg();
    test_svm();
    test_mia();
    test_lm_metrics();
    test_clip_qu();
    printf("test_metrics: %s (%d failed checks)\n", g_failed_checks ? "FAILED" : "ok", g_failed_checks);
    return g_failed_checks ? 1 : 0;
}
