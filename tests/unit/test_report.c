/* Unit tests of dmri-submit --report's writer (client/report.c): the data
 * block is filled into the template, every text from the scheduler ends up
 * inside a JSON string (so a hostile summary or event list cannot close the
 * <script> block or run as code), and write errors name the file. The
 * rendering itself is checked in Chromium by tests/integration/test_dashboard.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../client/report.c"
#include "dmri_alloc.h"

#include "check.h"

/* The real page is generated at build time; its data slot is what matters. */
const char dmri_report_html[] =
    "<html><script type=\"application/json\" id=\"data\">/*DMRI_REPORT_DATA*/</script></html>";

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = dmri_calloc(1 << 16, 1);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

int main(void) {
    char path[] = "/tmp/dmri-test-report-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    dmri_report_job_t jobs[2] = {
        {.name = "subj\"A", .state = "done", .wall_s = 12.5,
         .summary = "{\"tasks\": 3}",
         .events = "[{\"step\":\"nlmeans\",\"worker\":\"</script><script>alert(1)</script>\"}]"},
        {.name = "<b>B</b>", .state = "failed", .wall_s = 1, .summary = NULL, .events = NULL},
    };
    dmri_err_t err = {0};
    CHECK_INT(dmri_report_write(path, "127.0.0.1:8786", jobs, 2, &err), 0);
    char *html = slurp(path);
    CHECK(html != NULL);
    if (html) {
        /* One script block, closed once: nothing from the data closed it. */
        const char *open = strstr(html, "<script");
        CHECK(open && !strstr(open + 1, "<script"));
        const char *close = strstr(html, "</script>");
        CHECK(close && !strstr(close + 1, "</script>") && strstr(close, "</html>"));
        CHECK(strstr(html, "/*DMRI_REPORT_DATA*/") == NULL);
        CHECK(strstr(html, "\"scheduler\":\"127.0.0.1:8786\"") != NULL);
        CHECK(strstr(html, "\"name\":\"subj\\\"A\"") != NULL);
        CHECK(strstr(html, "\"name\":\"\\u003cb\\u003eB\\u003c/b\\u003e\"") != NULL);
        CHECK(strstr(html, "\"state\":\"failed\",\"wall_s\":1,\"summary\":\"\",\"events\":\"\"")
              != NULL);
        /* Events travel as a JSON string, parsed by the page. */
        CHECK(strstr(html, "\"events\":\"[{\\\"step\\\":\\\"nlmeans\\\"") != NULL);
        CHECK(strstr(html, "alert(1)") != NULL && strstr(html, "<script>alert") == NULL);
        dmri_free(html);
    }
    unlink(path);
    CHECK(dmri_report_write("/nonexistent-dir/r.html", "x", jobs, 1, &err) != 0);
    CHECK_HAS(err, "/nonexistent-dir/r.html");
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures != 0;
}
