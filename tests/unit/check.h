/* check.h — the C unit tests' assertion macros: a failed CHECK is reported with its place and
 * counted (g_failed_checks), and the test goes on. */
#ifndef ULC_TESTS_UNIT_CHECK_H
#define ULC_TESTS_UNIT_CHECK_H

#include <stdio.h>
#include <string.h>

static int g_failed_checks;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
            g_failed_checks++;                                                                \
        }                                                                                     \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                           \
    do {                                                                                      \
        if (!strstr((hay), (needle))) {                                                       \
            fprintf(stderr, "  %s:%d: '%s' does not contain '%s'\n", __FILE__, __LINE__,      \
                    (hay), (needle));                                                         \
            g_failed_checks++;                                                                \
        }                                                                                     \
    } while (0)

#endif
