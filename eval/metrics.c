/*
 * metrics.c — the evaluation metrics of metrics.h: plain loops in double, fixed order.
 *
 * The two attackers follow their references closely, so that numbers agree with what people
 * compute in Python: the logistic regression minimises sklearn's objective exactly (Newton on two
 * unknowns converges to the minimiser that lbfgs approaches within its tolerance), and the SVM is
 * libsvm's solver (Solver::select_working_set, the two-variable update and calculate_rho) without
 * shrinking and without a kernel cache (kernel rows are recomputed; 1-D features make that cheap).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metrics.h"

void ulc_softmax(const float *z, int64_t c, double *p) {
    double m = -INFINITY;
    for (int64_t k = 0; k < c; k++)
        if (isnan(z[k]) || z[k] > m) m = z[k];
    double s = 0.0;
    for (int64_t k = 0; k < c; k++) s += p[k] = (z[k] == -INFINITY) ? 0.0 : exp((double)z[k] - m);
    for (int64_t k = 0; k < c; k++) p[k] /= s;
}

double ulc_entropy(const double *p, int64_t c) {
    double h = 0.0;
    for (int64_t k = 0; k < c; k++)
        if (p[k] > 0) h -= p[k] * log(p[k]);
    return h;
}

double ulc_hmean(double a, double b) {
    if (!(a > 0) || !(b > 0)) return 0.0;
    return 2.0 * a * b / (a + b);
}

double ulc_activation_distance(const float *za, const float *zb, int64_t n, int64_t c) {
    if (n <= 0) return 0.0;
    double *pa = malloc(2 * (size_t)c * sizeof *pa);
    if (!pa) return NAN;
    double *pb = pa + c, sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ulc_softmax(za + i * c, c, pa);
        ulc_softmax(zb + i * c, c, pb);
        double d = 0.0;
        for (int64_t k = 0; k < c; k++) d += (pa[k] - pb[k]) * (pa[k] - pb[k]);
        sum += sqrt(d);
    }
    free(pa);
    return sum / (double)n;
}

double ulc_feature_l1(const float *a, const float *b, int64_t n, int64_t p) {
    if (n <= 0) return 0.0;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = 0.0;
        for (int64_t k = 0; k < p; k++) d += fabs((double)a[i * p + k] - (double)b[i * p + k]);
        sum += d;
    }
    return sum / (double)n;
}

/* ---- linear CKA ------------------------------------------------------------------------------ */

/* Column means of x [n, p] (row stride s). */
static void col_means(const float *x, int64_t n, int64_t p, int64_t s, double *m) {
    for (int64_t k = 0; k < p; k++) m[k] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < p; k++) m[k] += x[i * s + k];
    for (int64_t k = 0; k < p; k++) m[k] /= (double)n;
}

/* Gram matrix of the centred rows: g[i, j] = Σ_k (x_ik - m_k)(x_jk - m_k), [n, n]. */
static void centred_gram(const float *x, int64_t n, int64_t p, int64_t s, const double *m,
                         double *g, double *row) {
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < p; k++) row[k] = x[i * s + k] - m[k];
        for (int64_t j = 0; j <= i; j++) {
            double d = 0.0;
            for (int64_t k = 0; k < p; k++) d += row[k] * (x[j * s + k] - m[k]);
            g[i * n + j] = g[j * n + i] = d;
        }
    }
}

/* Σ_ij a_ij b_ij over [r, c] matrices built as a = Uᵀ V for centred U [n, r], V [n, c]:
 * ||UᵀV||_F², accumulated one output entry at a time (no r × c buffer). */
static double cross_frob2(const float *u, int64_t r, int64_t us, const double *mu, const float *v,
                          int64_t c, int64_t vs, const double *mv, int64_t n) {
    double total = 0.0;
    for (int64_t a = 0; a < r; a++)
        for (int64_t b = 0; b < c; b++) {
            double d = 0.0;
            for (int64_t i = 0; i < n; i++) d += (u[i * us + a] - mu[a]) * (v[i * vs + b] - mv[b]);
            total += d * d;
        }
    return total;
}

ulc_status ulc_cka_linear(const float *x, int64_t n, int64_t p, int64_t x_stride, const float *y,
                          int64_t q, int64_t y_stride, double *out, ulc_ctx *ctx) {
    if (n < 2 || p < 1 || q < 1)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "CKA needs at least 2 rows and 1 feature on "
                        "each side (got %lld rows, %lld and %lld features)", (long long)n,
                        (long long)p, (long long)q);
    double *mx = malloc((size_t)(p + q) * sizeof *mx);
    if (!mx) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (CKA)");
    double *my = mx + p;
    col_means(x, n, p, x_stride, mx);
    col_means(y, n, q, y_stride, my);
    double gram_cost = (double)n * (double)n * (double)(p + q) / 2.0;
    double direct_cost = (double)n * ((double)p * p / 2.0 + (double)q * q / 2.0 + (double)p * q);
    double xy, xx, yy;
    if (gram_cost < direct_cost) {
        /* K = X Xᵀ, L = Y Yᵀ (centred): ||YᵀX||² = <K, L>, ||XᵀX|| = ||K||, ||YᵀY|| = ||L|| */
        int64_t w = p > q ? p : q;
        double *k = malloc(((size_t)(2 * n * n) + (size_t)w) * sizeof *k);
        if (!k) {
            free(mx);
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (CKA: %lld×%lld Gram matrices)",
                            (long long)n, (long long)n);
        }
        double *l = k + n * n, *row = l + n * n;
        centred_gram(x, n, p, x_stride, mx, k, row);
        centred_gram(y, n, q, y_stride, my, l, row);
        xy = xx = yy = 0.0;
        for (int64_t i = 0; i < n * n; i++) {
            xy += k[i] * l[i];
            xx += k[i] * k[i];
            yy += l[i] * l[i];
        }
        free(k);
    } else {
        xy = cross_frob2(y, q, y_stride, my, x, p, x_stride, mx, n);
        xx = cross_frob2(x, p, x_stride, mx, x, p, x_stride, mx, n);
        yy = cross_frob2(y, q, y_stride, my, y, q, y_stride, my, n);
    }
    free(mx);
    double den = sqrt(xx) * sqrt(yy);
    *out = den > 0 ? xy / den : NAN;
    return ULC_OK;
}

/* ---- logistic regression --------------------------------------------------------------------- */

static double sigmoid(double z) {
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* log(1 + e^z) without overflow. */
static double log1pexp(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

static double logreg_obj(const double *x, const uint8_t *y, int64_t n, const double sw[2], double C,
                         double w, double b) {
    double f = w * w / (2.0 * C);
    for (int64_t i = 0; i < n; i++) {
        double z = w * x[i] + b;
        f += sw[y[i]] * (log1pexp(z) - (y[i] ? z : 0.0));
    }
    return f;
}

ulc_status ulc_logreg_fit(const double *x, const uint8_t *y, int64_t n, double C, int balanced,
                          ulc_logreg *out, ulc_ctx *ctx) {
    int64_t cnt[2] = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        if (y[i] > 1)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "logistic regression: label[%lld] = %d "
                            "(expected 0 or 1)", (long long)i, y[i]);
        if (!isfinite(x[i]))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "logistic regression: feature[%lld] is not "
                            "finite", (long long)i);
        cnt[y[i]]++;
    }
    if (!cnt[0] || !cnt[1])
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "logistic regression needs rows of both classes "
                        "(%lld of class 0, %lld of class 1)", (long long)cnt[0], (long long)cnt[1]);
    if (!(C > 0)) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "logistic regression: C must be > 0");
    double sw[2] = {1.0, 1.0};
    if (balanced) {
        sw[0] = (double)n / (2.0 * (double)cnt[0]);
        sw[1] = (double)n / (2.0 * (double)cnt[1]);
    }
    double w = 0.0, b = 0.0, f = logreg_obj(x, y, n, sw, C, w, b);
    int it = 0;
    for (; it < 100; it++) {
        double gw = w / C, gb = 0.0, hww = 1.0 / C, hwb = 0.0, hbb = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double s = sigmoid(w * x[i] + b), r = sw[y[i]] * (s - y[i]);
            double h = sw[y[i]] * s * (1.0 - s);
            gw += r * x[i];
            gb += r;
            hww += h * x[i] * x[i];
            hwb += h * x[i];
            hbb += h;
        }
        double det = hww * hbb - hwb * hwb;
        double dw, db;
        if (det > 1e-300 * (hww * hbb + 1e-300)) {
            dw = (hbb * gw - hwb * gb) / det;
            db = (hww * gb - hwb * gw) / det;
        } else { /* saturated: a gradient step */
            dw = gw;
            db = gb;
        }
        /* halving line search on the objective */
        double t = 1.0, nf = f;
        for (int k = 0; k < 60; k++, t *= 0.5) {
            nf = logreg_obj(x, y, n, sw, C, w - t * dw, b - t * db);
            if (nf <= f + 1e-14 * fabs(f)) break; /* near the minimum f is flat to rounding */
        }
        if (!(nf <= f + 1e-14 * fabs(f))) break; /* no descent left */
        w -= t * dw;
        b -= t * db;
        f = nf;
        if (fabs(t * dw) <= 1e-12 * (1.0 + fabs(w)) && fabs(t * db) <= 1e-12 * (1.0 + fabs(b))) {
            it++;
            break;
        }
    }
    out->w = w;
    out->b = b;
    out->iters = it;
    return ULC_OK;
}

int ulc_logreg_predict(const ulc_logreg *m, double x) { return m->w * x + m->b > 0; }

/* ---- SVM (libsvm's SMO) ---------------------------------------------------------------------- */

static double rbf(const double *a, const double *b, int d, double gamma) {
    double s = 0.0;
    for (int k = 0; k < d; k++) s += (a[k] - b[k]) * (a[k] - b[k]);
    return exp(-gamma * s);
}

/* q[k] = y_i y_k K(x_i, x_k) */
static void q_row(const double *x, int d, const signed char *y, int64_t n, double gamma, int64_t i,
                  double *q) {
    for (int64_t k = 0; k < n; k++) q[k] = y[i] * y[k] * rbf(x + i * d, x + k * d, d, gamma);
}

#define SVM_TAU 1e-12

ulc_status ulc_svm_fit(const double *x, int d, const uint8_t *yl, int64_t n, double C, double gamma,
                       double tol, ulc_svm *out, ulc_ctx *ctx) {
    memset(out, 0, sizeof *out);
    int64_t cnt[2] = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        if (yl[i] > 1)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "SVM: label[%lld] = %d (expected 0 or 1)",
                            (long long)i, yl[i]);
        for (int k = 0; k < d; k++)
            if (!isfinite(x[i * d + k]))
                return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "SVM: feature [%lld, %d] is not finite",
                                (long long)i, k);
        cnt[yl[i]]++;
    }
    if (!cnt[0] || !cnt[1])
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "SVM needs rows of both classes (%lld of class "
                        "0, %lld of class 1)", (long long)cnt[0], (long long)cnt[1]);
    if (!(C > 0) || !(gamma > 0) || !(tol > 0) || d < 1)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "SVM: C, gamma and tol must be > 0, d >= 1");
    double *alpha = calloc((size_t)n, sizeof *alpha), *G = malloc((size_t)n * sizeof *G);
    double *qi = malloc((size_t)n * sizeof *qi), *qj = malloc((size_t)n * sizeof *qj);
    signed char *y = malloc((size_t)n);
    if (!alpha || !G || !qi || !qj || !y) {
        free(alpha), free(G), free(qi), free(qj), free(y);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (SVM on %lld rows)", (long long)n);
    }
    for (int64_t k = 0; k < n; k++) {
        y[k] = yl[k] ? 1 : -1;
        G[k] = -1.0; /* gradient of ½αᵀQα - eᵀα at α = 0 */
    }
    long max_iter = n > 100000 ? 100 * (long)n : 10000000;
    long iter = 0;
    for (; iter < max_iter; iter++) {
        /* select_working_set: i maximises -y_t G_t over I_up, j the second-order choice */
        double gmax = -INFINITY, gmax2 = -INFINITY, obj_min = INFINITY;
        int64_t i = -1, j = -1;
        for (int64_t t = 0; t < n; t++) {
            if (y[t] == 1) {
                if (alpha[t] < C && -G[t] >= gmax) gmax = -G[t], i = t;
            } else if (alpha[t] > 0 && G[t] >= gmax) {
                gmax = G[t], i = t;
            }
        }
        if (i < 0) break;
        q_row(x, d, y, n, gamma, i, qi);
        for (int64_t t = 0; t < n; t++) {
            double diff, quad;
            if (y[t] == 1) {
                if (!(alpha[t] > 0)) continue;
                diff = gmax + G[t];
                if (G[t] >= gmax2) gmax2 = G[t];
                quad = 1.0 + 1.0 - 2.0 * y[i] * qi[t];
            } else {
                if (!(alpha[t] < C)) continue;
                diff = gmax - G[t];
                if (-G[t] >= gmax2) gmax2 = -G[t];
                quad = 1.0 + 1.0 + 2.0 * y[i] * qi[t];
            }
            if (diff > 0) {
                double obj = -(diff * diff) / (quad > 0 ? quad : SVM_TAU);
                if (obj <= obj_min) obj_min = obj, j = t;
            }
        }
        if (gmax + gmax2 < tol || j < 0) break;
        q_row(x, d, y, n, gamma, j, qj);
        /* the two-variable update (QD = K(x, x) = 1 for the RBF kernel) */
        double oi = alpha[i], oj = alpha[j];
        if (y[i] != y[j]) {
            double quad = 2.0 + 2.0 * qi[j];
            if (quad <= 0) quad = SVM_TAU;
            double delta = (-G[i] - G[j]) / quad, diff = alpha[i] - alpha[j];
            alpha[i] += delta;
            alpha[j] += delta;
            if (diff > 0) {
                if (alpha[j] < 0) alpha[j] = 0, alpha[i] = diff;
            } else if (alpha[i] < 0) {
                alpha[i] = 0, alpha[j] = -diff;
            }
            if (diff > 0) { /* C_i - C_j = 0 */
                if (alpha[i] > C) alpha[i] = C, alpha[j] = C - diff;
            } else if (alpha[j] > C) {
                alpha[j] = C, alpha[i] = C + diff;
            }
        } else {
            double quad = 2.0 - 2.0 * qi[j];
            if (quad <= 0) quad = SVM_TAU;
            double delta = (G[i] - G[j]) / quad, sum = alpha[i] + alpha[j];
            alpha[i] -= delta;
            alpha[j] += delta;
            if (sum > C) {
                if (alpha[i] > C) alpha[i] = C, alpha[j] = sum - C;
            } else if (alpha[j] < 0) {
                alpha[j] = 0, alpha[i] = sum;
            }
            if (sum > C) {
                if (alpha[j] > C) alpha[j] = C, alpha[i] = sum - C;
            } else if (alpha[i] < 0) {
                alpha[i] = 0, alpha[j] = sum;
            }
        }
        double dai = alpha[i] - oi, daj = alpha[j] - oj;
        for (int64_t k = 0; k < n; k++) G[k] += qi[k] * dai + qj[k] * daj;
    }
    /* calculate_rho */
    double ub = INFINITY, lb = -INFINITY, sum_free = 0.0;
    int64_t n_free = 0, n_sv = 0;
    for (int64_t t = 0; t < n; t++) {
        double yg = y[t] * G[t];
        if (alpha[t] >= C) {
            if (y[t] == -1) ub = fmin(ub, yg);
            else lb = fmax(lb, yg);
        } else if (alpha[t] <= 0) {
            if (y[t] == 1) ub = fmin(ub, yg);
            else lb = fmax(lb, yg);
        } else {
            n_free++;
            sum_free += yg;
        }
        n_sv += alpha[t] > 0;
    }
    out->rho = n_free ? sum_free / (double)n_free : (ub + lb) / 2.0;
    out->d = d;
    out->gamma = gamma;
    out->iters = iter;
    out->sv = malloc(((size_t)n_sv * (size_t)d + 1) * sizeof *out->sv);
    out->coef = malloc(((size_t)n_sv + 1) * sizeof *out->coef);
    ulc_status st = ULC_OK;
    if (!out->sv || !out->coef) {
        ulc_svm_free(out);
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (SVM support vectors)");
    } else {
        for (int64_t t = 0; t < n; t++) {
            if (!(alpha[t] > 0)) continue;
            memcpy(out->sv + out->n_sv * d, x + t * d, (size_t)d * sizeof *x);
            out->coef[out->n_sv++] = y[t] * alpha[t];
        }
    }
    free(alpha), free(G), free(qi), free(qj), free(y);
    return st;
}

double ulc_svm_decision(const ulc_svm *m, const double *x) {
    double s = 0.0;
    for (int64_t k = 0; k < m->n_sv; k++) s += m->coef[k] * rbf(m->sv + k * m->d, x, m->d, m->gamma);
    return s - m->rho;
}

int ulc_svm_predict(const ulc_svm *m, const double *x) { return ulc_svm_decision(m, x) > 0; }

void ulc_svm_free(ulc_svm *m) {
    free(m->sv);
    free(m->coef);
    m->sv = m->coef = NULL;
    m->n_sv = 0;
}

/* ---- membership inference ---------------------------------------------------------------------- */

/* x = members then non-members, y = 1 then 0. */
static ulc_status mia_set(const double *mem, int64_t nm, const double *non, int64_t nn,
                          double **x, uint8_t **y, ulc_ctx *ctx) {
    *x = malloc((size_t)(nm + nn + 1) * sizeof **x);
    *y = malloc((size_t)(nm + nn + 1));
    if (!*x || !*y) {
        free(*x), free(*y);
        *x = NULL, *y = NULL;
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (MIA)");
    }
    memcpy(*x, mem, (size_t)nm * sizeof *mem);
    memcpy(*x + nm, non, (size_t)nn * sizeof *non);
    memset(*y, 1, (size_t)nm);
    memset(*y + nm, 0, (size_t)nn);
    return ULC_OK;
}

ulc_status ulc_mia_logreg(const double *mem, int64_t nm, const double *non, int64_t nn,
                          const double *target, int64_t nt, ulc_mia_result *r, ulc_ctx *ctx) {
    double *x;
    uint8_t *y;
    ULC_TRY(mia_set(mem, nm, non, nn, &x, &y, ctx));
    ulc_logreg m;
    ulc_status st = ulc_logreg_fit(x, y, nm + nn, 1.0, 1, &m, ctx);
    if (st == ULC_OK) {
        int64_t ok = 0, hit = 0;
        for (int64_t i = 0; i < nm + nn; i++) ok += ulc_logreg_predict(&m, x[i]) == y[i];
        for (int64_t i = 0; i < nt; i++) hit += ulc_logreg_predict(&m, target[i]);
        r->n_members = nm, r->n_nonmembers = nn, r->n_target = nt;
        r->train_acc = (double)ok / (double)(nm + nn);
        r->member_frac = nt ? (double)hit / (double)nt : 0.0;
    }
    free(x), free(y);
    return st;
}

ulc_status ulc_mia_svm(const double *mem, int64_t nm, const double *non, int64_t nn,
                       const double *target, int64_t nt, ulc_mia_result *r, ulc_ctx *ctx) {
    int64_t k = nm < nn ? nm : nn;
    if (k > ULC_MIA_SVM_CAP) k = ULC_MIA_SVM_CAP;
    double *x;
    uint8_t *y;
    ULC_TRY(mia_set(mem, k, non, k, &x, &y, ctx));
    ulc_svm m;
    ulc_status st = ulc_svm_fit(x, 1, y, 2 * k, 3.0, 1.0, 1e-3, &m, ctx);
    if (st == ULC_OK) {
        int64_t ok = 0, hit = 0;
        for (int64_t i = 0; i < 2 * k; i++) ok += ulc_svm_predict(&m, x + i) == y[i];
        for (int64_t i = 0; i < nt; i++) hit += ulc_svm_predict(&m, target + i);
        r->n_members = k, r->n_nonmembers = k, r->n_target = nt;
        r->train_acc = (double)ok / (double)(2 * k);
        r->member_frac = nt ? (double)hit / (double)nt : 0.0;
        ulc_svm_free(&m);
    }
    free(x), free(y);
    return st;
}

/* ---- knowledge-tracing unlearning (CLIP) ---------------------------------------------------- */

/* Ā(S) = min(1, after / before); 1 when before is 0 (nothing to lose), NaN when unmeasured. */
static double a_bar(double before, double after) {
    if (before < 0 || after < 0) return NAN;
    if (before == 0) return 1;
    return fmin(1.0, after / before);
}

ulc_clip_qu ulc_clip_qu_of(const ulc_clip_acc *b, const ulc_clip_acc *a) {
    ulc_clip_qu r;
    r.a_df_fine = a_bar(b->df_fine, a->df_fine);
    r.a_dr_fine = a_bar(b->dr_fine, a->dr_fine);
    r.a_dr_coarse = a_bar(b->dr_coarse, a->dr_coarse);
    r.a_df_coarse = a_bar(b->df_coarse, a->df_coarse);
    r.q = 1 - r.a_df_fine;
    r.u = (r.a_dr_fine + r.a_dr_coarse + r.a_df_coarse) / 3;
    r.qu = r.q + r.u > 0 ? 2 * r.q * r.u / (r.q + r.u) : 0;
    if (isnan(r.q) || isnan(r.u)) r.qu = NAN;
    return r;
}
