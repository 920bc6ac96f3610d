/* server: ZeroMQ sockets and the poll loop around the scheduler state
 * machine (see server.h). */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "dashboard.h"
#include "auth.h"
#include "dmri_alloc.h"
#include "strmap.h"
#include "transport.h"

#define MAX_FETCH_SOCKETS 4096
/* The dashboard sees the state at most this old; publishing costs a copy of
 * the workers, the jobs' task states and the task-stream ring. */
#define DASHBOARD_PERIOD_S 0.25

typedef struct {
    const dmri_server_opts_t *o;
    void *zctx;
    void *router;
    dmri_sched_t *sched;
    dmri_strmap_t fetch_index;   /* peer address -> index in fetch[] */
    void **fetch;                /* DEALERs to workers' peer sockets */
    int nfetch;
    dmri_dashboard_t *dash;      /* NULL when disabled or its port was taken */
    dmri_auth_t *auth;           /* CURVE keys and ZAP handler; NULL without --keys */
} server_t;

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(signal_pipe[1], &b, 1);
    (void)r;
}

static double mono_now(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void log_line(void *ctx, const char *line) {
    server_t *sv = ctx;
    if (sv->o->quiet)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03d dmri-scheduler: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            (int)(tv.tv_usec / 1000), line);
}

static int io_send(void *ctx, const uint8_t *peer, size_t peer_len, const dmri_msg_t *m,
                   const void *payload, size_t payload_len) {
    server_t *sv = ctx;
    dmri_err_t err = {0};
    return dmri_proto_send(sv->router, peer, peer_len, m, payload, payload_len, NULL, NULL, &err);
}

static void *fetch_socket(server_t *sv, const char *addr) {
    int idx;
    if (dmri_strmap_get(&sv->fetch_index, addr, &idx))
        return sv->fetch[idx];
    if (sv->nfetch >= MAX_FETCH_SOCKETS)
        return NULL;
    void *d = zmq_socket(sv->zctx, ZMQ_DEALER);
    if (!d)
        return NULL;
    dmri_err_t err = {0};
    dmri_proto_socket_setup(d, 0, sv->o->max_chunk, &err);
    if (dmri_auth_client_setup(d, sv->auth, &err) != 0) {
        zmq_close(d);
        return NULL;
    }
    int linger = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(d, addr) != 0) {
        zmq_close(d);
        return NULL;
    }
    sv->fetch = dmri_realloc(sv->fetch, (size_t)(sv->nfetch + 1) * sizeof(void *));
    sv->fetch[sv->nfetch] = d;
    dmri_strmap_put(&sv->fetch_index, addr, sv->nfetch);
    sv->nfetch++;
    return d;
}

static void io_fetch(void *ctx, const char *addr, const char *key, uint64_t request) {
    server_t *sv = ctx;
    void *d = fetch_socket(sv, addr);
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_DATA_GET);
    m.u.data_get.key = (char *)key;
    m.u.data_get.request = request;
    dmri_err_t err = {0};
    if (!d || dmri_proto_send(d, NULL, 0, &m, NULL, 0, NULL, NULL, &err) != 0)
        dmri_sched_on_data_missing(sv->sched, request);
}

/* Forward a chunk to its client without copying it: the payload message
 * received from the worker is handed to the ROUTER as is. */
static void relay_data(server_t *sv, const dmri_msg_t *m, dmri_payload_t *payload) {
    uint8_t client[DMRI_IDENT_MAX];
    size_t client_len = 0;
    dmri_msg_t result;
    uint64_t request = m->u.data.request;
    size_t size = dmri_payload_size(payload);
    if (size != m->u.data.size) {
        dmri_sched_on_data_missing(sv->sched, request);
        return;
    }
    if (!dmri_sched_on_data(sv->sched, request, size, client, &client_len, &result))
        return;
    uint8_t *hdr = NULL;
    size_t hdr_len = 0;
    int ok = dmri_msg_encode(&result, &hdr, &hdr_len) == 0 &&
             zmq_send(sv->router, client, client_len, ZMQ_SNDMORE) >= 0 &&
             zmq_send(sv->router, hdr, hdr_len, ZMQ_SNDMORE) >= 0;
    if (ok) {
        if (payload->present) {
            ok = zmq_msg_send(&payload->msg, sv->router, 0) >= 0;
        } else {
            ok = zmq_send(sv->router, "", 0, 0) >= 0;
        }
    }
    dmri_free(hdr);
    dmri_sched_on_relayed(sv->sched, request, ok);
}

static void drain_router(server_t *sv) {
    for (int i = 0; i < 10000; i++) {
        uint8_t ident[DMRI_IDENT_MAX];
        size_t ident_len = 0;
        dmri_msg_t m;
        dmri_payload_t payload = {0};
        dmri_err_t err = {0};
        int pv = 0;
        int rc = dmri_proto_recv(sv->router, 1, ident, &ident_len, &m, &payload, &pv, &err);
        if (rc == DMRI_ECANCEL)
            return;
        if (rc == DMRI_EFORMAT || rc == DMRI_EUNSUP) {
            dmri_sched_on_malformed(sv->sched, ident, ident_len, rc, err.msg);
            continue;
        }
        if (rc != 0)
            return;
        dmri_payload_close(&payload);
        dmri_sched_on_message(sv->sched, ident, ident_len, &m);
        dmri_msg_clear(&m);
    }
}

static void drain_fetch(server_t *sv, void *d) {
    for (int i = 0; i < 10000; i++) {
        dmri_msg_t m;
        dmri_payload_t payload = {0};
        dmri_err_t err = {0};
        int rc = dmri_proto_recv(d, 0, NULL, NULL, &m, &payload, NULL, &err);
        if (rc == DMRI_ECANCEL || (rc != 0 && rc != DMRI_EFORMAT && rc != DMRI_EUNSUP))
            return;
        if (rc != 0)
            continue;
        if (m.type == DMRI_MSG_DATA)
            relay_data(sv, &m, &payload);
        else if (m.type == DMRI_MSG_DATA_MISSING)
            dmri_sched_on_data_missing(sv->sched, m.u.data_missing.request);
        dmri_payload_close(&payload);
        dmri_msg_clear(&m);
    }
}

static int write_small_file(const char *path, const char *text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputs(text, f);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

void dmri_server_opts_default(dmri_server_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8786;
    o->max_msg = DMRI_PROTO_DEFAULT_MAX_MSG;
    o->max_chunk = DMRI_PROTO_DEFAULT_MAX_CHUNK;
    o->dashboard_port = 8787;
    dmri_sched_opts_default(&o->sched);
}

int dmri_server_run(const dmri_server_opts_t *o, dmri_err_t *err) {
    server_t sv;
    memset(&sv, 0, sizeof sv);
    sv.o = o;
    dmri_strmap_init(&sv.fetch_index);
    dmri_journal_t journal = {.fd = -1, .lock_fd = -1};
    if (o->state_dir && dmri_journal_open(&journal, o->state_dir, err) != 0) {
        dmri_strmap_close(&sv.fetch_index);
        return err ? err->code : DMRI_EIO;
    }
    sv.zctx = zmq_ctx_new();
    /* The ZAP handler must run before the ROUTER binds: a CURVE server with
     * no handler would admit any client that knows the cluster's public key. */
    if (o->keys_dir && (dmri_auth_load(&sv.auth, DMRI_AUTH_SCHEDULER, o->keys_dir, NULL, err) != 0 ||
                        dmri_auth_start(sv.auth, sv.zctx, log_line, &sv, err) != 0)) {
        dmri_err_prefix(err, "--keys %s: ", o->keys_dir);
        zmq_ctx_term(sv.zctx);
        dmri_auth_destroy(&sv.auth);
        dmri_strmap_close(&sv.fetch_index);
        dmri_journal_close(&journal);
        return DMRI_EIO;
    }
    sv.router = zmq_socket(sv.zctx, ZMQ_ROUTER);
    /* Port 8786 faces anyone who can reach it: a frame over --max-message-size
     * drops that peer's connection before ZeroMQ buffers it. */
    dmri_proto_socket_setup(sv.router, 1, o->max_msg, err);
    char endpoint[512];
    snprintf(endpoint, sizeof endpoint, "tcp://%s:%d", o->host, o->port);
    if (dmri_auth_server_setup(sv.router, sv.auth, err) != 0 || zmq_bind(sv.router, endpoint) != 0) {
        int e = zmq_errno();
        zmq_close(sv.router);
        zmq_ctx_term(sv.zctx);
        dmri_auth_destroy(&sv.auth);
        dmri_strmap_close(&sv.fetch_index);
        dmri_journal_close(&journal);
        return dmri_err_set(err, DMRI_EIO, "cannot listen on %s: %s", endpoint, zmq_strerror(e));
    }
    char bound[512];
    size_t blen = sizeof bound;
    zmq_getsockopt(sv.router, ZMQ_LAST_ENDPOINT, bound, &blen);
    const char *colon = strrchr(bound, ':');
    int port = colon ? atoi(colon + 1) : o->port;

    if (pipe(signal_pipe) != 0)
        return dmri_err_set(err, DMRI_EIO, "pipe: %s", strerror(errno));
    fcntl(signal_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    dmri_sched_io_t io = {io_send, io_fetch, mono_now, log_line};
    sv.sched = dmri_sched_new(&o->sched, &io, &sv);
    char line[600];
    snprintf(line, sizeof line, "listening on %s (protocol version %d)", bound,
             DMRI_PROTO_VERSION);
    log_line(&sv, line);
    if (o->state_dir) {
        snprintf(line, sizeof line, "state dir %.500s: journal of %d unfinished subject(s), "
                 "job ids from %llu", o->state_dir, journal.nunfinished,
                 (unsigned long long)journal.max_job + 1);
        log_line(&sv, line);
        dmri_sched_attach_journal(sv.sched, &journal);
    }
    /* The largest chunk of a full-size HCP subject (145x174 voxels per
     * slice) with this chunking, float64 (scaled data): if it cannot pass
     * --max-chunk-size, results of such subjects would never arrive. */
    double hcp_chunk = 145.0 * 174.0 * o->sched.slab_slices * o->sched.vols_per_task * 8.0;
    double hcp_maps = 145.0 * 174.0 * o->sched.slab_slices * 16 * 4.0;
    if (o->max_chunk > 0 && (hcp_chunk > (double)o->max_chunk || hcp_maps > (double)o->max_chunk)) {
        snprintf(line, sizeof line,
                 "WARNING: with --slab-slices %d and --vols-per-task %d a full-size HCP chunk "
                 "takes up to %.0f MB, more than --max-chunk-size (%.0f MB): raise it here "
                 "and on the workers",
                 o->sched.slab_slices, o->sched.vols_per_task,
                 (hcp_chunk > hcp_maps ? hcp_chunk : hcp_maps) / 1e6, (double)o->max_chunk / 1e6);
        log_line(&sv, line);
    }
    if (strcmp(o->host, "127.0.0.1") == 0 || strcmp(o->host, "localhost") == 0)
        log_line(&sv, "loopback only: workers on other machines need --host 0.0.0.0 (or an "
                      "address of this machine); clients can use ssh -L 8786:127.0.0.1:8786");
    if (sv.auth) {
        snprintf(line, sizeof line, "CURVE authentication and encryption on: %zu keys admitted "
                 "(%s/authorized and the cluster key)", dmri_auth_nauthorized(sv.auth) - 1,
                 o->keys_dir);
        log_line(&sv, line);
    } else if (!(strcmp(o->host, "127.0.0.1") == 0 || strcmp(o->host, "localhost") == 0)) {
        log_line(&sv, "WARNING: the cluster is open: anyone who can reach this port can "
                      "submit work and join as a worker (no --keys: no authentication, no "
                      "encryption; see dmri-keygen)");
    }
    if (o->port_file) {
        char text[32];
        snprintf(text, sizeof text, "%d\n", port);
        write_small_file(o->port_file, text);
    }
    if (o->pid_file) {
        char text[32];
        snprintf(text, sizeof text, "%ld\n", (long)getpid());
        if (write_small_file(o->pid_file, text) != 0)
            log_line(&sv, "cannot write the pid file");
    }

    if (o->dashboard_port != 0) {
        dmri_err_t derr = {0};
        if (dmri_dashboard_new(o->host, o->dashboard_port < 0 ? 0 : o->dashboard_port, &sv.dash,
                               &derr) != 0) {
            /* Scheduling matters more than the page: warn and go on. */
            snprintf(line, sizeof line, "WARNING: %.400s; scheduling goes on without the status page "
                                        "(--dashboard-port N to choose another, 0 for none)",
                     derr.msg);
            log_line(&sv, line);
        } else {
            snprintf(line, sizeof line, "status page on http://%s:%d/ (/api/status, /metrics, "
                                        "/health)",
                     o->host, dmri_dashboard_port(sv.dash));
            log_line(&sv, line);
            if (o->dashboard_port_file) {
                char text[32];
                snprintf(text, sizeof text, "%d\n", dmri_dashboard_port(sv.dash));
                write_small_file(o->dashboard_port_file, text);
            }
        }
    }

    double last_tick = 0, last_publish = -1;
    int stop = 0;
    zmq_pollitem_t *items = NULL;
    while (!stop) {
        int n = 2 + sv.nfetch;
        items = dmri_realloc(items, (size_t)n * sizeof(zmq_pollitem_t));
        memset(items, 0, (size_t)n * sizeof(zmq_pollitem_t));
        items[0].socket = sv.router;
        items[0].events = ZMQ_POLLIN;
        items[1].fd = signal_pipe[0];
        items[1].events = ZMQ_POLLIN;
        for (int i = 0; i < sv.nfetch; i++) {
            items[2 + i].socket = sv.fetch[i];
            items[2 + i].events = ZMQ_POLLIN;
        }
        int rc = zmq_poll(items, n, 100);
        if (rc < 0 && zmq_errno() != EINTR)
            break;
        if (rc > 0) {
            if (items[1].revents & ZMQ_POLLIN) {
                unsigned char b;
                while (read(signal_pipe[0], &b, 1) == 1)
                    stop = 1;
            }
            if (items[0].revents & ZMQ_POLLIN)
                drain_router(&sv);
            for (int i = 0; i < n - 2; i++)
                if (items[2 + i].revents & ZMQ_POLLIN)
                    drain_fetch(&sv, sv.fetch[i]);
        }
        double t = mono_now(NULL);
        if (t - last_tick >= 0.1) {
            dmri_sched_tick(sv.sched);
            last_tick = t;
        }
        if (sv.dash && t - last_publish >= DASHBOARD_PERIOD_S) {
            dmri_sched_snapshot_t snap;
            dmri_sched_snapshot(sv.sched, &snap);
            if (dmri_dashboard_publish(sv.dash, &snap, t))
                last_publish = t;
            dmri_sched_snapshot_close(&snap);
        }
    }
    dmri_sched_stats_t st;
    dmri_sched_stats(sv.sched, &st);
    snprintf(line, sizeof line,
             "stats: %llu malformed, %llu ignored from banned peers, %llu peers banned, "
             "%llu submits refused, %llu tasks done",
             (unsigned long long)st.malformed, (unsigned long long)st.ignored,
             (unsigned long long)st.peers_banned, (unsigned long long)st.submits_refused,
             (unsigned long long)st.tasks_done);
    log_line(&sv, line);
    log_line(&sv, "shutting down: telling workers and clients");
    dmri_sched_shutdown(sv.sched, "scheduler shutting down");
    /* Keep the connections up a moment so that peers read the BYE before
     * they see the disconnect (a DEALER with ZMQ_IMMEDIATE drops what it
     * had not read yet when its pipe goes). Whatever arrives meanwhile is
     * dropped. */
    double until = mono_now(NULL) + 0.5;
    while (mono_now(NULL) < until) {
        zmq_pollitem_t it = {sv.router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) > 0) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            while (zmq_msg_recv(&part, sv.router, ZMQ_DONTWAIT) >= 0) {
            }
            zmq_msg_close(&part);
        }
    }
    int linger = 1000;
    zmq_setsockopt(sv.router, ZMQ_LINGER, &linger, sizeof linger);
    dmri_free(items);
    dmri_dashboard_destroy(&sv.dash);
    dmri_sched_destroy(&sv.sched);
    dmri_journal_close(&journal);
    for (int i = 0; i < sv.nfetch; i++)
        zmq_close(sv.fetch[i]);
    dmri_free(sv.fetch);
    zmq_close(sv.router);
    zmq_ctx_term(sv.zctx); /* also makes the ZAP thread leave */
    dmri_auth_destroy(&sv.auth);
    dmri_strmap_close(&sv.fetch_index);
    if (o->pid_file)
        unlink(o->pid_file);
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    return 0;
}
