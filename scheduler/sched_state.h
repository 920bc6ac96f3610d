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

#include "journal.h"
#include "graph.h"
#include "proto.h"

typedef struct {
    double worker_timeout;   /* s without a message before a worker is dead (5) */
    double client_timeout;   /* s without a message before a client is gone (60) */
    int slab_slices;         /* chunking of new subjects (16) */
    int vols_per_task;       /* (8) */
    int max_attempts;        /* a task failing this often fails its job (3) */
    uint64_t heartbeat_ms;   /* told to peers in WELCOME (500) */
    int max_pending_per_client; /* unfinished jobs per client; more SUBMITs fail (2048) */
    int max_malformed;       /* malformed messages per window that ban a peer (100; 0: never) */
    double malformed_window; /* s (10) */
    double malformed_ban;    /* s a banned peer is ignored (60) */
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
 * (or REFUSED for another protocol version). Malformed messages, and messages
 * a peer's role may not send, are strikes: max_malformed of them within
 * malformed_window seconds drop what the peer registered (a worker is lost, a
 * client's jobs are cancelled) and every message from that identity is
 * ignored, unanswered, for malformed_ban seconds (logged once). */
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

/* --state-dir: record submissions and their ends in `jn` (opened and
 * replayed by the caller); job ids continue after the journal's highest, and
 * its unfinished jobs wait client_timeout for their clients to resume them
 * (SUBMIT with `resume`). */
void dmri_sched_attach_journal(dmri_sched_t *s, dmri_journal_t *jn);

/* Shutting down: BYE to every peer. */
void dmri_sched_shutdown(dmri_sched_t *s, const char *reason);

/* Counters for logs, tests and the status page. */
typedef struct {
    int workers, clients, jobs;
    uint64_t tasks_done, tasks_failed, tasks_requeued, workers_lost, malformed;
    uint64_t bytes_relayed;
    uint64_t peers_banned;     /* bans for malformed messages */
    uint64_t ignored;          /* messages from banned peers */
    uint64_t submits_refused;  /* over max_pending_per_client */
    uint64_t heartbeats_missed;  /* workers declared dead for silence */
    uint64_t bytes_fetched;      /* worker-to-worker input bytes (TASK_DONE.fetch_bytes) */
    uint64_t subjects_done, subjects_failed; /* jobs of real subjects (not no-op) */
    uint64_t jobs_done, jobs_failed; /* finished jobs since start (no-op ones too) */
} dmri_sched_stats_t;
void dmri_sched_stats(const dmri_sched_t *s, dmri_sched_stats_t *st);

/* ---- the status page's view (see status_json.h, metrics.h) ----
 * Steps: the graph's task kinds (0 .. DMRI_TASK_NKINDS-1), then LOAD, then
 * NOOP. */
#define DMRI_SCHED_STEP_LOAD DMRI_TASK_NKINDS
#define DMRI_SCHED_STEP_NOOP (DMRI_TASK_NKINDS + 1)
#define DMRI_SCHED_NSTEPS (DMRI_TASK_NKINDS + 2)
const char *dmri_sched_step_name(int step);

/* Upper bounds (s) of the task-duration histogram buckets (+Inf implied). */
#define DMRI_SCHED_NBUCKETS 12
extern const double dmri_sched_buckets[DMRI_SCHED_NBUCKETS];

/* One finished task, placed on the scheduler's clock: `end` is when its
 * TASK_DONE arrived, `start` = end - (fetch + compute seconds the worker
 * reported), so workers' clocks never matter. Times in s since the
 * scheduler started. */
typedef struct {
    uint64_t job;
    int step;
    int thread;               /* worker thread index (TASK_DONE.thread) */
    uint64_t worker_id;
    char worker[128];
    double start, end, compute_s, fetch_s;
    uint64_t fetch_bytes;
} dmri_sched_event_t;

typedef struct {
    uint64_t id;
    char name[128];
    char address[DMRI_PROTO_MAX_STR + 1];
    int threads, running;
    uint64_t memory, memory_limit, tasks_done, bytes_fetched;
    double last_heartbeat_s;  /* s since its last message */
} dmri_sched_worker_view_t;

typedef struct {
    uint64_t job;
    char subject[DMRI_PROTO_MAX_STR + 1];
    const char *state;        /* "loading", "running", "no-op" */
    double elapsed_s;
    uint64_t done, total;     /* every task (and LOAD) */
    uint64_t step_done[DMRI_SCHED_NSTEPS], step_total[DMRI_SCHED_NSTEPS];
} dmri_sched_job_view_t;

/* A copy of everything the dashboard shows; owns its arrays. */
typedef struct {
    double now;               /* s since the scheduler started */
    dmri_sched_stats_t stats;
    dmri_sched_worker_view_t *workers;
    int nworkers;
    dmri_sched_job_view_t *jobs;
    int njobs;
    dmri_sched_event_t *events;   /* oldest first, the newest DMRI_SCHED_SNAPSHOT_EVENTS */
    int nevents;
    uint64_t tasks_waiting, tasks_ready, tasks_running;
    uint64_t step_completed[DMRI_SCHED_NSTEPS];
    uint64_t step_hist[DMRI_SCHED_NSTEPS][DMRI_SCHED_NBUCKETS]; /* non-cumulative */
    double step_seconds[DMRI_SCHED_NSTEPS];
} dmri_sched_snapshot_t;

#define DMRI_SCHED_EVENT_RING 8192
/* Events a snapshot copies (the newest): what a 1100-pixel-wide task
 * stream can show, and what keeps /api/status a few hundred kB. */
#define DMRI_SCHED_SNAPSHOT_EVENTS 1500

/* Fill *snap (allocating its arrays). Cost: O(workers + tasks + ring). */
void dmri_sched_snapshot(const dmri_sched_t *s, dmri_sched_snapshot_t *snap);
/* Free the arrays; safe twice. */
void dmri_sched_snapshot_close(dmri_sched_snapshot_t *snap);

#endif
