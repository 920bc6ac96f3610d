#!/usr/bin/python3
"""Speed of dmri's median filter and tensor fit against their references,
measured in the same run, ONE thread on both sides.

usage: bench/bench_kernels.py [--build-dir build] [--only median|dti]
                              [--dti-shape X Y Z] [--repeat N]

median: a full-size (145x174x145) phantom from dmri-phantom (18 b0 + 2
  DWIs, quick to write), its float32 mean b0 (numpy, volumes with b <= 10);
  reference scipy.ndimage.median_filter(size=9, mode='reflect') applied
  twice, as dipy's median_otsu does; dmri = bench/bench_median (two passes
  of dmri_median3d_f32, whole volume in one call), which also counts the
  values that differ from scipy's result (must be 0).
dti: a phantom with the HCP scheme (G = 288: 18 b0 at b = 5, 90 directions
  at b = 1000/2000/3000) at --dti-shape (default 64x76x64), brain mask from
  dipy's median_otsu; reference dipy TensorModel(gtab).fit(data, mask)
  (WLS); dmri = bench/bench_dti (dmri_dti_fit_block over the series, and
  the per-voxel route for comparison). Per-voxel costs are per mask voxel.

Times are thread CPU seconds (time.thread_time() for the Python references,
CLOCK_THREAD_CPUTIME_ID in the C benches), so that other load on a shared
machine inflates them as little as possible; OPENBLAS_NUM_THREADS=1 and
OMP_NUM_THREADS=1 are set before numpy loads. The C side is the best of
--repeat runs (default 3), the reference the best of max(1, repeat // 3)
runs (it takes 10-40x longer).
"""
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed (%d): %s\n%s%s" % (p.returncode, " ".join(map(str, cmd)), p.stdout,
                                            p.stderr))
    return dict(line.split(None, 1) for line in p.stdout.splitlines() if " " in line)


def phantom(build, out, *args):
    exe = os.path.join(build, "client", "dmri-phantom")
    run([exe, "--out", out, *args])
    import nibabel as nib
    from dipy.io import read_bvals_bvecs
    data = np.asanyarray(nib.load(os.path.join(out, "data.nii.gz")).dataobj)
    bvals, bvecs = read_bvals_bvecs(os.path.join(out, "bvals"), os.path.join(out, "bvecs"))
    return data, bvals, bvecs


def best_of(n, fn):
    best, res = None, None
    for _ in range(n):
        t0 = time.thread_time()
        res = fn()
        t = time.thread_time() - t0
        best = t if best is None or t < best else best
    return best, res


def row(name, c_s, ref_s, nvox, note):
    print("%-7s dmri %8.3f s  reference %8.3f s  ratio %6.1fx  dmri %8.4f us/voxel  "
          "reference %8.3f us/voxel  (%d voxels)  %s"
          % (name, c_s, ref_s, ref_s / c_s, 1e6 * c_s / nvox, 1e6 * ref_s / nvox, nvox, note))
    sys.stdout.flush()


def bench_median(build, tmp, repeat):
    from scipy.ndimage import median_filter
    data, bvals, _ = phantom(build, os.path.join(tmp, "ph_med"), "--b0", "18", "--dirs", "2",
                             "--shells", "1000")
    m0 = np.mean(data[..., bvals <= 10], -1)
    assert m0.dtype == np.float32
    del data
    src = os.path.join(tmp, "m0.f32")
    m0.ravel(order="F").tofile(src)

    def twice():
        return median_filter(median_filter(m0, size=9, mode="reflect"), size=9, mode="reflect")

    ref_s, ref = best_of(max(1, repeat // 3), twice)
    rpath = os.path.join(tmp, "m0_med2.f32")
    ref.ravel(order="F").tofile(rpath)
    got = run([os.path.join(build, "bench", "bench_median"), "--shape", *m0.shape, "--input",
               src, "--passes", "2", "--repeat", repeat, "--reference", rpath])
    row("median", float(got["seconds"]), ref_s, m0.size,
        "9x9x9 x2 passes, isa %s, %s values differ from scipy" % (got["isa"], got["differ"]))
    return int(got["differ"]) == 0


def bench_dti(build, tmp, shape, repeat):
    from dipy.core.gradients import gradient_table
    from dipy.reconst import dti
    from dipy.segment.mask import median_otsu
    data, bvals, bvecs = phantom(build, os.path.join(tmp, "ph_dti"), "--shape", *shape)
    gtab = gradient_table(bvals, bvecs, b0_threshold=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, mask = median_otsu(np.mean(data[..., gtab.b0s_mask], -1), median_radius=4,
                              numpass=2, autocrop=False, dilate=1)
    nmask = int(mask.sum())

    def fit():
        return dti.TensorModel(gtab).fit(data, mask=mask)

    ref_s, ref = best_of(max(1, repeat // 3), fit)
    sig = os.path.join(tmp, "dti_signal.f32")
    data.transpose(3, 2, 1, 0).astype(np.float32).tofile(sig)  # volume after volume, x fastest
    mpath = os.path.join(tmp, "dti_mask.u8")
    mask.transpose(2, 1, 0).astype(np.uint8).tofile(mpath)
    fb, fg = os.path.join(tmp, "bvals.f64"), os.path.join(tmp, "bvecs.f64")
    np.asarray(bvals, np.float64).tofile(fb)
    np.ascontiguousarray(bvecs, np.float64).tofile(fg)
    exe = os.path.join(build, "bench", "bench_dti")
    common = ["--bvals", fb, "--bvecs", fg, "--signal", sig, "--nvox", mask.size, "--mask",
              mpath, "--repeat", repeat]
    blk = run([exe, *common, "--mode", "block"])
    vox = run([exe, *common, "--mode", "voxel"])
    assert int(blk["mask_voxels"]) == nmask
    row("dti", float(blk["seconds"]), ref_s, nmask,
        "G = %d, dmri_dti_fit_block isa %s" % (data.shape[3], blk["isa"]))
    row("dti-vox", float(vox["seconds"]), ref_s, nmask,
        "G = %d, per-voxel route (dmri_dti_fit_voxel, LAPACK dsyevd)" % data.shape[3])
    del ref
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--only", choices=("median", "dti"))
    ap.add_argument("--dti-shape", nargs=3, type=int, default=(64, 76, 64))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    print("one thread each side; thread CPU seconds; load average %.2f"
          % os.getloadavg()[0])
    ok = True
    with tempfile.TemporaryDirectory(prefix="dmri_bench_") as tmp:
        if args.only in (None, "median"):
            ok &= bench_median(build, tmp, args.repeat)
        if args.only in (None, "dti"):
            ok &= bench_dti(build, tmp, [str(v) for v in args.dti_shape], args.repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
