/* serve: DATA_GET on the peer socket, answered from the store (serve.h). */
#include "serve.h"

#include <stdio.h>

#include "executor.h"
#include "transport.h"

#define DRAIN_MAX 10000 /* requests per call, so the loop stays responsive */

void dmri_serve_init(dmri_serve_t *s, void *sock, dmri_wstore_t *store, const char *name) {
    s->sock = sock;
    s->store = store;
    s->name = name;
    dmri_wlog_limit_init(&s->lim, 10.0, 5);
}

static void free_chunk_sent(void *data, void *hint) {
    (void)data;
    dmri_wstore_unref(hint); /* ZeroMQ's I/O thread: the store is thread-safe */
}

static void reply_error(dmri_serve_t *s, const uint8_t *ident, size_t ilen, const char *why) {
    dmri_msg_t m;
    dmri_msg_init(&m, DMRI_MSG_ERROR);
    m.u.error.error = (char *)why;
    dmri_err_t err = {0};
    dmri_proto_send(s->sock, ident, ilen, &m, NULL, 0, NULL, NULL, &err);
}

static void serve_get(dmri_serve_t *s, const uint8_t *ident, size_t ilen,
                      const dmri_msg_data_get_t *g) {
    dmri_err_t err = {0};
    dmri_wstore_entry_t *e = dmri_wstore_acquire(s->store, g->key);
    const void *data = NULL;
    size_t size = 0;
    char why[DMRI_ERR_MSG_MAX + 300];
    if (!e) {
        snprintf(why, sizeof why, "worker %.200s does not hold %.200s", s->name, g->key);
    } else if (dmri_wstore_entry_data(e, &data, &size, &err) != 0) {
        snprintf(why, sizeof why, "worker %.100s lost %.100s: %s", s->name, g->key, err.msg);
        dmri_wstore_unref(e);
        e = NULL;
    }
    dmri_msg_t m;
    if (!e) {
        dmri_msg_init(&m, DMRI_MSG_DATA_MISSING);
        m.u.data_missing.key = g->key;
        m.u.data_missing.request = g->request;
        m.u.data_missing.error = why;
        dmri_proto_send(s->sock, ident, ilen, &m, NULL, 0, NULL, NULL, &err);
        return;
    }
    dmri_msg_init(&m, DMRI_MSG_DATA);
    m.u.data.key = g->key;
    m.u.data.request = g->request;
    m.u.data.size = size;
    /* Zero-copy: the reference goes with the frame and is dropped by
     * ZeroMQ (on success or failure) through free_chunk_sent. */
    if (dmri_proto_send(s->sock, ident, ilen, &m, data, size, free_chunk_sent, e, &err) != 0)
        dmri_wlog_limited(&s->lim, dmri_now(), "cannot send %s to a peer: %s", g->key,
                          err.msg);
}

void dmri_serve_drain(dmri_serve_t *s) {
    for (int k = 0; k < DRAIN_MAX; k++) {
        uint8_t ident[DMRI_IDENT_MAX];
        size_t ilen = 0;
        dmri_msg_t m;
        dmri_payload_t pl = {0};
        dmri_err_t err = {0};
        int pv = 0;
        int rc = dmri_proto_recv(s->sock, 1, ident, &ilen, &m, &pl, &pv, &err);
        if (rc == DMRI_ECANCEL)
            break;
        if (rc != 0) {
            dmri_wlog_limited(&s->lim, dmri_now(), "bad message on the peer socket: %s",
                              err.msg);
            if (rc == DMRI_EIO)
                break;
            if (ilen > 0) {
                char why[DMRI_ERR_MSG_MAX + 32];
                snprintf(why, sizeof why, "malformed message: %s", err.msg);
                reply_error(s, ident, ilen, why);
            }
            continue;
        }
        switch (m.type) {
        case DMRI_MSG_DATA_GET: serve_get(s, ident, ilen, &m.u.data_get); break;
        case DMRI_MSG_ERROR:
            dmri_wlog_limited(&s->lim, dmri_now(), "a peer reports an error: %s",
                              m.u.error.error);
            break;
        case DMRI_MSG_BYE: break;
        default: {
            char why[200];
            snprintf(why, sizeof why, "%s is not allowed on a worker's peer socket",
                     dmri_msg_type_name(m.type));
            dmri_wlog_limited(&s->lim, dmri_now(), "%s", why);
            reply_error(s, ident, ilen, why);
            break;
        }
        }
        dmri_payload_close(&pl);
        dmri_msg_clear(&m);
    }
}
