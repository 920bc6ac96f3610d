/* proto: the msgpack codec of the dmri wire protocol (proto.h, PROTOCOL.md).
 * Both directions are driven by one field table generated from messages.def.
 * Decoding never trusts the bytes: a bounded scan checks the whole frame
 * (lengths against the bytes left, nesting depth, object count, trailing
 * bytes) before msgpack-c builds any object, so a short frame cannot make it
 * allocate gigabytes or recurse; then every object's type is checked before
 * use. Every failure leaves through one path that frees what was built. */
#include "proto.h"

#include <inttypes.h>
#include <limits.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "dmri_alloc.h"

/* Nesting deeper than this anywhere in a header is malformed. A valid body
 * needs 3 levels (array, map, list field); msgpack-c itself gives up at 32. */
#define PROTO_MAX_DEPTH 16
/* Objects (array entries, map keys and values) in one header. Each costs
 * msgpack-c 24 bytes; this bounds what a 16 MiB frame can make us allocate
 * while leaving room for two full lists. */
#define PROTO_MAX_OBJECTS (4u << 20)

enum { FT_UINT, FT_INT, FT_FLOAT, FT_STR, FT_STRS, FT_UINTS, FT_FLOATS, FT_BIN };

typedef struct {
    const char *name; /* key on the wire */
    int type;         /* FT_* */
    int required;     /* missing makes the message malformed */
    size_t offset;    /* within the message's struct (= within dmri_msg_t.u) */
} proto_field_t;

/* One function per message returning its field table; the block-scope
 * typedef lets DMRI_F use offsetof without knowing the message's name. */
#define DMRI_F(TYPE, field, required) {#field, FT_##TYPE, required, offsetof(proto_cur_t, field)},
#define DMRI_MSG(NAME, lname, code, fields)                          \
    static const proto_field_t *proto_fields_##lname(size_t *n) {    \
        typedef dmri_msg_##lname##_t proto_cur_t;                    \
        static const proto_field_t f[] = {fields};                   \
        _Static_assert(sizeof f / sizeof f[0] <= 64, "seen bitmask"); \
        *n = sizeof f / sizeof f[0];                                 \
        return f;                                                    \
    }
#include "messages.def"
#undef DMRI_MSG
#undef DMRI_F

/* Field table and name of a message type; NULL for an unknown type. A code
 * used twice in messages.def fails to compile here (duplicate case). */
static const proto_field_t *proto_lookup(int type, const char **name, size_t *n) {
    switch (type) {
#define DMRI_MSG(NAME, lname, code, fields) \
    case code:                              \
        *name = #NAME;                      \
        return proto_fields_##lname(n);
#include "messages.def"
#undef DMRI_MSG
    default:
        *name = "unknown";
        *n = 0;
        return NULL;
    }
}

const char *dmri_msg_type_name(int type) {
    const char *name;
    size_t n;
    proto_lookup(type, &name, &n);
    return name;
}

void dmri_msg_init(dmri_msg_t *m, int type) {
    memset(m, 0, sizeof *m);
    m->type = type;
}

void dmri_msg_clear(dmri_msg_t *m) {
    const char *name;
    size_t nf;
    const proto_field_t *f = proto_lookup(m->type, &name, &nf);
    for (size_t i = 0; f && i < nf; i++) {
        void *p = (char *)&m->u + f[i].offset;
        switch (f[i].type) {
        case FT_STR:
            dmri_free(*(char **)p);
            break;
        case FT_STRS: {
            dmri_strlist_t *l = p;
            for (size_t k = 0; l->v && k < l->n; k++)
                dmri_free(l->v[k]);
            dmri_free(l->v);
            break;
        }
        case FT_UINTS:
            dmri_free(((dmri_u64list_t *)p)->v);
            break;
        case FT_FLOATS:
            dmri_free(((dmri_f64list_t *)p)->v);
            break;
        case FT_BIN:
            dmri_free(((dmri_bin_t *)p)->data);
            break;
        default:
            break;
        }
    }
    dmri_msg_init(m, 0);
}

/* ---- encoding ---------------------------------------------------------- */

/* Growable output buffer in dmri_alloc memory (out of memory aborts there,
 * so the packer's callbacks cannot fail). */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} proto_wbuf_t;

static int proto_wbuf_write(void *data, const char *p, size_t n) {
    proto_wbuf_t *w = data;
    if (n == 0)
        return 0;
    if (w->cap - w->len < n) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        while (cap - w->len < n)
            cap *= 2;
        w->data = dmri_realloc(w->data, cap);
        w->cap = cap;
    }
    memcpy(w->data + w->len, p, n);
    w->len += n;
    return 0;
}

static int proto_pack_str(msgpack_packer *pk, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n > DMRI_PROTO_MAX_STR)
        return -1;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
    return 0;
}

static int proto_pack_field(msgpack_packer *pk, int type, const void *p) {
    switch (type) {
    case FT_UINT:
        return msgpack_pack_uint64(pk, *(const uint64_t *)p);
    case FT_INT:
        return msgpack_pack_int64(pk, *(const int64_t *)p);
    case FT_FLOAT:
        return msgpack_pack_double(pk, *(const double *)p);
    case FT_STR:
        return proto_pack_str(pk, *(char *const *)p);
    case FT_STRS: {
        const dmri_strlist_t *l = p;
        if (l->n > DMRI_PROTO_MAX_LIST || (l->n && !l->v))
            return -1;
        msgpack_pack_array(pk, l->n);
        for (size_t i = 0; i < l->n; i++)
            if (proto_pack_str(pk, l->v[i]))
                return -1;
        return 0;
    }
    case FT_UINTS: {
        const dmri_u64list_t *l = p;
        if (l->n > DMRI_PROTO_MAX_LIST || (l->n && !l->v))
            return -1;
        msgpack_pack_array(pk, l->n);
        for (size_t i = 0; i < l->n; i++)
            msgpack_pack_uint64(pk, l->v[i]);
        return 0;
    }
    case FT_FLOATS: {
        const dmri_f64list_t *l = p;
        if (l->n > DMRI_PROTO_MAX_LIST || (l->n && !l->v))
            return -1;
        msgpack_pack_array(pk, l->n);
        for (size_t i = 0; i < l->n; i++)
            msgpack_pack_double(pk, l->v[i]);
        return 0;
    }
    case FT_BIN: {
        const dmri_bin_t *b = p;
        if (b->len > DMRI_PROTO_MAX_HEADER || (b->len && !b->data))
            return -1;
        msgpack_pack_bin(pk, b->len);
        msgpack_pack_bin_body(pk, b->data, b->len);
        return 0;
    }
    default:
        return -1;
    }
}

/* Every field is written, optional ones too (zero values decode to the same
 * thing as absence), so the encoding of a message is deterministic. A field
 * over the protocol's limits is refused here rather than by the peer. */
/* The version this process speaks: DMRI_PROTO_VERSION, except in tests
 * that check how peers refuse another one. */
static int send_version = DMRI_PROTO_VERSION;

void dmri_proto_set_send_version(int version) { send_version = version > 0 ? version : DMRI_PROTO_VERSION; }

int dmri_msg_encode(const dmri_msg_t *m, uint8_t **buf, size_t *len) {
    const char *name;
    size_t nf;
    const proto_field_t *f = proto_lookup(m->type, &name, &nf);
    *buf = NULL;
    *len = 0;
    if (!f)
        return DMRI_EINVAL;
    proto_wbuf_t w = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w, proto_wbuf_write);
    msgpack_pack_array(&pk, 4);
    proto_pack_str(&pk, DMRI_PROTO_MAGIC);
    msgpack_pack_uint64(&pk, (uint64_t)send_version);
    msgpack_pack_uint64(&pk, (uint64_t)m->type);
    msgpack_pack_map(&pk, nf);
    for (size_t i = 0; i < nf; i++) {
        proto_pack_str(&pk, f[i].name);
        if (proto_pack_field(&pk, f[i].type, (const char *)&m->u + f[i].offset))
            goto invalid;
    }
    if (w.len > DMRI_PROTO_MAX_HEADER)
        goto invalid;
    *buf = w.data;
    *len = w.len;
    return 0;
invalid:
    dmri_free(w.data);
    return DMRI_EINVAL;
}

/* ---- bounded scan -------------------------------------------------------- */

static int proto_read_be(const uint8_t *p, size_t len, size_t *pos, int nbytes, uint64_t *out) {
    if (len - *pos < (size_t)nbytes)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++)
        v = v << 8 | p[*pos + (size_t)i];
    *pos += (size_t)nbytes;
    *out = v;
    return 0;
}

/* Walk one msgpack object spanning exactly buf[0..len) without building it.
 * Iterative (a stack of remaining entry counts), so depth costs no C stack;
 * every declared length is checked against the bytes left before it counts. */
static int proto_scan(const uint8_t *p, size_t len, dmri_err_t *err) {
    uint64_t pending[PROTO_MAX_DEPTH + 1];
    int depth = 0;
    uint64_t objects = 0;
    size_t pos = 0;
    pending[0] = 1;
    for (;;) {
        while (depth > 0 && pending[depth] == 0)
            depth--;
        if (pending[depth] == 0)
            break;
        pending[depth]--;
        if (pos >= len)
            return dmri_err_set(err, DMRI_EFORMAT, "header is truncated (%zu bytes)", len);
        size_t at = pos;
        uint8_t b = p[pos++];
        uint64_t skip = 0, count = 0, v = 0;
        int lenbytes = 0, extra = 0, container = 0;
        if (b <= 0x7f || b >= 0xe0) {
            /* fixint */
        } else if (b <= 0x8f) {
            count = 2u * (b & 0x0fu);
            container = 1;
        } else if (b <= 0x9f) {
            count = b & 0x0fu;
            container = 1;
        } else if (b <= 0xbf) {
            skip = b & 0x1fu;
        } else {
            switch (b) {
            case 0xc0: case 0xc2: case 0xc3: break;                    /* nil, bool */
            case 0xc4: case 0xd9: lenbytes = 1; break;                 /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;                 /* bin16, str16 */
            case 0xc6: case 0xdb: lenbytes = 4; break;                 /* bin32, str32 */
            case 0xc7: lenbytes = 1; extra = 1; break;                 /* ext8 */
            case 0xc8: lenbytes = 2; extra = 1; break;                 /* ext16 */
            case 0xc9: lenbytes = 4; extra = 1; break;                 /* ext32 */
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xca: case 0xce: case 0xd2: skip = 4; break;
            case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;                                /* fixext1..16 */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: case 0xde: lenbytes = 2; container = 1; break;  /* array16, map16 */
            case 0xdd: case 0xdf: lenbytes = 4; container = 1; break;  /* array32, map32 */
            default:
                return dmri_err_set(err, DMRI_EFORMAT,
                                    "header is not msgpack (byte 0x%02x at offset %zu)", b, at);
            }
            if (lenbytes) {
                if (proto_read_be(p, len, &pos, lenbytes, &v))
                    return dmri_err_set(err, DMRI_EFORMAT, "header is truncated (%zu bytes)", len);
                if (container)
                    count = (b == 0xde || b == 0xdf) ? 2 * v : v;
                else
                    skip = v + (uint64_t)extra;
            }
        }
        if (skip > len - pos)
            return dmri_err_set(err, DMRI_EFORMAT,
                                "header is truncated: the value at offset %zu claims %" PRIu64
                                " bytes, %zu remain",
                                at, skip, len - pos);
        pos += (size_t)skip;
        if (container && count > 0) {
            /* every entry takes at least one byte */
            if (count > len - pos)
                return dmri_err_set(err, DMRI_EFORMAT,
                                    "header is truncated: the container at offset %zu claims %" PRIu64
                                    " entries, %zu bytes remain",
                                    at, count, len - pos);
            objects += count;
            if (objects > PROTO_MAX_OBJECTS)
                return dmri_err_set(err, DMRI_EFORMAT, "header holds more than %u msgpack objects",
                                    PROTO_MAX_OBJECTS);
            if (depth == PROTO_MAX_DEPTH)
                return dmri_err_set(err, DMRI_EFORMAT,
                                    "header nests deeper than %d levels (offset %zu)",
                                    PROTO_MAX_DEPTH, at);
            pending[++depth] = count;
        }
    }
    if (pos != len)
        return dmri_err_set(err, DMRI_EFORMAT, "%zu trailing bytes after the header's msgpack array",
                            len - pos);
    return 0;
}

/* ---- decoding ------------------------------------------------------------- */

static const char *proto_objtype(const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "negative int";
    case MSGPACK_OBJECT_FLOAT32: return "float32";
    case MSGPACK_OBJECT_FLOAT64: return "float64";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_EXT: return "ext";
    default: return "unknown";
    }
}

static int proto_is_float(const msgpack_object *o) {
    return o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64 ||
           o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

static double proto_as_double(const msgpack_object *o) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (double)o->via.i64;
    return o->via.f64;
}

/* A str object into a new NUL-terminated string, or an error naming it;
 * `what` is "field 'name'" or "field 'name' entry 3". */
static int proto_get_str(const msgpack_object *o, char **out, const char *msg, const char *what,
                         dmri_err_t *err) {
    if (o->type != MSGPACK_OBJECT_STR)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: %s is not a str (got %s)", msg, what,
                            proto_objtype(o));
    size_t n = o->via.str.size;
    if (n > DMRI_PROTO_MAX_STR)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: %s is a str of %zu bytes (limit %d)", msg, what,
                            n, DMRI_PROTO_MAX_STR);
    if (n && memchr(o->via.str.ptr, '\0', n))
        return dmri_err_set(err, DMRI_EFORMAT, "%s: %s contains a NUL byte", msg, what);
    char *s = dmri_malloc(n + 1);
    if (n)
        memcpy(s, o->via.str.ptr, n);
    s[n] = '\0';
    *out = s;
    return 0;
}

static int proto_get_list(const msgpack_object *o, const char *msg, const proto_field_t *f,
                          const char *of, dmri_err_t *err) {
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' is not an array of %s (got %s)", msg,
                            f->name, of, proto_objtype(o));
    if (o->via.array.size > DMRI_PROTO_MAX_LIST)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' has %" PRIu32 " entries (limit %u)",
                            msg, f->name, o->via.array.size, DMRI_PROTO_MAX_LIST);
    return 0;
}

/* Decode one field into p (zeroed before). Allocations are stored in p as
 * soon as they are made, so dmri_msg_clear frees a half-decoded field. */
static int proto_get_field(const msgpack_object *o, const char *msg, const proto_field_t *f,
                           void *p, dmri_err_t *err) {
    char what[80];
    switch (f->type) {
    case FT_UINT:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' is not a uint (got %s)", msg,
                                f->name, proto_objtype(o));
        *(uint64_t *)p = o->via.u64;
        return 0;
    case FT_INT:
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            *(int64_t *)p = o->via.i64;
            return 0;
        }
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' is not an int (got %s)", msg,
                                f->name, proto_objtype(o));
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' (%" PRIu64 ") exceeds int64",
                                msg, f->name, o->via.u64);
        *(int64_t *)p = (int64_t)o->via.u64;
        return 0;
    case FT_FLOAT:
        if (!proto_is_float(o))
            return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' is not a float (got %s)", msg,
                                f->name, proto_objtype(o));
        *(double *)p = proto_as_double(o);
        return 0;
    case FT_STR:
        snprintf(what, sizeof what, "field '%s'", f->name);
        return proto_get_str(o, (char **)p, msg, what, err);
    case FT_STRS: {
        dmri_strlist_t *l = p;
        if (proto_get_list(o, msg, f, "str", err))
            return DMRI_EFORMAT;
        l->n = o->via.array.size;
        l->v = l->n ? dmri_calloc(l->n, sizeof *l->v) : NULL;
        for (size_t i = 0; i < l->n; i++) {
            snprintf(what, sizeof what, "field '%s' entry %zu", f->name, i);
            if (proto_get_str(&o->via.array.ptr[i], &l->v[i], msg, what, err))
                return DMRI_EFORMAT;
        }
        return 0;
    }
    case FT_UINTS: {
        dmri_u64list_t *l = p;
        if (proto_get_list(o, msg, f, "uint", err))
            return DMRI_EFORMAT;
        l->n = o->via.array.size;
        l->v = l->n ? dmri_calloc(l->n, sizeof *l->v) : NULL;
        for (size_t i = 0; i < l->n; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return dmri_err_set(err, DMRI_EFORMAT,
                                    "%s: field '%s' entry %zu is not a uint (got %s)", msg, f->name,
                                    i, proto_objtype(e));
            l->v[i] = e->via.u64;
        }
        return 0;
    }
    case FT_FLOATS: {
        dmri_f64list_t *l = p;
        if (proto_get_list(o, msg, f, "float", err))
            return DMRI_EFORMAT;
        l->n = o->via.array.size;
        l->v = l->n ? dmri_calloc(l->n, sizeof *l->v) : NULL;
        for (size_t i = 0; i < l->n; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            if (!proto_is_float(e))
                return dmri_err_set(err, DMRI_EFORMAT,
                                    "%s: field '%s' entry %zu is not a float (got %s)", msg,
                                    f->name, i, proto_objtype(e));
            l->v[i] = proto_as_double(e);
        }
        return 0;
    }
    case FT_BIN: {
        dmri_bin_t *b = p;
        if (o->type != MSGPACK_OBJECT_BIN)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' is not a bin (got %s)", msg,
                                f->name, proto_objtype(o));
        b->len = o->via.bin.size;
        b->data = b->len ? dmri_malloc(b->len) : NULL;
        if (b->len)
            memcpy(b->data, o->via.bin.ptr, b->len);
        return 0;
    }
    default:
        return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' has no decoder", msg, f->name);
    }
}

/* The body map into m (m->type set, fields zero). Duplicate known fields are
 * malformed: "last wins" would let two peers read one message differently. */
static int proto_get_body(const msgpack_object *body, const char *msg, const proto_field_t *f,
                          size_t nf, dmri_msg_t *m, dmri_err_t *err) {
    uint64_t seen = 0; /* messages.def has fewer than 64 fields per message */
    if (body->type != MSGPACK_OBJECT_MAP)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: body is not a map (got %s)", msg,
                            proto_objtype(body));
    for (uint32_t k = 0; k < body->via.map.size; k++) {
        const msgpack_object *key = &body->via.map.ptr[k].key;
        if (key->type != MSGPACK_OBJECT_STR)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: body key %" PRIu32 " is not a str (got %s)",
                                msg, k, proto_objtype(key));
        size_t i;
        for (i = 0; i < nf; i++)
            if (strlen(f[i].name) == key->via.str.size &&
                memcmp(f[i].name, key->via.str.ptr, key->via.str.size) == 0)
                break;
        if (i == nf)
            continue; /* unknown fields are ignored (PROTOCOL.md) */
        if (seen & (UINT64_C(1) << i))
            return dmri_err_set(err, DMRI_EFORMAT, "%s: field '%s' appears twice", msg, f[i].name);
        seen |= UINT64_C(1) << i;
        if (proto_get_field(&body->via.map.ptr[k].val, msg, &f[i], (char *)&m->u + f[i].offset,
                            err))
            return DMRI_EFORMAT;
    }
    for (size_t i = 0; i < nf; i++) {
        if (seen & (UINT64_C(1) << i))
            continue;
        if (f[i].required)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: required field '%s' is missing", msg,
                                f[i].name);
        if (f[i].type == FT_STR)
            *(char **)((char *)&m->u + f[i].offset) = dmri_strdup("");
    }
    return 0;
}

int dmri_msg_decode(const uint8_t *buf, size_t len, dmri_msg_t *m, int *peer_version,
                    dmri_err_t *err) {
    int rc;
    dmri_msg_init(m, 0);
    if (len == 0 || !buf)
        return dmri_err_set(err, DMRI_EFORMAT, "header frame is empty");
    if (len > DMRI_PROTO_MAX_HEADER)
        return dmri_err_set(err, DMRI_EFORMAT, "header frame is %zu bytes (limit %u)", len,
                            DMRI_PROTO_MAX_HEADER);
    if (proto_scan(buf, len, err))
        return DMRI_EFORMAT;

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    if (msgpack_unpack_next(&up, (const char *)buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "header is not valid msgpack");
        goto out;
    }
    const msgpack_object *root = &up.data;
    if (root->type != MSGPACK_OBJECT_ARRAY) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "header is not a msgpack array (got %s)",
                          proto_objtype(root));
        goto out;
    }
    const msgpack_object_array *a = &root->via.array;
    const msgpack_object *magic = a->size > 0 ? &a->ptr[0] : NULL;
    if (!magic || magic->type != MSGPACK_OBJECT_STR || magic->via.str.size != 4 ||
        memcmp(magic->via.str.ptr, DMRI_PROTO_MAGIC, 4) != 0) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "header does not start with the magic \"%s\"",
                          DMRI_PROTO_MAGIC);
        goto out;
    }
    /* The version is read before anything else of the layout, so a peer of
     * another version is told so even if its header differs otherwise. */
    if (a->size < 2 || a->ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "header has no version (a non-negative int)");
        goto out;
    }
    uint64_t version = a->ptr[1].via.u64;
    if (peer_version)
        *peer_version = version > INT_MAX ? INT_MAX : (int)version;
    if (version != (uint64_t)send_version) {
        if (a->size > 2 && a->ptr[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            a->ptr[2].via.u64 <= INT_MAX)
            m->type = (int)a->ptr[2].via.u64;
        rc = dmri_err_set(err, DMRI_EUNSUP,
                          "protocol version %" PRIu64 " is not supported (this side speaks version %d)",
                          version, send_version);
        goto out;
    }
    if (a->size != 4) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "header array has %" PRIu32 " entries (expected 4)",
                          a->size);
        goto out;
    }
    const msgpack_object *t = &a->ptr[2];
    if (t->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "message type is not a uint (got %s)",
                          proto_objtype(t));
        goto out;
    }
    const char *name;
    size_t nf = 0;
    const proto_field_t *f = t->via.u64 <= INT_MAX ? proto_lookup((int)t->via.u64, &name, &nf) : NULL;
    if (!f) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "unknown message type %" PRIu64, t->via.u64);
        goto out;
    }
    m->type = (int)t->via.u64;
    rc = proto_get_body(&a->ptr[3], name, f, nf, m, err);
    if (rc)
        dmri_msg_clear(m);
out:
    msgpack_unpacked_destroy(&up);
    return rc;
}

/* Only DATA and RESULT carry a payload, of exactly `size` bytes (an absent
 * frame counts as 0 bytes), so callers may trust the two to agree. */
static int proto_check_payload(const dmri_msg_t *m, int present, size_t size,
                                   dmri_err_t *err) {
    uint64_t want;
    if (m->type == DMRI_MSG_DATA)
        want = m->u.data.size;
    else if (m->type == DMRI_MSG_RESULT)
        want = m->u.result.size;
    else if (present)
        return dmri_err_set(err, DMRI_EFORMAT, "%s carries a payload frame (only DATA and RESULT may)",
                            dmri_msg_type_name(m->type));
    else
        return 0;
    if (want != (uint64_t)size)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: field 'size' is %llu but the payload is %zu bytes",
                            dmri_msg_type_name(m->type), (unsigned long long)want, size);
    return 0;
}

int dmri_msg_decode_frames(const uint8_t *hdr, size_t hdr_len, size_t nframes, size_t payload_len,
                           dmri_msg_t *m, int *peer_version, dmri_err_t *err) {
    dmri_msg_init(m, 0);
    if (nframes == 0)
        return dmri_err_set(err, DMRI_EFORMAT, "message has no header frame");
    if (nframes > 2)
        return dmri_err_set(err, DMRI_EFORMAT,
                            "message has %zu frames after the header (at most 1 payload frame)",
                            nframes - 1);
    int rc = dmri_msg_decode(hdr, hdr_len, m, peer_version, err);
    if (rc == 0) {
        rc = proto_check_payload(m, nframes == 2, nframes == 2 ? payload_len : 0, err);
        if (rc)
            dmri_msg_clear(m);
    }
    return rc;
}
