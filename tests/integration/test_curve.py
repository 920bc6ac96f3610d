#!/usr/bin/python3
"""CURVE authentication and encryption, with real daemons on 127.0.0.1:
dmri-keygen makes the keys; a scheduler and two workers with keys run a
phantom subject for a client with a certificate, byte-identical to dmri-run;
a worker without keys and one with an unknown certificate are refused (exit 1
with the reason; the scheduler logs the address of the unknown key); a client
without a certificate or with an unknown one exits 1 at once with the reason;
a plain ZeroMQ socket gets nothing from the scheduler nor from a worker's peer
socket, while the same socket with an authorized certificate gets answers;
a secret key file readable by others is refused; without keys the scheduler
warns once that the cluster is open."""
import argparse
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import OUTPUTS, Cluster, dmri_run, phantom, same_outputs  # noqa: E402

from checks import FAILURES, expect  # noqa: E402
from hostile_util import header  # noqa: E402


def key_of(path, name):
    """The Z85 text of `name` ("public"/"secret") in a dmri key file."""
    for line in open(path):
        m = re.match(r"\s*(public|secret)\s*=\s*(\S+)\s*$", line)
        if m and m.group(1) == name:
            return m.group(2).encode()
    raise ValueError(f"{path}: no {name} key")


def ask(ctx, endpoint, frame, cert=None, server_pub=None, wait=2.0):
    """Send one header frame from a fresh DEALER; the first reply's type or None."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if cert:
        s.curve_publickey = key_of(cert, "public")
        s.curve_secretkey = key_of(cert, "secret")
        s.curve_serverkey = server_pub
    s.connect(endpoint)
    s.send(frame)
    reply = None
    if s.poll(int(wait * 1000)):
        parts = s.recv_multipart()
        reply = msgpack.unpackb(parts[0], raw=False)[2]
    s.close()
    return reply


class TapProxy:
    """A TCP forwarder to `port` that records every byte in both directions:
    what anyone on the path between client and scheduler could read."""

    def __init__(self, port, host="127.0.0.1"):
        self.port = port
        self.host = host
        self.seen = bytearray()
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.addr = f"127.0.0.1:{self.srv.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.seen += data
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self):
        while True:
            try:
                a, _ = self.srv.accept()
            except OSError:
                return
            b = socket.create_connection((self.host, self.port))
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
            threading.Thread(target=self._pump, args=(b, a), daemon=True).start()

    def close(self):
        self.srv.close()


def wait_exit(p, timeout):
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None
    return p.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    tmp = tempfile.mkdtemp(prefix="dmri-curve-")
    keygen = os.path.join(b, "client", "dmri-keygen")
    clusters = []
    ctx = zmq.Context()
    try:
        print("dmri-keygen")
        keys = os.path.join(tmp, "keys")
        r = subprocess.run([keygen, keys, "--cert", "w1", "--cert", "w2", "--cert", "alice"],
                           capture_output=True, text=True)
        expect(r.returncode == 0, f"keygen exit {r.returncode} {r.stderr.strip()}")
        mode = lambda p: stat.S_IMODE(os.stat(os.path.join(keys, p)).st_mode)  # noqa: E731
        expect(mode("cluster.secret") == 0o600 and mode("certs/alice.cert") == 0o600
               and mode(".") == 0o700, "secret files 0600, the folder 0700")
        expect(sorted(os.listdir(os.path.join(keys, "authorized"))) == ["alice.pub", "w1.pub", "w2.pub"],
               "one public key per certificate in authorized/")
        pub = key_of(os.path.join(keys, "cluster.pub"), "public")
        r = subprocess.run([keygen, keys, "--cert", "alice"], capture_output=True, text=True)
        expect(r.returncode == 1 and "exists" in r.stderr, f"an existing name is not overwritten: {r.stderr.strip()}")
        r = subprocess.run([keygen, keys, "--cert", "bob"], capture_output=True, text=True)
        expect(r.returncode == 0 and key_of(os.path.join(keys, "cluster.pub"), "public") == pub,
               "adding a member keeps the cluster key")
        other = os.path.join(tmp, "other")   # another cluster's keys: mallory is unknown here
        subprocess.run([keygen, other, "--cert", "mallory"], check=True, capture_output=True)
        mallory = os.path.join(other, "certs", "mallory.cert")
        alice = os.path.join(keys, "certs", "alice.cert")

        small = ["--b0", "3", "--shells", "1000,2000", "--dirs", "10"]
        subj = phantom(b, os.path.join(tmp, "subjA"), "--shape", "30", "34", "26", "--seed", "31", *small)
        ref = dmri_run(b, subj, os.path.join(tmp, "ref"))

        print("scheduler and two workers with keys run a subject for a client with a certificate")
        c = Cluster(b, tmp, ["--keys", keys, "--slab-slices", "8", "--vols-per-task", "4"])
        clusters.append(c)
        w1 = c.worker(extra=["--keys", keys])   # certificate by name: keys/certs/w1.cert
        w2 = c.worker(extra=["--keys", keys, "--cert", os.path.join(keys, "certs", "w2.cert")])
        expect(c.wait_log(c.sched_log, "worker w1 joined", 20) and c.wait_log(c.sched_log, "worker w2 joined", 20),
               "both workers joined")
        out = os.path.join(tmp, "out")
        r = c.submit("--keys", keys, "--cert", alice, "--out", out, subj)
        expect(r.returncode == 0, f"dmri-submit with a certificate: exit {r.returncode} {r.stderr.strip()[-300:]}")
        if r.returncode == 0:
            probs = same_outputs(os.path.join(out, "subjA"), ref, OUTPUTS)
            expect(not probs, f"outputs byte-identical to dmri-run {probs}")
        both = all("nlmeans" in open(w[2], errors="replace").read() for w in (w1, w2))
        expect(both, "both workers computed (so chunks moved between their peer sockets)")

        print("the traffic is encrypted: a tap between client and scheduler never sees the data")
        tap = TapProxy(c.port)
        out = os.path.join(tmp, "out-tap")
        cmd = [c.bin("client", "dmri-submit"), "--scheduler", tap.addr, "--keys", keys, "--cert", alice,
               "--out", out, subj]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        tap.close()
        expect(r.returncode == 0, f"run through the tap: exit {r.returncode} {r.stderr.strip()[-200:]}")
        seen = bytes(tap.seen)
        mask = open(os.path.join(out, "subjA", "mask.nii.gz"), "rb").read() if r.returncode == 0 else b""
        import nibabel as nib  # noqa: E402
        voxels = nib.load(os.path.join(ref, "dti_fa.nii.gz")).get_fdata().astype("float32").tobytes()
        # a run of 64 bytes holding no zero word (the background is zeros)
        words = [voxels[i:i + 4] for i in range(0, len(voxels), 4)]
        start = next(i for i in range(len(words) - 16) if all(w != bytes(4) for w in words[i:i + 16]))
        probe = b"".join(words[start:start + 16])
        expect(len(seen) > len(voxels) and b"CURVE" in seen,
               f"the tap saw the CURVE session ({len(seen)} bytes)")
        expect(subj.encode() not in seen and b"dmri-submit@" not in seen and b"client" not in seen,
               f"no subject path, client name or role in clear ({subj.encode() in seen}, "
               f"{b'dmri-submit@' in seen}, {b'client' in seen})")
        expect(probe not in seen and len(mask) > 0, "no 64-byte run of the FA map in clear")

        print("a worker without keys, and one with an unknown certificate, are refused")
        name, p, log = c.worker()
        code = wait_exit(p, 20)
        text = open(log, errors="replace").read()
        expect(code == 1 and "authentication failed" in text and "CURVE" in text,
               f"worker without keys exits 1 naming the reason (exit {code}): {text.strip()[-250:]}")
        name, p, log = c.worker(extra=["--keys", keys, "--cert", mallory])
        code = wait_exit(p, 20)
        text = open(log, errors="replace").read()
        expect(code == 1 and "certificate was refused" in text,
               f"worker with an unknown certificate exits 1 (exit {code}): {text.strip()[-250:]}")
        name2, p, log = c.worker(extra=["--keys", other, "--cert", mallory])   # another cluster's keys
        code = wait_exit(p, 20)
        text = open(log, errors="replace").read()
        expect(code == 1 and "security handshake" in text,
               f"worker with another cluster's keys exits 1 (exit {code}): {text.strip()[-250:]}")
        expect(c.wait_log(c.sched_log, "refused connection from 127.0.0.1: unknown CURVE key", 5),
               "the scheduler logs the refusal with the address")
        slog = open(c.sched_log).read()
        expect(f"worker {name} joined" not in slog and "worker w3 joined" not in slog
               and f"worker {name2} joined" not in slog, "no refused worker was registered")

        print("a client without a certificate, and one with an unknown certificate, exit 1 at once")
        t0 = time.time()
        r = c.submit("--timeout", "20", "--out", os.path.join(tmp, "o2"), subj)
        expect(r.returncode == 1 and "authentication failed" in r.stderr and time.time() - t0 < 10,
               f"no keys: exit {r.returncode} in {time.time() - t0:.1f} s: {r.stderr.strip()[-200:]}")
        t0 = time.time()
        r = c.submit("--timeout", "20", "--keys", keys, "--cert", mallory, "--out", os.path.join(tmp, "o3"), subj)
        expect(r.returncode == 1 and "certificate was refused" in r.stderr and time.time() - t0 < 10,
               f"unknown certificate: exit {r.returncode} in {time.time() - t0:.1f} s: {r.stderr.strip()[-200:]}")
        r = c.submit("--keys", keys, "--cert", os.path.join(tmp, "nope.cert"), subj)
        expect(r.returncode == 1 and "nope.cert" in r.stderr, f"a missing certificate is named: {r.stderr.strip()}")

        print("plain ZeroMQ sockets get nothing, from the scheduler nor from a worker's peer socket")
        hello = header(1, {"role": "client", "name": "py", "pid": os.getpid()})
        sched_ep = f"tcp://{c.addr}"
        expect(ask(ctx, sched_ep, hello) is None, "scheduler: no answer without CURVE")
        expect(ask(ctx, sched_ep, hello, mallory, pub) is None, "scheduler: no answer to an unknown key")
        expect(ask(ctx, sched_ep, hello, alice, pub) == 2, "scheduler: WELCOME for an authorized key (control)")
        m = re.search(r"peer socket (tcp://127\.0\.0\.1:\d+)", open(w1[2]).read())
        expect(m is not None, "worker w1 logged its peer socket")
        if m:
            get = header(20, {"key": "J999/mask", "request": 7})
            expect(ask(ctx, m.group(1), get) is None, "worker peer socket: no answer without CURVE")
            expect(ask(ctx, m.group(1), get, mallory, pub) is None, "worker peer socket: no answer to an unknown key")
            expect(ask(ctx, m.group(1), get, alice, pub) == 22,
                   "worker peer socket: DATA_MISSING for an authorized key (control)")
        wlog = open(w1[2]).read()
        expect("refused connection from 127.0.0.1: unknown CURVE key" in wlog,
               "the worker logs the refusal on its peer socket")
        alive = [p for n, p, _ in c.procs if n in ("scheduler", "w1", "w2") and p.poll() is None]
        expect(len(alive) == 3, "scheduler and both workers still running")
        c.stop()

        print("a secret key readable by others is refused; without keys the open cluster is warned of once")
        loose = os.path.join(tmp, "loose")
        shutil.copytree(keys, loose)
        os.chmod(os.path.join(loose, "cluster.secret"), 0o644)
        r = subprocess.run([os.path.join(b, "scheduler", "dmri-scheduler"), "--port", "0", "--keys", loose],
                           capture_output=True, text=True, timeout=20)
        expect(r.returncode == 1 and "chmod 600" in r.stderr, f"scheduler refuses to start: {r.stderr.strip()}")
        c2 = Cluster(b, tmp, ["--host", "127.0.0.2"])
        clusters.append(c2)
        time.sleep(0.3)
        text = open(c2.sched_log).read()
        expect(text.count("the cluster is open") == 1, "one 'cluster is open' warning without keys")
        # control for the tap: without keys the same bytes are readable
        tap = TapProxy(c2.port, "127.0.0.2")
        reply = ask(ctx, f"tcp://{tap.addr}", header(1, {"role": "client", "name": "dmri-submit@tap", "pid": 1}))
        tap.close()
        expect(reply == 2 and b"dmri-submit@tap" in bytes(tap.seen),
               "control: without keys the tap reads the client's name")
        c2.stop()
        c3 = Cluster(b, tmp, ["--host", "127.0.0.2", "--keys", keys])
        clusters.append(c3)
        time.sleep(0.3)
        text = open(c3.sched_log).read()
        expect("the cluster is open" not in text and "CURVE authentication and encryption on" in text,
               "with keys: no warning, authentication announced")
        c3.stop()
    except Exception as e:  # noqa: BLE001
        expect(False, f"exception: {e!r}")
    finally:
        if FAILURES:
            for c in clusters:
                c.dump_logs()
        for c in clusters:
            c.stop()
        ctx.destroy(linger=0)
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} checks FAILED")
        return 1
    print("all CURVE checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
