#!/usr/bin/python3
"""dmri vs dipy 1.6, step by step, on the same phantom in the same run.

usage: bench/bench.py [--build-dir build] [--shape X Y Z] [--dirs N] [--b0 N]
                      [--nlmeans-volumes K] [--full]

Both sides run on ONE thread (OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=1,
dipy's nlmeans num_threads=1, dmri's bench_steps is single-threaded) so the
ratio compares algorithms and code, not core counts. NL-means is timed on the
first K volumes of the series (at least one b0 and one DWI) and reported per
mask voxel per volume. --full also runs dmri-run on a full HCP-size phantom
(145x174x145x288) with all cores and reports wall time and peak RSS; dipy is
not run whole (it needs > 24 GB and hours): its time is extrapolated from the
per-unit costs measured here.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dipy_steps(subject, k):
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    import nibabel as nib
    import numpy as np
    from dipy.core.gradients import gradient_table
    from dipy.denoise.nlmeans import nlmeans
    from dipy.denoise.noise_estimate import estimate_sigma
    from dipy.io import read_bvals_bvecs
    from dipy.segment.mask import median_otsu
    import dipy.reconst.dti as dti

    t = {}
    s = time.perf_counter()
    img = nib.load(os.path.join(subject, "data.nii.gz"))
    data = np.asanyarray(img.dataobj)
    bvals, bvecs = read_bvals_bvecs(os.path.join(subject, "bvals"), os.path.join(subject, "bvecs"))
    gtab = gradient_table(bvals, bvecs, b0_threshold=10)
    t["load"] = time.perf_counter() - s
    s = time.perf_counter()
    mean_b0 = np.mean(data[..., gtab.b0s_mask], -1)
    t["meanb0"] = time.perf_counter() - s
    s = time.perf_counter()
    _, mask = median_otsu(mean_b0, median_radius=4, numpass=2, autocrop=False, dilate=1)
    t["mask_all"] = time.perf_counter() - s
    s = time.perf_counter()
    sigma = estimate_sigma(data)
    t["sigma"] = time.perf_counter() - s
    s = time.perf_counter()
    for v in range(k):
        nlmeans(data[..., v], sigma=float(sigma[v]), mask=mask, patch_radius=1, block_radius=5,
                rician=True, num_threads=1)
    t["nlmeans"] = time.perf_counter() - s
    s = time.perf_counter()
    dti.TensorModel(gtab).fit(data, mask=mask)
    t["dti"] = time.perf_counter() - s
    t["mask_voxels"] = int(mask.sum())
    return t


def peak_dp_flops():
    """Peak double-precision FLOP/s of this machine: cores x clock x 16
    (two 256-bit FMA units: 2 x 4 doubles x 2 flops per cycle, AVX2 x86-64)."""
    cores = os.cpu_count() or 1
    mhz = None
    try:
        for line in open("/proc/cpuinfo"):
            m = re.match(r"cpu MHz\s*:\s*([\d.]+)", line)
            if m:
                mhz = float(m.group(1))
                break
    except OSError:
        pass
    mhz = mhz or 2000.0
    return cores * mhz * 1e6 * 16, cores, mhz


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shape", nargs=3, type=int, default=[96, 112, 96])
    ap.add_argument("--dirs", type=int, default=30)
    ap.add_argument("--b0", type=int, default=6)
    ap.add_argument("--nlmeans-volumes", type=int, default=2)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--full-dir", help="with --full: an existing full-size phantom folder "
                    "(default: generate one, ~40 s and 1 GB)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dmri-bench-")
    subj = os.path.join(tmp, "bench")
    subprocess.run([os.path.join(a.build_dir, "client", "dmri-phantom"), "--out", subj,
                    "--shape", *map(str, a.shape), "--dirs", str(a.dirs), "--b0", str(a.b0)],
                   check=True, capture_output=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    r = subprocess.run([os.path.join(a.build_dir, "bench", "bench_steps"), subj,
                        "--nlmeans-volumes", str(a.nlmeans_volumes)],
                       check=True, capture_output=True, text=True, env=env)
    c = json.loads(r.stdout)
    d = dipy_steps(subj, c["nlmeans_volumes"])
    X, Y, Z, G = c["shape"]
    print(f"phantom {X}x{Y}x{Z}x{G} float32, mask {c['mask_voxels']} voxels "
          f"(dipy: {d['mask_voxels']}), one thread each")
    rows = [
        ("load (inflate + convert)", c["load"], d["load"]),
        ("mean b0", c["meanb0"], d["meanb0"]),
        ("mask (median x2 + Otsu + dilation)", c["median"] + c["mask"], d["mask_all"]),
        ("sigma (all volumes)", c["sigma"], d["sigma"]),
        (f"NL-means ({c['nlmeans_volumes']} volumes)", c["nlmeans"], d["nlmeans"]),
        ("tensor fit (WLS + eigen + maps)", c["dti"], d["dti"]),
    ]
    print(f"{'step':<38} {'dmri s':>9} {'dipy s':>9} {'ratio':>8}")
    for name, cs, ds in rows:
        print(f"{name:<38} {cs:9.3f} {ds:9.3f} {ds / cs if cs > 0 else float('inf'):7.1f}x")
    units = c["mask_voxels"] * c["nlmeans_volumes"]
    us_c = 1e6 * c["nlmeans"] / units
    us_d = 1e6 * d["nlmeans"] / units
    peak, cores, mhz = peak_dp_flops()
    # dipy-equivalent work per mask voxel-volume (PIPELINE.md cost model):
    # 83 k flops + 729 exp (an exp counted as ~20 flops).
    eq_flops = 83e3 + 729 * 20
    print(f"NL-means: dmri {us_c:.2f} us, dipy {us_d:.2f} us per mask voxel-volume "
          f"({us_d / us_c:.1f}x); dmri {1e6 / us_c:,.0f} mask voxel-volumes/s per core")
    # dmri's own work per mask voxel-volume (kernels/nlmeans.c): ~1.13 x 364
    # symmetric pairs, each ~32 flops (squared difference, 3-tap box sums in
    # x/y/z, scale, a ~15-flop polynomial exp, two scatters of w and w*u^2).
    own_flops = 1.13 * 364 * 32
    print(f"NL-means: dmri executes ~{own_flops / 1e3:.0f} k flops per mask voxel-volume: "
          f"{own_flops / (us_c * 1e-6) / 1e9:.1f} GFLOP/s = "
          f"{100 * own_flops / (us_c * 1e-6) / (peak / cores):.0f}% of one core's peak "
          f"({peak / cores / 1e9:.1f} GFLOP/s = {mhz:.0f} MHz x 16 DP flops/cycle: two 256-bit FMA "
          f"units; AVX-512 on this CPU issues the same 16/cycle)")
    print(f"NL-means: dipy's algorithm needs ~{eq_flops / 1e3:.0f} k flops per mask voxel-volume; "
          f"at dmri's speed that is {eq_flops / (us_c * 1e-6) / 1e9:.0f} GFLOP/s 'dipy-equivalent' "
          f"(more than the peak: the savings are algorithmic)")
    print(f"tensor fit: dmri {1e6 * c['dti'] / c['mask_voxels']:.2f} us, dipy "
          f"{1e6 * d['dti'] / d['mask_voxels']:.2f} us per mask voxel (G = {G})")
    if a.full:
        full = a.full_dir or os.path.join(tmp, "full")
        if not a.full_dir:
            subprocess.run([os.path.join(a.build_dir, "client", "dmri-phantom"), "--out", full],
                           check=True)
        s = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-v", os.path.join(a.build_dir, "client", "dmri-run"),
                            "--threads", "2", "--out", os.path.join(tmp, "full-out"), full],
                           capture_output=True, text=True)
        wall = time.perf_counter() - s
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        print(r.stdout)
        gb = int(rss.group(1)) * 1024 / 1e9 if rss else float("nan")
        print(f"full-size dmri-run (145x174x145x288 float32, 2 threads): {wall:.1f} s wall "
              f"(target < 300 s), peak RSS {gb:.2f} GB (target < 6.5 GB), exit {r.returncode}")
        # dipy on the whole subject, extrapolated from the per-unit costs measured above
        # (it needs > 24 GB here): NL-means per mask voxel-volume, fit per mask voxel.
        summ = json.load(open(os.path.join(tmp, "full-out", os.path.basename(full.rstrip("/")),
                                           "summary.json")))
        m = summ["mask_voxels"]
        est = (us_d * 1e-6 * m * 288 + 1e-6 * (1e6 * d["dti"] / d["mask_voxels"]) * 288 / G * m)
        print(f"dipy, extrapolated (one thread, NL-means + fit only, mask {m} voxels): "
              f"{est:.0f} s = {est / 3600:.1f} h")
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
