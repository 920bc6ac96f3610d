/* wlog: the worker's log — one line per notable event, with a UTC timestamp
 * and the process id, to stderr or a file; plus a rate limiter so a peer
 * that floods us with garbage cannot flood the log. */
#ifndef DMRI_WLOG_H
#define DMRI_WLOG_H

#include <stdio.h>

/* Log to `f` (not owned; stderr when never set). Main thread only. */
void dmri_wlog_set_file(FILE *f);
FILE *dmri_wlog_file(void);

/* "2024-05-01T12:00:00.123Z dmri-worker[1234]: <message>\n", flushed. */
void dmri_wlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* At most `burst` lines per `period` seconds; the first line after a quiet
 * spell says how many were suppressed. */
typedef struct {
    double period;      /* seconds */
    int burst;          /* lines allowed per period */
    double window_start;
    int used;           /* lines logged in this window */
    unsigned long suppressed; /* lines dropped since the last one logged */
} dmri_wlog_limit_t;

void dmri_wlog_limit_init(dmri_wlog_limit_t *l, double period, int burst);
void dmri_wlog_limited(dmri_wlog_limit_t *l, double now, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
