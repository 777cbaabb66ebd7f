/*
 * report.c — the main command's reports (JSON, Markdown, self-contained HTML with inline SVG
 * charts) and its gates (report.h). Everything reads the one JSON object forget.c builds, so the
 * formats cannot disagree; the charts are drawn here, as SVG text, with no external resources.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/report.h"
#include "eval/report_internal.h"

/* ---- a growing text buffer (an allocation failure sticks: render returns NULL) --------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void rp_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)n) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

void rp_puts(sbuf *b, const char *s) { rp_printf(b, "%s", s); }

/* s escaped for HTML text and attribute values. */
void rp_html(sbuf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': rp_puts(b, "&lt;"); break;
        case '>': rp_puts(b, "&gt;"); break;
        case '&': rp_puts(b, "&amp;"); break;
        case '"': rp_puts(b, "&quot;"); break;
        case '\'': rp_puts(b, "&#39;"); break;
        default: rp_printf(b, "%c", *s);
        }
    }
}

/* s for a Markdown table cell: '|' escaped, newlines as spaces. */
void rp_md(sbuf *b, const char *s) {
    for (; s && *s; s++) {
        if (*s == '|') rp_puts(b, "\\|");
        else if (*s == '\n' || *s == '\r') rp_puts(b, " ");
        else rp_printf(b, "%c", *s);
    }
}

/* ---- reading the report ---------------------------------------------------------------------- */

const cJSON *rp_get(const cJSON *o, const char *key) {
    return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

const cJSON *rp_get2(const cJSON *o, const char *a, const char *b) {
    return rp_get(rp_get(o, a), b);
}

int rp_num(const cJSON *it, double *v) {
    if (!cJSON_IsNumber(it)) return 0;
    *v = it->valuedouble;
    return 1;
}

const char *rp_str(const cJSON *it) { return cJSON_IsString(it) ? it->valuestring : ""; }

/* A number for tables: integers as such, others with 6 significant digits. */
static void fmt_num(char *buf, size_t n, double v) {
    if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.6g", v);
}

/* A scalar JSON item as text (lists of scalars joined with ", "). */
static void fmt_item(char *buf, size_t n, const cJSON *it) {
    buf[0] = '\0';
    if (cJSON_IsNumber(it)) fmt_num(buf, n, it->valuedouble);
    else if (cJSON_IsString(it)) snprintf(buf, n, "%s", it->valuestring);
    else if (cJSON_IsBool(it)) snprintf(buf, n, "%s", cJSON_IsTrue(it) ? "true" : "false");
    else if (cJSON_IsNull(it)) snprintf(buf, n, "null");
    else if (cJSON_IsArray(it)) {
        size_t o = 0;
        for (const cJSON *e = it->child; e && o < n; e = e->next) {
            char one[128];
            fmt_item(one, sizeof one, e);
            o += (size_t)snprintf(buf + o, n - o, "%s%s", e == it->child ? "" : ", ", one);
        }
    }
}

/* A gate's value for the tables: a step count as an integer, the rest with 4 decimals. */
static void gate_value(char *buf, size_t n, const cJSON *g) {
    double v = 0;
    rp_num(rp_get(g, "value"), &v);
    if (strcmp(rp_str(rp_get(g, "name")), "relearn_steps_min") == 0) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.4f", v);
}

const char *const rp_splits[] = {"Df", "Dr", "Dft", "Drt", "Dt"};
const char *const rp_split_what[] = {"forget (train)", "retain (train)",
                                           "forget classes (test)", "retain classes (test)",
                                           "test"};

/* The files the report names: {label, object with path and sha256}. */
typedef struct file_row {
    const char *label;
    const cJSON *o;
} file_row;

static int file_rows(const cJSON *r, file_row *rows) {
    int n = 0;
    const char *top[] = {"input", "output", "spec"};
    for (int k = 0; k < 3; k++)
        if (rp_get(r, top[k])) rows[n++] = (file_row){top[k], rp_get(r, top[k])};
    if (rp_get2(r, "output", "external_data"))
        rows[n++] = (file_row){"output external data", rp_get2(r, "output", "external_data")};
    if (rp_get2(r, "data", "train")) rows[n++] = (file_row){"data.train", rp_get2(r, "data", "train")};
    if (rp_get2(r, "data", "test")) rows[n++] = (file_row){"data.test", rp_get2(r, "data", "test")};
    if (rp_get2(r, "forget", "indices_file"))
        rows[n++] = (file_row){"forget.indices_file", rp_get2(r, "forget", "indices_file")};
    if (rp_get(r, "reference")) rows[n++] = (file_row){"eval.reference", rp_get(r, "reference")};
    return n;
}

/* "class 3", "classes 3, 5" or "12 rows (indices)". */
static void forget_text(const cJSON *r, char *buf, size_t n) {
    const cJSON *f = rp_get(r, "forget");
    char items[512];
    if (strcmp(rp_str(rp_get(f, "kind")), "classes") == 0) {
        fmt_item(items, sizeof items, rp_get(f, "classes"));
        snprintf(buf, n, "class%s %s", cJSON_GetArraySize(rp_get(f, "classes")) > 1 ? "es" : "",
                 items);
    } else {
        double k = 0;
        rp_num(rp_get(f, "indices"), &k);
        snprintf(buf, n, "%.0f listed row%s", k, k == 1 ? "" : "s");
    }
    double rows = 0;
    if (rp_num(rp_get(f, "rows"), &rows)) {
        size_t o = strlen(buf);
        snprintf(buf + o, n - o, " (%.0f train rows)", rows);
    }
}

/* Flattens hyperparameters into "a.b" = value rows (lists of scalars as one value). */
typedef void (*kv_fn)(sbuf *b, const char *key, const char *value);

static void flatten(sbuf *b, const cJSON *o, const char *prefix, kv_fn fn) {
    for (const cJSON *it = o ? o->child : NULL; it; it = it->next) {
        char key[256], val[2048];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", it->string);
        if (cJSON_IsObject(it)) {
            flatten(b, it, key, fn);
            continue;
        }
        fmt_item(val, sizeof val, it);
        fn(b, key, val);
    }
}

/* ---- Markdown -------------------------------------------------------------------------------- */

static void md_kv(sbuf *b, const char *key, const char *value) {
    rp_puts(b, "| ");
    rp_md(b, key);
    rp_puts(b, " | ");
    rp_md(b, value);
    rp_puts(b, " |\n");
}

static void md_pct(sbuf *b, const cJSON *it) {
    double v;
    if (rp_num(it, &v)) rp_printf(b, " %.2f%% |", 100 * v);
    else rp_puts(b, " — |");
}

static void md_per_class(sbuf *b, const cJSON *list, const char *which) {
    if (!cJSON_IsArray(list) || !cJSON_GetArraySize(list)) return;
    rp_printf(b, "\n### Per-class accuracy (%s)\n\n| class | rows | before | after | change |\n"
              "|---:|---:|---:|---:|---:|\n", which);
    for (const cJSON *e = list->child; e; e = e->next) {
        double c = 0, rows = 0, bv = 0, av = 0;
        rp_num(rp_get(e, "class"), &c);
        rp_num(rp_get(e, "rows"), &rows);
        int hb = rp_num(rp_get(e, "before"), &bv), ha = rp_num(rp_get(e, "after"), &av);
        rp_printf(b, "| %.0f%s | %.0f |", c, cJSON_IsTrue(rp_get(e, "forget")) ? " (forget)" : "",
                  rows);
        md_pct(b, rp_get(e, "before"));
        md_pct(b, rp_get(e, "after"));
        if (hb && ha) rp_printf(b, " %+.2f |\n", 100 * (av - bv));
        else rp_puts(b, " — |\n");
    }
}

/* A number cell: 4 decimals, or — for null / absent. */
void rp_cell4(char *buf, size_t n, const cJSON *it) {
    double v;
    if (rp_num(it, &v)) snprintf(buf, n, "%.4f", v);
    else snprintf(buf, n, "—");
}


static void render_md(sbuf *b, const cJSON *r) {
    char buf[1024];
    rp_printf(b, "# ulc forget report: %s\n\n", rp_str(rp_get(r, "method")));
    forget_text(r, buf, sizeof buf);
    rp_puts(b, "| | |\n|---|---|\n");
    md_kv(b, "method", rp_str(rp_get(r, "method")));
    md_kv(b, "input", rp_str(rp_get2(r, "input", "path")));
    md_kv(b, "output", rp_str(rp_get2(r, "output", "path")));
    md_kv(b, "forget", buf);
    double v;
    if (rp_num(rp_get(r, "wall_seconds"), &v)) {
        snprintf(buf, sizeof buf, "%.2f s", v);
        md_kv(b, "wall time", buf);
    }
    /* gates first: they are the verdict */
    const cJSON *gates = rp_get(r, "gates");
    if (cJSON_IsArray(gates) && cJSON_GetArraySize(gates)) {
        rp_puts(b, "\n## Gates\n\n| gate | measured on | value | threshold | result |\n"
                "|---|---|---:|---:|---|\n");
        for (const cJSON *g = gates->child; g; g = g->next) {
            char val[64];
            double thr = 0;
            gate_value(val, sizeof val, g);
            rp_num(rp_get(g, "threshold"), &thr);
            rp_printf(b, "| %s | ", rp_str(rp_get(g, "name")));
            rp_md(b, rp_str(rp_get(g, "what")));
            rp_printf(b, " | %s | %s %g | %s |\n", val, ulc_report_gate_op(g), thr,
                      cJSON_IsTrue(rp_get(g, "passed")) ? "passed" : "**FAILED**");
        }
    }
    rp_puts(b, "\n## Accuracy\n\n| split | what | rows | before | after | change |\n"
            "|---|---|---:|---:|---:|---:|\n");
    for (int k = 0; k < N_SPLITS; k++) {
        const cJSON *bi = rp_get2(rp_get(r, "accuracy"), "before", rp_splits[k]);
        const cJSON *ai = rp_get2(rp_get(r, "accuracy"), "after", rp_splits[k]);
        if (!bi && !ai) continue;
        double rows = 0, bv = 0, av = 0;
        rp_num(rp_get2(rp_get(r, "splits"), rp_splits[k], "rows"), &rows);
        rp_printf(b, "| %s | %s | %.0f |", rp_splits[k], rp_split_what[k], rows);
        md_pct(b, bi);
        md_pct(b, ai);
        if (rp_num(bi, &bv) && rp_num(ai, &av)) rp_printf(b, " %+.2f |\n", 100 * (av - bv));
        else rp_puts(b, " — |\n");
    }
    const cJSON *mia = rp_get(r, "mia");
    if (cJSON_IsObject(mia)) {
        rp_puts(b, "\n## Membership inference\n\n| | |\n|---|---|\n");
        flatten(b, mia, "", md_kv);
    }
    md_per_class(b, rp_get2(r, "per_class", "train"), "train");
    md_per_class(b, rp_get2(r, "per_class", "test"), "test");
    rp_render_extra(b, r, 0);
    const cJSON *tr = rp_get(r, "train");
    if (cJSON_IsObject(tr)) {
        rp_puts(b, "\n## Training\n\n| | |\n|---|---|\n");
        for (const cJSON *it = tr->child; it; it = it->next) {
            if (strcmp(it->string, "loss_curve") == 0) continue;
            fmt_item(buf, sizeof buf, it);
            md_kv(b, it->string, buf);
        }
        const cJSON *lc = rp_get(tr, "loss_curve");
        int n = cJSON_GetArraySize(lc);
        if (n > 0) {
            /* the curve as a table of up to 20 evenly spaced steps (the JSON has every step) */
            rp_puts(b, "\nLoss per step (sampled):\n\n| step | loss |\n|---:|---:|\n");
            int shown = n < 20 ? n : 20;
            for (int i = 0; i < shown; i++) {
                int s = shown == 1 ? 0 : (int)((long long)i * (n - 1) / (shown - 1));
                double l = 0;
                rp_num(cJSON_GetArrayItem(lc, s), &l);
                rp_printf(b, "| %d | %.6g |\n", s + 1, l);
            }
        }
    }
    rp_puts(b, "\n## Hyperparameters\n\n| key | value |\n|---|---|\n");
    flatten(b, rp_get(r, "hyperparameters"), "", md_kv);
    double seed = 0, thr = 0;
    if (rp_num(rp_get(r, "seed"), &seed)) {
        fmt_num(buf, sizeof buf, seed);
        md_kv(b, "seed", buf);
    }
    if (rp_num(rp_get(r, "threads"), &thr)) {
        fmt_num(buf, sizeof buf, thr);
        md_kv(b, "threads", buf);
    }
    const cJSON *dev = rp_get(r, "device");
    if (cJSON_IsString(dev)) md_kv(b, "device", dev->valuestring);
    rp_puts(b, "\n## Files\n\n| file | path | sha256 |\n|---|---|---|\n");
    file_row rows[10];
    int nf = file_rows(r, rows);
    for (int k = 0; k < nf; k++) {
        rp_printf(b, "| %s | ", rows[k].label);
        const char *file = rp_str(rp_get(rows[k].o, "file"));
        rp_md(b, rp_str(rp_get(rows[k].o, "path")));
        if (*file) {
            rp_puts(b, " (");
            rp_md(b, file);
            rp_puts(b, ")");
        }
        rp_printf(b, " | `%s` |\n", rp_str(rp_get(rows[k].o, "sha256")));
    }
}

/* ---- SVG charts ------------------------------------------------------------------------------ */


static const char *const k_before_after[2] = {"before", "after"};

/* Grouped bars in [0, 1] shown as percentages (or plain values when !pct), with a y axis named
 * ylabel, grid, labels and a legend naming the two series. */
void rp_svg_bars(sbuf *b, const char *title, const char *ylabel, const char *const series[2],
                     int pct, const bar_group *g, int n) {
    const double W = 960, H = 360, L = 60, R = 20, T = 40, B = 70;
    double pw = W - L - R, ph = H - T - B;
    rp_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
              "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"", W, H, W, H);
    rp_html(b, title);
    rp_puts(b, "\">\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");
    rp_printf(b, "<text x=\"%.0f\" y=\"22\" font-size=\"16\" font-weight=\"bold\">", L);
    rp_html(b, title);
    rp_puts(b, "</text>\n");
    for (int t = 0; t <= 4; t++) { /* grid and y ticks: 0, 25, 50, 75, 100 % */
        double y = T + ph - ph * t / 4.0;
        rp_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n"
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%s%s</text>\n",
                  L, y, L + pw, y, COLOR_GRID, L - 6, y + 4,
                  pct ? (const char *[]){"0", "25", "50", "75", "100"}[t]
                      : (const char *[]){"0", "0.25", "0.5", "0.75", "1"}[t], pct ? "%" : "");
    }
    rp_printf(b, "<text x=\"16\" y=\"%.1f\" font-size=\"12\" transform=\"rotate(-90 16 %.1f)\" "
              "text-anchor=\"middle\">", T + ph / 2, T + ph / 2);
    rp_html(b, ylabel);
    rp_puts(b, "</text>\n");
    double scale = pct ? 100 : 1;
    double gw = n ? pw / n : pw;
    double bw = gw * 0.8 / 2;
    if (bw > 40) bw = 40;
    for (int i = 0; i < n; i++) {
        double cx = L + gw * (i + 0.5);
        for (int k = 0; k < 2; k++) {
            if (!g[i].has[k]) continue;
            double v = g[i].v[k] < 0 ? 0 : g[i].v[k] > 1 ? 1 : g[i].v[k];
            double h = ph * v, x = cx - bw + k * bw;
            rp_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                      "<title>", x, T + ph - h, bw * 0.95, h, k ? COLOR_AFTER : COLOR_BEFORE);
            rp_html(b, g[i].label);
            rp_puts(b, " ");
            rp_html(b, series[k]);
            rp_printf(b, pct ? ": %.2f%%</title></rect>\n" : ": %.4f</title></rect>\n", scale * g[i].v[k]);
            if (n <= 16)
                rp_printf(b, pct ? "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">"
                                   "%.1f</text>\n"
                                 : "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">"
                                   "%.2f</text>\n", x + bw * 0.475, T + ph - h - 3, scale * g[i].v[k]);
        }
        rp_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\"%s>",
                  cx, T + ph + 16, g[i].mark ? " font-weight=\"bold\" fill=\"#b00000\"" : "");
        rp_html(b, g[i].label);
        rp_puts(b, "</text>\n");
    }
    rp_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", L,
              T + ph, L + pw, T + ph, COLOR_AXIS);
    rp_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", L, T,
              L, T + ph, COLOR_AXIS);
    double ly = H - 18; /* legend */
    for (int k = 0; k < 2; k++) {
        double lx = L + 160 * k;
        rp_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", lx, ly - 11,
                  k ? COLOR_AFTER : COLOR_BEFORE, lx + 20, ly);
        rp_html(b, series[k]);
        rp_puts(b, "</text>\n");
    }
    rp_puts(b, "</svg>\n");
}

/* A "nice" tick step for a range: 1, 2 or 5 times a power of ten, about 5 ticks. */
static double nice_step(double range) {
    if (!(range > 0)) return 1;
    double raw = range / 5, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* A series per step: one point per entry (bucket means past 800), the first at step x_first,
 * axes with ticks and labels. pct: values in [0, 1] on a fixed 0-100 % axis; else the axis
 * fits the values. */
void rp_svg_series(sbuf *b, const char *title, const char *ylabel, const cJSON *lc, int x_first,
                       int pct, const char *color) {
    int n = cJSON_GetArraySize(lc);
    const double W = 960, H = 360, L = 80, R = 20, T = 40, B = 50;
    double pw = W - L - R, ph = H - T - B;
    int np = n > 800 ? 800 : n;
    double *xs = malloc(((size_t)np + 1) * sizeof *xs), *ys = malloc(((size_t)np + 1) * sizeof *ys);
    if (!xs || !ys) {
        free(xs);
        free(ys);
        b->oom = 1;
        return;
    }
    double lo = INFINITY, hi = -INFINITY;
    int m = 0;
    for (int i = 0; i < np; i++) { /* bucket i: steps [i·n/np, (i+1)·n/np) */
        int a = (int)((long long)i * n / np), e = (int)((long long)(i + 1) * n / np);
        double s = 0;
        int k = 0;
        for (int j = a; j < e; j++) {
            double v;
            if (rp_num(cJSON_GetArrayItem(lc, j), &v) && isfinite(v)) {
                s += v;
                k++;
            }
        }
        if (!k) continue;
        xs[m] = (a + e - 1) / 2.0 + x_first;
        ys[m] = s / k;
        lo = fmin(lo, ys[m]);
        hi = fmax(hi, ys[m]);
        m++;
    }
    rp_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
              "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"", W, H, W, H);
    rp_html(b, title);
    rp_printf(b, "\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n"
              "<text x=\"%.0f\" y=\"22\" font-size=\"16\" font-weight=\"bold\">", L);
    rp_html(b, title);
    rp_printf(b, "%s</text>\n", n > np ? " (bucket means)" : "");
    if (!m) {
        rp_printf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"14\">no training steps</text>\n"
                  "</svg>\n", L, T + ph / 2);
        free(xs);
        free(ys);
        return;
    }
    if (pct) {
        lo = 0;
        hi = 1;
    } else if (hi - lo < 1e-12 * fmax(1, fabs(hi))) { /* a flat curve: a band around it */
        lo -= 0.5 * fmax(1e-6, fabs(lo));
        hi += 0.5 * fmax(1e-6, fabs(hi));
    }
    double ys_step = pct ? 0.25 : nice_step(hi - lo);
    double y0 = floor(lo / ys_step) * ys_step, y1 = ceil(hi / ys_step) * ys_step;
    double x0 = x_first, x1 = n > 1 ? n - 1 + x_first : x_first + 1;
    double xs_step = nice_step(x1 - x0);
    if (xs_step < 1) xs_step = 1;
#define PX(x) (L + pw * ((x) - x0) / (x1 - x0))
#define PY(y) (T + ph - ph * ((y) - y0) / (y1 - y0))
    for (double y = y0; y <= y1 + ys_step * 1e-9; y += ys_step)
        rp_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n"
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%.4g%s</text>\n",
                  L, PY(y), L + pw, PY(y), COLOR_GRID, L - 6, PY(y) + 4, pct ? 100 * y : y, pct ? "%" : "");
    for (double x = ceil(x0 / xs_step) * xs_step; x <= x1 + 1e-9; x += xs_step)
        rp_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n"
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">%.0f</text>\n",
                  PX(x), T + ph, PX(x), T + ph + 5, COLOR_AXIS, PX(x), T + ph + 18, x);
    rp_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n"
              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
              L, T + ph, L + pw, T + ph, COLOR_AXIS, L, T, L, T + ph, COLOR_AXIS);
    rp_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">step</text>\n"
              "<text x=\"18\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
              "transform=\"rotate(-90 18 %.1f)\">", L + pw / 2, H - 8, T + ph / 2, T + ph / 2);
    rp_html(b, ylabel);
    rp_printf(b, "</text>\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (int i = 0; i < m; i++) rp_printf(b, "%s%.1f,%.1f", i ? " " : "", PX(xs[i]), PY(ys[i]));
    rp_puts(b, "\"/>\n");
    if (m <= 40) /* few points: each one marked */
        for (int i = 0; i < m; i++)
            rp_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(xs[i]),
                      PY(ys[i]), color);
    rp_puts(b, "</svg>\n");
#undef PX
#undef PY
    free(xs);
    free(ys);
}

/* ---- HTML ------------------------------------------------------------------------------------ */

#define MAX_CLASS_BARS 40

/* Per-class bars; past MAX_CLASS_BARS classes, the forgotten ones and those whose accuracy
 * moved most (the chart's caption says so; the tables list all). */
static void html_per_class(sbuf *b, const cJSON *list, const char *which) {
    int n = cJSON_GetArraySize(list);
    if (!cJSON_IsArray(list) || n <= 0) return;
    bar_group *g = calloc((size_t)n, sizeof *g);
    double *score = calloc((size_t)n, sizeof *score);
    if (!g || !score) {
        free(g);
        free(score);
        b->oom = 1;
        return;
    }
    int i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
        double c = 0;
        rp_num(rp_get(e, "class"), &c);
        snprintf(g[i].label, sizeof g[i].label, "%.0f", c);
        g[i].has[0] = rp_num(rp_get(e, "before"), &g[i].v[0]);
        g[i].has[1] = rp_num(rp_get(e, "after"), &g[i].v[1]);
        g[i].mark = cJSON_IsTrue(rp_get(e, "forget"));
        score[i] = g[i].mark ? 1e9 : fabs(g[i].v[1] - g[i].v[0]) + 1e-9 * (n - i);
    }
    int shown = n;
    if (n > MAX_CLASS_BARS) { /* keep the top-scoring classes, in class order */
        bar_group *keep = calloc(MAX_CLASS_BARS, sizeof *keep);
        if (!keep) {
            free(g);
            free(score);
            b->oom = 1;
            return;
        }
        for (int k = 0; k < MAX_CLASS_BARS; k++) {
            int best = 0;
            for (int j = 1; j < n; j++)
                if (score[j] > score[best]) best = j;
            keep[k] = g[best];
            score[best] = -1;
        }
        /* class order: labels are integers; compare by value */
        for (int a = 1; a < MAX_CLASS_BARS; a++)
            for (int c = a; c > 0 && atof(keep[c - 1].label) > atof(keep[c].label); c--) {
                bar_group t = keep[c];
                keep[c] = keep[c - 1];
                keep[c - 1] = t;
            }
        free(g);
        g = keep;
        shown = MAX_CLASS_BARS;
    }
    char title[160];
    snprintf(title, sizeof title, "Accuracy per class (%s)", which);
    rp_puts(b, "<figure>\n");
    rp_svg_bars(b, title, "accuracy", k_before_after, 1, g, shown);
    rp_printf(b, "<figcaption>Forgotten classes are in red.%s</figcaption>\n</figure>\n",
              n > shown ? " Only the forgotten classes and those whose accuracy changed most are "
                          "drawn; the table lists every class." : "");
    free(g);
    free(score);
}

static void html_kv(sbuf *b, const char *key, const char *value) {
    rp_puts(b, "<tr><th>");
    rp_html(b, key);
    rp_puts(b, "</th><td>");
    rp_html(b, value);
    rp_puts(b, "</td></tr>\n");
}

static void html_pct(sbuf *b, const cJSON *it) {
    double v;
    if (rp_num(it, &v)) rp_printf(b, "<td class=\"n\">%.2f%%</td>", 100 * v);
    else rp_puts(b, "<td class=\"n\">—</td>");
}

static void html_class_table(sbuf *b, const cJSON *list, const char *which) {
    if (!cJSON_IsArray(list) || !cJSON_GetArraySize(list)) return;
    rp_printf(b, "<details><summary>Per-class accuracy table (%s)</summary>\n<table>\n<tr><th>class"
              "</th><th>rows</th><th>before</th><th>after</th></tr>\n", which);
    for (const cJSON *e = list->child; e; e = e->next) {
        double c = 0, rows = 0;
        rp_num(rp_get(e, "class"), &c);
        rp_num(rp_get(e, "rows"), &rows);
        rp_printf(b, "<tr><td>%.0f%s</td><td class=\"n\">%.0f</td>", c,
                  cJSON_IsTrue(rp_get(e, "forget")) ? " (forget)" : "", rows);
        html_pct(b, rp_get(e, "before"));
        html_pct(b, rp_get(e, "after"));
        rp_puts(b, "</tr>\n");
    }
    rp_puts(b, "</table></details>\n");
}

static void render_html(sbuf *b, const cJSON *r) {
    char buf[1024];
    rp_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ulc "
            "forget report: ");
    rp_html(b, rp_str(rp_get(r, "method")));
    rp_puts(b, "</title>\n<style>\nbody{font-family:sans-serif;margin:24px;color:#222;"
            "max-width:1000px}\ntable{border-collapse:collapse;margin:8px 0 16px}\n"
            "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}\n"
            "td.n{text-align:right}\n.pass{color:#1a7f37;font-weight:bold}\n"
            ".fail{color:#b00000;font-weight:bold}\nfigure{margin:8px 0 24px}\n"
            "svg{max-width:100%;height:auto}\ncode{font-size:12px}\n</style>\n</head>\n<body>\n");
    rp_puts(b, "<h1>ulc forget report: ");
    rp_html(b, rp_str(rp_get(r, "method")));
    rp_puts(b, "</h1>\n<table>\n");
    forget_text(r, buf, sizeof buf);
    html_kv(b, "method", rp_str(rp_get(r, "method")));
    html_kv(b, "input", rp_str(rp_get2(r, "input", "path")));
    html_kv(b, "output", rp_str(rp_get2(r, "output", "path")));
    html_kv(b, "forget", buf);
    double v;
    if (rp_num(rp_get(r, "wall_seconds"), &v)) {
        snprintf(buf, sizeof buf, "%.2f s", v);
        html_kv(b, "wall time", buf);
    }
    rp_puts(b, "</table>\n");
    const cJSON *gates = rp_get(r, "gates");
    if (cJSON_IsArray(gates) && cJSON_GetArraySize(gates)) {
        rp_puts(b, "<h2>Gates</h2>\n<table>\n<tr><th>gate</th><th>measured on</th><th>value</th>"
                "<th>threshold</th><th>result</th></tr>\n");
        for (const cJSON *g = gates->child; g; g = g->next) {
            char val[64];
            double thr = 0;
            gate_value(val, sizeof val, g);
            rp_num(rp_get(g, "threshold"), &thr);
            int ok = cJSON_IsTrue(rp_get(g, "passed"));
            rp_puts(b, "<tr><td>");
            rp_html(b, rp_str(rp_get(g, "name")));
            rp_puts(b, "</td><td>");
            rp_html(b, rp_str(rp_get(g, "what")));
            rp_printf(b, "</td><td class=\"n\">%s</td><td class=\"n\">%s %g</td><td class=\"%s\">"
                      "%s</td></tr>\n", val, strcmp(ulc_report_gate_op(g), ">=") ? "&le;" : "&ge;",
                      thr, ok ? "pass" : "fail", ok ? "passed" : "FAILED");
        }
        rp_puts(b, "</table>\n");
    }
    /* the splits chart and table (MIA bars after them when the report has it) */
    bar_group g[N_SPLITS + 8];
    int ng = 0;
    rp_puts(b, "<h2>Accuracy</h2>\n<table>\n<tr><th>split</th><th>what</th><th>rows</th>"
            "<th>before</th><th>after</th></tr>\n");
    for (int k = 0; k < N_SPLITS; k++) {
        const cJSON *bi = rp_get2(rp_get(r, "accuracy"), "before", rp_splits[k]);
        const cJSON *ai = rp_get2(rp_get(r, "accuracy"), "after", rp_splits[k]);
        if (!bi && !ai) continue;
        double rows = 0;
        rp_num(rp_get2(rp_get(r, "splits"), rp_splits[k], "rows"), &rows);
        rp_printf(b, "<tr><td>%s</td><td>%s</td><td class=\"n\">%.0f</td>", rp_splits[k],
                  rp_split_what[k], rows);
        html_pct(b, bi);
        html_pct(b, ai);
        rp_puts(b, "</tr>\n");
        bar_group *e = &g[ng++];
        memset(e, 0, sizeof *e);
        snprintf(e->label, sizeof e->label, "%s", rp_splits[k]);
        e->has[0] = rp_num(bi, &e->v[0]);
        e->has[1] = rp_num(ai, &e->v[1]);
        e->mark = k == 0 || k == 2;
    }
    rp_puts(b, "</table>\n");
    const cJSON *mia = rp_get(r, "mia");
    if (cJSON_IsObject(mia)) {
        /* numeric members are the attack's result on the output model; before/after objects,
         * when present, give both */
        const cJSON *mb = rp_get(mia, "before"), *ma = rp_get(mia, "after");
        const cJSON *src = cJSON_IsObject(ma) ? ma : mia;
        for (const cJSON *it = src->child; it && ng < N_SPLITS + 8; it = it->next) {
            if (!cJSON_IsNumber(it)) continue;
            bar_group *e = &g[ng++];
            memset(e, 0, sizeof *e);
            snprintf(e->label, sizeof e->label, "MIA %s", it->string);
            e->has[1] = rp_num(it, &e->v[1]);
            e->has[0] = cJSON_IsObject(mb) && rp_num(rp_get(mb, it->string), &e->v[0]);
        }
        rp_puts(b, "<h3>Membership inference</h3>\n<table>\n");
        flatten(b, mia, "", html_kv);
        rp_puts(b, "</table>\n");
    }
    rp_puts(b, "<figure>\n");
    rp_svg_bars(b, cJSON_IsObject(mia) ? "Accuracy per split, and MIA" : "Accuracy per split",
             "accuracy", k_before_after, 1, g, ng);
    rp_puts(b, "<figcaption>Df/Dft: forget splits (lower is forgotten); Dr/Drt/Dt: retain and "
            "test splits (should stay).</figcaption>\n</figure>\n");
    rp_puts(b, "<h2>Per class</h2>\n");
    const cJSON *pc_tr = rp_get2(r, "per_class", "train"), *pc_te = rp_get2(r, "per_class", "test");
    html_per_class(b, pc_tr, "train");
    html_per_class(b, pc_te, "test");
    html_class_table(b, pc_tr, "train");
    html_class_table(b, pc_te, "test");
    if (!cJSON_GetArraySize(pc_tr) && !cJSON_GetArraySize(pc_te))
        rp_puts(b, "<p>No per-class accuracy (the model is scored on next-token predictions).</p>\n");
    rp_render_extra(b, r, 1);
    const cJSON *tr = rp_get(r, "train");
    rp_puts(b, "<h2>Training</h2>\n<figure>\n");
    rp_svg_series(b, "Training loss per step", "loss", rp_get(tr, "loss_curve"), 1, 0, COLOR_LOSS);
    rp_puts(b, "</figure>\n<table>\n");
    for (const cJSON *it = tr ? tr->child : NULL; it; it = it->next) {
        if (strcmp(it->string, "loss_curve") == 0) continue;
        fmt_item(buf, sizeof buf, it);
        html_kv(b, it->string, buf);
    }
    rp_puts(b, "</table>\n<h2>Hyperparameters</h2>\n<table>\n");
    flatten(b, rp_get(r, "hyperparameters"), "", html_kv);
    double seed = 0, thr = 0;
    if (rp_num(rp_get(r, "seed"), &seed)) {
        fmt_num(buf, sizeof buf, seed);
        html_kv(b, "seed", buf);
    }
    if (rp_num(rp_get(r, "threads"), &thr)) {
        fmt_num(buf, sizeof buf, thr);
        html_kv(b, "threads", buf);
    }
    const cJSON *dev = rp_get(r, "device");
    if (cJSON_IsString(dev)) html_kv(b, "device", dev->valuestring);
    rp_puts(b, "</table>\n<h2>Files</h2>\n<table>\n<tr><th>file</th><th>path</th><th>sha256</th>"
            "</tr>\n");
    file_row rows[10];
    int nf = file_rows(r, rows);
    for (int k = 0; k < nf; k++) {
        rp_printf(b, "<tr><td>%s</td><td>", rows[k].label);
        rp_html(b, rp_str(rp_get(rows[k].o, "path")));
        rp_puts(b, "</td><td><code>");
        rp_html(b, rp_str(rp_get(rows[k].o, "sha256")));
        rp_puts(b, "</code></td></tr>\n");
    }
    rp_puts(b, "</table>\n</body>\n</html>\n");
}

/* ---- entry points ---------------------------------------------------------------------------- */

static int ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)s[n - k + i]) != suffix[i]) return 0;
    return 1;
}

ulc_report_format ulc_report_format_of(const char *path) {
    if (ends_with_ci(path, ".md") || ends_with_ci(path, ".markdown")) return ULC_REPORT_MARKDOWN;
    if (ends_with_ci(path, ".html") || ends_with_ci(path, ".htm")) return ULC_REPORT_HTML;
    return ULC_REPORT_JSON;
}

char *ulc_report_render(const cJSON *report, ulc_report_format fmt) {
    if (fmt == ULC_REPORT_JSON) {
        char *text = cJSON_Print(report);
        if (!text) return NULL;
        size_t n = strlen(text);
        char *t = realloc(text, n + 2);
        if (!t) {
            free(text);
            return NULL;
        }
        t[n] = '\n';
        t[n + 1] = '\0';
        return t;
    }
    sbuf b = {0};
    if (fmt == ULC_REPORT_MARKDOWN) render_md(&b, report);
    else render_html(&b, report);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- gates ----------------------------------------------------------------------------------- */

static const char *const k_gate_names[ULC_GATE_COUNT] = {"forget_acc_max", "retain_acc_drop_max",
                                                     "mia_max", "forget_ppl_min", "extract_max",
                                                     "relearn_steps_min"};

static int gate_is_min(int k) { return k == ULC_GATE_FORGET_PPL || k == ULC_GATE_RELEARN; }

const char *ulc_report_gate_op(const cJSON *gate) {
    const char *name = rp_str(rp_get(gate, "name"));
    for (int k = 0; k < ULC_GATE_COUNT; k++)
        if (strcmp(name, k_gate_names[k]) == 0) return gate_is_min(k) ? ">=" : "<=";
    return "<=";
}

/* The relearning gate's value: the probe's steps_to_50, or steps + 1 when it is null (Df
 * accuracy stayed below 50% for the whole probe). 0 when the report has no probe. */
static int relearn_value(const cJSON *report, double *value, double *steps) {
    const cJSON *rl = rp_get(report, "relearn"), *s50 = rp_get(rl, "steps_to_50");
    if (!rp_num(rp_get(rl, "steps"), steps)) return 0;
    if (cJSON_IsNull(s50)) *value = *steps + 1;
    else if (!rp_num(s50, value)) return 0;
    return 1;
}

/* Why a failed gate failed, from its entry in report["gates"] and the report's numbers: the
 * measured value against the limit, e.g. "Dft accuracy 0.243 > 0.05" (report_internal.h). */
void rp_gate_failure(const cJSON *report, const cJSON *gate, char *buf, size_t n) {
    const char *name = rp_str(rp_get(gate, "name")), *split = rp_str(rp_get(gate, "split"));
    double value = 0, thr = 0, bv = 0, av = 0;
    rp_num(rp_get(gate, "value"), &value);
    rp_num(rp_get(gate, "threshold"), &thr);
    if (strcmp(name, "forget_acc_max") == 0) {
        snprintf(buf, n, "%s accuracy %.4g > %g", split, value, thr);
    } else if (strcmp(name, "retain_acc_drop_max") == 0) {
        rp_num(rp_get2(rp_get(report, "accuracy"), "before", split), &bv);
        rp_num(rp_get2(rp_get(report, "accuracy"), "after", split), &av);
        snprintf(buf, n, "%s accuracy dropped %.4g (%.4g -> %.4g) > %g", split, value, bv, av,
                 thr);
    } else if (strcmp(name, "forget_ppl_min") == 0) {
        snprintf(buf, n, "Df perplexity %.4g < %g", value, thr);
    } else if (strcmp(name, "extract_max") == 0) {
        snprintf(buf, n, "Df extraction ROUGE-L %.4g > %g", value, thr);
    } else if (strcmp(name, "relearn_steps_min") == 0) {
        snprintf(buf, n, "Df accuracy back to 50%% after %.0f relearning steps < %g", value, thr);
    } else {
        snprintf(buf, n, "MIA (entropy) %.4g > %g", value, thr);
    }
}

ulc_status ulc_report_gates(cJSON *report, const ulc_gates *gates, int *failed, char **messages,
                            ulc_ctx *ctx) {
    *failed = 0;
    *messages = NULL;
    const cJSON *before = rp_get2(report, "accuracy", "before");
    const cJSON *after = rp_get2(report, "accuracy", "after");
    cJSON *list = cJSON_AddArrayToObject(report, "gates");
    if (!list) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (report gates)");
    sbuf msg = {0};
    for (int k = 0; k < ULC_GATE_COUNT; k++) {
        if (!gates->set[k]) continue;
        double value = 0, bv = 0, av = 0, thr = gates->max[k];
        char what[160], line[320];
        const char *split = NULL;
        if (k == ULC_GATE_FORGET_ACC) {
            split = rp_get(after, "Dft") ? "Dft" : "Df";
            if (!rp_num(rp_get(after, split), &value))
                return ulc_fail(ctx, ULC_ERR_INTERNAL, "gate %s: the report has no %s accuracy",
                                k_gate_names[k], split);
            snprintf(what, sizeof what, "%s accuracy", split);
        } else if (k == ULC_GATE_RETAIN_DROP) {
            split = rp_get(after, "Drt") ? "Drt" : rp_get(after, "Dt") ? "Dt" : "Dr";
            if (!rp_num(rp_get(before, split), &bv) || !rp_num(rp_get(after, split), &av))
                return ulc_fail(ctx, ULC_ERR_INTERNAL, "gate %s: the report has no %s accuracy",
                                k_gate_names[k], split);
            value = bv - av;
            snprintf(what, sizeof what, "%s accuracy drop (before - after)", split);
        } else if (k == ULC_GATE_FORGET_PPL) { /* a minimum: value >= thr passes (below) */
            split = "Df";
            if (!rp_num(rp_get2(rp_get(report, "perplexity"), "after", "Df"), &value))
                return ulc_fail(ctx, ULC_ERR_INTERNAL, "gate forget_ppl_min: the report has no "
                                "Df perplexity");
            snprintf(what, sizeof what, "Df perplexity (at least the threshold)");
        } else if (k == ULC_GATE_EXTRACT) {
            split = "Df";
            if (!rp_num(rp_get2(rp_get2(report, "extraction", "after"), "Df", "rouge_l"), &value))
                return ulc_fail(ctx, ULC_ERR_INTERNAL, "gate extract_max: the report has no Df "
                                "extraction");
            snprintf(what, sizeof what, "Df extraction ROUGE-L recall");
        } else if (k == ULC_GATE_RELEARN) { /* a minimum, in probe steps */
            double n = 0;
            split = "Df";
            if (!relearn_value(report, &value, &n))
                return ulc_fail(ctx, ULC_ERR_INTERNAL, "gate relearn_steps_min: the report has no "
                                "relearn.steps_to_50");
            snprintf(what, sizeof what, "relearning steps until Df accuracy >= 50%% (%.0f: not "
                     "within the probe's %.0f)", n + 1, n);
        } else {
            if (!rp_num(rp_get2(report, "mia", "entropy"), &value))
                return ulc_fail(ctx, ULC_ERR_INTERNAL, "gate mia_max: the report has no "
                                "mia.entropy");
            snprintf(what, sizeof what, "MIA (entropy): Df rows called members");
        }
        int passed = gate_is_min(k) ? value >= thr : value <= thr;
        cJSON *g = cJSON_CreateObject();
        if (!g) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (report gates)");
        cJSON_AddItemToArray(list, g);
        cJSON_AddStringToObject(g, "name", k_gate_names[k]);
        cJSON_AddNumberToObject(g, "threshold", thr);
        cJSON_AddNumberToObject(g, "value", value);
        cJSON_AddBoolToObject(g, "passed", passed);
        if (split) cJSON_AddStringToObject(g, "split", split);
        cJSON_AddStringToObject(g, "what", what);
        if (!passed) {
            ++*failed;
            rp_gate_failure(report, g, line, sizeof line);
            rp_printf(&msg, "%sgate %s failed: %s", msg.len ? "\n" : "", k_gate_names[k], line);
        }
    }
    if (msg.oom) {
        free(msg.p);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (report gates)");
    }
    *messages = msg.p;
    return ULC_OK;
}
