#!/usr/bin/python3
"""dmri-run gives identical voxel data whatever the thread count and the
chunking of the task graph (whole volumes denoised in place, or z-slabs with
halos into a separate buffer); HCP ids are found under --data-dir in both
layouts; the outputs carry the input's affine and summary.json is complete."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np

from checks import FAILURES, expect  # noqa: E402
OUTPUTS = ["mask.nii.gz", "dti_fa.nii.gz", "dti_md.nii.gz", "dti_ad.nii.gz", "dti_rd.nii.gz",
           "dti_evecs.nii.gz", "dti_color_fa.nii.gz", "denoised.nii.gz"]


def dmri_run(build, *args):
    r = subprocess.run([os.path.join(build, "client", "dmri-run"), *args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    tmp = tempfile.mkdtemp(prefix="dmri-modes-")
    try:
        data_dir = os.path.join(tmp, "hcp")
        subj = os.path.join(data_dir, "100307", "T1w", "Diffusion")
        subprocess.run([os.path.join(b, "client", "dmri-phantom"), "--out", subj, "--shape", "26",
                        "30", "23", "--b0", "3", "--shells", "1000,2000", "--dirs", "8",
                        "--seed", "11"], check=True, capture_output=True)
        flat = os.path.join(data_dir, "100408")
        shutil.copytree(subj, flat)

        runs = {
            "1 thread, whole volumes": ["--threads", "1"],
            "2 threads, whole volumes": ["--threads", "2"],
            "2 threads, slabs of 4": ["--threads", "2", "--slab", "4"],
            "3 threads, slabs of 7": ["--threads", "3", "--slab", "7"],
        }
        results = {}
        for name, extra in runs.items():
            out = os.path.join(tmp, "out-" + name.replace(" ", "_").replace(",", ""))
            r = dmri_run(b, "--save-denoised", "--data-dir", data_dir, "--out", out, *extra, "100307")
            expect(r.returncode == 0, f"{name}: exit {r.returncode}")
            expect("denoising" in r.stdout and "tensor fit" in r.stdout,
                   f"{name}: step lines printed")
            results[name] = os.path.join(out, "100307")
        ref = results["1 thread, whole volumes"]
        for name, d in results.items():
            if d == ref:
                continue
            same = all(np.array_equal(np.asanyarray(nib.load(os.path.join(d, f)).dataobj),
                                      np.asanyarray(nib.load(os.path.join(ref, f)).dataobj))
                       for f in OUTPUTS)
            expect(same, f"{name}: every output identical to the 1-thread run")

        src = nib.load(os.path.join(subj, "data.nii.gz"))
        fa = nib.load(os.path.join(ref, "dti_fa.nii.gz"))
        expect(np.array_equal(fa.affine, src.affine), "FA affine equals the input's")
        expect(fa.shape == src.shape[:3] and fa.get_data_dtype() == np.float32, "FA shape/dtype")
        ev = nib.load(os.path.join(ref, "dti_evecs.nii.gz"))
        expect(ev.shape == src.shape[:3] + (3, 3), f"evecs shape {ev.shape}")
        s = json.load(open(os.path.join(ref, "summary.json")))
        expect(s["shape"] == list(src.shape) and len(s["sigma"]) == src.shape[3]
               and s["mask_voxels"] == int(np.asanyarray(nib.load(os.path.join(ref, "mask.nii.gz")).dataobj).sum())
               and s["dtype"] == "float32" and "nlmeans" in s["seconds"] and s["version"],
               "summary.json fields")

        out = os.path.join(tmp, "out-flat")
        r = dmri_run(b, "--data-dir", data_dir, "--out", out, "100408")
        expect(r.returncode == 0 and os.path.exists(os.path.join(out, "100408", "dti_fa.nii.gz")),
               "an id in the <dir>/<id>/ layout is found")
        same = np.array_equal(np.asanyarray(nib.load(os.path.join(out, "100408", "dti_fa.nii.gz")).dataobj),
                              np.asanyarray(fa.dataobj))
        expect(same, "same data, same FA")
        r = dmri_run(b, "--data-dir", data_dir, "--out", out, "999999")
        expect(r.returncode == 1 and "999999" in r.stderr and "not found" in r.stderr,
               f"unknown id: {r.stderr.strip()[:150]}")
        r = dmri_run(b, "--threads", "0", "100307")
        expect(r.returncode == 2 and "--threads" in r.stderr, "usage error exits 2")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} checks FAILED")
        return 1
    print("all run-mode checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
