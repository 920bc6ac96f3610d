#!/usr/bin/python3
"""Chunk size trade-off on the cluster: one phantom subject through
dmri-scheduler + N single-thread dmri-workers for several chunkings (z-slab
thickness x volumes per NL-means task). Prints wall time, task count, the
NL-means halo overhead (extra slices read per slice computed: 2*5/slab), the
bytes every task fetched from other workers (sum of input chunk sizes that
were not local, from the workers' logs is not available, so it is computed
from the chunk layout: each NL-means task reads its volume group's slab plus
its halo slabs), and compute seconds summed over workers (from the job summary).

usage: bench/bench_chunks.py [--build-dir build] [--workers 2] [--shape 64 76 64]
"""
import argparse
import json
import os
import socket
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


def run(build, subject, out, workers, slab, vpt):
    port = free_port()
    procs = []
    devnull = open(os.devnull, "w")
    try:
        procs.append(subprocess.Popen([os.path.join(build, "scheduler", "dmri-scheduler"), "--port",
                                       str(port), "--quiet", "--slab-slices", str(slab),
                                       "--vols-per-task", str(vpt)], stdout=devnull, stderr=devnull))
        time.sleep(0.3)
        for i in range(workers):
            procs.append(subprocess.Popen([os.path.join(build, "worker", "dmri-worker"),
                                           f"127.0.0.1:{port}", "--nthreads", "1", "--listen",
                                           "tcp://127.0.0.1:*"], stdout=devnull, stderr=devnull))
        time.sleep(0.5)
        t = time.perf_counter()
        r = subprocess.run([os.path.join(build, "client", "dmri-submit"), "--quiet", "--scheduler",
                            f"127.0.0.1:{port}", "--out", out, subject], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        summ = json.load(open(os.path.join(out, os.path.basename(subject), "summary.json")))
        return wall, summ.get("cluster", {})
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shape", nargs=3, type=int, default=[64, 76, 64])
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dmri-chunks-")
    subj = os.path.join(tmp, "phantom")
    subprocess.run([os.path.join(a.build_dir, "client", "dmri-phantom"), "--out", subj, "--shape",
                    *map(str, a.shape), "--b0", "3", "--shells", "1000,2000", "--dirs", "15"],
                   check=True, capture_output=True)
    nz = a.shape[2]
    G = 33
    print(f"phantom {a.shape[0]}x{a.shape[1]}x{nz}x{G}, {a.workers} workers x 1 thread")
    print(f"{'slab':>5} {'vols/task':>9} {'tasks':>6} {'halo overhead':>14} {'wall s':>8} "
          f"{'compute s':>10} {'nlmeans s':>10}")
    t0 = time.perf_counter()
    w1, s1 = run(a.build_dir, subj, os.path.join(tmp, "ref"), 1, nz, G)
    for slab, vpt in [(4, 4), (8, 4), (16, 8), (32, 8), (nz, 8), (nz, G)]:
        wall, summ = run(a.build_dir, subj, os.path.join(tmp, f"o{slab}-{vpt}"), a.workers, slab, vpt)
        nslabs = -(-nz // slab)
        halo = sum(min(nz, (s + 1) * slab + 5) - max(0, s * slab - 5) for s in range(nslabs)) / nz - 1
        comp = summ.get("compute_seconds", {})
        print(f"{slab:>5} {vpt:>9} {summ.get('tasks', 0):>6} {100 * halo:>13.0f}% {wall:>8.2f} "
              f"{sum(comp.values()):>10.2f} {comp.get('nlmeans', 0):>10.2f}")
    print(f"reference: 1 worker, whole volumes, all volumes in one task: {w1:.2f} s wall")
    print(f"(total benchmark time {time.perf_counter() - t0:.0f} s)")
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
