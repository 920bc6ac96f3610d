/* sched_status: the scheduler's status as one small JSON document — the
 * live workers (name, peer address, threads) and job counts — answered to
 * STATUS_QUERY (dmri-submit --status). The HTTP status page's /api/status is
 * meant to be a superset of this document. No sockets, no I/O. */
#ifndef DMRI_SCHED_STATUS_H
#define DMRI_SCHED_STATUS_H

#include "sched_state.h"

/* {"workers":[{"name":"w1","address":"tcp://10.0.0.2:40411","threads":4},...],
 *  "jobs":{"active":1,"done":3,"failed":0}}
 * (compact, no newline). Names are whatever peers announced: the result is
 * valid JSON and valid UTF-8 whatever bytes they hold (quotes, backslashes
 * and control characters escaped; bytes that are not UTF-8 become U+FFFD).
 * Returns a malloc'd string: free() it. Never NULL (out of memory aborts). */
char *dmri_sched_status_json(const dmri_sched_t *s);

#endif
