/* dmri-submit: runs subjects on the cluster — sends them to dmri-scheduler,
 * shows their progress, assembles the result chunks and writes the same
 * outputs as dmri-run. One DEALER socket to the scheduler carries everything
 * (PROTOCOL.md), so an ssh tunnel to port 8786 is enough. One bad subject
 * fails alone; the exit code says whether any failed. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "auth.h"
#include "dmri_alloc.h"
#include "pipeline_version.h"
#include "proto.h"
#include "report.h"
#include "submit_job.h"
#include "submit_opts.h"
#include "submit_progress.h"
#include "submit_status.h"
#include "transport.h"

#define FLAG_SKIP_DENOISE 1
#define FLAG_SAVE_DENOISED 2
#define FLAG_NOOP 4
#define POLL_MS 100          /* wake-up period: heartbeats, redraws, deadlines */
#define REDRAW_S 0.2         /* terminal redraws at most this often */
#define DRAIN_MAX 64         /* messages handled per wake-up before timers run */
#define LINGER_BYE_MS 500    /* how long a final BYE may wait to get out */
#define NAME_WIDTH_MAX 24

static volatile sig_atomic_t g_signal;

static void on_signal(int sig) { g_signal = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: dmri-submit [options] SUBJECT [SUBJECT ...]\n"
            "       dmri-submit --bench-noop N [--scheduler HOST:PORT]\n"
            "       dmri-submit --status [--json] [--scheduler HOST:PORT] [--timeout S]\n"
            "\n"
            "Runs brain mask -> noise estimate -> NL-means denoising -> tensor fit\n"
            "(the science of dipy 1.6, as dmri-run) on the cluster: each SUBJECT is sent\n"
            "to dmri-scheduler, which has dmri-worker processes read and compute it;\n"
            "the results come back here and are written exactly as dmri-run writes them.\n"
            "SUBJECT is a folder holding data.nii.gz, bvals and bvecs (as the workers see\n"
            "it; a relative folder that exists here is sent as an absolute path) or an\n"
            "HCP id, looked up by the workers under their --data-dir.\n"
            "\n"
            "options:\n"
            "  --scheduler HOST:PORT  the scheduler (default: $DMRI_SCHEDULER or "
            DMRI_SUBMIT_DEFAULT_SCHEDULER ");\n"
            "                         from outside the cluster: ssh -L 8786:127.0.0.1:8786 HEAD\n"
            "  --out DIR              outputs go to DIR/<subject>/ (default: dmri-out)\n"
            "  --b0-threshold B       volumes with b <= B are b0 (default: 10)\n"
            "  --skip-denoise         fit the tensor on the raw data\n"
            "  --save-denoised        also write denoised.nii.gz\n"
            "  --preview              also write preview.png: FA and colour FA, 3 axial slices\n"
            "  --report FILE          after the run, write a self-contained HTML report of\n"
            "                         where the time went (per step, per worker, transfer vs\n"
            "                         compute, task stream)\n"
            "  --timeout SECONDS      give up on a silent scheduler after this long (default: 30)\n"
            "  --quiet                print nothing but errors\n"
            "  --keys DIR             the cluster uses CURVE keys (dmri-keygen): its public\n"
            "                         key is DIR/cluster.pub\n"
            "  --cert FILE            our certificate (default: DIR/certs/$USER.cert)\n"
            "  --bench-noop N         measure the scheduler: run N no-op tasks, print tasks/s\n"
            "  --status               print the scheduler's workers (name, address, threads)\n"
            "                         and job counts; exit 1 if it does not answer in --timeout\n"
            "  --json                 with --status: the scheduler's JSON document instead\n"
            "  --version, --help\n"
            "\n"
            "Outputs: mask.nii.gz, dti_fa/md/ad/rd.nii.gz, dti_evecs.nii.gz,\n"
            "dti_color_fa.nii.gz, [denoised.nii.gz], summary.json (with the cluster's timings).\n"
            "Exit status: 0 if every subject succeeded, 1 if any failed or the scheduler\n"
            "could not be reached, 2 on usage errors, 130/143 when interrupted.\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const dmri_submit_opts_t *o;
    void *zctx;                 /* ZeroMQ context */
    void *sock;                 /* DEALER to the scheduler */
    dmri_submit_job_t *jobs;
    int njobs;
    int bench;                  /* --bench-noop run */
    int tty;                    /* progress redrawn in place on stdout */
    dmri_submit_block_t block;  /* the in-place progress lines */
    int dirty;                  /* progress changed since the last redraw */
    double last_draw;
    double last_heard;          /* last message from the scheduler */
    double next_heartbeat;
    double heartbeat_s;
    double accepted_at, done_at; /* bench timings */
    int stop;                   /* the scheduler left or was lost: end the loop */
    int forgotten;              /* the scheduler says we are not registered (it restarted) */
    uint64_t next_request;      /* request ids of resubmissions */
    int reconnects;
    dmri_auth_t *auth;          /* CURVE keys, NULL without --keys */
    dmri_auth_monitor_t *mon;   /* tells a refused certificate from silence */
} client_t;

/* --- output: everything goes through here so the progress block is erased
 * before a message and redrawn after it. */

static void say(client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(client_t *c, const char *fmt, ...) {
    if (c->o->quiet)
        return;
    if (c->tty)
        dmri_submit_block_clear(&c->block);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
    c->dirty = 1;
}

static void complain(client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void complain(client_t *c, const char *fmt, ...) {
    if (c->tty)
        dmri_submit_block_clear(&c->block);
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    c->dirty = 1;
}

static int name_width(const client_t *c) {
    int w = 4;
    for (int i = 0; i < c->njobs; i++) {
        int n = (int)strlen(c->jobs[i].name);
        if (n > w)
            w = n;
    }
    return w < NAME_WIDTH_MAX ? w : NAME_WIDTH_MAX;
}

static void redraw(client_t *c, int force) {
    if (!c->tty || !c->dirty)
        return;
    double t = now_s();
    if (!force && t - c->last_draw < REDRAW_S)
        return;
    int w = name_width(c), n = 0;
    char(*buf)[512] = dmri_malloc((size_t)(c->njobs > 0 ? c->njobs : 1) * sizeof *buf);
    const char **lines = dmri_malloc((size_t)(c->njobs > 0 ? c->njobs : 1) * sizeof *lines);
    for (int i = 0; i < c->njobs; i++) {
        const dmri_submit_job_t *j = &c->jobs[i];
        if (j->state != DMRI_SUBMIT_JOB_RUNNING)
            continue;
        dmri_submit_progress_line(buf[n], sizeof buf[n], j->name, w, j->done, j->total, j->step);
        lines[n] = buf[n];
        n++;
    }
    dmri_submit_block_draw(&c->block, lines, n);
    dmri_free(lines);
    dmri_free(buf);
    c->dirty = 0;
    c->last_draw = t;
}

/* --- sending */

static int send_msg(client_t *c, const dmri_msg_t *m) {
    dmri_err_t err = {0};
    int rc = dmri_proto_send(c->sock, NULL, 0, m, NULL, 0, NULL, NULL, &err);
    if (rc != 0)
        complain(c, "dmri-submit: sending %s: %s\n", dmri_msg_type_name(m->type),
                 err.msg[0] ? err.msg : dmri_strerror(rc));
    return rc;
}

static void send_bye(client_t *c, const char *reason) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_BYE);
    m.u.bye.reason = (char *)reason;
    int linger = LINGER_BYE_MS;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    send_msg(c, &m);
}

static void send_heartbeat(client_t *c) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_HEARTBEAT);
    uint64_t running = 0;
    for (int i = 0; i < c->njobs; i++)
        running += c->jobs[i].state == DMRI_SUBMIT_JOB_RUNNING;
    m.u.heartbeat.running = running;
    send_msg(c, &m);
}

/* --- jobs */

static dmri_submit_job_t *job_by_id(client_t *c, uint64_t job) {
    for (int i = 0; i < c->njobs; i++)
        if (c->jobs[i].state != DMRI_SUBMIT_JOB_SENT && c->jobs[i].job == job)
            return &c->jobs[i];
    return NULL;
}

static void job_failed(client_t *c, dmri_submit_job_t *j, const char *msg) {
    if (dmri_submit_job_fail(j, msg)) {
        if (c->bench)
            complain(c, "dmri-submit: benchmark FAILED: %s\n", j->error);
        else
            complain(c, "dmri-submit: subject %s FAILED: %s\n", j->name, j->error);
    }
}

static void fail_all(client_t *c, const char *msg) {
    for (int i = 0; i < c->njobs; i++)
        job_failed(c, &c->jobs[i], msg);
}

static int active_count(const client_t *c) {
    int n = 0;
    for (int i = 0; i < c->njobs; i++)
        n += dmri_submit_job_active(&c->jobs[i]);
    return n;
}

static void on_progress(client_t *c, const dmri_msg_progress_t *p) {
    dmri_submit_job_t *j = job_by_id(c, p->job);
    if (!j || !dmri_submit_job_active(j))
        return;
    j->done = p->done;
    j->total = p->total;
    snprintf(j->step, sizeof j->step, "%s", p->step);
    c->dirty = 1;
    if (c->tty || c->o->quiet)
        return;
    /* In a log, one line per 10 % step; a new total (the graph is known
     * only after LOAD) starts the count again. */
    if (p->total != j->decile_total) {
        j->decile_total = p->total;
        j->decile = -1;
    }
    int d = dmri_submit_progress_decile(p->done, p->total);
    if (d > j->decile) {
        j->decile = d;
        char line[512];
        dmri_submit_progress_line(line, sizeof line, j->name, name_width(c), j->done, j->total,
                                  j->step);
        say(c, "%s\n", line);
    }
}

static void on_result(client_t *c, const dmri_msg_result_t *r, dmri_payload_t *payload) {
    dmri_submit_job_t *j = job_by_id(c, r->job);
    if (!j || !dmri_submit_job_active(j))
        return;
    if (c->bench)
        return;
    size_t have = dmri_payload_size(payload);
    if (!payload->present || have != r->size) {
        char msg[DMRI_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "result %.200s: payload of %zu bytes, the header says %" PRIu64,
                 r->key, have, r->size);
        job_failed(c, j, msg);
        return;
    }
    dmri_err_t err = {0};
    int rc = dmri_submit_job_result(j, r->key, dmri_payload_data(payload), have, &err);
    if (rc != 0)
        job_failed(c, j, err.msg[0] ? err.msg : dmri_strerror(rc));
    else
        c->dirty = 1; /* the name may have changed with the info chunk */
}

static void on_job_done(client_t *c, const dmri_msg_job_done_t *d) {
    dmri_submit_job_t *j = job_by_id(c, d->job);
    if (!j || !dmri_submit_job_active(j))
        return;
    if (c->bench) {
        c->done_at = now_s();
        j->state = DMRI_SUBMIT_JOB_DONE;
        double wall = c->done_at - c->accepted_at;
        if (c->tty)
            dmri_submit_block_clear(&c->block);
        printf("dmri-submit: bench-noop: %ld tasks in %.3f s: %.1f tasks/s (client wall time, "
               "ACCEPTED to JOB_DONE)\n",
               c->o->bench_tasks, wall, wall > 0 ? (double)c->o->bench_tasks / wall : 0.0);
        printf("dmri-submit: scheduler summary: %s\n", d->summary[0] ? d->summary : "{}");
        fflush(stdout);
        return;
    }
    if (c->o->report) {
        /* Kept for the report; events are JSON text from the scheduler. */
        j->wall_s = now_s() - j->sent_at;
        j->summary_json = dmri_malloc(strlen(d->summary) + 1);
        memcpy(j->summary_json, d->summary, strlen(d->summary) + 1);
        j->events_json = dmri_malloc(d->events.len + 1);
        if (d->events.len)
            memcpy(j->events_json, d->events.data, d->events.len);
        j->events_json[d->events.len] = '\0';
    }
    dmri_err_t err = {0};
    if (dmri_submit_job_finish(j, c->o->out_root, d->summary, &err) != 0)
        complain(c, "dmri-submit: subject %s FAILED: %s\n", j->name, j->error);
    else
        say(c, "dmri-submit: subject %s done; FA map: %s/dti_fa.nii.gz\n", j->name, j->out_dir);
}

/* --report: every subject that ended, with what the scheduler told us. */
static int write_report(client_t *c) {
    dmri_report_job_t *rj = dmri_calloc((size_t)c->njobs + 1, sizeof *rj);
    int n = 0;
    for (int i = 0; i < c->njobs; i++) {
        dmri_submit_job_t *j = &c->jobs[i];
        if (j->state != DMRI_SUBMIT_JOB_DONE && j->state != DMRI_SUBMIT_JOB_FAILED)
            continue;
        rj[n].name = j->name;
        rj[n].state = j->state == DMRI_SUBMIT_JOB_DONE ? "done" : "failed";
        rj[n].wall_s = j->wall_s;
        rj[n].summary = j->summary_json;
        rj[n].events = j->events_json;
        n++;
    }
    dmri_err_t err = {0};
    int rc = dmri_report_write(c->o->report, c->o->scheduler, rj, n, &err);
    dmri_free(rj);
    if (rc != 0)
        complain(c, "dmri-submit: %s\n", err.msg);
    else
        say(c, "dmri-submit: performance report: %s\n", c->o->report);
    return rc;
}

/* One message from the scheduler, after WELCOME. */
static void handle(client_t *c, dmri_msg_t *m, dmri_payload_t *payload) {
    switch (m->type) {
    case DMRI_MSG_ACCEPTED:
        for (int i = 0; i < c->njobs; i++) {
            dmri_submit_job_t *j = &c->jobs[i];
            if (j->state == DMRI_SUBMIT_JOB_SENT && j->request == m->u.accepted.request) {
                j->job = m->u.accepted.job;
                j->state = DMRI_SUBMIT_JOB_RUNNING;
                c->accepted_at = now_s();
                c->dirty = 1;
                if (!c->bench)
                    say(c, "dmri-submit: subject %s is job %" PRIu64 "\n", j->name, j->job);
            }
        }
        break;
    case DMRI_MSG_PROGRESS: on_progress(c, &m->u.progress); break;
    case DMRI_MSG_RESULT: on_result(c, &m->u.result, payload); break;
    case DMRI_MSG_JOB_DONE: on_job_done(c, &m->u.job_done); break;
    case DMRI_MSG_JOB_FAILED: {
        dmri_submit_job_t *j = job_by_id(c, m->u.job_failed.job);
        if (j)
            job_failed(c, j, m->u.job_failed.error);
        break;
    }
    case DMRI_MSG_BYE: {
        char msg[DMRI_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "scheduler shut down: %.400s", m->u.bye.reason);
        fail_all(c, msg);
        c->stop = 1;
        break;
    }
    case DMRI_MSG_REFUSED: {
        /* The scheduler forgot us (client timeout, restart): nothing of
         * ours runs there any more. */
        char msg[DMRI_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "refused by scheduler: %.400s", m->u.refused.reason);
        fail_all(c, msg);
        c->stop = 1;
        break;
    }
    case DMRI_MSG_ERROR:
        if (strstr(m->u.error.error, "not registered")) {
            c->forgotten = 1; /* a restarted scheduler: register again */
            break;
        }
        complain(c, "dmri-submit: scheduler error: %s\n", m->u.error.error);
        break;
    default: break; /* HEARTBEAT, a repeated WELCOME: only liveness */
    }
}

/* Receive what is waiting (up to DRAIN_MAX messages). Returns the number
 * handled, or -1 when the conversation cannot go on (c->stop set). */
static int drain(client_t *c, int welcomed, int *got_welcome, uint64_t *heartbeat_ms) {
    int handled = 0;
    while (handled < DRAIN_MAX && !c->stop) {
        dmri_msg_t m;
        dmri_payload_t payload;
        dmri_err_t err = {0};
        int version = 0;
        int rc = dmri_proto_recv(c->sock, 0, NULL, NULL, &m, &payload, &version, &err);
        if (rc == DMRI_ECANCEL)
            break;
        handled++;
        if (rc != 0 || m.type != DMRI_MSG_ERROR)
            c->last_heard = now_s(); /* an ERROR is no sign that our registration lives */
        if (rc == DMRI_EUNSUP) {
            complain(c, "dmri-submit: the scheduler speaks another protocol: %s\n", err.msg);
            fail_all(c, "protocol version mismatch with the scheduler");
            c->stop = 1;
            return -1;
        }
        if (rc == DMRI_EFORMAT) {
            complain(c, "dmri-submit: malformed message from the scheduler: %s\n", err.msg);
            dmri_msg_t e;
            dmri_msg_init(&e, DMRI_MSG_ERROR);
            e.u.error.error = err.msg;
            send_msg(c, &e);
            continue;
        }
        if (rc != 0) {
            complain(c, "dmri-submit: receiving from the scheduler: %s\n",
                     err.msg[0] ? err.msg : dmri_strerror(rc));
            fail_all(c, "lost contact with the scheduler (socket error)");
            c->stop = 1;
            return -1;
        }
        if (!welcomed) {
            if (m.type == DMRI_MSG_WELCOME) {
                *got_welcome = 1;
                *heartbeat_ms = m.u.welcome.heartbeat_ms;
            } else if (m.type == DMRI_MSG_REFUSED) {
                complain(c, "dmri-submit: refused by scheduler: %s\n", m.u.refused.reason);
                c->stop = 1;
            } else if (m.type == DMRI_MSG_BYE) {
                complain(c, "dmri-submit: scheduler shut down: %s\n", m.u.bye.reason);
                c->stop = 1;
            } else if (m.type == DMRI_MSG_ERROR) {
                complain(c, "dmri-submit: scheduler error: %s\n", m.u.error.error);
            }
        } else {
            handle(c, &m, &payload);
        }
        /* Result payloads are copied into the assembly: let go of the
         * frame at once (a subject's results reach gigabytes). */
        dmri_payload_close(&payload);
        dmri_msg_clear(&m);
        if (!welcomed && *got_welcome)
            break;
    }
    return handled;
}

/* Wait up to `ms` for input; 1 readable, 0 not, -1 on a signal. */
static int wait_input(client_t *c, long ms) {
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&it, 1, ms);
    if (g_signal)
        return -1;
    if (rc < 0)
        return 0; /* EINTR from a signal we do not care about */
    return rc > 0;
}

static int exit_for_signal(client_t *c) {
    int sig = g_signal;
    if (c->tty)
        dmri_submit_block_clear(&c->block);
    fflush(stdout);
    fprintf(stderr, "dmri-submit: interrupted (%s); the scheduler cancels our jobs\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    send_bye(c, sig == SIGINT ? "client interrupted (SIGINT)" : "client terminated (SIGTERM)");
    return 128 + sig;
}

static int connect_scheduler(client_t *c) {
    dmri_err_t err = {0};
    c->zctx = zmq_ctx_new();
    c->sock = c->zctx ? zmq_socket(c->zctx, ZMQ_DEALER) : NULL;
    if (!c->sock) {
        fprintf(stderr, "dmri-submit: cannot create a ZeroMQ socket: %s\n", zmq_strerror(errno));
        return -1;
    }
    if (dmri_proto_socket_setup(c->sock, 0, 0, &err) != 0) {
        fprintf(stderr, "dmri-submit: socket setup: %s\n", err.msg);
        return -1;
    }
    if (c->o->keys_dir) {
        char cert[4200];
        const char *user = getenv("USER");
        if (c->o->cert)
            snprintf(cert, sizeof cert, "%s", c->o->cert);
        else
            snprintf(cert, sizeof cert, "%.2000s/certs/%.200s.cert", c->o->keys_dir,
                     user && *user ? user : "client");
        if (dmri_auth_load(&c->auth, DMRI_AUTH_CLIENT, c->o->keys_dir, cert, &err) != 0 ||
            dmri_auth_client_setup(c->sock, c->auth, &err) != 0) {
            fprintf(stderr, "dmri-submit: --keys %s: %s\n", c->o->keys_dir, err.msg);
            return -1;
        }
    }
    /* With or without keys: a scheduler that wants them is told apart from
     * one that does not answer. */
    c->mon = dmri_auth_monitor_new(c->zctx, c->sock, &err);
    if (!c->mon) {
        fprintf(stderr, "dmri-submit: %s\n", err.msg);
        return -1;
    }
    /* Nothing queued for an absent scheduler may hold up exit. */
    int linger = 0, v6 = c->o->ipv6;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_IPV6, &v6, sizeof v6);
    char endpoint[DMRI_SUBMIT_HOST_MAX + 32];
    snprintf(endpoint, sizeof endpoint, "tcp://%s", c->o->scheduler);
    if (zmq_connect(c->sock, endpoint) != 0) {
        fprintf(stderr, "dmri-submit: cannot connect to %s: %s\n", endpoint,
                zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static int send_hello(client_t *c) {
    char host[256] = "localhost", name[DMRI_PROTO_MAX_STR];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(name, sizeof name, "dmri-submit@%s:%ld", host, (long)getpid());
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_HELLO);
    m.u.hello.role = "client";
    m.u.hello.name = name;
    m.u.hello.pid = (uint64_t)getpid();
    return send_msg(c, &m);
}

/* HELLO, then wait for WELCOME. Returns 0 when welcomed, else an exit code. */
static int handshake(client_t *c) {
    if (send_hello(c) != 0)
        return 1;
    double deadline = now_s() + c->o->timeout;
    int welcomed = 0, failed_handshakes = 0;
    uint64_t hb_ms = 0;
    while (!welcomed && !c->stop) {
        double left = deadline - now_s();
        if (left <= 0) {
            fprintf(stderr,
                    "dmri-submit: no answer from scheduler at %s (is dmri-scheduler running? "
                    "through ssh: ssh -L 8786:127.0.0.1:8786 HEAD)\n",
                    c->o->scheduler);
            return 1;
        }
        char why[400];
        int verdict = dmri_auth_monitor_check(c->mon, why, sizeof why);
        /* a failed handshake that repeats will not heal either */
        if (verdict == 1 && ++failed_handshakes < 3)
            verdict = 0;
        if (verdict) {
            fprintf(stderr, "dmri-submit: the scheduler at %s refused us: authentication "
                    "failed: %s\n", c->o->scheduler, why);
            return 1;
        }
        long ms = (long)(left * 1000) + 1;
        int r = wait_input(c, ms < POLL_MS ? ms : POLL_MS);
        if (r < 0)
            return exit_for_signal(c);
        if (r > 0)
            drain(c, 0, &welcomed, &hb_ms);
    }
    if (!welcomed)
        return 1;
    c->heartbeat_s = hb_ms >= 100 && hb_ms <= 60000 ? (double)hb_ms / 1000 : 1.0;
    c->last_heard = now_s();
    c->next_heartbeat = c->last_heard + c->heartbeat_s;
    return 0;
}

/* --status: STATUS_QUERY after the handshake, then print the STATUS answer.
 * Returns the exit code. */
static int query_status(client_t *c) {
    dmri_msg_t q;
    dmri_msg_init(&q, DMRI_MSG_STATUS_QUERY);
    q.u.status_query.request = 1;
    if (send_msg(c, &q) != 0)
        return 1;
    double deadline = now_s() + c->o->timeout;
    int code = -1;
    while (code < 0) {
        double left = deadline - now_s();
        if (left <= 0) {
            fprintf(stderr, "dmri-submit: scheduler at %s did not answer the status query in "
                            "%.0f s\n", c->o->scheduler, c->o->timeout);
            return 1;
        }
        long ms = (long)(left * 1000) + 1;
        int r = wait_input(c, ms < POLL_MS ? ms : POLL_MS);
        if (r < 0)
            return exit_for_signal(c);
        if (r == 0)
            continue;
        dmri_msg_t m;
        dmri_payload_t payload;
        dmri_err_t err = {0};
        int rc = dmri_proto_recv(c->sock, 0, NULL, NULL, &m, &payload, NULL, &err);
        if (rc == DMRI_ECANCEL)
            continue;
        if (rc != 0) {
            fprintf(stderr, "dmri-submit: bad answer from the scheduler at %s: %s\n",
                    c->o->scheduler, err.msg[0] ? err.msg : dmri_strerror(rc));
            return 1;
        }
        if (m.type == DMRI_MSG_STATUS) {
            char *text = NULL;
            if (dmri_submit_status_render((const char *)m.u.status.json.data,
                                          m.u.status.json.len, c->o->json, c->o->scheduler,
                                          &text, &err) == 0) {
                fputs(text, stdout);
                fflush(stdout);
                free(text);
                code = 0;
            } else {
                fprintf(stderr, "dmri-submit: %s\n", err.msg);
                code = 1;
            }
        } else if (m.type == DMRI_MSG_ERROR) {
            /* An older scheduler does not know STATUS_QUERY (PROTOCOL.md). */
            fprintf(stderr, "dmri-submit: the scheduler at %s cannot answer --status (an older "
                            "dmri-scheduler?): %s\n", c->o->scheduler, m.u.error.error);
            code = 1;
        } else if (m.type == DMRI_MSG_BYE || m.type == DMRI_MSG_REFUSED) {
            fprintf(stderr, "dmri-submit: the scheduler at %s %s: %s\n", c->o->scheduler,
                    m.type == DMRI_MSG_BYE ? "shut down" : "refused us",
                    m.type == DMRI_MSG_BYE ? m.u.bye.reason : m.u.refused.reason);
            c->stop = 1;
            code = 1;
        }
        dmri_payload_close(&payload);
        dmri_msg_clear(&m);
    }
    if (!c->stop)
        send_bye(c, "status query done");
    return code;
}

static int submit_all(client_t *c) {
    for (int i = 0; i < c->njobs; i++) {
        dmri_submit_job_t *j = &c->jobs[i];
        if (j->state != DMRI_SUBMIT_JOB_SENT)
            continue;
        dmri_msg_t m;
        dmri_msg_init(&m, DMRI_MSG_SUBMIT);
        m.u.submit.request = j->request;
        m.u.submit.subject = j->subject;
        m.u.submit.resume = j->resume;
        m.u.submit.b0_threshold = c->o->b0_threshold;
        m.u.submit.flags = c->bench ? FLAG_NOOP
                                    : (uint64_t)(c->o->skip_denoise ? FLAG_SKIP_DENOISE : 0) |
                                          (uint64_t)(c->o->save_denoised ? FLAG_SAVE_DENOISED : 0);
        if (send_msg(c, &m) != 0)
            return -1;
        j->sent_at = now_s();
    }
    return 0;
}

/* The scheduler went silent or forgot us (crash, restart): register again
 * under the same name and submit the unfinished subjects again, each naming
 * the job it continues (a scheduler with --state-dir resumes it; without,
 * it is run anew). Gives up when nothing is heard for --timeout. Returns 0
 * when back, 1 when the jobs were failed, or an exit code for a signal. */
static int rejoin(client_t *c, const char *why) {
    c->reconnects++;
    say(c, "dmri-submit: %s; registering again with %s\n", why, c->o->scheduler);
    double give_up = c->last_heard + c->o->timeout, next_hello = 0;
    int welcomed = 0;
    uint64_t hb_ms = 0;
    while (!welcomed && !c->stop) {
        double t = now_s();
        if (t > give_up) {
            char msg[DMRI_ERR_MSG_MAX];
            snprintf(msg, sizeof msg,
                     "lost contact with the scheduler at %s (nothing heard for %.0f s)",
                     c->o->scheduler, t - c->last_heard);
            fail_all(c, msg);
            return 1;
        }
        if (t >= next_hello) {
            send_hello(c);
            next_hello = t + 1.0;
        }
        int r = wait_input(c, POLL_MS);
        if (r < 0)
            return exit_for_signal(c);
        if (r > 0)
            drain(c, 0, &welcomed, &hb_ms);
    }
    if (c->stop)
        return 1;
    c->forgotten = 0;
    c->heartbeat_s = hb_ms >= 100 && hb_ms <= 60000 ? (double)hb_ms / 1000 : 1.0;
    c->last_heard = now_s();
    c->next_heartbeat = c->last_heard + c->heartbeat_s;
    for (int i = 0; i < c->njobs; i++)
        if (dmri_submit_job_active(&c->jobs[i])) {
            dmri_submit_job_restart(&c->jobs[i], c->next_request++);
            say(c, "dmri-submit: subject %s: submitted again (was job %" PRIu64 ")\n",
                c->jobs[i].name, c->jobs[i].resume);
        }
    c->dirty = 1;
    return submit_all(c) == 0 ? 0 : 1;
}

/* The main loop: until every job has ended. Returns 0, or an exit code for
 * a signal. */
static int run_loop(client_t *c) {
    while (!c->stop && active_count(c) > 0) {
        int r = wait_input(c, POLL_MS);
        if (r < 0)
            return exit_for_signal(c);
        if (r > 0)
            drain(c, 1, NULL, NULL);
        double t = now_s();
        if (t >= c->next_heartbeat) {
            send_heartbeat(c);
            c->next_heartbeat = t + c->heartbeat_s;
        }
        /* Silent for several heartbeats (and ZeroMQ's own 5 s link
         * timeout), or told we are unknown: the scheduler restarted. */
        double silent_limit = 6 * c->heartbeat_s > 6.0 ? 6 * c->heartbeat_s : 6.0;
        if (!c->bench && (c->forgotten || t - c->last_heard > silent_limit)) {
            int rj = rejoin(c, c->forgotten ? "the scheduler no longer knows us (it restarted)"
                                            : "no word from the scheduler");
            if (rj > 1)
                return rj;
            if (rj == 1)
                break;
            continue;
        }
        if (t - c->last_heard > c->o->timeout) {
            char msg[DMRI_ERR_MSG_MAX];
            snprintf(msg, sizeof msg,
                     "lost contact with the scheduler at %s (nothing heard for %.0f s)",
                     c->o->scheduler, t - c->last_heard);
            fail_all(c, msg);
            break;
        }
        /* A SUBMIT the scheduler never answered (it sends ERROR for a
         * request it rejects, which names no request) must not hang us. */
        for (int i = 0; i < c->njobs; i++)
            if (c->jobs[i].state == DMRI_SUBMIT_JOB_SENT && t - c->jobs[i].sent_at > c->o->timeout)
                job_failed(c, &c->jobs[i], "the scheduler did not accept the subject");
        redraw(c, 0);
    }
    redraw(c, 1);
    if (c->tty)
        dmri_submit_block_clear(&c->block);
    return 0;
}

static int terminal_cols(void) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *s = getenv("COLUMNS");
    int n = s ? atoi(s) : 0;
    return n > 10 ? n : 80;
}

int main(int argc, char **argv) {
    dmri_submit_opts_t o;
    dmri_err_t err = {0};
    if (dmri_submit_opts_parse(&o, argc, argv, getenv("DMRI_SCHEDULER"), &err) != 0) {
        fprintf(stderr, "dmri-submit: %s\n", err.msg);
        if (strncmp(err.msg, "unknown option", 14) == 0 || strcmp(err.msg, "no subject given") == 0)
            usage(stderr);
        return 2;
    }
    if (o.action == DMRI_SUBMIT_HELP) {
        usage(stdout);
        return 0;
    }
    if (o.action == DMRI_SUBMIT_VERSION) {
        printf("dmri-submit %s (protocol %d)\n", dmri_version(), DMRI_PROTO_VERSION);
        return 0;
    }

    /* Signals go to this thread only: ZeroMQ's I/O threads, created with
     * the context, inherit a mask that blocks them. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    client_t c;
    memset(&c, 0, sizeof c);
    c.o = &o;
    c.bench = o.action == DMRI_SUBMIT_BENCH;
    c.tty = !o.quiet && isatty(STDOUT_FILENO);
    c.block.out = stdout;
    c.block.cols = c.tty ? terminal_cols() : 80;
    char bench_subject[32];
    if (c.bench) {
        snprintf(bench_subject, sizeof bench_subject, "%ld", o.bench_tasks);
        c.njobs = 1;
        c.jobs = dmri_calloc(1, sizeof *c.jobs);
        dmri_submit_job_init(&c.jobs[0], bench_subject, 0, 0);
        snprintf(c.jobs[0].subject, sizeof c.jobs[0].subject, "%s", bench_subject);
        snprintf(c.jobs[0].name, sizeof c.jobs[0].name, "noop");
    } else {
        c.njobs = o.nsubjects;
        c.jobs = dmri_calloc((size_t)o.nsubjects, sizeof *c.jobs);
        for (int i = 0; i < o.nsubjects; i++) {
            dmri_submit_job_init(&c.jobs[i], o.subjects[i], (uint64_t)i, o.save_denoised);
            c.jobs[i].preview = o.preview;
        }
        c.next_request = (uint64_t)c.njobs + 1;
    }

    int code = connect_scheduler(&c) != 0 ? 1 : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (code == 0)
        code = handshake(&c);
    if (code == 0 && o.action == DMRI_SUBMIT_STATUS) {
        code = query_status(&c);
    } else if (code == 0) {
        if (c.bench)
            say(&c, "dmri-submit: scheduler %s: benchmark of %ld no-op tasks\n", o.scheduler,
                o.bench_tasks);
        else
            say(&c, "dmri-submit: scheduler %s: %d subject%s, outputs in %s/\n", o.scheduler,
                c.njobs, c.njobs == 1 ? "" : "s", o.out_root);
        if (submit_all(&c) != 0)
            fail_all(&c, "could not send the request to the scheduler");
        code = run_loop(&c);
        if (code == 0) {
            int ok = 0;
            for (int i = 0; i < c.njobs; i++)
                ok += c.jobs[i].state == DMRI_SUBMIT_JOB_DONE;
            if (c.njobs > 1)
                say(&c, "dmri-submit: %d of %d subjects succeeded\n", ok, c.njobs);
            code = ok == c.njobs ? 0 : 1;
            if (o.report && !c.bench && write_report(&c) != 0)
                code = 1;
            if (!c.stop)
                send_bye(&c, code == 0 ? "done" : "done, with failures");
        }
    }
    for (int i = 0; i < c.njobs; i++)
        dmri_submit_job_close(&c.jobs[i]);
    dmri_free(c.jobs);
    dmri_auth_monitor_destroy(&c.mon);
    if (c.sock)
        zmq_close(c.sock);
    if (c.zctx)
        zmq_ctx_term(c.zctx);
    dmri_auth_destroy(&c.auth);
    return code;
}
