#!/usr/bin/python3
"""deploy/dmri-daemon.sh, the start/stop helper of the playbooks, with real
processes (no root, no ansible): a start detaches the daemon and writes its
pid file; a second start starts nothing; a stale pid file (a live process
running another binary) neither blocks a start nor gets a signal; a daemon
that ignores SIGTERM is SIGKILLed after the timeout; stop removes the pid file;
stopping a stopped daemon changes nothing; a daemon that dies at once fails
the start with the end of its log."""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "deploy", "dmri-daemon.sh")
PY = "/usr/bin/python3"
from checks import FAILURES, expect  # noqa: E402


def run(*args):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60)


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except OSError:
        return False


def copies(marker):
    n = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0] == PY.encode() and marker.encode() in b" ".join(cmd) and alive(int(p)):
                n.append(int(p))
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dmri-daemon-sh-")
    marker = tmp   # in every command line we start, so we find (and clean up) only ours
    pidf, log = os.path.join(tmp, "run", "d.pid"), os.path.join(tmp, "log", "d.log")
    stubborn = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('up', flush=True); time.sleep(120)")
    try:
        r = run("start", pidf, log, PY, "-c", stubborn, marker)
        expect(r.returncode == 0 and r.stdout.startswith("changed: started"),
               f"start: {r.stdout.strip()} {r.stderr.strip()}")
        pid = int(open(pidf).read()) if os.path.exists(pidf) else -1
        expect(copies(marker) == [pid], f"one daemon, the pid file names it ({copies(marker)} vs {pid})")
        expect(os.getsid(pid) == pid if alive(pid) else False, "it leads its own session (setsid)")
        expect("up" in open(log).read(), "its output goes to the log")
        r = run("start", pidf, log, PY, "-c", stubborn, marker)
        expect(r.returncode == 0 and r.stdout.startswith("ok: ") and copies(marker) == [pid],
               f"second start starts nothing: {r.stdout.strip()}")

        print("SIGTERM ignored: SIGKILL after the timeout")
        t0 = time.time()
        r = run("stop", pidf, PY, "1")
        took = time.time() - t0
        expect(r.returncode == 0 and "SIGKILL after 1 s" in r.stdout, f"stop: {r.stdout.strip()}")
        expect(1.0 <= took < 10, f"escalated after the timeout ({took:.1f} s)")
        expect(not alive(pid) and not copies(marker), "the daemon is gone")
        expect(not os.path.exists(pidf), "pid file removed")
        r = run("stop", pidf, PY, "1")
        expect(r.returncode == 0 and r.stdout.startswith("ok: "), f"stop again: {r.stdout.strip()}")

        print("a stale pid file naming another program")
        other = subprocess.Popen(["sleep", "60"])
        try:
            open(pidf, "w").write(f"{other.pid}\n")
            r = run("stop", pidf, PY, "1")
            expect(r.returncode == 0 and "stale" in r.stdout and other.poll() is None,
                   f"stop leaves the other program alone: {r.stdout.strip()}")
            open(pidf, "w").write(f"{other.pid}\n")
            r = run("start", pidf, log, PY, "-c", "import time; time.sleep(120)", marker)
            expect(r.returncode == 0 and r.stdout.startswith("changed: started"),
                   f"start ignores the stale pid file: {r.stdout.strip()}")
            r = run("stop", pidf, PY, "5")
            expect(r.returncode == 0 and "with SIGTERM" in r.stdout and not copies(marker),
                   f"a daemon that obeys SIGTERM: {r.stdout.strip()}")
        finally:
            other.kill()
            other.wait()

        print("a daemon that dies at once")
        r = run("start", pidf, log, PY, "-c", "import sys; print('bad option'); sys.exit(2)", marker)
        expect(r.returncode == 1 and "bad option" in r.stderr and not os.path.exists(pidf),
               f"start fails with its log: {r.stderr.strip()[-200:]}")
        r = run("start", pidf, log, os.path.join(tmp, "nonexistent"))
        expect(r.returncode == 1 and "not installed" in r.stderr, f"missing binary: {r.stderr.strip()}")
        r = run("frobnicate")
        expect(r.returncode == 2, "usage error exits 2")
    except Exception as e:  # noqa: BLE001
        expect(False, f"exception: {e!r}")
    finally:
        for p in copies(marker):
            os.kill(p, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} checks FAILED")
        return 1
    print("all dmri-daemon.sh checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
