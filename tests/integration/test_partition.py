#!/usr/bin/python3
"""Network faults on a real link: one dmri-worker lives in its own network
namespace (veth pair, 10.232.8.0/24), the scheduler and two workers on the
host side of the link.
1. Partition: the link goes down for 20 s in the middle of a subject. The
   scheduler declares the worker lost, its work is redone by the others, the
   subject's outputs equal dmri-run's (nothing duplicated or corrupted), and
   when the link comes back the worker rejoins by itself and takes part in the
   next subject (outputs again equal).
2. Loss: nftables drops 10% of the worker's packets, both ways, for a whole
   subject: the run still completes with outputs equal to dmri-run's.
Needs root (network namespaces); CI runs as root."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, dmri_run, phantom, read_text, same_outputs  # noqa: E402

NS = "dmrip8-w"
HOST_IF, NS_IF = "dmrip8-h", "dmrip8-n"
HOST_IP, NS_IP = "10.232.8.1", "10.232.8.2"
from checks import FAILURES, expect  # noqa: E402


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def teardown_net():
    sh("ip", "link", "del", HOST_IF, check=False)
    sh("ip", "netns", "del", NS, check=False)


def setup_net():
    teardown_net()  # leftovers of a crashed earlier run of this test
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF, "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    if os.geteuid() != 0:
        print("SKIP: needs root for network namespaces")
        return 0
    tmp = tempfile.mkdtemp(prefix="dmri-partition-")
    cluster = None
    try:
        setup_net()
        subj = [phantom(b, os.path.join(tmp, f"s{i}"), "--shape", "40", "44", "32", "--dirs", "16",
                        "--b0", "3", "--seed", str(40 + i)) for i in range(3)]
        refs = [dmri_run(b, s, os.path.join(tmp, "ref")) for s in subj]

        cluster = Cluster(b, tmp, sched_args=("--host", HOST_IP, "--slab-slices", "8",
                                               "--vols-per-task", "4"))
        addr = f"{HOST_IP}:{cluster.port}"
        cluster.addr = addr
        for i in range(2):
            name = f"h{i + 1}"
            log = os.path.join(tmp, f"worker-{name}.log")
            cluster._start(name, [cluster.bin("worker", "dmri-worker"), addr, "--nthreads", "1",
                                  "--name", name, "--listen", f"tcp://{HOST_IP}:*"], log)
        nslog = os.path.join(tmp, "worker-ns.log")
        cluster._start("ns", ["ip", "netns", "exec", NS, cluster.bin("worker", "dmri-worker"), addr,
                              "--nthreads", "1", "--name", "far", "--listen", f"tcp://{NS_IP}:*"],
                       nslog)
        for n in ("h1", "h2", "far"):
            expect(cluster.wait_log(cluster.sched_log, f"worker {n} joined", 30), f"worker {n} joined")

        # 1. partition for 20 s while the first subject runs
        out = os.path.join(tmp, "out")
        client, clog = cluster.submit_async("--out", out, "--timeout", "120", subj[0])
        deadline = time.time() + 120
        while time.time() < deadline and " done in " not in read_text(nslog):
            time.sleep(0.05)
        expect(" done in " in read_text(nslog), "the far worker had finished tasks (holds chunks) before the cut")
        sh("ip", "link", "set", HOST_IF, "down")
        t_down = time.time()
        expect(cluster.wait_log(cluster.sched_log, "worker far (", 15) and "lost" in read_text(cluster.sched_log),
               "the scheduler declared the partitioned worker lost")
        time.sleep(max(0.0, 20 - (time.time() - t_down)))
        sh("ip", "link", "set", HOST_IF, "up")
        client.wait(timeout=300)
        expect(client.returncode == 0, f"the subject finished despite the partition (exit {client.returncode})")
        expect(not same_outputs(refs[0], os.path.join(out, "s0")), "its outputs equal dmri-run's")
        # rejoin: a second "joined" line for far
        deadline = time.time() + 40
        while time.time() < deadline and read_text(cluster.sched_log).count("worker far joined") < 2:
            time.sleep(0.2)
        expect(read_text(cluster.sched_log).count("worker far joined") >= 2,
               "the worker rejoined by itself once the link was back")
        n_far_before = read_text(nslog).count(" done in ")
        r = cluster.submit("--out", out, "--timeout", "120", subj[1], timeout=300)
        expect(r.returncode == 0 and not same_outputs(refs[1], os.path.join(out, "s1")),
               "next subject after the rejoin equals dmri-run")
        expect(read_text(nslog).count(" done in ") > n_far_before,
               "the rejoined worker ran tasks of the next subject")

        # 2. 10% packet loss both ways on the far worker's link
        rules = """table inet dmrip8 {
  chain in  { type filter hook input priority 0; policy accept; numgen random mod 100 < 10 drop; }
  chain out { type filter hook output priority 0; policy accept; numgen random mod 100 < 10 drop; }
}"""
        rf = os.path.join(tmp, "loss.nft")
        with open(rf, "w") as f:
            f.write(rules)
        sh("ip", "netns", "exec", NS, "nft", "-f", rf)
        n_far_before = read_text(nslog).count(" done in ")
        t0 = time.time()
        r = cluster.submit("--out", out, "--timeout", "120", subj[2], timeout=600)
        print(f"  (subject with 10% loss on one worker's link: {time.time() - t0:.1f} s)")
        expect(r.returncode == 0, f"the run completes with 10% packet loss (exit {r.returncode}: {r.stderr.strip()[-200:]})")
        expect(r.returncode == 0 and not same_outputs(refs[2], os.path.join(out, "s2")),
               "outputs under packet loss equal dmri-run's")
        n_far = read_text(nslog).count(" done in ")
        counters = sh("ip", "netns", "exec", NS, "nft", "list", "ruleset").stdout
        sh("ip", "netns", "exec", NS, "nft", "delete", "table", "inet", "dmrip8", check=False)
        expect("drop" in counters, "the loss rules were in place")
        expect(n_far > n_far_before, "the worker behind the lossy link ran tasks of that subject")
    finally:
        if cluster:
            if FAILURES:
                cluster.dump_logs()
            cluster.stop()
        teardown_net()
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
