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
    /* One fprintf per piece; the log is written by the main thread only, so
     * lines never interleave. */
    fprintf(f, "%s.%03dZ dmri-worker[%ld]: %s", stamp, (int)(tv.tv_usec / 1000), (long)getpid(),
            prefix);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
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
