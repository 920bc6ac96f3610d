/* submit_status: what dmri-submit --status prints — the scheduler's STATUS
 * document (the /api/status JSON of scheduler/status_json.h) checked and rendered as a table, or
 * passed through as JSON. Pure text in, text out: unit-tested without a
 * scheduler. */
#ifndef DMRI_SUBMIT_STATUS_H
#define DMRI_SUBMIT_STATUS_H

#include <stddef.h>

#include "dmri_err.h"

/* Render the document `json` (len bytes, not NUL-terminated) received from
 * the scheduler `scheduler` ("HOST:PORT", for the heading). as_json: the
 * document itself plus a newline; else a heading line (worker, thread and
 * job counts) and one row per worker (name, address, threads), control
 * characters shown as '?'. Either way the document must be JSON of the
 * documented shape. Returns 0 with *out a malloc'd NUL-terminated text
 * (free()), or DMRI_EFORMAT with err saying what is wrong. */
int dmri_submit_status_render(const char *json, size_t len, int as_json, const char *scheduler,
                              char **out, dmri_err_t *err);

#endif
