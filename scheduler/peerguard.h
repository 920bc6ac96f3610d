/* peerguard: the scheduler's memory of misbehaving connections — how many
 * malformed or forbidden messages each peer identity sent within a sliding
 * window, and which identities are banned (ignored) until when. Pure
 * bookkeeping, no sockets, time passed in, so the state machine stays
 * testable. Memory is bounded: entries whose window and ban are over are
 * pruned, and at most DMRI_PEERGUARD_MAX identities are tracked at once (a
 * flood of more distinct identities than that within one window goes partly
 * uncounted; each of those messages is still only answered with an ERROR).
 * Single-threaded. */
#ifndef DMRI_PEERGUARD_H
#define DMRI_PEERGUARD_H

#include <stddef.h>

#define DMRI_PEERGUARD_MAX 100000

typedef struct dmri_peerguard dmri_peerguard_t;

/* max_strikes malformed messages within `window` seconds ban a peer for `ban`
 * seconds; max_strikes 0 disables banning (strikes are then not tracked). */
dmri_peerguard_t *dmri_peerguard_new(int max_strikes, double window, double ban);
void dmri_peerguard_destroy(dmri_peerguard_t **g); /* safe on NULL, twice */

/* One malformed message from `peer` (any string naming the connection) at
 * time t. Returns 1 exactly when this strike bans the peer (log it then),
 * else 0. Strikes from a peer already banned are ignored. */
int dmri_peerguard_strike(dmri_peerguard_t *g, const char *peer, double t);

/* 1 while `peer` is banned at time t. */
int dmri_peerguard_banned(const dmri_peerguard_t *g, const char *peer, double t);

/* Forget what no longer matters at time t (window over and not banned). */
void dmri_peerguard_prune(dmri_peerguard_t *g, double t);

/* Identities tracked now (tests, status). */
size_t dmri_peerguard_count(const dmri_peerguard_t *g);

#endif
