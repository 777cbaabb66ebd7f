/*
 * test_report_ci.c — unit tests for eval/report.h's CI renderers on hand-built reports, for what
 * ulc's own runs never produce (tests/e2e/test_junit.py covers real runs): gate names and splits
 * holding XML markup, GitHub's escapes (% CR LF in the message, also : and , in the title),
 * control characters and bytes that are not UTF-8 in a property, a non-finite number, an empty
 * gates list, nested lists. Each expected text is written out in full.
 * CHECK records a failure and continues; ends with "N passed, M failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "eval/report.h"

#include "tests/unit/check.h"

static int g_checks_run;

#define EXPECT_TEXT(got, want)                                                                \
    do {                                                                                      \
        g_checks_run++;                                                                       \
        const char *got_ = (got), *want_ = (want);                                            \
        if (!got_ || strcmp(got_, want_) != 0) {                                              \
            fprintf(stderr, "  %s:%d: got\n%s\n  want\n%s\n", __FILE__, __LINE__,             \
                    got_ ? got_ : "(null)", want_);                                           \
            g_failed_checks++;                                                                \
        }                                                                                     \
    } while (0)

static cJSON *gate(const char *name, double thr, double value, int passed, const char *split) {
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "name", name);
    cJSON_AddNumberToObject(g, "threshold", thr);
    cJSON_AddNumberToObject(g, "value", value);
    cJSON_AddBoolToObject(g, "passed", passed);
    if (split) cJSON_AddStringToObject(g, "split", split);
    cJSON_AddStringToObject(g, "what", "w");
    return g;
}

/* A report whose strings hold what XML and GitHub must escape. */
static void test_escaping(void) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "path", "a&b<c>\"d'e\tf\ng\rh\x01i\xffj\xef\xbf\xbe");
    cJSON_AddNumberToObject(r, "nan", NAN);
    cJSON *l = cJSON_AddArrayToObject(r, "rows");
    cJSON *inner = cJSON_CreateArray();
    cJSON_AddItemToArray(inner, cJSON_CreateNumber(0.1));
    cJSON_AddItemToArray(inner, cJSON_CreateNull());
    cJSON_AddItemToArray(l, inner);
    cJSON_AddNumberToObject(r, "wall_seconds", 1.23456);
    cJSON *gates = cJSON_AddArrayToObject(r, "gates");
    /* rp_gate_failure puts the split into forget_acc_max's message */
    cJSON_AddItemToArray(gates, gate("forget_acc_max", 0.05, 0.25, 0, "D\r\n%:,<"));
    cJSON_AddItemToArray(gates, gate("mia_max", 0.5, 0.125, 1, NULL));

    char *gh = ulc_report_github_annotations(r);
    EXPECT_TEXT(gh, "::error title=ulc gate forget_acc_max::D%0D%0A%25:,< accuracy 0.25 > 0.05\n");
    free(gh);
    char *x = ulc_report_junit(r);
    EXPECT_TEXT(x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<testsuites name=\"ulc\" tests=\"2\" failures=\"1\" errors=\"0\" time=\"1.235\">\n"
        "  <testsuite name=\"ulc.gates\" tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"0\" "
        "time=\"1.235\">\n"
        "    <properties>\n"
        "      <property name=\"path\" value=\"a&amp;b&lt;c&gt;&quot;d&apos;e&#9;f&#10;g&#13;h"
        "\xef\xbf\xbdi\xef\xbf\xbdj\xef\xbf\xbd\"/>\n"
        "      <property name=\"nan\" value=\"null\"/>\n"
        "      <property name=\"rows[0]\" value=\"0.1,null\"/>\n"
        "      <property name=\"gates[0].name\" value=\"forget_acc_max\"/>\n"
        "      <property name=\"gates[0].threshold\" value=\"0.05\"/>\n"
        "      <property name=\"gates[0].value\" value=\"0.25\"/>\n"
        "      <property name=\"gates[0].passed\" value=\"false\"/>\n"
        "      <property name=\"gates[0].split\" value=\"D&#13;&#10;%:,&lt;\"/>\n"
        "      <property name=\"gates[0].what\" value=\"w\"/>\n"
        "      <property name=\"gates[1].name\" value=\"mia_max\"/>\n"
        "      <property name=\"gates[1].threshold\" value=\"0.5\"/>\n"
        "      <property name=\"gates[1].value\" value=\"0.125\"/>\n"
        "      <property name=\"gates[1].passed\" value=\"true\"/>\n"
        "      <property name=\"gates[1].what\" value=\"w\"/>\n"
        "    </properties>\n"
        "    <testcase classname=\"ulc.gates\" name=\"forget_acc_max\" time=\"0\">\n"
        "      <failure message=\"D&#13;&#10;%:,&lt; accuracy 0.25 &gt; 0.05\" type=\"ulc.gate\">"
        "value 0.25, threshold 0.05 (passes when value &lt;= threshold); measured on "
        "D&#13;&#10;%:,&lt;: w</failure>\n"
        "    </testcase>\n"
        "    <testcase classname=\"ulc.gates\" name=\"mia_max\" time=\"0\"/>\n"
        "  </testsuite>\n"
        "</testsuites>\n");
    free(x);
    cJSON_Delete(r);
}

/* A gate name with markup, and one with ':' and ',' for the title (hand-built: ulc's own names
 * are plain). */
static void test_names(void) {
    cJSON *r = cJSON_CreateObject();
    cJSON *gates = cJSON_AddArrayToObject(r, "gates");
    cJSON_AddItemToArray(gates, gate("x<&>\"'y", 1, 2, 0, NULL));
    cJSON_AddItemToArray(gates, gate("a:b,c%", 1, 2, 0, NULL));
    char *gh = ulc_report_github_annotations(r);
    EXPECT_TEXT(gh, "::error title=ulc gate x<&>\"'y::MIA (entropy) 2 > 1\n"
                    "::error title=ulc gate a%3Ab%2Cc%25::MIA (entropy) 2 > 1\n");
    free(gh);
    char *x = ulc_report_junit(r);
    g_checks_run++;
    if (!x || !strstr(x, "<testcase classname=\"ulc.gates\" name=\"x&lt;&amp;&gt;&quot;&apos;y\"")) {
        fprintf(stderr, "  %s:%d: escaped testcase name missing:\n%s\n", __FILE__, __LINE__,
                x ? x : "(null)");
        g_failed_checks++;
    }
    free(x);
    cJSON_Delete(r);
}

/* No gates: zero testcases, the properties still there ("gates" as an empty list); no
 * annotations. */
static void test_no_gates(void) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "method", "rfa");
    cJSON_AddItemToObject(r, "train", cJSON_CreateObject());
    cJSON_AddArrayToObject(r, "gates");
    char *gh = ulc_report_github_annotations(r);
    EXPECT_TEXT(gh, "");
    free(gh);
    char *x = ulc_report_junit(r);
    EXPECT_TEXT(x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<testsuites name=\"ulc\" tests=\"0\" failures=\"0\" errors=\"0\" time=\"0.000\">\n"
        "  <testsuite name=\"ulc.gates\" tests=\"0\" failures=\"0\" errors=\"0\" skipped=\"0\" "
        "time=\"0.000\">\n"
        "    <properties>\n"
        "      <property name=\"method\" value=\"rfa\"/>\n"
        "      <property name=\"gates\" value=\"\"/>\n"
        "    </properties>\n"
        "  </testsuite>\n"
        "</testsuites>\n");
    free(x);
    cJSON_Delete(r);
}

int main(void) {
    test_escaping();
    test_names();
    test_no_gates();
    printf("%d passed, %d failed\n", g_checks_run - g_failed_checks, g_failed_checks);
    return g_failed_checks ? 1 : 0;
}
