/* Unit tests of the in-process executor (pipeline/executor.c): every task
 * runs once, never before its dependencies, on several threads; a failure
 * stops the run and its message comes back. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "executor.h"
#include "graph.h"

#include "check.h"

typedef struct {
    const dmri_graph_t *g;
    pthread_mutex_t lock;
    int *runs;          /* times each task ran */
    int *finished;      /* 1 once a task finished */
    int order_errors;
    int fail_at;        /* task index that fails, -1 none */
    int max_concurrent, concurrent;
    int done_calls;
} ctx_t;

static int body(void *vctx, int idx, const dmri_task_t *t, int thread, dmri_err_t *err) {
    ctx_t *c = vctx;
    (void)thread;
    pthread_mutex_lock(&c->lock);
    c->runs[idx]++;
    for (int k = 0; k < t->ndeps; k++)
        if (!c->finished[t->deps[k]])
            c->order_errors++;
    c->concurrent++;
    if (c->concurrent > c->max_concurrent)
        c->max_concurrent = c->concurrent;
    pthread_mutex_unlock(&c->lock);
    /* A little work so that threads overlap. */
    volatile double x = 0;
    for (int i = 0; i < 20000; i++)
        x += i * 0.5;
    pthread_mutex_lock(&c->lock);
    c->concurrent--;
    c->finished[idx] = 1;
    pthread_mutex_unlock(&c->lock);
    if (idx == c->fail_at)
        return dmri_err_set(err, DMRI_EIO, "task %d: simulated failure", idx);
    return 0;
}

static void done(void *vctx, int idx, const dmri_task_t *t, double s, double e) {
    ctx_t *c = vctx;
    (void)idx;
    (void)t;
    CHECK(e >= s);
    c->done_calls++;
}

static void run(int nthreads, int fail_at) {
    dmri_graph_params_t p;
    dmri_graph_params_default(&p, 16, 16, 20, 24);
    p.slab_slices = 6;
    p.vols_per_task = 2;
    dmri_graph_t g;
    dmri_err_t err = {0};
    CHECK(dmri_graph_build(&g, &p, &err) == 0);
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.g = &g;
    pthread_mutex_init(&c.lock, NULL);
    int runs[4096] = {0}, fin[4096] = {0};
    c.runs = runs;
    c.finished = fin;
    c.fail_at = fail_at;
    int rc = dmri_execute_local(&g, nthreads, body, done, &c, &err);
    if (fail_at < 0) {
        CHECK(rc == 0);
        for (int i = 0; i < g.ntasks; i++)
            CHECK(runs[i] == 1);
        CHECK(c.done_calls == g.ntasks);
    } else {
        CHECK(rc == DMRI_EIO);
        CHECK(strstr(err.msg, "simulated failure") != NULL);
        /* Nothing that depends on the failed task ran. */
        for (int i = 0; i < g.ntasks; i++)
            for (int k = 0; k < g.tasks[i].ndeps; k++)
                if (g.tasks[i].deps[k] == fail_at)
                    CHECK(runs[i] == 0);
        CHECK(c.done_calls < g.ntasks);
    }
    CHECK(c.order_errors == 0);
    CHECK(c.max_concurrent <= nthreads);
    pthread_mutex_destroy(&c.lock);
    dmri_graph_close(&g);
}

int main(void) {
    run(1, -1);
    run(2, -1);
    run(4, -1);
    run(3, 0);   /* the very first task fails */
    run(2, 5);
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    return failures ? 1 : 0;
}
