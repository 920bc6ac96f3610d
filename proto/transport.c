/* transport: protocol messages on ZeroMQ sockets (transport.h). Owns the
 * framing rules of PROTOCOL.md — [identity] header [payload] — and the
 * promise that a receive always consumes one whole multipart message, so a
 * malformed one is reported and the next one is read cleanly. */
#include "transport.h"

#include <errno.h>
#include <string.h>

#include "dmri_alloc.h"

const void *dmri_payload_data(dmri_payload_t *p) {
    return p && p->present ? zmq_msg_data(&p->msg) : NULL;
}

size_t dmri_payload_size(const dmri_payload_t *p) {
    return p && p->present ? zmq_msg_size(&p->msg) : 0;
}

void dmri_payload_close(dmri_payload_t *p) {
    if (p && p->present) {
        zmq_msg_close(&p->msg);
        p->present = 0;
    }
}

/* Ownership of a zero-copy payload passes to us on entry: every path that
 * does not hand it to ZeroMQ must release it, exactly once. */
static void transport_release(const void *payload, void (*free_fn)(void *, void *), void *hint) {
    if (payload && free_fn)
        free_fn((void *)payload, hint);
}

int dmri_proto_send(void *sock, const void *ident, size_t ident_len, const dmri_msg_t *m,
                    const void *payload, size_t payload_len, void (*free_fn)(void *, void *),
                    void *hint, dmri_err_t *err) {
    const char *name = dmri_msg_type_name(m->type);
    uint8_t *hdr = NULL;
    size_t hlen = 0;
    int e;
    if (!payload && payload_len) {
        return dmri_err_set(err, DMRI_EINVAL, "send %s: payload of %zu bytes without data", name,
                            payload_len);
    }
    if (dmri_msg_encode(m, &hdr, &hlen)) {
        transport_release(payload, free_fn, hint);
        return dmri_err_set(err, DMRI_EINVAL,
                            "send %s: cannot encode (unknown type or a field over the protocol "
                            "limits)",
                            name);
    }
    /* With ROUTER_MANDATORY an unknown or full peer fails here, on the first
     * frame, before any part of the message is queued. */
    if (ident && zmq_send(sock, ident, ident_len, ZMQ_SNDMORE) < 0)
        goto fail;
    if (zmq_send(sock, hdr, hlen, payload ? ZMQ_SNDMORE : 0) < 0)
        goto fail;
    dmri_free(hdr);
    hdr = NULL;
    if (!payload)
        return 0;
    if (free_fn) {
        zmq_msg_t pm;
        if (zmq_msg_init_data(&pm, (void *)payload, payload_len, free_fn, hint) < 0)
            goto fail;
        /* From here the zmq_msg_t owns the payload: on a failed send,
         * closing it is what calls free_fn (once). */
        if (zmq_msg_send(&pm, sock, 0) < 0) {
            e = errno;
            zmq_msg_close(&pm);
            return dmri_err_set(err, DMRI_EIO, "send %s payload: %s", name, zmq_strerror(e));
        }
        return 0;
    }
    if (zmq_send(sock, payload, payload_len, 0) < 0) {
        e = errno;
        return dmri_err_set(err, DMRI_EIO, "send %s payload: %s", name, zmq_strerror(e));
    }
    return 0;
fail:
    e = errno;
    dmri_free(hdr);
    transport_release(payload, free_fn, hint);
    return dmri_err_set(err, DMRI_EIO, "send %s: %s", name, zmq_strerror(e));
}

int dmri_proto_recv(void *sock, int is_router, uint8_t *ident, size_t *ident_len, dmri_msg_t *m,
                    dmri_payload_t *payload, int *peer_version, dmri_err_t *err) {
    zmq_msg_t f, hdr, pay;
    int have_hdr = 0, have_pay = 0, ident_bad = 0;
    size_t nframes = 0, extra = 0, ident_size = 0;
    int rc = 0;

    dmri_msg_init(m, 0);
    if (payload)
        payload->present = 0;
    if (ident_len)
        *ident_len = 0;

    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, sock, ZMQ_DONTWAIT) < 0) {
        int e = errno;
        zmq_msg_close(&f);
        /* EINTR: nothing was taken off the socket either, try again later */
        if (e == EAGAIN || e == EINTR)
            return dmri_err_set(err, DMRI_ECANCEL, "no message waiting");
        return dmri_err_set(err, DMRI_EIO, "receive: %s", zmq_strerror(e));
    }
    /* Drain every frame of the message whatever it holds; keep the identity,
     * the first two frames after it, and count the rest. */
    for (;;) {
        int more = zmq_msg_more(&f);
        size_t idx = nframes++;
        if (is_router && idx == 0) {
            ident_size = zmq_msg_size(&f);
            if (ident_size > DMRI_IDENT_MAX || ident_size == 0) {
                ident_bad = 1;
            } else {
                if (ident)
                    memcpy(ident, zmq_msg_data(&f), ident_size);
                if (ident_len)
                    *ident_len = ident_size;
            }
            zmq_msg_close(&f);
        } else if (!have_hdr) {
            zmq_msg_init(&hdr);
            zmq_msg_move(&hdr, &f);
            zmq_msg_close(&f);
            have_hdr = 1;
        } else if (!have_pay) {
            zmq_msg_init(&pay);
            zmq_msg_move(&pay, &f);
            zmq_msg_close(&f);
            have_pay = 1;
        } else {
            zmq_msg_close(&f);
            extra++;
        }
        if (!more)
            break;
        /* the rest of a multipart message arrives with its first frame */
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, sock, 0) < 0) {
            int e = errno;
            zmq_msg_close(&f);
            rc = dmri_err_set(err, DMRI_EIO, "receive (frame %zu): %s", nframes, zmq_strerror(e));
            goto out;
        }
    }

    if (ident_bad) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "identity frame of %zu bytes (expected 1..%d)",
                          ident_size, DMRI_IDENT_MAX);
    } else {
        /* the one decision on what the frames mean, shared with the fuzzer */
        rc = dmri_msg_decode_frames(have_hdr ? zmq_msg_data(&hdr) : NULL,
                                    have_hdr ? zmq_msg_size(&hdr) : 0,
                                    (size_t)have_hdr + (size_t)have_pay + extra,
                                    have_pay ? zmq_msg_size(&pay) : 0, m, peer_version, err);
    }
    if (rc == 0 && have_pay && payload) {
        zmq_msg_init(&payload->msg);
        zmq_msg_move(&payload->msg, &pay);
        payload->present = 1;
    }
out:
    if (have_hdr)
        zmq_msg_close(&hdr);
    if (have_pay)
        zmq_msg_close(&pay);
    return rc;
}

static int transport_setopt(void *sock, int opt, const char *optname, const void *v, size_t n,
                            dmri_err_t *err) {
    if (zmq_setsockopt(sock, opt, v, n) < 0) {
        int e = errno;
        return dmri_err_set(err, DMRI_EIO, "zmq_setsockopt(%s): %s", optname, zmq_strerror(e));
    }
    return 0;
}

int dmri_proto_socket_setup(void *sock, int is_router, int64_t max_msg, dmri_err_t *err) {
    /* heartbeats notice a silent peer (a dead host, a cut link) within ~5 s;
     * HWMs well above the number of messages a job keeps in flight */
    const int ivl = 1000, timeout = 5000, ttl = 5000, hwm = 10000, one = 1;
#define DMRI_SETOPT(opt, v) \
    if (transport_setopt(sock, opt, #opt, &(v), sizeof(v), err)) return DMRI_EIO
    DMRI_SETOPT(ZMQ_HEARTBEAT_IVL, ivl);
    DMRI_SETOPT(ZMQ_HEARTBEAT_TIMEOUT, timeout);
    DMRI_SETOPT(ZMQ_HEARTBEAT_TTL, ttl);
    DMRI_SETOPT(ZMQ_SNDHWM, hwm);
    DMRI_SETOPT(ZMQ_RCVHWM, hwm);
    if (max_msg > 0)
        DMRI_SETOPT(ZMQ_MAXMSGSIZE, max_msg);
    if (is_router) {
        DMRI_SETOPT(ZMQ_ROUTER_MANDATORY, one);
        /* A peer with a fixed routing id that reconnects (after a dropped
         * link, e.g. a frame over ZMQ_MAXMSGSIZE) would otherwise be ignored
         * for good if its old pipe is not gone yet: the new link takes over. */
        DMRI_SETOPT(ZMQ_ROUTER_HANDOVER, one);
    }
#undef DMRI_SETOPT
    return 0;
}
