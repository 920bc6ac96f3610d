/* s3_read: objects read from S3 straight into memory: small ones (bvals,
 * bvecs) into a buffer, data.nii.gz inflated on the fly through a pipe into
 * the image (no temporary file). Uses only the public s3.h requests. */
#include "s3_read.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dmri_alloc.h"

typedef struct {
    char *buf;
    size_t len, cap, max;
} membuf_t;

static int mem_sink(void *ctx, uint64_t offset, const void *data, size_t len) {
    membuf_t *m = ctx;
    if (offset > m->len || offset + len > m->max)
        return 1;
    size_t need = (size_t)offset + len + 1;
    if (need > m->cap) {
        m->cap = need * 2 < m->max + 1 ? need * 2 : m->max + 1;
        m->buf = dmri_realloc(m->buf, m->cap);
    }
    memcpy(m->buf + offset, data, len);
    m->len = (size_t)offset + len; /* a 200 restarting at 0 overwrites */
    m->buf[m->len] = '\0';
    return 0;
}

int dmri_s3_get_mem(dmri_s3_t *s3, const char *key, size_t max, char **out, size_t *len,
                    dmri_err_t *err) {
    membuf_t m = {dmri_malloc(1), 0, 1, max};
    m.buf[0] = '\0';
    int rc = dmri_s3_get(s3, key, 0, mem_sink, &m, err);
    if (rc == DMRI_ECANCEL)
        rc = dmri_err_set(err, DMRI_EFORMAT, "%s: larger than %zu bytes", key, max);
    if (rc != 0) {
        dmri_free(m.buf);
        return rc;
    }
    *out = m.buf;
    *len = m.len;
    return 0;
}

typedef struct {
    dmri_s3_t *s3;
    const char *key;
    int wfd;
    uint64_t written;
    const dmri_s3_stream_opts_t *opts;
    int tee_fd;       /* -1 when not teeing (or after a write to it failed) */
    int tee_failed;
    int attempts;
    int rc;
    dmri_err_t err;
} pump_t;

static int write_all(int fd, const char *d, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, d, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        d += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The pipe carries bytes in order: a restart at 0 (server ignoring Range
 * after a retry) cannot be replayed into an inflater, so it is an error. */
static int pipe_sink(void *ctx, uint64_t offset, const void *data, size_t len) {
    pump_t *p = ctx;
    if (offset != p->written)
        return 1;
    const char *d = data;
    while (len > 0) {
        ssize_t w = write(p->wfd, d, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return 1; /* reader gone (EPIPE) */
        if (p->tee_fd >= 0 && write_all(p->tee_fd, d, (size_t)w) != 0) {
            p->tee_fd = -1; /* cache disk full: keep reading, just do not cache */
            p->tee_failed = 1;
        }
        d += w;
        len -= (size_t)w;
        p->written += (uint64_t)w;
    }
    return 0;
}

static void *pump_main(void *arg) {
    pump_t *p = arg;
    /* EPIPE instead of a process-killing SIGPIPE when the reader stops. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* A transfer cut half way resumes where it stopped (Range): the
     * inflater on the other end of the pipe never notices. */
    int retries = p->opts ? p->opts->retries : 0;
    int backoff = p->opts && p->opts->backoff_ms > 0 ? p->opts->backoff_ms : 1000;
    for (;;) {
        p->attempts++;
        p->rc = dmri_s3_get(p->s3, p->key, p->written, pipe_sink, p, &p->err);
        if (p->rc != DMRI_EIO || p->attempts > retries)
            break;
        long ms = (long)backoff << (p->attempts - 1 < 6 ? p->attempts - 1 : 6);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    close(p->wfd);
    return NULL;
}

int dmri_s3_read_image_ex(dmri_s3_t *s3, const char *key, const char *name,
                          const dmri_s3_stream_opts_t *opts, dmri_image_t *img,
                          dmri_s3_stream_stats_t *stats, dmri_err_t *err) {
    int fds[2];
    if (pipe(fds) != 0)
        return dmri_err_set(err, DMRI_EIO, "pipe: %s", strerror(errno));
    pump_t p = {s3, key, fds[1], 0, opts, opts ? opts->tee_fd : -1, 0, 0, 0, {0}};
    pthread_t t;
    if (pthread_create(&t, NULL, pump_main, &p) != 0) {
        close(fds[0]);
        close(fds[1]);
        return dmri_err_set(err, DMRI_EIO, "cannot start a download thread");
    }
    dmri_err_t rerr;
    int rc = dmri_image_read_fd(name, fds[0], img, &rerr);
    if (rc == 0) {
        /* The image ends before the gzip trailer's padding, if any: drain so
         * the tee gets the whole object. */
        char sink[65536];
        while (read(fds[0], sink, sizeof sink) > 0) {
        }
    }
    close(fds[0]); /* a writer still going gets EPIPE and stops */
    pthread_join(t, NULL);
    if (stats) {
        stats->bytes = p.written;
        stats->attempts = p.attempts;
        stats->tee_complete = opts && opts->tee_fd >= 0 && !p.tee_failed && p.rc == 0 && rc == 0;
    }
    if (p.rc != 0 && p.rc != DMRI_ECANCEL) {
        /* The download failed: its reason beats the reader's "truncated". */
        dmri_image_close(img);
        *err = p.err;
        return p.rc;
    }
    if (rc != 0) {
        *err = rerr;
        return rc;
    }
    return 0;
}

int dmri_s3_read_image(dmri_s3_t *s3, const char *key, const char *name, dmri_image_t *img,
                       dmri_err_t *err) {
    return dmri_s3_read_image_ex(s3, key, name, NULL, img, NULL, err);
}
