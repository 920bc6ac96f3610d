#!/usr/bin/python3
"""dmri's NIfTI reading vs nibabel, on the same data.nii.gz in the same run.

usage: bench/bench_read.py [--build-dir build] [--file F | --keep F]
                           [--shape X Y Z] [--dirs N] [--repeat N] [--no-zlib]

Generates a full-size HCP phantom (145x174x145x288 float32: ~1 GB gzip,
4.2 GB raw) with dmri-phantom in a temporary folder under /tmp, deleted at
the end (--keep F moves its data.nii.gz to F instead; --file F reads an
existing file and generates nothing). The file is read once beforehand so
every reader runs from the page cache. Then it times, each in its own
process:
  nibabel   np.asanyarray(nib.load(f).dataobj) with /usr/bin/python3
  dmri      bench_read (dmri_image_read: inflate + convert into the final
            buffer), with its default inflater (ISA-L when built with it)
  dmri-zlib bench_read with DMRI_INFLATE=zlib (the fallback), unless --no-zlib
  zcat      zcat F > /dev/null, for reference
and prints seconds, MB/s of raw output, speed-up over nibabel and peak RSS
(from /usr/bin/time -v). The CRC-32 of the values each reader produced must
agree. Exits 1 if they differ or dmri is not at least 2x nibabel.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 2.0

NIBABEL_READ = r"""
import sys, time, zlib
import numpy as np
import nibabel as nib
t = time.perf_counter()
a = np.asanyarray(nib.load(sys.argv[1]).dataobj)
dt = time.perf_counter() - t
# Our buffers are x fastest, as nibabel's Fortran-ordered array: a.T is the
# same bytes, C-contiguous.
b = a.T if a.flags.f_contiguous else np.asfortranarray(a).T
print({"seconds": dt, "bytes": a.nbytes, "crc32": zlib.crc32(b), "dtype": str(a.dtype)})
"""


def timed(cmd, env=None, stdout=subprocess.PIPE):
    """Run cmd under /usr/bin/time -v: (stdout, wall seconds, peak RSS bytes)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name, *cmd], env=env, stdout=stdout,
                           stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
        rss = 0
        for line in tf.read().splitlines():
            if "Maximum resident set size" in line:
                rss = int(line.split(":")[1]) * 1024
    return p.stdout, wall, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--file", help="read this NIfTI file instead of generating a phantom")
    g.add_argument("--keep", help="keep the generated data.nii.gz as this file")
    ap.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                    help="phantom grid (default: dmri-phantom's, 145 174 145)")
    ap.add_argument("--dirs", type=int, help="phantom directions per shell (default 90)")
    ap.add_argument("--repeat", type=int, default=1, help="dmri reads per run, best kept")
    ap.add_argument("--no-zlib", action="store_true", help="skip the DMRI_INFLATE=zlib run")
    args = ap.parse_args()

    build = os.path.abspath(args.build_dir)
    bench = os.path.join(build, "bench", "bench_read")
    phantom = os.path.join(build, "client", "dmri-phantom")
    for exe in [bench] + ([] if args.file else [phantom]):
        if not os.access(exe, os.X_OK):
            sys.exit(f"not built: {exe} (cmake --build {args.build_dir})")

    tmp = None
    try:
        if args.file:
            path = os.path.abspath(args.file)
        else:
            tmp = tempfile.mkdtemp(prefix="dmri_bench_read_", dir="/tmp")
            cmd = [phantom, "--out", tmp]
            if args.shape:
                cmd += ["--shape", *map(str, args.shape)]
            if args.dirs:
                cmd += ["--dirs", str(args.dirs)]
            print("generating the phantom:", " ".join(cmd), flush=True)
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            print(f"  {time.perf_counter() - t:.1f} s", flush=True)
            path = os.path.join(tmp, "data.nii.gz")
        gz_bytes = os.path.getsize(path)

        # Warm the page cache so no reader pays for the disk.
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
        print(f"file: {path} ({gz_bytes / 1e9:.2f} GB); load average at start: "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)

        rows = []
        out, wall, rss = timed(["/usr/bin/python3", "-c", NIBABEL_READ, path])
        nib_res = eval(out.strip().splitlines()[-1], {})  # a dict literal we printed
        rows.append(("nibabel", nib_res["seconds"], None, nib_res["bytes"], rss,
                     nib_res["crc32"]))
        print(f"  nibabel done: {nib_res['seconds']:.2f} s", flush=True)

        runs = [("dmri", None)] + ([] if args.no_zlib else [("dmri-zlib", "zlib")])
        for name, inflate in runs:
            env = dict(os.environ)
            env.pop("DMRI_INFLATE", None)
            if inflate:
                env["DMRI_INFLATE"] = inflate
            out, wall, rss = timed([bench, path, "--repeat", str(args.repeat)], env=env)
            r = json.loads(out.strip().splitlines()[-1])
            label = f"{name} ({r['inflate']})" if name == "dmri" else name
            rows.append((label, r["seconds"], r["cpu_seconds"], r["bytes"], rss, r["crc32"]))
            print(f"  {label} done: {r['seconds']:.2f} s", flush=True)

        _, wall, rss = timed(["zcat", path], stdout=subprocess.DEVNULL)
        rows.append(("zcat > /dev/null", wall, None, nib_res["bytes"], rss, None))
    finally:
        if tmp:
            if args.keep and os.path.exists(os.path.join(tmp, "data.nii.gz")):
                shutil.move(os.path.join(tmp, "data.nii.gz"), args.keep)
                print(f"kept {args.keep}")
            shutil.rmtree(tmp, ignore_errors=True)

    nib_s = rows[0][1]
    print()
    print(f"{'reader':<18} {'seconds':>8} {'cpu s':>7} {'MB/s raw':>9} {'vs nibabel':>11} "
          f"{'peak RSS':>9}  same values")
    for label, sec, cpu, nbytes, rss, crc in rows:
        same = "-" if crc is None else ("yes" if crc == rows[0][5] else "NO")
        cpu_s = f"{cpu:7.2f}" if cpu is not None else f"{'-':>7}"
        print(f"{label:<18} {sec:8.2f} {cpu_s} {nbytes / sec / 1e6:9.0f} "
              f"{nib_s / sec:10.2f}x {rss / 1e9:8.2f}G  {same}")
    dmri = rows[1]
    ok_same = all(r[5] == rows[0][5] for r in rows if r[5] is not None)
    ratio = nib_s / dmri[1]
    print(f"\ndmri vs nibabel: {ratio:.2f}x (target >= {TARGET:g}x): "
          f"{'met' if ratio >= TARGET else 'NOT met'}; values "
          f"{'identical' if ok_same else 'DIFFER'}")
    return 0 if ok_same and ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
