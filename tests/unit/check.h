/* check: the assertion macros shared by the unit tests. Each failed check
 * prints its location and operands and counts in `failures`; a test's main
 * returns non-zero when failures > 0. Include once per test file. */
#ifndef DMRI_TEST_CHECK_H
#define DMRI_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);  \
            failures++;                                                            \
        }                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                      \
    do {                                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                                  \
        if (a_ != b_) {                                                                      \
            fprintf(stderr, "%s:%d: %s is %lld, expected %s = %lld\n", __FILE__, __LINE__,   \
                    #a, a_, #b, b_);                                                         \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* an error message must name the problem */
#define CHECK_HAS(err, sub)                                                                  \
    do {                                                                                     \
        if (!strstr((err).msg, (sub))) {                                                     \
            fprintf(stderr, "%s:%d: error \"%s\" does not contain \"%s\"\n", __FILE__,       \
                    __LINE__, (err).msg, (sub));                                             \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

#endif
