/*
 * report.h — the main command's reports and gates (docs/spec.md, "The report" and "Gates").
 *
 * forget.c builds one JSON object (cJSON) per run; everything here reads it, so the three
 * formats say the same thing:
 *
 *   .json          the object itself (cJSON_Print)
 *   .md            Markdown: the same content as tables
 *   .html / .htm   one self-contained page (no external resources: no scripts, fonts, images
 *                  or style sheets from elsewhere) with inline SVG charts written here —
 *                  accuracy per split before/after (and MIA when the report has it), accuracy
 *                  per class before/after (train and test), and the training loss curve
 *
 * Any other extension is JSON (the spec's "report" key has always meant JSON). For CI, the
 * gates also render as JUnit XML (ulc_report_junit) and as GitHub Actions workflow commands
 * (ulc_report_github_annotations), in report_ci.c.
 *
 *     cJSON *rep = ...;                                  // forget.c's report
 *     char *fails = NULL; int failed = 0;
 *     if (ulc_report_gates(rep, &gates, &failed, &fails, ctx)) ...  // adds rep["gates"]
 *     char *html = ulc_report_render(rep, ULC_REPORT_HTML);      // caller frees
 */
#ifndef ULC_EVAL_REPORT_H
#define ULC_EVAL_REPORT_H

#include <cjson/cJSON.h>

#include "common/status.h"

/* The gates a request may set (the spec's key "gates"): thresholds on the result, checked after
 * evaluation. */
enum { ULC_GATE_FORGET_ACC = 0, ULC_GATE_RETAIN_DROP, ULC_GATE_MIA, ULC_GATE_FORGET_PPL,
       ULC_GATE_EXTRACT, ULC_GATE_RELEARN, ULC_GATE_COUNT };
typedef struct ulc_gates {
    int set[ULC_GATE_COUNT];    /* which gates are given */
    double max[ULC_GATE_COUNT]; /* their thresholds: fractions in [0, 1], except FORGET_PPL's,
                                   a perplexity, and RELEARN's, a step count >= 1; both are
                                   minimums */
} ulc_gates;

typedef enum ulc_report_format {
    ULC_REPORT_JSON = 0,
    ULC_REPORT_MARKDOWN,
    ULC_REPORT_HTML
} ulc_report_format;

/* The format a report path asks for, by its extension (case-insensitive). */
ulc_report_format ulc_report_format_of(const char *path);

/* The report as text in fmt (malloc'd, NUL-terminated, ending in a newline; the caller frees);
 * NULL when out of memory. */
char *ulc_report_render(const cJSON *report, ulc_report_format fmt);

/* Checks each gate given against the report's numbers:
 *
 *   forget_acc_max       accuracy.after of Dft (Df without class-forgetting test data) <= max
 *   retain_acc_drop_max  accuracy.before − accuracy.after of Drt (Dt for sample forgetting
 *                        with test data, Dr without test data) <= max
 *   mia_max              mia.entropy (the fraction of Df the attack calls members) <= max
 *   forget_ppl_min       text models: perplexity.after of Df >= min
 *   extract_max          text models: extraction.after.Df.rouge_l <= max
 *   relearn_steps_min    relearn.steps_to_50 (relearn.steps + 1 when null: not within the
 *                        probe) >= min
 *
 * and adds "gates": [{name, threshold, value, passed, split/what}] to report (in that order; an
 * empty list when the spec has none). *failed counts the failed gates; *messages (malloc'd, or
 * NULL when none failed) holds one line per failed gate, e.g.
 * "gate forget_acc_max failed: Dft accuracy 0.243 > 0.05". A gate whose number the report lacks
 * is ulc's bug (the spec checks made sure it would be there): ULC_ERR_INTERNAL. */
ulc_status ulc_report_gates(cJSON *report, const ulc_gates *gates, int *failed, char **messages,
                            ulc_ctx *ctx);

/* How a gate of the report's "gates" list compares its value with its threshold to pass: "<="
 * for the maximums, ">=" for the minimums (forget_ppl_min, relearn_steps_min). */
const char *ulc_report_gate_op(const cJSON *gate);

/* The report as JUnit XML (malloc'd, NUL-terminated; the caller frees; NULL when out of memory),
 * for CI systems that show test results (docs/ci.md):
 *
 *   <testsuites name="ulc" tests= failures= errors="0" time=WALL>
 *     <testsuite name="ulc.gates" tests= failures= errors="0" skipped="0" time=WALL>
 *       <properties> one <property name= value=> per number or string of the report </properties>
 *       <testcase classname="ulc.gates" name=GATE time="0"/>          a passed gate
 *       <testcase ...><failure message=WHY type="ulc.gate">...</failure></testcase>
 *
 * one testcase per entry of report["gates"] (in its order; none when the list is empty: the
 * suite then only carries the properties). WALL is wall_seconds with 3 decimals; WHY the
 * measured value against the limit ("Dft accuracy 0.243 > 0.05"). A property's name is its
 * path in the report: object members joined with '.', list items as [I], a list of scalars one
 * property with its values joined by ','; numbers as JSON prints them. The timings, DELETE's
 * teacher_cache and the per-step loss lists (loss_curve, loss) are left out, so two runs of the
 * same request differ only in the time attributes. Every attribute and text is escaped (markup
 * characters as entities, tab/CR/LF as character references, what XML 1.0 cannot hold — other
 * control characters, bytes that are not UTF-8 — as U+FFFD). No timestamp, no host name. */
char *ulc_report_junit(const cJSON *report);

/* One GitHub Actions workflow command per failed gate of report["gates"], in its order:
 *
 *   ::error title=ulc gate forget_acc_max::Dft accuracy 0.243 > 0.05
 *
 * the message escaped as GitHub requires ('%', CR, LF as %25, %0D, %0A; the title also ':' and
 * ',' as %3A, %2C). malloc'd ("" when no gate failed; the caller frees); NULL when out of
 * memory. */
char *ulc_report_github_annotations(const cJSON *report);

#endif
