#!/usr/bin/python3
"""Does the status page slow scheduling? The no-op benchmark (dmri-submit
--bench-noop N through dmri-scheduler and two dmri-workers, as
bench_noop.py) with the dashboard on, once quiet and once while a loopback
load generator asks /api/status and /metrics 200 times a second (new
connection each time, as a crowd of browsers and Prometheus would), in
alternation, several rounds in the same run. Prints both throughputs, the
requests actually served, and the ratio loaded/quiet (target >= 0.9).

usage: bench/bench_dashboard.py [--build-dir build] [--tasks 1000000] [--rounds 5] [--rate 200]
(1,000,000 no-op tasks take ~10 s here: the hammered run lasts about that long.)
"""
import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_file(path, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and open(path).read().strip():
            return int(open(path).read())
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear")


class Hammer(threading.Thread):
    """GET /api/status and /metrics alternately at `rate` per second."""

    def __init__(self, port, rate):
        super().__init__(daemon=True)
        self.port, self.rate = port, rate
        self.stop_evt = threading.Event()
        self.ok = self.failed = self.bytes = 0

    def run(self):
        t0 = time.perf_counter()
        i = 0
        while not self.stop_evt.is_set():
            due = t0 + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            path = "/api/status" if i % 2 == 0 else "/metrics"
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status == 200:
                    self.ok += 1
                    self.bytes += len(body)
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1
            i += 1


def one_run(build, n, port):
    r = subprocess.run([os.path.join(build, "client", "dmri-submit"), "--scheduler",
                        f"127.0.0.1:{port}", "--bench-noop", str(n)],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError("dmri-submit --bench-noop failed: " + r.stderr)
    return float(re.search(r"([\d.]+) tasks/s", r.stdout).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tasks", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--prefetch", type=int, default=16)
    a = ap.parse_args()
    b = a.build_dir
    tmp = tempfile.mkdtemp(prefix="dmri-dash-bench-")
    log = open(os.path.join(tmp, "daemons.log"), "w")
    procs = []
    try:
        pf, df = os.path.join(tmp, "port"), os.path.join(tmp, "dport")
        procs.append(subprocess.Popen([os.path.join(b, "scheduler", "dmri-scheduler"), "--port", "0",
                                       "--port-file", pf, "--dashboard-port", "-1",
                                       "--dashboard-port-file", df, "--quiet"],
                                      stdout=log, stderr=log))
        port, dport = wait_file(pf), wait_file(df)
        for i in range(2):
            procs.append(subprocess.Popen([os.path.join(b, "worker", "dmri-worker"), f"127.0.0.1:{port}",
                                           "--nthreads", "1", "--prefetch", str(a.prefetch),
                                           "--name", f"noop{i}", "--listen", "tcp://127.0.0.1:*"],
                                          stdout=log, stderr=log))
        time.sleep(1.0)
        one_run(b, min(a.tasks, 20000), port)  # warm up
        quiet, loaded, served = [], [], []
        for rnd in range(a.rounds):
            quiet.append(one_run(b, a.tasks, port))
            h = Hammer(dport, a.rate)
            h.start()
            t0 = time.perf_counter()
            loaded.append(one_run(b, a.tasks, port))
            dt = time.perf_counter() - t0
            h.stop_evt.set()
            h.join()
            served.append((h.ok / dt, h.failed, h.bytes / max(h.ok, 1)))
            print(f"round {rnd + 1}: quiet {quiet[-1]:.0f} tasks/s, hammered {loaded[-1]:.0f} tasks/s "
                  f"({h.ok / dt:.0f} req/s served over {dt:.1f} s, {h.failed} failed, "
                  f"{h.bytes / max(h.ok, 1) / 1e3:.0f} kB/answer)", flush=True)
        q, l_ = statistics.median(quiet), statistics.median(loaded)
        ratios = [x / y for x, y in zip(loaded, quiet)]
        print(f"no-op throughput, median of {a.rounds}: quiet {q:.0f} tasks/s, with /api/status + "
              f"/metrics at {a.rate:.0f} req/s {l_:.0f} tasks/s")
        # Each round's two runs are back to back: the median of per-round
        # ratios is the least sensitive to other load on the machine.
        print(f"ratio hammered/quiet: {statistics.median(ratios):.3f} (median of per-round ratios "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.9)")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    sys.exit(main())
