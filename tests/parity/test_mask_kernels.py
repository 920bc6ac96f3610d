#!/usr/bin/python3
"""Parity of the mask and noise kernels with dipy 1.6.0 / scipy / numpy.

Drives tests/harness_mask (see its header for the CLI) on random arrays, on
dipy's sample data and on a small HCP-like phantom, and requires IDENTICAL
results (PIPELINE.md Steps 3-5): mean b0 bits, median-filter bits (scipy
median_filter, mode 'reflect'), Otsu threshold bits (dipy otsu), mask
(dipy median_otsu, radius 4, 2 passes, dilate 1) and sigma per volume as
float32 (dipy estimate_sigma). Prints the number of differing values per
check and exits non-zero on any difference.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import nibabel as nib
from scipy.ndimage import median_filter

from dipy.core.gradients import gradient_table
from dipy.denoise.noise_estimate import estimate_sigma
from dipy.io.gradients import read_bvals_bvecs
from dipy.segment.mask import median_otsu, multi_median
from dipy.segment.threshold import otsu

DATA = "/usr/lib/python3/dist-packages/dipy/data/files"


class Parity:
    def __init__(self, harness, tmp):
        self.harness = harness
        self.tmp = tmp
        self.n = 0
        self.failures = []
        self.checks = 0
        self.max_sigma_rel = 0.0

    def path(self, tag):
        self.n += 1
        return os.path.join(self.tmp, "%d_%s.raw" % (self.n, tag))

    def run(self, *args):
        p = subprocess.run([self.harness] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=300)
        if p.returncode == 1:
            raise RuntimeError("harness usage/io error: %s" % p.stderr.strip())
        return p.returncode, p.stderr.strip()

    def write(self, arr, dtype):
        path = self.path("in")
        np.asarray(arr, dtype=dtype).ravel(order="F").astype(
            np.dtype(dtype).newbyteorder("<")).tofile(path)
        return path

    @staticmethod
    def read(path, dtype, shape):
        return np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<")).reshape(
            shape, order="F")

    def compare(self, name, got, ref):
        """Identical bits (any NaN equals any NaN); prints the count."""
        self.checks += 1
        got = np.asarray(got)
        ref = np.asarray(ref)
        if got.shape != ref.shape or got.dtype != ref.dtype:
            self.failures.append("%s: shape/dtype %s %s vs %s %s"
                                 % (name, got.shape, got.dtype, ref.shape, ref.dtype))
            print("FAIL %-58s shape/dtype mismatch" % name)
            return
        if got.dtype == np.bool_ or got.dtype.kind in "iu":
            differ = got != ref
        else:
            u = np.uint32 if got.dtype.itemsize == 4 else np.uint64
            differ = (got.view(u) != ref.view(u)) & ~(np.isnan(got) & np.isnan(ref))
        nd = int(np.count_nonzero(differ))
        line = "%-62s %d of %d values differ" % (name, nd, got.size)
        if nd:
            g = got[differ].ravel()[:3]
            r = ref[differ].ravel()[:3]
            line += " (e.g. C %r vs ref %r)" % (g.tolist(), r.tolist())
            self.failures.append(line)
            print("FAIL " + line)
        else:
            print("ok   " + line)

    def expect(self, name, cond, detail=""):
        self.checks += 1
        print(("ok   " if cond else "FAIL ") + name + (" " + detail if detail else ""))
        if not cond:
            self.failures.append(name + " " + detail)

    # ---- individual kernels ----

    def median(self, name, vol, radius, nslab=1):
        t = "f32" if vol.dtype == np.float32 else "f64"
        out = self.path("med")
        rc, msg = self.run("median", t, *vol.shape, radius, nslab, self.write(vol, vol.dtype), out)
        self.expect("%s median r=%d rc" % (name, radius), rc == 0, msg)
        ref = median_filter(vol, size=2 * radius + 1, mode="reflect")
        self.compare("%s median r=%d slabs=%d" % (name, radius, nslab),
                     self.read(out, vol.dtype, vol.shape), ref)

    def otsu(self, name, v):
        t = "f32" if v.dtype == np.float32 else "f64"
        out = self.path("thr")
        rc, msg = self.run("otsu", t, v.size, self.write(v, v.dtype), out)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = otsu(v)
        except ValueError as e:
            self.expect("%s otsu: both fail" % name, rc == 2,
                        "(dipy: %s; C rc=%d %s)" % (e, rc, msg))
            return
        self.expect("%s otsu rc" % name, rc == 0, msg)
        if rc == 0:
            self.compare("%s otsu threshold" % name,
                         self.read(out, v.dtype, (1,)), np.asarray([ref], dtype=v.dtype))

    def median_otsu(self, name, vol):
        t = "f32" if vol.dtype == np.float32 else "f64"
        mask_p, thr_p, filt_p = self.path("mask"), self.path("thr"), self.path("filt")
        rc, msg = self.run("medotsu", t, *vol.shape, self.write(vol, vol.dtype),
                           mask_p, thr_p, filt_p)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, ref_mask = median_otsu(vol, median_radius=4, numpass=2,
                                          autocrop=False, dilate=1)
        except ValueError as e:
            self.expect("%s median_otsu: both fail" % name, rc == 2,
                        "(dipy: %s; C rc=%d %s)" % (e, rc, msg))
            return
        self.expect("%s median_otsu rc" % name, rc == 0, msg)
        if rc != 0:
            return
        filt = multi_median(vol, 4, 2)
        self.compare("%s median x2 (filtered volume)" % name,
                     self.read(filt_p, vol.dtype, vol.shape), filt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            thr = otsu(filt)
        self.compare("%s otsu threshold of filtered" % name,
                     self.read(thr_p, vol.dtype, (1,)), np.asarray([thr], dtype=vol.dtype))
        got_mask = self.read(mask_p, np.uint8, vol.shape)
        self.compare("%s mask (%d voxels)" % (name, int(ref_mask.sum())),
                     got_mask.astype(bool), ref_mask.astype(bool))
        self.expect("%s mask values are 0/1" % name, bool(np.all(got_mask <= 1)))

    def meanb0(self, name, data, b0s):
        """data: 4-D F-ordered array as nibabel gives it; returns the C mean b0."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.mean(data[..., b0s], axis=-1)
        idx = ",".join(str(i) for i in np.nonzero(b0s)[0]) or ","
        nvox = int(np.prod(data.shape[:3]))
        if data.dtype == np.float32:
            t, store, odt = "f32", np.float32, np.float32
        elif data.dtype == np.float64:
            t, store, odt = "f64", np.float64, np.float64
        else:  # integer images are held in f32 storage, mean in f64
            t, store, odt = "f32to64", np.float32, np.float64
        out = self.path("mean")
        rc, msg = self.run("meanb0", t, nvox, data.shape[3], idx, self.write(data, store), out)
        self.expect("%s meanb0 rc" % name, rc == 0, msg)
        got = self.read(out, odt, data.shape[:3])
        self.compare("%s mean b0 (%s, %d b0s)" % (name, t, int(np.sum(b0s))), got, ref)
        return got

    def sigma(self, name, data):
        store = np.float64 if data.dtype == np.float64 else np.float32
        t = "f64" if store == np.float64 else "f32"
        if data.dtype.kind in "iu":
            assert np.all(data.astype(np.float32) == data)
        out = self.path("sigma")
        rc, msg = self.run("sigma", t, *data.shape, self.write(data, store), out)
        self.expect("%s sigma rc" % name, rc == 0, msg)
        got = self.read(out, np.float32, (data.shape[3],))
        ref = estimate_sigma(data)
        rel = np.max(np.abs(got.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1e-300))
        self.max_sigma_rel = max(self.max_sigma_rel, float(rel))
        self.compare("%s sigma per volume (%s)" % (name, t), got, ref)


def random_cases(p, rng):
    shapes = [(23, 19, 17), (10, 8, 2), (6, 10, 10), (3, 4, 1), (1, 5, 2), (2, 1, 1)]
    for shape in shapes:
        for dt in (np.float32, np.float64):
            name = "random %s %s" % ("x".join(map(str, shape)), np.dtype(dt).name)
            vol = (rng.gamma(2.0, 300.0, size=shape)).astype(dt)
            vol = np.asfortranarray(vol)
            p.median(name, vol, 4)
            p.median(name, vol, 1, nslab=3)
            p.median_otsu(name, vol)
            p.otsu(name + " raw", vol)
            # Many ties: small integers.
            ties = np.asfortranarray(rng.integers(0, 4, size=shape).astype(dt))
            p.median(name + " ties", ties, 4, nslab=2)
            p.median_otsu(name + " ties", ties)
            data = np.asfortranarray(rng.normal(500.0, 80.0, size=shape + (5,)).astype(dt))
            b0s = np.array([True, False, True, True, False])
            p.meanb0(name, data, b0s)
            p.sigma(name, data)
    # 12 b0 volumes (numpy would sum them pairwise on a C-ordered array; the
    # reference pipeline's F-ordered arrays are summed in sequence).
    data = np.asfortranarray(rng.uniform(0.0, 3000.0, size=(9, 7, 5, 14)).astype(np.float32))
    b0s = np.ones(14, bool)
    b0s[[3, 9]] = False
    p.meanb0("random 9x7x5x14 f32", data, b0s)
    # With NaN or -0.0 the element returned (not only its value) depends on
    # the selection algorithm: the kernel then runs scipy's own.
    for dt in (np.float32, np.float64):
        vol = rng.choice(np.array([0.0, -0.0, 1.0, -1.0], dt), size=(11, 9, 7))
        p.median("signed zeros %s" % np.dtype(dt).name, np.asfortranarray(vol), 4)
        vol[rng.random(vol.shape) < 0.02] = np.nan
        p.median("signed zeros + NaN %s" % np.dtype(dt).name, np.asfortranarray(vol), 4)
        p.median("signed zeros + NaN %s" % np.dtype(dt).name, np.asfortranarray(vol), 2, nslab=4)
        # -0.0 only in slice z=17: the slab [8, 16) must notice it in its
        # halo, the slab [0, 8) may use the fast selection.
        vol = np.asfortranarray(rng.choice(np.array([0.0, 2.0, 5.0], dt), size=(8, 7, 24)))
        vol[:, :, 17] = rng.choice(np.array([0.0, -0.0], dt), size=(8, 7))
        p.median("-0.0 in one slice %s" % np.dtype(dt).name, vol, 2, nslab=3)


def otsu_edge_cases(p, rng):
    f32, f64 = np.float32, np.float64
    cases = [
        ("constant 7", np.full(50, 7.0)),
        ("constant 1e8", np.full(20, 1e8)),
        ("constant 0", np.zeros(10)),
        ("two values", np.array([1.0, 2.0] * 30)),
        ("single value", np.array([3.5])),
        ("negative range", rng.normal(-100.0, 3.0, 400)),
        ("tiny range (ulps)", 1.0 + np.arange(40) * 2.0 ** -23),
        ("huge values", rng.uniform(1e30, 3e30, 300)),
        ("denormal range", rng.uniform(0.0, 1e-40, 200)),
        ("skewed", np.concatenate([np.zeros(900), rng.uniform(100, 1000, 100)])),
        ("with inf", np.array([1.0, 2.0, np.inf])),
        ("with NaN", np.array([1.0, np.nan, 2.0])),
    ]
    for name, v in cases:
        for dt in (f32, f64):
            with np.errstate(all="ignore"):
                arr = v.astype(dt)
            p.otsu("otsu %s %s" % (name, np.dtype(dt).name), arr)


def dataset_cases(p):
    def load(stem, ext, thr):
        img = nib.load(os.path.join(DATA, stem + ext))
        data = np.asanyarray(img.dataobj)
        bvals, bvecs = read_bvals_bvecs(os.path.join(DATA, stem + ".bval"),
                                        os.path.join(DATA, stem + ".bvec"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gtab = gradient_table(bvals, bvecs, b0_threshold=thr)
        return data, gtab.b0s_mask

    for stem, ext, thr, conv in [("small_64D", ".nii", 10, None),
                                 ("small_64D", ".nii", 10, np.float32),
                                 ("small_101D", ".nii.gz", 10, None),
                                 ("small_101D", ".nii.gz", 50, None),
                                 ("small_25", ".nii.gz", 10, None)]:
        data, b0s = load(stem, ext, thr)
        if conv is not None:
            data = data.astype(conv)
        name = "%s %s thr%d" % (stem, data.dtype.name, thr)
        m0 = p.meanb0(name, data, b0s)
        p.median_otsu(name, m0)
        p.sigma(name, data)


def phantom(p, rng):
    """HCP-like f32 phantom, 48x56x48, 3 b0 volumes + 2 DWIs."""
    x, y, z = np.meshgrid(np.arange(48), np.arange(56), np.arange(48), indexing="ij")
    r2 = ((x - 24.0) / 17) ** 2 + ((y - 28.0) / 21) ** 2 + ((z - 23.0) / 16) ** 2
    blob = 1.0 / (1.0 + np.exp((np.sqrt(r2) - 1.0) * 12.0))
    vols = []
    for g in range(5):
        s0 = 1800.0 if g in (0, 2, 4) else 700.0
        v = s0 * blob * (1.0 + 0.1 * np.sin(x / 5.0 + g)) + rng.normal(0, 40.0, blob.shape)
        vols.append(np.abs(v))
    data = np.asfortranarray(np.stack(vols, axis=-1).astype(np.float32))
    b0s = np.array([True, False, True, False, True])
    m0 = p.meanb0("phantom 48x56x48 f32", data, b0s)
    with np.errstate(all="ignore"):
        dsum = np.sum(data[..., b0s].astype(np.float64), axis=-1) / 3
    ndouble = int(np.count_nonzero(dsum.astype(np.float32) != m0))
    print("     (a double-sum mean b0 would differ in %d of %d voxels)" % (ndouble, m0.size))
    p.median_otsu("phantom 48x56x48 f32", m0)
    p.sigma("phantom 48x56x48 f32", data)
    isa_paths(p, m0)
    # Timing only (not asserted): one median pass, C harness vs scipy.
    src, dst = p.write(m0, np.float32), p.path("med")
    t0 = time.time()
    p.run("median", "f32", *m0.shape, 4, 1, src, dst)
    t1 = time.time()
    median_filter(m0, size=9, mode="reflect")
    t2 = time.time()
    print("     median 9^3 on %d voxels: C %.3f s (incl. process start), scipy %.3f s"
          % (m0.size, t1 - t0, t2 - t1))


def isa_paths(p, m0):
    """Every instruction set of the median kernel (scalar, AVX-512) against
    scipy, through bench/bench_median (which can force one): the mean-b0
    phantom, its first pass (plateaus), noise, and many ties, in f32 and
    f64, in 3 slabs, one and two passes."""
    bench = os.path.join(p.build_dir, "bench", "bench_median")
    if not os.access(bench, os.X_OK):
        p.expect("bench_median built (for the per-ISA median checks)", False, bench)
        return
    rng = np.random.default_rng(7)
    m1 = median_filter(m0, size=9, mode="reflect")
    vols = [("phantom mean b0", m0), ("phantom median pass 1", m1),
            ("noise", np.asfortranarray(rng.normal(100.0, 30.0, (37, 29, 17)).astype(np.float32))),
            ("ties", np.asfortranarray(rng.integers(0, 5, (31, 23, 19)).astype(np.float32)))]
    for name, vol in vols:
        passes = 2 if name == "phantom mean b0" else 1
        # Medians are input values: the f64 filter of f32 data is the f32
        # result widened, so scipy runs once per volume.
        ref32 = multi_median(vol, 4, 2) if passes == 2 else median_filter(vol, size=9,
                                                                          mode="reflect")
        for dt in (np.float32, np.float64):
            v = np.asfortranarray(vol.astype(dt))
            ref = ref32.astype(dt)
            src, rpath = p.write(v, dt), p.write(ref, dt)
            for isa in ("scalar", "avx512"):
                r = subprocess.run([bench, "--shape", *map(str, v.shape), "--input", src,
                                    "--dtype", "f32" if dt == np.float32 else "f64",
                                    "--passes", str(passes), "--repeat", "1", "--slabs", "3",
                                    "--isa", isa, "--reference", rpath],
                                   capture_output=True, text=True, timeout=300)
                if r.returncode == 2 and "not on this CPU" in r.stderr:
                    print("skip %s: %s not on this CPU" % (name, isa))
                    continue
                got = dict(l.split(None, 1) for l in r.stdout.splitlines() if " " in l)
                nd = int(got.get("differ", "-1"))
                p.expect("%s %s median x%d isa=%s" % (name, np.dtype(dt).name, passes, isa),
                         nd == 0, "%s of %d values differ %s" % (nd, v.size, r.stderr.strip()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    harness = os.path.join(args.build_dir, "tests", "harness_mask")
    if not os.access(harness, os.X_OK):
        print("missing harness %s" % harness)
        return 1
    rng = np.random.default_rng(20240611)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="dmri_mask_") as tmp:
        p = Parity(harness, tmp)
        p.build_dir = args.build_dir
        random_cases(p, rng)
        otsu_edge_cases(p, rng)
        dataset_cases(p)
        phantom(p, rng)
    print("%d checks, %d failures, max sigma rel. error vs dipy (f32) %.3g, %.1f s"
          % (p.checks, len(p.failures), p.max_sigma_rel, time.time() - t0))
    print("max abs/rel error of every other output: 0 (compared bit for bit)"
          if not p.failures else "FAILURES:\n  " + "\n  ".join(p.failures))
    return 1 if p.failures else 0


if __name__ == "__main__":
    sys.exit(main())
