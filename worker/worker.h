/* worker: the dmri-worker daemon — its sockets, its state towards the
 * scheduler (registering, heartbeats, task requests) and its event loop.
 * The loop is one zmq_poll over: the DEALER to the scheduler, the ROUTER
 * peer socket serving chunks (serve.h), DEALERs fetching inputs from other
 * workers (fetch.h), the compute threads' done pipe (pool.h) and a
 * self-pipe for SIGTERM/SIGINT. Everything runs on the main thread but task bodies
 * (wtask.h) and the zero-copy sends' release of chunks (ZeroMQ's I/O
 * thread, through the thread-safe store). */
#ifndef DMRI_WORKER_H
#define DMRI_WORKER_H

#include "wopts.h"

/* Run until SIGTERM/SIGINT (0), the scheduler's BYE (0), its REFUSED (1) or
 * a fatal setup error (1). Returns the exit status. */
int dmri_worker_run(const dmri_wopts_t *o);

#endif
