/* report: dmri-submit --report FILE, a self-contained HTML performance
 * report of a run (like Dask's performance_report): per step and per worker
 * where the time went, transfer vs compute, and the task stream, drawn from
 * the task events the scheduler sends in JOB_DONE.events (PROTOCOL.md).
 * The page (client/report.html, compiled in) has inline CSS/JS/SVG only. */
#ifndef DMRI_REPORT_H
#define DMRI_REPORT_H

#include "dmri_err.h"

typedef struct {
    const char *name;       /* subject */
    const char *state;      /* "done" / "failed" */
    double wall_s;          /* SUBMIT to JOB_DONE, client clock */
    const char *summary;    /* JOB_DONE.summary (JSON object text) or NULL */
    const char *events;     /* JOB_DONE.events (JSON array text) or NULL */
} dmri_report_job_t;

/* Write the report at path (temporary name, then renamed). Texts from the
 * scheduler are embedded as data (a JSON block the page parses, every '<'
 * escaped), never as script; what does not parse shows as missing. Errors
 * name the file. */
int dmri_report_write(const char *path, const char *scheduler, const dmri_report_job_t *jobs,
                      int njobs, dmri_err_t *err);

/* The page template: data goes where DMRI_REPORT_DATA_MARK stands. */
extern const char dmri_report_html[];
#define DMRI_REPORT_DATA_MARK "/*DMRI_REPORT_DATA*/"

#endif
