/* gen_proto_corpus: writes the seed corpus of fuzz_proto — one valid message
 * of every type of messages.def, made by the real encoder (dmri_msg_encode),
 * every field filled, in the harness's input format
 * ([frames u8][payload_len u32 LE][header]). Run by hand after changing
 * messages.def: gen_proto_corpus tests/fuzz/corpus/proto */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dmri_alloc.h"
#include "proto.h"

static char *strs[] = {"J1/raw/g0/s0", "tcp://127.0.0.1:5555"};
static uint64_t uints[] = {1, 1u << 20};
static double floats[] = {0.5, -2.0}; /* no FLOATS field yet */
static uint8_t bin[] = {0, 1, 2, 3, 255};

#define SET_UINT(x) x = 7;
#define SET_INT(x) x = -3;
#define SET_FLOAT(x) x = 1000.0;
#define SET_STR(x) x = "worker";
#define SET_STRS(x) x.n = 2, x.v = strs;
#define SET_UINTS(x) x.n = 2, x.v = uints;
#define SET_FLOATS(x) x.n = 2, x.v = floats;
#define SET_BIN(x) x.len = sizeof bin, x.data = bin;

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_proto_corpus DIR\n");
        return 2;
    }
    int written = 0;
    (void)floats; /* no FLOATS field in messages.def yet */
    static const int codes[] = {
#define DMRI_MSG(NAME, lname, code, fields) code,
#include "messages.def"
#undef DMRI_MSG
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        dmri_msg_t m;
        dmri_msg_init(&m, codes[i]);
        switch (codes[i]) {
#define DMRI_F(TYPE, field, required) SET_##TYPE(x->field)
#define DMRI_MSG(NAME, lname, code, fields) \
    case code: {                            \
        dmri_msg_##lname##_t *x = &m.u.lname; \
        fields                              \
        break;                              \
    }
#include "messages.def"
#undef DMRI_MSG
#undef DMRI_F
        }
        uint8_t *hdr;
        size_t len;
        if (dmri_msg_encode(&m, &hdr, &len) != 0)
            return 1;
        /* DATA and RESULT carry a payload of `size` (7) bytes */
        int payload = codes[i] == DMRI_MSG_DATA || codes[i] == DMRI_MSG_RESULT;
        uint8_t pre[5] = {payload ? 2 : 1, payload ? 7 : 0, 0, 0, 0};
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.bin", argv[1], dmri_msg_type_name(codes[i]));
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(pre, 1, 5, f) != 5 || fwrite(hdr, 1, len, f) != len || fclose(f) != 0)
            return 1;
        dmri_free(hdr);
        written++;
    }
    printf("%d messages written to %s\n", written, argv[1]);
    return 0;
}
