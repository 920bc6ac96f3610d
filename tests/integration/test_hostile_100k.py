#!/usr/bin/python3
"""100,000 random and mutated messages to a running dmri-scheduler (port 8786)
and 100,000 to a running dmri-worker's peer socket: random bytes, mutated and
truncated headers, valid headers with wrong field types, unknown message types,
other protocol versions, huge declared lengths, extra frames, empty frames,
payload frames that do not match `size`, valid messages out of place, and one
frame over --max-message-size. Both daemons stay up, the scheduler bans the
connections that send too much garbage (--max-malformed), and afterwards the
same worker and a fresh client complete a phantom subject byte-identical to
dmri-run. --messages N changes the count (the ctest of the ASan build uses
fewer: every message is decoded under the sanitizers there)."""
import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, dmri_run, phantom, same_outputs  # noqa: E402

from checks import FAILURES, expect  # noqa: E402
from hostile_util import header, mutate, wrong_types  # noqa: E402


SCHED_VALID = [
    (1, {"role": "worker", "name": "evil", "peer_addr": "tcp://127.0.0.1:1"}),
    (1, {"role": "client", "name": "evil-client"}),
    (4, {"running": 1, "memory": 5}),
    (10, {"free_threads": 2 ** 63}),
    (12, {"job": 1, "task": 7, "out_keys": ["J1/mask"], "out_sizes": [12], "info": b"\x00" * 40}),
    (13, {"job": 1, "task": 3, "error": "boom", "input_missing": "J1/raw/g0/s0"}),
    (30, {"request": 1, "subject": "/nonexistent", "flags": 0}),
    (30, {"request": 2, "subject": "3", "flags": 4}),
    (20, {"key": "J1/info"}),
    (21, {"key": "J1/info", "size": 3}),
    (5, {"reason": "bye"}),
]
PEER_VALID = [
    (20, {"key": "J1/info", "request": 1}),
    (20, {"key": "J1/raw/g0/s0"}),
    (21, {"key": "J1/info", "size": 3}),
    (6, {"error": "x"}),
    (5, {"reason": "bye"}),
    (1, {"role": "worker", "name": "evil"}),
]
# msgpack headers that declare far more than they hold (str32, bin32,
# array32, map32 lengths of 2^32-1 inside an otherwise plausible header)
HUGE = [
    b"\x94\xa4dmri\x01\x14\xdf\xff\xff\xff\xff",
    b"\x94\xa4dmri\x01\x14\x81\xa3key\xdb\xff\xff\xff\xff",
    b"\x94\xa4dmri\x01\x0c\x81\xa4info\xc6\xff\xff\xff\xff",
    b"\xdd\xff\xff\xff\xff\xa4dmri",
    b"\x94\xa4dmri\x01\x1e\x81\xa7subject\xda\xff\xff",
    b"\x94\xa4dmri\x01\x0c\x81\xa8out_keys\xdd\x7f\xff\xff\xff",
    b"\x91" * 40 + b"\xc0",
]


def hostile(rng, valid):
    t, body = rng.choice(valid)
    kind = rng.randint(0, 11)
    if kind == 0:
        return [rng.randbytes(rng.randint(0, 64))]
    if kind == 1:
        return [mutate(rng, header(t, body))]
    if kind == 2:
        return [wrong_types(rng, t, body)]
    if kind == 3:
        return [header(rng.choice([0, 7, 99, 2 ** 31, 2 ** 64 - 1]), body)]
    if kind == 4:
        return [header(t, body, version=rng.choice([0, 2, 7, 2 ** 40]))]
    if kind == 5:
        return [header(t, body)] + [b"x" * rng.randint(0, 100)] * rng.randint(2, 4)
    if kind == 6:
        return rng.choice([[b""], [b"", b""], [header(t, body), b""], [b"", header(t, body)]])
    if kind == 7:
        h = header(t, body)
        return [h[:rng.randrange(len(h))]]
    if kind == 8:
        return [rng.choice(HUGE)]
    if kind == 9:
        return [header(21, {"key": "k", "size": rng.randint(0, 5)}), b"z" * rng.randint(0, 5)]
    if kind == 10:
        return [msgpack.packb(rng.choice([["dmri", 1, t], ["dmri", 1, t, body, 1], "dmri", 1,
                                          {"dmri": 1}, ["dmri", 1, t, [body]]]), use_bin_type=True)]
    return [header(t, body)]


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


def flood(ctx, addr, valid, n, rng, per_socket, probe, pid, max_open=20):
    """Sends n hostile messages to addr from a new DEALER every per_socket
    messages (a new identity each), plus one frame over --max-message-size;
    returns when a fresh socket's probe is answered (everything before it was
    read) or after a deadline."""
    socks = []
    nsocks = 0
    big = zmq.Context.instance().socket(zmq.DEALER)
    sent = 0
    t0 = time.time()
    s = None
    while sent < n:
        if sent % per_socket == 0:
            # At most max_open connections open at once: libzmq 4.3's I/O thread
            # cancels a heartbeat timer by a linear search of all timers on
            # every message, so hundreds of open connections slow it to a
            # crawl (a libzmq cost, not dmri's). Linger flushes what is queued.
            if len(socks) >= max_open:
                old = socks.pop(0)
                old.setsockopt(zmq.LINGER, 5000)
                old.close()
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 0)
            s.setsockopt(zmq.RCVHWM, 0)
            s.connect(addr)
            socks.append(s)
            nsocks += 1
            if len(socks) % 3 == 1:  # some connections register first
                t, body = valid[0]
                s.send(header(t, body))
        s.send_multipart(hostile(rng, valid))
        sent += 1
    big.setsockopt(zmq.LINGER, 0)
    big.connect(addr)
    big.send_multipart([header(*valid[0]), b"\x00" * (17 << 20)])
    # the probe: a valid request from a fresh connection, answered only
    # once the daemon has read what was queued before it (fair queuing)
    p = ctx.socket(zmq.DEALER)
    p.setsockopt(zmq.LINGER, 0)
    p.connect(addr)
    answered = False
    deadline = time.time() + 150
    p.send(probe[0])
    # Done when the probe is answered and the daemon has used no CPU for
    # 1.5 s: everything queued has been read (fair queuing alone answers the
    # probe early). Our sockets keep their inboxes drained meanwhile.
    last, quiet_since = cpu_ticks(pid), time.time()
    while time.time() < deadline:
        if not answered and p.poll(100):
            reply = p.recv_multipart()
            answered = probe[1](msgpack.unpackb(reply[0], raw=False))
            if answered:
                print(f"  probe answered after {time.time() - t0:.1f} s", flush=True)
        for q in socks:
            while q.poll(0):
                q.recv_multipart()
        now = cpu_ticks(pid)
        if now != last:
            last, quiet_since = now, time.time()
        elif answered and time.time() - quiet_since > 1.5:
            break
        time.sleep(0.05)
    took = time.time() - t0
    for q in socks + [p, big]:
        q.close()
    return sent, nsocks, answered, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--messages", type=int, default=0)
    ap.add_argument("--max-open", type=int, default=20,
                    help="hostile connections open at once (libzmq slows down with many)")
    a = ap.parse_args()
    b = a.build_dir
    n = a.messages
    if n <= 0:
        cache = open(os.path.join(b, "CMakeCache.txt")).read()
        n = 20000 if "DMRI_SANITIZE:BOOL=ON" in cache else 100000
    tmp = tempfile.mkdtemp(prefix="dmri-hostile100k-")
    c = None
    try:
        subj = phantom(b, os.path.join(tmp, "subj"), "--shape", "18", "20", "14", "--b0", "2",
                       "--shells", "1000", "--dirs", "8", "--seed", "5")
        ref = dmri_run(b, subj, os.path.join(tmp, "ref"))
        c = Cluster(b, tmp)
        name, wp, wlog = c.worker(nthreads=2)
        peer_addr = None
        deadline = time.time() + 20
        while time.time() < deadline and not peer_addr:
            m = re.search(r"peer socket (tcp://[0-9.]+:[0-9]+)", open(wlog, errors="replace").read())
            peer_addr = m.group(1) if m else None
            time.sleep(0.1)
        expect(peer_addr is not None, f"worker's peer socket found: {peer_addr}")
        ctx = zmq.Context()
        rng = random.Random(8)

        sent, nsock, answered, took = flood(
            ctx, f"tcp://{c.addr}", SCHED_VALID, n, rng, 500,
            (header(1, {"role": "client", "name": "probe"}), lambda h: h[2] == 2), c.sched.pid,
            a.max_open)
        print(f"  scheduler: {sent} messages from {nsock} connections in {took:.1f} s", flush=True)
        expect(answered, "the scheduler answered a HELLO after the flood")
        expect(c.sched.poll() is None, f"scheduler alive after {sent} hostile messages")

        sent, nsock, answered, took = flood(
            ctx, peer_addr, PEER_VALID, n, rng, 5000,
            (header(20, {"key": "J999/none", "request": 5}), lambda h: h[2] == 22), wp.pid)
        print(f"  worker peer socket: {sent} messages from {nsock} connections in {took:.1f} s", flush=True)
        expect(answered, "the worker answered a DATA_GET after the flood")
        expect(wp.poll() is None, f"worker alive after {sent} hostile messages")
        ctx.term()

        slog = open(c.sched_log, errors="replace").read()
        expect("ignoring it for" in slog, "the scheduler banned connections sending garbage (--max-malformed)")
        expect("refused" in slog, "the scheduler logged the refusals of other versions")

        out = os.path.join(tmp, "out")
        r = c.submit("--out", out, subj, timeout=300)
        expect(r.returncode == 0, f"the same worker completes a subject (exit {r.returncode}) {r.stderr.strip()[-300:]}")
        if r.returncode == 0:
            probs = same_outputs(os.path.join(out, "subj"), ref)
            expect(not probs, f"outputs identical to dmri-run {probs}")
        expect(c.sched.poll() is None and wp.poll() is None, "scheduler and worker still alive at the end")
        c.stop()
        # the scheduler's counters at shutdown: garbage was read and judged
        m = re.search(r"stats: (\d+) malformed, (\d+) ignored from banned peers, (\d+) peers banned",
                      open(c.sched_log, errors="replace").read())
        expect(m is not None, "the scheduler logged its counters at shutdown")
        if m:
            bad, ignored, banned = map(int, m.groups())
            print(f"  scheduler counted {bad} malformed, {ignored} ignored, {banned} bans", flush=True)
            expect(bad + ignored >= n // 2, f"at least half of the {n} messages were judged malformed or ignored")
            expect(banned >= 10, "many connections were banned")
    except Exception as e:  # noqa: BLE001
        expect(False, f"exception: {e!r}")
    finally:
        if c:
            if FAILURES:
                c.dump_logs()
            c.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} checks FAILED")
        return 1
    print("all hostile-peer checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
