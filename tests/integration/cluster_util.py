"""Helpers for cluster integration tests: start the real daemons on 127.0.0.1
with port files and logs, stop them by pid, compare outputs with dmri-run."""
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np

OUTPUTS = ["mask.nii.gz", "dti_fa.nii.gz", "dti_md.nii.gz", "dti_ad.nii.gz", "dti_rd.nii.gz",
           "dti_evecs.nii.gz", "dti_color_fa.nii.gz"]


class Cluster:
    def __init__(self, build, tmp, sched_args=()):
        self.build = build
        self.tmp = tmp
        self.procs = []          # (name, Popen, log path)
        Cluster.count = getattr(Cluster, "count", 0) + 1
        self.tag = f"c{Cluster.count}"
        port_file = os.path.join(tmp, f"sched-{self.tag}.port")
        log = os.path.join(tmp, f"scheduler-{self.tag}.log")
        self.sched_log = log
        # Many tests run schedulers in parallel: no status page unless asked for
        # (a taken 8787 would only be a warning, but keep the logs quiet).
        if not any(str(a).startswith("--dashboard-port") for a in sched_args):
            sched_args = ["--dashboard-port", "0", *sched_args]
        self.sched = self._start("scheduler", [self.bin("scheduler", "dmri-scheduler"), "--port", "0",
                                               "--port-file", port_file, *sched_args], log)
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            if time.time() > deadline or self.sched.poll() is not None:
                self.dump_logs()
                raise RuntimeError("scheduler did not start")
            time.sleep(0.05)
        self.port = int(open(port_file).read())
        self.addr = f"127.0.0.1:{self.port}"
        self.nworkers = 0

    def bin(self, sub, name):
        return os.path.join(self.build, sub, name)

    def _start(self, name, cmd, log):
        f = open(log, "w")
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        self.procs.append((name, p, log))
        return p

    def worker(self, nthreads=1, extra=()):
        self.nworkers += 1
        name = f"w{self.nworkers}"
        log = os.path.join(self.tmp, f"worker-{self.tag}-{name}.log")
        p = self._start(name, [self.bin("worker", "dmri-worker"), self.addr, "--nthreads", str(nthreads),
                               "--name", name, "--listen", "tcp://127.0.0.1:*", *extra], log)
        return name, p, log

    def submit(self, *args, timeout=600):
        cmd = [self.bin("client", "dmri-submit"), "--scheduler", self.addr, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def submit_async(self, *args):
        self.nsubmits = getattr(self, "nsubmits", 0) + 1
        log = os.path.join(self.tmp, f"submit-{self.tag}-{self.nsubmits}.log")
        f = open(log, "w")
        p = subprocess.Popen([self.bin("client", "dmri-submit"), "--scheduler", self.addr, *args],
                             stdout=f, stderr=subprocess.STDOUT)
        return p, log

    def wait_log(self, log, text, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(log) and text in open(log, errors="replace").read():
                return True
            time.sleep(0.05)
        return False

    def dump_logs(self):
        for name, p, log in self.procs:
            print(f"----- {name} (pid {p.pid}, exit {p.poll()}) log:")
            try:
                sys.stdout.write(open(log, errors="replace").read()[-6000:])
            except OSError:
                pass

    def stop(self):
        # Workers first, then the scheduler; by pid, escalating after a timeout.
        for name, p, _ in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def read_text(path):
    """A log's text so far ("" if it does not exist yet)."""
    try:
        return open(path, errors="replace").read()
    except OSError:
        return ""


def phantom(build, path, *args):
    subprocess.run([os.path.join(build, "client", "dmri-phantom"), "--out", path, *args],
                   check=True, capture_output=True)
    return path


def dmri_run(build, subject, out, *args):
    r = subprocess.run([os.path.join(build, "client", "dmri-run"), "--quiet", "--out", out, *args,
                        subject], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("dmri-run failed: " + r.stderr)
    return os.path.join(out, os.path.basename(subject.rstrip("/")))


def same_outputs(a, b, files=OUTPUTS):
    """Every output has identical voxel bytes, dtype, shape and affine."""
    problems = []
    for f in files:
        ia, ib = nib.load(os.path.join(a, f)), nib.load(os.path.join(b, f))
        da, db = np.asanyarray(ia.dataobj), np.asanyarray(ib.dataobj)
        if da.dtype != db.dtype or da.shape != db.shape or da.tobytes() != db.tobytes():
            problems.append(f"{f}: voxel data differ")
        if not np.array_equal(ia.affine, ib.affine):
            problems.append(f"{f}: affine differs")
    return problems
