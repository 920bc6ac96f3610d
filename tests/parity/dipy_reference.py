#!/usr/bin/python3
"""The reference pipeline: what the old `python ref/main.py SUBJECT` computes,
with dipy 1.6.0, for one subject folder (data.nii[.gz], bvals, bvecs).

median_otsu gets its parameters by keyword (radius 4, 2 passes, no crop,
dilate 1): the positional call of ref/main.py fails on dipy >= 1.0
(PIPELINE.md, Step 4 note). Results are saved as .npy files in OUT.

usage: dipy_reference.py SUBJECT_DIR OUT [--b0-threshold B] [--skip-denoise]
"""
import argparse
import os
import sys

import nibabel as nib
import numpy as np
from dipy.core.gradients import gradient_table
from dipy.denoise.nlmeans import nlmeans
from dipy.denoise.noise_estimate import estimate_sigma
from dipy.io import read_bvals_bvecs
from dipy.segment.mask import median_otsu
import dipy.reconst.dti as dti


def find_data(d):
    for name in ("data.nii.gz", "data.nii"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(d)


def run(subject, out, b0_threshold=10.0, skip_denoise=False, num_threads=None):
    img = nib.load(find_data(subject))
    data = np.asanyarray(img.dataobj)
    bvals, bvecs = read_bvals_bvecs(os.path.join(subject, "bvals"),
                                    os.path.join(subject, "bvecs"))
    gtab = gradient_table(bvals, bvecs, b0_threshold=b0_threshold)
    mean_b0 = np.mean(data[..., gtab.b0s_mask], -1)
    _, mask = median_otsu(mean_b0, median_radius=4, numpass=2, autocrop=False, dilate=1)
    sigma = estimate_sigma(data)
    if skip_denoise:
        den = data
    else:
        den = nlmeans(data, sigma=sigma, mask=mask, patch_radius=1, block_radius=5,
                      rician=True, num_threads=num_threads)
    fit = dti.TensorModel(gtab).fit(den, mask=mask)
    os.makedirs(out, exist_ok=True)
    res = dict(mask=mask.astype(np.uint8), sigma=np.asarray(sigma, dtype=np.float32),
               fa=fit.fa, md=fit.md, ad=fit.ad, rd=fit.rd, evals=fit.evals,
               evecs=fit.evecs, color_fa=dti.color_fa(fit.fa, fit.evecs),
               affine=img.affine, mean_b0=mean_b0)
    if not skip_denoise:
        res["denoised"] = den
    for k, v in res.items():
        np.save(os.path.join(out, k + ".npy"), v)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("subject")
    ap.add_argument("out")
    ap.add_argument("--b0-threshold", type=float, default=10.0)
    ap.add_argument("--skip-denoise", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    run(a.subject, a.out, a.b0_threshold, a.skip_denoise, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
