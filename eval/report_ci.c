/*
 * report_ci.c — the report as verdicts CI systems read (report.h): JUnit XML, one testcase per
 * gate with the report's numbers as the suite's properties, and GitHub Actions workflow commands
 * (`::error`) for the failed gates. Both read the one JSON object forget.c builds, as the other
 * renderers do, so they cannot disagree with the JSON, Markdown and HTML reports.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/report.h"
#include "eval/report_internal.h"

/* ---- XML text ---------------------------------------------------------------------------------- */

/* The length of the strict UTF-8 sequence at s (1 to 4) and its code point, or 0 when s does
 * not start one (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, or a
 * sequence cut short: the string's NUL is no continuation byte, so nothing past it is read). */
static int utf8_seq(const unsigned char *s, unsigned *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!n) return 0;
    unsigned v = c & (0x7Fu >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3Fu);
    }
    if ((n == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
        (n == 4 && (v < 0x10000 || v > 0x10FFFF)))
        return 0;
    *cp = v;
    return n;
}

/* s as XML 1.0 attribute value or text: the five markup characters as entities, tab and line
 * breaks as character references (an attribute keeps them, instead of their normalisation to
 * spaces), and what XML 1.0 cannot hold at all — other control characters, U+FFFE, U+FFFF,
 * bytes that are not UTF-8 — as U+FFFD, so any path or name gives a well-formed document. */
static void xml_text(sbuf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned cp = 0;
        int n = utf8_seq(p, &cp);
        const char *rep = NULL;
        if (!n) {
            rep = "\xEF\xBF\xBD";
            n = 1;
        } else if (cp == '<') rep = "&lt;";
        else if (cp == '>') rep = "&gt;";
        else if (cp == '&') rep = "&amp;";
        else if (cp == '"') rep = "&quot;";
        else if (cp == '\'') rep = "&apos;";
        else if (cp == '\t') rep = "&#9;";
        else if (cp == '\n') rep = "&#10;";
        else if (cp == '\r') rep = "&#13;";
        else if (cp < 0x20 || cp == 0xFFFE || cp == 0xFFFF) rep = "\xEF\xBF\xBD";
        if (rep) rp_puts(b, rep);
        else rp_printf(b, "%.*s", n, (const char *)p);
        p += n;
    }
}

/* A number as JSON prints it: the shortest of 15 or 17 significant digits that reads back as
 * the same double (integers as integers); null when not finite. */
static void fmt_number(char *buf, size_t n, double v) {
    if (!isfinite(v)) {
        snprintf(buf, n, "null");
        return;
    }
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, n, "%.17g", v);
}

/* A scalar as a property value: numbers as above, strings as they are, true/false/null. */
static void scalar_text(sbuf *b, const cJSON *it) {
    char num[40];
    if (cJSON_IsNumber(it)) {
        fmt_number(num, sizeof num, it->valuedouble);
        rp_puts(b, num);
    } else if (cJSON_IsString(it)) {
        rp_puts(b, it->valuestring);
    } else if (cJSON_IsBool(it)) {
        rp_puts(b, cJSON_IsTrue(it) ? "true" : "false");
    } else {
        rp_puts(b, "null");
    }
}

/* ---- JUnit XML --------------------------------------------------------------------------------- */

static int is_scalar(const cJSON *it) { return !cJSON_IsArray(it) && !cJSON_IsObject(it); }

/* What the properties leave out: what differs between two runs of the same request — the
 * timings (the suite's time attribute holds the wall time) and whether DELETE's teacher cache
 * was hit — and the per-step loss lists (long; the JSON report has them). */
static int left_out(const char *key, const cJSON *it) {
    size_t n = strlen(key);
    if (strcmp(key, "seconds") == 0 || (n > 8 && strcmp(key + n - 8, "_seconds") == 0) ||
        strcmp(key, "teacher_cache") == 0)
        return 1;
    return cJSON_IsArray(it) && (strcmp(key, "loss_curve") == 0 || strcmp(key, "loss") == 0);
}

/* One <property> whose name is key->p and whose value is value's text (already built). */
static void property(sbuf *b, const sbuf *key, const sbuf *value) {
    rp_puts(b, "      <property name=\"");
    xml_text(b, key->p);
    rp_puts(b, "\" value=\"");
    xml_text(b, value->p ? value->p : "");
    rp_puts(b, "\"/>\n");
}

/* it's properties, its name key->p: an object's members as KEY.MEMBER, a list of scalars as one
 * property (the values joined with ","), any other list's items as KEY[I]. */
static void flatten(sbuf *b, sbuf *key, const cJSON *it) {
    if (key->oom || b->oom) {
        b->oom = 1;
        return;
    }
    size_t at = key->len;
    int scalars = 1;
    if (cJSON_IsArray(it))
        for (const cJSON *e = it->child; e; e = e->next) scalars &= is_scalar(e);
    if (is_scalar(it) || (cJSON_IsArray(it) && scalars)) {
        sbuf v = {0};
        rp_puts(&v, "");
        if (is_scalar(it)) scalar_text(&v, it);
        for (const cJSON *e = cJSON_IsArray(it) ? it->child : NULL; e; e = e->next) {
            if (e != it->child) rp_puts(&v, ",");
            scalar_text(&v, e);
        }
        if (v.oom) b->oom = 1;
        else property(b, key, &v);
        free(v.p);
        return;
    }
    int i = 0;
    for (const cJSON *e = it->child; e; e = e->next, i++) {
        if (cJSON_IsObject(it)) {
            if (!e->string || left_out(e->string, e)) continue;
            rp_printf(key, "%s%s", at ? "." : "", e->string);
        } else {
            rp_printf(key, "[%d]", i);
        }
        flatten(b, key, e);
        key->len = at;
        if (key->p) key->p[at] = '\0';
    }
}

/* A failed gate's <failure>: the message says why, the text gives the numbers. */
static void failure(sbuf *b, const cJSON *report, const cJSON *g) {
    char why[320], value[40], thr[40];
    rp_gate_failure(report, g, why, sizeof why);
    double v = 0, t = 0;
    rp_num(rp_get(g, "value"), &v);
    rp_num(rp_get(g, "threshold"), &t);
    fmt_number(value, sizeof value, v);
    fmt_number(thr, sizeof thr, t);
    rp_puts(b, "      <failure message=\"");
    xml_text(b, why);
    rp_puts(b, "\" type=\"ulc.gate\">");
    rp_printf(b, "value %s, threshold %s (passes when value ", value, thr);
    xml_text(b, ulc_report_gate_op(g)); /* "<=" or ">=" */
    rp_puts(b, " threshold)");
    if (cJSON_IsString(rp_get(g, "split"))) {
        rp_puts(b, "; measured on ");
        xml_text(b, rp_str(rp_get(g, "split")));
    }
    rp_puts(b, ": ");
    xml_text(b, rp_str(rp_get(g, "what")));
    rp_puts(b, "</failure>\n");
}

char *ulc_report_junit(const cJSON *report) {
    const cJSON *gates = rp_get(report, "gates");
    int tests = 0, failures = 0;
    for (const cJSON *g = cJSON_IsArray(gates) ? gates->child : NULL; g; g = g->next, tests++)
        failures += !cJSON_IsTrue(rp_get(g, "passed"));
    double wall = 0;
    rp_num(rp_get(report, "wall_seconds"), &wall);
    sbuf b = {0}, key = {0};
    rp_puts(&key, "");
    rp_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<testsuites name=\"ulc\" tests=\"%d\" failures=\"%d\" errors=\"0\" "
              "time=\"%.3f\">\n"
              "  <testsuite name=\"ulc.gates\" tests=\"%d\" failures=\"%d\" errors=\"0\" "
              "skipped=\"0\" time=\"%.3f\">\n    <properties>\n",
              tests, failures, wall, tests, failures, wall);
    flatten(&b, &key, report);
    rp_puts(&b, "    </properties>\n");
    for (const cJSON *g = cJSON_IsArray(gates) ? gates->child : NULL; g; g = g->next) {
        rp_puts(&b, "    <testcase classname=\"ulc.gates\" name=\"");
        xml_text(&b, rp_str(rp_get(g, "name")));
        if (cJSON_IsTrue(rp_get(g, "passed"))) {
            rp_puts(&b, "\" time=\"0\"/>\n");
            continue;
        }
        rp_puts(&b, "\" time=\"0\">\n");
        failure(&b, report, g);
        rp_puts(&b, "    </testcase>\n");
    }
    rp_puts(&b, "  </testsuite>\n</testsuites>\n");
    free(key.p);
    if (b.oom || key.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- GitHub Actions ---------------------------------------------------------------------------- */

/* s as a workflow command's message (is_property 0) or property value (1): '%', CR and LF as
 * %25, %0D, %0A, and in a property also ':' and ',' as %3A, %2C (what actions/toolkit's
 * escapeData and escapeProperty do). */
static void gh_escape(sbuf *b, const char *s, int is_property) {
    for (; s && *s; s++) {
        if (*s == '%') rp_puts(b, "%25");
        else if (*s == '\r') rp_puts(b, "%0D");
        else if (*s == '\n') rp_puts(b, "%0A");
        else if (is_property && *s == ':') rp_puts(b, "%3A");
        else if (is_property && *s == ',') rp_puts(b, "%2C");
        else rp_printf(b, "%c", *s);
    }
}

char *ulc_report_github_annotations(const cJSON *report) {
    const cJSON *gates = rp_get(report, "gates");
    sbuf b = {0};
    rp_puts(&b, "");
    for (const cJSON *g = cJSON_IsArray(gates) ? gates->child : NULL; g; g = g->next) {
        if (cJSON_IsTrue(rp_get(g, "passed"))) continue;
        char why[320], title[96];
        rp_gate_failure(report, g, why, sizeof why);
        snprintf(title, sizeof title, "ulc gate %s", rp_str(rp_get(g, "name")));
        rp_puts(&b, "::error title=");
        gh_escape(&b, title, 1);
        rp_puts(&b, "::");
        gh_escape(&b, why, 0);
        rp_puts(&b, "\n");
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
