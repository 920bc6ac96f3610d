/* Unit test of scheduler/journal.c: records survive a reopen, ended jobs
 * are forgotten, a resumed job replaces the one it continues, a torn last
 * line (crash mid-write) is ignored, compaction keeps the highest job id, a
 * second opener of the same folder is refused, control characters are
 * refused. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "journal.h"

static dmri_journal_job_t job(uint64_t id, const char *subject, uint64_t resumes) {
    dmri_journal_job_t j;
    memset(&j, 0, sizeof j);
    j.job = id;
    j.flags = 2;
    j.b0_threshold = 12.5;
    j.resumes = resumes;
    snprintf(j.client, sizeof j.client, "dmri-submit@host:42");
    snprintf(j.subject, sizeof j.subject, "%s", subject);
    return j;
}

static const dmri_journal_job_t *find(const dmri_journal_t *jn, uint64_t id) {
    for (int i = 0; i < jn->nunfinished; i++)
        if (jn->unfinished[i].job == id)
            return &jn->unfinished[i];
    return NULL;
}

int main(void) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "/tmp/dmri-test-journal-%ld", (long)getpid());
    snprintf(path, sizeof path, "%s/journal", dir);
    dmri_err_t err = {0};
    dmri_journal_t jn;

    CHECK_INT(dmri_journal_open(&jn, dir, &err), 0);
    CHECK_INT(jn.nunfinished, 0);
    CHECK_INT(jn.max_job, 0);
    dmri_journal_job_t a = job(1, "/data/100307", 0), b = job(2, "100408 with space", 0),
                       c = job(3, "999999", 0);
    CHECK_INT(dmri_journal_submitted(&jn, &a, &err), 0);
    CHECK_INT(dmri_journal_submitted(&jn, &b, &err), 0);
    CHECK_INT(dmri_journal_submitted(&jn, &c, &err), 0);
    CHECK_INT(dmri_journal_ended(&jn, 'D', 1, &err), 0);
    CHECK_INT(dmri_journal_ended(&jn, 'F', 3, &err), 0);
    dmri_journal_job_t bad = job(4, "evil\tsubject\nS\t9", 0);
    CHECK(dmri_journal_submitted(&jn, &bad, &err) != 0);
    CHECK(!dmri_journal_text_ok("a\nb") && !dmri_journal_text_ok("") && dmri_journal_text_ok("a b"));

    /* a second scheduler on the same folder is refused */
    dmri_journal_t other;
    CHECK(dmri_journal_open(&other, dir, &err) != 0);
    CHECK_HAS(err, "in use");
    dmri_journal_close(&jn);

    /* reopen: job 2 is the only unfinished one, with every field intact */
    CHECK_INT(dmri_journal_open(&jn, dir, &err), 0);
    CHECK_INT(jn.nunfinished, 1);
    CHECK_INT(jn.max_job, 3);
    const dmri_journal_job_t *r = find(&jn, 2);
    CHECK(r != NULL);
    if (r) {
        CHECK(strcmp(r->subject, "100408 with space") == 0);
        CHECK(strcmp(r->client, "dmri-submit@host:42") == 0);
        CHECK_INT(r->flags, 2);
        CHECK(r->b0_threshold == 12.5);
    }
    /* job 5 resumes job 2; then a crash tears the next record */
    dmri_journal_job_t d = job(5, "100408 with space", 2);
    CHECK_INT(dmri_journal_submitted(&jn, &d, &err), 0);
    dmri_journal_close(&jn);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_INT(write(fd, "S\t6\t0\t10\t0\tcli", 14), 14); /* no newline: torn */
        close(fd);
    }
    CHECK_INT(dmri_journal_open(&jn, dir, &err), 0);
    CHECK_INT(jn.torn, 1);
    CHECK_INT(jn.nunfinished, 1);
    CHECK(find(&jn, 5) != NULL && find(&jn, 2) == NULL);
    CHECK_INT(jn.max_job, 5);
    CHECK_INT(dmri_journal_ended(&jn, 'C', 5, &err), 0);
    dmri_journal_close(&jn);

    /* everything ended: compaction still remembers the highest id */
    CHECK_INT(dmri_journal_open(&jn, dir, &err), 0);
    CHECK_INT(jn.nunfinished, 0);
    CHECK_INT(jn.max_job, 5);
    CHECK_INT(jn.torn, 0);
    dmri_journal_close(&jn);
    CHECK_INT(dmri_journal_open(&jn, dir, &err), 0);
    CHECK_INT(jn.max_job, 5);
    dmri_journal_close(&jn);

    /* garbage lines are counted, not trusted */
    FILE *f = fopen(path, "a");
    CHECK(f != NULL);
    if (f) {
        fputs("X\t1\nS\tnotanumber\t0\t10\t0\tc\ts\nD\t0\nS\t7\t0\t10\t0\tc\n", f);
        fclose(f);
    }
    CHECK_INT(dmri_journal_open(&jn, dir, &err), 0);
    CHECK_INT(jn.torn, 4);
    CHECK_INT(jn.nunfinished, 0);
    dmri_journal_close(&jn);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures != 0;
}
