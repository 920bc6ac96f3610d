#!/usr/bin/env python3
"""dmri-worker alone, against a fake scheduler (a python ROUTER speaking the
protocol of proto/PROTOCOL.md) and a fake peer worker: registration (HELLO
fields, WELCOME, task requests, heartbeats), LOAD of a phantom with the raw
chunks checked byte for byte against nibabel through the peer socket (with a
memory limit small enough to spill them), SIGMA tasks checked against dipy's
estimate_sigma with local inputs and with inputs fetched from a peer,
missing inputs (released, DATA_MISSING, unreachable peer), RELEASE, NOOP,
malformed input on both sockets, a re-registration after 5 s of silence,
REFUSED (exit 1), the scheduler's BYE (exit 0), SIGTERM (BYE sent, exit 0,
pid file and spill folder removed) and bad command lines (exit 2).

Run: /usr/bin/python3 test_worker_peer.py --build-dir BUILD"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import nibabel as nib
import numpy as np
import zmq
from dipy.denoise.noise_estimate import estimate_sigma

HELLO, WELCOME, REFUSED, HEARTBEAT, BYE, ERROR = 1, 2, 3, 4, 5, 6
TASK_REQUEST, TASK_ASSIGN, TASK_DONE, TASK_FAILED, RELEASE = 10, 11, 12, 13, 14
DATA_GET, DATA, DATA_MISSING = 20, 21, 22
K_SIGMA, K_SAVE, K_LOAD, K_NOOP = 4, 7, 100, 101

from checks import FAILURES, expect  # noqa: E402
from hostile_util import header  # noqa: E402


def parse(frame):
    magic, version, t, body = msgpack.unpackb(frame, raw=False)
    assert magic == "dmri" and version == 1, (magic, version)
    return t, body


class FakeScheduler:
    """A ROUTER on 127.0.0.1 that records what workers send; it answers
    HEARTBEATs (unless told to stay silent) and keeps other messages in a
    backlog that wait() searches."""

    def __init__(self, ctx):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.addr = f"127.0.0.1:{self.port}"
        self.answer_hb = True
        self.backlog = []     # (ident, type, body, payload)
        self.heartbeats = []  # (ident, body, time)

    def send(self, ident, t, body, version=1):
        self.sock.send_multipart([ident, header(t, body, version)])

    def raw(self, ident, *frames):
        self.sock.send_multipart([ident, *frames])

    def _pump(self, timeout):
        if not self.sock.poll(int(timeout * 1000)):
            return
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            ident = frames[0]
            t, body = parse(frames[1])
            payload = frames[2] if len(frames) > 2 else None
            if t == HEARTBEAT:
                self.heartbeats.append((ident, body, time.time()))
                if self.answer_hb == "error":  # as a restarted scheduler does
                    self.send(ident, ERROR, {"error": "HEARTBEAT before HELLO: not registered"})
                elif self.answer_hb:
                    self.send(ident, HEARTBEAT, {})
                continue
            self.backlog.append((ident, t, body, payload))

    def wait(self, t, pred=lambda b: True, timeout=10.0, ident=None):
        deadline = time.time() + timeout
        while True:
            for i, (idn, tt, body, payload) in enumerate(self.backlog):
                if tt == t and pred(body) and (ident is None or idn == ident):
                    del self.backlog[i]
                    return idn, body, payload
            left = deadline - time.time()
            if left <= 0:
                return None, None, None
            self._pump(min(left, 0.1))

    def drop(self, t):
        self.backlog = [m for m in self.backlog if m[1] != t]


def assign(sched, ident, job, task, kind, **kw):
    body = {"job": job, "task": task, "kind": kind, "subject": "", "b0_threshold": 10.0,
            "flags": 0, "v0": 0, "v1": 0, "z0": 0, "z1": 0, "slab_slices": 4,
            "vols_per_task": 3, "in_keys": [], "in_addrs": [], "out_key": ""}
    body.update(kw)
    sched.send(ident, TASK_ASSIGN, body)


class PeerClient:
    """A DEALER to a worker's peer socket."""

    def __init__(self, ctx, addr):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(addr)
        self.req = 1000

    def get(self, key, timeout=5.0):
        self.req += 1
        self.sock.send(header(DATA_GET, {"key": key, "request": self.req}))
        return self.reply(timeout)

    def reply(self, timeout=5.0):
        if not self.sock.poll(int(timeout * 1000)):
            return None, None, None
        frames = self.sock.recv_multipart()
        t, body = parse(frames[0])
        return t, body, frames[1] if len(frames) > 1 else None


class FakePeer:
    """A ROUTER standing for another worker: answers DATA_GET from a table
    (bytes, or None for DATA_MISSING)."""

    def __init__(self, ctx):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.addr = f"tcp://127.0.0.1:{port}"
        self.asked = []

    def serve(self, table, n, timeout=10.0):
        deadline = time.time() + timeout
        while len(self.asked) < n and time.time() < deadline:
            if not self.sock.poll(100):
                continue
            ident, hdr = self.sock.recv_multipart()[:2]
            t, body = parse(hdr)
            if t != DATA_GET:
                continue
            key, req = body["key"], body.get("request", 0)
            self.asked.append(key)
            data = table.get(key)
            if data is None:
                self.sock.send_multipart([ident, header(DATA_MISSING, {"key": key, "request": req,
                                                                       "error": "not here"})])
            else:
                self.sock.send_multipart([ident, header(DATA, {"key": key, "request": req,
                                                               "size": len(data)}), data])


class Worker:
    def __init__(self, build, tmp, sched_addr, name, *extra):
        self.log = os.path.join(tmp, f"worker-{name}.log")
        self.errlog = open(self.log, "w")
        self.cmd = [os.path.join(build, "worker", "dmri-worker"), sched_addr, "--name", name,
                    *extra]
        self.p = subprocess.Popen(self.cmd, stdout=self.errlog, stderr=subprocess.STDOUT)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    build = os.path.abspath(ap.parse_args().build_dir)
    worker_bin = os.path.join(build, "worker", "dmri-worker")

    # Command line first: cheap and independent.
    r = subprocess.run([worker_bin, "--help"], capture_output=True, text=True)
    expect(r.returncode == 0 and all(o in r.stdout for o in
                                     ["--nthreads", "--memory-limit", "--spill-dir", "--listen",
                                      "--pid-file", "--name", "auto"]), "--help documents the options")
    for args, name in [(["--memory-limit", "lots", "h"], "--memory-limit"),
                       (["--nthreads", "0", "h"], "--nthreads"),
                       (["h:70000"], "SCHEDULER"), ([], "SCHEDULER"), (["--frobnicate", "h"], "--frobnicate")]:
        r = subprocess.run([worker_bin, *args], capture_output=True, text=True)
        expect(r.returncode == 2 and name in r.stderr,
               f"bad argument {args}: exit {r.returncode}, message names {name}")

    ctx = zmq.Context()
    workers = []
    with tempfile.TemporaryDirectory(prefix="test_worker_peer-") as tmp:
        try:
            run(build, tmp, ctx, workers)
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            expect(False, f"exception: {e!r}")
        finally:
            for w in workers:
                w.kill()
            if FAILURES:
                for w in workers:
                    print(f"----- {w.log}")
                    sys.stdout.write(w.text()[-5000:])
    ctx.destroy(linger=0)
    if FAILURES:
        print(f"test_worker_peer: {len(FAILURES)} failure(s)")
        return 1
    print("test_worker_peer: all checks passed")
    return 0


def run(build, tmp, ctx, workers):
    subj = os.path.join(tmp, "subj")
    subprocess.run([os.path.join(build, "client", "dmri-phantom"), "--out", subj, "--shape", "16",
                    "16", "12", "--b0", "2", "--shells", "1000", "--dirs", "6"], check=True,
                   capture_output=True)
    img = nib.load(os.path.join(subj, "data.nii.gz"))
    data = np.asarray(img.dataobj)
    nx, ny, nz, nv = data.shape
    expect(data.shape == (16, 16, 12, 8), f"phantom shape {data.shape}")
    sigma_ref = np.asarray(estimate_sigma(data), dtype=np.float64)

    sched = FakeScheduler(ctx)
    spill = os.path.join(tmp, "spill")
    os.mkdir(spill)
    pid_file = os.path.join(tmp, "w.pid")
    wa = Worker(build, tmp, sched.addr, "wA", "--nthreads", "2", "--prefetch", "0", "--memory-limit", "40K",
                "--spill-dir", spill, "--pid-file", pid_file, "--data-dir", tmp)
    workers.append(wa)

    # ---- registration
    ident, hello, _ = sched.wait(HELLO, timeout=10)
    if not expect(hello is not None, "HELLO received"):
        return
    expect(hello.get("role") == "worker" and hello.get("name") == "wA" and
           hello.get("nthreads") == 2 and hello.get("memory_limit") == 40 * 1024 and
           hello.get("pid") == wa.p.pid, f"HELLO fields {hello}")
    peer_addr = hello.get("peer_addr", "")
    expect(peer_addr.startswith("tcp://127.0.0.1:") and not peer_addr.endswith(":*"),
           f"peer_addr is a real endpoint on the routed address: {peer_addr}")
    expect(os.path.exists(pid_file) and open(pid_file).read().strip() == str(wa.p.pid),
           "pid file written")
    sched.send(ident, WELCOME, {"peer_id": 1, "heartbeat_ms": 200})
    _, req, _ = sched.wait(TASK_REQUEST, ident=ident)
    expect(req is not None and req.get("free_threads") == 2, f"TASK_REQUEST free_threads 2: {req}")
    time.sleep(0.5)
    sched._pump(0.1)
    hb = [b for i, b, _ in sched.heartbeats if i == ident]
    expect(len(hb) >= 1 and hb[-1].get("running") == 0 and "memory" in hb[-1],
           f"heartbeats every 200 ms with running/memory ({len(hb)} in 0.5 s)")
    extra = [m for m in sched.backlog if m[1] == TASK_REQUEST]
    expect(not extra, f"no repeated TASK_REQUEST while nothing changes ({len(extra)})")

    # ---- LOAD
    assign(sched, ident, 1, 0, K_LOAD, subject=subj, slab_slices=4, vols_per_task=3)
    _, done, _ = sched.wait(TASK_DONE, lambda b: b["job"] == 1 and b["task"] == 0, timeout=20)
    if not expect(done is not None, "LOAD: TASK_DONE"):
        return
    keys = ["J1/info"] + [f"J1/raw/g{g}/s{s}" for g in range(3) for s in range(3)]
    expect(sorted(done["out_keys"]) == sorted(keys), f"LOAD out_keys {done['out_keys']}")
    sizes = dict(zip(done["out_keys"], done["out_sizes"]))
    info = done.get("info", b"")
    expect(isinstance(info, bytes) and len(info) == sizes.get("J1/info") and b"subj" in info,
           f"TASK_DONE.info is the info chunk ({len(info)} bytes, names the subject)")
    expect(done.get("seconds", -1) >= 0, "TASK_DONE.seconds")
    _, req, _ = sched.wait(TASK_REQUEST, ident=ident)
    expect(req is not None and req.get("free_threads") == 2, "a TASK_REQUEST follows the completion")
    spilled = [d for d in os.listdir(spill) if d.startswith("dmri-spill-")]
    nfiles = len(os.listdir(os.path.join(spill, spilled[0]))) if spilled else 0
    expect(len(spilled) == 1 and nfiles > 0,
           f"with --memory-limit 40K the chunks spill to a private folder ({nfiles} files)")

    # ---- raw chunks through the peer socket, against nibabel
    peer = PeerClient(ctx, peer_addr)
    raw = {}
    maxerr = 0.0
    ok = True
    for g in range(3):
        v0, v1 = 3 * g, min(3 * g + 3, nv)
        for s in range(3):
            z0, z1 = 4 * s, 4 * s + 4
            key = f"J1/raw/g{g}/s{s}"
            t, body, payload = peer.get(key)
            if t != DATA or body.get("key") != key or body.get("request") != peer.req or \
                    payload is None or len(payload) != body.get("size") or len(payload) != sizes[key]:
                ok = False
                print(f"  {key}: type {t} body {body}")
                continue
            raw[key] = payload
            nvals = (v1 - v0) * nx * ny * (z1 - z0)
            dt = {4 * nvals: np.float32, 8 * nvals: np.float64}.get(len(payload))
            if dt is None:
                ok = False
                continue
            got = np.frombuffer(payload, dtype=dt).reshape(v1 - v0, z1 - z0, ny, nx)
            want = np.stack([data[:, :, z0:z1, v].T for v in range(v0, v1)]).astype(dt)
            maxerr = max(maxerr, float(np.max(np.abs(got.astype(np.float64) - want))))
            ok = ok and np.array_equal(got, want)
    print(f"  raw chunks vs nibabel: max abs error {maxerr}")
    expect(ok and maxerr == 0.0, "every raw chunk (read back from the spill folder) equals nibabel's data")
    t, body, _ = peer.get("J1/nonexistent")
    expect(t == DATA_MISSING and body.get("key") == "J1/nonexistent" and body.get("request") == peer.req,
           "DATA_GET of an unknown key: DATA_MISSING with the request id")
    t, body, payload = peer.get("J1/info")
    expect(t == DATA and payload == info, "J1/info served equals TASK_DONE.info")

    # ---- a task whose inputs sit on an unreachable peer (answer due in 15 s)
    dead = f"tcp://127.0.0.1:{free_port()}"
    t_dead = time.time()
    j5keys = ["J5/info", "J5/raw/g0/s0", "J5/raw/g0/s1", "J5/raw/g0/s2"]
    assign(sched, ident, 5, 3, K_SIGMA, v0=0, v1=3, z0=0, z1=nz, in_keys=j5keys,
           in_addrs=[dead] * 4, out_key="J5/sigma/g0")

    # ---- SIGMA with local inputs, against dipy
    sig_keys = ["J1/info"] + [f"J1/raw/g1/s{s}" for s in range(3)]
    assign(sched, ident, 1, 7, K_SIGMA, v0=3, v1=6, z0=0, z1=nz, in_keys=sig_keys,
           in_addrs=[""] * 4, out_key="J1/sigma/g1")
    _, done, _ = sched.wait(TASK_DONE, lambda b: b["job"] == 1 and b["task"] == 7)
    expect(done is not None and done["out_keys"] == ["J1/sigma/g1"] and done["out_sizes"] == [12],
           f"SIGMA: TASK_DONE with its output {done}")
    t, body, sig1 = peer.get("J1/sigma/g1")
    if expect(t == DATA and sig1 is not None and len(sig1) == 12, "SIGMA output served"):
        got = np.frombuffer(sig1, dtype=np.float32).astype(np.float64)
        rel = float(np.max(np.abs(got - sigma_ref[3:6]) / sigma_ref[3:6]))
        print(f"  sigma g1 vs dipy estimate_sigma: max rel error {rel:.2e}")
        expect(rel < 1e-5, "sigma equals dipy's estimate_sigma (f32)")

    # ---- SIGMA with every input fetched from a peer; fetched copies are
    # private to the task (dropped afterwards)
    fp = FakePeer(ctx)
    j2keys = ["J2/info"] + [f"J2/raw/g1/s{s}" for s in range(3)]
    table = {"J2/info": info}
    table.update({f"J2/raw/g1/s{s}": raw.get(f"J1/raw/g1/s{s}") for s in range(3)})
    assign(sched, ident, 2, 7, K_SIGMA, v0=3, v1=6, z0=0, z1=nz, in_keys=j2keys,
           in_addrs=[fp.addr] * 4, out_key="J2/sigma/g1")
    fp.serve(table, 4)
    expect(sorted(fp.asked) == sorted(j2keys), f"the worker asked the peer for each input {fp.asked}")
    _, done, _ = sched.wait(TASK_DONE, lambda b: b["job"] == 2)
    expect(done is not None and done["out_keys"] == ["J2/sigma/g1"], "SIGMA on fetched inputs done")
    t, body, sig2 = peer.get("J2/sigma/g1")
    expect(t == DATA and sig2 == sig1, "same sigma from fetched inputs")
    t, _, _ = peer.get("J2/raw/g1/s0")
    expect(t == DATA_MISSING, "fetched inputs are not kept after the task")

    # ---- a peer that lacks an input: TASK_FAILED naming it
    fp.asked = []
    j3keys = ["J3/info"] + [f"J3/raw/g0/s{s}" for s in range(3)]
    table = {"J3/info": info, "J3/raw/g0/s0": None, "J3/raw/g0/s1": raw.get("J1/raw/g0/s1"),
             "J3/raw/g0/s2": raw.get("J1/raw/g0/s2")}
    assign(sched, ident, 3, 3, K_SIGMA, v0=0, v1=3, z0=0, z1=nz, in_keys=j3keys,
           in_addrs=[fp.addr] * 4, out_key="J3/sigma/g0")
    fp.serve(table, 4)
    _, failed, _ = sched.wait(TASK_FAILED, lambda b: b["job"] == 3)
    expect(failed is not None and failed.get("input_missing") == "J3/raw/g0/s0",
           f"DATA_MISSING from the peer: TASK_FAILED input_missing {failed}")

    # ---- RELEASE, then a task needing the released chunk locally
    sched.send(ident, RELEASE, {"keys": ["J1/raw/g0/s1", "J1/never-held"]})
    time.sleep(0.2)
    t, _, _ = peer.get("J1/raw/g0/s1")
    expect(t == DATA_MISSING, "RELEASE drops the chunk: DATA_MISSING afterwards")
    assign(sched, ident, 1, 3, K_SIGMA, v0=0, v1=3, z0=0, z1=nz,
           in_keys=["J1/info"] + [f"J1/raw/g0/s{s}" for s in range(3)], in_addrs=[""] * 4,
           out_key="J1/sigma/g0")
    _, failed, _ = sched.wait(TASK_FAILED, lambda b: b["job"] == 1 and b["task"] == 3)
    expect(failed is not None and failed.get("input_missing") == "J1/raw/g0/s1",
           f"a local input that is gone: TASK_FAILED input_missing {failed}")

    # ---- kinds a worker does not run; NOOP
    assign(sched, ident, 1, 40, K_SAVE, in_keys=["J1/info"], in_addrs=[""])
    assign(sched, ident, 1, 41, 55)
    _, f1, _ = sched.wait(TASK_FAILED, lambda b: b["task"] == 40)
    _, f2, _ = sched.wait(TASK_FAILED, lambda b: b["task"] == 41)
    expect(f1 is not None and f2 is not None and "kind" in f2.get("error", ""),
           "SAVE and unknown kinds fail with a message")
    t0 = time.time()
    assign(sched, ident, 9, 0, K_NOOP)
    _, done, _ = sched.wait(TASK_DONE, lambda b: b["job"] == 9)
    expect(done is not None and done["out_keys"] == [] and done["out_sizes"] == [],
           f"NOOP answered at once ({(time.time() - t0) * 1000:.1f} ms)")

    # ---- garbage on both sockets; the worker keeps answering
    g = ctx.socket(zmq.DEALER)
    g.setsockopt(zmq.LINGER, 0)
    g.connect(peer_addr)
    bad = [[b"garbage"], [b"\x93\xa4dmri"], [header(DATA_GET, {"key": 5})],
           [header(DATA_GET, {"key": "J1/info"}, version=2)], [header(TASK_REQUEST, {"free_threads": 1})],
           [header(DATA_GET, {"key": "J1/info"}), b"payload", b"extra"], [b""]]
    answers = 0
    for frames in bad:
        g.send_multipart(frames)
        if g.poll(2000):
            t, body = parse(g.recv_multipart()[0])
            answers += t == ERROR
    expect(answers == len(bad), f"ERROR for each malformed message on the peer socket ({answers}/{len(bad)})")
    for frames in bad:
        sched.raw(ident, *frames)
    sched.raw(ident, header(TASK_ASSIGN, {"job": "x"}))
    sched.raw(ident, header(99, {}))
    sched.drop(ERROR)
    assign(sched, ident, 9, 1, K_NOOP)
    _, done, _ = sched.wait(TASK_DONE, lambda b: b["job"] == 9 and b["task"] == 1)
    expect(done is not None and wa.p.poll() is None, "still answering the scheduler after garbage")
    t, _, payload = peer.get("J1/info")
    expect(t == DATA and payload == info, "still serving chunks after garbage")
    expect("bad message from the scheduler" in wa.text() and "bad message on the peer socket" in wa.text(),
           "malformed messages are logged")

    # ---- the unreachable peer: TASK_FAILED after 15 s
    _, failed, _ = sched.wait(TASK_FAILED, lambda b: b["job"] == 5, timeout=max(1, t_dead + 22 - time.time()))
    waited = time.time() - t_dead
    expect(failed is not None and failed.get("input_missing") in j5keys and
           "no answer" in failed.get("error", ""),
           f"unreachable peer: TASK_FAILED input_missing after {waited:.1f} s ({failed})")

    # ---- a scheduler that no longer knows us (it answers ERRORs): HELLO
    # again after 5 s, chunks dropped
    sched.answer_hb = "error"
    t0 = time.time()
    _, hello2, _ = sched.wait(HELLO, ident=ident, timeout=9)
    quiet = time.time() - t0
    expect(hello2 is not None and 4.5 <= quiet <= 8, f"HELLO again after {quiet:.1f} s of ERRORs instead of heartbeats")
    sched.answer_hb = True
    sched.drop(TASK_REQUEST)
    sched.send(ident, WELCOME, {"peer_id": 2, "heartbeat_ms": 200})
    _, req, _ = sched.wait(TASK_REQUEST, ident=ident)
    expect(req is not None and req.get("free_threads") == 2, f"TASK_REQUEST after the new WELCOME {req}")
    t, _, _ = peer.get("J1/info")
    expect(t == DATA_MISSING and "registered again" in wa.text() and "dropped" in wa.text(),
           "chunks dropped on re-registration (and logged)")

    # ---- REFUSED: exit 1 with the reason
    wb = Worker(build, tmp, sched.addr, "wB", "--nthreads", "1")
    workers.append(wb)
    identb, _, _ = sched.wait(HELLO, lambda b: b.get("name") == "wB")
    sched.send(identb, REFUSED, {"reason": "name clash: wB is registered"})
    rc = wb.wait(5)
    expect(rc == 1 and "dmri-worker: refused by scheduler: name clash: wB is registered" in wb.text(),
           f"REFUSED: exit {rc} and the reason on stderr")

    # ---- the scheduler's BYE: exit 0
    wc = Worker(build, tmp, sched.addr, "wC", "--nthreads", "1")
    workers.append(wc)
    identc, _, _ = sched.wait(HELLO, lambda b: b.get("name") == "wC")
    sched.send(identc, WELCOME, {"peer_id": 3, "heartbeat_ms": 500})
    sched.wait(TASK_REQUEST, ident=identc)
    sched.send(identc, BYE, {"reason": "scheduler shutting down"})
    rc = wc.wait(5)
    expect(rc == 0 and "BYE" in wc.text(), f"scheduler BYE: exit {rc}")

    # ---- SIGTERM: BYE to the scheduler, exit 0, files cleaned up
    wa.p.send_signal(signal.SIGTERM)
    _, bye, _ = sched.wait(BYE, ident=ident, timeout=5)
    rc = wa.wait(5)
    expect(bye is not None and bye.get("reason") == "worker shutting down (SIGTERM)",
           f"SIGTERM: BYE sent ({bye})")
    expect(rc == 0, f"SIGTERM: exit {rc}")
    expect(not os.path.exists(pid_file), "pid file removed at exit")
    expect(os.listdir(spill) == [], f"spill folder removed at exit ({os.listdir(spill)})")

    chain_and_abandon(build, tmp, sched, workers)


def chain_and_abandon(build, tmp, sched, workers):
    """The mask chain and sigma on one worker, then SIGTERM while NL-means is
    computing: BYE at once, exit 0, spill folder removed."""
    subj = os.path.join(tmp, "subj64")
    subprocess.run([os.path.join(build, "client", "dmri-phantom"), "--out", subj, "--shape", "64",
                    "64", "48", "--b0", "2", "--shells", "1000", "--dirs", "14"], check=True,
                   capture_output=True)
    spill = os.path.join(tmp, "spill2")
    os.mkdir(spill)
    wd = Worker(build, tmp, sched.addr, "wD", "--nthreads", "1", "--memory-limit", "1M",
                "--spill-dir", spill)
    workers.append(wd)
    ident, _, _ = sched.wait(HELLO, lambda b: b.get("name") == "wD")
    sched.send(ident, WELCOME, {"peer_id": 4, "heartbeat_ms": 200})
    assign(sched, ident, 20, 0, K_LOAD, subject=subj, slab_slices=0, vols_per_task=16)
    _, done, _ = sched.wait(TASK_DONE, lambda b: b["job"] == 20 and b["task"] == 0, timeout=20)
    expect(done is not None and sorted(done["out_keys"]) == ["J20/info", "J20/raw/g0/s0"],
           f"LOAD of a 64x64x48x16 phantom as one chunk: {done and done['out_keys']}")
    whole = dict(v0=0, v1=0, z0=0, z1=48)
    chain = [(1, 0, whole, ["J20/raw/g0/s0"], "J20/meanb0"),
             (2, 1, whole, ["J20/meanb0"], "J20/median1/s0"),
             (3, 2, whole, ["J20/median1/s0"], "J20/median2/s0"),
             (4, 3, whole, ["J20/median2/s0"], "J20/mask"),
             (5, 4, dict(v0=0, v1=16, z0=0, z1=48), ["J20/raw/g0/s0"], "J20/sigma/g0")]
    for task, kind, rng, ins, out in chain:
        assign(sched, ident, 20, task, kind, in_keys=["J20/info"] + ins,
               in_addrs=[""] * (len(ins) + 1), out_key=out, **rng)
        _, done, _ = sched.wait(TASK_DONE, lambda b: b["job"] == 20 and b["task"] == task,
                                timeout=20)
        if not expect(done is not None and done["out_keys"] == [out], f"{out} computed"):
            _, f, _ = sched.wait(TASK_FAILED, lambda b: b["job"] == 20, timeout=0.1)
            print(f"  {f}")
            return
    expect(any(d.startswith("dmri-spill-") for d in os.listdir(spill)), "chunks spilled meanwhile")
    t0 = time.time()
    assign(sched, ident, 20, 6, 5, v0=0, v1=16, z0=0, z1=48,
           in_keys=["J20/info", "J20/mask", "J20/sigma/g0", "J20/raw/g0/s0"], in_addrs=[""] * 4,
           out_key="J20/den/g0/s0")
    time.sleep(0.3)
    _, early, _ = sched.wait(TASK_DONE, lambda b: b["job"] == 20 and b["task"] == 6, timeout=0.01)
    wd.p.send_signal(signal.SIGTERM)
    t1 = time.time()
    _, bye, _ = sched.wait(BYE, ident=ident, timeout=5)
    rc = wd.wait(5)
    took = time.time() - t1
    expect(early is None, "NL-means still computing when SIGTERM arrives")
    expect(bye is not None and rc == 0 and took < 2.0,
           f"SIGTERM during a task: BYE and exit {rc} after {took:.2f} s")
    expect("abandoned" in wd.text(), "the running task is abandoned (logged)")
    expect(os.listdir(spill) == [], f"spill folder removed ({os.listdir(spill)})")
    if early is None:
        # how long the task would have taken, for the record
        print(f"  (NL-means had run {t1 - t0:.2f} s when stopped)")


if __name__ == "__main__":
    sys.exit(main())
