/* status_json: /api/status and JOB_DONE.events as JSON (status_json.h). */
#include "status_json.h"

#include <string.h>

#include "dmri_alloc.h"
#include "pipeline_version.h"
#include "textbuf.h"

static void event_json(dmri_tb_t *b, const dmri_sched_event_t *e, double origin) {
    dmri_tb_printf(b, "{\"job\":%llu,\"step\":", (unsigned long long)e->job);
    dmri_tb_json_str(b, dmri_sched_step_name(e->step));
    dmri_tb_puts(b, ",\"worker\":");
    dmri_tb_json_str(b, e->worker);
    dmri_tb_printf(b, ",\"worker_id\":%llu,\"thread\":%d,\"start\":",
                   (unsigned long long)e->worker_id, e->thread);
    dmri_tb_json_num(b, e->start - origin);
    dmri_tb_puts(b, ",\"end\":");
    dmri_tb_json_num(b, e->end - origin);
    dmri_tb_puts(b, ",\"compute_s\":");
    dmri_tb_json_num(b, e->compute_s);
    dmri_tb_puts(b, ",\"fetch_s\":");
    dmri_tb_json_num(b, e->fetch_s);
    dmri_tb_printf(b, ",\"fetch_bytes\":%llu}", (unsigned long long)e->fetch_bytes);
}

char *dmri_status_events_json(const dmri_sched_event_t *ev, size_t n, double origin,
                              size_t max_bytes) {
    dmri_tb_t b = {0};
    dmri_tb_puts(&b, "[");
    for (size_t i = 0; i < n; i++) {
        size_t before = b.n;
        if (i)
            dmri_tb_puts(&b, ",");
        event_json(&b, &ev[i], origin);
        if (b.n + 1 > max_bytes) {
            b.n = before;
            b.p[b.n] = '\0';
            break;
        }
    }
    dmri_tb_puts(&b, "]");
    return dmri_tb_take(&b);
}

char *dmri_status_json(const dmri_sched_snapshot_t *snap) {
    dmri_tb_t b = {0};
    const dmri_sched_stats_t *st = &snap->stats;
    dmri_tb_printf(&b, "{\"version\":");
    dmri_tb_json_str(&b, dmri_version());
    dmri_tb_puts(&b, ",\"now_s\":");
    dmri_tb_json_num(&b, snap->now);
    dmri_tb_puts(&b, ",\"workers\":[");
    for (int i = 0; i < snap->nworkers; i++) {
        const dmri_sched_worker_view_t *w = &snap->workers[i];
        dmri_tb_printf(&b, "%s{\"id\":%llu,\"name\":", i ? "," : "", (unsigned long long)w->id);
        dmri_tb_json_str(&b, w->name);
        dmri_tb_puts(&b, ",\"address\":");
        dmri_tb_json_str(&b, w->address);
        dmri_tb_printf(&b,
                       ",\"threads\":%d,\"running\":%d,\"memory\":%llu,\"memory_limit\":%llu,"
                       "\"tasks_done\":%llu,\"bytes_fetched\":%llu,\"last_heartbeat_s\":",
                       w->threads, w->running, (unsigned long long)w->memory,
                       (unsigned long long)w->memory_limit, (unsigned long long)w->tasks_done,
                       (unsigned long long)w->bytes_fetched);
        dmri_tb_json_num(&b, w->last_heartbeat_s);
        dmri_tb_puts(&b, "}");
    }
    dmri_tb_puts(&b, "],\"subjects\":[");
    for (int i = 0; i < snap->njobs; i++) {
        const dmri_sched_job_view_t *j = &snap->jobs[i];
        dmri_tb_printf(&b, "%s{\"job\":%llu,\"subject\":", i ? "," : "",
                       (unsigned long long)j->job);
        dmri_tb_json_str(&b, j->subject);
        dmri_tb_puts(&b, ",\"state\":");
        dmri_tb_json_str(&b, j->state);
        dmri_tb_puts(&b, ",\"elapsed_s\":");
        dmri_tb_json_num(&b, j->elapsed_s);
        dmri_tb_printf(&b, ",\"done\":%llu,\"total\":%llu,\"steps\":[",
                       (unsigned long long)j->done, (unsigned long long)j->total);
        /* LOAD first: the order in which a subject goes through its steps. */
        int first = 1;
        for (int k = -1; k < DMRI_SCHED_NSTEPS; k++) {
            int step = k < 0 ? DMRI_SCHED_STEP_LOAD : k;
            if ((k >= 0 && step == DMRI_SCHED_STEP_LOAD) || j->step_total[step] == 0)
                continue;
            dmri_tb_printf(&b, "%s{\"step\":", first ? "" : ",");
            dmri_tb_json_str(&b, dmri_sched_step_name(step));
            dmri_tb_printf(&b, ",\"done\":%llu,\"total\":%llu}",
                           (unsigned long long)j->step_done[step],
                           (unsigned long long)j->step_total[step]);
            first = 0;
        }
        dmri_tb_puts(&b, "]}");
    }
    dmri_tb_printf(&b,
                   "],\"tasks\":{\"waiting\":%llu,\"ready\":%llu,\"running\":%llu},"
                   "\"counters\":{\"tasks_done\":%llu,\"tasks_failed\":%llu,"
                   "\"tasks_requeued\":%llu,\"workers_lost\":%llu,\"heartbeats_missed\":%llu,"
                   "\"malformed_messages\":%llu,\"bytes_fetched\":%llu,\"bytes_relayed\":%llu,"
                   "\"subjects_done\":%llu,\"subjects_failed\":%llu,\"clients\":%d},",
                   (unsigned long long)snap->tasks_waiting, (unsigned long long)snap->tasks_ready,
                   (unsigned long long)snap->tasks_running, (unsigned long long)st->tasks_done,
                   (unsigned long long)st->tasks_failed, (unsigned long long)st->tasks_requeued,
                   (unsigned long long)st->workers_lost,
                   (unsigned long long)st->heartbeats_missed, (unsigned long long)st->malformed,
                   (unsigned long long)st->bytes_fetched, (unsigned long long)st->bytes_relayed,
                   (unsigned long long)st->subjects_done, (unsigned long long)st->subjects_failed,
                   st->clients);
    /* What dmri-submit --status prints (it asks over port 8786 for this same
     * document): jobs running now, and ended since the scheduler started. */
    dmri_tb_printf(&b, "\"jobs\":{\"active\":%d,\"done\":%llu,\"failed\":%llu},", snap->njobs,
                   (unsigned long long)st->jobs_done, (unsigned long long)st->jobs_failed);
    /* The task stream: the newest events of the last window, oldest first. */
    int from = snap->nevents;
    while (from > 0 && snap->nevents - from < DMRI_STATUS_MAX_EVENTS &&
           snap->events[from - 1].end >= snap->now - DMRI_STATUS_WINDOW_S)
        from--;
    dmri_tb_puts(&b, "\"task_stream\":{\"window_s\":");
    dmri_tb_json_num(&b, DMRI_STATUS_WINDOW_S);
    dmri_tb_puts(&b, ",\"events\":");
    char *ev = dmri_status_events_json(snap->events + from, (size_t)(snap->nevents - from), 0,
                                       (size_t)-1);
    dmri_tb_put(&b, ev, strlen(ev));
    dmri_free(ev);
    dmri_tb_puts(&b, "}}");
    return dmri_tb_take(&b);
}

char *dmri_sched_status_json(const dmri_sched_t *s) {
    dmri_sched_snapshot_t snap;
    dmri_sched_snapshot(s, &snap);
    char *text = dmri_status_json(&snap);
    dmri_sched_snapshot_close(&snap);
    return text;
}
