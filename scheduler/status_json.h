/* status_json: the scheduler's status as JSON — the body of the dashboard's
 * /api/status (documented in docs/DASHBOARD.md) and the task events a
 * client gets in JOB_DONE.events for its performance report. Pure
 * functions over a dmri_sched_snapshot_t: no sockets, no locks. */
#ifndef DMRI_STATUS_JSON_H
#define DMRI_STATUS_JSON_H

#include <stddef.h>

#include "sched_state.h"

/* Task events kept in /api/status: those that ended in the last window. */
#define DMRI_STATUS_WINDOW_S 300.0
#define DMRI_STATUS_MAX_EVENTS DMRI_SCHED_SNAPSHOT_EVENTS

/* The /api/status document for snap. Returns a malloc'd NUL-terminated
 * string (dmri_free). Peer-supplied names are escaped, including '<', so the
 * text is safe inside an HTML <script> too. */
char *dmri_status_json(const dmri_sched_snapshot_t *snap);

/* Convenience for callers holding the state: snapshot + render. */
char *dmri_sched_status_json(const dmri_sched_t *s);

/* A JSON array of events, times shifted by -origin (e.g. a job's submit
 * time on the same clock): [{"step","worker","thread","start","end",
 * "compute_s","fetch_s","fetch_bytes"}, ...]. Stops adding events before the
 * text exceeds max_bytes. Returns a malloc'd string. */
char *dmri_status_events_json(const dmri_sched_event_t *ev, size_t n, double origin,
                              size_t max_bytes);

#endif
