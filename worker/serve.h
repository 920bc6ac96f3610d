/* serve: the worker's peer socket — answers DATA_GET from other workers and
 * the scheduler with the chunk from the store, sent zero-copy (the store
 * reference travels with the frame and is dropped by ZeroMQ's I/O thread
 * when the bytes are on the wire), DATA_MISSING when the chunk is not held,
 * and ERROR to anything malformed or not allowed there. Main thread. */
#ifndef DMRI_SERVE_H
#define DMRI_SERVE_H

#include "store.h"
#include "wlog.h"

typedef struct {
    void *sock;             /* ROUTER peer socket (not owned) */
    dmri_wstore_t *store;   /* where chunks come from (not owned) */
    const char *name;       /* this worker's name, for DATA_MISSING reasons */
    dmri_wlog_limit_t lim;  /* log lines about bad requests and failed sends */
} dmri_serve_t;

void dmri_serve_init(dmri_serve_t *s, void *sock, dmri_wstore_t *store, const char *name);

/* Answer every request waiting on the socket (a bounded number per call). */
void dmri_serve_drain(dmri_serve_t *s);

#endif
