/* pool: the worker's compute threads. The main thread submits items; a
 * thread runs each one and puts it on a done queue; a file descriptor that
 * zmq_poll can watch becomes readable when something is done. The threads
 * own no ZeroMQ socket, so the daemon can terminate its ZeroMQ context (and
 * exit promptly on SIGTERM) while a long task is still computing. */
#ifndef DMRI_POOL_H
#define DMRI_POOL_H

#include "dmri_err.h"

typedef struct dmri_pool dmri_pool_t;

/* Embed this at the start of your own work struct. */
typedef struct dmri_pool_item {
    void (*run)(struct dmri_pool_item *it); /* called on a compute thread */
    struct dmri_pool_item *next;            /* the pool's queue link */
} dmri_pool_item_t;

dmri_pool_t *dmri_pool_new(int nthreads, dmri_err_t *err);

/* Queue an item (FIFO). Main thread. */
void dmri_pool_submit(dmri_pool_t *p, dmri_pool_item_t *it);

/* Readable when an item is done (poll it with ZMQ_POLLIN). */
int dmri_pool_fd(const dmri_pool_t *p);

/* The next finished item, or NULL. Main thread. */
dmri_pool_item_t *dmri_pool_take_done(dmri_pool_t *p);

/* Items submitted and not yet taken back: waiting, running, or done. */
int dmri_pool_outstanding(dmri_pool_t *p);
/* Items being run by a thread right now. */
int dmri_pool_running(dmri_pool_t *p);

/* On a compute thread: its index in its pool (0 .. nthreads-1), else -1. */
int dmri_pool_thread_index(void);

/* Ask the threads to stop: no waiting item starts any more. Returns the
 * number of items still being run (0: destroy will not block). */
int dmri_pool_stop(dmri_pool_t *p);

/* Stop the threads: items still waiting are handed to drop (never run), the
 * running ones are waited for, then finished ones are handed to drop too.
 * Safe on NULL and twice. */
void dmri_pool_destroy(dmri_pool_t **p, void (*drop)(dmri_pool_item_t *it));

#endif
