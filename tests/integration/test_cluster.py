#!/usr/bin/python3
"""The cluster, with real daemons on 127.0.0.1: dmri-scheduler, three
dmri-workers and dmri-submit on two phantom subjects give outputs identical to
dmri-run's; the same with a worker SIGKILLed in the middle of denoising and
another joining late; a client that disconnects while a second one submits;
a bad subject failing alone; one subject spreading over every worker."""
import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import OUTPUTS, Cluster, dmri_run, phantom, same_outputs  # noqa: E402

from checks import FAILURES, expect  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    tmp = tempfile.mkdtemp(prefix="dmri-cluster-")
    clusters = []
    try:
        small = ["--b0", "3", "--shells", "1000,2000", "--dirs", "10"]
        s1 = phantom(b, os.path.join(tmp, "subjA"), "--shape", "30", "34", "26", "--seed", "21", *small)
        s2 = phantom(b, os.path.join(tmp, "subjB"), "--shape", "24", "28", "20", "--seed", "22",
                     "--dtype", "int16", *small)
        big = phantom(b, os.path.join(tmp, "subjC"), "--shape", "44", "52", "40", "--seed", "23",
                      "--b0", "3", "--shells", "1000,2000", "--dirs", "14")
        ref = {s: dmri_run(b, s, os.path.join(tmp, "ref"), "--save-denoised") for s in (s1, s2, big)}

        print("three workers, two subjects")
        c = Cluster(b, tmp, ["--slab-slices", "8", "--vols-per-task", "4", "--worker-timeout", "2"])
        clusters.append(c)
        for _ in range(3):
            c.worker()
        out = os.path.join(tmp, "out1")
        r = c.submit("--out", out, "--save-denoised", s1, s2)
        expect(r.returncode == 0, f"dmri-submit exit {r.returncode}: {r.stderr.strip()[-300:]}")
        for s in (s1, s2):
            name = os.path.basename(s)
            probs = same_outputs(os.path.join(out, name), ref[s],
                                 ["denoised.nii.gz"] + OUTPUTS)
            expect(not probs, f"{name}: outputs identical to dmri-run {probs}")
            summ = json.load(open(os.path.join(out, name, "summary.json")))
            rsum = json.load(open(os.path.join(ref[s], "summary.json")))
            expect(summ["sigma"] == rsum["sigma"] and summ["mask_voxels"] == rsum["mask_voxels"],
                   f"{name}: summary sigma and mask count as dmri-run")

        print("a bad subject fails alone")
        bad = os.path.join(tmp, "bad")
        shutil.copytree(s2, bad)
        raw = open(os.path.join(bad, "data.nii.gz"), "rb").read()
        open(os.path.join(bad, "data.nii.gz"), "wb").write(raw[: len(raw) // 3])
        out = os.path.join(tmp, "out2")
        r = c.submit("--out", out, bad, s1)
        expect(r.returncode == 1, f"exit {r.returncode} when one subject fails")
        expect("bad" in r.stderr and "data.nii.gz" in r.stderr,
               f"failure names the subject and file: {r.stderr.strip()[-300:]}")
        expect(not same_outputs(os.path.join(out, "subjA"), ref[s1]), "the good subject still completes")

        print("SIGKILL a worker in the middle of denoising; another joins late")
        out = os.path.join(tmp, "out3")
        sub, sublog = c.submit_async("--out", out, big)
        victim = None
        deadline = time.time() + 120
        while victim is None and time.time() < deadline:
            for name, p, log in c.procs:
                if name.startswith("w") and p.poll() is None and "nlmeans" in open(log, errors="replace").read():
                    victim = (name, p)
                    break
            time.sleep(0.05)
        expect(victim is not None, "a worker started denoising")
        if victim:
            victim[1].send_signal(signal.SIGKILL)
            victim[1].wait()
        c.worker()   # joins late
        sub.wait(timeout=600)
        expect(sub.returncode == 0, f"subject finished after the kill (exit {sub.returncode})")
        if sub.returncode == 0:
            probs = same_outputs(os.path.join(out, "subjC"), ref[big])
            expect(not probs, f"outputs identical to dmri-run after the kill {probs}")
        slog = open(c.sched_log).read()
        expect("lost" in slog, "the scheduler noticed the dead worker")

        print("a client disconnects; a second client submits meanwhile")
        out = os.path.join(tmp, "out4")
        p1, _ = c.submit_async("--out", os.path.join(tmp, "out4a"), big)
        time.sleep(1.0)
        p1.send_signal(signal.SIGKILL)
        p1.wait()
        r = c.submit("--out", out, s1)
        expect(r.returncode == 0, f"second client's subject done (exit {r.returncode}) {r.stderr.strip()[-200:]}")
        expect(not same_outputs(os.path.join(out, "subjA"), ref[s1]), "second client's outputs identical")
        alive = [p for n, p, _ in c.procs if n == "scheduler" and p.poll() is None]
        expect(bool(alive), "scheduler still running")

        print("a worker of another protocol version is refused, with a message on both sides")
        os.environ["DMRI_TEST_PROTOCOL_VERSION"] = "2"
        name, p, log = c.worker()
        del os.environ["DMRI_TEST_PROTOCOL_VERSION"]
        try:
            p.wait(timeout=20)
        except Exception:  # noqa: BLE001
            p.kill()
        wlog = open(log, errors="replace").read()
        expect(p.returncode == 1 and "refused" in wlog and "version" in wlog,
               f"old worker exits 1 with the reason: {wlog.strip()[-200:]}")
        expect("version 2" in open(c.sched_log).read(), "the scheduler logs the refusal")
        c.stop()

        print("one subject spreads over four single-thread workers")
        c2 = Cluster(b, tmp, ["--slab-slices", "10", "--vols-per-task", "6"])
        clusters.append(c2)
        logs = [c2.worker()[2] for _ in range(4)]
        out = os.path.join(tmp, "out5")
        r = c2.submit("--out", out, big)
        expect(r.returncode == 0, f"exit {r.returncode}")
        busy = [log for log in logs if "nlmeans" in open(log, errors="replace").read()]
        expect(len(busy) == 4, f"{len(busy)} of 4 workers ran NL-means tasks")
        c2.stop()

        print("SIGTERM on a worker hands its work back; SIGTERM on the scheduler tells everyone")
        c3 = Cluster(b, tmp, ["--slab-slices", "8", "--vols-per-task", "4"])
        clusters.append(c3)
        wa = c3.worker()
        wb = c3.worker()
        out = os.path.join(tmp, "out6")
        sub, sublog = c3.submit_async("--out", out, big)
        expect(c3.wait_log(wa[2], "nlmeans", 120), "worker A is denoising")
        wa[1].send_signal(signal.SIGTERM)
        try:
            wa[1].wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass
        expect(wa[1].returncode == 0, f"worker A exits 0 on SIGTERM (exit {wa[1].returncode})")
        sub.wait(timeout=600)
        expect(sub.returncode == 0, f"the subject finished on worker B (exit {sub.returncode})")
        if sub.returncode == 0:
            expect(not same_outputs(os.path.join(out, "subjC"), ref[big]), "outputs identical")
        sub, sublog = c3.submit_async("--out", os.path.join(tmp, "out7"), big)
        expect(c3.wait_log(sublog, "nlmeans", 120), "a second run is denoising")
        c3.sched.send_signal(signal.SIGTERM)
        try:
            c3.sched.wait(timeout=10)
            wb[1].wait(timeout=10)
            sub.wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass
        expect(c3.sched.returncode == 0, f"scheduler exits 0 on SIGTERM ({c3.sched.returncode})")
        expect(wb[1].returncode == 0 and "BYE" in open(wb[2], errors="replace").read(),
               f"the worker was told and exited 0 ({wb[1].returncode})")
        subout = open(sublog, errors="replace").read()
        expect(sub.returncode == 1 and "shut down" in subout,
               f"the client was told and exited 1 ({sub.returncode}): {subout.strip()[-150:]}")
    except Exception as e:  # noqa: BLE001
        expect(False, f"exception: {e!r}")
    finally:
        if FAILURES:
            for c in clusters:
                c.dump_logs()
        for c in clusters:
            c.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} checks FAILED")
        return 1
    print("all cluster checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
