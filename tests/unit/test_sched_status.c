/* Unit tests of the STATUS_QUERY exchange (scheduler/status_json.c through
 * the state machine), without sockets: workers with awkward names register, a
 * client asks, the STATUS document is parsed back with jansson and every
 * field checked; job counts follow a job that succeeds and one that fails;
 * a lost worker leaves the list; only a registered client may ask. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "sched_state.h"
#include "status_json.h"

#include "check.h"

static double clock_now = 100.0;
static char last_json[1 << 16];
static int nstatus, nerror;
static char last_error[512];
static char last_peer[64];
typedef struct {
    uint64_t job, task;
} assign_t;
static assign_t assigns[64];
static int nassigns;

static int io_send(void *ctx, const uint8_t *peer, size_t n, const dmri_msg_t *m,
                   const void *payload, size_t plen) {
    (void)ctx;
    (void)payload;
    (void)plen;
    snprintf(last_peer, sizeof last_peer, "%.*s", (int)n, (const char *)peer);
    if (m->type == DMRI_MSG_STATUS) {
        nstatus++;
        size_t len = m->u.status.json.len < sizeof last_json - 1 ? m->u.status.json.len
                                                                  : sizeof last_json - 1;
        memcpy(last_json, m->u.status.json.data, len);
        last_json[len] = '\0';
    } else if (m->type == DMRI_MSG_ERROR) {
        nerror++;
        snprintf(last_error, sizeof last_error, "%s", m->u.error.error);
    } else if (m->type == DMRI_MSG_TASK_ASSIGN && nassigns < 64) {
        assigns[nassigns].job = m->u.task_assign.job;
        assigns[nassigns].task = m->u.task_assign.task;
        nassigns++;
    }
    return 0;
}

static void io_fetch(void *ctx, const char *addr, const char *key, uint64_t request) {
    (void)ctx;
    (void)addr;
    (void)key;
    (void)request;
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

static void hello(dmri_sched_t *s, const char *peer, const char *role, const char *name,
                  const char *addr, uint64_t nthreads) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_HELLO);
    m.u.hello.role = (char *)role;
    m.u.hello.name = (char *)name;
    m.u.hello.peer_addr = (char *)addr;
    m.u.hello.nthreads = nthreads;
    deliver(s, peer, &m);
}

/* Ask for the status as `peer`; returns the parsed document (or NULL). */
static json_t *ask(dmri_sched_t *s, const char *peer) {
    int before = nstatus;
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_STATUS_QUERY);
    m.u.status_query.request = 9;
    deliver(s, peer, &m);
    if (nstatus != before + 1)
        return NULL;
    json_error_t e;
    json_t *doc = json_loads(last_json, JSON_REJECT_DUPLICATES, &e);
    if (!doc)
        fprintf(stderr, "not JSON (%s): %s\n", e.text, last_json);
    return doc;
}

static long long job_count(json_t *doc, const char *what) {
    return (long long)json_integer_value(json_object_get(json_object_get(doc, "jobs"), what));
}

static void test_workers_and_escaping(void) {
    dmri_sched_opts_t o;
    dmri_sched_opts_default(&o);
    dmri_sched_io_t io = {io_send, io_fetch, io_now, io_log};
    dmri_sched_t *s = dmri_sched_new(&o, &io, NULL);

    /* No workers yet: an empty list, zero jobs (the /api/status document). */
    hello(s, "cli", "client", "status", "", 0);
    json_t *doc = ask(s, "cli");
    CHECK(doc != NULL);
    CHECK(strstr(last_json, "\"workers\":[]") != NULL);
    CHECK(strstr(last_json, "\"jobs\":{\"active\":0,\"done\":0,\"failed\":0}") != NULL);
    CHECK(strcmp(last_peer, "cli") == 0);
    json_decref(doc);

    const char *awkward = "we\"ird\\na\tme\x01\xff\xc3\xa9";
    hello(s, "wa", "worker", "slave1", "tcp://10.231.7.3:40001", 4);
    hello(s, "wb", "worker", awkward, "tcp://10.231.7.4:40002", 2);
    hello(s, "wc", "worker", "slave3", "tcp://10.231.7.5:40003", 0); /* 0 threads -> 1 */
    doc = ask(s, "cli");
    CHECK(doc != NULL);
    json_t *ws = json_object_get(doc, "workers");
    CHECK_INT(json_array_size(ws), 3);
    const char *n0 = NULL, *a0 = NULL, *n1 = NULL;
    json_int_t t0 = 0, t1 = 0, t2 = 0;
    CHECK_INT(json_unpack(json_array_get(ws, 0), "{s:s, s:s, s:I}", "name", &n0, "address", &a0,
                          "threads", &t0), 0);
    CHECK(n0 && strcmp(n0, "slave1") == 0);
    CHECK(a0 && strcmp(a0, "tcp://10.231.7.3:40001") == 0);
    CHECK_INT(t0, 4);
    CHECK_INT(json_unpack(json_array_get(ws, 1), "{s:s, s:I}", "name", &n1, "threads", &t1), 0);
    /* quote, backslash, tab and \x01 survive the round trip; the stray
     * \xff becomes U+FFFD; the valid é stays */
    CHECK(n1 && strcmp(n1, "we\"ird\\na\tme\x01\xef\xbf\xbd\xc3\xa9") == 0);
    CHECK_INT(t1, 2);
    CHECK_INT(json_unpack(json_array_get(ws, 2), "{s:I}", "threads", &t2), 0);
    CHECK_INT(t2, 1);
    /* the raw text carries escapes, never a raw control byte */
    for (const char *p = last_json; *p; p++)
        CHECK((unsigned char)*p >= 0x20);
    CHECK(strstr(last_json, "\\u0001") != NULL);
    json_decref(doc);

    /* A worker that goes silent is declared dead and leaves the list. */
    dmri_msg_t hb;
    for (int i = 0; i < 10; i++) {
        clock_now += 1.0;
        dmri_msg_init(&hb, DMRI_MSG_HEARTBEAT);
        deliver(s, "wa", &hb);
        deliver(s, "wc", &hb);
        deliver(s, "cli", &hb);
        dmri_sched_tick(s);
    }
    doc = ask(s, "cli");
    ws = json_object_get(doc, "workers");
    CHECK_INT(json_array_size(ws), 2);
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(ws, 1), "name")), "slave3") == 0);
    json_decref(doc);

    /* Only a registered client may ask: a worker and a stranger get ERROR. */
    int before = nstatus, errs = nerror;
    dmri_msg_t q;
    dmri_msg_init(&q, DMRI_MSG_STATUS_QUERY);
    deliver(s, "wa", &q);
    deliver(s, "stranger", &q);
    CHECK_INT(nstatus, before);
    CHECK_INT(nerror, errs + 2);
    CHECK(strstr(last_error, "not registered") != NULL);
    dmri_sched_destroy(&s);
}

static void test_job_counts(void) {
    dmri_sched_opts_t o;
    dmri_sched_opts_default(&o);
    dmri_sched_io_t io = {io_send, io_fetch, io_now, io_log};
    dmri_sched_t *s = dmri_sched_new(&o, &io, NULL);
    hello(s, "w", "worker", "w", "tcp://10.0.0.1:1", 8);
    hello(s, "c", "client", "c", "", 0);
    /* a no-op job of 2 tasks, and a subject whose LOAD keeps failing */
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.request = 1;
    m.u.submit.subject = "2";
    m.u.submit.flags = 4;
    deliver(s, "c", &m);
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.request = 2;
    m.u.submit.subject = "/nonexistent/subject";
    deliver(s, "c", &m);
    json_t *doc = ask(s, "c");
    CHECK_INT(job_count(doc, "active"), 2);
    CHECK_INT(job_count(doc, "done"), 0);
    json_decref(doc);
    /* Answer every assignment, including those made while answering (a
     * failed task is handed out again at once). */
    dmri_msg_init(&m, DMRI_MSG_TASK_REQUEST);
    m.u.task_request.free_threads = 8;
    deliver(s, "w", &m);
    for (int i = 0; i < nassigns && i < 64; i++) {
        dmri_msg_t r;
        if (assigns[i].job == 1) {
            dmri_msg_init(&r, DMRI_MSG_TASK_DONE);
            r.u.task_done.job = assigns[i].job;
            r.u.task_done.task = assigns[i].task;
        } else {
            dmri_msg_init(&r, DMRI_MSG_TASK_FAILED);
            r.u.task_failed.job = assigns[i].job;
            r.u.task_failed.task = assigns[i].task;
            r.u.task_failed.error = "cannot open data.nii.gz";
            r.u.task_failed.input_missing = ""; /* as decoded: never NULL */
        }
        deliver(s, "w", &r);
        dmri_msg_init(&m, DMRI_MSG_TASK_REQUEST);
        m.u.task_request.free_threads = 8;
        deliver(s, "w", &m);
    }
    doc = ask(s, "c");
    CHECK_INT(job_count(doc, "active"), 0);
    CHECK_INT(job_count(doc, "done"), 1);
    CHECK_INT(job_count(doc, "failed"), 1);
    json_decref(doc);
    /* the builder alone gives the same document */
    char *text = dmri_sched_status_json(s);
    CHECK(strcmp(text, last_json) == 0);
    free(text);
    dmri_sched_destroy(&s);
}

int main(void) {
    test_workers_and_escaping();
    test_job_counts();
    if (failures) {
        fprintf(stderr, "test_sched_status: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_sched_status: ok\n");
    return 0;
}
