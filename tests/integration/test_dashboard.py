#!/usr/bin/python3
"""The scheduler's status page in a real browser, and its /metrics: a
dmri-scheduler with a dashboard on a free port, two dmri-workers and
dmri-submit on a phantom subject slow enough to watch. Headless Chromium
(flags of ../shared/TESTING.md) renders / twice while the subject runs: both
workers are listed and a progress bar has advanced; a screenshot is kept in
the build tree (tests/artifacts/dashboard.png). After the run, /metrics
passes `promtool check metrics` and its counters match what was submitted:
one subject done, one task per graph task (saves excepted) per step, and the
compute seconds of summary.json; /health is 200, and the scheduler serves the
page while being sent garbage."""
import argparse
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, phantom  # noqa: E402

from checks import FAILURES, expect  # noqa: E402


def chromium(url, tmp, *mode):
    """One headless Chromium run with its own profile; returns stdout."""
    profile = tempfile.mkdtemp(prefix="chrome-", dir=tmp)
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-quic", "--no-first-run", f"--user-data-dir={profile}",
           "--window-size=1200,900", "--virtual-time-budget=2500", *mode, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp)
    return r.stdout


def progress(dom):
    """Sum of the values of the page's per-step progress bars, and how many."""
    vals = [int(v) for v in re.findall(r'<progress[^>]*\bvalue="(\d+)"', dom)]
    return sum(vals), len(vals)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def parse_metrics(text):
    """name{labels} -> value, from Prometheus text (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    if not shutil.which("chromium"):
        print("chromium is not installed (scripts/install-deps.sh); failing")
        return 1
    artifacts = os.path.join(b, "tests", "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="dmri-dashboard-")
    c = None
    try:
        # ~10-20 s of NL-means on two single-thread workers (release); a
        # sanitizer build is ~20x slower, so it gets a smaller subject.
        cache = os.path.join(b, "CMakeCache.txt")
        sanitized = os.path.exists(cache) and "DMRI_SANITIZE:BOOL=ON" in open(cache).read()
        nz = 24 if sanitized else 40
        subj = phantom(b, os.path.join(tmp, "slow"), "--shape", "64", "64", str(nz), "--dirs",
                       "30" if sanitized else "60", "--b0", "6", "--seed", "5")
        dport_file = os.path.join(tmp, "dashboard.port")
        c = Cluster(b, tmp, ["--dashboard-port", "-1", "--dashboard-port-file", dport_file])
        deadline = time.time() + 10
        while not os.path.exists(dport_file) and time.time() < deadline:
            time.sleep(0.05)
        expect(os.path.exists(dport_file), "the dashboard port file was written")
        base = f"http://127.0.0.1:{int(open(dport_file).read())}"
        c.worker(1)
        c.worker(1)
        status = {}
        deadline = time.time() + 20
        while time.time() < deadline:
            status = json.loads(get(base + "/api/status")[1])
            if len(status["workers"]) == 2:
                break
            time.sleep(0.1)
        expect(sorted(w["name"] for w in status["workers"]) == ["w1", "w2"],
               "/api/status lists both workers")
        out = os.path.join(tmp, "out")
        report = os.path.join(artifacts, "report.html")
        if os.path.exists(report):
            os.unlink(report)
        sub, sub_log = c.submit_async("--out", out, "--preview", "--report", report, subj)
        # Wait until denoising is under way, then load the page twice.
        deadline = time.time() + 120
        while time.time() < deadline:
            s = json.loads(get(base + "/api/status")[1])
            steps = {st["step"]: st for j in s["subjects"] for st in j["steps"]}
            if "nlmeans" in steps and steps["nlmeans"]["done"] >= 1:
                break
            time.sleep(0.1)
        dom1 = chromium(base + "/", tmp, "--dump-dom")
        # Let at least one more task finish (slow builds: a task can outlast
        # a page load), then load the page again.
        p1 = progress(dom1)[0]
        deadline = time.time() + 300
        while time.time() < deadline:
            s = json.loads(get(base + "/api/status")[1])
            if sum(st["done"] for j in s["subjects"] for st in j["steps"]) > p1:
                break
            time.sleep(0.1)
        dom2 = chromium(base + "/", tmp, "--dump-dom")
        shot = os.path.join(artifacts, "dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        chromium(base + "/", tmp, f"--screenshot={shot}")
        open(os.path.join(artifacts, "dashboard-dom1.html"), "w").write(dom1)
        open(os.path.join(artifacts, "dashboard-dom2.html"), "w").write(dom2)
        for i, dom in enumerate((dom1, dom2), 1):
            expect('data-name="w1"' in dom and 'data-name="w2"' in dom,
                   f"rendered page {i} lists both workers")
            expect('class="task"' in dom, f"rendered page {i} draws task-stream bars")
        (p1, n1), (p2, n2) = progress(dom1), progress(dom2)
        expect(n1 > 0 and n2 > 0, f"progress bars rendered ({n1}, {n2})")
        expect(p2 > p1, f"progress advanced between the two loads ({p1} -> {p2} tasks)")
        expect(os.path.exists(shot) and os.path.getsize(shot) > 10000 and
               open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n",
               f"screenshot kept as {shot}")

        rc = sub.wait(timeout=600)
        expect(rc == 0, f"dmri-submit exit {rc}")
        summary = json.load(open(os.path.join(out, "slow", "summary.json")))
        # The scheduler publishes every 0.25 s: wait for the finished state.
        deadline = time.time() + 10
        while time.time() < deadline:
            st = json.loads(get(base + "/api/status")[1])
            if st["counters"]["subjects_done"] == 1:
                break
            time.sleep(0.1)
        code, text = get(base + "/metrics")
        expect(code == 200, "/metrics answers 200")
        open(os.path.join(artifacts, "metrics.txt"), "w").write(text)
        pc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            text=True)
        expect(pc.returncode == 0, f"promtool check metrics accepts it {pc.stdout}{pc.stderr}")
        m = parse_metrics(text)
        expect(m.get('dmri_subjects_total{result="done"}') == 1, "one subject done")
        expect(m.get('dmri_subjects_total{result="failed"}') == 0, "no subject failed")
        expect(m.get("dmri_workers") == 2, "two workers connected")
        nsaves = len([f for f in os.listdir(os.path.join(out, "slow")) if f.endswith(".nii.gz")])
        completed = {k: v for k, v in m.items() if k.startswith("dmri_tasks_completed_total")}
        expect(sum(completed.values()) == summary["cluster"]["tasks"] - nsaves,
               f"tasks completed {sum(completed.values())} = graph tasks "
               f"{summary['cluster']['tasks']} - {nsaves} saves")
        nv = summary["shape"][3]
        expect(completed['dmri_tasks_completed_total{step="sigma"}'] == math.ceil(nv / 8),
               f"one sigma task per group of 8 volumes ({nv} volumes)")
        expect(completed['dmri_tasks_completed_total{step="nlmeans"}'] == math.ceil(nv / 8) * math.ceil(nz / 16),
               "nlmeans tasks = volume groups x slabs")
        expect(completed['dmri_tasks_completed_total{step="load"}'] == 1, "one load task")
        for step, secs in summary["cluster"]["compute_seconds"].items():
            got = m.get(f'dmri_task_duration_seconds_sum{{step="{step}"}}', -1)
            expect(abs(got - secs) < 0.002 + 1e-3 * secs,
                   f"{step}: histogram sum {got:.3f} s = summary.json {secs:.3f} s")
            cnt = m.get(f'dmri_task_duration_seconds_count{{step="{step}"}}')
            expect(cnt == completed[f'dmri_tasks_completed_total{{step="{step}"}}'],
                   f"{step}: histogram count = tasks completed")
        st = json.loads(get(base + "/api/status")[1])
        expect(m.get("dmri_transfer_bytes_total") == sum(w["bytes_fetched"] for w in st["workers"])
               and m["dmri_transfer_bytes_total"] > 0,
               f"bytes between workers {m.get('dmri_transfer_bytes_total')} = sum over workers")

        # dmri-submit --preview: a PNG of 3 slices x 2 rows, 2x magnified.
        png = open(os.path.join(out, "slow", "preview.png"), "rb").read()
        w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        expect(png[:8] == b"\x89PNG\r\n\x1a\n" and (w, h) == (3 * 64 * 2, 2 * 64 * 2),
               f"preview.png written ({w}x{h})")
        # dmri-submit --report: rendered by the browser, it tells the same story.
        expect(os.path.exists(report), f"report written ({report})")
        dom = chromium("file://" + report, tmp, "--dump-dom")
        open(os.path.join(artifacts, "report-dom.html"), "w").write(dom)
        expect('data-name="slow"' in dom, "the report has the subject")
        nbars = len(re.findall(r'<rect[^>]*class="task"', dom))
        expect(nbars == sum(completed.values()),
               f"the report's task stream has one bar per task ({nbars})")
        row = re.search(r"<tr><td>nlmeans</td><td[^>]*>(\d+)</td>", dom)
        expect(row is not None and int(row.group(1)) ==
               completed['dmri_tasks_completed_total{step="nlmeans"}'],
               "the report's step table counts the nlmeans tasks")
        expect("Transfer vs compute" in dom and "Per worker" in dom and
               re.search(r"<td>w1</td>", dom) and re.search(r"<td>w2</td>", dom),
               "the report splits transfer/compute and lists both workers")
        expect("<script" in open(report).read() and "http" not in
               re.sub(r"http://www\.w3\.org/2000/svg", "", open(report).read()),
               "the report is self-contained (nothing fetched)")

        # Garbage on the HTTP port does not hurt the scheduler.
        port = int(base.rsplit(":", 1)[1])
        for junk in (b"\x00\xff" * 500, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n",
                     b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sk:
                try:
                    sk.sendall(junk)
                    sk.recv(100)
                except OSError:
                    pass
        code, text = get(base + "/health")
        expect(code == 200 and text.startswith("ok"), "/health is 200 after garbage")
        expect(c.sched.poll() is None, "the scheduler is still running")
    finally:
        if c:
            if FAILURES:
                c.dump_logs()
            c.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("FAILED: " + "; ".join(FAILURES) if FAILURES else "all dashboard checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
