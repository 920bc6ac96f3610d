/* worker: the dmri-worker daemon's state and event loop (worker.h). The
 * protocol it follows is proto/PROTOCOL.md; this file only decides what to
 * do with each message, the task bodies live in wtask.c, the chunks in
 * store.c and the fetching of inputs in fetch.c. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "auth.h"
#include "dmri_alloc.h"
#include "executor.h"
#include "fetch.h"
#include "fsutil.h"
#include "jobinfo.h"
#include "netaddr.h"
#include "pipeline_version.h"
#include "pool.h"
#include "serve.h"
#include "store.h"
#include "transport.h"
#include "wlog.h"
#include "wtask.h"

#define SCHED_SILENCE_S 5.0    /* PROTOCOL.md: HELLO again after 5 s of silence */
#define HELLO_RETRY_S 1.0      /* ... every second until welcomed */
#define HELLO_RETRY_FAST_S 0.1 /* when the HELLO could not even be queued */
#define FETCH_TIMEOUT_S 15.0   /* a peer that does not answer a DATA_GET */
#define BYE_LINGER_MS 2000     /* time ZeroMQ gets to deliver our BYE */
#define JOBCACHE_SIZE 16
#define DRAIN_MAX 10000        /* messages per socket per loop turn */

typedef enum { ST_HELLO, ST_WELCOMED } sched_state_t;

typedef struct {
    const dmri_wopts_t *o;
    void *zctx;
    void *sched;                  /* DEALER to the scheduler */
    void *peer;                   /* ROUTER peer socket */
    char peer_addr[600];          /* as announced in HELLO */
    char routed_ip[64];           /* local address that reaches the scheduler */
    dmri_wstore_t *store;
    dmri_pool_t *pool;
    dmri_fetch_t *fetch;
    dmri_jobcache_t *jobs;
    dmri_serve_t serve;           /* the peer socket's request handling */
    dmri_wtask_t *waiting;        /* tasks waiting for fetched inputs */
    size_t nwaiting;
    sched_state_t state;
    int welcomed_once;
    uint64_t peer_id;             /* from WELCOME */
    double heartbeat_s;           /* from WELCOME */
    double next_heartbeat;
    double last_heard;            /* any message from the scheduler but ERROR */
    double next_hello;
    long sched_wanted;            /* free threads the scheduler believes we have */
    uint64_t generation;          /* store generation of this registration */
    int stop;
    int exit_code;
    int bye_sent;
    int pid_written;              /* remove --pid-file at exit */
    double started;               /* for the "still waiting" line */
    int said_waiting;
    dmri_wlog_limit_t lim_sched;  /* malformed/unexpected from the scheduler */
    dmri_wlog_limit_t lim_send;   /* send failures */
    dmri_wlog_limit_t lim_task;   /* task lines when they come in floods */
    dmri_auth_t *auth;            /* CURVE keys and ZAP handler; NULL without --keys */
    dmri_auth_monitor_t *sched_mon; /* handshake failures on the scheduler link */
    int failed_handshakes;        /* before the first welcome */
} worker_t;

/* ------------------------------------------------------------ signals */

/* The one file static: a signal handler can reach nothing else. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(sig_pipe[1], &b, 1) < 0) {
        /* the pipe is full: a signal is already pending */
    }
    errno = saved;
}

static int setup_signals(dmri_err_t *err) {
    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        return dmri_err_set(err, DMRI_EIO, "pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ------------------------------------------------------------ peer socket address */

/* Bind the peer socket and work out the address other workers must use. */
static int bind_peer(worker_t *w, dmri_err_t *err) {
    char ep[1200];
    int rc = dmri_netaddr_listen_endpoint(w->o->listen, w->routed_ip, ep, sizeof ep, err);
    if (rc != 0)
        return rc;
    if (strchr(ep, '[')) {
        const int one = 1;
        zmq_setsockopt(w->peer, ZMQ_IPV6, &one, sizeof one);
    }
    if (zmq_bind(w->peer, ep) != 0)
        return dmri_err_set(err, DMRI_EIO, "cannot listen on %s: %s", ep, zmq_strerror(errno));
    char last[600];
    size_t n = sizeof last;
    if (zmq_getsockopt(w->peer, ZMQ_LAST_ENDPOINT, last, &n) != 0)
        return dmri_err_set(err, DMRI_EIO, "ZMQ_LAST_ENDPOINT: %s", zmq_strerror(errno));
    last[sizeof last - 1] = '\0';
    dmri_netaddr_announce(last, w->routed_ip, w->peer_addr, sizeof w->peer_addr);
    return 0;
}

/* ------------------------------------------------------------ sending */

static int send_sched(worker_t *w, const dmri_msg_t *m) {
    dmri_err_t err = {0};
    int rc = dmri_proto_send(w->sched, NULL, 0, m, NULL, 0, NULL, NULL, &err);
    if (rc != 0 && m->type != DMRI_MSG_HELLO)
        dmri_wlog_limited(&w->lim_send, dmri_now(), "cannot send to the scheduler: %s", err.msg);
    return rc;
}

static void send_hello(worker_t *w, double now) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_HELLO);
    m.u.hello.role = "worker";
    m.u.hello.name = (char *)w->o->name;
    m.u.hello.nthreads = (uint64_t)w->o->nthreads;
    m.u.hello.peer_addr = w->peer_addr;
    m.u.hello.memory_limit = w->o->memory_limit;
    m.u.hello.pid = (uint64_t)getpid();
    /* Not queued (no connection yet): retry soon; queued: give the
     * scheduler a second to answer. */
    w->next_hello = now + (send_sched(w, &m) == 0 ? HELLO_RETRY_S : HELLO_RETRY_FAST_S);
}

static void send_failed(worker_t *w, uint64_t job, uint64_t task, const char *error,
                        const char *input_missing) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_FAILED);
    m.u.task_failed.job = job;
    m.u.task_failed.task = task;
    m.u.task_failed.error = (char *)(error && *error ? error : "unknown error");
    m.u.task_failed.input_missing = (char *)(input_missing ? input_missing : "");
    send_sched(w, &m);
}

/* ------------------------------------------------------------ tasks */

static long busy(worker_t *w) { return (long)w->nwaiting + dmri_pool_outstanding(w->pool); }

static void unlink_waiting(worker_t *w, dmri_wtask_t *t) {
    for (dmri_wtask_t **pp = &w->waiting; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            t->next = NULL;
            w->nwaiting--;
            return;
        }
    }
}

static int is_waiting(worker_t *w, const dmri_wtask_t *t) {
    for (dmri_wtask_t *x = w->waiting; x; x = x->next)
        if (x == t)
            return 1;
    return 0;
}

/* Report, log and free a task that cannot run (t is not in any list). */
static void fail_task(worker_t *w, dmri_wtask_t *t, const char *missing, const char *error) {
    char label[300];
    dmri_wtask_label(t, label, sizeof label);
    dmri_fetch_cancel(w->fetch, t);
    send_failed(w, t->job, t->task, error, missing);
    dmri_wlog_limited(&w->lim_task, dmri_now(), "%s FAILED: %s", label, error);
    dmri_wtask_destroy(&t);
}

/* All inputs are here: make sure the job's info is decoded, then queue. */
static void start_task(worker_t *w, dmri_wtask_t *t) {
    if (t->kind != DMRI_TASK_KIND_LOAD && !t->ji) {
        const void *d;
        size_t n;
        dmri_err_t err = {0};
        if (dmri_wstore_entry_data(t->inputs[0], &d, &n, &err) != 0) {
            fail_task(w, t, t->in_keys[0], err.msg);
            return;
        }
        dmri_jobinfo_t *ji;
        if (dmri_jobinfo_decode(t->job, d, n, (t->flags & 2) != 0, &ji, &err) != 0) {
            char why[DMRI_ERR_MSG_MAX + 100];
            snprintf(why, sizeof why, "%s: %s", t->in_keys[0], err.msg);
            fail_task(w, t, NULL, why);
            return;
        }
        dmri_jobcache_put(w->jobs, ji);
        t->ji = ji; /* the decode's reference becomes the task's */
    }
    dmri_pool_submit(w->pool, &t->item);
}

static void on_fetched(void *ctx, void *waiter, size_t index, const char *key,
                       dmri_wstore_entry_t *entry, const char *error) {
    worker_t *w = ctx;
    dmri_wtask_t *t = waiter;
    if (!is_waiting(w, t) || index >= t->nin) {
        dmri_wstore_unref(entry);
        return;
    }
    if (!entry) {
        unlink_waiting(w, t);
        char why[1000];
        snprintf(why, sizeof why, "input %s: %s", key, error ? error : "not available");
        fail_task(w, t, key, why);
        return;
    }
    dmri_wstore_unref(t->inputs[index]);
    t->inputs[index] = entry;
    t->fetch_bytes += dmri_wstore_entry_size(entry);
    if (t->nmissing > 0 && --t->nmissing == 0) {
        t->fetch_seconds = dmri_now() - t->t_assigned;
        unlink_waiting(w, t);
        start_task(w, t);
    }
}

static void on_assign(worker_t *w, const dmri_msg_task_assign_t *a, double now) {
    if (w->state != ST_WELCOMED) {
        dmri_wlog_limited(&w->lim_sched, now, "task J%" PRIu64 " #%" PRIu64
                          " assigned before the scheduler welcomed us; ignored", a->job, a->task);
        return;
    }
    if (w->sched_wanted > 0)
        w->sched_wanted--;
    if (a->kind == DMRI_TASK_KIND_NOOP) {
        /* The scheduler-overhead benchmark: answer at once, no thread hop. */
        dmri_msg_t m;
        dmri_msg_init(&m, DMRI_MSG_TASK_DONE);
        m.u.task_done.job = a->job;
        m.u.task_done.task = a->task;
        send_sched(w, &m);
        return;
    }
    dmri_wtask_t *t;
    dmri_err_t err = {0};
    if (dmri_wtask_new(a, &t, &err) != 0) {
        send_failed(w, a->job, a->task, err.msg, NULL);
        dmri_wlog_limited(&w->lim_task, now, "J%" PRIu64 " task %" PRIu64 " rejected: %s",
                          a->job, a->task, err.msg);
        return;
    }
    t->store = w->store;
    t->data_dir = w->o->data_dir;
    t->s3 = w->o->use_s3 ? &w->o->s3 : NULL;
    t->generation = w->generation;
    t->t_assigned = now;
    if (t->kind == DMRI_TASK_KIND_LOAD) {
        dmri_pool_submit(w->pool, &t->item);
        return;
    }
    t->ji = dmri_jobcache_get(w->jobs, t->job);
    for (size_t i = 0; i < t->nin; i++) {
        if (i == 0 && t->ji)
            continue; /* info already decoded: its bytes are not needed */
        t->inputs[i] = dmri_wstore_acquire(w->store, t->in_keys[i]);
        if (t->inputs[i])
            continue;
        const char *addr = t->in_addrs[i];
        if (!addr[0] || strcmp(addr, w->peer_addr) == 0) {
            char why[400];
            snprintf(why, sizeof why, "input %.200s is not held by this worker", t->in_keys[i]);
            fail_task(w, t, t->in_keys[i], why);
            return;
        }
        if (dmri_fetch_request(w->fetch, addr, t->in_keys[i], t, i, now, &err) != 0) {
            char why[DMRI_ERR_MSG_MAX + 300];
            snprintf(why, sizeof why, "input %.200s: %s", t->in_keys[i], err.msg);
            fail_task(w, t, t->in_keys[i], why);
            return;
        }
        t->nmissing++;
    }
    if (t->nmissing == 0) {
        start_task(w, t);
        return;
    }
    t->next = w->waiting;
    w->waiting = t;
    w->nwaiting++;
}

static void on_task_finished(worker_t *w, dmri_wtask_t *t) {
    char label[300];
    dmri_wtask_label(t, label, sizeof label);
    if (t->generation != w->generation) {
        dmri_wlog("%s finished after re-registering; its result is dropped", label);
        dmri_wtask_destroy(&t);
        return;
    }
    if (t->rc != 0) {
        send_failed(w, t->job, t->task, t->err.msg[0] ? t->err.msg : dmri_strerror(t->rc),
                    t->lost_input);
        dmri_wlog_limited(&w->lim_task, dmri_now(), "%s FAILED after %.2f s: %s", label,
                          t->seconds, t->err.msg);
        dmri_wtask_destroy(&t);
        return;
    }
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_DONE);
    m.u.task_done.job = t->job;
    m.u.task_done.task = t->task;
    m.u.task_done.out_keys = t->out_keys;
    m.u.task_done.out_sizes = t->out_sizes;
    m.u.task_done.seconds = t->seconds;
    m.u.task_done.thread = t->thread > 0 ? (uint64_t)t->thread : 0;
    m.u.task_done.fetch_bytes = t->fetch_bytes;
    m.u.task_done.fetch_seconds = t->fetch_seconds;
    if (t->info_blob) {
        m.u.task_done.info.data = t->info_blob;
        m.u.task_done.info.len = t->info_len;
    }
    send_sched(w, &m);
    if (t->kind == DMRI_TASK_KIND_LOAD) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < t->out_sizes.n; i++)
            bytes += t->out_sizes.v[i];
        dmri_wlog("%s done in %.2f s: %zu chunks, %.1f MB", label, t->seconds,
                  t->out_keys.n, (double)bytes / 1e6);
        if (t->loaded_ji)
            dmri_jobcache_put(w->jobs, t->loaded_ji);
    } else {
        dmri_wlog_limited(&w->lim_task, dmri_now(), "%s done in %.2f s", label, t->seconds);
    }
    dmri_wtask_destroy(&t);
}

static void drain_done(worker_t *w) {
    dmri_pool_item_t *it;
    while ((it = dmri_pool_take_done(w->pool)) != NULL)
        on_task_finished(w, (dmri_wtask_t *)it);
}

static void drop_waiting(worker_t *w) {
    while (w->waiting) {
        dmri_wtask_t *t = w->waiting;
        w->waiting = t->next;
        dmri_wtask_destroy(&t);
    }
    w->nwaiting = 0;
}

/* ------------------------------------------------------------ scheduler */

static void on_welcome(worker_t *w, const dmri_msg_welcome_t *m, double now) {
    long unfinished = busy(w);
    if (w->welcomed_once) {
        /* The scheduler dropped our old registration and what it held. */
        dmri_fetch_cancel_all(w->fetch);
        drop_waiting(w);
        dmri_jobcache_clear(w->jobs);
        size_t dropped = dmri_wstore_clear(w->store);
        w->generation = dmri_wstore_generation(w->store);
        dmri_wlog("registered again with the scheduler as peer %" PRIu64
                  ": dropped %zu chunks and %ld unfinished tasks it no longer knows",
                  m->peer_id, dropped, unfinished);
    } else {
        dmri_wlog("welcomed by the scheduler at %s as peer %" PRIu64 " (heartbeat %" PRIu64
                  " ms)", w->o->sched_endpoint, m->peer_id, m->heartbeat_ms);
    }
    w->welcomed_once = 1;
    w->state = ST_WELCOMED;
    w->peer_id = m->peer_id;
    uint64_t hb = m->heartbeat_ms < 50 ? 50 : m->heartbeat_ms > 60000 ? 60000 : m->heartbeat_ms;
    w->heartbeat_s = (double)hb / 1000.0;
    w->next_heartbeat = now + w->heartbeat_s;
    w->sched_wanted = 0;
}

static void on_sched_message(worker_t *w, dmri_msg_t *m, double now) {
    switch (m->type) {
    case DMRI_MSG_WELCOME: on_welcome(w, &m->u.welcome, now); break;
    case DMRI_MSG_REFUSED:
        fprintf(stderr, "dmri-worker: refused by scheduler: %s\n", m->u.refused.reason);
        fflush(stderr);
        if (dmri_wlog_file() != stderr)
            dmri_wlog("refused by scheduler: %s", m->u.refused.reason);
        w->stop = 1;
        w->exit_code = 1;
        break;
    case DMRI_MSG_HEARTBEAT: break;
    case DMRI_MSG_BYE:
        dmri_wlog("the scheduler said BYE (%s); exiting", m->u.bye.reason);
        w->stop = 1;
        w->exit_code = 0;
        break;
    case DMRI_MSG_ERROR:
        dmri_wlog_limited(&w->lim_sched, now, "the scheduler reports an error: %s",
                          m->u.error.error);
        break;
    case DMRI_MSG_TASK_ASSIGN: on_assign(w, &m->u.task_assign, now); break;
    case DMRI_MSG_RELEASE:
        for (size_t i = 0; i < m->u.release.keys.n; i++)
            dmri_wstore_remove(w->store, m->u.release.keys.v[i]);
        break;
    default:
        dmri_wlog_limited(&w->lim_sched, now, "unexpected %s from the scheduler; ignored",
                          dmri_msg_type_name(m->type));
        break;
    }
}

static void drain_sched(worker_t *w) {
    for (int k = 0; k < DRAIN_MAX && !w->stop; k++) {
        dmri_msg_t m;
        dmri_payload_t pl = {0};
        dmri_err_t err = {0};
        int pv = 0;
        int rc = dmri_proto_recv(w->sched, 0, NULL, NULL, &m, &pl, &pv, &err);
        if (rc == DMRI_ECANCEL)
            break;
        double now = dmri_now();
        if (rc == DMRI_EUNSUP && w->state != ST_WELCOMED) {
            /* Registering, and the scheduler speaks another protocol version:
             * it cannot have understood us either (its answer is a REFUSED in
             * its own version). After a welcome, such a message is just bad. */
            fprintf(stderr, "dmri-worker: refused by scheduler: %s\n", err.msg);
            fflush(stderr);
            if (dmri_wlog_file() != stderr)
                dmri_wlog("refused by scheduler: %s", err.msg);
            w->stop = 1;
            w->exit_code = 1;
            break;
        }
        if (rc != 0) {
            dmri_wlog_limited(&w->lim_sched, now, "bad message from the scheduler: %s",
                              err.msg);
            if (rc == DMRI_EIO)
                break;
            continue;
        }
        /* An ERROR is no sign that our registration lives: a restarted
         * scheduler answers our HEARTBEATs with "not registered" ERRORs, and
         * the 5 s of silence that follow make us register again. */
        if (m.type != DMRI_MSG_ERROR)
            w->last_heard = now;
        on_sched_message(w, &m, now);
        dmri_payload_close(&pl);
        dmri_msg_clear(&m);
    }
}

/* Tell the scheduler how many tasks we can take, when its view is stale. */
static void maybe_request(worker_t *w) {
    if (w->state != ST_WELCOMED || w->stop)
        return;
    /* Ask for a little more than the free threads, so that a task's inputs
     * can be fetched while another runs (and no-op round trips overlap). */
    long free_threads = (long)w->o->nthreads + w->o->prefetch - busy(w);
    if (free_threads <= 0 || free_threads == w->sched_wanted)
        return;
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_REQUEST);
    m.u.task_request.free_threads = (uint64_t)free_threads;
    if (send_sched(w, &m) == 0)
        w->sched_wanted = free_threads;
}

static void send_heartbeat(worker_t *w) {
    dmri_wstore_trim(w->store);
    dmri_wstore_stats_t st;
    dmri_wstore_stats(w->store, &st);
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_HEARTBEAT);
    m.u.heartbeat.running = (uint64_t)busy(w);
    m.u.heartbeat.memory = st.memory;
    send_sched(w, &m);
}

/* ------------------------------------------------------------ setup/teardown */

static int make_sockets(worker_t *w, dmri_err_t *err) {
    const int zero = 0, one = 1;
    w->peer = zmq_socket(w->zctx, ZMQ_ROUTER);
    w->sched = zmq_socket(w->zctx, ZMQ_DEALER);
    if (!w->peer || !w->sched)
        return dmri_err_set(err, DMRI_EIO, "zmq_socket: %s", zmq_strerror(errno));
    /* only control messages arrive on these two (--max-message-size) */
    const int64_t max_msg = (int64_t)w->o->max_msg;
    if (dmri_proto_socket_setup(w->peer, 1, max_msg, err) != 0 ||
        dmri_proto_socket_setup(w->sched, 0, max_msg, err) != 0)
        return DMRI_EIO;
    /* The peer socket serves with the cluster key (worker-to-worker traffic
     * is authenticated and encrypted too); the monitor runs with or without
     * keys, so a worker without keys learns that the scheduler wants them. */
    if (dmri_auth_server_setup(w->peer, w->auth, err) != 0 ||
        dmri_auth_client_setup(w->sched, w->auth, err) != 0)
        return DMRI_EIO;
    w->sched_mon = dmri_auth_monitor_new(w->zctx, w->sched, err);
    if (!w->sched_mon)
        return DMRI_EIO;
    /* Never block the loop on a slow reader; a chunk being sent holds only a
     * reference, so the queue to a requester may be long. */
    zmq_setsockopt(w->peer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(w->peer, ZMQ_SNDTIMEO, &zero, sizeof zero);
    zmq_setsockopt(w->peer, ZMQ_SNDHWM, &zero, sizeof zero);
    /* To the scheduler: queue nothing while disconnected (a HELLO queued
     * during an outage would arrive late and register us twice), and a
     * stable identity so the scheduler can tell a reconnect from a newcomer. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char ident[220];
    snprintf(ident, sizeof ident, "dmri-worker/%.150s/%ld/%08lx", w->o->name, (long)getpid(),
             (unsigned long)((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20)) & 0xffffffffUL);
    zmq_setsockopt(w->sched, ZMQ_ROUTING_ID, ident, strlen(ident));
    zmq_setsockopt(w->sched, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(w->sched, ZMQ_SNDTIMEO, &zero, sizeof zero);
    zmq_setsockopt(w->sched, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(w->sched, ZMQ_IMMEDIATE, &one, sizeof one);
    if (strchr(w->o->sched_endpoint, '['))
        zmq_setsockopt(w->sched, ZMQ_IPV6, &one, sizeof one);
    int rc = bind_peer(w, err);
    if (rc != 0)
        return rc;
    if (zmq_connect(w->sched, w->o->sched_endpoint) != 0)
        return dmri_err_set(err, DMRI_EIO, "cannot connect to %s: %s", w->o->sched_endpoint,
                            zmq_strerror(errno));
    return 0;
}

static void drop_item(dmri_pool_item_t *it) {
    dmri_wtask_t *t = (dmri_wtask_t *)it;
    dmri_wtask_destroy(&t);
}

static void say_bye(worker_t *w, int sig) {
    if (!w->welcomed_once)
        return;
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_BYE);
    m.u.bye.reason = sig == SIGINT ? "worker shutting down (SIGINT)"
                                   : "worker shutting down (SIGTERM)";
    if (send_sched(w, &m) == 0)
        w->bye_sent = 1;
}

static void format_bytes(char *out, size_t outsz, uint64_t b) {
    if (b >= (1ull << 30))
        snprintf(out, outsz, "%.1f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(out, outsz, "%.1f MiB", (double)b / (double)(1ull << 20));
    else
        snprintf(out, outsz, "%.1f KiB", (double)b / 1024.0);
}

/* Closing order matters: sockets, then the context (which delivers the BYE
 * and releases chunks still queued zero-copy), then the store. With a task
 * still computing, its thread may touch the store at any time, so the
 * process leaves with _exit once the spill folder is gone. */
static int teardown(worker_t *w) {
    int running = w->pool ? dmri_pool_stop(w->pool) : 0;
    drop_waiting(w);
    dmri_fetch_destroy(&w->fetch);
    dmri_auth_monitor_destroy(&w->sched_mon);
    if (w->peer) {
        /* Chunks still queued for a peer that is slow or gone must not hold
         * up zmq_ctx_term: the requester will ask someone else. */
        int zero = 0;
        zmq_setsockopt(w->peer, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(w->peer);
    }
    if (w->sched) {
        int linger = w->bye_sent ? BYE_LINGER_MS : 0;
        zmq_setsockopt(w->sched, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(w->sched);
    }
    if (running == 0) {
        dmri_pool_destroy(&w->pool, drop_item);
        dmri_jobcache_destroy(&w->jobs);
    }
    if (w->zctx)
        zmq_ctx_term(w->zctx); /* also makes the ZAP thread leave */
    dmri_auth_destroy(&w->auth);
    if (w->pid_written)
        unlink(w->o->pid_file);
    if (running > 0) {
        dmri_wstore_abandon(w->store);
        dmri_wlog("exiting (%d running task%s abandoned)", running, running == 1 ? "" : "s");
        fflush(NULL);
        _exit(w->exit_code);
    }
    dmri_wstore_destroy(&w->store);
    dmri_wlog("exiting");
    return w->exit_code;
}

/* ------------------------------------------------------------ authentication */

static void auth_log(void *ctx, const char *line) {
    (void)ctx;
    dmri_wlog("%s", line);
}

/* A refused certificate or a security mismatch will not heal by retrying:
 * say so and leave (exit 1). Other handshake failures are logged; three of
 * them before we were ever welcomed (e.g. another cluster's public key) are
 * final too. */
static void check_auth(worker_t *w, double now) {
    char why[400];
    int v = dmri_auth_monitor_check(w->sched_mon, why, sizeof why);
    if (v == 1 && !w->welcomed_once && ++w->failed_handshakes >= 3)
        v = 2;
    if (v == 2) {
        fprintf(stderr, "dmri-worker: the scheduler at %s refused us: authentication failed: %s\n",
                w->o->sched_endpoint, why);
        fflush(stderr);
        if (dmri_wlog_file() != stderr)
            dmri_wlog("the scheduler at %s refused us: authentication failed: %s",
                      w->o->sched_endpoint, why);
        w->stop = 1;
        w->exit_code = 1;
    } else if (v == 1) {
        dmri_wlog_limited(&w->lim_sched, now, "handshake with the scheduler at %s failed: %s",
                          w->o->sched_endpoint, why);
    }
}

/* ------------------------------------------------------------ loop */

static void loop(worker_t *w) {
    zmq_pollitem_t *items = NULL;
    int cap = 0;
    while (!w->stop) {
        double now = dmri_now();
        check_auth(w, now);
        if (w->stop)
            break;
        if (w->state == ST_WELCOMED && now - w->last_heard > SCHED_SILENCE_S) {
            dmri_wlog("no word from the scheduler for %.0f s; registering again",
                      SCHED_SILENCE_S);
            w->state = ST_HELLO;
            w->next_hello = now;
        }
        if (w->state == ST_HELLO && now >= w->next_hello)
            send_hello(w, now);
        if (!w->welcomed_once && !w->said_waiting && now - w->started > SCHED_SILENCE_S) {
            dmri_wlog("no answer from the scheduler at %s yet; still trying",
                      w->o->sched_endpoint);
            w->said_waiting = 1;
        }
        if (w->state == ST_WELCOMED && now >= w->next_heartbeat) {
            send_heartbeat(w);
            w->next_heartbeat = now + w->heartbeat_s;
        }
        dmri_fetch_expire(w->fetch, now);
        maybe_request(w);

        double deadline = now + 1.0;
        if (w->state == ST_HELLO && w->next_hello < deadline)
            deadline = w->next_hello;
        if (w->state == ST_WELCOMED) {
            if (w->next_heartbeat < deadline)
                deadline = w->next_heartbeat;
            if (w->last_heard + SCHED_SILENCE_S < deadline)
                deadline = w->last_heard + SCHED_SILENCE_S;
        }
        double fd = dmri_fetch_next_deadline(w->fetch);
        if (fd < deadline)
            deadline = fd;
        long timeout = (long)ceil((deadline - now) * 1000.0);
        if (timeout < 0)
            timeout = 0;

        if (4 + dmri_fetch_npeers(w->fetch) > cap) {
            cap = 2 * (4 + dmri_fetch_npeers(w->fetch));
            items = dmri_realloc(items, (size_t)cap * sizeof *items);
        }
        int n = 0;
        items[n++] = (zmq_pollitem_t){w->sched, 0, ZMQ_POLLIN, 0};
        items[n++] = (zmq_pollitem_t){w->peer, 0, ZMQ_POLLIN, 0};
        items[n++] = (zmq_pollitem_t){NULL, dmri_pool_fd(w->pool), ZMQ_POLLIN, 0};
        items[n++] = (zmq_pollitem_t){NULL, sig_pipe[0], ZMQ_POLLIN, 0};
        int npeer = dmri_fetch_pollitems(w->fetch, items + n, cap - n);
        if (zmq_poll(items, n + npeer, timeout) < 0) {
            if (errno == EINTR)
                continue;
            dmri_wlog("zmq_poll: %s", zmq_strerror(errno));
            w->exit_code = 1;
            break;
        }
        if (items[3].revents & ZMQ_POLLIN) {
            unsigned char sig = 0, b;
            while (read(sig_pipe[0], &b, 1) == 1)
                sig = b;
            if (sig) {
                dmri_wlog("%s received: leaving the cluster",
                          sig == SIGINT ? "SIGINT" : "SIGTERM");
                say_bye(w, sig);
                w->stop = 1;
                w->exit_code = 0;
                break;
            }
        }
        if (items[0].revents & ZMQ_POLLIN)
            drain_sched(w);
        if (w->stop)
            break;
        if (items[1].revents & ZMQ_POLLIN)
            dmri_serve_drain(&w->serve);
        if (items[2].revents & ZMQ_POLLIN)
            drain_done(w);
        if (npeer > 0)
            dmri_fetch_drain(w->fetch, items + n, npeer, dmri_now());
    }
    dmri_free(items);
}

int dmri_worker_run(const dmri_wopts_t *o) {
    worker_t wk;
    memset(&wk, 0, sizeof wk);
    worker_t *w = &wk;
    w->o = o;
    w->exit_code = 1;
    dmri_wlog_limit_init(&w->lim_sched, 10.0, 5);
    dmri_wlog_limit_init(&w->lim_send, 10.0, 5);
    dmri_wlog_limit_init(&w->lim_task, 1.0, 50);
    FILE *logf = NULL;
    if (o->log_file) {
        logf = fopen(o->log_file, "a");
        if (!logf) {
            fprintf(stderr, "dmri-worker: --log-file %s: %s\n", o->log_file, strerror(errno));
            return 1;
        }
        dmri_wlog_set_file(logf);
    }
    dmri_err_t err = {0};
    int rc = setup_signals(&err);
    if (rc == 0)
        rc = dmri_netaddr_routed_ip(o->sched_host, o->sched_port, w->routed_ip,
                                    sizeof w->routed_ip, &err);
    if (rc == 0) {
        w->zctx = zmq_ctx_new();
        if (!w->zctx)
            rc = dmri_err_set(&err, DMRI_EIO, "zmq_ctx_new: %s", zmq_strerror(errno));
    }
    /* The ZAP handler before the peer socket binds (auth.h). */
    if (rc == 0 && o->keys_dir) {
        rc = dmri_auth_load(&w->auth, DMRI_AUTH_WORKER, o->keys_dir, o->cert, &err);
        if (rc == 0)
            rc = dmri_auth_start(w->auth, w->zctx, auth_log, NULL, &err);
        if (rc != 0)
            dmri_err_prefix(&err, "--keys %s: ", o->keys_dir);
    }
    if (rc == 0)
        rc = make_sockets(w, &err);
    if (rc == 0) {
        w->pool = dmri_pool_new(o->nthreads, &err);
        if (!w->pool)
            rc = DMRI_EIO;
    }
    if (rc == 0) {
        w->store = dmri_wstore_new(o->memory_limit, o->spill_dir);
        w->generation = dmri_wstore_generation(w->store);
        w->fetch = dmri_fetch_new(w->zctx, w->store, FETCH_TIMEOUT_S,
                                  (int64_t)w->o->max_chunk, on_fetched, w);
        dmri_fetch_set_auth(w->fetch, w->auth);
        w->jobs = dmri_jobcache_new(JOBCACHE_SIZE);
        dmri_serve_init(&w->serve, w->peer, w->store, o->name);
        if (o->pid_file) {
            char pid[32];
            int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            rc = dmri_write_file_atomic(o->pid_file, pid, (size_t)n, &err);
            w->pid_written = rc == 0;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "dmri-worker: %s\n", err.msg[0] ? err.msg : dmri_strerror(rc));
        if (dmri_wlog_file() != stderr)
            dmri_wlog("fatal: %s", err.msg);
        w->exit_code = 1;
        teardown(w);
        if (logf)
            fclose(logf);
        return 1;
    }
    char lim[32];
    format_bytes(lim, sizeof lim, o->memory_limit);
    dmri_wlog("dmri-worker %s: %s, %d thread%s, memory limit %s%s, peer socket %s; "
              "scheduler %s; %s",
              dmri_version(), o->name, o->nthreads, o->nthreads == 1 ? "" : "s",
              o->memory_limit ? lim : "none", o->memory_limit ? "" : " (never spill)",
              w->peer_addr, o->sched_endpoint,
              w->auth ? "CURVE authentication and encryption on" : "no authentication (no --keys)");
    w->state = ST_HELLO;
    w->started = dmri_now();
    w->next_hello = w->started;
    w->last_heard = dmri_now();
    loop(w);
    int code = teardown(w);
    if (logf) {
        dmri_wlog_set_file(NULL);
        fclose(logf);
    }
    return code;
}
