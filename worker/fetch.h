/* fetch: getting input chunks from other workers — one DEALER per peer
 * address (created on demand, closed when idle), one DATA_GET per key however
 * many local tasks wait for it, a deadline per request. Arrived chunks enter
 * the store as transient chunks (they leave with the last task using them);
 * each waiter is then told, with a reference of its own, or told why the
 * chunk could not be had. Main thread only. */
#ifndef DMRI_FETCH_H
#define DMRI_FETCH_H

#include <stddef.h>
#include <zmq.h>

#include "auth.h"
#include "dmri_err.h"
#include "store.h"

typedef struct dmri_fetch dmri_fetch_t;

/* Outcome for one waiter: entry (a reference now owned by the callee) or
 * NULL with a reason ("peer tcp://...: no answer in 15 s"). */
typedef void (*dmri_fetch_done_fn)(void *ctx, void *waiter, size_t index, const char *key,
                                   dmri_wstore_entry_t *entry, const char *error);

/* max_chunk: the largest frame a peer may send (ZMQ_MAXMSGSIZE of the
 * sockets to peers; a larger chunk drops that connection and its request
 * times out); 0 for no limit. */
dmri_fetch_t *dmri_fetch_new(void *zctx, dmri_wstore_t *store, double timeout_s,
                             int64_t max_chunk, dmri_fetch_done_fn done, void *ctx);
/* CURVE keys for the peer sockets opened from now on (NULL: none); `a` must
 * outlive f. */
void dmri_fetch_set_auth(dmri_fetch_t *f, const dmri_auth_t *a);
/* Closes every peer socket (linger 0); pending waiters are not told. */
void dmri_fetch_destroy(dmri_fetch_t **f);

/* Ask peer `addr` for `key` on behalf of (waiter, index). Returns 0 (done_fn
 * will be called exactly once for it, never from inside this call), or
 * DMRI_EIO with err when the address is unusable. */
int dmri_fetch_request(dmri_fetch_t *f, const char *addr, const char *key, void *waiter,
                       size_t index, double now, dmri_err_t *err);

/* Forget a waiter (its task failed or was dropped): done_fn is not called for
 * it. */
void dmri_fetch_cancel(dmri_fetch_t *f, void *waiter);
/* Forget every request and waiter. */
void dmri_fetch_cancel_all(dmri_fetch_t *f);

/* Number of peer sockets open (the poll items dmri_fetch_pollitems fills). */
int dmri_fetch_npeers(const dmri_fetch_t *f);
/* Poll items of the peer sockets: fills up to max, returns how many. */
int dmri_fetch_pollitems(dmri_fetch_t *f, zmq_pollitem_t *items, int max);
/* Receive whatever the peer sockets hold; call with the items filled by
 * dmri_fetch_pollitems after zmq_poll (revents), n of them. */
void dmri_fetch_drain(dmri_fetch_t *f, const zmq_pollitem_t *items, int n, double now);

/* Fail requests past their deadline, close idle peer sockets. */
void dmri_fetch_expire(dmri_fetch_t *f, double now);
/* Earliest deadline (a large value when nothing is pending). */
double dmri_fetch_next_deadline(const dmri_fetch_t *f);

/* Requests in flight. */
size_t dmri_fetch_pending(const dmri_fetch_t *f);

#endif
