#!/usr/bin/python3
"""test_submit_fake_scheduler: dmri-submit against a scripted scheduler.

A ZeroMQ ROUTER in this script plays dmri-scheduler (PROTOCOL.md) and checks
what the client sends (HELLO, SUBMIT fields, HEARTBEATs, BYE) and how it
reacts to everything a scheduler may answer: REFUSED, silence, JOB_FAILED,
BYE, malformed or hostile messages, a RESULT whose payload lies about its
size, results before the info chunk, JOB_DONE with chunks missing, the no-op
benchmark, signals. The real scheduler is exercised by the end-to-end tests.

Run: /usr/bin/python3 test_submit_fake_scheduler.py --build-dir BUILD
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

HELLO, WELCOME, REFUSED, HEARTBEAT, BYE, ERROR = 1, 2, 3, 4, 5, 6
SUBMIT, ACCEPTED, PROGRESS, RESULT, JOB_DONE, JOB_FAILED = 30, 31, 32, 33, 34, 35

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


class FakeScheduler:
    def __init__(self, ctx):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.port = int(self.sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self.ident = None
        self.heartbeats = 0
        self.answer_heartbeats = True
        self.log = []

    def close(self):
        self.sock.close()

    def send(self, t, body, payload=None, version=1):
        frames = [self.ident, msgpack.packb(["dmri", version, t, body], use_bin_type=True)]
        if payload is not None:
            frames.append(payload)
        self.sock.send_multipart(frames)

    def send_raw(self, header):
        self.sock.send_multipart([self.ident, header])

    def recv(self, timeout):
        """Next message other than HEARTBEAT (answered), or None at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                return None
            frames = self.sock.recv_multipart()
            self.ident = frames[0]
            magic, version, t, body = msgpack.unpackb(frames[1], raw=False)
            assert magic == "dmri" and version == 1, (magic, version)
            self.log.append(t)
            if t == HEARTBEAT:
                self.heartbeats += 1
                if self.answer_heartbeats:
                    self.send(HEARTBEAT, {})
                continue
            return t, body, frames[2:]

    def expect(self, t, timeout=5.0):
        got = self.recv(timeout)
        check(got is not None and got[0] == t, "expected message %d, got %r" % (t, got))
        return got[1] if got else {}

    def idle(self, seconds):
        """Answer heartbeats for a while; return other messages seen."""
        seen = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            got = self.recv(deadline - time.monotonic())
            if got:
                seen.append(got)
        return seen

    def welcome(self):
        hello = self.expect(HELLO)
        self.send(WELCOME, {"peer_id": 3, "heartbeat_ms": 1000})
        return hello


def start(build, sched, *args, timeout="5"):
    exe = os.path.join(build, "client", "dmri-submit")
    cmd = [exe, "--scheduler", "127.0.0.1:%d" % sched.port, "--timeout", timeout] + list(args)
    env = dict(os.environ)
    env.pop("DMRI_SCHEDULER", None)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def finish(proc, name, timeout=10):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        check(False, "%s: dmri-submit did not exit" % name)
    print("--- %s: exit %s\n%s%s" % (name, proc.returncode, out, err), flush=True)
    return proc.returncode, out, err


def scenario_refused(ctx, build, tmp):
    s = FakeScheduler(ctx)
    p = start(build, s, "sub1")
    hello = s.expect(HELLO)
    check(hello.get("role") == "client", "HELLO role: %r" % hello)
    check(str(hello.get("name", "")).startswith("dmri-submit@")
          and str(hello.get("name", "")).endswith(":%d" % p.pid), "HELLO name: %r" % hello)
    check(hello.get("pid") == p.pid, "HELLO pid: %r vs %d" % (hello.get("pid"), p.pid))
    s.send(REFUSED, {"reason": "name clash"})
    rc, out, err = finish(p, "refused")
    check(rc == 1, "refused: exit %s" % rc)
    check("dmri-submit: refused by scheduler: name clash" in err, "refused: message")
    s.close()


def scenario_silent(ctx, build, tmp):
    s = FakeScheduler(ctx)
    t0 = time.monotonic()
    p = start(build, s, "sub1", timeout="1")
    s.expect(HELLO)
    rc, out, err = finish(p, "silent")
    el = time.monotonic() - t0
    check(rc == 1, "silent: exit %s" % rc)
    check("no answer from scheduler at 127.0.0.1:%d" % s.port in err, "silent: message")
    check(el < 4, "silent: took %.1f s with --timeout 1" % el)
    s.close()


def scenario_version(ctx, build, tmp):
    s = FakeScheduler(ctx)
    p = start(build, s, "sub1")
    s.expect(HELLO)
    s.send(WELCOME, {"peer_id": 1, "heartbeat_ms": 1000}, version=2)
    rc, out, err = finish(p, "version")
    check(rc == 1, "version: exit %s" % rc)
    check("protocol" in err, "version: message names the protocol")
    s.close()


def scenario_failures(ctx, build, tmp):
    """Two subjects, options carried in SUBMIT, JOB_FAILED, a result before
    the info chunk, the final count, and BYE at the end."""
    s = FakeScheduler(ctx)
    out_dir = os.path.join(tmp, "out")
    p = start(build, s, "--save-denoised", "--b0-threshold", "50", "--out", out_dir, "s1", "s2")
    s.welcome()
    subs = [s.expect(SUBMIT), s.expect(SUBMIT)]
    check([b.get("request") for b in subs] == [0, 1], "SUBMIT requests: %r" % subs)
    check([b.get("subject") for b in subs] == ["s1", "s2"], "SUBMIT subjects: %r" % subs)
    check(all(b.get("flags") == 2 and b.get("b0_threshold") == 50.0 for b in subs),
          "SUBMIT flags/b0: %r" % subs)
    s.send(ACCEPTED, {"request": 1, "job": 8, "subject": "s2"})
    s.send(ACCEPTED, {"request": 0, "job": 7, "subject": "s1"})
    s.send(PROGRESS, {"job": 7, "done": 1, "total": 3, "step": "load"})
    s.send(JOB_FAILED, {"job": 7, "error": "boom: s1/data.nii.gz is truncated"})
    s.send(RESULT, {"job": 8, "key": "J8/maps/s0", "size": 4}, b"abcd")
    s.send(JOB_DONE, {"job": 8, "summary": "{}"})  # already failed: ignored
    bye = s.expect(BYE)
    check("done" in bye.get("reason", ""), "final BYE: %r" % bye)
    rc, out, err = finish(p, "failures")
    check(rc == 1, "failures: exit %s" % rc)
    check("dmri-submit: subject s1 FAILED: boom: s1/data.nii.gz is truncated" in err,
          "failures: JOB_FAILED message")
    check("dmri-submit: subject s2 FAILED: result J8/maps/s0 arrived before the info chunk"
          in err, "failures: result before info")
    check(err.count("FAILED") == 2, "failures: each subject fails once")
    check("dmri-submit: 0 of 2 subjects succeeded" in out, "failures: count line")
    check(not os.path.exists(out_dir), "failures: no output folder")
    s.close()


def scenario_hostile(ctx, build, tmp):
    """Lies and garbage fail one subject each, never the client."""
    s = FakeScheduler(ctx)
    p = start(build, s, "--out", os.path.join(tmp, "out2"), "a", "b", "c", "d")
    s.welcome()
    for _ in range(4):
        s.expect(SUBMIT)
    for i, name in enumerate("abcd"):
        s.send(ACCEPTED, {"request": i, "job": 20 + i, "subject": name})
    s.send_raw(b"\x93not msgpack at all")
    got = s.expect(ERROR)
    check("error" in got, "malformed header answered with ERROR: %r" % got)
    s.send(RESULT, {"job": 99, "key": "J99/info", "size": 3}, b"xyz")  # unknown job
    s.send(RESULT, {"job": 20, "key": "J20/info", "size": 100}, b"short")
    got = s.expect(ERROR)  # the transport drops the lying RESULT as malformed
    check("size" in got.get("error", ""), "payload size lie answered with ERROR: %r" % got)
    s.send(JOB_DONE, {"job": 20, "summary": "{}"})
    s.send(RESULT, {"job": 21, "key": "../../etc/passwd", "size": 1}, b"x")
    s.send(JOB_DONE, {"job": 22, "summary": "{}"})
    s.send(RESULT, {"job": 23, "key": "J23/info", "size": 7}, b"garbage")
    s.send(RESULT, {"job": 23, "key": "J23/mask", "size": 2}, b"ab")
    rc, out, err = finish(p, "hostile")
    check(rc == 1, "hostile: exit %s" % rc)
    check("malformed message from the scheduler" in err, "hostile: malformed reported")
    check(re.search(r"malformed message from the scheduler: .*'size'", err) is not None,
          "hostile: payload size lie reported")
    check("subject a FAILED: scheduler reported done but chunks are missing: J20/info" in err,
          "hostile: payload size lie leaves the chunk missing")
    check("subject b FAILED: result key '../../etc/passwd' is not a chunk key" in err,
          "hostile: bad key")
    check("subject c FAILED: scheduler reported done but chunks are missing: J22/info" in err,
          "hostile: done without chunks")
    check(re.search(r"subject d FAILED: info chunk", err) is not None, "hostile: bad info")
    check("0 of 4 subjects succeeded" in out, "hostile: count")
    s.close()


def scenario_progress_log(ctx, build, tmp):
    s = FakeScheduler(ctx)
    p = start(build, s, "s1")
    s.welcome()
    s.expect(SUBMIT)
    s.send(ACCEPTED, {"request": 0, "job": 1, "subject": "s1"})
    s.send(PROGRESS, {"job": 1, "done": 0, "total": 1, "step": "load"})
    for d in range(237):
        s.send(PROGRESS, {"job": 1, "done": d, "total": 236, "step": "nlmeans"})
    s.send(JOB_FAILED, {"job": 1, "error": "stop here"})
    rc, out, err = finish(p, "progress")
    lines = [l for l in out.splitlines() if l.startswith("s1 ")]
    check(len(lines) == 12, "progress: %d lines, expected 1 + 11" % len(lines))
    check("s1    [#####.....]  50%  118/236 tasks  nlmeans" in lines, "progress: the 50% line")
    check(lines and lines[-1] == "s1    [##########] 100%  236/236 tasks  nlmeans",
          "progress: last line %r" % (lines[-1] if lines else None))
    check(rc == 1, "progress: exit %s" % rc)
    s.close()

    s = FakeScheduler(ctx)
    p = start(build, s, "--quiet", "s1")
    s.welcome()
    s.expect(SUBMIT)
    s.send(ACCEPTED, {"request": 0, "job": 1, "subject": "s1"})
    for d in range(11):
        s.send(PROGRESS, {"job": 1, "done": d, "total": 10, "step": "x"})
    s.send(JOB_FAILED, {"job": 1, "error": "quiet failure"})
    rc, out, err = finish(p, "quiet")
    check(out == "", "quiet: stdout %r" % out)
    check("subject s1 FAILED: quiet failure" in err, "quiet: errors still printed")
    s.close()


def scenario_bench(ctx, build, tmp):
    s = FakeScheduler(ctx)
    p = start(build, s, "--bench-noop", "1000")
    s.welcome()
    sub = s.expect(SUBMIT)
    check(sub.get("subject") == "1000" and sub.get("flags") == 4, "bench SUBMIT: %r" % sub)
    s.send(ACCEPTED, {"request": sub.get("request", 0), "job": 5, "subject": "1000"})
    s.idle(0.5)
    s.send(PROGRESS, {"job": 5, "done": 500, "total": 1000, "step": "noop"})
    s.send(JOB_DONE, {"job": 5, "summary": '{"tasks": 1000, "seconds": 0.4}'})
    rc, out, err = finish(p, "bench")
    check(rc == 0, "bench: exit %s" % rc)
    m = re.search(r"1000 tasks in ([0-9.]+) s: ([0-9.]+) tasks/s", out)
    check(m is not None, "bench: rate line")
    if m:
        wall, rate = float(m.group(1)), float(m.group(2))
        check(0.45 <= wall < 5 and abs(rate - 1000 / wall) < 0.01 * rate + 0.1,
              "bench: wall %.3f s rate %.1f" % (wall, rate))
    check('{"tasks": 1000, "seconds": 0.4}' in out, "bench: summary printed")
    s.close()


def scenario_bye(ctx, build, tmp):
    s = FakeScheduler(ctx)
    p = start(build, s, "s1", "s2")
    s.welcome()
    s.expect(SUBMIT)
    s.expect(SUBMIT)
    s.send(ACCEPTED, {"request": 0, "job": 1, "subject": "s1"})
    s.send(BYE, {"reason": "maintenance"})
    rc, out, err = finish(p, "bye")
    check(rc == 1, "bye: exit %s" % rc)
    check("subject s1 FAILED: scheduler shut down: maintenance" in err, "bye: accepted one")
    check("subject s2 FAILED: scheduler shut down: maintenance" in err, "bye: unaccepted one")
    s.close()


def scenario_lost(ctx, build, tmp):
    s = FakeScheduler(ctx)
    p = start(build, s, "s1", timeout="2")
    s.welcome()
    s.expect(SUBMIT)
    s.send(ACCEPTED, {"request": 0, "job": 1, "subject": "s1"})
    s.answer_heartbeats = False
    t0 = time.monotonic()
    s.idle(1.5)
    rc, out, err = finish(p, "lost")
    el = time.monotonic() - t0
    check(s.heartbeats >= 1, "lost: client sent %d heartbeats" % s.heartbeats)
    check(rc == 1, "lost: exit %s" % rc)
    check("subject s1 FAILED: lost contact with the scheduler" in err, "lost: message")
    check(1.5 <= el < 5, "lost: gave up after %.1f s with --timeout 2" % el)
    s.close()


def scenario_unaccepted(ctx, build, tmp):
    s = FakeScheduler(ctx)
    p = start(build, s, "s1", timeout="1.5")
    s.welcome()
    s.expect(SUBMIT)
    s.send(ERROR, {"error": "SUBMIT: subject is too long"})
    s.idle(2.5)  # heartbeats answered: the scheduler is alive
    rc, out, err = finish(p, "unaccepted")
    check(rc == 1, "unaccepted: exit %s" % rc)
    check("scheduler error: SUBMIT: subject is too long" in err, "unaccepted: ERROR printed")
    check("subject s1 FAILED: the scheduler did not accept the subject" in err,
          "unaccepted: message")
    s.close()


def scenario_signals(ctx, build, tmp):
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        s = FakeScheduler(ctx)
        p = start(build, s, "s1")
        s.welcome()
        s.expect(SUBMIT)
        s.send(ACCEPTED, {"request": 0, "job": 1, "subject": "s1"})
        s.idle(0.3)
        p.send_signal(sig)
        bye = s.expect(BYE)
        check("SIG" in bye.get("reason", ""), "signal %d: BYE %r" % (sig, bye))
        rc, out, err = finish(p, "signal %d" % sig)
        check(rc == code, "signal %d: exit %s, expected %d" % (sig, rc, code))
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    if not os.path.exists(os.path.join(build, "client", "dmri-submit")):
        print("dmri-submit not built in", build)
        return 1
    ctx = zmq.Context()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for sc in (scenario_refused, scenario_silent, scenario_version, scenario_failures,
                   scenario_hostile, scenario_progress_log, scenario_bench, scenario_bye,
                   scenario_lost, scenario_unaccepted, scenario_signals):
            print("=== %s" % sc.__name__, flush=True)
            sc(ctx, build, tmp)
    ctx.term()
    print("%d scenario checks failed; %.1f s" % (len(failures), time.monotonic() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
