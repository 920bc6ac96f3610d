#!/usr/bin/python3
"""dmri-submit --status against the real daemons: the workers that joined
(name, peer address, threads) and job counts, as JSON and as a table; a
worker that leaves disappears; a job run shows in the counts; a scheduler that
does not answer gives exit 1 with a message within --timeout."""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, phantom  # noqa: E402

from checks import FAILURES, expect  # noqa: E402


def status(c, *args, timeout=5):
    return subprocess.run([c.bin("client", "dmri-submit"), "--status", "--scheduler", c.addr,
                           "--timeout", str(timeout), *args],
                          capture_output=True, text=True, timeout=60)


def wait_workers(c, n, deadline=20):
    end = time.time() + deadline
    doc = None
    while time.time() < end:
        r = status(c, "--json")
        if r.returncode == 0:
            doc = json.loads(r.stdout)
            if len(doc["workers"]) == n:
                return doc
        time.sleep(0.1)
    return doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    tmp = tempfile.mkdtemp(prefix="dmri-status-")
    c = None
    try:
        c = Cluster(b, tmp)
        print("no worker yet")
        r = status(c, "--json")
        expect(r.returncode == 0, f"--status --json exit 0 ({r.returncode}) {r.stderr.strip()}")
        doc = json.loads(r.stdout)
        expect(doc.get("workers") == [] and doc.get("jobs") == {"active": 0, "done": 0, "failed": 0},
               f"empty cluster document: {doc}")

        print("two workers join")
        _, p1, _ = c.worker(nthreads=2)
        _, p2, _ = c.worker(nthreads=1, extra=["--name", "node \"B\""])
        doc = wait_workers(c, 2)
        names = sorted(w["name"] for w in doc["workers"]) if doc else []
        expect(names == ["node \"B\"", "w1"], f"both workers listed by name: {names}")
        by = {w["name"]: w for w in doc["workers"]} if doc else {}
        expect(by.get("w1", {}).get("threads") == 2 and by.get("node \"B\"", {}).get("threads") == 1,
               f"thread counts 2 and 1: {by}")
        expect(all(w["address"].startswith("tcp://127.0.0.1:") for w in by.values()),
               f"peer addresses: {[w['address'] for w in by.values()]}")
        r = status(c)
        expect(r.returncode == 0 and f"scheduler {c.addr}: 2 workers, 3 threads; jobs: 0 active"
               in r.stdout, f"table heading: {r.stdout!r}")
        lines = r.stdout.splitlines()
        expect(len(lines) == 4 and lines[1].split() == ["NAME", "ADDRESS", "THREADS"]
               and any(line.startswith("w1 ") and line.rstrip().endswith(" 2") for line in lines),
               f"table rows: {lines}")

        print("a job shows in the counts")
        s = phantom(b, os.path.join(tmp, "subj"), "--shape", "14", "16", "12", "--seed", "5",
                    "--b0", "2", "--shells", "1000", "--dirs", "6")
        rr = c.submit("--quiet", "--skip-denoise", "--out", os.path.join(tmp, "out"), s)
        expect(rr.returncode == 0, f"subject done (exit {rr.returncode}) {rr.stderr.strip()[-200:]}")
        rr = c.submit("--quiet", "--out", os.path.join(tmp, "out2"), os.path.join(tmp, "missing"))
        expect(rr.returncode == 1, "a missing subject fails")
        doc = json.loads(status(c, "--json").stdout)
        expect(doc["jobs"] == {"active": 0, "done": 1, "failed": 1}, f"job counts: {doc['jobs']}")

        print("a worker that stops leaves the list")
        p2.terminate()
        p2.wait(timeout=10)
        doc = wait_workers(c, 1)
        expect(doc is not None and [w["name"] for w in doc["workers"]] == ["w1"],
               f"only w1 left: {doc}")

        print("nobody answering: exit 1 with a message, within --timeout")
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)   # accepts TCP, never speaks ZeroMQ
        port = srv.getsockname()[1]
        t0 = time.time()
        r = subprocess.run([c.bin("client", "dmri-submit"), "--status", "--scheduler",
                            f"127.0.0.1:{port}", "--timeout", "1.5"],
                           capture_output=True, text=True, timeout=30)
        took = time.time() - t0
        srv.close()
        expect(r.returncode == 1 and f"127.0.0.1:{port}" in r.stderr and "no answer" in r.stderr,
               f"exit 1 naming the scheduler ({r.returncode}): {r.stderr.strip()}")
        expect(1.4 < took < 6, f"gave up after {took:.1f} s (--timeout 1.5)")
        r = subprocess.run([c.bin("client", "dmri-submit"), "--status", "subject"],
                           capture_output=True, text=True, timeout=30)
        expect(r.returncode == 2 and "--status" in r.stderr, f"usage error exit 2: {r.stderr.strip()}")
        alive = c.sched.poll() is None
        expect(alive, "scheduler still running")
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
    print("all status checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
