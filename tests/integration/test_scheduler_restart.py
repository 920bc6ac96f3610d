#!/usr/bin/python3
"""dmri-scheduler --state-dir: kill -9 in the middle of a two-subject run, then a
restart on the same port and state dir. The waiting dmri-submit and both
workers reconnect by themselves, the client submits its unfinished subject
again and the restarted scheduler resumes it from its journal; the subject that
had finished is not redone; both outputs equal dmri-run's. Also: a second
scheduler on the same state dir is refused, and a scheduler restarted without
its client gives up the journal's unfinished job after --client-timeout."""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, dmri_run, phantom, read_text, same_outputs  # noqa: E402

from checks import FAILURES, expect  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    tmp = tempfile.mkdtemp(prefix="dmri-restart-")
    state = os.path.join(tmp, "state")
    cluster = None
    try:
        small = phantom(b, os.path.join(tmp, "subjA"), "--shape", "20", "22", "14", "--dirs", "10",
                        "--b0", "2", "--seed", "31")
        big = phantom(b, os.path.join(tmp, "subjB"), "--shape", "44", "48", "36", "--dirs", "24",
                      "--b0", "3", "--seed", "32")
        ref_a = dmri_run(b, small, os.path.join(tmp, "ref"))
        ref_b = dmri_run(b, big, os.path.join(tmp, "ref"))

        cluster = Cluster(b, tmp, sched_args=("--state-dir", state, "--client-timeout", "20"))
        for _ in range(2):
            cluster.worker(1)
        out = os.path.join(tmp, "out")
        client, client_log = cluster.submit_async("--out", out, "--timeout", "60", small, big)

        # A second scheduler on the same state dir is refused at once.
        r = subprocess.run([cluster.bin("scheduler", "dmri-scheduler"), "--port", "0",
                            "--state-dir", state], capture_output=True, text=True, timeout=20)
        expect(r.returncode != 0 and "in use" in r.stderr,
               f"a second scheduler on the same --state-dir is refused ({r.stderr.strip()[-120:]})")

        # Kill -9 once subject A is done and B is under way.
        expect(cluster.wait_log(client_log, "subject subjA done", timeout=240),
               "subject A finished before the crash")
        killed_during_b = "subject subjB done" not in read_text(client_log)
        os.kill(cluster.sched.pid, signal.SIGKILL)
        cluster.sched.wait()
        expect(killed_during_b, "the scheduler was killed while subject B was running")
        time.sleep(0.5)

        log2 = os.path.join(tmp, "scheduler-restarted.log")
        sched2 = cluster._start("scheduler2", [cluster.bin("scheduler", "dmri-scheduler"), "--port",
                                               str(cluster.port), "--state-dir", state,
                                               "--client-timeout", "20"], log2)
        try:
            client.wait(timeout=300)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()
        text2 = read_text(log2)
        expect(client.returncode == 0, f"dmri-submit finished with exit 0 (got {client.returncode})")
        expect("journal of 1 unfinished subject" in text2,
               "the restarted scheduler found subject B unfinished in its journal")
        expect("resumes job" in text2 and "subjB" in text2, "subject B resumed from the journal")
        expect("subjA" not in text2.replace(state, ""), "subject A (finished) was not redone")
        expect("registering again" in read_text(client_log), "the client reconnected by itself")
        expect("worker w1 joined" in text2 and "worker w2 joined" in text2,
               "both workers re-registered with the restarted scheduler")
        expect(not same_outputs(ref_a, os.path.join(out, "subjA")), "subject A outputs equal dmri-run")
        expect(not same_outputs(ref_b, os.path.join(out, "subjB")), "subject B outputs equal dmri-run")

        # Job ids continue after the journal's highest (never reused).
        ids = [int(w) for line in read_text(log2).splitlines() if "resumes job" in line
               for w in line.split("job ")[1:2] for w in [w.split()[0]]]
        expect(ids and ids[0] > 2, f"the resumed job got a new id above the old ones ({ids})")

        # A restart whose client never comes back: the unfinished job is dropped.
        sched2.send_signal(signal.SIGKILL)
        sched2.wait()
        with open(os.path.join(state, "journal"), "a") as f:
            f.write("S\t99\t0\t10\t0\tdmri-submit@gone:1\t/nowhere/subjX\n")
        log3 = os.path.join(tmp, "scheduler-3.log")
        cluster._start("scheduler3", [cluster.bin("scheduler", "dmri-scheduler"), "--port", "0",
                                      "--state-dir", state, "--client-timeout", "1"], log3)
        deadline = time.time() + 20
        while time.time() < deadline and "not resumed by its client" not in read_text(log3):
            time.sleep(0.1)
        expect("not resumed by its client" in read_text(log3), "an orphaned job is dropped after the client timeout")
        jr = read_text(os.path.join(state, "journal"))
        expect("C\t99" in jr, "and its end is journaled")
    finally:
        if cluster:
            if FAILURES:
                cluster.dump_logs()
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
