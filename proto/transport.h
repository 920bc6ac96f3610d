/* transport: sending and receiving protocol messages on ZeroMQ sockets —
 * one header frame (proto.h) plus at most one raw payload frame, which is
 * never copied through msgpack. Receiving always drains the whole multipart
 * message, whatever it holds, so a malformed message cannot desynchronise a
 * socket. */
#ifndef DMRI_TRANSPORT_H
#define DMRI_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "proto.h"

#define DMRI_IDENT_MAX 256

/* Default ZMQ_MAXMSGSIZE (a per-frame limit) of the sockets that only receive
 * control messages (scheduler port 8786, a worker's peer socket): no valid
 * header frame is larger, and no payload frame is allowed there. */
#define DMRI_PROTO_DEFAULT_MAX_MSG ((int64_t)DMRI_PROTO_MAX_HEADER)
/* Default for the sockets that receive chunks (DATA payloads): a full-size
 * HCP chunk (145x174 x 16 slices x 8 volumes) is 12.9 MB as float32 and
 * 25.8 MB as float64, a slab of DTI maps 25.8 MB; 1 GiB leaves room for
 * chunking 40 times coarser (--slab-slices, --vols-per-task). */
#define DMRI_PROTO_DEFAULT_MAX_CHUNK ((int64_t)1 << 30)

typedef struct {
    zmq_msg_t msg;   /* valid only when present */
    int present;
} dmri_payload_t;

/* Payload bytes (NULL if absent) and size. */
const void *dmri_payload_data(dmri_payload_t *p);
size_t dmri_payload_size(const dmri_payload_t *p);
void dmri_payload_close(dmri_payload_t *p);  /* safe on an absent payload, twice */

/* Send m on `sock`. For a ROUTER socket pass the peer identity (else NULL,
 * 0). payload/payload_len: an optional raw frame; with free_fn != NULL it is
 * sent zero-copy and free_fn(payload, hint) is called when ZeroMQ is done
 * with it, else it is copied. Blocks only as ZeroMQ's send does (use
 * ZMQ_SNDTIMEO / ZMQ_ROUTER_MANDATORY as needed). Returns 0, or DMRI_EIO with
 * err holding zmq_strerror (EHOSTUNREACH for a ROUTER peer that is gone). */
int dmri_proto_send(void *sock, const void *ident, size_t ident_len, const dmri_msg_t *m,
                    const void *payload, size_t payload_len, void (*free_fn)(void *, void *),
                    void *hint, dmri_err_t *err);

/* Receive one message without blocking (ZMQ_DONTWAIT). is_router: the first
 * frame is the identity, copied to ident (DMRI_IDENT_MAX bytes), *ident_len.
 * Returns 0 (m decoded, payload filled or absent), DMRI_ECANCEL when nothing is
 * waiting (EAGAIN), DMRI_EFORMAT / DMRI_EUNSUP as dmri_msg_decode (the identity
 * is still filled so the caller can reply), or DMRI_EIO on a socket error.
 * On any non-zero return m and payload hold nothing to free. */
int dmri_proto_recv(void *sock, int is_router, uint8_t *ident, size_t *ident_len, dmri_msg_t *m,
                    dmri_payload_t *payload, int *peer_version, dmri_err_t *err);

/* Apply the socket options every dmri socket uses: linger 0 on close is not
 * set (callers decide), ZMQ heartbeats (1 s interval, 5 s timeout), a receive
 * size limit of `max_msg` bytes (0: none), ROUTER_MANDATORY on ROUTERs. */
int dmri_proto_socket_setup(void *sock, int is_router, int64_t max_msg, dmri_err_t *err);

#endif
