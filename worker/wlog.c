/* wlog: timestamped, rate-limited log lines of the worker (see wlog.h). */
#include "wlog.h"

#include <stdarg.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static FILE *log_file;

void dmri_wlog_set_file(FILE *f) { log_file = f; }

FILE *dmri_wlog_file(void) { return log_file ? log_file : stderr; }

static void vlog(const char *prefix, const char *fmt, va_list ap) {
    FILE *f = dmri_wlog_file();
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    time_t t = tv.tv_sec;
    gmtime_r(&t, &tm);
    char stamp[64];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    /* The whole line in one fputs (stdio locks each call): the ZAP thread of
     * proto/auth.c logs refusals too, and lines must not interleave. */
    char line[4096];
    int n = snprintf(line, sizeof line, "%s.%03dZ dmri-worker[%ld]: %s", stamp,
                     (int)(tv.tv_usec / 1000), (long)getpid(), prefix);
    if (n < 0 || (size_t)n >= sizeof line - 2)
        n = 0;
    int m = vsnprintf(line + n, sizeof line - 1 - (size_t)n, fmt, ap);
    size_t len = m < 0 ? (size_t)n : (size_t)n + (size_t)m;
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, f);
    fflush(f);
}

void dmri_wlog(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void dmri_wlog_limit_init(dmri_wlog_limit_t *l, double period, int burst) {
    l->period = period;
    l->burst = burst;
    l->window_start = -1e300;
    l->used = 0;
    l->suppressed = 0;
}

void dmri_wlog_limited(dmri_wlog_limit_t *l, double now, const char *fmt, ...) {
    if (now - l->window_start >= l->period) {
        l->window_start = now;
        l->used = 0;
    }
    if (l->used >= l->burst) {
        l->suppressed++;
        return;
    }
    l->used++;
    char prefix[96] = "";
    if (l->suppressed) {
        snprintf(prefix, sizeof prefix, "(%lu similar lines suppressed) ", l->suppressed);
        l->suppressed = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vlog(prefix, fmt, ap);
    va_end(ap);
}
