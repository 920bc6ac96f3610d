/* Unit tests of the dashboard's renderings (scheduler/status_json.c,
 * scheduler/metrics.c, common/textbuf.c) over a real scheduler state machine
 * driven by messages: a worker with an awkward name runs a no-op job whose
 * TASK_DONEs report thread, compute and fetch times; the snapshot, the JSON
 * and the Prometheus text must show exactly that. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmri_alloc.h"
#include "metrics.h"
#include "proto.h"
#include "sched_state.h"
#include "status_json.h"
#include "textbuf.h"

#include "check.h"

static double clock_now = 50.0;
static int nassign;
static uint64_t assigned_task[64];

static int io_send(void *ctx, const uint8_t *peer, size_t n, const dmri_msg_t *m,
                   const void *payload, size_t plen) {
    (void)ctx, (void)peer, (void)n, (void)payload, (void)plen;
    if (m->type == DMRI_MSG_TASK_ASSIGN && nassign < 64)
        assigned_task[nassign++] = m->u.task_assign.task;
    return 0;
}
static void io_fetch(void *ctx, const char *addr, const char *key, uint64_t request) {
    (void)ctx, (void)addr, (void)key, (void)request;
}
static double io_now(void *ctx) {
    (void)ctx;
    return clock_now;
}

#define WNAME "w\"<1>"

static void deliver(dmri_sched_t *s, const char *peer, dmri_msg_t *m) {
    dmri_sched_on_message(s, (const uint8_t *)peer, strlen(peer), m);
}

static void test_textbuf(void) {
    dmri_tb_t b = {0};
    dmri_tb_json_str(&b, "a\"b\\c\n</script>&");
    CHECK(strcmp(b.p, "\"a\\\"b\\\\c\\u000a\\u003c/script\\u003e\\u0026\"") == 0);
    dmri_tb_free(&b);
    /* invalid UTF-8 (a stray byte, a cut sequence, an overlong, a surrogate)
     * becomes U+FFFD; valid multi-byte characters pass unchanged */
    dmri_tb_json_str(&b, "\xff\xc3\xa9x\xe2\x82\xc0\xaf\xed\xa0\x80\xf0\x9f\x98\x80");
    CHECK(strcmp(b.p, "\"\\ufffd\xc3\xa9x\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"
                      "\xf0\x9f\x98\x80\"") == 0);
    dmri_tb_free(&b);
    for (int i = 0; i < 1000; i++)
        dmri_tb_printf(&b, "%04d,", i);
    CHECK_INT(b.n, 5000);
    CHECK(strncmp(b.p + 4995, "0999,", 5) == 0);
    dmri_tb_json_num(&b, 0.0 / 0.0);
    CHECK(b.p[b.n - 1] == '0');
    char *t = dmri_tb_take(&b);
    CHECK(b.p == NULL && b.n == 0);
    dmri_free(t);
}

static void test_noop_job(void) {
    dmri_sched_opts_t o;
    dmri_sched_opts_default(&o);
    dmri_sched_io_t io = {io_send, io_fetch, io_now, NULL};
    dmri_sched_t *s = dmri_sched_new(&o, &io, NULL);
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_HELLO);
    m.u.hello.role = "worker";
    m.u.hello.name = WNAME;
    m.u.hello.peer_addr = "tcp://127.0.0.1:5001";
    m.u.hello.nthreads = 4;
    m.u.hello.memory_limit = 1000000;
    deliver(s, "wk", &m);
    dmri_msg_init(&m, DMRI_MSG_HEARTBEAT);
    m.u.heartbeat.memory = 4242;
    deliver(s, "wk", &m);
    dmri_msg_init(&m, DMRI_MSG_HELLO);
    m.u.hello.role = "client";
    m.u.hello.name = "c";
    deliver(s, "cl", &m);
    dmri_msg_init(&m, DMRI_MSG_SUBMIT);
    m.u.submit.request = 1;
    m.u.submit.subject = "5";
    m.u.submit.flags = 4;
    deliver(s, "cl", &m);
    dmri_msg_init(&m, DMRI_MSG_TASK_REQUEST);
    m.u.task_request.free_threads = 3;
    deliver(s, "wk", &m);
    CHECK_INT(nassign, 3);

    clock_now = 51.0;
    dmri_sched_snapshot_t snap;
    dmri_sched_snapshot(s, &snap);
    CHECK_INT(snap.nworkers, 1);
    CHECK_INT(snap.workers[0].running, 3);
    CHECK_INT(snap.workers[0].memory, 4242);
    CHECK_INT(snap.workers[0].memory_limit, 1000000);
    CHECK_INT(snap.njobs, 1);
    CHECK_INT(snap.tasks_running, 3);
    CHECK_INT(snap.tasks_ready, 2);
    char *json = dmri_status_json(&snap);
    CHECK(strstr(json, "\"name\":\"w\\\"\\u003c1\\u003e\"") != NULL);
    CHECK(strstr(json, "\"threads\":4,\"running\":3,\"memory\":4242,\"memory_limit\":1000000")
          != NULL);
    CHECK(strstr(json, "\"last_heartbeat_s\":1}") != NULL);
    CHECK(strstr(json, "{\"step\":\"noop\",\"done\":0,\"total\":5}") != NULL);
    CHECK(strstr(json, "\"tasks\":{\"waiting\":0,\"ready\":2,\"running\":3}") != NULL);
    CHECK(strstr(json, "\"events\":[]") != NULL);
    dmri_free(json);
    dmri_sched_snapshot_close(&snap);
    dmri_sched_snapshot_close(&snap); /* twice is fine */

    /* Finish all 5: the worker asks for more as it reports. */
    int reported = 0;
    while (reported < nassign) {
        clock_now += 1.0;
        dmri_msg_init(&m, DMRI_MSG_TASK_DONE);
        m.u.task_done.job = 1;
        m.u.task_done.task = assigned_task[reported];
        m.u.task_done.seconds = 0.02;
        m.u.task_done.thread = (uint64_t)(reported % 4);
        m.u.task_done.fetch_bytes = 1000;
        m.u.task_done.fetch_seconds = 0.5;
        deliver(s, "wk", &m);
        reported++;
        if (reported == 3) {
            dmri_msg_init(&m, DMRI_MSG_TASK_REQUEST);
            m.u.task_request.free_threads = 2;
            deliver(s, "wk", &m);
        }
    }
    CHECK_INT(reported, 5);
    dmri_sched_snapshot(s, &snap);
    CHECK_INT(snap.njobs, 0);
    CHECK_INT(snap.nevents, 5);
    CHECK_INT(snap.stats.tasks_done, 5);
    CHECK_INT(snap.stats.bytes_fetched, 5000);
    CHECK_INT(snap.workers[0].tasks_done, 5);
    /* Placed on the scheduler's clock: end at receipt, start = end - 0.52. */
    CHECK(snap.events[4].end > 5.99 && snap.events[4].end < 6.01);
    CHECK(snap.events[4].start > 5.47 && snap.events[4].start < 5.49);
    CHECK_INT(snap.events[1].thread, 1);
    json = dmri_status_json(&snap);
    CHECK(strstr(json, "\"subjects\":[]") != NULL);
    CHECK(strstr(json, "\"subjects_done\":0") != NULL); /* no-op jobs are not subjects */
    CHECK(strstr(json, "\"thread\":3,\"start\":4.48,\"end\":5,\"compute_s\":0.02,"
                       "\"fetch_s\":0.5,\"fetch_bytes\":1000}") != NULL);
    dmri_free(json);
    char *metrics = dmri_metrics_text(&snap);
    CHECK(strstr(metrics, "# TYPE dmri_task_duration_seconds histogram\n") != NULL);
    CHECK(strstr(metrics, "dmri_tasks_completed_total{step=\"noop\"} 5\n") != NULL);
    CHECK(strstr(metrics, "dmri_tasks_completed_total{step=\"nlmeans\"} 0\n") != NULL);
    CHECK(strstr(metrics, "dmri_task_duration_seconds_bucket{step=\"noop\",le=\"0.01\"} 0\n"));
    CHECK(strstr(metrics, "dmri_task_duration_seconds_bucket{step=\"noop\",le=\"0.05\"} 5\n"));
    CHECK(strstr(metrics, "dmri_task_duration_seconds_bucket{step=\"noop\",le=\"+Inf\"} 5\n"));
    CHECK(strstr(metrics, "dmri_task_duration_seconds_count{step=\"noop\"} 5\n"));
    CHECK(strstr(metrics, "dmri_transfer_bytes_total 5000\n") != NULL);
    CHECK(strstr(metrics, "dmri_workers 1\n") != NULL);
    CHECK(strstr(metrics, "dmri_tasks{state=\"running\"} 0\n") != NULL);
    CHECK(strstr(metrics, "save") == NULL); /* not a worker task */
    dmri_free(metrics);

    /* The per-job list is bounded by bytes, and stays a JSON array. */
    char *ev = dmri_status_events_json(snap.events, 5, 1.0, 300);
    size_t n = strlen(ev);
    CHECK(n <= 300 && n > 2 && ev[0] == '[' && ev[n - 1] == ']');
    CHECK(strstr(ev, "\"start\":0.48,") != NULL);
    dmri_free(ev);
    dmri_sched_snapshot_close(&snap);

    /* Silence past the timeout: a missed heartbeat, counted. */
    clock_now += 100;
    dmri_sched_tick(s);
    dmri_sched_snapshot(s, &snap);
    CHECK_INT(snap.nworkers, 0);
    CHECK_INT(snap.stats.heartbeats_missed, 1);
    metrics = dmri_metrics_text(&snap);
    CHECK(strstr(metrics, "dmri_heartbeats_missed_total 1\n") != NULL);
    dmri_free(metrics);
    dmri_sched_snapshot_close(&snap);
    dmri_sched_destroy(&s);
}

int main(void) {
    test_textbuf();
    test_noop_job();
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures != 0;
}
