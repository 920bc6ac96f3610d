/* sched_state: the scheduler's state machine (see sched.h). */
#include "sched_state.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunks.h"
#include "dmri_alloc.h"
#include "graph.h"
#include "peerguard.h"
#include "status_json.h"
#include "strmap.h"
#include "transport.h"

#define LOAD_TASK_ID 1000000000u
#define PRODUCER_LOAD (-2)
#define MAX_WANTED 1024
#define MAX_NOOP 10000000ull
#define JOB_EVENTS_MAX 100000   /* task events kept per job for its report */

enum { T_WAITING, T_RUNNING, T_DONE };
enum { J_LOADING, J_RUNNING };

typedef struct {
    int state;
    int attempts;
    int worker;        /* slot while running, else -1 */
    double started;
    int nin;
    int *in;           /* key indices */
    int out;           /* key index, -1 for SAVE */
} task_t;

typedef struct {
    char *name;
    uint64_t size;
    int *holders;      /* worker slots */
    int nholders, capholders;
    int producer;      /* task index or PRODUCER_LOAD */
    int consumers_left;
    int deliver, delivered, relaying;
} keyrec_t;

typedef struct {
    uint64_t id;
    int client;        /* client slot */
    char subject[DMRI_PROTO_MAX_STR + 1];
    double b0_threshold;
    uint64_t flags;
    int state;
    task_t load;
    dmri_info_t info;
    int have_info;
    uint8_t *info_blob;
    size_t info_len;
    dmri_graph_t graph;
    task_t *tasks;
    int ntasks, done_tasks;
    keyrec_t *keys;
    int nkeys, capkeys;
    dmri_strmap_t keymap;
    double t_submit, last_progress;
    double compute[DMRI_TASK_NKINDS + 1]; /* last slot: LOAD */
    char workers_used[1024];
    int journaled;     /* recorded in the journal: its end must be recorded too */
    /* no-op benchmark */
    int noop;
    uint64_t noop_total, noop_next, noop_done;
    uint64_t *noop_requeue;
    size_t noop_nrequeue, noop_caprequeue;
    double *noop_sent;     /* per task: time assigned */
    double *noop_rtt;      /* samples */
    size_t noop_nrtt;
    /* finished tasks, for the client's performance report (JOB_DONE.events) */
    dmri_sched_event_t *ev;
    size_t nev, capev;
} job_t;

typedef struct {
    uint64_t job, task;
} running_t;

typedef struct {
    int alive;
    uint8_t ident[DMRI_IDENT_MAX];
    size_t ident_len;
    uint64_t id;
    char name[128];
    char addr[DMRI_PROTO_MAX_STR + 1];
    int nthreads, wanted;
    double last_heard;
    uint64_t memory, memory_limit;
    uint64_t tasks_done, bytes_fetched;
    running_t *run;
    int nrun, caprun;
} worker_t;

typedef struct {
    int alive;
    uint8_t ident[DMRI_IDENT_MAX];
    size_t ident_len;
    uint64_t id;
    char name[128];
    double last_heard;
} client_t;

typedef struct {
    uint64_t request;
    uint64_t job;
    int key;
    int worker;
    size_t size;
} relay_t;

struct dmri_sched {
    dmri_sched_opts_t o;
    dmri_sched_io_t io;
    void *ctx;
    worker_t *workers;
    int nworkers;
    client_t *clients;
    int nclients;
    dmri_strmap_t peers;   /* identity hex -> slot*2 + (1 for clients) */
    job_t **jobs;
    int njobs;
    uint64_t next_peer_id, next_job_id, next_request;
    relay_t *relays;
    int nrelays, caprelays;
    dmri_sched_stats_t stats;
    dmri_journal_t *journal;  /* NULL without --state-dir */
    double orphans_until;     /* unresumed journal jobs are dropped after this */
    dmri_peerguard_t *guard;   /* malformed-message strikes and bans */
    double last_prune;
    /* the dashboard's counters and task stream */
    double t0;
    uint64_t step_completed[DMRI_SCHED_NSTEPS];
    uint64_t step_hist[DMRI_SCHED_NSTEPS][DMRI_SCHED_NBUCKETS];
    double step_seconds[DMRI_SCHED_NSTEPS];
    dmri_sched_event_t *ring;   /* DMRI_SCHED_EVENT_RING */
    size_t ring_next, ring_n;
};

const double dmri_sched_buckets[DMRI_SCHED_NBUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                        1,     5,     10,   30,   60,  300};

const char *dmri_sched_step_name(int step) {
    if (step >= 0 && step < DMRI_TASK_NKINDS)
        return dmri_task_kind_name((dmri_task_kind_t)step);
    if (step == DMRI_SCHED_STEP_LOAD)
        return "load";
    if (step == DMRI_SCHED_STEP_NOOP)
        return "noop";
    return "unknown";
}

/* ---- small helpers ---- */

static void slog(dmri_sched_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slog(dmri_sched_t *s, const char *fmt, ...) {
    if (!s->io.log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->io.log(s->ctx, line);
}

static double now(dmri_sched_t *s) { return s->io.now(s->ctx); }

static void ident_hex(const uint8_t *id, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[2 * n] = '\0';
}

static int send_to(dmri_sched_t *s, const uint8_t *id, size_t n, const dmri_msg_t *m) {
    return s->io.send(s->ctx, id, n, m, NULL, 0);
}

static void send_error(dmri_sched_t *s, const uint8_t *id, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void send_error(dmri_sched_t *s, const uint8_t *id, size_t n, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_ERROR);
    m.u.error.error = text;
    send_to(s, id, n, &m);
}

static job_t *find_job(dmri_sched_t *s, uint64_t id) {
    for (int i = 0; i < s->njobs; i++)
        if (s->jobs[i]->id == id)
            return s->jobs[i];
    return NULL;
}

static int key_needed(const keyrec_t *k) {
    return k->consumers_left > 0 || (k->deliver && !k->delivered);
}

static int holds(const keyrec_t *k, int w) {
    for (int i = 0; i < k->nholders; i++)
        if (k->holders[i] == w)
            return 1;
    return 0;
}

static void add_holder(keyrec_t *k, int w) {
    if (holds(k, w))
        return;
    if (k->nholders == k->capholders) {
        k->capholders = k->capholders ? 2 * k->capholders : 4;
        k->holders = dmri_realloc(k->holders, (size_t)k->capholders * sizeof(int));
    }
    k->holders[k->nholders++] = w;
}

static int remove_holder(keyrec_t *k, int w) {
    for (int i = 0; i < k->nholders; i++)
        if (k->holders[i] == w) {
            k->holders[i] = k->holders[--k->nholders];
            return 1;
        }
    return 0;
}

static void running_add(worker_t *w, uint64_t job, uint64_t task) {
    if (w->nrun == w->caprun) {
        w->caprun = w->caprun ? 2 * w->caprun : 8;
        w->run = dmri_realloc(w->run, (size_t)w->caprun * sizeof(running_t));
    }
    w->run[w->nrun].job = job;
    w->run[w->nrun].task = task;
    w->nrun++;
}

static int running_remove(worker_t *w, uint64_t job, uint64_t task) {
    for (int i = 0; i < w->nrun; i++)
        if (w->run[i].job == job && w->run[i].task == task) {
            w->run[i] = w->run[--w->nrun];
            return 1;
        }
    return 0;
}

static void send_release(dmri_sched_t *s, int wslot, const char *key) {
    worker_t *w = &s->workers[wslot];
    if (!w->alive)
        return;
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_RELEASE);
    char *keys[1] = {(char *)key};
    m.u.release.keys.n = 1;
    m.u.release.keys.v = keys;
    send_to(s, w->ident, w->ident_len, &m);
}

/* ---- jobs: creation and teardown ---- */

static void job_free(job_t *j) {
    for (int i = 0; i < j->ntasks; i++)
        dmri_free(j->tasks[i].in);
    dmri_free(j->tasks);
    for (int i = 0; i < j->nkeys; i++) {
        dmri_free(j->keys[i].name);
        dmri_free(j->keys[i].holders);
    }
    dmri_free(j->keys);
    dmri_strmap_close(&j->keymap);
    if (j->have_info)
        dmri_info_close(&j->info);
    dmri_free(j->info_blob);
    dmri_graph_close(&j->graph);
    dmri_free(j->noop_requeue);
    dmri_free(j->noop_sent);
    dmri_free(j->noop_rtt);
    dmri_free(j->ev);
    dmri_free(j);
}

/* Forget a job: release every chunk it has on workers. Tasks still running
 * report later; their outputs are released then (unknown job). */
/* The job's end, made durable before the client hears of it. */
static void journal_end(dmri_sched_t *s, job_t *j, char what) {
    if (!s->journal || !j->journaled)
        return;
    dmri_err_t err = {0};
    if (dmri_journal_ended(s->journal, what, j->id, &err) != 0)
        slog(s, "WARNING: %s", err.msg);
    j->journaled = 0;
}

static void job_remove(dmri_sched_t *s, job_t *j) {
    journal_end(s, j, 'C');
    for (int k = 0; k < j->nkeys; k++)
        for (int h = 0; h < j->keys[k].nholders; h++)
            send_release(s, j->keys[k].holders[h], j->keys[k].name);
    for (int i = 0; i < s->nrelays;)
        if (s->relays[i].job == j->id)
            s->relays[i] = s->relays[--s->nrelays];
        else
            i++;
    for (int i = 0; i < s->njobs; i++)
        if (s->jobs[i] == j) {
            memmove(&s->jobs[i], &s->jobs[i + 1], (size_t)(s->njobs - i - 1) * sizeof(job_t *));
            s->njobs--;
            break;
        }
    job_free(j);
}

static void job_fail(dmri_sched_t *s, job_t *j, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_fail(dmri_sched_t *s, job_t *j, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    slog(s, "job %llu (%s) FAILED: %s", (unsigned long long)j->id, j->subject, text);
    journal_end(s, j, 'F');
    client_t *c = &s->clients[j->client];
    if (c->alive) {
        dmri_msg_t m;
        dmri_msg_init(&m, DMRI_MSG_JOB_FAILED);
        m.u.job_failed.job = j->id;
        m.u.job_failed.error = text;
        send_to(s, c->ident, c->ident_len, &m);
    }
    s->stats.tasks_failed++;
    if (!j->noop)
        s->stats.subjects_failed++;
    s->stats.jobs_failed++;
    job_remove(s, j);
}

static int add_key(job_t *j, const char *name, int producer) {
    int idx;
    if (dmri_strmap_get(&j->keymap, name, &idx))
        return idx;
    if (j->nkeys == j->capkeys) {
        j->capkeys = j->capkeys ? 2 * j->capkeys : 64;
        j->keys = dmri_realloc(j->keys, (size_t)j->capkeys * sizeof(keyrec_t));
    }
    keyrec_t *k = &j->keys[j->nkeys];
    memset(k, 0, sizeof *k);
    k->name = dmri_strdup(name);
    k->producer = producer;
    dmri_strmap_put(&j->keymap, name, j->nkeys);
    return j->nkeys++;
}

/* The subject's graph, its chunks, who consumes what and what the client
 * gets: built once the LOAD worker has told us the image's size. */
static int job_build_graph(dmri_sched_t *s, job_t *j, dmri_err_t *err) {
    (void)s;
    dmri_graph_params_t p;
    dmri_info_graph_params(&j->info, (j->flags & 2) != 0, &p);
    int rc = dmri_graph_build(&j->graph, &p, err);
    if (rc)
        return rc;
    j->ntasks = j->graph.ntasks;
    j->tasks = dmri_calloc((size_t)j->ntasks, sizeof(task_t));
    char name[256];
    dmri_keyref_t info_ref = {DMRI_KEY_INFO, -1, -1};
    dmri_key_format(name, sizeof name, j->id, &info_ref);
    add_key(j, name, PRODUCER_LOAD);
    /* Outputs first, so every key knows its producer. */
    for (int i = 0; i < j->ntasks; i++) {
        task_t *t = &j->tasks[i];
        t->worker = -1;
        t->out = -1;
        dmri_keyref_t out;
        if (dmri_task_output(&j->graph, &j->graph.tasks[i], &out) == 1) {
            dmri_key_format(name, sizeof name, j->id, &out);
            t->out = add_key(j, name, i);
            j->keys[t->out].producer = i;
        }
    }
    dmri_keyref_t refs[4096];
    for (int i = 0; i < j->ntasks; i++) {
        task_t *t = &j->tasks[i];
        const dmri_task_t *gt = &j->graph.tasks[i];
        int n = dmri_task_inputs(&j->info, &j->graph, gt, refs, 4096);
        if (n < 0)
            return dmri_err_set(err, DMRI_EINVAL, "task %d: cannot list inputs", i);
        t->nin = n;
        t->in = dmri_malloc(((size_t)n + 1) * sizeof(int));
        for (int k = 0; k < n; k++) {
            dmri_key_format(name, sizeof name, j->id, &refs[k]);
            /* Keys nobody produces in the graph are raw chunks from LOAD. */
            t->in[k] = add_key(j, name, PRODUCER_LOAD);
            if (gt->kind == DMRI_TASK_SAVE)
                j->keys[t->in[k]].deliver = 1;
            else
                j->keys[t->in[k]].consumers_left++;
        }
    }
    /* The client also gets every sigma (for summary.json). */
    for (int i = 0; i < j->ntasks; i++)
        if (j->graph.tasks[i].kind == DMRI_TASK_SIGMA && j->tasks[i].out >= 0)
            j->keys[j->tasks[i].out].deliver = 1;
    return 0;
}

/* ---- readiness, recomputation, release, relay ---- */

static void require_key(dmri_sched_t *s, job_t *j, int k);

static void task_revert(dmri_sched_t *s, job_t *j, int ti) {
    task_t *t = &j->tasks[ti];
    if (t->state != T_DONE)
        return;
    t->state = T_WAITING;
    j->done_tasks--;
    s->stats.tasks_requeued++;
    for (int i = 0; i < t->nin; i++) {
        j->keys[t->in[i]].consumers_left++;
        require_key(s, j, t->in[i]);
    }
}

/* A chunk is wanted but nobody holds it: make sure it will be produced again. */
static void require_key(dmri_sched_t *s, job_t *j, int k) {
    keyrec_t *key = &j->keys[k];
    if (key->nholders > 0 || !key_needed(key))
        return;
    if (key->producer == PRODUCER_LOAD) {
        if (j->load.state == T_DONE) {
            slog(s, "job %llu: %s lost, reading the subject again", (unsigned long long)j->id,
                 key->name);
            j->load.state = T_WAITING;
        }
        return;
    }
    task_revert(s, j, key->producer);
}

static void maybe_release(dmri_sched_t *s, job_t *j, int k) {
    keyrec_t *key = &j->keys[k];
    if (k == 0 || key->nholders == 0 || key_needed(key))
        return;
    for (int h = 0; h < key->nholders; h++)
        send_release(s, key->holders[h], key->name);
    key->nholders = 0;
}

static int task_ready(const job_t *j, const task_t *t) {
    if (t->state != T_WAITING)
        return 0;
    for (int i = 0; i < t->nin; i++)
        if (j->keys[t->in[i]].nholders == 0)
            return 0;
    return 1;
}

static void relay(dmri_sched_t *s, job_t *j, int k) {
    keyrec_t *key = &j->keys[k];
    if (!key->deliver || key->delivered || key->relaying || key->nholders == 0)
        return;
    int w = key->holders[0];
    if (s->nrelays == s->caprelays) {
        s->caprelays = s->caprelays ? 2 * s->caprelays : 64;
        s->relays = dmri_realloc(s->relays, (size_t)s->caprelays * sizeof(relay_t));
    }
    relay_t *r = &s->relays[s->nrelays++];
    r->request = ++s->next_request;
    r->job = j->id;
    r->key = k;
    r->worker = w;
    r->size = 0;
    key->relaying = 1;
    s->io.fetch(s->ctx, s->workers[w].addr, key->name, r->request);
}

static void progress(dmri_sched_t *s, job_t *j, int force) {
    double t = now(s);
    if (!force && t - j->last_progress < 0.2)
        return;
    j->last_progress = t;
    client_t *c = &s->clients[j->client];
    if (!c->alive)
        return;
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_PROGRESS);
    m.u.progress.job = j->id;
    const char *step = "load";
    if (j->noop) {
        m.u.progress.done = j->noop_done;
        m.u.progress.total = j->noop_total;
        step = "noop";
    } else {
        m.u.progress.done = (uint64_t)j->done_tasks + (j->load.state == T_DONE);
        m.u.progress.total = (uint64_t)j->ntasks + 1;
        if (j->state == J_RUNNING) {
            step = "delivering";
            for (int i = 0; i < j->ntasks; i++)
                if (j->tasks[i].state != T_DONE) {
                    step = dmri_task_kind_name(j->graph.tasks[i].kind);
                    break;
                }
        }
    }
    m.u.progress.step = (char *)step;
    send_to(s, c->ident, c->ident_len, &m);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void job_finish(dmri_sched_t *s, job_t *j) {
    char summary[4096];
    double wall = now(s) - j->t_submit;
    if (j->noop) {
        double med = 0, p90 = 0;
        if (j->noop_nrtt) {
            qsort(j->noop_rtt, j->noop_nrtt, sizeof(double), cmp_double);
            med = j->noop_rtt[j->noop_nrtt / 2];
            p90 = j->noop_rtt[(size_t)(0.9 * (double)(j->noop_nrtt - 1))];
        }
        snprintf(summary, sizeof summary,
                 "{\"tasks\": %llu, \"seconds\": %.6f, \"tasks_per_second\": %.1f, "
                 "\"median_round_trip_ms\": %.4f, \"p90_round_trip_ms\": %.4f, \"workers\": %d}",
                 (unsigned long long)j->noop_total, wall, wall > 0 ? j->noop_total / wall : 0.0,
                 1e3 * med, 1e3 * p90, s->stats.workers);
    } else {
        int n = snprintf(summary, sizeof summary,
                         "{\"wall_seconds\": %.3f, \"tasks\": %d, \"workers\": [%s], "
                         "\"compute_seconds\": {\"load\": %.3f",
                         wall, j->ntasks + 1, j->workers_used, j->compute[DMRI_TASK_NKINDS]);
        for (int k = 0; k < DMRI_TASK_NKINDS && n > 0 && (size_t)n < sizeof summary; k++)
            if (k != DMRI_TASK_SAVE)
                n += snprintf(summary + n, sizeof summary - (size_t)n, ", \"%s\": %.3f",
                              dmri_task_kind_name((dmri_task_kind_t)k), j->compute[k]);
        if (n > 0 && (size_t)n < sizeof summary)
            snprintf(summary + n, sizeof summary - (size_t)n, "}}");
    }
    slog(s, "job %llu (%s) done in %.2f s", (unsigned long long)j->id, j->subject, wall);
    journal_end(s, j, 'D');
    progress(s, j, 1);
    client_t *c = &s->clients[j->client];
    if (c->alive) {
        dmri_msg_t m;
        dmri_msg_init(&m, DMRI_MSG_JOB_DONE);
        m.u.job_done.job = j->id;
        m.u.job_done.summary = summary;
        char *events = j->noop ? NULL : dmri_status_events_json(j->ev, j->nev, j->t_submit - s->t0,
                                                                 8u << 20);
        if (events) {
            m.u.job_done.events.data = (uint8_t *)events;
            m.u.job_done.events.len = strlen(events);
        }
        send_to(s, c->ident, c->ident_len, &m);
        dmri_free(events);
    }
    if (!j->noop)
        s->stats.subjects_done++;
    s->stats.jobs_done++;
    job_remove(s, j);
}

/* SAVE tasks are done when the client has every chunk they list; the job is
 * done when every task is. Returns 1 if the job was finished (and freed). */
static int check_job_done(dmri_sched_t *s, job_t *j) {
    if (j->noop) {
        if (j->noop_done >= j->noop_total) {
            job_finish(s, j);
            return 1;
        }
        return 0;
    }
    if (j->state != J_RUNNING)
        return 0;
    for (int i = 0; i < j->ntasks; i++) {
        task_t *t = &j->tasks[i];
        if (t->state == T_DONE || j->graph.tasks[i].kind != DMRI_TASK_SAVE)
            continue;
        int all = 1;
        for (int k = 0; k < t->nin && all; k++)
            all = j->keys[t->in[k]].delivered;
        if (all) {
            t->state = T_DONE;
            j->done_tasks++;
        }
    }
    for (int k = 0; k < j->nkeys; k++)
        if (j->keys[k].deliver && !j->keys[k].delivered)
            return 0;
    if (j->done_tasks < j->ntasks)
        return 0;
    job_finish(s, j);
    return 1;
}

/* ---- placement ---- */

static void note_worker_used(job_t *j, const worker_t *w) {
    char quoted[160];
    snprintf(quoted, sizeof quoted, "\"%s\"", w->name);
    if (strstr(j->workers_used, quoted))
        return;
    size_t n = strlen(j->workers_used);
    if (n + strlen(quoted) + 3 < sizeof j->workers_used)
        snprintf(j->workers_used + n, sizeof j->workers_used - n, "%s%s", n ? ", " : "", quoted);
}

static void assign_load(dmri_sched_t *s, job_t *j, int wslot) {
    worker_t *w = &s->workers[wslot];
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_ASSIGN);
    dmri_msg_task_assign_t *a = &m.u.task_assign;
    a->job = j->id;
    a->task = LOAD_TASK_ID;
    a->kind = DMRI_TASK_KIND_LOAD;
    a->subject = j->subject;
    a->b0_threshold = j->b0_threshold;
    a->flags = j->flags;
    a->slab_slices = (uint64_t)s->o.slab_slices;
    a->vols_per_task = (uint64_t)s->o.vols_per_task;
    a->out_key = "";
    j->load.state = T_RUNNING;
    j->load.worker = wslot;
    j->load.started = now(s);
    running_add(w, j->id, LOAD_TASK_ID);
    w->wanted--;
    note_worker_used(j, w);
    send_to(s, w->ident, w->ident_len, &m);
}

static void assign_noop(dmri_sched_t *s, job_t *j, int wslot) {
    worker_t *w = &s->workers[wslot];
    uint64_t task = j->noop_nrequeue ? j->noop_requeue[--j->noop_nrequeue] : j->noop_next++;
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_ASSIGN);
    m.u.task_assign.job = j->id;
    m.u.task_assign.task = task;
    m.u.task_assign.kind = DMRI_TASK_KIND_NOOP;
    m.u.task_assign.out_key = "";
    j->noop_sent[task] = now(s);
    running_add(w, j->id, task);
    w->wanted--;
    send_to(s, w->ident, w->ident_len, &m);
}

static void assign_task(dmri_sched_t *s, job_t *j, int ti, int wslot) {
    worker_t *w = &s->workers[wslot];
    task_t *t = &j->tasks[ti];
    const dmri_task_t *gt = &j->graph.tasks[ti];
    char **keys = dmri_malloc(((size_t)t->nin + 1) * sizeof(char *));
    char **addrs = dmri_malloc(((size_t)t->nin + 1) * sizeof(char *));
    for (int i = 0; i < t->nin; i++) {
        keyrec_t *k = &j->keys[t->in[i]];
        keys[i] = k->name;
        addrs[i] = holds(k, wslot) ? "" : s->workers[k->holders[0]].addr;
    }
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_ASSIGN);
    dmri_msg_task_assign_t *a = &m.u.task_assign;
    a->job = j->id;
    a->task = (uint64_t)ti;
    a->kind = (uint64_t)gt->kind;
    a->subject = j->subject;
    a->b0_threshold = j->b0_threshold;
    a->flags = j->flags;
    a->v0 = gt->v0;
    a->v1 = gt->v1;
    a->z0 = gt->z0;
    a->z1 = gt->z1;
    a->slab_slices = (uint64_t)j->info.slab_slices;
    a->vols_per_task = (uint64_t)j->info.vols_per_task;
    a->in_keys.n = (size_t)t->nin;
    a->in_keys.v = keys;
    a->in_addrs.n = (size_t)t->nin;
    a->in_addrs.v = addrs;
    a->out_key = t->out >= 0 ? j->keys[t->out].name : "";
    t->state = T_RUNNING;
    t->worker = wslot;
    t->started = now(s);
    running_add(w, j->id, (uint64_t)ti);
    w->wanted--;
    note_worker_used(j, w);
    send_to(s, w->ident, w->ident_len, &m);
    dmri_free(keys);
    dmri_free(addrs);
}

/* Give worker wslot as many tasks as it asked for: older jobs first; within
 * a job the ready task with the most input bytes already on this worker
 * (then the lowest index: the graph's priority order). */
static void try_assign(dmri_sched_t *s, int wslot) {
    worker_t *w = &s->workers[wslot];
    while (w->alive && w->wanted > 0) {
        int assigned = 0;
        for (int ji = 0; ji < s->njobs && !assigned; ji++) {
            job_t *j = s->jobs[ji];
            if (j->noop) {
                if (j->noop_nrequeue || j->noop_next < j->noop_total) {
                    assign_noop(s, j, wslot);
                    assigned = 1;
                }
                continue;
            }
            if (j->load.state == T_WAITING) {
                assign_load(s, j, wslot);
                assigned = 1;
                continue;
            }
            if (j->state != J_RUNNING)
                continue;
            int best = -1;
            uint64_t best_score = 0;
            for (int i = 0; i < j->ntasks; i++) {
                task_t *t = &j->tasks[i];
                if (j->graph.tasks[i].kind == DMRI_TASK_SAVE || !task_ready(j, t))
                    continue;
                uint64_t score = 0;
                for (int k = 0; k < t->nin; k++)
                    if (holds(&j->keys[t->in[k]], wslot))
                        score += j->keys[t->in[k]].size + 1;
                if (best < 0 || score > best_score) {
                    best = i;
                    best_score = score;
                }
            }
            if (best >= 0) {
                assign_task(s, j, best, wslot);
                assigned = 1;
            }
        }
        if (!assigned)
            break;
    }
}

static void try_assign_all(dmri_sched_t *s) {
    for (int w = 0; w < s->nworkers; w++)
        if (s->workers[w].alive && s->workers[w].wanted > 0)
            try_assign(s, w);
}

/* ---- peers ---- */

static void worker_lost(dmri_sched_t *s, int wslot, const char *why) {
    worker_t *w = &s->workers[wslot];
    if (!w->alive)
        return;
    char hex[2 * DMRI_IDENT_MAX + 1];
    ident_hex(w->ident, w->ident_len, hex);
    dmri_strmap_del(&s->peers, hex);
    w->alive = 0;
    s->stats.workers--;
    s->stats.workers_lost++;
    slog(s, "worker %s (%s) lost: %s; %d running task(s) re-queued", w->name, w->addr, why,
         w->nrun);
    for (int i = 0; i < w->nrun; i++) {
        job_t *j = find_job(s, w->run[i].job);
        if (!j)
            continue;
        uint64_t task = w->run[i].task;
        if (j->noop) {
            if (j->noop_nrequeue == j->noop_caprequeue) {
                j->noop_caprequeue = j->noop_caprequeue ? 2 * j->noop_caprequeue : 64;
                j->noop_requeue =
                    dmri_realloc(j->noop_requeue, j->noop_caprequeue * sizeof(uint64_t));
            }
            j->noop_requeue[j->noop_nrequeue++] = task;
        } else if (task == LOAD_TASK_ID) {
            if (j->load.state == T_RUNNING)
                j->load.state = T_WAITING;
        } else if (task < (uint64_t)j->ntasks && j->tasks[task].state == T_RUNNING) {
            j->tasks[task].state = T_WAITING;
            j->tasks[task].worker = -1;
            s->stats.tasks_requeued++;
        }
    }
    w->nrun = 0;
    w->wanted = 0;
    /* Pending relays from this worker will never be answered. */
    for (int i = 0; i < s->nrelays;) {
        relay_t *r = &s->relays[i];
        if (r->worker == wslot) {
            job_t *j = find_job(s, r->job);
            if (j)
                j->keys[r->key].relaying = 0;
            s->relays[i] = s->relays[--s->nrelays];
        } else {
            i++;
        }
    }
    for (int ji = 0; ji < s->njobs; ji++) {
        job_t *j = s->jobs[ji];
        for (int k = 0; k < j->nkeys; k++)
            remove_holder(&j->keys[k], wslot);
        for (int k = 0; k < j->nkeys; k++) {
            require_key(s, j, k);
            relay(s, j, k);
        }
    }
    try_assign_all(s);
}

static void client_lost(dmri_sched_t *s, int cslot, const char *why) {
    client_t *c = &s->clients[cslot];
    if (!c->alive)
        return;
    char hex[2 * DMRI_IDENT_MAX + 1];
    ident_hex(c->ident, c->ident_len, hex);
    dmri_strmap_del(&s->peers, hex);
    c->alive = 0;
    s->stats.clients--;
    int cancelled = 0;
    for (int ji = 0; ji < s->njobs;) {
        if (s->jobs[ji]->client == cslot) {
            job_remove(s, s->jobs[ji]);
            cancelled++;
        } else {
            ji++;
        }
    }
    slog(s, "client %s gone (%s); %d job(s) cancelled", c->name, why, cancelled);
}

static int slot_alloc_worker(dmri_sched_t *s) {
    for (int i = 0; i < s->nworkers; i++)
        if (!s->workers[i].alive && s->workers[i].nrun == 0) {
            /* Reuse only slots no key refers to any more. */
            int referenced = 0;
            for (int ji = 0; ji < s->njobs && !referenced; ji++)
                for (int k = 0; k < s->jobs[ji]->nkeys && !referenced; k++)
                    referenced = holds(&s->jobs[ji]->keys[k], i);
            if (!referenced)
                return i;
        }
    s->workers = dmri_realloc(s->workers, (size_t)(s->nworkers + 1) * sizeof(worker_t));
    memset(&s->workers[s->nworkers], 0, sizeof(worker_t));
    return s->nworkers++;
}

static int slot_alloc_client(dmri_sched_t *s) {
    for (int i = 0; i < s->nclients; i++)
        if (!s->clients[i].alive) {
            int used = 0;
            for (int ji = 0; ji < s->njobs; ji++)
                used |= s->jobs[ji]->client == i;
            if (!used)
                return i;
        }
    s->clients = dmri_realloc(s->clients, (size_t)(s->nclients + 1) * sizeof(client_t));
    memset(&s->clients[s->nclients], 0, sizeof(client_t));
    return s->nclients++;
}

static void on_hello(dmri_sched_t *s, const uint8_t *peer, size_t n, const char *hex,
                     const dmri_msg_hello_t *h) {
    int existing;
    if (dmri_strmap_get(&s->peers, hex, &existing)) {
        /* A reconnect from the same identity: forget the old registration. */
        if (existing & 1)
            client_lost(s, existing >> 1, "reconnected");
        else
            worker_lost(s, existing >> 1, "reconnected");
    }
    dmri_msg_t m;
    if (strcmp(h->role, "worker") == 0) {
        if (!h->peer_addr[0] || strlen(h->peer_addr) > 200) {
            dmri_msg_init(&m, DMRI_MSG_REFUSED);
            m.u.refused.reason = "a worker must announce its peer address (peer_addr)";
            send_to(s, peer, n, &m);
            return;
        }
        int slot = slot_alloc_worker(s);
        worker_t *w = &s->workers[slot];
        dmri_free(w->run);
        memset(w, 0, sizeof *w);
        w->alive = 1;
        memcpy(w->ident, peer, n);
        w->ident_len = n;
        w->id = ++s->next_peer_id;
        snprintf(w->name, sizeof w->name, "%s", h->name[0] ? h->name : "worker");
        snprintf(w->addr, sizeof w->addr, "%s", h->peer_addr);
        w->nthreads = h->nthreads > 0 && h->nthreads < 4096 ? (int)h->nthreads : 1;
        w->memory_limit = h->memory_limit;
        w->last_heard = now(s);
        dmri_strmap_put(&s->peers, hex, slot * 2);
        s->stats.workers++;
        slog(s, "worker %s joined: %d thread(s), peer socket %s", w->name, w->nthreads,
             w->addr);
        dmri_msg_init(&m, DMRI_MSG_WELCOME);
        m.u.welcome.peer_id = w->id;
        m.u.welcome.heartbeat_ms = s->o.heartbeat_ms;
        send_to(s, peer, n, &m);
        /* New capacity: jobs whose chunks were all lost may need re-reading. */
        for (int ji = 0; ji < s->njobs; ji++)
            for (int k = 0; k < s->jobs[ji]->nkeys; k++)
                require_key(s, s->jobs[ji], k);
    } else if (strcmp(h->role, "client") == 0) {
        int slot = slot_alloc_client(s);
        client_t *c = &s->clients[slot];
        memset(c, 0, sizeof *c);
        c->alive = 1;
        memcpy(c->ident, peer, n);
        c->ident_len = n;
        c->id = ++s->next_peer_id;
        snprintf(c->name, sizeof c->name, "%s", h->name[0] ? h->name : "client");
        c->last_heard = now(s);
        dmri_strmap_put(&s->peers, hex, slot * 2 + 1);
        s->stats.clients++;
        slog(s, "client %s connected", c->name);
        dmri_msg_init(&m, DMRI_MSG_WELCOME);
        m.u.welcome.peer_id = c->id;
        m.u.welcome.heartbeat_ms = s->o.heartbeat_ms;
        send_to(s, peer, n, &m);
    } else {
        dmri_msg_init(&m, DMRI_MSG_REFUSED);
        m.u.refused.reason = "unknown role (expected \"worker\" or \"client\")";
        send_to(s, peer, n, &m);
    }
}

/* A client that lost the scheduler submits its unfinished subjects again
 * with `resume` = the old job id: say what happened to it. */
static void note_resume(dmri_sched_t *s, const job_t *j, uint64_t old) {
    dmri_journal_t *jn = s->journal;
    for (int i = 0; jn && i < jn->nunfinished; i++)
        if (jn->unfinished[i].job == old && strcmp(jn->unfinished[i].subject, j->subject) == 0) {
            slog(s, "job %llu resumes job %llu (%s), unfinished when the scheduler stopped",
                 (unsigned long long)j->id, (unsigned long long)old, j->subject);
            jn->unfinished[i] = jn->unfinished[--jn->nunfinished];
            return;
        }
    slog(s, "job %llu continues job %llu (%s), which this scheduler does not know: run anew",
         (unsigned long long)j->id, (unsigned long long)old, j->subject);
}

static void on_submit(dmri_sched_t *s, int cslot, const dmri_msg_submit_t *sub) {
    client_t *c = &s->clients[cslot];
    int pending = 0;
    for (int ji = 0; ji < s->njobs; ji++)
        pending += s->jobs[ji]->client == cslot;
    if (s->o.max_pending_per_client > 0 && pending >= s->o.max_pending_per_client) {
        /* Accepted then failed at once, so the client fails this subject
         * with the reason and its other subjects go on (an ERROR would not
         * say which request it answers). Nothing of it is kept. */
        char why[300];
        uint64_t id = ++s->next_job_id;
        s->stats.submits_refused++;
        snprintf(why, sizeof why,
                 "refused: this client already has %d subjects pending (scheduler limit "
                 "--max-pending-per-client %d); submit it again when some have finished",
                 pending, s->o.max_pending_per_client);
        dmri_msg_t m;
        dmri_msg_init(&m, DMRI_MSG_ACCEPTED);
        m.u.accepted.request = sub->request;
        m.u.accepted.job = id;
        m.u.accepted.subject = sub->subject;
        send_to(s, c->ident, c->ident_len, &m);
        dmri_msg_init(&m, DMRI_MSG_JOB_FAILED);
        m.u.job_failed.job = id;
        m.u.job_failed.error = why;
        send_to(s, c->ident, c->ident_len, &m);
        if (s->stats.submits_refused == 1 || s->stats.submits_refused % 1000 == 0)
            slog(s, "client %s: SUBMIT refused, %d subjects pending (--max-pending-per-client; "
                 "%llu refused so far)",
                 c->name, pending, (unsigned long long)s->stats.submits_refused);
        return;
    }
    job_t *j = dmri_calloc(1, sizeof(job_t));
    j->id = ++s->next_job_id;
    j->client = cslot;
    snprintf(j->subject, sizeof j->subject, "%s", sub->subject);
    j->b0_threshold = sub->b0_threshold > 0 ? sub->b0_threshold : 10.0;
    j->flags = sub->flags;
    j->t_submit = now(s);
    j->load.worker = -1;
    dmri_strmap_init(&j->keymap);
    if (!dmri_journal_text_ok(sub->subject)) {
        send_error(s, c->ident, c->ident_len,
                   "SUBMIT: the subject must be a non-empty name or path without control "
                   "characters");
        job_free(j);
        return;
    }
    if (sub->flags & 4) {
        char *end;
        unsigned long long n = strtoull(sub->subject, &end, 10);
        if (!sub->subject[0] || *end || n == 0 || n > MAX_NOOP) {
            send_error(s, c->ident, c->ident_len,
                       "SUBMIT: no-op benchmark needs a task count 1..%llu, got '%.40s'",
                       MAX_NOOP, sub->subject);
            job_free(j);
            return;
        }
        j->noop = 1;
        j->noop_total = n;
        j->noop_sent = dmri_calloc(n, sizeof(double));
        j->noop_rtt = dmri_calloc(n, sizeof(double));
        j->load.state = T_DONE;
        j->state = J_RUNNING;
    } else {
        j->load.state = T_WAITING;
        j->state = J_LOADING;
    }
    if (sub->resume)
        note_resume(s, j, sub->resume);
    if (s->journal && !j->noop) {
        /* Durable before ACCEPTED: an acknowledged subject survives a crash. */
        dmri_journal_job_t r = {.job = j->id, .flags = j->flags, .b0_threshold = j->b0_threshold,
                                .resumes = sub->resume};
        snprintf(r.client, sizeof r.client, "%s", c->name);
        snprintf(r.subject, sizeof r.subject, "%s", j->subject);
        dmri_err_t err = {0};
        if (dmri_journal_submitted(s->journal, &r, &err) != 0) {
            slog(s, "refusing %s: %s", j->subject, err.msg);
            send_error(s, c->ident, c->ident_len, "SUBMIT %.200s: the scheduler cannot record "
                       "it in its journal: %.200s", j->subject, err.msg);
            job_free(j);
            return;
        }
        j->journaled = 1;
    }
    s->jobs = dmri_realloc(s->jobs, (size_t)(s->njobs + 1) * sizeof(job_t *));
    s->jobs[s->njobs++] = j;
    slog(s, "job %llu: %s%s from %s", (unsigned long long)j->id, j->noop ? "no-op x" : "subject ",
         j->subject, c->name);
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_ACCEPTED);
    m.u.accepted.request = sub->request;
    m.u.accepted.job = j->id;
    m.u.accepted.subject = j->subject;
    send_to(s, c->ident, c->ident_len, &m);
    try_assign_all(s);
}

static void send_info_to_client(dmri_sched_t *s, job_t *j) {
    client_t *c = &s->clients[j->client];
    if (!c->alive || j->keys[0].delivered)
        return;
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_RESULT);
    m.u.result.job = j->id;
    m.u.result.key = j->keys[0].name;
    m.u.result.size = j->info_len;
    if (s->io.send(s->ctx, c->ident, c->ident_len, &m, j->info_blob, j->info_len) == 0)
        j->keys[0].delivered = 1;
}

static void on_load_done(dmri_sched_t *s, job_t *j, int wslot, const dmri_msg_task_done_t *d) {
    if (j->load.state != T_RUNNING || j->load.worker != wslot)
        return;
    j->load.state = T_DONE;
    j->compute[DMRI_TASK_NKINDS] += d->seconds;
    if (j->state == J_LOADING) {
        dmri_err_t err = {0};
        if (d->info.len == 0 ||
            dmri_info_decode(d->info.data, d->info.len, &j->info, &err) != 0) {
            job_fail(s, j, "worker %s sent an unusable subject description: %s",
                     s->workers[wslot].name, err.msg[0] ? err.msg : "missing");
            return;
        }
        j->have_info = 1;
        j->info_blob = dmri_malloc(d->info.len);
        memcpy(j->info_blob, d->info.data, d->info.len);
        j->info_len = d->info.len;
        if (job_build_graph(s, j, &err) != 0) {
            job_fail(s, j, "cannot build the task graph: %s", err.msg);
            return;
        }
        j->keys[0].deliver = 1;
        j->keys[0].size = d->info.len;
        j->state = J_RUNNING;
        slog(s, "job %llu: %s is %dx%dx%dx%d, %d tasks", (unsigned long long)j->id, j->subject,
             j->info.geom.nx, j->info.geom.ny, j->info.geom.nz, j->info.geom.nv, j->ntasks);
        send_info_to_client(s, j);
    }
    for (size_t i = 0; i < d->out_keys.n; i++) {
        int k;
        if (dmri_strmap_get(&j->keymap, d->out_keys.v[i], &k)) {
            add_holder(&j->keys[k], wslot);
            if (i < d->out_sizes.n)
                j->keys[k].size = d->out_sizes.v[i];
        }
    }
    /* Raw chunks nobody needs any more (a re-read after a loss). */
    for (int k = 1; k < j->nkeys; k++)
        if (j->keys[k].producer == PRODUCER_LOAD)
            maybe_release(s, j, k);
    progress(s, j, 1);
}

/* A peer's number of seconds, made safe to add up (NaN, negative or absurd: 0). */
static double sane_seconds(double x) { return x >= 0 && x < 1e7 ? x : 0; }

/* A task finished: counters, histogram, the task-stream ring, the job's list. */
static void record_event(dmri_sched_t *s, job_t *j, int wslot, int step,
                         const dmri_msg_task_done_t *d) {
    worker_t *w = &s->workers[wslot];
    dmri_sched_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.job = j->id;
    ev.step = step;
    ev.thread = d->thread < 4096 ? (int)d->thread : 0;
    ev.worker_id = w->id;
    snprintf(ev.worker, sizeof ev.worker, "%s", w->name);
    ev.compute_s = sane_seconds(d->seconds);
    ev.fetch_s = sane_seconds(d->fetch_seconds);
    ev.fetch_bytes = d->fetch_bytes;
    ev.end = now(s) - s->t0;
    ev.start = ev.end - ev.compute_s - ev.fetch_s;
    if (ev.start < 0)
        ev.start = 0;
    w->tasks_done++;
    w->bytes_fetched += d->fetch_bytes;
    s->stats.bytes_fetched += d->fetch_bytes;
    s->step_completed[step]++;
    s->step_seconds[step] += ev.compute_s;
    int b = 0;
    while (b < DMRI_SCHED_NBUCKETS && ev.compute_s > dmri_sched_buckets[b])
        b++;
    if (b < DMRI_SCHED_NBUCKETS)
        s->step_hist[step][b]++;
    s->ring[s->ring_next] = ev;
    s->ring_next = (s->ring_next + 1) % DMRI_SCHED_EVENT_RING;
    if (s->ring_n < DMRI_SCHED_EVENT_RING)
        s->ring_n++;
    if (j->noop || j->nev >= JOB_EVENTS_MAX)
        return;
    if (j->nev == j->capev) {
        j->capev = j->capev ? 2 * j->capev : 256;
        j->ev = dmri_realloc(j->ev, j->capev * sizeof *j->ev);
    }
    j->ev[j->nev++] = ev;
}

static void on_task_done(dmri_sched_t *s, int wslot, const dmri_msg_task_done_t *d) {
    worker_t *w = &s->workers[wslot];
    int was_running = running_remove(w, d->job, d->task);
    job_t *j = find_job(s, d->job);
    if (!j || !was_running) {
        /* A cancelled job, or a task given to someone else meanwhile: drop. */
        for (size_t i = 0; i < d->out_keys.n; i++)
            send_release(s, wslot, d->out_keys.v[i]);
        return;
    }
    s->stats.tasks_done++;
    int step = j->noop                     ? DMRI_SCHED_STEP_NOOP
               : d->task == LOAD_TASK_ID   ? DMRI_SCHED_STEP_LOAD
               : d->task < (uint64_t)j->ntasks ? (int)j->graph.tasks[d->task].kind
                                               : -1;
    if (step >= 0)
        record_event(s, j, wslot, step, d);
    if (j->noop) {
        if (d->task < j->noop_total) {
            j->noop_rtt[j->noop_nrtt++ % j->noop_total] = now(s) - j->noop_sent[d->task];
            j->noop_done++;
        }
        progress(s, j, 0);
        check_job_done(s, j);
        return;
    }
    if (d->task == LOAD_TASK_ID) {
        on_load_done(s, j, wslot, d);
        try_assign_all(s);
        return;
    }
    if (d->task >= (uint64_t)j->ntasks)
        return;
    task_t *t = &j->tasks[d->task];
    if (t->state != T_RUNNING || t->worker != wslot)
        return;
    t->state = T_DONE;
    t->worker = -1;
    j->done_tasks++;
    dmri_task_kind_t kind = j->graph.tasks[d->task].kind;
    if (kind >= 0 && kind < DMRI_TASK_NKINDS)
        j->compute[kind] += d->seconds;
    if (t->out >= 0) {
        keyrec_t *k = &j->keys[t->out];
        add_holder(k, wslot);
        if (d->out_sizes.n > 0)
            k->size = d->out_sizes.v[0];
    }
    for (int i = 0; i < t->nin; i++) {
        keyrec_t *k = &j->keys[t->in[i]];
        if (k->consumers_left > 0)
            k->consumers_left--;
        maybe_release(s, j, t->in[i]);
    }
    if (t->out >= 0) {
        relay(s, j, t->out);
        maybe_release(s, j, t->out);
    }
    progress(s, j, 0);
    if (check_job_done(s, j))
        return;
    try_assign_all(s);
}

static void on_task_failed(dmri_sched_t *s, int wslot, const dmri_msg_task_failed_t *f) {
    worker_t *w = &s->workers[wslot];
    int was_running = running_remove(w, f->job, f->task);
    job_t *j = find_job(s, f->job);
    if (!j || !was_running)
        return;
    task_t *t = NULL;
    const char *what = "load";
    if (f->task == LOAD_TASK_ID) {
        t = &j->load;
    } else if (!j->noop && f->task < (uint64_t)j->ntasks) {
        t = &j->tasks[f->task];
        what = dmri_task_kind_name(j->graph.tasks[f->task].kind);
    }
    if (!t || t->state != T_RUNNING)
        return;
    t->state = T_WAITING;
    t->worker = -1;
    if (f->input_missing[0]) {
        /* Not the task's fault: the chunk was not where we said. */
        int k;
        if (dmri_strmap_get(&j->keymap, f->input_missing, &k)) {
            keyrec_t *key = &j->keys[k];
            /* We pointed the worker at holders[0] (or at itself). */
            int victim = holds(key, wslot) ? wslot : (key->nholders ? key->holders[0] : -1);
            if (victim >= 0)
                remove_holder(key, victim);
            slog(s, "job %llu: %s missing at its holder; recomputing",
                 (unsigned long long)j->id, f->input_missing);
            require_key(s, j, k);
        }
        s->stats.tasks_requeued++;
    } else {
        t->attempts++;
        s->stats.tasks_failed++;
        slog(s, "job %llu: task %s failed on %s (attempt %d): %s", (unsigned long long)j->id,
             what, w->name, t->attempts, f->error);
        if (t->attempts >= s->o.max_attempts) {
            job_fail(s, j, "%s", f->error);
            try_assign_all(s);
            return;
        }
    }
    try_assign_all(s);
}

/* ---- public entry points ---- */

void dmri_sched_opts_default(dmri_sched_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->worker_timeout = 5.0;
    o->client_timeout = 60.0;
    o->slab_slices = 16;
    o->vols_per_task = 8;
    o->max_attempts = 3;
    o->heartbeat_ms = 500;
    /* the whole HCP release (~1,200 subjects) fits in one dmri-submit */
    o->max_pending_per_client = 2048;
    /* a sound peer sends none; a buggy one is noticed, a hostile one muted */
    o->max_malformed = 100;
    o->malformed_window = 10.0;
    o->malformed_ban = 60.0;
}

dmri_sched_t *dmri_sched_new(const dmri_sched_opts_t *opts, const dmri_sched_io_t *io,
                             void *ctx) {
    dmri_sched_t *s = dmri_calloc(1, sizeof *s);
    s->o = *opts;
    s->io = *io;
    s->ctx = ctx;
    dmri_strmap_init(&s->peers);
    s->guard = dmri_peerguard_new(opts->max_malformed, opts->malformed_window,
                                  opts->malformed_ban);
    s->t0 = now(s);
    s->ring = dmri_calloc(DMRI_SCHED_EVENT_RING, sizeof *s->ring);
    return s;
}

void dmri_sched_destroy(dmri_sched_t **ps) {
    if (!ps || !*ps)
        return;
    dmri_sched_t *s = *ps;
    for (int i = 0; i < s->njobs; i++)
        job_free(s->jobs[i]);
    dmri_free(s->jobs);
    for (int i = 0; i < s->nworkers; i++)
        dmri_free(s->workers[i].run);
    dmri_free(s->workers);
    dmri_free(s->clients);
    dmri_free(s->relays);
    dmri_free(s->ring);
    dmri_strmap_close(&s->peers);
    dmri_peerguard_destroy(&s->guard);
    dmri_free(s);
    *ps = NULL;
}

/* One malformed or forbidden message from `peer`: counted; the one that
 * crosses --max-malformed drops the peer's registration and bans it. */
static void strike(dmri_sched_t *s, const uint8_t *peer, size_t n, const char *hex,
                   const char *why) {
    s->stats.malformed++;
    if (!dmri_peerguard_strike(s->guard, hex, now(s)))
        return;
    s->stats.peers_banned++;
    int reg;
    char who[200];
    snprintf(who, sizeof who, "unregistered peer");
    if (dmri_strmap_get(&s->peers, hex, &reg)) {
        if (reg & 1) {
            snprintf(who, sizeof who, "client %.100s", s->clients[reg >> 1].name);
            client_lost(s, reg >> 1, "too many malformed messages");
        } else {
            snprintf(who, sizeof who, "worker %.100s", s->workers[reg >> 1].name);
            worker_lost(s, reg >> 1, "too many malformed messages");
        }
    }
    slog(s, "%s (identity %.64s%s) sent %d malformed messages within %g s (last: %.200s): "
         "ignoring it for %g s (--max-malformed)",
         who, hex, strlen(hex) > 64 ? "..." : "", s->o.max_malformed, s->o.malformed_window, why,
         s->o.malformed_ban);
    (void)peer;
    (void)n;
}

void dmri_sched_on_message(dmri_sched_t *s, const uint8_t *peer, size_t n, const dmri_msg_t *m) {
    char hex[2 * DMRI_IDENT_MAX + 1];
    if (n == 0 || n > DMRI_IDENT_MAX)
        return;
    ident_hex(peer, n, hex);
    if (dmri_peerguard_banned(s->guard, hex, now(s))) {
        s->stats.ignored++;
        return;
    }
    if (m->type == DMRI_MSG_HELLO) {
        on_hello(s, peer, n, hex, &m->u.hello);
        try_assign_all(s);
        return;
    }
    int reg;
    if (!dmri_strmap_get(&s->peers, hex, &reg)) {
        if (m->type != DMRI_MSG_BYE)
            send_error(s, peer, n, "%s before HELLO: not registered (send HELLO first)",
                       dmri_msg_type_name(m->type));
        return;
    }
    int slot = reg >> 1, is_client = reg & 1;
    if (is_client) {
        client_t *c = &s->clients[slot];
        c->last_heard = now(s);
        switch (m->type) {
        case DMRI_MSG_HEARTBEAT: {
            dmri_msg_t r;
            dmri_msg_init(&r, DMRI_MSG_HEARTBEAT);
            send_to(s, peer, n, &r);
            return;
        }
        case DMRI_MSG_SUBMIT: on_submit(s, slot, &m->u.submit); return;
        case DMRI_MSG_STATUS_QUERY: {
            char *json = dmri_sched_status_json(s);
            dmri_msg_t r;
            dmri_msg_init(&r, DMRI_MSG_STATUS);
            r.u.status.request = m->u.status_query.request;
            r.u.status.json.data = (uint8_t *)json;
            r.u.status.json.len = strlen(json);
            send_to(s, peer, n, &r);
            free(json);
            return;
        }
        case DMRI_MSG_BYE: client_lost(s, slot, "said bye"); return;
        case DMRI_MSG_ERROR: slog(s, "client %s reports: %s", c->name, m->u.error.error); return;
        default:
            send_error(s, peer, n, "%s is not allowed from a client",
                       dmri_msg_type_name(m->type));
            strike(s, peer, n, hex, "a message a client may not send");
            return;
        }
    }
    worker_t *w = &s->workers[slot];
    w->last_heard = now(s);
    switch (m->type) {
    case DMRI_MSG_HEARTBEAT: {
        w->memory = m->u.heartbeat.memory;
        dmri_msg_t r;
        dmri_msg_init(&r, DMRI_MSG_HEARTBEAT);
        send_to(s, peer, n, &r);
        return;
    }
    case DMRI_MSG_TASK_REQUEST:
        w->wanted = m->u.task_request.free_threads > MAX_WANTED
                        ? MAX_WANTED
                        : (int)m->u.task_request.free_threads;
        try_assign(s, slot);
        return;
    case DMRI_MSG_TASK_DONE: on_task_done(s, slot, &m->u.task_done); return;
    case DMRI_MSG_TASK_FAILED: on_task_failed(s, slot, &m->u.task_failed); return;
    case DMRI_MSG_BYE: worker_lost(s, slot, m->u.bye.reason); return;
    case DMRI_MSG_ERROR: slog(s, "worker %s reports: %s", w->name, m->u.error.error); return;
    default:
        send_error(s, peer, n, "%s is not allowed from a worker", dmri_msg_type_name(m->type));
        strike(s, peer, n, hex, "a message a worker may not send");
        return;
    }
}

void dmri_sched_on_malformed(dmri_sched_t *s, const uint8_t *peer, size_t n, int code,
                             const char *why) {
    if (n == 0 || n > DMRI_IDENT_MAX) {
        s->stats.malformed++;
        return;
    }
    char hex[2 * DMRI_IDENT_MAX + 1];
    ident_hex(peer, n, hex);
    if (dmri_peerguard_banned(s->guard, hex, now(s))) {
        s->stats.ignored++;
        return;
    }
    /* answered first, so the peer that crosses the limit still learns why */
    dmri_msg_t m;
    if (code == DMRI_EUNSUP) {
        char reason[600];
        snprintf(reason, sizeof reason, "refused: %s", why);
        slog(s, "peer refused: %s", why);
        dmri_msg_init(&m, DMRI_MSG_REFUSED);
        m.u.refused.reason = reason;
        send_to(s, peer, n, &m);
    } else {
        send_error(s, peer, n, "malformed message: %s", why);
    }
    strike(s, peer, n, hex, why);
}

static relay_t *find_relay(dmri_sched_t *s, uint64_t request, int *index) {
    for (int i = 0; i < s->nrelays; i++)
        if (s->relays[i].request == request) {
            *index = i;
            return &s->relays[i];
        }
    return NULL;
}

int dmri_sched_on_data(dmri_sched_t *s, uint64_t request, size_t size, uint8_t *client,
                       size_t *client_len, dmri_msg_t *result) {
    int ri;
    relay_t *r = find_relay(s, request, &ri);
    if (!r)
        return 0;
    job_t *j = find_job(s, r->job);
    if (!j || !s->clients[j->client].alive) {
        s->relays[ri] = s->relays[--s->nrelays];
        return 0;
    }
    r->size = size;
    client_t *c = &s->clients[j->client];
    memcpy(client, c->ident, c->ident_len);
    *client_len = c->ident_len;
    dmri_msg_init(result, DMRI_MSG_RESULT);
    result->u.result.job = j->id;
    result->u.result.key = j->keys[r->key].name;
    result->u.result.size = size;
    return 1;
}

/* Take a finished relay off the list; returns its job (NULL if the job is
 * gone meanwhile) with the key no longer marked as in flight. */
static job_t *pop_relay(dmri_sched_t *s, uint64_t request, relay_t *done) {
    int ri;
    relay_t *r = find_relay(s, request, &ri);
    if (!r)
        return NULL;
    *done = *r;
    s->relays[ri] = s->relays[--s->nrelays];
    job_t *j = find_job(s, done->job);
    if (j)
        j->keys[done->key].relaying = 0;
    return j;
}

void dmri_sched_on_relayed(dmri_sched_t *s, uint64_t request, int ok) {
    relay_t done;
    job_t *j = pop_relay(s, request, &done);
    if (!j)
        return;
    keyrec_t *k = &j->keys[done.key];
    if (!ok) {
        client_lost(s, j->client, "unreachable");
        return;
    }
    k->delivered = 1;
    s->stats.bytes_relayed += done.size;
    maybe_release(s, j, done.key);
    progress(s, j, 0);
    check_job_done(s, j);
}

void dmri_sched_on_data_missing(dmri_sched_t *s, uint64_t request) {
    relay_t done;
    job_t *j = pop_relay(s, request, &done);
    if (!j)
        return;
    keyrec_t *k = &j->keys[done.key];
    remove_holder(k, done.worker);
    slog(s, "job %llu: %s missing at %s; recomputing", (unsigned long long)j->id, k->name,
         s->workers[done.worker].name);
    require_key(s, j, done.key);
    relay(s, j, done.key);
    try_assign_all(s);
}

void dmri_sched_tick(dmri_sched_t *s) {
    double t = now(s);
    dmri_journal_t *jn = s->journal;
    if (jn && jn->nunfinished > 0 && t > s->orphans_until) {
        for (int i = 0; i < jn->nunfinished; i++) {
            slog(s, "job %llu (%s) of %s was not resumed by its client within %.0f s: dropped",
                 (unsigned long long)jn->unfinished[i].job, jn->unfinished[i].subject,
                 jn->unfinished[i].client, s->o.client_timeout);
            dmri_journal_ended(jn, 'C', jn->unfinished[i].job, NULL);
        }
        jn->nunfinished = 0;
    }
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].alive && t - s->workers[i].last_heard > s->o.worker_timeout) {
            char why[64];
            snprintf(why, sizeof why, "no heartbeat for %.1f s", t - s->workers[i].last_heard);
            s->stats.heartbeats_missed++;
            worker_lost(s, i, why);
        }
    for (int i = 0; i < s->nclients; i++)
        if (s->clients[i].alive && t - s->clients[i].last_heard > s->o.client_timeout)
            client_lost(s, i, "no message within the client timeout");
    for (int ji = 0; ji < s->njobs; ji++)
        if (!s->jobs[ji]->noop)
            progress(s, s->jobs[ji], 0);
    if (t - s->last_prune >= 1.0) {
        dmri_peerguard_prune(s->guard, t);
        s->last_prune = t;
    }
}

void dmri_sched_attach_journal(dmri_sched_t *s, dmri_journal_t *jn) {
    s->journal = jn;
    if (jn->max_job > s->next_job_id)
        s->next_job_id = jn->max_job; /* ids never reused: stale chunks cannot match */
    s->orphans_until = now(s) + s->o.client_timeout;
    if (jn->torn)
        slog(s, "journal %s: %d damaged line(s) ignored (a write cut by a crash)", jn->path,
             jn->torn);
    for (int i = 0; i < jn->nunfinished; i++)
        slog(s, "journal: job %llu (%s) of %s was unfinished; waiting %.0f s for its client",
             (unsigned long long)jn->unfinished[i].job, jn->unfinished[i].subject,
             jn->unfinished[i].client, s->o.client_timeout);
}

void dmri_sched_shutdown(dmri_sched_t *s, const char *reason) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_BYE);
    m.u.bye.reason = (char *)reason;
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].alive)
            send_to(s, s->workers[i].ident, s->workers[i].ident_len, &m);
    for (int i = 0; i < s->nclients; i++)
        if (s->clients[i].alive)
            send_to(s, s->clients[i].ident, s->clients[i].ident_len, &m);
}

void dmri_sched_stats(const dmri_sched_t *s, dmri_sched_stats_t *st) {
    *st = s->stats;
    st->jobs = s->njobs;
}

void dmri_sched_snapshot(const dmri_sched_t *s, dmri_sched_snapshot_t *snap) {
    memset(snap, 0, sizeof *snap);
    double t = s->io.now(s->ctx);
    snap->now = t - s->t0;
    dmri_sched_stats(s, &snap->stats);
    snap->workers = dmri_calloc((size_t)s->nworkers + 1, sizeof *snap->workers);
    for (int i = 0; i < s->nworkers; i++) {
        const worker_t *w = &s->workers[i];
        if (!w->alive)
            continue;
        dmri_sched_worker_view_t *v = &snap->workers[snap->nworkers++];
        v->id = w->id;
        snprintf(v->name, sizeof v->name, "%s", w->name);
        snprintf(v->address, sizeof v->address, "%s", w->addr);
        v->threads = w->nthreads;
        v->running = w->nrun;
        v->memory = w->memory;
        v->memory_limit = w->memory_limit;
        v->tasks_done = w->tasks_done;
        v->bytes_fetched = w->bytes_fetched;
        v->last_heartbeat_s = t - w->last_heard;
    }
    snap->jobs = dmri_calloc((size_t)s->njobs + 1, sizeof *snap->jobs);
    for (int ji = 0; ji < s->njobs; ji++) {
        const job_t *j = s->jobs[ji];
        dmri_sched_job_view_t *v = &snap->jobs[snap->njobs++];
        v->job = j->id;
        snprintf(v->subject, sizeof v->subject, "%s", j->subject);
        v->elapsed_s = t - j->t_submit;
        if (j->noop) {
            v->state = "no-op";
            v->step_total[DMRI_SCHED_STEP_NOOP] = j->noop_total;
            v->step_done[DMRI_SCHED_STEP_NOOP] = j->noop_done;
            uint64_t running = 0;
            for (int w = 0; w < s->nworkers; w++)
                if (s->workers[w].alive)
                    for (int r = 0; r < s->workers[w].nrun; r++)
                        running += s->workers[w].run[r].job == j->id;
            snap->tasks_running += running;
            if (j->noop_total > j->noop_done + running)
                snap->tasks_ready += j->noop_total - j->noop_done - running;
            v->done = j->noop_done;
            v->total = j->noop_total;
            continue;
        }
        v->state = j->state == J_LOADING ? "loading" : "running";
        v->step_total[DMRI_SCHED_STEP_LOAD] = 1;
        v->step_done[DMRI_SCHED_STEP_LOAD] = j->load.state == T_DONE;
        if (j->load.state == T_RUNNING)
            snap->tasks_running++;
        else if (j->load.state == T_WAITING)
            snap->tasks_ready++;
        for (int i = 0; i < j->ntasks; i++) {
            const task_t *tk = &j->tasks[i];
            int k = (int)j->graph.tasks[i].kind;
            v->step_total[k]++;
            if (tk->state == T_DONE)
                v->step_done[k]++;
            else if (tk->state == T_RUNNING)
                snap->tasks_running++;
            else if (k != DMRI_TASK_SAVE && task_ready(j, tk))
                snap->tasks_ready++;
            else
                snap->tasks_waiting++;
        }
        v->done = (uint64_t)j->done_tasks + (j->load.state == T_DONE);
        v->total = (uint64_t)j->ntasks + 1;
    }
    size_t nev = s->ring_n < DMRI_SCHED_SNAPSHOT_EVENTS ? s->ring_n : DMRI_SCHED_SNAPSHOT_EVENTS;
    snap->events = dmri_malloc((nev + 1) * sizeof *snap->events);
    size_t first = (s->ring_next + DMRI_SCHED_EVENT_RING - nev) % DMRI_SCHED_EVENT_RING;
    for (size_t i = 0; i < nev; i++)
        snap->events[i] = s->ring[(first + i) % DMRI_SCHED_EVENT_RING];
    snap->nevents = (int)nev;
    memcpy(snap->step_completed, s->step_completed, sizeof snap->step_completed);
    memcpy(snap->step_hist, s->step_hist, sizeof snap->step_hist);
    memcpy(snap->step_seconds, s->step_seconds, sizeof snap->step_seconds);
}

void dmri_sched_snapshot_close(dmri_sched_snapshot_t *snap) {
    dmri_free(snap->workers);
    dmri_free(snap->jobs);
    dmri_free(snap->events);
    snap->workers = NULL;
    snap->jobs = NULL;
    snap->events = NULL;
    snap->nworkers = snap->njobs = snap->nevents = 0;
}
