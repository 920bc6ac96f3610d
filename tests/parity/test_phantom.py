#!/usr/bin/python3
"""dmri-phantom output is valid dipy 1.6 input and has the promised structure.

Runs the real command into temporary folders, then loads the subject with
nibabel and dipy (read_bvals_bvecs, gradient_table, TensorModel, median_otsu):
geometry and dtypes, b0 count at threshold 10, tensors of known structures
(corpus callosum, corticospinal tract, cingulum: FA > 0.5 along the curve;
ventricle CSF and cortex: FA < 0.2 with the nominal diffusivities), the
median_otsu mask against the head, the int16/scaling path, and the command's
exit codes and messages for bad arguments.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
from scipy import ndimage
from dipy.core.gradients import gradient_table
from dipy.io import read_bvals_bvecs
from dipy.reconst.dti import TensorModel
from dipy.segment.mask import median_otsu

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def run(exe, args):
    return subprocess.run([exe] + args, capture_output=True, text=True, timeout=120)


SHAPE = (40, 48, 40)


def voxel(p):
    """Voxel nearest to head-normalised point p (layout in common/phantom.c)."""
    n = np.array(SHAPE, float)
    h = np.array([0.40, 0.41, 0.39]) * n
    c = (n - 1) / 2
    return tuple(int(round(v)) for v in c + np.array(p) * h)


# Named structures: (point, expected principal axis or None for isotropic,
# expected eigenvalues in mm^2/s).
BUNDLE = (1.7e-3, 0.35e-3, 0.35e-3)
STRUCTURES = {
    "corpus callosum midline": ((0.0, 0.0, 0.15), 0, BUNDLE),
    "corticospinal, low x": ((-0.308, -0.05, 0.0), 2, BUNDLE),
    "corticospinal, high x": ((0.308, -0.05, 0.0), 2, BUNDLE),
    "cingulum top": ((0.13, 0.0, 0.50), 1, BUNDLE),
    "ventricle": ((0.11, 0.02, -0.05), None, (3e-3,) * 3),
    "cortex (front)": ((0.0, 0.80, 0.0), None, (0.8e-3,) * 3),
    "outer CSF (side)": ((0.89, 0.0, 0.0), None, (3e-3,) * 3),
}


def load(d):
    img = nib.load(os.path.join(d, "data.nii.gz"))
    bvals, bvecs = read_bvals_bvecs(os.path.join(d, "bvals"), os.path.join(d, "bvecs"))
    gtab = gradient_table(bvals, bvecs, b0_threshold=10)
    return img, np.asanyarray(img.dataobj), bvals, bvecs, gtab


def fit_structures(data, gtab, label, tight):
    model = TensorModel(gtab)
    max_rel = 0.0
    for name, (p, axis, evals) in STRUCTURES.items():
        v = voxel(p)
        fit = model.fit(data[v].astype(np.float64))
        fa = float(fit.fa)
        got = np.sort(fit.evals)[::-1]
        rel = np.max(np.abs(got - np.array(evals)) / np.array(evals))
        max_rel = max(max_rel, rel)
        e1 = fit.evecs[:, 0]
        print(f"{label}: {name} voxel {v}: FA {fa:.4f} evals {got} e1 {np.round(e1, 3)}")
        if axis is not None:
            check(fa > 0.5, f"{label}: {name}: FA {fa:.3f} <= 0.5")
            check(abs(e1[axis]) > 0.9, f"{label}: {name}: e1 {e1} not along axis {axis}")
        else:
            check(fa < 0.2, f"{label}: {name}: FA {fa:.3f} >= 0.2")
            md = float(np.mean(fit.evals))
            check(abs(md - evals[0]) <= (0.02 if tight else 0.1) * evals[0],
                  f"{label}: {name}: MD {md:.3e}, expected {evals[0]:.1e}")
        if tight:
            check(rel < 1e-3, f"{label}: {name}: eigenvalues {got} vs {evals} rel {rel:.2e}")
    print(f"{label}: max rel eigenvalue error vs nominal {max_rel:.3e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    exe = os.path.join(args.build_dir, "client", "dmri-phantom")
    check(os.access(exe, os.X_OK), f"{exe} not built")
    if failures:
        return 1
    shape_args = ["--shape"] + [str(s) for s in SHAPE]
    common = shape_args + ["--shells", "1000,2000", "--dirs", "20", "--b0", "3", "--seed", "11"]

    with tempfile.TemporaryDirectory() as tmp:
        # --- the command line ---
        r = run(exe, ["--help"])
        check(r.returncode == 0 and "--shells" in r.stdout, "--help: exit %d" % r.returncode)
        bad = [
            (["--out", tmp + "/x", "--dirs", "abc"], "--dirs"),
            (["--out", tmp + "/x", "--shape", "4", "5"], "--shape"),
            (["--out", tmp + "/x", "--shape", "4", "0", "5"], "--shape"),
            (["--out", tmp + "/x", "--dtype", "uint8"], "--dtype"),
            (["--out", tmp + "/x", "--snr", "-1"], "--snr"),
            (["--out", tmp + "/x", "--shells", "5,1000"], "--shells"),
            (["--out", tmp + "/x", "--scl-inter", "3"], "--scl-inter"),
            (["--out", tmp + "/x", "--scl-slope", "0"], "--scl-slope"),
            (["--out", tmp + "/x", "--seed", "-4"], "--seed"),
            (["--out", tmp + "/x", "--b0", "0", "--dirs", "0"], "volumes"),
            (["--out", tmp + "/x", "--frobnicate"], "--frobnicate"),
            (["--dirs", "3"], "--out"),
        ]
        for argv, word in bad:
            r = run(exe, argv)
            check(r.returncode == 2 and word in r.stderr,
                  f"{argv}: exit {r.returncode}, stderr {r.stderr!r} should name {word}")
        check(not os.path.exists(tmp + "/x"), "a rejected command created its folder")
        open(tmp + "/file", "w").close()
        r = run(exe, ["--out", tmp + "/file/sub"] + shape_args)
        check(r.returncode == 1 and "file" in r.stderr,
              f"unwritable folder: exit {r.returncode}, {r.stderr!r}")

        # --- noiseless subject: geometry, gradients, exact tensors ---
        clean = os.path.join(tmp, "clean")
        r = run(exe, ["--out", clean, "--snr", "0"] + common)
        check(r.returncode == 0, f"noiseless run failed: {r.stderr}")
        img, data, bvals, bvecs, gtab = load(clean)
        G = 3 + 2 * 20
        check(data.shape == SHAPE + (G,), f"shape {data.shape}")
        check(data.dtype == np.float32, f"dtype {data.dtype} (slope 1/inter 0 must stay f32)")
        hdr = img.header
        check(int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 1, "xform codes")
        want = np.array([[-1.25, 0, 0, 1.25 * 39 / 2],
                         [0, 1.25, 0, -17.875 - 1.25 * 47 / 2],
                         [0, 0, 1.25, 18 - 1.25 * 39 / 2],
                         [0, 0, 0, 1]])
        aff_err = max(np.abs(img.affine - want).max(), np.abs(hdr.get_qform() - want).max())
        print(f"affine max abs error {aff_err:.2e}")
        check(aff_err < 1e-5, f"affine {img.affine}")
        check(hdr.get_xyzt_units() == ("mm", "sec"), f"units {hdr.get_xyzt_units()}")
        check(int(gtab.b0s_mask.sum()) == 3, f"b0s at threshold 10: {gtab.b0s_mask.sum()}")
        norms = np.linalg.norm(bvecs, axis=1)
        print(f"bvec norms: max |n-1| {np.abs(norms - 1).max():.2e}")
        check(np.abs(norms - 1).max() < 1e-6, "bvecs not unit")
        dw = bvals[~gtab.b0s_mask]
        check(np.all((np.abs(dw - 1000) <= 15) | (np.abs(dw - 2000) <= 15)), f"bvals {dw}")
        head = data[..., 0] > 0
        check(np.all(data[~head] == 0), "background not exactly 0 in every volume")
        check(np.all(data[head] > 0), "zero values inside the head")
        fit_structures(data, gtab, "noiseless", tight=True)

        # --- high-SNR noisy subject: FA structure survives noise ---
        hi = os.path.join(tmp, "snr100")
        r = run(exe, ["--out", hi, "--snr", "100"] + common)
        check(r.returncode == 0, f"snr 100 run failed: {r.stderr}")
        _, dhi, _, _, ghi = load(hi)
        fit_structures(dhi, ghi, "snr100", tight=False)

        # --- default SNR: median_otsu mask vs the head ---
        noisy = os.path.join(tmp, "snr30")
        r = run(exe, ["--out", noisy] + common)
        check(r.returncode == 0, f"default-snr run failed: {r.stderr}")
        _, dn, _, _, gn = load(noisy)
        b0 = dn[..., gn.b0s_mask]
        s0_head = b0[head].mean(axis=-1)
        print(f"b0 in the head: 5th..95th percentile {np.percentile(s0_head, 5):.0f}"
              f"..{np.percentile(s0_head, 95):.0f}")
        check(800 < np.median(s0_head) < 3000, f"b0 median {np.median(s0_head)}")
        meanb0 = np.mean(b0, -1)
        _, mask = median_otsu(meanb0, median_radius=4, numpass=2, autocrop=False, dilate=1)
        far = ndimage.distance_transform_edt(~head) > 3
        cover = (mask & head).sum() / head.sum()
        print(f"median_otsu: {mask.sum()} voxels, covers {cover:.3f} of the head "
              f"({head.sum()} voxels), {int((mask & far).sum())} in the far background")
        check(cover > 0.8, f"mask covers only {cover:.3f} of the head")
        check(not (mask & far).any(), "mask reaches the far background")

        # --- int16 with scaling: nibabel's scaled values match the float32 run ---
        i16 = os.path.join(tmp, "int16")
        r = run(exe, ["--out", i16, "--dtype", "int16", "--scl-slope", "0.5",
                      "--scl-inter", "-3"] + common)
        check(r.returncode == 0, f"int16 run failed: {r.stderr}")
        img16 = nib.load(os.path.join(i16, "data.nii.gz"))
        check(img16.get_data_dtype() == np.int16, f"on-disk dtype {img16.get_data_dtype()}")
        d16 = np.asanyarray(img16.dataobj)
        check(d16.dtype == np.float64, f"scaled dtype {d16.dtype}")
        err16 = np.abs(d16 - dn.astype(np.float64)).max()
        print(f"int16 slope 0.5 inter -3: max abs error vs float32 {err16:.4f}")
        check(err16 <= 0.25 + 1e-3, f"int16 max error {err16}")

    if failures:
        print(f"test_phantom: {len(failures)} failure(s)")
        return 1
    print("test_phantom: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
