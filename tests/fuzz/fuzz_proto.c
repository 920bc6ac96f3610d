/* fuzz_proto: libFuzzer harness for what a daemon does with a received
 * message — dmri_msg_decode_frames, the function dmri_proto_recv calls on the
 * frames it drained (framing rules, bounded msgpack scan, field checks).
 * Input: [frames u8][payload_len u32 LE][header frame bytes...]; frames & 3 is
 * the number of frames after the identity (0: none, 3: an extra frame), and
 * only the payload's length matters to the decoder. A decoded message must
 * re-encode, and encoding is a fixed point: decode(encode(m)) encodes to the
 * same bytes (two peers must read one message the same way). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmri_alloc.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5)
        return 0;
    size_t nframes = data[0] & 3u;
    size_t payload_len = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16 |
                         (size_t)data[4] << 24;
    const uint8_t *hdr = data + 5;
    size_t hdr_len = size - 5;
    dmri_msg_t m;
    dmri_err_t err = {0};
    int pv = 0;
    int rc = dmri_msg_decode_frames(hdr, hdr_len, nframes, payload_len, &m, &pv, &err);
    if (rc != 0) {
        /* a failure always says why and leaves nothing to free */
        if (!err.msg[0] || (rc != DMRI_EFORMAT && rc != DMRI_EUNSUP))
            abort();
        return 0;
    }
    if (nframes == 0 || nframes > 2 || !dmri_msg_type_name(m.type))
        abort();
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    /* float32 values grow to float64 when re-encoded, so only a header near
     * the 16 MiB limit may fail to re-encode */
    if (dmri_msg_encode(&m, &b1, &l1) != 0) {
        if (hdr_len < (1u << 20))
            abort();
        dmri_msg_clear(&m);
        return 0;
    }
    dmri_msg_t m2;
    if (dmri_msg_decode(b1, l1, &m2, NULL, &err) != 0 || m2.type != m.type)
        abort();
    if (dmri_msg_encode(&m2, &b2, &l2) != 0 || l1 != l2 || memcmp(b1, b2, l1) != 0)
        abort();
    dmri_free(b1);
    dmri_free(b2);
    dmri_msg_clear(&m2);
    dmri_msg_clear(&m);
    return 0;
}
