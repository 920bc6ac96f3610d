/* Unit tests of the scheduler's state machine (scheduler/sched_state.c),
 * without sockets: peers are identities, time is a variable, every message
 * the machine sends is captured and checked. Covers registration, refusals,
 * the no-op path with a worker lost mid-run, and a real subject's graph:
 * LOAD, the info relayed first, assignments with input locations, a failing
 * task retried then failing its job, and recomputation after a loss. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chunks.h"
#include "dmri_alloc.h"
#include "phantom.h"
#include "proto.h"
#include "sched_state.h"

#include "check.h"

/* ---- a fake world ---- */

#define MAXSENT 20000
typedef struct {
    char peer[32];
    int type;
    uint64_t job, task, kind, size, request;
    char key[128];
    char text[256];
    int nin;
    char in0[128], addr_last[128];
    int has_payload;
} sent_t;

static sent_t sent[MAXSENT];
static int nsent = 0;
static double clock_now = 100.0;
static int fail_sends_to_client = 0;
static char fetched_key[64][128];
static uint64_t fetched_req[64];
static int nfetched = 0;

static int io_send(void *ctx, const uint8_t *peer, size_t n, const dmri_msg_t *m,
                   const void *payload, size_t plen) {
    (void)ctx;
    (void)payload;
    if (fail_sends_to_client && n >= 6 && memcmp(peer, "client", 6) == 0)
        return -1;
    if (nsent >= MAXSENT)
        return 0;
    sent_t *s = &sent[nsent++];
    memset(s, 0, sizeof *s);
    snprintf(s->peer, sizeof s->peer, "%.*s", (int)n, (const char *)peer);
    s->type = m->type;
    s->has_payload = plen > 0;
    switch (m->type) {
    case DMRI_MSG_TASK_ASSIGN:
        s->job = m->u.task_assign.job;
        s->task = m->u.task_assign.task;
        s->kind = m->u.task_assign.kind;
        s->nin = (int)m->u.task_assign.in_keys.n;
        if (s->nin > 0) {
            snprintf(s->in0, sizeof s->in0, "%s", m->u.task_assign.in_keys.v[0]);
            snprintf(s->addr_last, sizeof s->addr_last, "%s",
                     m->u.task_assign.in_addrs.v[s->nin - 1]);
        }
        snprintf(s->key, sizeof s->key, "%s", m->u.task_assign.out_key);
        break;
    case DMRI_MSG_RESULT:
        s->job = m->u.result.job;
        s->size = m->u.result.size;
        snprintf(s->key, sizeof s->key, "%s", m->u.result.key);
        break;
    case DMRI_MSG_ACCEPTED: s->job = m->u.accepted.job; break;
    case DMRI_MSG_JOB_DONE:
        s->job = m->u.job_done.job;
        snprintf(s->text, sizeof s->text, "%s", m->u.job_done.summary);
        break;
    case DMRI_MSG_JOB_FAILED:
        s->job = m->u.job_failed.job;
        snprintf(s->text, sizeof s->text, "%s", m->u.job_failed.error);
        break;
    case DMRI_MSG_ERROR: snprintf(s->text, sizeof s->text, "%s", m->u.error.error); break;
    case DMRI_MSG_REFUSED: snprintf(s->text, sizeof s->text, "%s", m->u.refused.reason); break;
    case DMRI_MSG_RELEASE:
        if (m->u.release.keys.n)
            snprintf(s->key, sizeof s->key, "%s", m->u.release.keys.v[0]);
        break;
    default: break;
    }
    return 0;
}

static void io_fetch(void *ctx, const char *addr, const char *key, uint64_t request) {
    (void)ctx;
    (void)addr;
    if (nfetched < 64) {
        snprintf(fetched_key[nfetched], sizeof fetched_key[0], "%s", key);
        fetched_req[nfetched++] = request;
    }
}

static double io_now(void *ctx) {
    (void)ctx;
    return clock_now;
}

static void io_log(void *ctx, const char *line) {
    (void)ctx;
    (void)line;
}

static void deliver(dmri_sched_t *s, const char *peer, dmri_msg_t *m) {
    dmri_sched_on_message(s, (const uint8_t *)peer, strlen(peer), m);
}

static void hello(dmri_sched_t *s, const char *peer, const char *role, const char *addr) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_HELLO);
    m.u.hello.role = (char *)role;
    m.u.hello.name = (char *)peer;
    m.u.hello.peer_addr = (char *)addr;
    m.u.hello.nthreads = 1;
    deliver(s, peer, &m);
}

static void request(dmri_sched_t *s, const char *peer, uint64_t n) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_REQUEST);
    m.u.task_request.free_threads = n;
    deliver(s, peer, &m);
}

static void done(dmri_sched_t *s, const char *peer, uint64_t job, uint64_t task, const char *key,
                 uint64_t size, const uint8_t *info, size_t info_len, char **keys, size_t nkeys,
                 uint64_t *sizes) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_DONE);
    m.u.task_done.job = job;
    m.u.task_done.task = task;
    char *one[1] = {(char *)key};
    uint64_t onesz[1] = {size};
    if (keys) {
        m.u.task_done.out_keys.n = nkeys;
        m.u.task_done.out_keys.v = keys;
        m.u.task_done.out_sizes.n = nkeys;
        m.u.task_done.out_sizes.v = sizes;
    } else if (key && key[0]) {
        m.u.task_done.out_keys.n = 1;
        m.u.task_done.out_keys.v = one;
        m.u.task_done.out_sizes.n = 1;
        m.u.task_done.out_sizes.v = onesz;
    }
    m.u.task_done.info.data = (uint8_t *)info;
    m.u.task_done.info.len = info_len;
    deliver(s, peer, &m);
}

static int count(int type, const char *peer, int from) {
    int n = 0;
    for (int i = from; i < nsent; i++)
        if (sent[i].type == type && (!peer || strcmp(sent[i].peer, peer) == 0))
            n++;
    return n;
}

static sent_t *last(int type, const char *peer) {
    for (int i = nsent - 1; i >= 0; i--)
        if (sent[i].type == type && (!peer || strcmp(sent[i].peer, peer) == 0))
            return &sent[i];
    return NULL;
}

static dmri_sched_t *fresh(void) {
    nsent = 0;
    nfetched = 0;
    clock_now = 100.0;
    dmri_sched_opts_t o;
    dmri_sched_opts_default(&o);
    o.slab_slices = 4;
    o.vols_per_task = 4;
    dmri_sched_io_t io = {io_send, io_fetch, io_now, io_log};
    return dmri_sched_new(&o, &io, NULL);
}

static void test_registration(void) {
    dmri_sched_t *s = fresh();
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_TASK_REQUEST);
    m.u.task_request.free_threads = 1;
    deliver(s, "stranger", &m);
    CHECK(last(DMRI_MSG_ERROR, "stranger") && strstr(last(DMRI_MSG_ERROR, "stranger")->text,
                                                     "not registered"));
    hello(s, "worker-a", "worker", "");
    CHECK(last(DMRI_MSG_REFUSED, "worker-a") != NULL); /* no peer address */
    hello(s, "odd", "king", "x");
    CHECK(last(DMRI_MSG_REFUSED, "odd") != NULL);
    hello(s, "worker-a", "worker", "tcp://10.0.0.1:5000");
    CHECK(last(DMRI_MSG_WELCOME, "worker-a") != NULL);
    hello(s, "client-1", "client", "");
    CHECK(last(DMRI_MSG_WELCOME, "client-1") != NULL);
    /* a client may not ask for tasks; a worker may not submit */
    dmri_msg_init(&m, DMRI_MSG_TASK_REQUEST);
    m.u.task_request.free_threads = 1;
    deliver(s, "client-1", &m);
    CHECK(last(DMRI_MSG_ERROR, "client-1") != NULL);
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.subject = "x";
    deliver(s, "worker-a", &m);
    CHECK(last(DMRI_MSG_ERROR, "worker-a") != NULL);
    /* another protocol version is refused with a reason */
    dmri_sched_on_malformed(s, (const uint8_t *)"old", 3, DMRI_EUNSUP,
                            "protocol version 2 is not supported");
    CHECK(last(DMRI_MSG_REFUSED, "old") && strstr(last(DMRI_MSG_REFUSED, "old")->text, "version"));
    dmri_sched_stats_t st;
    dmri_sched_stats(s, &st);
    CHECK(st.workers == 1 && st.clients == 1);
    dmri_sched_destroy(&s);
    CHECK(s == NULL);
}

static void test_noop_with_loss(void) {
    dmri_sched_t *s = fresh();
    hello(s, "worker-a", "worker", "tcp://10.0.0.1:1");
    hello(s, "worker-b", "worker", "tcp://10.0.0.2:1");
    hello(s, "client-1", "client", "");
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.request = 7;
    m.u.submit.subject = "50";
    m.u.submit.flags = 4;
    deliver(s, "client-1", &m);
    sent_t *acc = last(DMRI_MSG_ACCEPTED, "client-1");
    CHECK(acc != NULL);
    uint64_t job = acc ? acc->job : 0;
    request(s, "worker-a", 3);
    request(s, "worker-b", 3);
    CHECK(count(DMRI_MSG_TASK_ASSIGN, "worker-a", 0) == 3);
    CHECK(count(DMRI_MSG_TASK_ASSIGN, "worker-b", 0) == 3);
    /* worker-b dies silently: its 3 tasks must be handed out again */
    uint64_t b_tasks[3];
    int k = 0;
    for (int i = 0; i < nsent; i++)
        if (sent[i].type == DMRI_MSG_TASK_ASSIGN && strcmp(sent[i].peer, "worker-b") == 0)
            b_tasks[k++] = sent[i].task;
    int done_count = 0;
    for (int round = 0; round < 100 && !last(DMRI_MSG_JOB_DONE, "client-1"); round++) {
        int from = nsent;
        for (int i = 0; i < from; i++)
            if (sent[i].type == DMRI_MSG_TASK_ASSIGN && strcmp(sent[i].peer, "worker-a") == 0 &&
                sent[i].job == job) {
                done(s, "worker-a", job, sent[i].task, "", 0, NULL, 0, NULL, 0, NULL);
                sent[i].type = -1; /* answered */
                done_count++;
            }
        clock_now += 1.0; /* worker-b never heart-beats */
        dmri_sched_tick(s);
        request(s, "worker-a", 3);
        dmri_msg_t hb;
        dmri_msg_init(&hb, DMRI_MSG_HEARTBEAT);
        deliver(s, "worker-a", &hb);
    }
    sent_t *jd = last(DMRI_MSG_JOB_DONE, "client-1");
    CHECK(jd != NULL && jd->job == job && strstr(jd->text, "tasks_per_second"));
    CHECK(done_count == 50);
    /* the tasks of the dead worker were among those re-done by worker-a */
    int redone = 0;
    for (int i = 0; i < nsent; i++)
        if (sent[i].type == -1 && strcmp(sent[i].peer, "worker-a") == 0)
            for (int j = 0; j < 3; j++)
                redone += sent[i].task == b_tasks[j];
    CHECK(redone == 3);
    dmri_sched_stats_t st;
    dmri_sched_stats(s, &st);
    CHECK(st.workers == 1 && st.workers_lost == 1 && st.jobs == 0);
    dmri_sched_destroy(&s);
}

/* A real subject: the graph comes from a LOAD of a tiny phantom. */
static void test_subject_graph(void) {
    char dir[] = "/tmp/dmri-test-sched-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    dmri_phantom_opts_t po;
    dmri_phantom_opts_default(&po);
    po.nx = 10;
    po.ny = 9;
    po.nz = 8;
    po.nb0 = 2;
    po.nshells = 1;
    po.shells[0] = 1000;
    po.ndirs = 6;
    dmri_err_t err = {0};
    CHECK(dmri_phantom_write(dir, &po, &err) == 0);
    dmri_info_t info;
    dmri_chunk_t *raw = NULL;
    int nraw = 0;
    CHECK(dmri_chunk_load(dir, NULL, NULL, 10.0, 0, 4, 4, &info, &raw, &nraw, &err) == 0);
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    CHECK(dmri_info_encode(&info, &blob, &blob_len) == 0);

    dmri_sched_t *s = fresh();
    hello(s, "worker-a", "worker", "tcp://10.0.0.1:1");
    hello(s, "worker-b", "worker", "tcp://10.0.0.2:1");
    hello(s, "client-1", "client", "");
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.request = 1;
    m.u.submit.subject = dir;
    deliver(s, "client-1", &m);
    uint64_t job = last(DMRI_MSG_ACCEPTED, "client-1")->job;
    request(s, "worker-a", 1);
    sent_t *load = last(DMRI_MSG_TASK_ASSIGN, "worker-a");
    CHECK(load && load->kind == DMRI_TASK_KIND_LOAD);
    /* LOAD done: info + raw chunks held by worker-a */
    char *keys[64];
    uint64_t sizes[64];
    char names[64][64];
    dmri_keyref_t ir = {DMRI_KEY_INFO, -1, -1};
    dmri_key_format(names[0], sizeof names[0], job, &ir);
    keys[0] = names[0];
    sizes[0] = blob_len;
    int nslabs = (po.nz + 3) / 4, ngroups = nraw / nslabs;
    for (int i = 0; i < nraw; i++) {
        dmri_keyref_t r = {DMRI_KEY_RAW, i / nslabs, i % nslabs};
        dmri_key_format(names[i + 1], sizeof names[0], job, &r);
        keys[i + 1] = names[i + 1];
        sizes[i + 1] = raw[i].size;
    }
    (void)ngroups;
    int before = nsent;
    done(s, "worker-a", job, load->task, NULL, 0, blob, blob_len, keys, (size_t)nraw + 1, sizes);
    /* the client gets the info chunk first */
    int first_result = -1;
    for (int i = before; i < nsent; i++)
        if (sent[i].type == DMRI_MSG_RESULT) {
            first_result = i;
            break;
        }
    CHECK(first_result >= 0 && strstr(sent[first_result].key, "/info") &&
          sent[first_result].has_payload);
    /* worker-b asks: it gets a task whose inputs live on worker-a */
    request(s, "worker-b", 1);
    sent_t *tb = last(DMRI_MSG_TASK_ASSIGN, "worker-b");
    CHECK(tb && tb->kind != DMRI_TASK_KIND_LOAD && strstr(tb->in0, "/info"));
    CHECK(tb && strcmp(tb->addr_last, "tcp://10.0.0.1:1") == 0);
    /* it fails three times: the job fails with the error text */
    for (int attempt = 0; attempt < 3 && tb; attempt++) {
        dmri_msg_t f;
        dmri_msg_init(&f, DMRI_MSG_TASK_FAILED);
        f.u.task_failed.job = job;
        f.u.task_failed.task = tb->task;
        f.u.task_failed.error = "disk on fire";
        f.u.task_failed.input_missing = "";
        uint64_t task = tb->task;
        deliver(s, "worker-b", &f);
        if (attempt < 2) {
            request(s, "worker-b", 1);
            tb = last(DMRI_MSG_TASK_ASSIGN, "worker-b");
            /* worker-b holds nothing, so the lowest ready index (this same
             * task, back in the ready set) is what it gets again */
            CHECK(tb && tb->task == task);
            if (!tb || tb->task != task)
                break;
        }
    }
    sent_t *jf = last(DMRI_MSG_JOB_FAILED, "client-1");
    CHECK(jf != NULL);
    if (jf) {
        CHECK(jf->job == job && strstr(jf->text, "disk on fire"));
        CHECK(count(DMRI_MSG_RELEASE, "worker-a", 0) > 0); /* chunks freed */
    }
    /* The dashboard counts it as a failed subject, the LOAD as a completed
     * task of step "load". */
    dmri_sched_snapshot_t snap;
    dmri_sched_snapshot(s, &snap);
    CHECK_INT(snap.stats.subjects_failed, 1);
    CHECK_INT(snap.stats.subjects_done, 0);
    CHECK(snap.step_completed[DMRI_SCHED_STEP_LOAD] >= 1);
    CHECK_INT(snap.njobs, 0);
    dmri_sched_snapshot_close(&snap);
    dmri_sched_destroy(&s);

    /* Again; this time worker-a (the only holder of the raw chunks) dies
     * after the LOAD: the subject is read again by worker-b. */
    s = fresh();
    hello(s, "worker-a", "worker", "tcp://10.0.0.1:1");
    hello(s, "client-1", "client", "");
    deliver(s, "client-1", &m);
    job = last(DMRI_MSG_ACCEPTED, "client-1")->job;
    request(s, "worker-a", 1);
    load = last(DMRI_MSG_TASK_ASSIGN, "worker-a");
    for (int i = 0; i <= nraw; i++) {
        /* same names, new job id */
        dmri_keyref_t r = {i ? DMRI_KEY_RAW : DMRI_KEY_INFO, i ? (i - 1) / nslabs : -1,
                           i ? (i - 1) % nslabs : -1};
        dmri_key_format(names[i], sizeof names[0], job, &r);
    }
    done(s, "worker-a", job, load->task, NULL, 0, blob, blob_len, keys, (size_t)nraw + 1, sizes);
    hello(s, "worker-b", "worker", "tcp://10.0.0.2:1");
    dmri_msg_t bye;
    dmri_msg_init(&bye, DMRI_MSG_BYE);
    bye.u.bye.reason = "SIGTERM";
    deliver(s, "worker-a", &bye);
    request(s, "worker-b", 1);
    sent_t *again = last(DMRI_MSG_TASK_ASSIGN, "worker-b");
    CHECK(again && again->kind == DMRI_TASK_KIND_LOAD);
    /* the client leaving cancels the job: no more work for it */
    fail_sends_to_client = 0;
    dmri_msg_t cb;
    dmri_msg_init(&cb, DMRI_MSG_BYE);
    cb.u.bye.reason = "bye";
    deliver(s, "client-1", &cb);
    dmri_sched_stats_t st;
    dmri_sched_stats(s, &st);
    CHECK(st.jobs == 0 && st.clients == 0);
    dmri_sched_destroy(&s);

    for (int i = 0; i < nraw; i++)
        dmri_free(raw[i].data);
    dmri_free(raw);
    dmri_free(blob);
    dmri_info_close(&info);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* --state-dir: a submission is journaled before ACCEPTED, a client leaving
 * cancels it (journaled), a resubmission after a restart names the job it
 * resumes, job ids continue after the journal's, control characters in a
 * subject are refused. */
static void read_journal(const char *dir, char *buf, size_t bufsz) {
    char path[300];
    snprintf(path, sizeof path, "%s/journal", dir);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, bufsz - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
}

static void test_journal(void) {
    char dir[] = "/tmp/dmri-test-schedj-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    dmri_err_t err = {0};
    dmri_journal_t jn;
    CHECK_INT(dmri_journal_open(&jn, dir, &err), 0);
    dmri_sched_t *s = fresh();
    dmri_sched_attach_journal(s, &jn);
    hello(s, "client-1", "client", "");
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.request = 7;
    m.u.submit.subject = "/data/100307";
    deliver(s, "client-1", &m);
    sent_t *acc = last(DMRI_MSG_ACCEPTED, "client-1");
    CHECK(acc != NULL);
    char text[4096];
    read_journal(dir, text, sizeof text);
    CHECK(strstr(text, "S\t1\t0\t10\t0\tclient-1\t/data/100307\n") != NULL);
    m.u.submit.subject = "bad\nS\t5\tx";
    deliver(s, "client-1", &m);
    CHECK(last(DMRI_MSG_ERROR, "client-1") && strstr(last(DMRI_MSG_ERROR, "client-1")->text,
                                                     "control characters"));
    /* the client leaves: its job is cancelled, and the journal says so */
    dmri_msg_init(&m, DMRI_MSG_BYE);
    m.u.bye.reason = "bye";
    deliver(s, "client-1", &m);
    read_journal(dir, text, sizeof text);
    CHECK(strstr(text, "C\t1\n") != NULL);
    dmri_sched_destroy(&s);
    dmri_journal_close(&jn);

    /* a crash: an unfinished job in the journal, then a restart */
    char path[300];
    snprintf(path, sizeof path, "%s/journal", dir);
    FILE *f = fopen(path, "a");
    CHECK(f != NULL);
    if (f) {
        fputs("S\t4\t0\t10\t0\tclient-2\t/data/100408\n", f);
        fclose(f);
    }
    CHECK_INT(dmri_journal_open(&jn, dir, &err), 0);
    CHECK_INT(jn.nunfinished, 1);
    s = fresh();
    dmri_sched_attach_journal(s, &jn);
    hello(s, "client-2", "client", "");
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.request = 9;
    m.u.submit.subject = "/data/100408";
    m.u.submit.resume = 4;
    deliver(s, "client-2", &m);
    acc = last(DMRI_MSG_ACCEPTED, "client-2");
    CHECK(acc && acc->job == 5); /* after the journal's highest id */
    CHECK_INT(jn.nunfinished, 0);  /* matched: no longer waiting */
    read_journal(dir, text, sizeof text);
    CHECK(strstr(text, "S\t5\t0\t10\t4\tclient-2\t/data/100408\n") != NULL);
    dmri_sched_destroy(&s);
    dmri_journal_close(&jn);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

static void submit(dmri_sched_t *s, const char *peer, uint64_t request, const char *subject,
                   uint64_t flags) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.request = request;
    m.u.submit.subject = (char *)subject;
    m.u.submit.flags = flags;
    deliver(s, peer, &m);
}

static dmri_sched_t *fresh_opts(const dmri_sched_opts_t *o) {
    nsent = 0;
    nfetched = 0;
    clock_now = 100.0;
    dmri_sched_io_t io = {io_send, io_fetch, io_now, io_log};
    return dmri_sched_new(o, &io, NULL);
}

/* --max-pending-per-client: the SUBMIT over the limit is accepted and failed
 * at once with the reason; other clients, and the same client once a job has
 * finished, are not affected. */
static void test_max_pending(void) {
    dmri_sched_opts_t o;
    dmri_sched_opts_default(&o);
    CHECK_INT(o.max_pending_per_client, 2048);
    o.max_pending_per_client = 3;
    dmri_sched_t *s = fresh_opts(&o);
    hello(s, "client-1", "client", "");
    hello(s, "client-2", "client", "");
    for (int i = 0; i < 3; i++)
        submit(s, "client-1", (uint64_t)i + 1, "/nonexistent/subject", 0);
    CHECK_INT(count(DMRI_MSG_ACCEPTED, "client-1", 0), 3);
    CHECK_INT(count(DMRI_MSG_JOB_FAILED, "client-1", 0), 0);
    int mark = nsent;
    submit(s, "client-1", 4, "/nonexistent/fourth", 0);
    CHECK_INT(count(DMRI_MSG_ACCEPTED, "client-1", mark), 1);
    sent_t *f = last(DMRI_MSG_JOB_FAILED, "client-1");
    CHECK(f && f->job == last(DMRI_MSG_ACCEPTED, "client-1")->job);
    CHECK(f && strstr(f->text, "--max-pending-per-client 3"));
    CHECK(f && strstr(f->text, "3 subjects pending"));
    dmri_sched_stats_t st;
    dmri_sched_stats(s, &st);
    CHECK_INT(st.jobs, 3);
    CHECK_INT(st.submits_refused, 1);
    /* another client has its own budget */
    submit(s, "client-2", 1, "/nonexistent/other", 0);
    CHECK_INT(count(DMRI_MSG_JOB_FAILED, "client-2", 0), 0);
    /* a finished job frees a place: no-op jobs finish through a worker */
    dmri_sched_destroy(&s);
    s = fresh_opts(&o);
    hello(s, "client-1", "client", "");
    hello(s, "w", "worker", "tcp://10.0.0.1:1");
    for (int i = 0; i < 3; i++)
        submit(s, "client-1", (uint64_t)i + 1, "1", 4);
    request(s, "w", 1);
    sent_t *a = last(DMRI_MSG_TASK_ASSIGN, "w");
    CHECK(a != NULL);
    if (a)
        done(s, "w", a->job, a->task, "", 0, NULL, 0, NULL, 0, NULL);
    CHECK(count(DMRI_MSG_JOB_DONE, "client-1", 0) == 1);
    mark = nsent;
    submit(s, "client-1", 9, "1", 4);
    CHECK_INT(count(DMRI_MSG_JOB_FAILED, "client-1", mark), 0);
    dmri_sched_destroy(&s);
}

/* --max-malformed: N strikes within the window drop the peer's registration
 * and mute it for the ban; strikes spread over windows do not add up; other
 * peers are untouched; after the ban the identity may register again. */
static void test_max_malformed(void) {
    dmri_sched_opts_t o;
    dmri_sched_opts_default(&o);
    CHECK_INT(o.max_malformed, 100);
    o.max_malformed = 5;
    o.malformed_window = 10.0;
    o.malformed_ban = 60.0;
    dmri_sched_t *s = fresh_opts(&o);
    hello(s, "good", "worker", "tcp://10.0.0.1:1");
    hello(s, "bad", "worker", "tcp://10.0.0.2:1");
    hello(s, "client-1", "client", "");
    dmri_sched_stats_t st;
    dmri_sched_stats(s, &st);
    CHECK_INT(st.workers, 2);
    /* 4 malformed now, 4 more after the window: never 5 within one */
    for (int i = 0; i < 4; i++)
        dmri_sched_on_malformed(s, (const uint8_t *)"bad", 3, DMRI_EFORMAT, "garbage");
    clock_now += 11.0;
    hello(s, "good", "worker", "tcp://10.0.0.1:1"); /* keep both alive */
    hello(s, "bad", "worker", "tcp://10.0.0.2:1");
    for (int i = 0; i < 4; i++)
        dmri_sched_on_malformed(s, (const uint8_t *)"bad", 3, DMRI_EFORMAT, "garbage");
    dmri_sched_stats(s, &st);
    CHECK_INT(st.peers_banned, 0);
    CHECK_INT(st.workers, 2);
    CHECK_INT(count(DMRI_MSG_ERROR, "bad", 0), 8); /* each one answered */
    /* the 5th within the window: answered, then the worker is dropped */
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_SUBMIT); /* a worker may not submit: a strike too */
    m.u.submit.subject = "x";
    deliver(s, "bad", &m);
    dmri_sched_stats(s, &st);
    CHECK_INT(st.peers_banned, 1);
    CHECK_INT(st.workers, 1);
    CHECK_INT(count(DMRI_MSG_ERROR, "bad", 0), 9);
    /* muted: nothing is answered, not even HELLO */
    int mark = nsent;
    hello(s, "bad", "worker", "tcp://10.0.0.2:1");
    dmri_sched_on_malformed(s, (const uint8_t *)"bad", 3, DMRI_EFORMAT, "garbage");
    request(s, "bad", 1);
    CHECK_INT(nsent, mark);
    dmri_sched_stats(s, &st);
    CHECK_INT(st.ignored, 3);
    CHECK_INT(st.workers, 1);
    /* others are served meanwhile */
    hello(s, "late", "worker", "tcp://10.0.0.3:1");
    CHECK(last(DMRI_MSG_WELCOME, "late") != NULL);
    submit(s, "client-1", 1, "1", 4);
    CHECK(last(DMRI_MSG_ACCEPTED, "client-1") != NULL);
    /* a banned client loses its jobs */
    for (int i = 0; i < 5; i++)
        dmri_sched_on_malformed(s, (const uint8_t *)"client-1", 8, DMRI_EFORMAT, "garbage");
    dmri_sched_stats(s, &st);
    CHECK_INT(st.clients, 0);
    CHECK_INT(st.jobs, 0);
    /* after the ban the identity is welcome again */
    clock_now += 61.0;
    hello(s, "late", "worker", "tcp://10.0.0.3:1");
    hello(s, "good", "worker", "tcp://10.0.0.1:1");
    hello(s, "bad", "worker", "tcp://10.0.0.2:1");
    CHECK(last(DMRI_MSG_WELCOME, "bad") != NULL);
    dmri_sched_destroy(&s);

    /* 0 disables it */
    o.max_malformed = 0;
    s = fresh_opts(&o);
    hello(s, "bad", "worker", "tcp://10.0.0.2:1");
    for (int i = 0; i < 1000; i++)
        dmri_sched_on_malformed(s, (const uint8_t *)"bad", 3, DMRI_EFORMAT, "garbage");
    dmri_sched_stats(s, &st);
    CHECK_INT(st.peers_banned, 0);
    CHECK_INT(st.workers, 1);
    CHECK_INT(st.malformed, 1000);
    dmri_sched_destroy(&s);
}

int main(void) {
    test_registration();
    test_journal();
    test_noop_with_loss();
    test_subject_graph();
    test_max_pending();
    test_max_malformed();
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    return failures ? 1 : 0;
}
