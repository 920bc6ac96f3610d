/* journal: the scheduler's crash journal (see journal.h). */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "dmri_alloc.h"
#include "fsutil.h"

#define LINE_MAX_BYTES 8192

int dmri_journal_text_ok(const char *s) {
    if (!s || !s[0])
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int format_submit(char *out, size_t outsz, const dmri_journal_job_t *j) {
    int n = snprintf(out, outsz, "S\t%" PRIu64 "\t%" PRIu64 "\t%.17g\t%" PRIu64 "\t%s\t%s\n",
                     j->job, j->flags, j->b0_threshold, j->resumes, j->client, j->subject);
    return n > 0 && (size_t)n < outsz ? n : -1;
}

static int append(dmri_journal_t *jn, const char *line, size_t len, dmri_err_t *err) {
    if (jn->fd < 0)
        return 0;
    /* One write() of an O_APPEND file: a record is never interleaved. */
    if (write_all(jn->fd, line, len) != 0 || fdatasync(jn->fd) != 0)
        return dmri_err_set(err, DMRI_EIO, "journal %s: %s", jn->path, strerror(errno));
    return 0;
}

int dmri_journal_submitted(dmri_journal_t *jn, const dmri_journal_job_t *job, dmri_err_t *err) {
    if (!dmri_journal_text_ok(job->subject) || !dmri_journal_text_ok(job->client))
        return dmri_err_set(err, DMRI_EINVAL, "journal: control characters in a record");
    char line[LINE_MAX_BYTES];
    int n = format_submit(line, sizeof line, job);
    if (n < 0)
        return dmri_err_set(err, DMRI_ERANGE, "journal: record too long");
    if (job->job > jn->max_job)
        jn->max_job = job->job;
    return append(jn, line, (size_t)n, err);
}

int dmri_journal_ended(dmri_journal_t *jn, char what, uint64_t job, dmri_err_t *err) {
    char line[64];
    int n = snprintf(line, sizeof line, "%c\t%" PRIu64 "\n", what, job);
    return append(jn, line, (size_t)n, err);
}

/* ---- replay ---- */

static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static void remove_job(dmri_journal_t *jn, uint64_t job) {
    for (int i = 0; i < jn->nunfinished; i++)
        if (jn->unfinished[i].job == job) {
            jn->unfinished[i] = jn->unfinished[--jn->nunfinished];
            return;
        }
}

/* One complete line (without '\n'). Returns 0, or -1 if it is not a record. */
static int replay_line(dmri_journal_t *jn, char *line) {
    char *f[8] = {0};
    int nf = 0;
    for (char *p = line; nf < 8;) {
        f[nf++] = p;
        char *tab = strchr(p, '\t');
        if (!tab)
            break;
        *tab = '\0';
        p = tab + 1;
    }
    uint64_t job;
    if (nf < 2 || strlen(f[0]) != 1 || parse_u64(f[1], &job) != 0 || job == 0)
        return -1;
    if (f[0][0] == 'S') {
        if (nf != 7)
            return -1;
        dmri_journal_job_t j;
        memset(&j, 0, sizeof j);
        j.job = job;
        char *end;
        j.b0_threshold = strtod(f[3], &end);
        if (parse_u64(f[2], &j.flags) != 0 || *end || parse_u64(f[4], &j.resumes) != 0 ||
            strlen(f[5]) >= sizeof j.client || strlen(f[6]) >= sizeof j.subject ||
            !dmri_journal_text_ok(f[6]))
            return -1;
        snprintf(j.client, sizeof j.client, "%s", f[5]);
        snprintf(j.subject, sizeof j.subject, "%s", f[6]);
        if (job > jn->max_job)
            jn->max_job = job;
        if (j.resumes)
            remove_job(jn, j.resumes); /* continued by this one */
        jn->unfinished = dmri_realloc(jn->unfinished,
                                      (size_t)(jn->nunfinished + 1) * sizeof *jn->unfinished);
        jn->unfinished[jn->nunfinished++] = j;
        return 0;
    }
    if (nf != 2 || !strchr("DFC", f[0][0]))
        return -1;
    if (job > jn->max_job)
        jn->max_job = job;
    remove_job(jn, job);
    return 0;
}

static int replay(dmri_journal_t *jn, dmri_err_t *err) {
    FILE *f = fopen(jn->path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        return dmri_err_set(err, DMRI_EIO, "journal %s: %s", jn->path, strerror(errno));
    }
    char *line = dmri_malloc(LINE_MAX_BYTES + 2);
    while (fgets(line, LINE_MAX_BYTES + 2, f)) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') {
            jn->torn++; /* the torn tail of a crash, or an overlong line */
            if (n == LINE_MAX_BYTES + 1) {
                int c;
                while ((c = fgetc(f)) != EOF && c != '\n') {
                }
            }
            continue;
        }
        line[n - 1] = '\0';
        if (replay_line(jn, line) != 0)
            jn->torn++;
    }
    dmri_free(line);
    fclose(f);
    return 0;
}

/* Rewrite the journal with what is unfinished (plus the highest job id, so
 * ids are never reused), then reopen it for appending. */
static int compact(dmri_journal_t *jn, dmri_err_t *err) {
    size_t cap = 256 + (size_t)jn->nunfinished * LINE_MAX_BYTES, len = 0;
    char *buf = dmri_malloc(cap);
    for (int i = 0; i < jn->nunfinished; i++) {
        int n = format_submit(buf + len, cap - len, &jn->unfinished[i]);
        if (n > 0)
            len += (size_t)n;
    }
    int has_max = 0;
    for (int i = 0; i < jn->nunfinished; i++)
        if (jn->unfinished[i].job == jn->max_job)
            has_max = 1;
    if (jn->max_job && !has_max)
        len += (size_t)snprintf(buf + len, cap - len, "C\t%" PRIu64 "\n", jn->max_job);
    int rc = dmri_write_file_atomic(jn->path, buf, len, err);
    dmri_free(buf);
    if (rc != 0)
        return rc;
    jn->fd = open(jn->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (jn->fd < 0)
        return dmri_err_set(err, DMRI_EIO, "journal %s: %s", jn->path, strerror(errno));
    return 0;
}

int dmri_journal_open(dmri_journal_t *jn, const char *dir, dmri_err_t *err) {
    memset(jn, 0, sizeof *jn);
    jn->fd = jn->lock_fd = -1;
    int rc = dmri_mkdir_p(dir, err);
    if (rc != 0)
        return dmri_err_prefix(err, "--state-dir: ");
    char lock[4200];
    if (dmri_path_join(jn->path, sizeof jn->path, dir, "journal") != 0 ||
        dmri_path_join(lock, sizeof lock, dir, "lock") != 0)
        return dmri_err_set(err, DMRI_ERANGE, "--state-dir: path too long");
    jn->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (jn->lock_fd < 0)
        return dmri_err_set(err, DMRI_EIO, "--state-dir %s: %s", dir, strerror(errno));
    if (flock(jn->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        dmri_journal_close(jn);
        return dmri_err_set(err, DMRI_EINVAL,
                            "--state-dir %s is in use by another dmri-scheduler", dir);
    }
    if ((rc = replay(jn, err)) != 0 || (rc = compact(jn, err)) != 0) {
        dmri_journal_close(jn);
        return rc;
    }
    return 0;
}

void dmri_journal_close(dmri_journal_t *jn) {
    if (jn->fd >= 0)
        close(jn->fd);
    if (jn->lock_fd >= 0)
        close(jn->lock_fd);
    jn->fd = jn->lock_fd = -1;
    dmri_free(jn->unfinished);
    jn->unfinished = NULL;
    jn->nunfinished = 0;
}
