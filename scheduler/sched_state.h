/* sched_state: the scheduler's state machine — workers, clients, jobs (one per
 * submitted subject), their task graphs, which worker holds which chunk, and
 * every decision: what runs where, what is recomputed after a loss, what is
 * released, what goes to the client. It owns no socket: messages come in as
 * decoded dmri_msg_t with the sender's identity, and everything it wants to
 * send goes out through the callbacks of dmri_sched_io_t. That makes it
 * testable (and replayable) without a network; scheduler/server.c is the thin
 * ZeroMQ shell around it. Single-threaded. */
#ifndef DMRI_SCHED_H
#define DMRI_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

typedef struct {
    double worker_timeout;   /* s without a message before a worker is dead (5) */
    double client_timeout;   /* s without a message before a client is gone (60) */
    int slab_slices;         /* chunking of new subjects (16) */
    int vols_per_task;       /* (8) */
    int max_attempts;        /* a task failing this often fails its job (3) */
    uint64_t heartbeat_ms;   /* told to peers in WELCOME (500) */
} dmri_sched_opts_t;

void dmri_sched_opts_default(dmri_sched_opts_t *o);

/* How the state machine talks to the world. `peer` is the ZeroMQ identity of
 * a connection on the scheduler's ROUTER socket. */
typedef struct {
    /* Send a message on the ROUTER to `peer`. Returns 0, or non-zero when the
     * peer is gone (the state machine then forgets it). */
    int (*send)(void *ctx, const uint8_t *peer, size_t peer_len, const dmri_msg_t *m,
                const void *payload, size_t payload_len);
    /* Ask the worker whose peer socket is `addr` for chunk `key`; the answer
     * comes back through dmri_sched_on_data / dmri_sched_on_data_missing. */
    void (*fetch)(void *ctx, const char *addr, const char *key, uint64_t request);
    /* Current time, seconds (monotonic). */
    double (*now)(void *ctx);
    /* One log line (no newline). */
    void (*log)(void *ctx, const char *line);
} dmri_sched_io_t;

typedef struct dmri_sched dmri_sched_t;

dmri_sched_t *dmri_sched_new(const dmri_sched_opts_t *opts, const dmri_sched_io_t *io,
                             void *ctx);
void dmri_sched_destroy(dmri_sched_t **s);

/* A decoded message from `peer` on the ROUTER (payloads never come this way:
 * chunk data reaches the scheduler only through fetches). */
void dmri_sched_on_message(dmri_sched_t *s, const uint8_t *peer, size_t peer_len,
                           const dmri_msg_t *m);

/* A message from `peer` that failed to decode: counted, answered with ERROR
 * (or REFUSED for another protocol version). */
void dmri_sched_on_malformed(dmri_sched_t *s, const uint8_t *peer, size_t peer_len, int code,
                             const char *why);

/* The answer to a fetch arrived. If the chunk is still wanted, fills the
 * client identity (DMRI_IDENT_MAX bytes) and the RESULT header to send with
 * the payload, and returns 1; the caller sends it (zero-copy) and then calls
 * dmri_sched_on_relayed. Returns 0 when nobody wants it any more. */
int dmri_sched_on_data(dmri_sched_t *s, uint64_t request, size_t size, uint8_t *client,
                       size_t *client_len, dmri_msg_t *result);
/* After the RESULT of request went out (ok = 1) or failed (ok = 0). */
void dmri_sched_on_relayed(dmri_sched_t *s, uint64_t request, int ok);
void dmri_sched_on_data_missing(dmri_sched_t *s, uint64_t request);

/* Timers: call a few times per second. */
void dmri_sched_tick(dmri_sched_t *s);

/* Shutting down: BYE to every peer. */
void dmri_sched_shutdown(dmri_sched_t *s, const char *reason);

/* Counters for logs, tests and the status page. */
typedef struct {
    int workers, clients, jobs;
    uint64_t tasks_done, tasks_failed, tasks_requeued, workers_lost, malformed;
    uint64_t bytes_relayed;
    uint64_t jobs_done, jobs_failed; /* finished subjects since start */
} dmri_sched_stats_t;
void dmri_sched_stats(const dmri_sched_t *s, dmri_sched_stats_t *st);

/* One live worker, for status reports. The strings are borrowed from s and
 * valid until the next call that changes s. */
typedef struct {
    const char *name;        /* as announced in HELLO (any bytes but NUL) */
    const char *addr;        /* its peer socket, "tcp://IP:PORT" */
    int nthreads;
    int running;             /* tasks assigned to it now */
} dmri_sched_worker_info_t;

/* The i-th live worker (0-based, in slot order). Returns 0, or -1 when there
 * are fewer than i + 1 live workers. */
int dmri_sched_worker_info(const dmri_sched_t *s, int i, dmri_sched_worker_info_t *info);

#endif
