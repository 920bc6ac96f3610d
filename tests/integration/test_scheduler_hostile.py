#!/usr/bin/python3
"""dmri-scheduler never crashes on what a peer sends: thousands of random
and mutated messages from registered and unregistered peers (garbage frames,
valid headers with wrong field types, unknown types, other protocol versions,
TASK_DONE for tasks never assigned, SUBMIT from a worker, huge task counts,
extra frames), then a real worker and dmri-submit still complete a subject
with outputs identical to dmri-run's."""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, dmri_run, phantom, same_outputs  # noqa: E402

from checks import FAILURES, expect  # noqa: E402
from hostile_util import header, mutate, wrong_types  # noqa: E402


VALID = [
    (1, {"role": "worker", "name": "evil", "peer_addr": "tcp://127.0.0.1:1"}),
    (1, {"role": "client", "name": "evil-client"}),
    (1, {"role": "king", "name": "x"}),
    (4, {"running": 1, "memory": 5}),
    (10, {"free_threads": 2 ** 63}),
    (12, {"job": 1, "task": 7, "out_keys": ["J1/mask"], "out_sizes": [12], "info": b"\x00" * 40}),
    (12, {"job": 99, "task": 1000000000, "out_keys": [], "out_sizes": []}),
    (13, {"job": 1, "task": 3, "error": "boom", "input_missing": "J1/raw/g0/s0"}),
    (30, {"request": 1, "subject": "1" * 30, "flags": 4}),
    (30, {"request": 2, "subject": "/nonexistent", "flags": 0, "b0_threshold": -5.0}),
    (30, {"request": 3, "subject": "0", "flags": 4}),
    (20, {"key": "J1/info"}),
    (40, {"request": 7}),
    (41, {"json": b"{}"}),
    (5, {"reason": "bye"}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    tmp = tempfile.mkdtemp(prefix="dmri-hostile-")
    c = None
    try:
        subj = phantom(b, os.path.join(tmp, "subj"), "--shape", "18", "20", "14", "--b0", "2",
                       "--shells", "1000", "--dirs", "8", "--seed", "5")
        ref = dmri_run(b, subj, os.path.join(tmp, "ref"))
        c = Cluster(b, tmp)
        ctx = zmq.Context()
        rng = random.Random(1234)
        socks = []
        for i in range(6):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 100000)
            s.connect(f"tcp://{c.addr}")
            socks.append(s)
        # half of the sockets register first (as worker or client), half never do
        socks[0].send(header(*VALID[0]))
        socks[1].send(header(*VALID[1]))
        sent = 0
        for n in range(6000):
            s = rng.choice(socks)
            t, body = rng.choice(VALID)
            kind = rng.randint(0, 6)
            if kind == 0:
                frames = [bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 64)))]
            elif kind == 1:
                frames = [mutate(rng, header(t, body))]
            elif kind == 2:
                frames = [wrong_types(rng, t, body)]
            elif kind == 3:
                frames = [header(rng.randint(0, 2 ** 31), body)]
            elif kind == 4:
                frames = [header(t, body, version=rng.choice([0, 2, 7, 2 ** 40]))]
            elif kind == 5:
                frames = [header(t, body), b"x" * rng.randint(0, 1000), b"y"]
            else:
                frames = [header(t, body)]
            s.send_multipart(frames)
            sent += 1
        # a worker whose name is not UTF-8 and holds quotes, backslashes and
        # control bytes: --status must still print valid JSON
        hello = header(1, {"role": "worker", "name": "NAMEPLACEHOLDER", "peer_addr": "tcp://127.0.0.1:1"})
        odd = b'\xff"\\\x01<\xc3(x\x7fends\xe2\x82'
        assert len(odd) == 15
        # a fresh connection: the storm's may be banned for their malformed messages
        fresh = ctx.socket(zmq.DEALER)
        fresh.setsockopt(zmq.LINGER, 0)
        fresh.connect(f"tcp://{c.addr}")
        socks.append(fresh)
        fresh.send(hello.replace(b"NAMEPLACEHOLDER", odd))
        time.sleep(1.0)
        r = subprocess.run([c.bin("client", "dmri-submit"), "--status", "--json", "--scheduler", c.addr,
                            "--timeout", "10"], capture_output=True, timeout=60)
        try:
            names = [w["name"] for w in json.loads(r.stdout.decode("utf-8"))["workers"]]
        except ValueError as e:
            names = [f"not JSON: {e}: {r.stdout[:300]!r} {r.stderr[-300:]!r}"]
        expect('\ufffd"\\\x01<\ufffd(x\x7fends\ufffd\ufffd' in names,
               f"--status after the storm: valid JSON, the odd name escaped: {names}")
        for s in socks:
            s.close()
        ctx.term()
        expect(c.sched.poll() is None, f"scheduler alive after {sent} hostile messages")
        slog = open(c.sched_log, errors="replace").read()
        c.worker(nthreads=2)
        out = os.path.join(tmp, "out")
        r = c.submit("--out", out, subj, timeout=300)
        expect(r.returncode == 0, f"a real subject still completes (exit {r.returncode}) {r.stderr.strip()[-200:]}")
        if r.returncode == 0:
            probs = same_outputs(os.path.join(out, "subj"), ref)
            expect(not probs, f"outputs identical to dmri-run {probs}")
        expect(c.sched.poll() is None, "scheduler still alive at the end")
        expect("refused" in slog, "the scheduler logged the refusals of other versions")
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
