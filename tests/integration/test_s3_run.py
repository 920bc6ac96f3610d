#!/usr/bin/python3
"""dmri-run --s3 and dmri-worker --s3 against a real S3 server on loopback that
checks SigV4 signatures (s3rver_util.py). A phantom uploaded as
HCP/999999/T1w/Diffusion/* and processed straight from the bucket gives outputs
byte-identical to dmri-run on the local copy, on one machine and on a cluster.
Also: the local cache (second run reads it; an object above the limit is not
cached; the least recently used subject is evicted to stay under the limit); a
transfer cut half way (server stopped, restarted) resumes and ends identical;
a wrong secret fails with a clear message and leaves no output; a subject
missing from the bucket fails alone."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from cluster_util import Cluster, dmri_run, phantom, same_outputs
from s3rver_util import KEY_ID, SECRET, Server, aws, install_s3rver

from checks import FAILURES as FAILS, expect as check  # noqa: E402


def tree_bytes(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs
               if not f.endswith(".etag") and f != ".lock")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    a = ap.parse_args()
    build = a.build_dir
    run_bin = os.path.join(build, "client", "dmri-run")
    if not os.access("/usr/bin/aws", os.X_OK):
        sys.exit("FAIL: /usr/bin/aws missing (apt-get install awscli; scripts/install-deps.sh)")
    script = install_s3rver(os.path.join(tempfile.gettempdir(), "dmri-test-s3rver-npm"))

    tmp = tempfile.mkdtemp(prefix="dmri-s3run-")
    server = Server(script, os.path.join(tmp, "s3data"))
    cluster = None
    try:
        server.start()
        aws(server, "mb", "s3://hcp-openaccess")
        subjects = {}
        for sid, seed in (("999999", "5"), ("999998", "6")):
            src = phantom(build, os.path.join(tmp, "src", sid), "--shape", "20", "22", "14",
                          "--dirs", "12", "--b0", "2", "--seed", seed)
            for f in ("bvals", "bvecs", "data.nii.gz"):
                aws(server, "cp", os.path.join(src, f),
                    f"s3://hcp-openaccess/HCP/{sid}/T1w/Diffusion/{f}")
            subjects[sid] = src
        gz = os.path.getsize(os.path.join(subjects["999999"], "data.nii.gz"))
        local = {sid: dmri_run(build, src, os.path.join(tmp, "local")) for sid, src in subjects.items()}

        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, HOME=tmp)
        empty = os.path.join(tmp, "nodata")
        os.makedirs(empty)
        cache = os.path.join(tmp, "cache")
        s3args = ["--s3", "--endpoint", server.url, "--s3-retries", "4"]

        def run(*args, env_=env, timeout=120):
            return subprocess.run([run_bin, "--data-dir", empty, *s3args, *args], env=env_,
                                  capture_output=True, text=True, timeout=timeout)

        # 1. streamed from the bucket, kept in the cache: identical outputs
        out1 = os.path.join(tmp, "out1")
        r = run("--out", out1, "--s3-cache", cache, "999999")
        check(r.returncode == 0, f"dmri-run --s3 999999 exit 0 ({r.stderr.strip()[-400:]})")
        check("streamed" in r.stdout and "kept in the cache" in r.stdout,
              "the log says the data was streamed and cached")
        check(not same_outputs(local["999999"], os.path.join(out1, "999999")),
              "outputs from S3 byte-identical to the local run")
        check(tree_bytes(cache) == gz, f"cache holds data.nii.gz ({tree_bytes(cache)} of {gz} bytes)")

        # 2. second run: from the cache, same outputs
        out2 = os.path.join(tmp, "out2")
        r = run("--out", out2, "--s3-cache", cache, "999999")
        check(r.returncode == 0 and "from the S3 cache" in r.stdout,
              "second run reads data.nii.gz from the cache")
        check(r.returncode == 0 and not same_outputs(local["999999"], os.path.join(out2, "999999")),
              "outputs from the cache byte-identical")

        # 3. limit below one object: not cached; limit for one subject: LRU eviction
        small = os.path.join(tmp, "cache_small")
        r = run("--out", os.path.join(tmp, "out3"), "--s3-cache", small, "--s3-cache-size",
                str(gz // 2), "999999")
        check(r.returncode == 0 and "not cached" in r.stdout and tree_bytes(small) == 0,
              "an object larger than the cache limit is streamed, not cached")
        one = os.path.join(tmp, "cache_one")
        limit = str(int(gz * 1.5))
        r = run("--out", os.path.join(tmp, "out4"), "--s3-cache", one, "--s3-cache-size", limit,
                "999999", "999998")
        check(r.returncode == 0, "two subjects through a cache sized for one")
        kept = sorted(os.path.relpath(os.path.join(d, f), one) for d, _, fs in os.walk(one)
                      for f in fs if f == "data.nii.gz")
        check(kept == ["hcp-openaccess/HCP/999998/T1w/Diffusion/data.nii.gz"],
              f"the least recently used subject was evicted (cache holds {kept})")
        check(tree_bytes(one) <= int(limit), "cache stays under its limit")

        # 4. a transfer cut half way resumes (server killed, then restarted).
        # The object must be well above the socket buffers (several MB), or
        # the whole of it is already on this side when the server dies.
        big = phantom(build, os.path.join(tmp, "src", "999997"), "--shape", "64", "64", "40",
                      "--dirs", "30", "--b0", "2", "--seed", "7")
        for f in ("bvals", "bvecs", "data.nii.gz"):
            aws(server, "cp", os.path.join(big, f), f"s3://hcp-openaccess/HCP/999997/T1w/Diffusion/{f}")
        big_gz = os.path.getsize(os.path.join(big, "data.nii.gz"))
        # --skip-denoise: this case is about the transfer; keep the compute short.
        local_big = dmri_run(build, big, os.path.join(tmp, "local"), "--skip-denoise")
        out5 = os.path.join(tmp, "out5")
        slow = dict(env, DMRI_TEST_S3_RATE_LIMIT=str(big_gz // 5))
        proc = subprocess.Popen([run_bin, "--data-dir", empty, *s3args, "--skip-denoise", "--out",
                                 out5, "999997"],
                                env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        server.kill()
        time.sleep(0.5)
        server.start()
        so, se = proc.communicate(timeout=300)
        print(f"  cut a {big_gz}-byte stream after ~1.5 s of ~5 s")
        check(proc.returncode == 0, f"run with the server killed mid-transfer exit 0 ({se.strip()[-300:]})")
        check(" 1 request" not in so and "requests" in so,
              "the cut transfer was resumed by further requests: "
              + next((line.strip() for line in so.splitlines() if "streamed" in line), "?"))
        check(proc.returncode == 0 and not same_outputs(local_big, os.path.join(out5, "999997")),
              "resumed stream gives byte-identical outputs")

        # 5. wrong secret: clear message, no secret printed, no output
        bad = dict(env, AWS_SECRET_ACCESS_KEY="wrong-secret-456")
        out6 = os.path.join(tmp, "out6")
        r = run("--out", out6, "999999", env_=bad)
        check(r.returncode == 1 and "403" in r.stderr and KEY_ID in r.stderr
              and "wrong-secret-456" not in r.stderr + r.stdout,
              "wrong secret: exit 1, 403 naming the key id, secret not printed")
        check(not os.path.exists(os.path.join(out6, "999999")), "wrong secret leaves no output")
        print("  said:", r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "")

        # 6. a subject missing from the bucket fails alone
        out7 = os.path.join(tmp, "out7")
        r = run("--out", out7, "123456", "999999")
        check(r.returncode == 1 and "HCP/123456/T1w/Diffusion/bvals" in r.stderr
              and "neither on local disk nor in the bucket" in r.stderr,
              "missing subject: names the key it looked for")
        check(not same_outputs(local["999999"], os.path.join(out7, "999999")),
              "the other subject of the same run still succeeds")

        # 7. a cluster whose workers read from the bucket
        os.environ.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
        cluster = Cluster(build, tmp)
        for _ in range(2):
            cluster.worker(1, extra=("--data-dir", empty, "--s3", "--endpoint", server.url,
                                     "--s3-cache", os.path.join(tmp, "wcache")))
        outc = os.path.join(tmp, "outc")
        r = cluster.submit("--out", outc, "999999", "999998")
        check(r.returncode == 0, f"dmri-submit of two S3 subjects exit 0 ({r.stderr.strip()[-300:]})")
        for sid in ("999999", "999998"):
            check(r.returncode == 0 and not same_outputs(local[sid], os.path.join(outc, sid)),
                  f"cluster outputs of {sid} from S3 byte-identical to dmri-run")
    finally:
        if cluster:
            cluster.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILS:
        print(f"{len(FAILS)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
