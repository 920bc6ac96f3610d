#!/usr/bin/python3
"""End-to-end parity: dmri-run against the dipy 1.6 reference pipeline on the
same inputs, with the tolerances of PIPELINE.md:
  mask identical, sigma identical (float32), denoised identical in the input's
  type (at most 1 ulp on a tiny fraction, counted), FA and colour FA within
  1e-6 absolute, MD/AD/RD/eigenvalues within 1e-6 relative (+1e-9 absolute),
  eigenvectors equal up to sign where the eigenvalue is separated.
Inputs: phantoms of odd shapes (float32; int16; int16 with scl_slope), dipy's
real small_64D (int16, and converted to float32), small_101D at b0 threshold
50, small_25 without denoising. Prints the largest errors of every case.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dipy_reference  # noqa: E402

DIPY_DATA = "/usr/lib/python3/dist-packages/dipy/data/files"
FAILURES = []


def check(case, what, ok, detail):
    print(f"  {what:<10} {'ok  ' if ok else 'FAIL'} {detail}")
    if not ok:
        FAILURES.append(f"{case}: {what}: {detail}")


def ulp_diff_f32(a, b):
    ai = a.astype(np.float32).view(np.int32).astype(np.int64)
    bi = b.astype(np.float32).view(np.int32).astype(np.int64)
    ai = np.where(ai < 0, np.int64(-2**31) - ai, ai)
    bi = np.where(bi < 0, np.int64(-2**31) - bi, bi)
    return np.abs(ai - bi)


def compare(case, out, ref, denoise):
    load = lambda n: np.asanyarray(nib.load(os.path.join(out, n)).dataobj)
    mask = load("mask.nii.gz").astype(bool)
    rmask = ref["mask"].astype(bool)
    nd = int((mask != rmask).sum())
    check(case, "mask", nd == 0, f"{nd} of {mask.size} voxels differ ({int(rmask.sum())} in mask)")

    summary = json.load(open(os.path.join(out, "summary.json")))
    sig = np.array(summary["sigma"], dtype=np.float32)
    ns = int((sig != ref["sigma"]).sum())
    check(case, "sigma", ns == 0,
          f"{ns} of {sig.size} differ, max rel {np.max(np.abs(sig / ref['sigma'] - 1)):.2e}")

    aff = nib.load(os.path.join(out, "dti_fa.nii.gz")).affine
    check(case, "affine", np.allclose(aff, ref["affine"], atol=1e-5),
          f"max |d| {np.max(np.abs(aff - ref['affine'])):.2e}")

    if denoise:
        den = load("denoised.nii.gz")
        rden = ref["denoised"]
        same_type = den.dtype == rden.dtype
        if np.issubdtype(rden.dtype, np.floating) and rden.dtype == np.float32:
            u = ulp_diff_f32(den, rden)
            n1 = int((u > 0).sum())
            check(case, "denoised", same_type and u.max() <= 1 and n1 <= max(1, den.size // 10000),
                  f"dtype {den.dtype}/{rden.dtype}, {n1} of {den.size} differ, max {int(u.max())} ulp")
        elif rden.dtype == np.float64:
            # Scaled inputs are float64 all the way (nibabel applies the slope):
            # PIPELINE.md's fast NL-means sums in another order, so float64
            # values may differ in the last bits (<= ~1e-12 relative); rounded
            # to float32 they must agree.
            d = np.abs(den - rden)
            rel = float(np.max(d / np.maximum(np.abs(rden), 1e-300) * (rden != 0))) if d.size else 0.0
            n32 = int((den.astype(np.float32) != rden.astype(np.float32)).sum())
            check(case, "denoised", same_type and rel <= 1e-12 and n32 <= max(1, den.size // 10000),
                  f"dtype {den.dtype}/{rden.dtype}, max rel {rel:.2e}, {int((d > 0).sum())} of "
                  f"{den.size} differ in float64, {n32} as float32")
        else:
            d = np.abs(den.astype(np.float64) - rden.astype(np.float64))
            nd = int((d > 0).sum())
            check(case, "denoised", same_type and nd <= max(1, den.size // 10000) and d.max() <= 1,
                  f"dtype {den.dtype}/{rden.dtype}, {nd} of {den.size} differ, max |d| {d.max():.3g}")

    fa = load("dti_fa.nii.gz").astype(np.float64)
    d = np.abs(fa - ref["fa"])
    check(case, "FA", d.max() <= 1e-6, f"max abs {d.max():.2e}")
    cfa = load("dti_color_fa.nii.gz").astype(np.float64)
    d = np.abs(cfa - ref["color_fa"])
    check(case, "colour FA", d.max() <= 1e-6, f"max abs {d.max():.2e}")
    # The maps are stored as float32: compare to dipy's float64 rounded the same
    # way, plus float32 storage rounding (half an ulp, 6e-8 relative).
    for name in ("md", "ad", "rd"):
        v = load(f"dti_{name}.nii.gz").astype(np.float64)
        r = ref[name]
        err = np.abs(v - r)
        bound = 1e-6 * np.abs(r) + 1e-9
        rel = np.max(err / np.maximum(np.abs(r), 1e-30) * (np.abs(r) > 0)) if r.size else 0
        check(case, name.upper(), bool(np.all(err <= bound)), f"max rel {rel:.2e}, max abs {err.max():.2e}")

    evecs = load("dti_evecs.nii.gz").astype(np.float64)
    revecs = ref["evecs"]
    evals = ref["evals"]
    lam1 = evals[..., 0:1]
    worst, flips, n = 0.0, 0, 0
    m = ref["mask"].astype(bool)
    for j in range(3):
        others = [k for k in range(3) if k != j]
        sep = np.min(np.abs(evals[..., others] - evals[..., j:j + 1]), axis=-1) > 1e-4 * lam1[..., 0]
        sel = sep & m
        a = evecs[..., :, j][sel]
        b = revecs[..., :, j][sel]
        dot = np.sum(a * b, axis=-1)
        sgn = np.where(dot < 0, -1.0, 1.0)[:, None]
        flips += int((dot < 0).sum())
        n += int(sel.sum())
        if a.size:
            worst = max(worst, float(np.max(np.abs(a * sgn - b))))
    check(case, "evecs", worst <= 1e-6,
          f"max |d| {worst:.2e} over {n} separated columns (sign flips {flips})")


def run_case(build, tmp, case, subject, b0=None, skip=False):
    print(f"case {case}")
    out_root = os.path.join(tmp, "out-" + case)
    cmd = [os.path.join(build, "client", "dmri-run"), "--quiet", "--out", out_root, subject]
    if b0 is not None:
        cmd[1:1] = ["--b0-threshold", str(b0)]
    cmd[1:1] = ["--skip-denoise"] if skip else ["--save-denoised"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        check(case, "dmri-run", False, f"exit {r.returncode}: {r.stderr.strip()}")
        return
    out = os.path.join(out_root, os.path.basename(subject.rstrip("/")))
    ref = dipy_reference.run(subject, os.path.join(tmp, "ref-" + case),
                             b0_threshold=10.0 if b0 is None else b0, skip_denoise=skip)
    compare(case, out, ref, not skip)


def phantom(build, tmp, name, *args):
    d = os.path.join(tmp, name)
    subprocess.run([os.path.join(build, "client", "dmri-phantom"), "--out", d, *args],
                   check=True, capture_output=True)
    return d


def dipy_subject(tmp, name, stem, as_float32=False):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    src = os.path.join(DIPY_DATA, stem + (".nii" if stem == "small_64D" else ".nii.gz"))
    if as_float32:
        img = nib.load(src)
        data = np.asanyarray(img.dataobj).astype(np.float32)
        nib.save(nib.Nifti1Image(data, img.affine), os.path.join(d, "data.nii.gz"))
    else:
        shutil.copy(src, os.path.join(d, "data.nii" + (".gz" if src.endswith(".gz") else "")))
    shutil.copy(os.path.join(DIPY_DATA, stem + ".bval"), os.path.join(d, "bvals"))
    shutil.copy(os.path.join(DIPY_DATA, stem + ".bvec"), os.path.join(d, "bvecs"))
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--phantom-shape", nargs=3, type=int,
                    help="run only one phantom case of this shape (e.g. 96 112 96)")
    ap.add_argument("--phantom-args", default="--b0 5 --dirs 20",
                    help="dmri-phantom options for --phantom-shape")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dmri-parity-")
    try:
        b = a.build_dir
        if a.phantom_shape:
            shape = [str(v) for v in a.phantom_shape]
            run_case(b, tmp, "phantom_" + "x".join(shape),
                     phantom(b, tmp, "ph_custom", "--shape", *shape, *a.phantom_args.split()))
            return finish(a, tmp)
        small = ["--b0", "3", "--shells", "1000,2000", "--dirs", "10"]
        run_case(b, tmp, "phantom_23x29x17_f32",
                 phantom(b, tmp, "ph_f32", "--shape", "23", "29", "17", "--seed", "3", *small))
        run_case(b, tmp, "phantom_20x24x18_int16",
                 phantom(b, tmp, "ph_i16", "--shape", "20", "24", "18", "--seed", "4",
                         "--dtype", "int16", *small))
        run_case(b, tmp, "phantom_19x22x16_int16_slope",
                 phantom(b, tmp, "ph_i16s", "--shape", "19", "22", "16", "--seed", "5",
                         "--dtype", "int16", "--scl-slope", "0.5", "--scl-inter", "3", *small))
        run_case(b, tmp, "small_64D_int16", dipy_subject(tmp, "s64", "small_64D"))
        run_case(b, tmp, "small_64D_float32", dipy_subject(tmp, "s64f", "small_64D", True))
        run_case(b, tmp, "small_101D_b0thr50", dipy_subject(tmp, "s101", "small_101D"), b0=50)
        run_case(b, tmp, "small_25_skip_denoise", dipy_subject(tmp, "s25", "small_25"), skip=True)
    finally:
        pass
    return finish(a, tmp)


def finish(a, tmp):
    if a.keep:
        print("kept", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} checks FAILED:")
        for f in FAILURES:
            print("  " + f)
        return 1
    print("all parity checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
