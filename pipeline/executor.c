/* executor: in-process thread-pool execution of a task graph (see executor.h). */
#include "executor.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "dmri_alloc.h"

typedef struct {
    const dmri_graph_t *g;
    dmri_task_fn fn;
    dmri_task_done_fn done;
    void *ctx;
    pthread_mutex_t lock;
    pthread_cond_t changed;   /* a task finished or the run failed */
    int *waiting;             /* per task: number of unfinished dependencies */
    int **dependents;         /* per task: tasks that wait for it */
    int *ndependents;
    unsigned char *state;     /* 0 pending, 1 running, 2 done */
    int finished, running;
    int failed;               /* first error code, 0 if none */
    dmri_err_t first_err;
} exec_t;

typedef struct {
    exec_t *ex;
    int thread;
} worker_arg_t;

double dmri_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Lowest-index ready task, or -1. Called with the lock held. A linear scan is
 * cheap next to the tasks (milliseconds to minutes each). */
static int pick_ready(exec_t *ex) {
    for (int i = 0; i < ex->g->ntasks; i++)
        if (ex->state[i] == 0 && ex->waiting[i] == 0)
            return i;
    return -1;
}

static void *worker_main(void *arg) {
    worker_arg_t *wa = arg;
    exec_t *ex = wa->ex;
    pthread_mutex_lock(&ex->lock);
    for (;;) {
        if (ex->failed || ex->finished == ex->g->ntasks)
            break;
        int i = pick_ready(ex);
        if (i < 0) {
            pthread_cond_wait(&ex->changed, &ex->lock);
            continue;
        }
        ex->state[i] = 1;
        ex->running++;
        pthread_mutex_unlock(&ex->lock);

        dmri_err_t err = {0};
        double t0 = dmri_now();
        int rc = ex->fn(ex->ctx, i, &ex->g->tasks[i], wa->thread, &err);
        double t1 = dmri_now();

        pthread_mutex_lock(&ex->lock);
        ex->running--;
        if (rc != 0) {
            if (!ex->failed) {
                ex->failed = rc;
                ex->first_err = err;
                if (!ex->first_err.msg[0])
                    dmri_err_set(&ex->first_err, rc, "task %s failed: %s",
                                 dmri_task_kind_name(ex->g->tasks[i].kind), dmri_strerror(rc));
            }
        } else {
            ex->state[i] = 2;
            ex->finished++;
            for (int k = 0; k < ex->ndependents[i]; k++)
                ex->waiting[ex->dependents[i][k]]--;
            if (ex->done)
                ex->done(ex->ctx, i, &ex->g->tasks[i], t0, t1);
        }
        pthread_cond_broadcast(&ex->changed);
    }
    pthread_mutex_unlock(&ex->lock);
    return NULL;
}

int dmri_execute_local(const dmri_graph_t *g, int nthreads, dmri_task_fn fn,
                       dmri_task_done_fn done, void *ctx, dmri_err_t *err) {
    if (nthreads < 1)
        nthreads = 1;
    exec_t ex;
    memset(&ex, 0, sizeof ex);
    ex.g = g;
    ex.fn = fn;
    ex.done = done;
    ex.ctx = ctx;
    pthread_mutex_init(&ex.lock, NULL);
    pthread_cond_init(&ex.changed, NULL);
    int n = g->ntasks;
    ex.waiting = dmri_calloc((size_t)n + 1, sizeof(int));
    ex.ndependents = dmri_calloc((size_t)n + 1, sizeof(int));
    ex.dependents = dmri_calloc((size_t)n + 1, sizeof(int *));
    ex.state = dmri_calloc((size_t)n + 1, 1);
    for (int i = 0; i < n; i++) {
        ex.waiting[i] = g->tasks[i].ndeps;
        for (int k = 0; k < g->tasks[i].ndeps; k++)
            ex.ndependents[g->tasks[i].deps[k]]++;
    }
    for (int i = 0; i < n; i++)
        ex.dependents[i] = dmri_malloc(((size_t)ex.ndependents[i] + 1) * sizeof(int));
    int *fill = dmri_calloc((size_t)n + 1, sizeof(int));
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->tasks[i].ndeps; k++) {
            int d = g->tasks[i].deps[k];
            ex.dependents[d][fill[d]++] = i;
        }
    dmri_free(fill);

    pthread_t *threads = dmri_malloc((size_t)nthreads * sizeof(pthread_t));
    worker_arg_t *args = dmri_malloc((size_t)nthreads * sizeof(worker_arg_t));
    int started = 0;
    for (int t = 0; t < nthreads; t++) {
        args[t].ex = &ex;
        args[t].thread = t;
        if (pthread_create(&threads[t], NULL, worker_main, &args[t]) != 0)
            break;
        started++;
    }
    if (started == 0)
        worker_main(&args[0]);   /* no thread could be made: run on this one */
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);

    int rc = ex.failed;
    if (rc && err)
        *err = ex.first_err;
    for (int i = 0; i < n; i++)
        dmri_free(ex.dependents[i]);
    dmri_free(ex.dependents);
    dmri_free(ex.ndependents);
    dmri_free(ex.waiting);
    dmri_free(ex.state);
    dmri_free(threads);
    dmri_free(args);
    pthread_mutex_destroy(&ex.lock);
    pthread_cond_destroy(&ex.changed);
    return rc;
}
