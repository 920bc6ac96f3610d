/* dashboard: the scheduler's HTTP status server (libmicrohttpd, in its own
 * thread). It serves /, /api/status, /metrics and /health from the latest
 * snapshot that the scheduler loop published; the loop never waits for it:
 * publishing only tries the lock, and rendering happens on the HTTP thread,
 * at most once per published snapshot. Documented in docs/DASHBOARD.md. */
#ifndef DMRI_DASHBOARD_H
#define DMRI_DASHBOARD_H

#include "dmri_err.h"
#include "sched_state.h"

typedef struct dmri_dashboard dmri_dashboard_t;

/* Listen on host:port (port 0: any free port). Fails (DMRI_EIO, message
 * naming the address) when the address cannot be used, e.g. port taken. */
int dmri_dashboard_new(const char *host, int port, dmri_dashboard_t **out, dmri_err_t *err);

/* The port listened on. */
int dmri_dashboard_port(const dmri_dashboard_t *d);

/* Hand over a snapshot taken at monotonic time now (seconds). Never blocks:
 * when the HTTP thread holds the lock, returns 0 and leaves *snap to the
 * caller (try again later); on success returns 1 and takes the arrays
 * (*snap is emptied). */
int dmri_dashboard_publish(dmri_dashboard_t *d, dmri_sched_snapshot_t *snap, double now);

/* Stop the HTTP thread and free; safe on NULL and twice. */
void dmri_dashboard_destroy(dmri_dashboard_t **d);

/* The page served at / (generated from scheduler/dashboard.html). */
extern const char dmri_dashboard_html[];

#endif
