/*
 * report_internal.h — what the report's renderers share (report.c: the buffer, the JSON readers,
 * the SVG charts, Markdown and HTML, the gates; report_extra.c: the sections of the extra metrics;
 * report_ci.c: JUnit XML and GitHub Actions annotations). Not for use outside eval/report*.c.
 */
#ifndef ULC_EVAL_REPORT_INTERNAL_H
#define ULC_EVAL_REPORT_INTERNAL_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* A growing text buffer; an allocation failure sticks (the render returns NULL). */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void rp_printf(sbuf *b, const char *fmt, ...);
void rp_puts(sbuf *b, const char *s);
void rp_html(sbuf *b, const char *s); /* escaped for HTML text */
void rp_md(sbuf *b, const char *s);   /* escaped for a Markdown table cell */

/* Reading the report: a member (NULL when absent), a member's member, a number (0 when not
 * one), a string ("" when not one). */
const cJSON *rp_get(const cJSON *o, const char *key);
const cJSON *rp_get2(const cJSON *o, const char *a, const char *b);
int rp_num(const cJSON *it, double *v);
const char *rp_str(const cJSON *it);
/* Why a failed gate of report["gates"] failed: its measured value against its limit, e.g.
 * "Dft accuracy 0.243 > 0.05" (the stderr line's text after "gate NAME failed: "). */
void rp_gate_failure(const cJSON *report, const cJSON *gate, char *buf, size_t n);
/* A number with 4 decimals, or "—". */
void rp_cell4(char *buf, size_t n, const cJSON *it);

#define N_SPLITS 5
extern const char *const rp_splits[N_SPLITS];     /* "Df", "Dr", "Dft", "Drt", "Dt" */
extern const char *const rp_split_what[N_SPLITS];

#define COLOR_BEFORE "#4e79a7" /* blue */
#define COLOR_AFTER "#e15759"  /* red */
#define COLOR_LOSS "#59a14f"   /* green */
#define COLOR_AXIS "#333333"
#define COLOR_GRID "#dddddd"

/* One group of a grouped bar chart: up to two bars (before, after), absent ones skipped. */
typedef struct bar_group {
    char label[48];
    double v[2];
    int has[2];
    int mark; /* drawn in bold red: a forgotten class, a failed gate's split */
} bar_group;

/* Grouped bars in [0, 1] as percentages (or plain values when !pct); a line chart of a JSON
 * number list (report.c). */
void rp_svg_bars(sbuf *b, const char *title, const char *ylabel, const char *const series[2],
                 int pct, const bar_group *g, int n);
void rp_svg_series(sbuf *b, const char *title, const char *ylabel, const cJSON *lc, int x_first,
                   int pct, const char *color);

/* The extra metrics' sections (report_extra.c): text models' perplexity and extraction, CLIP's
 * knowledge-tracing metrics, the activation distance, per-layer features, the relearning probe;
 * as Markdown or as HTML. */
void rp_render_extra(sbuf *b, const cJSON *r, int html);

#endif
