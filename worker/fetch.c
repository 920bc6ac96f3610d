/* fetch: input chunks from other workers' peer sockets (fetch.h). Requests
 * and peers are short lists searched linearly: a worker has at most a few
 * hundred inputs in flight and talks to a few dozen peers. */
#include "fetch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dmri_alloc.h"
#include "transport.h"
#include "wlog.h"

#define PEER_IDLE_S 60.0

typedef struct {
    void *waiter;
    size_t index;
} waiter_t;

typedef struct request {
    uint64_t id;            /* DATA_GET.request */
    char *key;
    void *sock;             /* the peer socket it went out on */
    double deadline;
    waiter_t *w;            /* tasks waiting for it */
    size_t nw, cap;
    struct request *next;
} request_t;

typedef struct {
    char *addr;             /* peer socket endpoint */
    void *sock;             /* DEALER */
    double last_used;       /* for closing idle sockets */
    int nreq;               /* requests in flight on it */
} peer_t;

struct dmri_fetch {
    void *zctx;
    dmri_wstore_t *store;
    double timeout;               /* seconds without an answer before giving up */
    int64_t max_chunk;            /* ZMQ_MAXMSGSIZE of the peer sockets (0: none) */
    dmri_fetch_done_fn done;
    void *ctx;
    peer_t *peers;
    int npeers, cap;
    request_t *reqs;              /* in flight */
    size_t nreqs;
    uint64_t next_id;
    dmri_wlog_limit_t lim;        /* malformed answers */
    const dmri_auth_t *auth;      /* CURVE keys, NULL without --keys */
};

dmri_fetch_t *dmri_fetch_new(void *zctx, dmri_wstore_t *store, double timeout_s,
                             int64_t max_chunk, dmri_fetch_done_fn done, void *ctx) {
    dmri_fetch_t *f = dmri_calloc(1, sizeof *f);
    f->zctx = zctx;
    f->store = store;
    f->timeout = timeout_s;
    f->max_chunk = max_chunk;
    f->done = done;
    f->ctx = ctx;
    f->next_id = 1;
    dmri_wlog_limit_init(&f->lim, 10.0, 5);
    return f;
}

void dmri_fetch_set_auth(dmri_fetch_t *f, const dmri_auth_t *a) { f->auth = a; }

static void request_free(request_t *r) {
    dmri_free(r->key);
    dmri_free(r->w);
    dmri_free(r);
}

static peer_t *peer_of(dmri_fetch_t *f, void *sock) {
    for (int i = 0; i < f->npeers; i++)
        if (f->peers[i].sock == sock)
            return &f->peers[i];
    return NULL;
}

static void peer_close(dmri_fetch_t *f, int i) {
    int linger = 0;
    zmq_setsockopt(f->peers[i].sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(f->peers[i].sock);
    dmri_free(f->peers[i].addr);
    f->peers[i] = f->peers[--f->npeers];
}

void dmri_fetch_cancel_all(dmri_fetch_t *f) {
    while (f->reqs) {
        request_t *r = f->reqs;
        f->reqs = r->next;
        peer_t *p = peer_of(f, r->sock);
        if (p)
            p->nreq--;
        request_free(r);
    }
    f->nreqs = 0;
}

void dmri_fetch_destroy(dmri_fetch_t **fp) {
    if (!fp || !*fp)
        return;
    dmri_fetch_t *f = *fp;
    dmri_fetch_cancel_all(f);
    while (f->npeers)
        peer_close(f, f->npeers - 1);
    dmri_free(f->peers);
    dmri_free(f);
    *fp = NULL;
}

static peer_t *peer_get(dmri_fetch_t *f, const char *addr, double now, dmri_err_t *err) {
    for (int i = 0; i < f->npeers; i++)
        if (strcmp(f->peers[i].addr, addr) == 0)
            return &f->peers[i];
    void *s = zmq_socket(f->zctx, ZMQ_DEALER);
    if (!s) {
        dmri_err_set(err, DMRI_EIO, "peer %.300s: cannot create a socket: %s", addr,
                     zmq_strerror(errno));
        return NULL;
    }
    const int zero = 0;
    if (dmri_proto_socket_setup(s, 0, f->max_chunk, err) != 0 || dmri_auth_client_setup(s, f->auth, err) != 0 ||
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(s, ZMQ_SNDTIMEO, &zero, sizeof zero) != 0) {
        zmq_close(s);
        return NULL;
    }
    if (strchr(addr, '[')) {
        const int one = 1;
        zmq_setsockopt(s, ZMQ_IPV6, &one, sizeof one);
    }
    if (zmq_connect(s, addr) != 0) {
        dmri_err_set(err, DMRI_EIO, "peer address '%.300s' is unusable: %s", addr,
                     zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    if (f->npeers == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 8;
        f->peers = dmri_realloc(f->peers, (size_t)f->cap * sizeof *f->peers);
    }
    peer_t *p = &f->peers[f->npeers++];
    p->addr = dmri_strdup(addr);
    p->sock = s;
    p->last_used = now;
    p->nreq = 0;
    return p;
}

static void add_waiter(request_t *r, void *waiter, size_t index) {
    if (r->nw == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 4;
        r->w = dmri_realloc(r->w, r->cap * sizeof *r->w);
    }
    r->w[r->nw].waiter = waiter;
    r->w[r->nw].index = index;
    r->nw++;
}

int dmri_fetch_request(dmri_fetch_t *f, const char *addr, const char *key, void *waiter,
                       size_t index, double now, dmri_err_t *err) {
    for (request_t *r = f->reqs; r; r = r->next) {
        if (strcmp(r->key, key) == 0) {
            add_waiter(r, waiter, index);
            return 0;
        }
    }
    peer_t *p = peer_get(f, addr, now, err);
    if (!p)
        return DMRI_EIO;
    request_t *r = dmri_calloc(1, sizeof *r);
    r->id = f->next_id++;
    r->key = dmri_strdup(key);
    r->sock = p->sock;
    r->deadline = now + f->timeout;
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_DATA_GET);
    m.u.data_get.key = r->key;
    m.u.data_get.request = r->id;
    int rc = dmri_proto_send(p->sock, NULL, 0, &m, NULL, 0, NULL, NULL, err);
    if (rc != 0) {
        dmri_err_prefix(err, "peer %.300s: ", addr);
        request_free(r);
        return DMRI_EIO;
    }
    add_waiter(r, waiter, index);
    p->nreq++;
    p->last_used = now;
    r->next = f->reqs;
    f->reqs = r;
    f->nreqs++;
    return 0;
}

void dmri_fetch_cancel(dmri_fetch_t *f, void *waiter) {
    request_t **pp = &f->reqs;
    while (*pp) {
        request_t *r = *pp;
        size_t k = 0;
        for (size_t i = 0; i < r->nw; i++)
            if (r->w[i].waiter != waiter)
                r->w[k++] = r->w[i];
        r->nw = k;
        if (r->nw == 0) {
            /* Nobody wants it any more; a late answer is ignored. */
            *pp = r->next;
            peer_t *p = peer_of(f, r->sock);
            if (p)
                p->nreq--;
            request_free(r);
            f->nreqs--;
        } else {
            pp = &r->next;
        }
    }
}

/* Take request `id` out of the list (NULL if unknown: a late or forged answer). */
static request_t *take_request(dmri_fetch_t *f, uint64_t id) {
    for (request_t **pp = &f->reqs; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            request_t *r = *pp;
            *pp = r->next;
            r->next = NULL;
            f->nreqs--;
            peer_t *p = peer_of(f, r->sock);
            if (p)
                p->nreq--;
            return r;
        }
    }
    return NULL;
}

/* Tell every waiter of a finished request, then free it. entry: one
 * reference, handed to the first waiter (the others get their own). */
static void finish(dmri_fetch_t *f, request_t *r, dmri_wstore_entry_t *entry, const char *error) {
    for (size_t i = 0; i < r->nw; i++) {
        if (entry && i > 0)
            dmri_wstore_ref(entry);
        f->done(f->ctx, r->w[i].waiter, r->w[i].index, r->key, entry, error);
    }
    if (entry && r->nw == 0)
        dmri_wstore_unref(entry);
    request_free(r);
}

static void on_message(dmri_fetch_t *f, peer_t *p, dmri_msg_t *m, dmri_payload_t *pl,
                       double now) {
    char why[700];
    if (m->type == DMRI_MSG_DATA) {
        request_t *r = take_request(f, m->u.data.request);
        if (!r)
            return;
        if (strcmp(r->key, m->u.data.key) != 0) {
            snprintf(why, sizeof why, "peer %.300s answered with %.100s", p->addr,
                     m->u.data.key);
            finish(f, r, NULL, why);
            return;
        }
        size_t n = dmri_payload_size(pl);
        void *copy = dmri_malloc(n);
        if (n)
            memcpy(copy, dmri_payload_data(pl), n);
        dmri_wstore_entry_t *e = NULL;
        int rc = dmri_wstore_put(f->store, r->key, copy, n, DMRI_WSTORE_TRANSIENT,
                                dmri_wstore_generation(f->store), &e);
        if (rc != 0) {
            snprintf(why, sizeof why, "cannot keep the chunk: %s", dmri_strerror(rc));
            finish(f, r, NULL, why);
        } else {
            finish(f, r, e, NULL);
        }
    } else if (m->type == DMRI_MSG_DATA_MISSING) {
        request_t *r = take_request(f, m->u.data_missing.request);
        if (!r)
            return;
        snprintf(why, sizeof why, "peer %.300s does not hold it%s%.300s", p->addr,
                 m->u.data_missing.error[0] ? ": " : "", m->u.data_missing.error);
        finish(f, r, NULL, why);
    } else if (m->type == DMRI_MSG_ERROR) {
        dmri_wlog_limited(&f->lim, now, "peer %s reports an error: %s", p->addr,
                          m->u.error.error);
    } else {
        dmri_wlog_limited(&f->lim, now, "peer %s sent an unexpected %s; ignored", p->addr,
                          dmri_msg_type_name(m->type));
    }
}

void dmri_fetch_drain(dmri_fetch_t *f, const zmq_pollitem_t *items, int n, double now) {
    for (int i = 0; i < n; i++) {
        if (!(items[i].revents & ZMQ_POLLIN))
            continue;
        /* Bounded, so one chatty peer cannot starve the loop. */
        for (int k = 0; k < 1000; k++) {
            peer_t *p = peer_of(f, items[i].socket);
            if (!p)
                break;
            dmri_msg_t m;
            dmri_payload_t pl = {0};
            dmri_err_t err = {0};
            int rc = dmri_proto_recv(p->sock, 0, NULL, NULL, &m, &pl, NULL, &err);
            if (rc == DMRI_ECANCEL)
                break;
            if (rc != 0) {
                dmri_wlog_limited(&f->lim, now, "malformed message from peer %s: %s", p->addr,
                                  err.msg);
                if (rc == DMRI_EIO)
                    break;
                continue;
            }
            p->last_used = now;
            on_message(f, p, &m, &pl, now);
            dmri_payload_close(&pl);
            dmri_msg_clear(&m);
        }
    }
}

void dmri_fetch_expire(dmri_fetch_t *f, double now) {
    for (;;) {
        request_t *late = NULL;
        for (request_t *r = f->reqs; r; r = r->next)
            if (r->deadline <= now) {
                late = r;
                break;
            }
        if (!late)
            break;
        late = take_request(f, late->id);
        peer_t *p = peer_of(f, late->sock);
        char why[600];
        snprintf(why, sizeof why, "peer %.300s: no answer in %.0f s", p ? p->addr : "?",
                 f->timeout);
        /* The peer is probably gone: once nothing else waits on it, drop its
         * socket and whatever is queued there; the next request reconnects. */
        if (p && p->nreq == 0)
            peer_close(f, (int)(p - f->peers));
        finish(f, late, NULL, why);
    }
    for (int i = f->npeers - 1; i >= 0; i--)
        if (f->peers[i].nreq == 0 && now - f->peers[i].last_used > PEER_IDLE_S)
            peer_close(f, i);
}

double dmri_fetch_next_deadline(const dmri_fetch_t *f) {
    double d = 1e300;
    for (const request_t *r = f->reqs; r; r = r->next)
        if (r->deadline < d)
            d = r->deadline;
    return d;
}

int dmri_fetch_pollitems(dmri_fetch_t *f, zmq_pollitem_t *items, int max) {
    int n = 0;
    for (int i = 0; i < f->npeers && n < max; i++) {
        items[n].socket = f->peers[i].sock;
        items[n].fd = 0;
        items[n].events = ZMQ_POLLIN;
        items[n].revents = 0;
        n++;
    }
    return n;
}

int dmri_fetch_npeers(const dmri_fetch_t *f) { return f->npeers; }

size_t dmri_fetch_pending(const dmri_fetch_t *f) { return f->nreqs; }
