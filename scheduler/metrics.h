/* metrics: the scheduler's counters in the Prometheus text exposition
 * format (version 0.0.4) — the body of the dashboard's /metrics. A pure
 * function over a dmri_sched_snapshot_t. Metric names and meanings are
 * listed in docs/DASHBOARD.md. */
#ifndef DMRI_METRICS_H
#define DMRI_METRICS_H

#include "sched_state.h"

/* The exposition text, malloc'd (dmri_free). */
char *dmri_metrics_text(const dmri_sched_snapshot_t *snap);

#endif
