/* proto: every message of the dmri wire protocol (proto/PROTOCOL.md), its
 * msgpack encoding and its validation. The table of messages lives in
 * proto/messages.def; this module turns it into C structs, an encoder and a
 * decoder that checks bounds before every read and never trusts a peer. It
 * knows nothing of sockets (see transport.h), so it can be fuzzed alone. */
#ifndef DMRI_PROTO_H
#define DMRI_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "dmri_err.h"

#define DMRI_PROTO_VERSION 1
#define DMRI_PROTO_MAGIC "dmri"
#define DMRI_PROTO_MAX_HEADER (16u << 20) /* bytes of the msgpack header frame */
#define DMRI_PROTO_MAX_STR 4096           /* bytes of one str field */
#define DMRI_PROTO_MAX_LIST (1u << 20)    /* entries of one list field */

typedef struct {
    size_t n;
    char **v; /* n NUL-terminated strings */
} dmri_strlist_t;

typedef struct {
    size_t n;
    uint64_t *v;
} dmri_u64list_t;

typedef struct {
    size_t n;
    double *v;
} dmri_f64list_t;

typedef struct {
    size_t len;
    uint8_t *data;
} dmri_bin_t;

/* C type of each field type of messages.def. */
#define DMRI_FT_CTYPE_UINT uint64_t
#define DMRI_FT_CTYPE_INT int64_t
#define DMRI_FT_CTYPE_FLOAT double
#define DMRI_FT_CTYPE_STR char *          /* never NULL after decode: "" when absent */
#define DMRI_FT_CTYPE_STRS dmri_strlist_t
#define DMRI_FT_CTYPE_UINTS dmri_u64list_t
#define DMRI_FT_CTYPE_FLOATS dmri_f64list_t
#define DMRI_FT_CTYPE_BIN dmri_bin_t

/* One struct per message: dmri_msg_<lname>_t with the fields of the table,
 * absent optional fields are zero / "" / empty. */
#define DMRI_F(TYPE, field, required) DMRI_FT_CTYPE_##TYPE field;
#define DMRI_MSG(NAME, lname, code, fields) \
    typedef struct {                        \
        fields                              \
    } dmri_msg_##lname##_t;
#include "messages.def"
#undef DMRI_MSG
#undef DMRI_F

typedef enum {
#define DMRI_MSG(NAME, lname, code, fields) DMRI_MSG_##NAME = code,
#include "messages.def"
#undef DMRI_MSG
} dmri_msg_type_t;

typedef struct {
    int type; /* dmri_msg_type_t */
    union {
#define DMRI_MSG(NAME, lname, code, fields) dmri_msg_##lname##_t lname;
#include "messages.def"
#undef DMRI_MSG
    } u;
} dmri_msg_t;

/* Zero a message and set its type (fields then filled by the caller; strings
 * the caller sets are NOT freed by dmri_msg_clear unless they were allocated
 * by dmri_msg_decode — use dmri_msg_clear only on decoded messages). */
void dmri_msg_init(dmri_msg_t *m, int type);

/* Encode the header frame of m into a new buffer (*buf, dmri_free it).
 * NULL str fields are encoded as "". Returns DMRI_EINVAL for an unknown type. */
int dmri_msg_encode(const dmri_msg_t *m, uint8_t **buf, size_t *len);

/* Decode and validate a header frame. Returns 0; DMRI_EFORMAT when malformed
 * (err says what: "TASK_DONE: field 'out_keys' is not an array of str");
 * DMRI_EUNSUP when the magic is right but the version differs (err names both
 * versions, *peer_version gets the peer's, m->type the type if readable).
 * On success the strings and lists of m are allocated: free with
 * dmri_msg_clear. On failure m holds nothing to free. peer_version may be NULL. */
int dmri_msg_decode(const uint8_t *buf, size_t len, dmri_msg_t *m, int *peer_version,
                    dmri_err_t *err);

/* What a received message means, from its frames (after the ROUTER
 * identity): `nframes` of them, the first the header (hdr, hdr_len), the
 * second (if any) a payload of payload_len bytes. Applies the framing rules of
 * PROTOCOL.md — a header is required, at most one payload frame, only DATA
 * and RESULT carry one, of exactly `size` bytes — then dmri_msg_decode.
 * Returns and frees as dmri_msg_decode. This is what dmri_proto_recv calls
 * and what tests/fuzz/fuzz_proto.c fuzzes: no socket needed. */
int dmri_msg_decode_frames(const uint8_t *hdr, size_t hdr_len, size_t nframes, size_t payload_len,
                           dmri_msg_t *m, int *peer_version, dmri_err_t *err);

/* Free what dmri_msg_decode allocated; m becomes an empty message of type 0. */
void dmri_msg_clear(dmri_msg_t *m);

/* Tests only: make dmri_msg_encode write another protocol version (to check
 * that peers refuse it). Not thread-safe; call before any encoding. */
void dmri_proto_set_send_version(int version);

/* "TASK_DONE", or "unknown" */
const char *dmri_msg_type_name(int type);

#endif
