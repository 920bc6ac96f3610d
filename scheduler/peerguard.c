/* peerguard: strike counting and bans per peer identity (peerguard.h). A
 * fixed window (reset when it has passed) rather than a true sliding one: it
 * costs one counter per peer and still bounds the rate a peer can make us
 * spend on its garbage to max_strikes per window. */
#include "peerguard.h"

#include <string.h>

#include "dmri_alloc.h"
#include "strmap.h"

typedef struct {
    char *peer;            /* owned copy of the identity string */
    double window_start;   /* when the current window began */
    int strikes;           /* in the current window */
    double banned_until;   /* 0 when not banned */
} guard_entry_t;

struct dmri_peerguard {
    int max_strikes;
    double window, ban;
    guard_entry_t *e;
    size_t n, cap;
    dmri_strmap_t index;   /* peer -> position in e */
};

dmri_peerguard_t *dmri_peerguard_new(int max_strikes, double window, double ban) {
    dmri_peerguard_t *g = dmri_calloc(1, sizeof *g);
    g->max_strikes = max_strikes > 0 ? max_strikes : 0;
    g->window = window > 0 ? window : 1.0;
    g->ban = ban > 0 ? ban : 0.0;
    dmri_strmap_init(&g->index);
    return g;
}

void dmri_peerguard_destroy(dmri_peerguard_t **pg) {
    if (!pg || !*pg)
        return;
    dmri_peerguard_t *g = *pg;
    for (size_t i = 0; i < g->n; i++)
        dmri_free(g->e[i].peer);
    dmri_free(g->e);
    dmri_strmap_close(&g->index);
    dmri_free(g);
    *pg = NULL;
}

static guard_entry_t *guard_find(const dmri_peerguard_t *g, const char *peer) {
    int i;
    return dmri_strmap_get(&g->index, peer, &i) ? &g->e[i] : NULL;
}

static int guard_live(const dmri_peerguard_t *g, const guard_entry_t *e, double t) {
    return e->banned_until > t || t - e->window_start < g->window;
}

void dmri_peerguard_prune(dmri_peerguard_t *g, double t) {
    size_t keep = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (guard_live(g, &g->e[i], t)) {
            if (keep != i) {
                g->e[keep] = g->e[i];
                dmri_strmap_put(&g->index, g->e[keep].peer, (int)keep);
            }
            keep++;
        } else {
            dmri_strmap_del(&g->index, g->e[i].peer);
            dmri_free(g->e[i].peer);
        }
    }
    g->n = keep;
}

int dmri_peerguard_strike(dmri_peerguard_t *g, const char *peer, double t) {
    if (g->max_strikes == 0)
        return 0;
    guard_entry_t *e = guard_find(g, peer);
    if (!e) {
        if (g->n >= DMRI_PEERGUARD_MAX)
            dmri_peerguard_prune(g, t);
        if (g->n >= DMRI_PEERGUARD_MAX)
            return 0;
        if (g->n == g->cap) {
            g->cap = g->cap ? 2 * g->cap : 64;
            g->e = dmri_realloc(g->e, g->cap * sizeof *g->e);
        }
        e = &g->e[g->n];
        memset(e, 0, sizeof *e);
        e->peer = dmri_strdup(peer);
        e->window_start = t;
        dmri_strmap_put(&g->index, peer, (int)g->n);
        g->n++;
    }
    if (e->banned_until > t)
        return 0;
    if (t - e->window_start >= g->window) {
        e->window_start = t;
        e->strikes = 0;
    }
    if (++e->strikes < g->max_strikes)
        return 0;
    /* banned: the next window starts when the ban ends */
    e->banned_until = t + g->ban;
    e->window_start = e->banned_until;
    e->strikes = 0;
    return 1;
}

int dmri_peerguard_banned(const dmri_peerguard_t *g, const char *peer, double t) {
    const guard_entry_t *e = guard_find(g, peer);
    return e && e->banned_until > t;
}

size_t dmri_peerguard_count(const dmri_peerguard_t *g) { return g->n; }
