/* report: the performance report's HTML (report.h). */
#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dmri_alloc.h"
#include "textbuf.h"

/* Append text from a peer inside a JSON string or as JSON: '<' cannot end
 * the <script> block it sits in. */
static void put_script_safe(dmri_tb_t *b, const char *s) {
    for (; *s; s++) {
        if (*s == '<')
            dmri_tb_puts(b, "\\u003c");
        else
            dmri_tb_put(b, s, 1);
    }
}

int dmri_report_write(const char *path, const char *scheduler, const dmri_report_job_t *jobs,
                      int njobs, dmri_err_t *err) {
    dmri_tb_t data = {0};
    dmri_tb_puts(&data, "{\"scheduler\":");
    dmri_tb_json_str(&data, scheduler ? scheduler : "");
    dmri_tb_puts(&data, ",\"jobs\":[");
    for (int i = 0; i < njobs; i++) {
        const dmri_report_job_t *j = &jobs[i];
        dmri_tb_puts(&data, i ? ",{\"name\":" : "{\"name\":");
        dmri_tb_json_str(&data, j->name ? j->name : "");
        dmri_tb_puts(&data, ",\"state\":");
        dmri_tb_json_str(&data, j->state ? j->state : "");
        dmri_tb_puts(&data, ",\"wall_s\":");
        dmri_tb_json_num(&data, j->wall_s);
        /* Sent as strings and parsed by the page: a scheduler's bad JSON
         * spoils its own entry, not the report. */
        dmri_tb_puts(&data, ",\"summary\":");
        dmri_tb_json_str(&data, j->summary ? j->summary : "");
        dmri_tb_puts(&data, ",\"events\":");
        dmri_tb_json_str(&data, j->events ? j->events : "");
        dmri_tb_puts(&data, "}");
    }
    dmri_tb_puts(&data, "]}");

    const char *mark = strstr(dmri_report_html, DMRI_REPORT_DATA_MARK);
    dmri_tb_t page = {0};
    if (mark) {
        dmri_tb_put(&page, dmri_report_html, (size_t)(mark - dmri_report_html));
        put_script_safe(&page, data.p);
        dmri_tb_puts(&page, mark + strlen(DMRI_REPORT_DATA_MARK));
    } else {
        dmri_tb_puts(&page, dmri_report_html);
    }
    dmri_tb_free(&data);

    char tmp[4200];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    int rc = 0;
    FILE *f = NULL;
    if (n < 0 || (size_t)n >= sizeof tmp)
        rc = dmri_err_set(err, DMRI_ERANGE, "%s: path too long", path);
    else if (!(f = fopen(tmp, "w")))
        rc = dmri_err_set(err, DMRI_EIO, "%s: cannot write the report: %s", path,
                          strerror(errno));
    if (f) {
        int bad = fwrite(page.p, 1, page.n, f) != page.n;
        bad |= fclose(f) != 0;
        if (bad)
            rc = dmri_err_set(err, DMRI_EIO, "%s: cannot write the report: %s", path,
                              strerror(errno));
        else if (rename(tmp, path) != 0)
            rc = dmri_err_set(err, DMRI_EIO, "%s: cannot move into place: %s", path,
                              strerror(errno));
        if (rc)
            unlink(tmp);
    }
    dmri_tb_free(&page);
    return rc;
}
