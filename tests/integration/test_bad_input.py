#!/usr/bin/python3
"""dmri-run on bad input: every case fails with a non-zero exit and a message
that names the file and the problem, leaves no output file behind, and with
several subjects on the command line a bad one fails alone."""
import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np

DIPY_DATA = "/usr/lib/python3/dist-packages/dipy/data/files"
from checks import FAILURES, expect  # noqa: E402


def make_phantom(build, d, *extra):
    subprocess.run([os.path.join(build, "client", "dmri-phantom"), "--out", d, "--shape", "12",
                    "12", "10", "--b0", "2", "--shells", "1000", "--dirs", "8", "--seed", "7",
                    *extra], check=True, capture_output=True)
    return d


def outputs_in(root):
    found = []
    for dp, _, files in os.walk(root):
        found += [os.path.join(dp, f) for f in files]
    return found


def run(build, out, *subjects):
    r = subprocess.run([os.path.join(build, "client", "dmri-run"), "--quiet", "--threads", "2",
                        "--out", out, *subjects], capture_output=True, text=True)
    return r.returncode, r.stderr


def case(build, tmp, name, subject_dir, must_contain, extra_args=()):
    out = os.path.join(tmp, "out-" + name)
    code, err = run(build, out, *extra_args, subject_dir)
    err_l = err.lower()
    ok = code == 1 and all(s.lower() in err_l for s in must_contain)
    expect(ok, f"{name}: exit {code}, message: {err.strip()[:200]}")
    left = [p for p in outputs_in(out)] if os.path.exists(out) else []
    expect(not left, f"{name}: no output left behind ({len(left)} files)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    a = ap.parse_args()
    b = a.build_dir
    tmp = tempfile.mkdtemp(prefix="dmri-bad-")
    try:
        good = make_phantom(b, os.path.join(tmp, "good"))
        img = nib.load(os.path.join(good, "data.nii.gz"))
        data = np.asanyarray(img.dataobj)

        def variant(name):
            d = os.path.join(tmp, name)
            shutil.copytree(good, d)
            return d

        d = variant("missing_bvecs")
        os.remove(os.path.join(d, "bvecs"))
        case(b, tmp, "missing_bvecs", d, ["bvecs", "missing"])

        d = variant("truncated_gzip")
        p = os.path.join(d, "data.nii.gz")
        raw = open(p, "rb").read()
        open(p, "wb").write(raw[: len(raw) // 2])
        case(b, tmp, "truncated_gzip", d, ["data.nii.gz"])

        d = variant("not_nifti")
        with gzip.open(os.path.join(d, "data.nii.gz"), "wb") as f:
            f.write(b"this is not a nifti file\n" * 100)
        case(b, tmp, "not_nifti", d, ["data.nii.gz"])

        d = variant("three_d")
        nib.save(nib.Nifti1Image(data[..., 0], img.affine), os.path.join(d, "data.nii.gz"))
        case(b, tmp, "three_d", d, ["data.nii.gz", "4-D"])

        d = variant("count_mismatch")
        nib.save(nib.Nifti1Image(data[..., :-1], img.affine), os.path.join(d, "data.nii.gz"))
        case(b, tmp, "count_mismatch", d, ["bvals", "volumes"])

        d = variant("bvecs_4_rows")
        bv = np.loadtxt(os.path.join(d, "bvecs"))
        np.savetxt(os.path.join(d, "bvecs"), np.vstack([bv, bv[:1]]))
        case(b, tmp, "bvecs_4_rows", d, ["bvecs"])

        d = variant("non_unit")
        bv = np.loadtxt(os.path.join(d, "bvecs"))
        bvals = np.loadtxt(os.path.join(d, "bvals"))
        k = int(np.argmax(bvals))
        bv[:, k] *= 0.7
        np.savetxt(os.path.join(d, "bvecs"), bv)
        case(b, tmp, "non_unit", d, ["bvecs", "unit"])

        d = os.path.join(tmp, "small_101D")
        os.makedirs(d)
        shutil.copy(os.path.join(DIPY_DATA, "small_101D.nii.gz"), os.path.join(d, "data.nii.gz"))
        shutil.copy(os.path.join(DIPY_DATA, "small_101D.bval"), os.path.join(d, "bvals"))
        shutil.copy(os.path.join(DIPY_DATA, "small_101D.bvec"), os.path.join(d, "bvecs"))
        case(b, tmp, "no_b0", d, ["bvals", "b0"])

        d = os.path.join(tmp, "small_25")
        os.makedirs(d)
        shutil.copy(os.path.join(DIPY_DATA, "small_25.nii.gz"), os.path.join(d, "data.nii.gz"))
        shutil.copy(os.path.join(DIPY_DATA, "small_25.bval"), os.path.join(d, "bvals"))
        shutil.copy(os.path.join(DIPY_DATA, "small_25.bvec"), os.path.join(d, "bvecs"))
        case(b, tmp, "size_below_6", d, ["data.nii.gz", "< 6"])

        d = variant("nan_voxel")
        bad = data.astype(np.float32).copy()
        bad[3, 4, 5, 2] = np.nan
        nib.save(nib.Nifti1Image(bad, img.affine), os.path.join(d, "data.nii.gz"))
        case(b, tmp, "nan_voxel", d, ["data.nii.gz", "non-finite", "(3, 4, 5)"])

        blocker = os.path.join(tmp, "a_file")
        open(blocker, "w").write("x")
        code, err = run(b, os.path.join(blocker, "out"), good)
        expect(code == 1 and "a_file" in err, f"unwritable output: exit {code}: {err.strip()[:200]}")

        code, err = run(b, os.path.join(tmp, "out-nosuch"), os.path.join(tmp, "no_such_subject"))
        expect(code == 1 and "no_such_subject" in err, f"missing subject: exit {code}: {err.strip()[:160]}")

        # Several subjects: the bad one fails alone, the good one is complete.
        out = os.path.join(tmp, "out-multi")
        code, err = run(b, out, os.path.join(tmp, "truncated_gzip"), good)
        expect(code == 1, f"multi: exit code {code} says something failed")
        expect("truncated_gzip" in err and "good" not in err.replace("truncated_gzip", ""),
               f"multi: only the bad subject is reported: {err.strip()[:200]}")
        expected = ["mask.nii.gz", "dti_fa.nii.gz", "dti_md.nii.gz", "dti_ad.nii.gz",
                    "dti_rd.nii.gz", "dti_evecs.nii.gz", "dti_color_fa.nii.gz", "summary.json"]
        have = sorted(os.listdir(os.path.join(out, "good"))) if os.path.isdir(os.path.join(out, "good")) else []
        expect(sorted(expected) == have, f"multi: good subject complete: {have}")
        expect(not os.path.exists(os.path.join(out, "truncated_gzip")) or
               not os.listdir(os.path.join(out, "truncated_gzip")),
               "multi: nothing written for the bad subject")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} checks FAILED")
        return 1
    print("all bad-input checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
