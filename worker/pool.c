/* pool: a fixed set of compute threads with a FIFO work queue and a done
 * queue signalled through a pipe (see pool.h). */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "dmri_alloc.h"

struct dmri_pool {
    pthread_mutex_t mu;        /* guards the queues and counters */
    pthread_cond_t cv;         /* work arrived or stop */
    pthread_t *threads;        /* nthreads */
    int nthreads;
    int started;               /* threads that took their index */
    dmri_pool_item_t *head, *tail;           /* waiting items */
    dmri_pool_item_t *done_head, *done_tail; /* finished items */
    int outstanding;           /* submitted, not yet taken back */
    int running;               /* being run */
    int stop;                  /* threads exit when set */
    int pipefd[2];             /* [0] polled by the main thread, [1] written by threads */
};

static void push(dmri_pool_item_t **head, dmri_pool_item_t **tail, dmri_pool_item_t *it) {
    it->next = NULL;
    if (*tail)
        (*tail)->next = it;
    else
        *head = it;
    *tail = it;
}

static dmri_pool_item_t *pop(dmri_pool_item_t **head, dmri_pool_item_t **tail) {
    dmri_pool_item_t *it = *head;
    if (it) {
        *head = it->next;
        if (!*head)
            *tail = NULL;
        it->next = NULL;
    }
    return it;
}

/* Which of its pool's threads runs here (for the dashboard's task stream). */
static _Thread_local int thread_index = -1;

int dmri_pool_thread_index(void) { return thread_index; }

static void *thread_main(void *arg) {
    dmri_pool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    thread_index = p->started++;
    for (;;) {
        while (!p->stop && !p->head)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        dmri_pool_item_t *it = pop(&p->head, &p->tail);
        p->running++;
        pthread_mutex_unlock(&p->mu);
        it->run(it);
        pthread_mutex_lock(&p->mu);
        p->running--;
        push(&p->done_head, &p->done_tail, it);
        /* A full pipe already says "readable": EAGAIN is fine. */
        char b = 1;
        ssize_t w;
        do {
            w = write(p->pipefd[1], &b, 1);
        } while (w < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

dmri_pool_t *dmri_pool_new(int nthreads, dmri_err_t *err) {
    if (nthreads < 1) {
        dmri_err_set(err, DMRI_EINVAL, "pool: %d threads", nthreads);
        return NULL;
    }
    dmri_pool_t *p = dmri_calloc(1, sizeof *p);
    if (pipe2(p->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        dmri_err_set(err, DMRI_EIO, "pool: pipe: %s", strerror(errno));
        dmri_free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = dmri_calloc((size_t)nthreads, sizeof *p->threads);
    for (int i = 0; i < nthreads; i++) {
        int rc = pthread_create(&p->threads[i], NULL, thread_main, p);
        if (rc != 0) {
            dmri_err_set(err, DMRI_EIO, "pool: cannot start thread %d of %d: %s", i + 1,
                         nthreads, strerror(rc));
            dmri_pool_destroy(&p, NULL);
            return NULL;
        }
        p->nthreads = i + 1;
    }
    return p;
}

void dmri_pool_submit(dmri_pool_t *p, dmri_pool_item_t *it) {
    pthread_mutex_lock(&p->mu);
    push(&p->head, &p->tail, it);
    p->outstanding++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int dmri_pool_fd(const dmri_pool_t *p) { return p->pipefd[0]; }

dmri_pool_item_t *dmri_pool_take_done(dmri_pool_t *p) {
    char buf[256];
    while (read(p->pipefd[0], buf, sizeof buf) > 0) {
    }
    pthread_mutex_lock(&p->mu);
    dmri_pool_item_t *it = pop(&p->done_head, &p->done_tail);
    if (it)
        p->outstanding--;
    pthread_mutex_unlock(&p->mu);
    return it;
}

int dmri_pool_outstanding(dmri_pool_t *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->outstanding;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int dmri_pool_running(dmri_pool_t *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->running;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int dmri_pool_stop(dmri_pool_t *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    int n = p->running;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void dmri_pool_destroy(dmri_pool_t **pp, void (*drop)(dmri_pool_item_t *it)) {
    if (!pp || !*pp)
        return;
    dmri_pool_t *p = *pp;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    dmri_pool_item_t *waiting = p->head;
    p->head = p->tail = NULL;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    while (waiting) {
        dmri_pool_item_t *nx = waiting->next;
        if (drop)
            drop(waiting);
        waiting = nx;
    }
    dmri_pool_item_t *it;
    while ((it = pop(&p->done_head, &p->done_tail)) != NULL) {
        if (drop)
            drop(it);
    }
    close(p->pipefd[0]);
    close(p->pipefd[1]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    dmri_free(p->threads);
    dmri_free(p);
    *pp = NULL;
}
