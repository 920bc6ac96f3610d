/* executor: runs a task graph in this process on a pool of threads — the
 * engine of dmri-run. Ready tasks are taken lowest index first (the graph's
 * order is its priority). The first failing task stops the run: no new task
 * starts, running ones finish, and its error is returned. */
#ifndef DMRI_EXECUTOR_H
#define DMRI_EXECUTOR_H

#include "dmri_err.h"
#include "graph.h"

/* Body of one task; `thread` is in [0, nthreads). Returns 0 or a DMRI_E*
 * code with err filled. Called concurrently from several threads. */
typedef int (*dmri_task_fn)(void *ctx, int task_index, const dmri_task_t *task, int thread,
                            dmri_err_t *err);

/* Called after each successful task, serialised (never concurrently), with
 * the task's start and end on the monotonic clock (seconds). */
typedef void (*dmri_task_done_fn)(void *ctx, int task_index, const dmri_task_t *task,
                                  double start, double end);

int dmri_execute_local(const dmri_graph_t *g, int nthreads, dmri_task_fn fn,
                       dmri_task_done_fn done, void *ctx, dmri_err_t *err);

/* Monotonic clock in seconds. */
double dmri_now(void);

#endif
