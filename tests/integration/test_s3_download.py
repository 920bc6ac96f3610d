#!/usr/bin/python3
"""dmri-download against a real S3 server on loopback that checks SigV4
signatures (npm @20minutes/s3rver@4.0.4 on Node 20, installed by this test
into a cache folder). Uploads go through Debian's aws CLI (/usr/bin/aws), an
independent client. Checks: a phantom subject comes back byte-identical; a
wrong secret fails naming the key id (never the secret) and leaves nothing on
disk; a download killed half way resumes from its .part (Range) and ends
byte-identical; a second run skips complete files; a flat listing longer than
one page (max-keys 3) returns every key; a missing subject is a 404 naming the
key. Not testable on this fork (TESTING.md): `--list` with delimiter "/"
(the fork answers nothing) -- the XML parsing of CommonPrefixes is covered by
tests/unit/test_s3.c instead."""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from s3rver_util import KEY_ID, SECRET, Server, aws, install_s3rver, md5

from checks import FAILURES as FAILS, expect as check  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    a = ap.parse_args()
    dl = os.path.join(a.build_dir, "client", "dmri-download")
    phantom = os.path.join(a.build_dir, "client", "dmri-phantom")
    for exe in (dl, phantom):
        if not os.access(exe, os.X_OK):
            sys.exit(f"FAIL: {exe} not built (libcurl4-openssl-dev and libssl-dev needed)")
    if not os.access("/usr/bin/aws", os.X_OK):
        sys.exit("FAIL: /usr/bin/aws missing (apt-get install awscli; scripts/install-deps.sh)")
    script = install_s3rver(os.path.join(tempfile.gettempdir(), "dmri-test-s3rver-npm"))

    tmp = tempfile.mkdtemp(prefix="dmri-s3-")
    server = Server(script, os.path.join(tmp, "s3data"))
    try:
        server.start()
        aws(server, "mb", "s3://hcp-openaccess")
        # the phantom subject
        src = os.path.join(tmp, "src")
        subprocess.run([phantom, "--out", src, "--shape", "12", "14", "10", "--dirs", "8",
                        "--b0", "2", "--seed", "5"], check=True, capture_output=True)
        for f in ("bvals", "bvecs", "data.nii.gz"):
            aws(server, "cp", os.path.join(src, f), f"s3://hcp-openaccess/HCP/999999/T1w/Diffusion/{f}")
        # a larger subject for the interrupted transfer (random: incompressible)
        big = os.path.join(tmp, "big")
        os.makedirs(big)
        with open(os.path.join(big, "data.nii.gz"), "wb") as f:
            f.write(os.urandom(24 * 1000 * 1000))
        for f in ("bvals", "bvecs"):
            shutil.copy(os.path.join(src, f), os.path.join(big, f))
        for f in ("bvals", "bvecs", "data.nii.gz"):
            aws(server, "cp", os.path.join(big, f), f"s3://hcp-openaccess/HCP/999998/T1w/Diffusion/{f}")

        # credentials through a profile file with HCP's upper-case names
        creds = os.path.join(tmp, "credentials")
        with open(creds, "w") as f:
            f.write(f"[default]\naws_access_key_id = nobody\naws_secret_access_key = x\n\n"
                    f"[hcp]\nAWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_SHARED_CREDENTIALS_FILE"] = creds
        env["HOME"] = tmp
        base = [dl, "--endpoint", server.url, "--retries", "2", "--backoff-ms", "100"]

        # 1. byte-identical download
        dest = os.path.join(tmp, "dest")
        r = subprocess.run(base + ["999999", "--dest", dest, "--jobs", "3"], env=env,
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"download 999999 exit 0 (got {r.returncode}: {r.stderr.strip()[-300:]})")
        for f in ("bvals", "bvecs", "data.nii.gz"):
            got = os.path.join(dest, "999999", "T1w", "Diffusion", f)
            same = os.path.exists(got) and md5(got) == md5(os.path.join(src, f))
            check(same, f"999999/{f} byte-identical")
        leftovers = [n for _, _, fs in os.walk(dest) for n in fs if n.endswith(".part")]
        check(not leftovers, f"no .part files left ({leftovers})")

        # 2. a second run skips complete files (mtime unchanged)
        p = os.path.join(dest, "999999", "T1w", "Diffusion", "data.nii.gz")
        m0 = os.stat(p).st_mtime_ns
        r = subprocess.run(base + ["999999", "--dest", dest], env=env, capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0 and os.stat(p).st_mtime_ns == m0, "second run skips complete files")

        # 3. wrong secret: clear message naming key id and source, no secret, nothing created
        bad_env = dict(env, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY="wrong-secret-123")
        dest_bad = os.path.join(tmp, "dest_bad")
        r = subprocess.run(base + ["999999", "--dest", dest_bad], env=bad_env,
                           capture_output=True, text=True, timeout=60)
        print("  wrong secret said:", r.stderr.strip().splitlines()[0] if r.stderr.strip() else "")
        check(r.returncode == 1, f"wrong secret exits 1 (got {r.returncode})")
        check("403" in r.stderr and KEY_ID in r.stderr and "environment" in r.stderr,
              "wrong secret: message names HTTP 403, the key id and where it came from")
        check("wrong-secret-123" not in r.stderr + r.stdout, "wrong secret is never printed")
        check(not os.path.exists(dest_bad), "wrong secret leaves nothing behind")
        # and through the profile file: the source named is the file
        bad_creds = os.path.join(tmp, "bad_credentials")
        with open(bad_creds, "w") as f:
            f.write("[hcp]\naws_access_key_id = S3RVER\naws_secret_access_key = nope-nope\n")
        r = subprocess.run(base + ["999999", "--dest", dest_bad],
                           env=dict(env, AWS_SHARED_CREDENTIALS_FILE=bad_creds),
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 1 and f"profile [hcp] in {bad_creds}" in r.stderr
              and "nope-nope" not in r.stderr and not os.path.exists(dest_bad),
              "wrong secret from a profile names the profile and file")

        # 4. missing subject: 404 naming the key
        r = subprocess.run(base + ["123", "--dest", dest_bad], env=env, capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 1 and "HCP/123/T1w/Diffusion/bvals" in r.stderr and "404" in r.stderr
              and not os.path.exists(dest_bad), "missing subject: 404 naming the key, nothing created")

        # 5. interrupted download resumes with a Range request
        dest2 = os.path.join(tmp, "dest2")
        part = os.path.join(dest2, "999998", "T1w", "Diffusion", "data.nii.gz.part")
        final = part[:-5]
        proc = subprocess.Popen(base + ["999998", "--dest", dest2, "--rate-limit", "4000000"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while time.time() - t0 < 30:
            if os.path.exists(part) and os.path.getsize(part) > 6 * 1000 * 1000:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        cut = os.path.getsize(part) if os.path.exists(part) else 0
        print(f"  killed with {cut} of 24000000 bytes in the .part file")
        check(0 < cut < 24 * 1000 * 1000 and not os.path.exists(final),
              "killed mid-transfer: partial .part, no final file")
        r = subprocess.run(base + ["999998", "--dest", dest2], env=env, capture_output=True,
                           text=True, timeout=120)
        check(r.returncode == 0, f"resumed download exit 0 ({r.stderr.strip()[-300:]})")
        check(f"resuming at byte {cut} of 24000000" in r.stderr,
              "second run resumed from the .part size (Range request)")
        check(os.path.exists(final) and md5(final) == md5(os.path.join(big, "data.nii.gz")),
              "resumed data.nii.gz byte-identical")
        check(not os.path.exists(part), "no .part left after resume")

        # 6. listing longer than a page (flat, max-keys 3: 6 keys -> 2+ pages)
        r = subprocess.run(base + ["--list", "--recursive", "--max-keys", "3"], env=env,
                           capture_output=True, text=True, timeout=60)
        keys = sorted(line.split()[-1] for line in r.stdout.splitlines() if line.strip())
        want = sorted(f"HCP/{s}/T1w/Diffusion/{f}" for s in ("999998", "999999")
                      for f in ("bvals", "bvecs", "data.nii.gz"))
        check(r.returncode == 0 and keys == want, f"paged listing returns all {len(want)} keys (got {keys})")
        r = subprocess.run(base + ["--list", "--recursive", "--max-keys", "1", "--prefix", "HCP/999999/"],
                           env=env, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and len(r.stdout.split("\n")) - 1 == 3, "prefix listing, one key a page")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILS:
        print(f"{len(FAILS)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
