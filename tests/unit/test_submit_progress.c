/* test_submit_progress: dmri-submit's progress display — the exact progress
 * line, the 10 % steps a log gets, and the escape sequences of the block
 * redrawn in place on a terminal. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../client/submit_progress.c"

static int failures;

#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            failures++;                                                            \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
        }                                                                          \
    } while (0)
#define CHECK_INT(a, b) \
    CHECK((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0, "\n  got      '%s'\n  expected '%s'", (a), (b))

static void line_is(const char *name, int w, uint64_t done, uint64_t total, const char *step,
                    const char *expect) {
    char buf[256];
    size_t n = dmri_submit_progress_line(buf, sizeof buf, name, w, done, total, step);
    CHECK_STR(buf, expect);
    CHECK_INT(n, strlen(expect));
}

/* What the block functions write, captured through a memory stream. */
static char *capture_buf;
static size_t capture_len;

int main(void) {
    /* The example of the specification, then the edges. */
    line_is("100307", 6, 123, 236, "nlmeans", "100307  [#####.....]  52%  123/236 tasks  nlmeans");
    line_is("100307", 6, 0, 236, "load", "100307  [..........]   0%  0/236 tasks  load");
    line_is("100307", 6, 235, 236, "dti", "100307  [#########.]  99%  235/236 tasks  dti");
    line_is("100307", 6, 236, 236, "", "100307  [##########] 100%  236/236 tasks");
    line_is("100307", 6, 300, 236, NULL, "100307  [##########] 100%  300/236 tasks");
    line_is("a", 6, 1, 10, "mask", "a       [#.........]  10%  1/10 tasks  mask");
    line_is("sub", 4, 0, 0, "x", "sub   [..........]  waiting");
    line_is("longname", 3, 5, 7, "s", "longname  [#######...]  71%  5/7 tasks  s");
    /* Counts too big to multiply by 100 must neither overflow nor pass 99 %. */
    {
        char buf[256];
        dmri_submit_progress_line(buf, sizeof buf, "n", 1, UINT64_MAX - 1, UINT64_MAX, "");
        CHECK(strstr(buf, "] 99%") != NULL || strstr(buf, "]  99%") != NULL, "%s", buf);
        dmri_submit_progress_line(buf, sizeof buf, "n", 1, UINT64_MAX / 2, UINT64_MAX, "");
        CHECK(strstr(buf, "[####") != NULL && strstr(buf, " 49%") != NULL, "%s", buf);
    }
    /* Truncation: always terminated, length of what was written. */
    {
        char small[12];
        size_t n = dmri_submit_progress_line(small, sizeof small, "100307", 6, 1, 2, "x");
        CHECK_INT(n, sizeof small - 1);
        CHECK_STR(small, "100307  [##");
        CHECK_INT(dmri_submit_progress_line(small, 0, "x", 1, 1, 2, "x"), 0);
    }

    /* Deciles: the points where a log gets a new line. */
    CHECK_INT(dmri_submit_progress_decile(0, 0), -1);
    CHECK_INT(dmri_submit_progress_decile(5, 0), -1);
    CHECK_INT(dmri_submit_progress_decile(0, 236), 0);
    CHECK_INT(dmri_submit_progress_decile(23, 236), 0);
    CHECK_INT(dmri_submit_progress_decile(24, 236), 1);
    CHECK_INT(dmri_submit_progress_decile(235, 236), 9);
    CHECK_INT(dmri_submit_progress_decile(236, 236), 10);
    CHECK_INT(dmri_submit_progress_decile(999, 236), 10);
    CHECK_INT(dmri_submit_progress_decile(UINT64_MAX - 1, UINT64_MAX), 9);
    CHECK_INT(dmri_submit_progress_decile(UINT64_MAX, UINT64_MAX), 10);
    /* Walking 0..N prints each of 0..10 exactly once. */
    for (uint64_t total = 1; total <= 57; total += 7) {
        int last = -1, lines = 0;
        for (uint64_t d = 0; d <= total; d++) {
            int k = dmri_submit_progress_decile(d, total);
            CHECK(k >= last && k <= 10, "total %llu done %llu: decile %d after %d",
                  (unsigned long long)total, (unsigned long long)d, k, last);
            if (k > last) {
                lines++;
                last = k;
            }
        }
        CHECK(last == 10 && lines <= 11, "total %llu: last %d lines %d", (unsigned long long)total,
              last, lines);
    }

    /* The terminal block: cursor up over what was drawn, overwrite, erase
     * leftovers; lines cut to the width so none wraps. */
    {
        FILE *f = open_memstream(&capture_buf, &capture_len);
        dmri_submit_block_t b = {f, 12, 0};
        const char *two[] = {"first line is long", "second"};
        dmri_submit_block_draw(&b, two, 2);
        CHECK_INT(b.drawn, 2);
        fflush(f);
        CHECK_STR(capture_buf, "\rfirst line \033[K\n\rsecond\033[K\n");
        fseek(f, 0, SEEK_SET);
        const char *one[] = {"third"};
        dmri_submit_block_draw(&b, one, 1);
        fputc('\0', f);
        fflush(f);
        CHECK_STR(capture_buf, "\r\033[2A\rthird\033[K\n\033[J");
        fseek(f, 0, SEEK_SET);
        dmri_submit_block_clear(&b);
        CHECK_INT(b.drawn, 0);
        fputc('\0', f);
        fflush(f);
        CHECK_STR(capture_buf, "\r\033[1A\033[J");
        fseek(f, 0, SEEK_SET);
        dmri_submit_block_clear(&b); /* nothing on screen: writes nothing */
        dmri_submit_block_draw(&b, NULL, 0);
        fputc('\0', f);
        fflush(f);
        CHECK_STR(capture_buf, "");
        fclose(f);
        free(capture_buf);
    }

    if (failures) {
        fprintf(stderr, "test_submit_progress: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_submit_progress: ok\n");
    return 0;
}
