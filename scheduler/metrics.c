/* metrics: Prometheus text exposition of a scheduler snapshot (metrics.h). */
#include "metrics.h"

#include "textbuf.h"

static void head(dmri_tb_t *b, const char *name, const char *type, const char *help) {
    dmri_tb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(dmri_tb_t *b, const char *name, const char *type, const char *help,
                unsigned long long v) {
    head(b, name, type, help);
    dmri_tb_printf(b, "%s %llu\n", name, v);
}

char *dmri_metrics_text(const dmri_sched_snapshot_t *snap) {
    dmri_tb_t b = {0};
    const dmri_sched_stats_t *st = &snap->stats;
    head(&b, "dmri_tasks", "gauge", "Tasks of the subjects in the scheduler, by state.");
    dmri_tb_printf(&b, "dmri_tasks{state=\"waiting\"} %llu\n",
                   (unsigned long long)snap->tasks_waiting);
    dmri_tb_printf(&b, "dmri_tasks{state=\"ready\"} %llu\n", (unsigned long long)snap->tasks_ready);
    dmri_tb_printf(&b, "dmri_tasks{state=\"running\"} %llu\n",
                   (unsigned long long)snap->tasks_running);
    head(&b, "dmri_tasks_completed_total", "counter", "Tasks completed by workers, by step.");
    for (int k = 0; k < DMRI_SCHED_NSTEPS; k++)
        if (k != DMRI_TASK_SAVE)
            dmri_tb_printf(&b, "dmri_tasks_completed_total{step=\"%s\"} %llu\n",
                           dmri_sched_step_name(k), (unsigned long long)snap->step_completed[k]);
    head(&b, "dmri_task_duration_seconds", "histogram",
         "Compute seconds of completed tasks as reported by workers, by step.");
    for (int k = 0; k < DMRI_SCHED_NSTEPS; k++) {
        if (k == DMRI_TASK_SAVE)
            continue;
        const char *step = dmri_sched_step_name(k);
        unsigned long long cum = 0;
        for (int i = 0; i < DMRI_SCHED_NBUCKETS; i++) {
            cum += snap->step_hist[k][i];
            dmri_tb_printf(&b, "dmri_task_duration_seconds_bucket{step=\"%s\",le=\"%g\"} %llu\n",
                           step, dmri_sched_buckets[i], cum);
        }
        dmri_tb_printf(&b, "dmri_task_duration_seconds_bucket{step=\"%s\",le=\"+Inf\"} %llu\n",
                       step, (unsigned long long)snap->step_completed[k]);
        dmri_tb_printf(&b, "dmri_task_duration_seconds_sum{step=\"%s\"} %.9g\n", step,
                       snap->step_seconds[k]);
        dmri_tb_printf(&b, "dmri_task_duration_seconds_count{step=\"%s\"} %llu\n", step,
                       (unsigned long long)snap->step_completed[k]);
    }
    one(&b, "dmri_transfer_bytes_total", "counter",
        "Bytes of task inputs workers fetched from other workers.", st->bytes_fetched);
    one(&b, "dmri_relayed_bytes_total", "counter",
        "Bytes of results relayed by the scheduler to clients.", st->bytes_relayed);
    one(&b, "dmri_workers", "gauge", "Workers connected.", (unsigned long long)st->workers);
    one(&b, "dmri_clients", "gauge", "Clients connected.", (unsigned long long)st->clients);
    one(&b, "dmri_heartbeats_missed_total", "counter",
        "Workers declared dead because they stopped heart-beating.", st->heartbeats_missed);
    one(&b, "dmri_workers_lost_total", "counter", "Workers lost for any reason.",
        st->workers_lost);
    head(&b, "dmri_subjects_total", "counter", "Subjects finished, by result.");
    dmri_tb_printf(&b, "dmri_subjects_total{result=\"done\"} %llu\n",
                   (unsigned long long)st->subjects_done);
    dmri_tb_printf(&b, "dmri_subjects_total{result=\"failed\"} %llu\n",
                   (unsigned long long)st->subjects_failed);
    one(&b, "dmri_task_failures_total", "counter", "Task attempts that failed.", st->tasks_failed);
    one(&b, "dmri_tasks_requeued_total", "counter",
        "Tasks put back in the queue (lost worker or lost input).", st->tasks_requeued);
    one(&b, "dmri_malformed_messages_total", "counter",
        "Messages refused as malformed or not allowed.", st->malformed);
    return dmri_tb_take(&b);
}
