/* test_proto: the msgpack codec of proto.h. Round trips of every message of
 * messages.def (normal, extreme and empty values), bytes produced by Python's
 * msgpack, headers written by an independent encoder in this file with
 * fields omitted / mistyped / duplicated / unknown, a catalogue of malformed
 * headers with the error each must give, and a random-input and mutation
 * loop that must neither crash nor leak (run it under ASan too). */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmri_alloc.h"
#include "proto.h"

#include "check.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* ---- the table, seen from the test ------------------------------------- */

enum { T_UINT, T_INT, T_FLOAT, T_STR, T_STRS, T_UINTS, T_FLOATS, T_BIN };

typedef struct {
    const char *name;
    int type;
    int req;
} tfield_t;

#define DMRI_F(TYPE, field, req) {#field, T_##TYPE, req},
#define DMRI_MSG(NAME, lname, code, fields) static const tfield_t tf_##lname[] = {fields};
#include "messages.def"
#undef DMRI_MSG
#undef DMRI_F

typedef struct {
    int code;
    const char *name;
    const tfield_t *f;
    size_t nf;
} tmsg_t;

static const tmsg_t all_msgs[] = {
#define DMRI_MSG(NAME, lname, code, fields) {code, #NAME, tf_##lname, sizeof tf_##lname / sizeof(tfield_t)},
#include "messages.def"
#undef DMRI_MSG
};
#define NMSGS (sizeof all_msgs / sizeof all_msgs[0])

/* ---- values: fill, compare, zero ---------------------------------------- */

/* messages.def may have no field of a type (FLOATS today) */
#define TABLE_MAY_NOT_USE __attribute__((unused))

static char *long_str(size_t n, unsigned seed) {
    char *s = dmri_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + (i + seed) % 26);
    s[n] = '\0';
    return s;
}

/* mode 0: ordinary values; 1: extremes and long strings; 2: zero / empty */
static void fill_UINT(uint64_t *v, unsigned seed, int mode) {
    *v = mode == 1 ? UINT64_MAX - seed : mode == 2 ? 0 : (uint64_t)seed * 1000003u;
}
static void fill_INT(int64_t *v, unsigned seed, int mode) {
    *v = mode == 1 ? ((seed & 1) ? INT64_MIN : INT64_MAX) : mode == 2 ? 0 : -(int64_t)seed * 7;
}
static void fill_FLOAT(double *v, unsigned seed, int mode) {
    *v = mode == 1 ? ((seed & 1) ? -DBL_MAX : 4.9e-324) : mode == 2 ? 0.0 : seed + 0.1;
}
static void fill_STR(char **v, unsigned seed, int mode) {
    char b[64];
    if (mode == 1) {
        *v = long_str(DMRI_PROTO_MAX_STR, seed);
        return;
    }
    snprintf(b, sizeof b, "s-%u-\xc3\xa9/x", seed);
    *v = dmri_strdup(mode == 2 ? "" : b);
}
static void fill_STRS(dmri_strlist_t *v, unsigned seed, int mode) {
    v->n = mode == 2 ? 0 : 3;
    v->v = v->n ? dmri_calloc(v->n, sizeof *v->v) : NULL;
    if (!v->n)
        return;
    char b[64];
    snprintf(b, sizeof b, "J%u/raw/g3/s2", seed);
    v->v[0] = dmri_strdup(b);
    v->v[1] = dmri_strdup("");
    v->v[2] = mode == 1 ? long_str(DMRI_PROTO_MAX_STR, seed) : dmri_strdup("tcp://127.0.0.1:5555");
}
static void fill_UINTS(dmri_u64list_t *v, unsigned seed, int mode) {
    v->n = mode == 2 ? 0 : mode == 1 ? 1000 : 4;
    v->v = v->n ? dmri_calloc(v->n, sizeof *v->v) : NULL;
    for (size_t i = 0; i < v->n; i++)
        v->v[i] = i == 0 ? 0 : i == 1 ? UINT64_MAX : (uint64_t)seed * i;
}
TABLE_MAY_NOT_USE static void fill_FLOATS(dmri_f64list_t *v, unsigned seed, int mode) {
    v->n = mode == 2 ? 0 : mode == 1 ? 1000 : 4;
    v->v = v->n ? dmri_calloc(v->n, sizeof *v->v) : NULL;
    for (size_t i = 0; i < v->n; i++)
        v->v[i] = i == 0 ? -0.0 : i == 1 ? DBL_MAX : seed * 0.5 - (double)i;
}
static void fill_BIN(dmri_bin_t *v, unsigned seed, int mode) {
    v->len = mode == 2 ? 0 : mode == 1 ? 70000 : 1000;
    v->data = v->len ? dmri_malloc(v->len) : NULL;
    for (size_t i = 0; i < v->len; i++)
        v->data[i] = (uint8_t)(i % 7 == 0 ? 0 : (i * 37 + seed) & 0xff); /* zeros inside */
}

static int eq_UINT(const uint64_t *a, const uint64_t *b) { return *a == *b; }
static int eq_INT(const int64_t *a, const int64_t *b) { return *a == *b; }
static int eq_FLOAT(const double *a, const double *b) { return memcmp(a, b, sizeof *a) == 0; }
static int eq_STR(char *const *a, char *const *b) {
    return *a && *b && strcmp(*a, *b) == 0;
}
static int eq_STRS(const dmri_strlist_t *a, const dmri_strlist_t *b) {
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (!eq_STR(&a->v[i], &b->v[i]))
            return 0;
    return 1;
}
static int eq_UINTS(const dmri_u64list_t *a, const dmri_u64list_t *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}
TABLE_MAY_NOT_USE static int eq_FLOATS(const dmri_f64list_t *a, const dmri_f64list_t *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}
static int eq_BIN(const dmri_bin_t *a, const dmri_bin_t *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static int zero_UINT(const uint64_t *a) { return *a == 0; }
static int zero_INT(const int64_t *a) { return *a == 0; }
static int zero_FLOAT(const double *a) { return *a == 0.0; }
static int zero_STR(char *const *a) { return *a && **a == '\0'; }
static int zero_STRS(const dmri_strlist_t *a) { return a->n == 0; }
static int zero_UINTS(const dmri_u64list_t *a) { return a->n == 0; }
TABLE_MAY_NOT_USE static int zero_FLOATS(const dmri_f64list_t *a) { return a->n == 0; }
static int zero_BIN(const dmri_bin_t *a) { return a->len == 0; }

/* Per message: fill, compare (printing the fields that differ), and check a
 * decode where the optional fields were absent. */
#define DMRI_F(TYPE, field, req) fill_##TYPE(&s->field, seed++, mode);
#define DMRI_MSG(NAME, lname, code, fields)                               \
    static void fill_##lname(dmri_msg_##lname##_t *s, int mode) {         \
        unsigned seed = code * 100u;                                      \
        fields                                                            \
    }
#include "messages.def"
#undef DMRI_MSG
#undef DMRI_F

#define DMRI_F(TYPE, field, req)                                   \
    if (!eq_##TYPE(&a->field, &b->field)) {                        \
        fprintf(stderr, "  %s.%s differs\n", name, #field);        \
        bad++;                                                     \
    }
#define DMRI_MSG(NAME, lname, code, fields)                                          \
    static int cmp_##lname(const dmri_msg_##lname##_t *a, const dmri_msg_##lname##_t *b) { \
        const char *name = #NAME;                                                    \
        int bad = 0;                                                                 \
        fields return bad;                                                           \
    }
#include "messages.def"
#undef DMRI_MSG
#undef DMRI_F

#define DMRI_F(TYPE, field, req)                                                        \
    if ((req) ? !eq_##TYPE(&a->field, &b->field) : !zero_##TYPE(&a->field)) {           \
        fprintf(stderr, "  %s.%s: %s\n", name, #field,                                   \
                (req) ? "required field differs" : "absent optional field is not zero"); \
        bad++;                                                                          \
    }
#define DMRI_MSG(NAME, lname, code, fields)                                             \
    static int absent_##lname(const dmri_msg_##lname##_t *a, const dmri_msg_##lname##_t *b) { \
        const char *name = #NAME;                                                       \
        int bad = 0;                                                                    \
        fields return bad;                                                              \
    }
#include "messages.def"
#undef DMRI_MSG
#undef DMRI_F

static void fill_msg(dmri_msg_t *m, int type, int mode) {
    dmri_msg_init(m, type);
    switch (type) {
#define DMRI_MSG(NAME, lname, code, fields) \
    case code:                              \
        fill_##lname(&m->u.lname, mode);    \
        break;
#include "messages.def"
#undef DMRI_MSG
    }
}

/* number of differing fields; -1 for different types */
static int cmp_msg(const dmri_msg_t *a, const dmri_msg_t *b) {
    if (a->type != b->type)
        return -1;
    switch (a->type) {
#define DMRI_MSG(NAME, lname, code, fields) \
    case code:                              \
        return cmp_##lname(&a->u.lname, &b->u.lname);
#include "messages.def"
#undef DMRI_MSG
    }
    return -1;
}

static int absent_msg(const dmri_msg_t *got, const dmri_msg_t *want) {
    switch (got->type) {
#define DMRI_MSG(NAME, lname, code, fields) \
    case code:                              \
        return absent_##lname(&got->u.lname, &want->u.lname);
#include "messages.def"
#undef DMRI_MSG
    }
    return -1;
}

/* ---- an independent encoder, with ways to get things wrong ----------------- */

typedef struct {
    int omit;          /* field index left out, -1: none */
    int omit_optional; /* leave out every optional field */
    int wrong;         /* field index written with a wrong value, -1: none */
    int wrong_kind;    /* which wrong value (see tpk_wrong) */
    int dup;           /* field index written twice, -1: none */
    int unknown;       /* add unknown fields of assorted types */
} popts_t;

static const popts_t PLAIN = {-1, 0, -1, 0, -1, 0};

static void tpk_str(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}
static void tpk_cstr(msgpack_packer *pk, const char *s) { tpk_str(pk, s, strlen(s)); }

static void tpk_UINT(msgpack_packer *pk, const uint64_t *v) { msgpack_pack_uint64(pk, *v); }
static void tpk_INT(msgpack_packer *pk, const int64_t *v) { msgpack_pack_int64(pk, *v); }
static void tpk_FLOAT(msgpack_packer *pk, const double *v) { msgpack_pack_double(pk, *v); }
static void tpk_STR(msgpack_packer *pk, char *const *v) { tpk_cstr(pk, *v); }
static void tpk_STRS(msgpack_packer *pk, const dmri_strlist_t *v) {
    msgpack_pack_array(pk, v->n);
    for (size_t i = 0; i < v->n; i++)
        tpk_cstr(pk, v->v[i]);
}
static void tpk_UINTS(msgpack_packer *pk, const dmri_u64list_t *v) {
    msgpack_pack_array(pk, v->n);
    for (size_t i = 0; i < v->n; i++)
        msgpack_pack_uint64(pk, v->v[i]);
}
TABLE_MAY_NOT_USE static void tpk_FLOATS(msgpack_packer *pk, const dmri_f64list_t *v) {
    msgpack_pack_array(pk, v->n);
    for (size_t i = 0; i < v->n; i++)
        msgpack_pack_double(pk, v->v[i]);
}
static void tpk_BIN(msgpack_packer *pk, const dmri_bin_t *v) {
    msgpack_pack_bin(pk, v->len);
    msgpack_pack_bin_body(pk, v->data, v->len);
}

/* Wrong values per field type, each with what the error must say. */
#define NWRONG 7
static const char *tpk_wrong(msgpack_packer *pk, int type, int kind) {
    static char big[DMRI_PROTO_MAX_STR + 1];
    memset(big, 'x', sizeof big);
    switch (type * 100 + kind) {
    case T_UINT * 100 + 0: msgpack_pack_int64(pk, -1); return "not a uint (got negative int)";
    case T_UINT * 100 + 1: tpk_cstr(pk, "7"); return "not a uint (got str)";
    case T_UINT * 100 + 2: msgpack_pack_double(pk, 1.0); return "not a uint (got float64)";
    case T_UINT * 100 + 3: msgpack_pack_nil(pk); return "not a uint (got nil)";
    case T_UINT * 100 + 4: msgpack_pack_true(pk); return "not a uint (got bool)";
    case T_INT * 100 + 0: tpk_cstr(pk, "-3"); return "not an int (got str)";
    case T_INT * 100 + 1: msgpack_pack_float(pk, 1.5f); return "not an int (got float32)";
    case T_INT * 100 + 2: msgpack_pack_uint64(pk, UINT64_MAX); return "exceeds int64";
    case T_INT * 100 + 3: msgpack_pack_array(pk, 0); return "not an int (got array)";
    case T_FLOAT * 100 + 0: tpk_cstr(pk, "1.5"); return "not a float (got str)";
    case T_FLOAT * 100 + 1: msgpack_pack_nil(pk); return "not a float (got nil)";
    case T_FLOAT * 100 + 2: msgpack_pack_false(pk); return "not a float (got bool)";
    case T_FLOAT * 100 + 3: msgpack_pack_bin(pk, 8); msgpack_pack_bin_body(pk, big, 8);
        return "not a float (got bin)";
    case T_STR * 100 + 0: msgpack_pack_uint64(pk, 42); return "not a str (got uint)";
    case T_STR * 100 + 1: msgpack_pack_bin(pk, 3); msgpack_pack_bin_body(pk, "abc", 3);
        return "not a str (got bin)";
    case T_STR * 100 + 2: msgpack_pack_array(pk, 1); tpk_cstr(pk, "a"); return "not a str (got array)";
    case T_STR * 100 + 3: tpk_str(pk, "a\0b", 3); return "contains a NUL byte";
    case T_STR * 100 + 4: tpk_str(pk, big, DMRI_PROTO_MAX_STR + 1); return "bytes (limit 4096)";
    case T_STR * 100 + 5: msgpack_pack_map(pk, 0); return "not a str (got map)";
    case T_STRS * 100 + 0: tpk_cstr(pk, "a"); return "not an array of str (got str)";
    case T_STRS * 100 + 1: msgpack_pack_array(pk, 1); msgpack_pack_uint64(pk, 1);
        return "entry 0 is not a str (got uint)";
    case T_STRS * 100 + 2: msgpack_pack_array(pk, 2); tpk_cstr(pk, "a"); msgpack_pack_nil(pk);
        return "entry 1 is not a str (got nil)";
    case T_STRS * 100 + 3: msgpack_pack_map(pk, 0); return "not an array of str (got map)";
    case T_STRS * 100 + 4: msgpack_pack_array(pk, 1); tpk_str(pk, "a\0", 2);
        return "entry 0 contains a NUL byte";
    case T_STRS * 100 + 5: msgpack_pack_array(pk, 1); tpk_str(pk, big, DMRI_PROTO_MAX_STR + 1);
        return "entry 0 is a str of 4097 bytes (limit 4096)";
    case T_UINTS * 100 + 0: msgpack_pack_array(pk, 2); msgpack_pack_uint64(pk, 1);
        msgpack_pack_int64(pk, -1); return "entry 1 is not a uint (got negative int)";
    case T_UINTS * 100 + 1: msgpack_pack_array(pk, 1); msgpack_pack_double(pk, 2.0);
        return "entry 0 is not a uint (got float64)";
    case T_UINTS * 100 + 2: msgpack_pack_uint64(pk, 7); return "not an array of uint (got uint)";
    case T_UINTS * 100 + 3: msgpack_pack_array(pk, 1); tpk_cstr(pk, "1");
        return "entry 0 is not a uint (got str)";
    case T_FLOATS * 100 + 0: msgpack_pack_array(pk, 1); tpk_cstr(pk, "x");
        return "entry 0 is not a float (got str)";
    case T_FLOATS * 100 + 1: msgpack_pack_double(pk, 1.0); return "not an array of float (got float64)";
    case T_BIN * 100 + 0: tpk_cstr(pk, "abc"); return "not a bin (got str)";
    case T_BIN * 100 + 1: msgpack_pack_uint64(pk, 5); return "not a bin (got uint)";
    case T_BIN * 100 + 2: msgpack_pack_array(pk, 0); return "not a bin (got array)";
    default: return NULL;
    }
}

/* Unknown fields of every msgpack kind, a key that is a prefix of a real one,
 * and a 12-deep nest (within the limit). */
static int tpk_unknown(msgpack_packer *pk) {
    tpk_cstr(pk, "zz_nil");
    msgpack_pack_nil(pk);
    tpk_cstr(pk, "j");
    msgpack_pack_array(pk, 2);
    msgpack_pack_int64(pk, -5);
    msgpack_pack_float(pk, 2.5f);
    tpk_cstr(pk, "zz_map");
    msgpack_pack_map(pk, 2);
    msgpack_pack_uint64(pk, 1); /* non-str keys are fine below the body */
    msgpack_pack_true(pk);
    tpk_cstr(pk, "k");
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "\0\1", 2);
    tpk_cstr(pk, "zz_ext");
    msgpack_pack_ext(pk, 3, 7);
    msgpack_pack_ext_body(pk, "abc", 3);
    tpk_cstr(pk, "zz_deep");
    for (int i = 0; i < 12; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
    return 5;
}

#define DMRI_F(TYPE, field, req)                                     \
    if (idx != o->omit && !(o->omit_optional && !(req))) {           \
        tpk_cstr(pk, #field);                                        \
        if (idx == o->wrong)                                         \
            tpk_wrong(pk, T_##TYPE, o->wrong_kind);                  \
        else                                                         \
            tpk_##TYPE(pk, &s->field);                               \
        n++;                                                         \
        if (idx == o->dup) {                                         \
            tpk_cstr(pk, #field);                                    \
            tpk_##TYPE(pk, &s->field);                               \
            n++;                                                     \
        }                                                            \
    }                                                                \
    idx++;
#define DMRI_MSG(NAME, lname, code, fields)                                                  \
    static int tpk_##lname(msgpack_packer *pk, const dmri_msg_##lname##_t *s, const popts_t *o) { \
        int idx = 0, n = 0;                                                                  \
        fields return n;                                                                     \
    }
#include "messages.def"
#undef DMRI_MSG
#undef DMRI_F

/* Header of m written by this file's encoder (sbuffer, free with
 * msgpack_sbuffer_destroy). Fields go to a side buffer first so the map
 * size is known; unknown fields are put on both sides of them. */
static void tpack(const dmri_msg_t *m, const popts_t *o, uint64_t version, msgpack_sbuffer *out) {
    msgpack_sbuffer kv;
    msgpack_sbuffer_init(&kv);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &kv, msgpack_sbuffer_write);
    int n = 0;
    if (o->unknown)
        n += tpk_unknown(&pk);
    switch (m->type) {
#define DMRI_MSG(NAME, lname, code, fields)       \
    case code:                                    \
        n += tpk_##lname(&pk, &m->u.lname, o);    \
        break;
#include "messages.def"
#undef DMRI_MSG
    }
    if (o->unknown)
        n += tpk_unknown(&pk);
    msgpack_sbuffer_init(out);
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    tpk_cstr(&pk, "dmri");
    msgpack_pack_uint64(&pk, version);
    msgpack_pack_uint64(&pk, (uint64_t)m->type);
    msgpack_pack_map(&pk, (size_t)n);
    msgpack_sbuffer_write(out, kv.data, kv.size);
    msgpack_sbuffer_destroy(&kv);
}

/* decode expecting failure `code`, with `sub` in the message */
static void expect_fail(const void *buf, size_t len, int code, const char *sub, const char *what) {
    dmri_msg_t m;
    dmri_err_t err = {0};
    int pv = -1;
    int rc = dmri_msg_decode(buf, len, &m, &pv, &err);
    if (rc != code || !strstr(err.msg, sub)) {
        fprintf(stderr, "%s: decode gave %d \"%s\", expected %d with \"%s\"\n", what, rc, err.msg,
                code, sub);
        failures++;
    }
    if (rc == 0)
        dmri_msg_clear(&m);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_round_trip(void) {
    for (size_t k = 0; k < NMSGS; k++) {
        for (int mode = 0; mode < 3; mode++) {
            dmri_msg_t a, b;
            dmri_err_t err = {0};
            uint8_t *buf = NULL, *buf2 = NULL;
            size_t len = 0, len2 = 0;
            int pv = 0;
            fill_msg(&a, all_msgs[k].code, mode);
            CHECK_INT(dmri_msg_encode(&a, &buf, &len), 0);
            int rc = dmri_msg_decode(buf, len, &b, &pv, &err);
            if (rc) {
                fprintf(stderr, "%s mode %d: %s\n", all_msgs[k].name, mode, err.msg);
                failures++;
            } else {
                CHECK_INT(pv, 1);
                CHECK_INT(cmp_msg(&a, &b), 0);
                /* the encoding is deterministic */
                CHECK_INT(dmri_msg_encode(&b, &buf2, &len2), 0);
                CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
                dmri_free(buf2);
                dmri_msg_clear(&b);
                CHECK_INT(b.type, 0);
            }
            /* the independent encoder, with unknown fields around */
            msgpack_sbuffer sb;
            popts_t o = PLAIN;
            o.unknown = 1;
            tpack(&a, &o, 1, &sb);
            rc = dmri_msg_decode((uint8_t *)sb.data, sb.size, &b, NULL, &err);
            if (rc) {
                fprintf(stderr, "%s mode %d (test encoder): %s\n", all_msgs[k].name, mode, err.msg);
                failures++;
            } else {
                CHECK_INT(cmp_msg(&a, &b), 0);
                dmri_msg_clear(&b);
            }
            msgpack_sbuffer_destroy(&sb);
            dmri_free(buf);
            dmri_msg_clear(&a);
        }
    }
    CHECK(strcmp(dmri_msg_type_name(DMRI_MSG_TASK_DONE), "TASK_DONE") == 0);
    CHECK(strcmp(dmri_msg_type_name(99), "unknown") == 0);
    /* NULL strings encode as "" */
    dmri_msg_t a, b;
    uint8_t *buf;
    size_t len;
    dmri_msg_init(&a, DMRI_MSG_HELLO);
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), 0);
    CHECK_INT(dmri_msg_decode(buf, len, &b, NULL, NULL), 0);
    CHECK(b.u.hello.role && strcmp(b.u.hello.role, "") == 0);
    dmri_msg_clear(&b);
    dmri_free(buf);
    /* an unknown type or a field over the limits is refused by the encoder */
    dmri_msg_init(&a, 99);
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), DMRI_EINVAL);
    char *big = long_str(DMRI_PROTO_MAX_STR + 1, 0);
    dmri_msg_init(&a, DMRI_MSG_BYE);
    a.u.bye.reason = big;
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), DMRI_EINVAL);
    dmri_free(big);
    dmri_msg_init(&a, DMRI_MSG_RELEASE);
    a.u.release.keys.n = 2; /* v NULL */
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), DMRI_EINVAL);
}

/* Bytes from Python's msgpack 1.0.3 (packb(..., use_bin_type=True)). */
static void test_python_bytes(void) {
    /* ["dmri",1,1,{"name":"w1","role":"worker","nthreads":4,"extra":[1,{"a":None}],"pid":2**40}] */
    static const uint8_t hello[] = {
        0x94, 0xa4, 0x64, 0x6d, 0x72, 0x69, 0x01, 0x01, 0x85, 0xa4, 0x6e, 0x61, 0x6d, 0x65, 0xa2,
        0x77, 0x31, 0xa4, 0x72, 0x6f, 0x6c, 0x65, 0xa6, 0x77, 0x6f, 0x72, 0x6b, 0x65, 0x72, 0xa8,
        0x6e, 0x74, 0x68, 0x72, 0x65, 0x61, 0x64, 0x73, 0x04, 0xa5, 0x65, 0x78, 0x74, 0x72, 0x61,
        0x92, 0x01, 0x81, 0xa1, 0x61, 0xc0, 0xa3, 0x70, 0x69, 0x64, 0xcf, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00};
    /* ["dmri",1,12,{"job":7,"task":3,"out_keys":["J7/raw/g0/s1",""],
     *  "out_sizes":[0,2**64-1],"seconds":1.5,"info":b"\0\1\0"}] */
    static const uint8_t done[] = {
        0x94, 0xa4, 0x64, 0x6d, 0x72, 0x69, 0x01, 0x0c, 0x86, 0xa3, 0x6a, 0x6f, 0x62, 0x07, 0xa4,
        0x74, 0x61, 0x73, 0x6b, 0x03, 0xa8, 0x6f, 0x75, 0x74, 0x5f, 0x6b, 0x65, 0x79, 0x73, 0x92,
        0xac, 0x4a, 0x37, 0x2f, 0x72, 0x61, 0x77, 0x2f, 0x67, 0x30, 0x2f, 0x73, 0x31, 0xa0, 0xa9,
        0x6f, 0x75, 0x74, 0x5f, 0x73, 0x69, 0x7a, 0x65, 0x73, 0x92, 0x00, 0xcf, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xa7, 0x73, 0x65, 0x63, 0x6f, 0x6e, 0x64, 0x73, 0xcb, 0x3f,
        0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa4, 0x69, 0x6e, 0x66, 0x6f, 0xc4, 0x03, 0x00,
        0x01, 0x00};
    dmri_msg_t m;
    dmri_err_t err = {0};
    CHECK_INT(dmri_msg_decode(hello, sizeof hello, &m, NULL, &err), 0);
    CHECK_INT(m.type, DMRI_MSG_HELLO);
    if (m.type == DMRI_MSG_HELLO) {
        CHECK(strcmp(m.u.hello.name, "w1") == 0);
        CHECK(strcmp(m.u.hello.role, "worker") == 0);
        CHECK_INT(m.u.hello.nthreads, 4);
        CHECK(m.u.hello.pid == (UINT64_C(1) << 40));
        CHECK(strcmp(m.u.hello.peer_addr, "") == 0);
        CHECK_INT(m.u.hello.memory_limit, 0);
    }
    dmri_msg_clear(&m);
    CHECK_INT(dmri_msg_decode(done, sizeof done, &m, NULL, &err), 0);
    CHECK_INT(m.type, DMRI_MSG_TASK_DONE);
    if (m.type == DMRI_MSG_TASK_DONE) {
        dmri_msg_task_done_t *d = &m.u.task_done;
        CHECK_INT(d->job, 7);
        CHECK_INT(d->task, 3);
        CHECK_INT(d->out_keys.n, 2);
        CHECK(d->out_keys.n == 2 && strcmp(d->out_keys.v[0], "J7/raw/g0/s1") == 0 &&
              strcmp(d->out_keys.v[1], "") == 0);
        CHECK(d->out_sizes.n == 2 && d->out_sizes.v[0] == 0 && d->out_sizes.v[1] == UINT64_MAX);
        CHECK(d->seconds == 1.5);
        CHECK(d->info.len == 3 && memcmp(d->info.data, "\0\1\0", 3) == 0);
    }
    dmri_msg_clear(&m);
}

/* Numbers in other encodings than the one dmri writes. */
static void test_number_encodings(void) {
    /* SUBMIT: request as int8 (d0 05), b0_threshold as int 50, flags as uint16 */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    tpk_cstr(&pk, "dmri");
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, DMRI_MSG_SUBMIT);
    msgpack_pack_map(&pk, 4);
    tpk_cstr(&pk, "request");
    msgpack_sbuffer_write(&sb, "\xd0\x05", 2);
    tpk_cstr(&pk, "subject");
    tpk_cstr(&pk, "/data/sub-01");
    tpk_cstr(&pk, "b0_threshold");
    msgpack_pack_int64(&pk, -50);
    tpk_cstr(&pk, "flags");
    msgpack_sbuffer_write(&sb, "\xcd\x00\x02", 3);
    dmri_msg_t m;
    dmri_err_t err = {0};
    CHECK_INT(dmri_msg_decode((uint8_t *)sb.data, sb.size, &m, NULL, &err), 0);
    if (m.type == DMRI_MSG_SUBMIT) {
        CHECK_INT(m.u.submit.request, 5);
        CHECK(m.u.submit.b0_threshold == -50.0);
        CHECK_INT(m.u.submit.flags, 2);
    }
    dmri_msg_clear(&m);
    msgpack_sbuffer_destroy(&sb);
    /* TASK_DONE seconds as float32; TASK_ASSIGN v0 as positive int, v1 negative */
    dmri_msg_t a;
    fill_msg(&a, DMRI_MSG_TASK_ASSIGN, 0);
    a.u.task_assign.v0 = 12;
    a.u.task_assign.v1 = -12;
    tpack(&a, &PLAIN, 1, &sb);
    CHECK_INT(dmri_msg_decode((uint8_t *)sb.data, sb.size, &m, NULL, &err), 0);
    if (m.type == DMRI_MSG_TASK_ASSIGN) {
        CHECK_INT(m.u.task_assign.v0, 12);
        CHECK_INT(m.u.task_assign.v1, -12);
    }
    dmri_msg_clear(&m);
    dmri_msg_clear(&a);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    tpk_cstr(&pk, "dmri");
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, DMRI_MSG_TASK_DONE);
    msgpack_pack_map(&pk, 5);
    tpk_cstr(&pk, "job");
    msgpack_pack_uint64(&pk, 1);
    tpk_cstr(&pk, "task");
    msgpack_pack_uint64(&pk, 2);
    tpk_cstr(&pk, "out_keys");
    msgpack_pack_array(&pk, 0);
    tpk_cstr(&pk, "out_sizes");
    msgpack_pack_array(&pk, 0);
    tpk_cstr(&pk, "seconds");
    msgpack_pack_float(&pk, 0.25f);
    CHECK_INT(dmri_msg_decode((uint8_t *)sb.data, sb.size, &m, NULL, &err), 0);
    if (m.type == DMRI_MSG_TASK_DONE) {
        CHECK(m.u.task_done.seconds == 0.25);
        CHECK_INT(m.u.task_done.out_keys.n, 0);
        CHECK_INT(m.u.task_done.info.len, 0);
        CHECK(m.u.task_done.info.data == NULL);
    }
    dmri_msg_clear(&m);
    msgpack_sbuffer_destroy(&sb);
}

/* Per message: optional fields absent, each required field missing, each
 * field mistyped in every way, each field duplicated. */
static void test_fields(void) {
    for (size_t k = 0; k < NMSGS; k++) {
        const tmsg_t *t = &all_msgs[k];
        dmri_msg_t a, b;
        dmri_err_t err = {0};
        msgpack_sbuffer sb;
        char what[128];
        fill_msg(&a, t->code, 0);

        popts_t o = PLAIN;
        o.omit_optional = 1;
        tpack(&a, &o, 1, &sb);
        int rc = dmri_msg_decode((uint8_t *)sb.data, sb.size, &b, NULL, &err);
        if (rc) {
            fprintf(stderr, "%s without optional fields: %s\n", t->name, err.msg);
            failures++;
        } else {
            CHECK_INT(absent_msg(&b, &a), 0);
            dmri_msg_clear(&b);
        }
        msgpack_sbuffer_destroy(&sb);

        for (size_t i = 0; i < t->nf; i++) {
            char sub[128];
            if (t->f[i].req) {
                o = PLAIN;
                o.omit = (int)i;
                tpack(&a, &o, 1, &sb);
                snprintf(what, sizeof what, "%s without %s", t->name, t->f[i].name);
                snprintf(sub, sizeof sub, "%s: required field '%s' is missing", t->name,
                         t->f[i].name);
                expect_fail(sb.data, sb.size, DMRI_EFORMAT, sub, what);
                msgpack_sbuffer_destroy(&sb);
            }
            for (int kind = 0; kind < NWRONG; kind++) {
                msgpack_sbuffer probe;
                msgpack_sbuffer_init(&probe);
                msgpack_packer pk;
                msgpack_packer_init(&pk, &probe, msgpack_sbuffer_write);
                const char *expect = tpk_wrong(&pk, t->f[i].type, kind);
                msgpack_sbuffer_destroy(&probe);
                if (!expect)
                    continue;
                o = PLAIN;
                o.wrong = (int)i;
                o.wrong_kind = kind;
                tpack(&a, &o, 1, &sb);
                snprintf(what, sizeof what, "%s with a wrong %s (kind %d)", t->name, t->f[i].name,
                         kind);
                snprintf(sub, sizeof sub, "%s: field '%s'", t->name, t->f[i].name);
                expect_fail(sb.data, sb.size, DMRI_EFORMAT, sub, what);
                expect_fail(sb.data, sb.size, DMRI_EFORMAT, expect, what);
                msgpack_sbuffer_destroy(&sb);
            }
            o = PLAIN;
            o.dup = (int)i;
            tpack(&a, &o, 1, &sb);
            snprintf(what, sizeof what, "%s with %s twice", t->name, t->f[i].name);
            snprintf(sub, sizeof sub, "%s: field '%s' appears twice", t->name, t->f[i].name);
            expect_fail(sb.data, sb.size, DMRI_EFORMAT, sub, what);
            msgpack_sbuffer_destroy(&sb);
        }
        dmri_msg_clear(&a);
    }
}

/* Lists of exactly the limit pass; one more fails in both directions. */
static void test_limits(void) {
    const size_t n = DMRI_PROTO_MAX_LIST;
    dmri_msg_t a, b;
    dmri_err_t err = {0};
    uint8_t *buf;
    size_t len;
    dmri_msg_init(&a, DMRI_MSG_TASK_DONE);
    a.u.task_done.out_keys.n = n;
    a.u.task_done.out_keys.v = dmri_calloc(n, sizeof(char *));
    char one[] = "k";
    for (size_t i = 0; i < n; i++)
        a.u.task_done.out_keys.v[i] = one;
    a.u.task_done.out_sizes.n = n;
    a.u.task_done.out_sizes.v = dmri_calloc(n, sizeof(uint64_t));
    for (size_t i = 0; i < n; i++)
        a.u.task_done.out_sizes.v[i] = UINT64_MAX - i;
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), 0);
    CHECK(len < DMRI_PROTO_MAX_HEADER);
    int rc = dmri_msg_decode(buf, len, &b, NULL, &err);
    CHECK_INT(rc, 0);
    if (rc == 0) {
        CHECK_INT(cmp_msg(&a, &b), 0);
        dmri_msg_clear(&b);
    }
    dmri_free(buf);
    /* one more entry: the encoder refuses, a hand-made header is malformed */
    a.u.task_done.out_sizes.n = n + 1;
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), DMRI_EINVAL);
    dmri_free(a.u.task_done.out_keys.v);
    dmri_free(a.u.task_done.out_sizes.v);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    tpk_cstr(&pk, "dmri");
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, DMRI_MSG_RELEASE);
    msgpack_pack_map(&pk, 1);
    tpk_cstr(&pk, "keys");
    msgpack_pack_array(&pk, n + 1);
    for (size_t i = 0; i <= n; i++)
        tpk_cstr(&pk, "k");
    expect_fail(sb.data, sb.size, DMRI_EFORMAT, "RELEASE: field 'keys' has 1048577 entries (limit 1048576)",
                "list too long");
    msgpack_sbuffer_destroy(&sb);

    /* str of exactly 4096 passes, 4097 fails */
    char *s = long_str(DMRI_PROTO_MAX_STR, 3);
    dmri_msg_init(&a, DMRI_MSG_BYE);
    a.u.bye.reason = s;
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), 0);
    CHECK_INT(dmri_msg_decode(buf, len, &b, NULL, &err), 0);
    CHECK(b.type == DMRI_MSG_BYE && strcmp(b.u.bye.reason, s) == 0);
    dmri_msg_clear(&b);
    dmri_free(buf);
    dmri_free(s);

    /* a bin close to the header limit, with zeros */
    dmri_msg_init(&a, DMRI_MSG_TASK_DONE);
    a.u.task_done.info.len = DMRI_PROTO_MAX_HEADER - 200;
    a.u.task_done.info.data = dmri_calloc(a.u.task_done.info.len, 1);
    a.u.task_done.info.data[12345] = 7;
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), 0);
    CHECK_INT(dmri_msg_decode(buf, len, &b, NULL, &err), 0);
    CHECK(b.type == DMRI_MSG_TASK_DONE && eq_BIN(&a.u.task_done.info, &b.u.task_done.info));
    dmri_msg_clear(&b);
    dmri_free(buf);
    /* over the header limit: the encoder refuses */
    a.u.task_done.info.len = DMRI_PROTO_MAX_HEADER;
    dmri_free(a.u.task_done.info.data);
    a.u.task_done.info.data = dmri_calloc(a.u.task_done.info.len, 1);
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), DMRI_EINVAL);
    dmri_free(a.u.task_done.info.data);

    /* a frame over 16 MiB is refused before it is parsed */
    uint8_t *huge = dmri_calloc(DMRI_PROTO_MAX_HEADER + 1, 1);
    expect_fail(huge, DMRI_PROTO_MAX_HEADER + 1, DMRI_EFORMAT, "header frame is 16777217 bytes",
                "header too long");
    dmri_free(huge);
}

/* header = [ "dmri", 1, ERROR, {"error": "x", "zz": <value>} ] with value raw */
static size_t wrap_ignored(uint8_t *out, const uint8_t *value, size_t vlen) {
    static const uint8_t pre[] = {0x94, 0xa4, 'd', 'm', 'r', 'i', 0x01, 0x06, 0x82,
                                  0xa5, 'e',  'r', 'r', 'o', 'r', 0xa1, 'x',  0xa2, 'z', 'z'};
    memcpy(out, pre, sizeof pre);
    memcpy(out + sizeof pre, value, vlen);
    return sizeof pre + vlen;
}

static void test_malformed(void) {
    dmri_msg_t m;
    dmri_err_t err = {0};
    int pv;
    uint8_t *buf;
    size_t len;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    expect_fail("", 0, DMRI_EFORMAT, "empty", "empty frame");
    expect_fail("\xc1", 1, DMRI_EFORMAT, "not msgpack (byte 0xc1", "0xc1");
    expect_fail("hello world", 11, DMRI_EFORMAT, "header", "text");
    expect_fail("\x80", 1, DMRI_EFORMAT, "not a msgpack array (got map)", "a map");
    expect_fail("\xa4" "dmri", 5, DMRI_EFORMAT, "not a msgpack array (got str)", "a str");
    expect_fail("\x94\xa4" "dmrj\x01\x01\x80", 9, DMRI_EFORMAT, "magic", "wrong magic");
    expect_fail("\x94\xc4\x04" "dmri\x01\x01\x80", 10, DMRI_EFORMAT, "magic", "magic as bin");
    expect_fail("\x90", 1, DMRI_EFORMAT, "magic", "empty array");
    expect_fail("\x91\xa4" "dmri", 6, DMRI_EFORMAT, "no version", "no version");
    expect_fail("\x94\xa4" "dmri\xff\x01\x80", 9, DMRI_EFORMAT, "no version", "negative version");
    expect_fail("\x94\xa4" "dmri\x01\x63\x80", 9, DMRI_EFORMAT, "unknown message type 99", "type 99");
    expect_fail("\x94\xa4" "dmri\x01\x00\x80", 9, DMRI_EFORMAT, "unknown message type 0", "type 0");
    expect_fail("\x94\xa4" "dmri\x01\xcf\x00\x00\x01\x00\x00\x00\x00\x01\x80", 17, DMRI_EFORMAT,
                "unknown message type 1099511627777", "type 2^40+1");
    expect_fail("\x94\xa4" "dmri\x01\xff\x80", 9, DMRI_EFORMAT, "type is not a uint (got negative int)",
                "type -1");
    expect_fail("\x94\xa4" "dmri\x01\xa1" "1\x80", 10, DMRI_EFORMAT, "type is not a uint (got str)",
                "type as str");
    expect_fail("\x93\xa4" "dmri\x01\x05", 8, DMRI_EFORMAT, "3 entries (expected 4)", "3 entries");
    expect_fail("\x95\xa4" "dmri\x01\x05\x80\xc0", 10, DMRI_EFORMAT, "5 entries (expected 4)",
                "5 entries");
    expect_fail("\x94\xa4" "dmri\x01\x05\x90", 9, DMRI_EFORMAT, "BYE: body is not a map (got array)",
                "body array");
    expect_fail("\x94\xa4" "dmri\x01\x05\x81\x01\xa1" "x", 12, DMRI_EFORMAT,
                "BYE: body key 0 is not a str (got uint)", "int key");
    expect_fail("\x94\xa4" "dmri\x01\x05\x80", 9, DMRI_EFORMAT, "BYE: required field 'reason' is missing",
                "empty body");

    /* version 2 (and 0, and a v2 header of another shape): EUNSUP, both named */
    static const char v2[] = "\x94\xa4" "dmri\x02\x01\x80";
    memset(&err, 0, sizeof err);
    pv = -1;
    CHECK_INT(dmri_msg_decode((const uint8_t *)v2, 9, &m, &pv, &err), DMRI_EUNSUP);
    CHECK_INT(pv, 2);
    CHECK_INT(m.type, DMRI_MSG_HELLO);
    CHECK_HAS(err, "protocol version 2 is not supported (this side speaks version 1)");
    dmri_msg_clear(&m);
    pv = -1;
    CHECK_INT(dmri_msg_decode((const uint8_t *)"\x95\xa4" "dmri\x02\x05\x80\x01", 10, &m, &pv, &err),
              DMRI_EUNSUP);
    CHECK_INT(pv, 2);
    CHECK_INT(dmri_msg_decode((const uint8_t *)"\x92\xa4" "dmri\x00", 7, &m, &pv, &err), DMRI_EUNSUP);
    CHECK_INT(pv, 0);
    CHECK_HAS(err, "protocol version 0 is not supported");
    /* a valid body with the version changed */
    dmri_msg_t a;
    fill_msg(&a, DMRI_MSG_TASK_ASSIGN, 0);
    tpack(&a, &PLAIN, 2, &sb);
    pv = -1;
    CHECK_INT(dmri_msg_decode((uint8_t *)sb.data, sb.size, &m, &pv, &err), DMRI_EUNSUP);
    CHECK_INT(pv, 2);
    CHECK_INT(m.type, DMRI_MSG_TASK_ASSIGN);
    msgpack_sbuffer_destroy(&sb);

    /* trailing bytes after a valid header */
    CHECK_INT(dmri_msg_encode(&a, &buf, &len), 0);
    uint8_t *t = dmri_malloc(len + 3);
    memcpy(t, buf, len);
    memcpy(t + len, "\xc0\xc0\x00", 3);
    expect_fail(t, len + 1, DMRI_EFORMAT, "1 trailing bytes", "trailing nil");
    expect_fail(t, len + 3, DMRI_EFORMAT, "3 trailing bytes", "trailing bytes");
    /* every truncation of a valid header */
    for (size_t cut = 0; cut < len; cut++)
        expect_fail(buf, cut, DMRI_EFORMAT, "", "truncated");
    expect_fail(buf, len - 1, DMRI_EFORMAT, "truncated", "truncated by one");
    dmri_free(t);
    dmri_free(buf);
    dmri_msg_clear(&a);

    /* depth bombs in an ignored field: refused at once, no recursion */
    const size_t deep = 1000000;
    uint8_t *bomb = dmri_malloc(2 * deep + 64);
    uint8_t *val = dmri_malloc(2 * deep + 1);
    double t0 = now_s();
    memset(val, 0x91, deep);
    val[deep] = 0xc0;
    len = wrap_ignored(bomb, val, deep + 1);
    expect_fail(bomb, len, DMRI_EFORMAT, "nests deeper than 16 levels", "array bomb");
    for (size_t i = 0; i < deep; i++) {
        val[2 * i] = 0x81; /* {nil: {nil: ...}} */
        val[2 * i + 1] = 0xc0;
    }
    val[2 * deep] = 0xc0;
    len = wrap_ignored(bomb, val, 2 * deep + 1);
    expect_fail(bomb, len, DMRI_EFORMAT, "nests deeper than 16 levels", "map bomb");
    double dt = now_s() - t0;
    if (dt > 0.5) {
        fprintf(stderr, "depth bombs took %.3f s\n", dt);
        failures++;
    }
    /* 13 levels in total (header array, body map, 11 in the field): accepted */
    memset(val, 0x91, 11);
    val[11] = 0xc0;
    len = wrap_ignored(bomb, val, 12);
    CHECK_INT(dmri_msg_decode(bomb, len, &m, NULL, &err), 0);
    dmri_msg_clear(&m);
    memset(val, 0x91, 15);
    val[15] = 0xc0;
    len = wrap_ignored(bomb, val, 16);
    expect_fail(bomb, len, DMRI_EFORMAT, "nests deeper", "17 levels");
    dmri_free(val);
    dmri_free(bomb);

    /* huge declared lengths in a short buffer, as the field and as the root */
    static const struct {
        const char *bytes;
        size_t n;
        const char *sub;
    } huge[] = {
        {"\xdb\xff\xff\xff\xff" "abc", 8, "claims 4294967295 bytes"},
        {"\xc6\xff\xff\xff\xff" "abc", 8, "claims 4294967295 bytes"},
        {"\xc9\xff\xff\xff\xff\x01" "ab", 8, "claims 4294967296 bytes"},
        {"\xdd\xff\xff\xff\xff\xc0\xc0", 7, "claims 4294967295 entries"},
        {"\xdf\xff\xff\xff\xff\xc0\xc0", 7, "claims 8589934590 entries"},
        {"\xdc\xff\xff\xc0", 4, "claims 65535 entries"},
        {"\xda\xff\xff" "a", 4, "claims 65535 bytes"},
        {"\xdd\xff\xff", 3, "truncated"},
        {"\xcf\x00", 2, "claims 8 bytes"},
    };
    uint8_t small[64];
    t0 = now_s();
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        len = wrap_ignored(small, (const uint8_t *)huge[i].bytes, huge[i].n);
        expect_fail(small, len, DMRI_EFORMAT, huge[i].sub, "huge length in a field");
        expect_fail(huge[i].bytes, huge[i].n, DMRI_EFORMAT, huge[i].sub, "huge length at the root");
    }
    dt = now_s() - t0;
    if (dt > 0.1) {
        fprintf(stderr, "huge lengths took %.3f s\n", dt);
        failures++;
    }

    /* more msgpack objects than a header may hold (each 1 byte: fixint 0) */
    const size_t nobj = (4u << 20) + 1;
    bomb = dmri_calloc(nobj + 64, 1);
    val = dmri_calloc(nobj + 5, 1);
    val[0] = 0xdd;
    val[1] = (uint8_t)(nobj >> 24);
    val[2] = (uint8_t)(nobj >> 16);
    val[3] = (uint8_t)(nobj >> 8);
    val[4] = (uint8_t)nobj;
    len = wrap_ignored(bomb, val, nobj + 5);
    expect_fail(bomb, len, DMRI_EFORMAT, "more than 4194304 msgpack objects", "object bomb");
    dmri_free(val);
    dmri_free(bomb);

    /* a str with a NUL, as a field and as a list entry */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    tpk_cstr(&pk, "dmri");
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, DMRI_MSG_HELLO);
    msgpack_pack_map(&pk, 2);
    tpk_cstr(&pk, "role");
    tpk_cstr(&pk, "worker");
    tpk_cstr(&pk, "name");
    tpk_str(&pk, "w\0rker", 6);
    expect_fail(sb.data, sb.size, DMRI_EFORMAT, "HELLO: field 'name' contains a NUL byte", "NUL");
    msgpack_sbuffer_destroy(&sb);
}

/* Random bytes and mutated valid headers: never a crash, a leak or an
 * unexpected code; whatever is accepted re-encodes to the same message. */
static int fuzz_one(const uint8_t *buf, size_t len) {
    dmri_msg_t m, m2;
    dmri_err_t err = {0};
    int pv;
    int rc = dmri_msg_decode(buf, len, &m, &pv, &err);
    if (rc == 0) {
        uint8_t *e;
        size_t elen;
        int rc2 = dmri_msg_encode(&m, &e, &elen);
        if (rc2 == 0) {
            rc2 = dmri_msg_decode(e, elen, &m2, NULL, &err);
            if (rc2 == 0) {
                if (cmp_msg(&m, &m2) != 0)
                    rc2 = -100;
                dmri_msg_clear(&m2);
            }
            dmri_free(e);
        }
        dmri_msg_clear(&m);
        if (rc2) {
            fprintf(stderr, "fuzz: accepted message failed to round trip (%d: %s)\n", rc2, err.msg);
            failures++;
        }
        return 1;
    }
    if ((rc != DMRI_EFORMAT && rc != DMRI_EUNSUP) || err.msg[0] == '\0') {
        fprintf(stderr, "fuzz: unexpected code %d \"%s\"\n", rc, err.msg);
        failures++;
    }
    return 0;
}

static void test_fuzz(void) {
    /* pool: every message, in every mode, by both encoders */
    enum { POOL = 64 * 6 };
    uint8_t *pool[POOL];
    size_t plen[POOL], np = 0;
    for (size_t k = 0; k < NMSGS && np + 6 <= POOL; k++) {
        for (int mode = 0; mode < 3; mode++) {
            dmri_msg_t a;
            fill_msg(&a, all_msgs[k].code, mode);
            if (mode != 1) {
                CHECK_INT(dmri_msg_encode(&a, &pool[np], &plen[np]), 0);
                np++;
            }
            msgpack_sbuffer sb;
            popts_t o = PLAIN;
            o.unknown = 1;
            o.omit_optional = mode == 1;
            tpack(&a, &o, 1, &sb);
            pool[np] = dmri_malloc(sb.size);
            memcpy(pool[np], sb.data, sb.size);
            plen[np++] = sb.size;
            msgpack_sbuffer_destroy(&sb);
            dmri_msg_clear(&a);
        }
    }
    static const uint8_t interesting[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
                                          0xc1, 0xc4, 0xc6, 0xca, 0xcb, 0xcf, 0xd3, 0xd9, 0xdb,
                                          0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
    double t0 = now_s();
    size_t accepted = 0, rand_accepted = 0;
    uint8_t rbuf[256];
    for (int it = 0; it < 100000; it++) {
        size_t n = rng() % 64;
        size_t pre = 0;
        if (it & 1) { /* a real prefix makes the random part reach deeper */
            size_t src = rng() % np;
            pre = rng() % (plen[src] < 12 ? plen[src] : 12);
            memcpy(rbuf, pool[src], pre);
        }
        for (size_t i = pre; i < pre + n; i++)
            rbuf[i] = (rng() & 3) ? (uint8_t)rng() : interesting[rng() % sizeof interesting];
        rand_accepted += (size_t)fuzz_one(rbuf, pre + n);
    }
    for (int it = 0; it < 100000; it++) {
        size_t src = rng() % np;
        size_t cap = plen[src] + 256, len = plen[src];
        uint8_t *b = dmri_malloc(cap);
        memcpy(b, pool[src], len);
        int nops = 1 + (int)(rng() % 3);
        for (int op = 0; op < nops && len > 0; op++) {
            size_t at = rng() % len;
            switch (rng() % 6) {
            case 0: /* bit flip */
                b[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 1: /* truncation */
                len = at;
                break;
            case 2: { /* insertion of 1..8 bytes */
                size_t k = 1 + rng() % 8;
                if (len + k > cap)
                    break;
                memmove(b + at + k, b + at, len - at);
                for (size_t i = 0; i < k; i++)
                    b[at + i] = (rng() & 1) ? (uint8_t)rng() : interesting[rng() % sizeof interesting];
                len += k;
                break;
            }
            case 3: { /* a span duplicated */
                size_t span = 1 + rng() % 32;
                if (at + span > len)
                    span = len - at;
                if (len + span > cap)
                    break;
                size_t dst = rng() % (len + 1);
                uint8_t tmp[32];
                memcpy(tmp, b + at, span);
                memmove(b + dst + span, b + dst, len - dst);
                memcpy(b + dst, tmp, span);
                len += span;
                break;
            }
            case 4: /* an interesting byte */
                b[at] = interesting[rng() % sizeof interesting];
                break;
            default: /* a deletion */
                memmove(b + at, b + at + 1, len - at - 1);
                len--;
                break;
            }
        }
        accepted += (size_t)fuzz_one(b, len);
        dmri_free(b);
    }
    for (size_t i = 0; i < np; i++)
        dmri_free(pool[i]);
    printf("fuzz: 200000 inputs in %.2f s; accepted %zu random, %zu mutated\n", now_s() - t0,
           rand_accepted, accepted);
    CHECK(accepted > 0); /* the mutations did not all break the framing */
}

int main(void) {
    double t0 = now_s();
    test_round_trip();
    test_python_bytes();
    test_number_encodings();
    test_fields();
    test_limits();
    test_malformed();
    test_fuzz();
    printf("test_proto: %d failure(s), %.2f s\n", failures, now_s() - t0);
    return failures ? 1 : 0;
}
