"""Hostile ZeroMQ traffic for the protocol tests: dmri headers made by hand
(any version, type and body), and random mutations of them."""
import msgpack


def header(t, body, version=1):
    return msgpack.packb(["dmri", version, t, body], use_bin_type=True)


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randint(0, 3)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randint(0, 7)
        elif op == 1 and b:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            b[rng.randrange(len(b) + 1):0] = rng.randbytes(rng.randint(1, 8))
        elif b:
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 16)]
    return bytes(b)


def wrong_types(rng, t, body):
    body = dict(body)
    k = rng.choice(list(body))
    body[k] = rng.choice([None, -1, 3.5, "str", b"bin", [1, 2], {"a": 1}, 2 ** 64 - 1, True,
                          "x" * 5000, [["deep"]] * 3])
    return header(t, body)
