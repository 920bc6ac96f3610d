#!/usr/bin/python3
"""Scheduler overhead: N no-op tasks through dmri-scheduler and two
dmri-workers (dmri-submit --bench-noop N), against Dask (dask-scheduler, two
dask-workers of one thread, client.map of a no-op) on the same machine in the
same run. Prints tasks per second of both, the ratio, and round-trip latency.

usage: bench/bench_noop.py [--build-dir build] [--tasks 100000] [--dask-tasks 5000]
Targets (issue "The cluster"): >= 50x Dask's tasks/s, median round trip < 0.5 ms.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def stop(procs):
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def bench_dmri(build, n, tmp, prefetch):
    port = free_port()
    procs = []
    log = open(os.path.join(tmp, "dmri.log"), "w")
    try:
        procs.append(subprocess.Popen([os.path.join(build, "scheduler", "dmri-scheduler"),
                                       "--port", str(port), "--quiet"], stdout=log, stderr=log))
        wait_port(port)
        for i in range(2):
            procs.append(subprocess.Popen([os.path.join(build, "worker", "dmri-worker"),
                                           f"127.0.0.1:{port}", "--nthreads", "1", "--prefetch",
                                           str(prefetch), "--name", f"noop{i}", "--listen", "tcp://127.0.0.1:*"],
                                          stdout=log, stderr=log))
        time.sleep(1.0)
        r = subprocess.run([os.path.join(build, "client", "dmri-submit"), "--scheduler",
                            f"127.0.0.1:{port}", "--bench-noop", str(n)],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("dmri-submit --bench-noop failed: " + r.stderr)
        m = re.search(r"\{.*\}", r.stdout, re.S)
        summary = json.loads(m.group(0)) if m else {}
        tps = re.search(r"([\d.]+) tasks/s", r.stdout)
        return (float(tps.group(1)) if tps else summary.get("tasks_per_second", 0.0)), summary, r.stdout
    finally:
        stop(procs)


def noop(x):
    return x


def bench_dask(n, tmp):
    port = free_port()
    procs = []
    log = open(os.path.join(tmp, "dask.log"), "w")
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    try:
        procs.append(subprocess.Popen(["dask-scheduler", "--port", str(port), "--no-dashboard",
                                       "--host", "127.0.0.1"], stdout=log, stderr=log, env=env))
        wait_port(port)
        for i in range(2):
            procs.append(subprocess.Popen(["dask-worker", f"tcp://127.0.0.1:{port}", "--nthreads",
                                           "1", "--no-dashboard", "--name", f"dask{i}"],
                                          stdout=log, stderr=log, env=env))
        from distributed import Client
        c = Client(f"tcp://127.0.0.1:{port}", timeout=30)
        c.wait_for_workers(2, timeout=60)
        c.gather(c.map(noop, range(100), pure=False))      # warm up
        t0 = time.perf_counter()
        c.gather(c.map(noop, range(n), pure=False))
        dt = time.perf_counter() - t0
        rtts = []
        for i in range(200):
            t = time.perf_counter()
            c.submit(noop, i, pure=False).result()
            rtts.append(time.perf_counter() - t)
        c.close()
        return n / dt, statistics.median(rtts)
    finally:
        stop(procs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--dask-tasks", type=int, default=5000)
    ap.add_argument("--prefetch", type=int, default=16,
                    help="dmri-worker --prefetch (Dask workers take every task they are sent)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dmri-noop-")
    d_tps, summary, out = bench_dmri(a.build_dir, a.tasks, tmp, a.prefetch)
    k_tps, k_rtt = bench_dask(a.dask_tasks, tmp)
    med = summary.get("median_round_trip_ms", float("nan"))
    print(f"{'system':<10} {'tasks':>8} {'tasks/s':>10} {'median round trip':>18}")
    print(f"{'dmri':<10} {a.tasks:>8} {d_tps:>10.0f} {med:>15.3f} ms")
    print(f"{'dask':<10} {a.dask_tasks:>8} {k_tps:>10.0f} {1e3 * k_rtt:>15.3f} ms")
    print(f"ratio: dmri {d_tps / k_tps:.1f}x Dask's tasks per second "
          f"(target >= 50x); dmri median round trip {med:.3f} ms (target < 0.5 ms)")
    print(f"(dmri-worker --prefetch {a.prefetch}; 2 workers x 1 thread on each side; dmri's round trip is scheduler -> worker -> "
          "scheduler under load; Dask's is one client.submit().result() at a time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
