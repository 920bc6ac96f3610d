"""NL-means parity against dipy 1.6.0 (PIPELINE.md Step 6).

Runs tests/parity harness_nlmeans (both C variants: the fast kernel, on
every instruction set this CPU has -- DMRI_NLMEANS_ISA=scalar|avx2|avx512 --
and the dipy-order reference) and dipy.denoise.nlmeans.nlmeans with a
scalar sigma per 3-D volume, patch_radius=1, block_radius=5, on:
random 12x11x10 and 6x7x8 volumes (sigma 5 / 40, Rician on / off), a smooth
blob with Rician noise (f32, 30x34x28, with a mask), volumes of dipy's
small_64D (int16 and as float32, mask from median_otsu, sigma from
estimate_sigma), and, when <build-dir>/client/dmri-phantom exists, a b0 and
a b=1000 volume of a 48x56x48 HCP-like phantom (mask and sigma as for
small_64D).

Requirements checked:
  * reference variant: bit-identical to dipy in float64;
  * fast variant, every instruction set: relative error of A = out^2 +
    2 sigma^2 <= 1e-12 (out itself loses relative accuracy next to the Rician
    clip), outputs zero exactly where dipy's are, up to values at the clip;
  * after the cast to the input dtype: float32 values at most 1 ulp apart
    and on at most 1e-4 of the values (0 expected), int16 (truncated) at most
    1 apart on at most 1e-4 of the values (0 expected);
  * the AVX2 and AVX-512 variants give the same float64 bits;
  * slab-by-slab runs of the fast variant give the very float64 bits of the
    whole-volume run (dmri-run and the cluster's z-slabs must write identical
    files).
Prints max abs/rel errors and microseconds per mask voxel of the C variants
and of dipy with num_threads=1 on the largest volume (informative only).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import nibabel as nib
from dipy.denoise.nlmeans import nlmeans
from dipy.denoise.noise_estimate import estimate_sigma
from dipy.segment.mask import median_otsu

DIPY_FILES = "/usr/lib/python3/dist-packages/dipy/data/files"

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


class Harness:
    def __init__(self, exe, tmp):
        self.exe = exe
        self.tmp = tmp

    def run(self, vol, mask, sigma, rician=True, variant="fast", slab=0, repeat=1,
            isa="auto"):
        """Denoise one 3-D volume; returns (float64 result, seconds), or
        (None, None) if this CPU lacks the instruction set."""
        if vol.dtype == np.float32:
            dt = "f32"
        else:
            vol = vol.astype(np.float64)
            dt = "f64"
        fin = os.path.join(self.tmp, "in.raw")
        fmask = os.path.join(self.tmp, "mask.raw")
        fout = os.path.join(self.tmp, "out.raw")
        vol.ravel(order="F").tofile(fin)
        (mask != 0).astype(np.uint8).ravel(order="F").tofile(fmask)
        cmd = [self.exe, "--shape", *map(str, vol.shape), "--dtype", dt,
               "--input", fin, "--mask", fmask, "--sigma", repr(float(sigma)),
               "--rician", str(int(rician)), "--variant", variant,
               "--slab", str(slab), "--repeat", str(repeat), "--output", fout]
        env = dict(os.environ, DMRI_NLMEANS_ISA=isa)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode == 3 and isa != "auto":
            return None, None
        if r.returncode != 0:
            raise RuntimeError("harness failed: %s\n%s" % (" ".join(cmd), r.stderr))
        secs = float(r.stdout.split()[-1])
        out = np.fromfile(fout, dtype=np.float64).reshape(vol.shape, order="F")
        return out, secs


def dipy_nlmeans(vol, mask, sigma, rician):
    """dipy's result in float64: nlmeans casts back to the input dtype, and
    it widens the input to float64 first, so the float64 result is what
    nlmeans returns for the float64-widened volume."""
    return nlmeans(vol.astype(np.float64), sigma=float(sigma), mask=mask,
                   patch_radius=1, block_radius=5, rician=rician, num_threads=1)


def ulp_diff_f32(a, b):
    """Distance in float32 ulps (both finite, same sign or zero)."""
    ia = a.astype(np.float32).view(np.int32).astype(np.int64)
    ib = b.astype(np.float32).view(np.int32).astype(np.int64)
    return np.abs(ia - ib)


def compare(name, c, d, sigma, rician, mask, exact=False, dtype=None, dipy_cast=None):
    """c: C float64 result, d: dipy float64 result. Prints and checks."""
    n = c.size
    diff = np.abs(c - d)
    nz = d != 0
    rel = float(np.max(diff[nz] / np.abs(d[nz]))) if nz.any() else 0.0
    k = 2.0 * sigma * sigma if rician else 0.0
    rel_a = float(np.max(np.abs(c[nz] ** 2 - d[nz] ** 2) / (d[nz] ** 2 + k))) if nz.any() else 0.0
    ndiff64 = int(np.sum(c != d))
    zero_bad = int(np.sum((d == 0) & (c != 0) & (np.abs(c) >= 1e-5 * (sigma + 1))))
    outside = int(np.sum((mask == 0) & (c != 0)))
    line = "%-44s f64: %5d/%d differ, max abs %.3g, max rel %.3g, rel(A) %.3g" % (
        name, ndiff64, n, float(diff.max()), rel, rel_a)
    check(np.all(np.isfinite(c)), name + ": non-finite output")
    check(outside == 0, "%s: %d masked-out voxels not 0" % (name, outside))
    if exact:
        check(ndiff64 == 0, "%s: %d float64 values differ from dipy (want bit-identical)"
              % (name, ndiff64))
    else:
        check(rel_a <= 1e-12, "%s: relative error of A %.3g > 1e-12" % (name, rel_a))
        check(zero_bad == 0, "%s: %d voxels 0 in dipy but not in C" % (name, zero_bad))
    # the cast to the input dtype, as dipy does it
    c32 = c.astype(np.float32)
    d32 = d.astype(np.float32)
    u = ulp_diff_f32(c32, d32)
    n32 = int(np.sum(c32 != d32))
    line += "; f32: %d differ (max %d ulp)" % (n32, int(u.max()))
    check(int(u.max()) <= 1 and n32 <= max(1, 1e-4 * n),
          "%s: %d float32 values differ, max %d ulp" % (name, n32, int(u.max())))
    if dtype is not None and np.issubdtype(dtype, np.integer):
        ci = c.astype(dtype)
        di = d.astype(dtype)
        ni = int(np.sum(ci != di))
        mi = int(np.max(np.abs(ci.astype(np.int64) - di.astype(np.int64))))
        line += "; %s: %d differ (max %d)" % (np.dtype(dtype).name, ni, mi)
        check(mi <= 1 and ni <= max(1, 1e-4 * n),
              "%s: %d %s values differ" % (name, ni, np.dtype(dtype).name))
        if dipy_cast is not None:
            check(np.array_equal(dipy_cast, di), name + ": dipy's own cast differs from model")
    elif dipy_cast is not None:
        check(np.array_equal(dipy_cast, d.astype(dipy_cast.dtype)),
              name + ": dipy's own cast differs from model")
    print(line)
    return rel_a


ISAS = ("scalar", "avx2", "avx512")
isas_seen = set()


def case(h, name, vol, mask, sigma, rician, slab=3, dipy_direct=False):
    """Both C variants against dipy; the fast one on every instruction set,
    and slab by slab."""
    d = dipy_nlmeans(vol, mask, sigma, rician)
    cast = None
    if dipy_direct:
        # dipy called on the input dtype itself (checks the cast model)
        cast = nlmeans(vol, sigma=float(sigma), mask=mask, patch_radius=1,
                       block_radius=5, rician=rician, num_threads=1)
    cr, _ = h.run(vol, mask, sigma, rician, "reference")
    compare(name + " reference", cr, d, sigma, rician, mask, exact=True,
            dtype=vol.dtype, dipy_cast=cast)
    simd = None
    for isa in ISAS:
        cf, _ = h.run(vol, mask, sigma, rician, "fast", isa=isa)
        if cf is None:
            continue
        isas_seen.add(isa)
        compare("%s fast %s" % (name, isa), cf, d, sigma, rician, mask, dtype=vol.dtype,
                dipy_cast=cast)
        if isa != "scalar":
            if simd is not None:
                check(np.array_equal(cf, simd), "%s: avx2 and avx512 differ" % name)
            simd = cf
        if slab and slab < vol.shape[2]:
            cs, _ = h.run(vol, mask, sigma, rician, "fast", slab=slab, isa=isa)
            compare("%s fast %s slabs of %d" % (name, isa, slab), cs, d, sigma, rician, mask,
                    dtype=vol.dtype)
            nd = int(np.sum(cs.view(np.uint64) != cf.view(np.uint64)))
            nz = cf != 0
            rs = float(np.max(np.abs(cs[nz] ** 2 - cf[nz] ** 2)
                              / (cf[nz] ** 2 + 2 * sigma ** 2))) if nz.any() else 0.0
            check(nd == 0, "%s %s: slabs of %d vs whole volume: %d float64 values differ, "
                  "rel(A) %.3g" % (name, isa, slab, nd, rs))
            print("%-44s vs whole volume: %d float64 values differ" % (
                "%s fast %s slabs of %d" % (name, isa, slab), nd))


def blob_volume(shape, seed=7):
    """Smooth ellipsoidal blob with texture and Rician noise (sigma 25), f32,
    and its (slightly larger) ellipsoid mask."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    r2 = (((x - (nx - 1) / 2) / (nx * 0.37)) ** 2 + ((y - (ny - 1) / 2) / (ny * 0.38)) ** 2
          + ((z - (nz - 1) / 2) / (nz * 0.36)) ** 2)
    clean = 400 * np.exp(-r2 ** 2) + 80 * np.sin(x / 3.0) * np.cos(y / 4.0) * (r2 < 1)
    clean = np.clip(clean, 0, None)
    s = 25.0
    noisy = np.sqrt((clean + s * rng.standard_normal(shape)) ** 2
                    + (s * rng.standard_normal(shape)) ** 2).astype(np.float32)
    return noisy, r2 < 1.1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    exe = os.path.join(args.build_dir, "tests", "harness_nlmeans")
    if not os.path.exists(exe):
        print("missing", exe)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(exe, tmp)
        rng = np.random.default_rng(20240611)

        # random volumes: full mask for one shape, irregular random mask for the other
        for shape in [(12, 11, 10), (6, 7, 8)]:
            for sigma in (5.0, 40.0):
                for rician in (True, False):
                    vol = rng.random(shape) * 100.0
                    if shape[0] == 6:
                        mask = np.ones(shape, dtype=bool)
                    else:
                        mask = rng.random(shape) < 0.7
                    case(h, "random %s s=%g ric=%d" % ("x".join(map(str, shape)), sigma,
                                                       rician), vol, mask, sigma, rician)

        # smooth blob + Rician noise, f32, sigma from dipy's estimate_sigma
        vol, mask = blob_volume((30, 34, 28))
        sigma = float(estimate_sigma(vol)[0])
        case(h, "blob 30x34x28 f32", vol, mask, sigma, True, slab=5, dipy_direct=True)

        # dipy's small_64D: int16 data, and the same as float32
        img = nib.load(os.path.join(DIPY_FILES, "small_64D.nii"))
        data = np.asanyarray(img.dataobj)
        bvals = np.loadtxt(os.path.join(DIPY_FILES, "small_64D.bval"))
        b0 = bvals <= 10
        meanb0 = np.mean(data[..., b0].astype(np.float32), axis=-1)
        _, m64 = median_otsu(meanb0, median_radius=4, numpass=2, autocrop=False, dilate=1)
        sig64 = estimate_sigma(data)
        print("small_64D: %s %s, %d b0, mask %d voxels" % (data.shape, data.dtype,
                                                           int(b0.sum()), int(m64.sum())))
        check(m64.sum() > 0, "small_64D: empty mask")
        for g in (0, 1, 33, 64):
            vol = data[..., g]
            case(h, "small_64D vol %d int16" % g, vol, m64, sig64[g], True, slab=4,
                 dipy_direct=True)
            case(h, "small_64D vol %d f32" % g, vol.astype(np.float32), m64, sig64[g], True,
                 slab=0, dipy_direct=True)

        # an HCP-like phantom, if the project's generator is built
        timing = None
        phantom = os.path.join(args.build_dir, "client", "dmri-phantom")
        if os.path.exists(phantom):
            pdir = os.path.join(tmp, "phantom")
            subprocess.run([phantom, "--out", pdir, "--shape", "48", "56", "48", "--b0", "2",
                            "--dirs", "4"], check=True, capture_output=True)
            data = np.asanyarray(nib.load(os.path.join(pdir, "data.nii.gz")).dataobj)
            bvals = np.loadtxt(os.path.join(pdir, "bvals"))
            b0 = bvals <= 10
            meanb0 = np.mean(data[..., b0].astype(np.float32), axis=-1)
            _, pm = median_otsu(meanb0, median_radius=4, numpass=2, autocrop=False, dilate=1)
            psig = estimate_sigma(data)
            print("phantom: %s %s, mask %d voxels" % (data.shape, data.dtype, int(pm.sum())))
            check(pm.sum() > 0, "phantom: empty mask")
            for g in (0, 1):
                case(h, "phantom 48x56x48 vol %d (b=%g)" % (g, bvals[g]), data[..., g], pm,
                     psig[g], True, slab=7)
            timing = ("phantom vol 1", data[..., 1], pm, float(psig[1]))
        else:
            print("no %s: phantom case skipped" % phantom)
        if timing is None:
            vol, mask = blob_volume((30, 34, 28))
            timing = ("blob", vol, mask, float(estimate_sigma(vol)[0]))

        # timing (informative only): CPU time, one thread, dipy and C
        tname, vol, mask, sigma = timing
        nm = int(mask.sum())
        best = 1e300
        for _ in range(2):
            t0 = time.process_time()
            nlmeans(vol, sigma=sigma, mask=mask, patch_radius=1, block_radius=5,
                    rician=True, num_threads=1)
            best = min(best, time.process_time() - t0)
        line = "timing on %s (%d mask voxels), us per mask voxel: dipy 1 thread %.2f" % (
            tname, nm, 1e6 * best / nm)
        for isa in ISAS:
            _, tf = h.run(vol, mask, sigma, True, "fast", repeat=3, isa=isa)
            if tf is not None:
                line += ", C %s %.3f (%.1fx)" % (isa, 1e6 * tf / nm, best / tf)
        _, tr = h.run(vol, mask, sigma, True, "reference", repeat=1)
        line += ", C reference %.2f" % (1e6 * tr / nm)
        print(line)
        print("instruction sets tested: %s" % " ".join(i for i in ISAS if i in isas_seen))
        check("scalar" in isas_seen, "the scalar path was not tested")

    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    print("test_nlmeans: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
