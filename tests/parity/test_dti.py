"""test_dti: gradient table and WLS tensor fit of the C kernels (gtab, dti)
against dipy 1.6.0 (PIPELINE.md Steps 2 and 7, tolerances table).

Cases: dipy's small_64D (int16 -> f64 path, and as float32), small_101D with
b0_threshold=50 (uint16 -> f64), and a synthetic HCP-like scheme (G = 288,
18 b0s at b = 5 with unit vectors, 3 jittered shells of 90 directions) with
random tensors and Rician noise in float32 and float64, a rank-deficient
in-plane scheme (minimum-norm solution), and the non-unit b-vector error
path. The float32 log signal is also compared bit for bit with numpy's.
Prints the max errors seen and (informative) the fit time per voxel of the C
kernel and of dipy.

Run: /usr/bin/python3 test_dti.py --build-dir <cmake build dir>
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

import nibabel as nib
import numpy as np
from dipy.core.gradients import gradient_table
from dipy.io.gradients import read_bvals_bvecs
from dipy.reconst import dti

DATA = "/usr/lib/python3/dist-packages/dipy/data/files"

FA_TOL = 1e-6          # abs, FA and colour FA
REL_TOL, ABS_TOL = 1e-6, 1e-9   # evals, MD, AD, RD: |d| <= rel*|ref| + abs
EVEC_TOL = 1e-6        # per separated column, up to sign
SEP = 1e-4             # separation (relative to lambda1) for comparing evecs

failures = []
worst = {}
BUILD_DIR = None


def note(name, value):
    worst[name] = max(worst.get(name, 0.0), float(value))


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def harness(build_dir):
    for cand in (os.path.join(build_dir, "tests", "harness_dti"),
                 os.path.join(build_dir, "harness_dti")):
        if os.path.exists(cand):
            return cand
    sys.exit("harness_dti not found under %s" % build_dir)


def run_c(exe, tmp, bvals_arg, bvecs_arg, thr, signal=None, text=False, repeat=1):
    out = tempfile.mkdtemp(dir=tmp)
    cmd = [exe, "--bvals", bvals_arg, "--bvecs", bvecs_arg, "--b0-threshold", repr(thr),
           "--out", out, "--repeat", str(repeat), "--write-log"]
    if text:
        cmd.append("--text")
    if signal is not None:
        path = os.path.join(out, "signal.raw")
        np.ascontiguousarray(signal).tofile(path)
        cmd += ["--signal", path, "--nvox", str(signal.shape[0]),
                "--dtype", "f32" if signal.dtype == np.float32 else "f64"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    res = {"rc": p.returncode, "stderr": p.stderr, "stdout": p.stdout}
    if p.returncode != 0:
        return res
    n = os.path.getsize(os.path.join(out, "b_eff.f64")) // 8
    rd = lambda name, dt=np.float64: np.fromfile(os.path.join(out, name), dtype=dt)
    res["b0s_mask"] = rd("b0s_mask.u8", np.uint8).astype(bool)
    res["b_eff"] = rd("b_eff.f64")
    res["g_eff"] = rd("g_eff.f64").reshape(n, 3)
    res["X"] = rd("X.f64").reshape(n, 7)
    res["min_eval"] = rd("min_eval.f64")[0]
    if signal is not None:
        v = signal.shape[0]
        res["evals"] = rd("evals.f64").reshape(v, 3)
        res["evecs"] = rd("evecs.f64").reshape(v, 3, 3)
        for k in ("fa", "md", "ad", "rd"):
            res[k] = rd(k + ".f64")
        res["color_fa"] = rd("color_fa.f64").reshape(v, 3)
        res["logsig"] = rd("logsig.f64").reshape(v, -1)
        res["us"] = float(p.stdout.strip().splitlines()[-1].split()[1])
    return res


def compare_gtab(name, c, bvals, bvecs, thr):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt = gradient_table(bvals, bvecs, b0_threshold=thr)
    X = dti.design_matrix(gt)
    check(np.array_equal(c["b0s_mask"], gt.b0s_mask), name + ": b0s_mask differs")
    check(np.array_equal(c["b_eff"], gt.bvals), name + ": effective bvals differ")
    check(np.array_equal(c["g_eff"], gt.bvecs), name + ": effective bvecs differ")
    check(np.array_equal(c["X"], X), name + ": design matrix differs (bitwise)")
    check(c["min_eval"] == 1e-6 / -X.min(), name + ": min_eval %r vs %r"
          % (c["min_eval"], 1e-6 / -X.min()))
    note("gtab/design max |d|", np.max(np.abs(c["X"] - X)))
    return gt


def numpy_has_simd_logf():
    """numpy uses its own float32 log kernel only with AVX2+FMA3 or AVX-512F;
    otherwise it calls libm's logf, which the C code does not reproduce."""
    try:
        from numpy.core._multiarray_umath import __cpu_features__ as f
    except ImportError:
        return False
    return bool(f.get("AVX512F") or (f.get("AVX2") and f.get("FMA3")))


def compare_log(name, c, signal):
    """The log signal dipy's fit starts from: np.log(np.maximum(data, 1e-4))."""
    ref = np.log(np.maximum(signal, 1e-4)).astype(np.float64)
    got = c["logsig"]
    if signal.dtype == np.float32:
        ndiff = int(np.sum(got != ref))
        note("log f32: values differing from numpy", ndiff)
        if numpy_has_simd_logf():
            check(ndiff == 0, "%s: float32 log differs from numpy's in %d of %d values"
                  % (name, ndiff, ref.size))
    else:
        # numpy's own AVX-512 double log vs glibc's: both within an ulp.
        d = np.max(np.abs(got - ref) / np.abs(ref).clip(1e-300))
        note("log f64: max rel vs numpy", d)
        check(d <= 1e-15, "%s: float64 log max rel diff %.3g" % (name, d))


def dipy_fit(gt, signal):
    t0 = time.perf_counter()
    fit = dti.TensorModel(gt).fit(signal)
    return fit, time.perf_counter() - t0


def compare_fit(name, c, gt, signal, ref=None, sel=None):
    """c: C results for the voxels `sel` of signal (all if None); ref: a
    (dipy fit, seconds) pair already computed for the whole signal."""
    if "logsig" in c:
        compare_log(name, c, signal.astype(np.float32 if signal.dtype == np.float32
                                          else np.float64))
    fit, t_dipy = ref if ref is not None else dipy_fit(gt, signal)
    if sel is not None:
        class Sub:
            pass
        sub = Sub()
        for k in ("evals", "evecs", "fa", "md", "ad", "rd", "color_fa"):
            setattr(sub, k, getattr(fit, k)[sel])
        fit = sub
        c = {k: (v[sel] if isinstance(v, np.ndarray) and v.shape[:1] == sel.shape else v)
             for k, v in c.items()}
    nv = signal.shape[0]

    def rel_check(key, ref, got):
        d = np.abs(got - ref)
        lim = REL_TOL * np.abs(ref) + ABS_TOL
        bad = ~(d <= lim)
        rel = np.max(d / np.maximum(np.abs(ref), 1e-300))
        note(key + " max rel", rel)
        note(key + " max abs", np.max(d))
        check(not bad.any(), "%s: %s exceeds tolerance in %d values (max |d| %.3g)"
              % (name, key, bad.sum(), np.max(d)))

    rel_check("evals", fit.evals, c["evals"])
    rel_check("md", fit.md, c["md"])
    rel_check("ad", fit.ad, c["ad"])
    rel_check("rd", fit.rd, c["rd"])
    for key, ref in (("fa", fit.fa), ("color_fa", fit.color_fa)):
        d = np.abs(c[key] - ref)
        note(key + " max abs", np.max(d))
        check(np.all(d <= FA_TOL), "%s: %s max |d| %.3g > %g" % (name, key, np.max(d), FA_TOL))

    ev = fit.evals
    lam1 = ev[:, :1]
    ncmp = 0
    flips = 0
    for j in range(3):
        others = [k for k in range(3) if k != j]
        gap = np.min(np.abs(ev[:, [j]] - ev[:, others]), axis=1)
        sel = gap > SEP * lam1[:, 0]
        ref = fit.evecs[sel, :, j]
        got = c["evecs"][sel, :, j]
        dpos = np.max(np.abs(got - ref), axis=1) if sel.any() else np.zeros(0)
        dneg = np.max(np.abs(got + ref), axis=1) if sel.any() else np.zeros(0)
        d = np.minimum(dpos, dneg)
        flips += int(np.sum(dneg < dpos))
        ncmp += int(sel.sum())
        if d.size:
            note("evecs max abs (separated, up to sign)", np.max(d))
            check(np.all(d <= EVEC_TOL), "%s: evecs column %d max |d| %.3g" % (name, j, np.max(d)))
    check(np.all(np.isfinite(c["evals"])), name + ": non-finite eigenvalues")
    print("  %-28s voxels %5d  evec columns compared %5d (sign flips %d)  "
          "C %.2f us/voxel, dipy %.2f us/voxel"
          % (name, nv, ncmp, flips, c["us"], 1e6 * t_dipy / nv))


def harness_block(build_dir):
    for cand in (os.path.join(build_dir, "tests", "harness_dti_block"),
                 os.path.join(build_dir, "harness_dti_block")):
        if os.path.exists(cand):
            return cand
    sys.exit("harness_dti_block not found under %s" % build_dir)


def run_block(exe, tmp, bvals, bvecs, signal, kind, layout="voxel", isa="auto", mask=None,
              repeat=1):
    """dmri_dti_fit_block on signal (nvox x G, already in the type `kind`
    reads: float32 for f32 / f32as64, float64 for f64)."""
    out = tempfile.mkdtemp(dir=tmp)
    fb, fg = os.path.join(out, "bvals.f64"), os.path.join(out, "bvecs.f64")
    np.asarray(bvals, np.float64).tofile(fb)
    np.ascontiguousarray(bvecs, np.float64).tofile(fg)
    path = os.path.join(out, "signal.raw")
    arr = signal if layout == "voxel" else signal.T
    np.ascontiguousarray(arr).tofile(path)
    nv = signal.shape[0]
    cmd = [exe, "--bvals", fb, "--bvecs", fg, "--signal", path, "--nvox", str(nv),
           "--dtype", kind, "--layout", layout, "--isa", isa, "--repeat", str(repeat),
           "--out", out]
    if mask is not None:
        mpath = os.path.join(out, "mask.u8")
        mask.astype(np.uint8).tofile(mpath)
        cmd += ["--mask", mpath]
    p = subprocess.run(cmd, capture_output=True, text=True)
    res = {"rc": p.returncode, "stderr": p.stderr, "stdout": p.stdout}
    if p.returncode != 0:
        return res
    rd = lambda name, dt=np.float64: np.fromfile(os.path.join(out, name), dtype=dt)
    res["evals"] = rd("evals.f64").reshape(nv, 3)
    res["evecs"] = rd("evecs.f64").reshape(nv, 3, 3)
    for k in ("fa", "md", "ad", "rd"):
        res[k] = rd(k + ".f64")
        res[k + "_f32"] = rd(k + ".f32", np.float32)
    res["color_fa"] = rd("color_fa.f64").reshape(nv, 3)
    res["color_fa_f32"] = rd("color_fa.f32", np.float32).reshape(3, nv).T
    res["evecs_f32"] = rd("evecs_map.f32", np.float32).reshape(3, 3, nv).transpose(2, 1, 0)
    res["us"] = float(p.stdout.strip().splitlines()[-1].split()[1])
    return res


def check_block_maps(name, c, mask):
    """The float32 maps the block writes are its double results rounded, and
    every output outside the mask is 0."""
    inside = np.ones(c["fa"].shape[0], bool) if mask is None else mask.astype(bool)
    for k in ("fa", "md", "ad", "rd", "color_fa"):
        got, want = c[k + "_f32"][inside], c[k][inside].astype(np.float32)
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        check(same.all(), "%s: float32 %s differs from its double result in %d voxels"
              % (name, k, (~same).sum()))
    same = c["evecs_f32"][inside] == c["evecs"][inside].astype(np.float32)
    check(same.all() | np.isnan(c["evecs"][inside]).any(),
          "%s: float32 evecs differ from the double result" % name)
    out = ~inside
    if out.any():
        for k in ("evals", "evecs", "fa", "md", "fa_f32", "rd_f32", "color_fa_f32", "evecs_f32"):
            check(np.all(c[k][out] == 0), "%s: %s not 0 outside the mask" % (name, k))


def block_variants(build_dir, tmp, name, gt, bvals, bvecs, sig, kind, rng, ref):
    """Every instruction set of dmri_dti_fit_block (both signal layouts on
    the vector path) against dipy, with a mask that drops ~10% of voxels."""
    exe = harness_block(build_dir)
    mask = rng.uniform(size=sig.shape[0]) > 0.1
    for isa, layout in (("scalar", "voxel"), ("avx512", "voxel"), ("avx512", "volume")):
        c = run_block(exe, tmp, bvals, bvecs, sig, kind, layout, isa, mask, repeat=3)
        if c["rc"] == 2 and "not on this CPU" in c["stderr"]:
            print("  skip %s: %s not on this CPU" % (name, isa))
            continue
        check(c["rc"] == 0, "%s block %s: harness failed: %s" % (name, isa, c["stderr"]))
        if c["rc"] != 0:
            continue
        check_block_maps("%s block %s %s" % (name, isa, layout), c, mask)
        compare_fit("%s block %s %s" % (name, isa, layout), c, gt, sig, ref, mask)


def sample_case(exe, tmp, stem, thr, dtype=None):
    fbval = os.path.join(DATA, stem + ".bval")
    fbvec = os.path.join(DATA, stem + ".bvec")
    img = os.path.join(DATA, stem + (".nii" if os.path.exists(os.path.join(DATA, stem + ".nii"))
                                     else ".nii.gz"))
    bvals, bvecs = read_bvals_bvecs(fbval, fbvec)
    data = np.asanyarray(nib.load(img).dataobj)
    if dtype is not None:
        data = data.astype(dtype)
    sig = data.reshape(-1, data.shape[-1])
    # The C side gets what the dipy path computes in: f64 for integer data.
    csig = sig.astype(np.float32 if sig.dtype == np.float32 else np.float64)
    name = stem + ("_" + np.dtype(dtype).name if dtype is not None else "") + \
        ("_thr%g" % thr if thr != 10 else "")
    c = run_c(exe, tmp, fbval, fbvec, thr, csig, text=True, repeat=3)
    check(c["rc"] == 0, "%s: harness failed: %s" % (name, c["stderr"]))
    if c["rc"] != 0:
        return
    gt = compare_gtab(name, c, bvals, bvecs, thr)
    ref = dipy_fit(gt, sig)
    compare_fit(name, c, gt, sig, ref)
    rng = np.random.default_rng(len(name))
    if sig.dtype == np.float32:
        block_variants(BUILD_DIR, tmp, name, gt, bvals, bvecs, sig, "f32", rng, ref)
    else:
        # Integer data as the pipeline holds it (float32, logged in float64),
        # and as float64.
        block_variants(BUILD_DIR, tmp, name + " f32as64", gt, bvals, bvecs,
                       sig.astype(np.float32), "f32as64", rng, ref)
        block_variants(BUILD_DIR, tmp, name + " f64", gt, bvals, bvecs, csig, "f64", rng, ref)


def hcp_like(rng):
    """G = 288: 18 b0 at b = 5 with unit vectors, 3 x 90 jittered directions."""
    G = 288
    bvals = np.empty(G)
    bvecs = np.empty((G, 3))
    b0_pos = np.linspace(0, G - 1, 18).astype(int)
    dwi_pos = np.setdiff1d(np.arange(G), b0_pos)
    bvals[b0_pos] = 5.0
    v = rng.normal(size=(18, 3))
    bvecs[b0_pos] = v / np.linalg.norm(v, axis=1, keepdims=True)
    shells = np.repeat([1000.0, 2000.0, 3000.0], 90) + rng.uniform(-10, 10, 270)
    v = rng.normal(size=(270, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    # Norms within the 0.01 tolerance, not renormalised by anyone.
    v *= rng.uniform(0.995, 1.005, size=(270, 1))
    order = rng.permutation(270)
    bvals[dwi_pos] = shells[order]
    bvecs[dwi_pos] = v[order]
    return bvals, bvecs


def random_tensors(rng, nv, bvals, bvecs):
    lam = np.sort(rng.uniform(0.05e-3, 3.0e-3, size=(nv, 3)), axis=1)[:, ::-1]
    # Some isotropic and some cylindrical tensors (degenerate eigenvalues).
    lam[: nv // 20] = lam[: nv // 20, :1]
    lam[nv // 20: nv // 10, 2] = lam[nv // 20: nv // 10, 1]
    q = rng.normal(size=(nv, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    R = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)],
        1)
    D = np.einsum("vij,vj,vkj->vik", R, lam, R)
    S0 = rng.uniform(200.0, 3000.0, size=nv)
    qf = np.einsum("gi,vij,gj->vg", bvecs, D, bvecs)
    S = S0[:, None] * np.exp(-bvals[None, :] * qf)
    sigma = rng.uniform(5.0, 60.0, size=(nv, 1))
    S = np.sqrt((S + sigma * rng.normal(size=S.shape)) ** 2 +
                (sigma * rng.normal(size=S.shape)) ** 2)
    # Rician-clipped zeros as NL-means produces, and two all-zero voxels.
    S[rng.uniform(size=S.shape) < 0.002] = 0.0
    S[-2:] = 0.0
    return S


def synthetic_case(exe, tmp, rng):
    bvals, bvecs = hcp_like(rng)
    fb = os.path.join(tmp, "hcp_bvals.f64")
    fg = os.path.join(tmp, "hcp_bvecs.f64")
    bvals.tofile(fb)
    np.ascontiguousarray(bvecs).tofile(fg)
    S = random_tensors(rng, 4000, bvals, bvecs)
    for dt in (np.float64, np.float32):
        sig = S.astype(dt)
        name = "hcp_like_" + np.dtype(dt).name
        c = run_c(exe, tmp, fb, fg, 10.0, sig, repeat=3)
        check(c["rc"] == 0, "%s: harness failed: %s" % (name, c["stderr"]))
        if c["rc"] != 0:
            continue
        gt = compare_gtab(name, c, bvals, bvecs, 10.0)
        check(int(gt.b0s_mask.sum()) == 18, name + ": expected 18 b0s")
        check(np.all(gt.bvals[gt.b0s_mask] == 5.0), name + ": b0s should keep b = 5")
        ref = dipy_fit(gt, sig)
        compare_fit(name, c, gt, sig, ref)
        block_variants(BUILD_DIR, tmp, name, gt, bvals, bvecs, sig,
                       "f32" if dt == np.float32 else "f64", rng, ref)


def planar_case(exe, tmp, rng):
    """All directions in the xy-plane: the Dxz, Dyz, Dzz columns are zero, the
    weighted normal equations singular, and dipy's pinv gives the
    minimum-norm solution (the C fallback path)."""
    phi = np.sort(rng.uniform(0, np.pi, 30))
    bvals = np.concatenate([[0.0, 0.0], np.full(30, 1000.0)])
    bvecs = np.concatenate([np.zeros((2, 3)),
                            np.stack([np.cos(phi), np.sin(phi), np.zeros(30)], 1)])
    fb = os.path.join(tmp, "planar_bvals.f64")
    fg = os.path.join(tmp, "planar_bvecs.f64")
    bvals.tofile(fb)
    bvecs.tofile(fg)
    S = random_tensors(rng, 300, bvals, bvecs)
    c = run_c(exe, tmp, fb, fg, 10.0, S, repeat=1)
    check(c["rc"] == 0, "planar: harness failed: %s" % c["stderr"])
    if c["rc"] == 0:
        gt = compare_gtab("planar", c, bvals, bvecs, 10.0)
        ref = dipy_fit(gt, S)
        compare_fit("planar_rank_deficient", c, gt, S, ref)
        block_variants(BUILD_DIR, tmp, "planar_rank_deficient", gt, bvals, bvecs, S, "f64",
                       rng, ref)


def error_case(exe, tmp):
    bvals = np.array([0.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0])
    bvecs = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1],
                      [0.7071, 0.7071, 0], [0, 0.75, 0.5], [0.7071, 0, 0.7071]])
    fb = os.path.join(tmp, "err_bvals.f64")
    fg = os.path.join(tmp, "err_bvecs.f64")
    bvals.tofile(fb)
    bvecs.tofile(fg)
    dipy_raised = False
    try:
        gradient_table(bvals, bvecs)
    except ValueError:
        dipy_raised = True
    c = run_c(exe, tmp, fb, fg, 10.0)
    check(dipy_raised, "error case: dipy accepted a non-unit b-vector")
    check(c["rc"] == 3 and "volume 5" in c["stderr"] and "unit" in c["stderr"],
          "error case: expected exit 3 naming volume 5, got %d: %s" % (c["rc"], c["stderr"]))
    print("  non-unit b-vector: %s" % c["stderr"].strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    exe = harness(args.build_dir)
    global BUILD_DIR
    BUILD_DIR = args.build_dir
    rng = np.random.default_rng(20240607)
    with tempfile.TemporaryDirectory() as tmp:
        sample_case(exe, tmp, "small_64D", 10.0)
        sample_case(exe, tmp, "small_64D", 10.0, np.float32)
        sample_case(exe, tmp, "small_101D", 50.0)
        synthetic_case(exe, tmp, rng)
        planar_case(exe, tmp, rng)
        error_case(exe, tmp)
    print("max errors observed:")
    for k in sorted(worst):
        print("  %-40s %.3g" % (k, worst[k]))
    if failures:
        print("test_dti: %d failure(s)" % len(failures))
        return 1
    print("test_dti: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
