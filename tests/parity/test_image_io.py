#!/usr/bin/python3
"""Parity of common/image (NIfTI I/O) and common/fsl_gradients (bvals/bvecs)
with nibabel 5.0 and dipy 1.6.0, driven through build/tests/harness_image.

Reading: for dipy's and nibabel's sample NIfTI files and for files generated
here (every datatype, scaled int16/float32/uint8, NaN/0/(1,0) slopes,
big-endian, NIfTI-2, .nii and .nii.gz, gzip split into members), through
the default gzip inflater (ISA-L when built in) and the zlib fallback
(DMRI_INFLATE=zlib), the values must be bit-identical to
np.asanyarray(nib.load(f).dataobj), with the same dtype semantics (datatype,
scaled, f32/f64 storage), shape and geometry fields.
Writing: files written by dmri_image_write must load in nibabel with the
same affine, sform and qform (and codes) as their geometry source and
bit-identical data of the requested dtype, for 3-D, 4-D and 5-D shapes.
Gradients: dmri_read_bvals/bvecs against dipy.io.read_bvals_bvecs on several
layouts (3xN, Nx3, 3x3, commas/tabs/comments/CRLF, nan) and error cases.
"""
import argparse
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import nibabel as nib

warnings.simplefilter("ignore")
from dipy.io.gradients import read_bvals_bvecs  # noqa: E402
from dipy.core.gradients import gradient_table  # noqa: E402

DIPY = "/usr/lib/python3/dist-packages/dipy/data/files"
NIBD = "/usr/lib/python3/dist-packages/nibabel/tests/data"

DT = {2: np.uint8, 256: np.int8, 4: np.int16, 512: np.uint16, 8: np.int32,
      768: np.uint32, 16: np.float32, 64: np.float64}
CODE = {np.dtype(v): k for k, v in DT.items()}

failures = []
stats = {"checks": 0, "read_files": 0, "write_files": 0, "grad_cases": 0, "max_abs_err": 0.0,
         "max_affine_err": 0.0,
         "nifti2_affine_err": 0.0}


def check(cond, what):
    stats["checks"] += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)
    return cond


# Which inflater image.c uses for gzip data: "" = its default (ISA-L when
# built with it), "zlib" = the zlib fallback. Reading is tested under both.
INFLATE = ""


def harness(*args):
    env = dict(os.environ)
    env.pop("DMRI_INFLATE", None)
    if INFLATE:
        env["DMRI_INFLATE"] = INFLATE
    p = subprocess.run([HARNESS, *map(str, args)], capture_output=True, text=True, timeout=120,
                       env=env)
    if p.returncode not in (0, 1) or not p.stdout.strip():
        raise RuntimeError(f"harness {args} failed ({p.returncode}): {p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view({4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


# ---------------------------------------------------------------- reading

def check_read(path, tmp, label=None):
    label = label or os.path.basename(path)
    img = nib.load(path)
    ref = np.asanyarray(img.dataobj)
    raw = os.path.join(tmp, "out.raw")
    r = harness("read", path, raw)
    if not check(r["ok"], f"{label}: read failed: {r.get('error')}"):
        return
    stats["read_files"] += 1
    hdr = img.header
    disk = hdr.get_data_dtype()
    scaled = not (img.dataobj.slope == 1.0 and img.dataobj.inter == 0.0)
    check(r["datatype"] == int(hdr["datatype"]), f"{label}: datatype {r['datatype']}")
    check(r["scaled"] == int(scaled), f"{label}: scaled {r['scaled']} vs nibabel {scaled}")
    # Storage rule of image.h: f32 for float32 and 8/16-bit ints, unscaled.
    want_store = "f32" if ref.dtype.newbyteorder("=") in (
        np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16),
        np.dtype(np.uint16)) else "f64"
    check(r["store"] == want_store, f"{label}: store {r['store']} for numpy {ref.dtype}")
    check(r["f32_semantics"] == int(ref.dtype.kind == "f" and ref.dtype.itemsize == 4),
          f"{label}: f32_semantics")
    check(r["integer"] == int(ref.dtype.kind in "iu"), f"{label}: integer flag")
    shape = ref.shape
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    check(r["ndim"] == len(shape), f"{label}: ndim {r['ndim']} vs {ref.shape}")
    full = tuple(shape) + (1,) * (4 - len(shape))
    check(tuple(r["shape"]) == full, f"{label}: shape {r['shape']} vs {ref.shape}")
    ours = np.fromfile(raw, dtype=np.float32 if r["store"] == "f32" else np.float64)
    ours = ours.reshape(full, order="F")
    want = ref.astype(ours.dtype).reshape(full)
    same = np.array_equal(bits(np.asfortranarray(ours).ravel(order="F")),
                          bits(want.ravel(order="F")))
    finite = np.isfinite(want) & np.isfinite(ours)
    err = float(np.max(np.abs(ours[finite] - want[finite]))) if finite.any() else 0.0
    stats["max_abs_err"] = max(stats["max_abs_err"], err)
    check(same, f"{label}: data not bit-identical (max abs err {err})")
    # Geometry fields as stored in the header (what the writer copies).
    check(r["qform_code"] == int(hdr["qform_code"]), f"{label}: qform_code")
    check(r["sform_code"] == int(hdr["sform_code"]), f"{label}: sform_code")
    check(np.array_equal(np.array(r["pixdim"]), hdr["pixdim"][1:5].astype(np.float64)),
          f"{label}: pixdim {r['pixdim']} vs {hdr['pixdim'][1:5]}")
    if int(hdr["sform_code"]) > 0:
        srow = np.array([hdr["srow_x"], hdr["srow_y"], hdr["srow_z"]], dtype=np.float64)
        check(np.array_equal(np.array(r["srow"]).reshape(3, 4), srow), f"{label}: srow")
    if int(hdr["qform_code"]) > 0:
        q = np.array([hdr[k] for k in ("quatern_b", "quatern_c", "quatern_d",
                                       "qoffset_x", "qoffset_y", "qoffset_z")], np.float64)
        check(np.array_equal(np.array(r["quatern"]), q), f"{label}: quatern")
        qfac = -1.0 if hdr["pixdim"][0] < 0 else 1.0
        check(r["qfac"] == qfac, f"{label}: qfac")


def expect_read_error(path, tmp, label, needle):
    r = harness("read", path, os.path.join(tmp, "out.raw"))
    ok = check(not r["ok"], f"{label}: read should fail")
    if ok:
        check(needle in r["error"] and path in r["error"],
              f"{label}: error '{r['error']}' should name the file and say '{needle}'")


def patch_header(path, fields):
    """Overwrite header fields of an uncompressed or gzipped NIfTI-1/2 file."""
    raw = open(path, "rb").read()
    gz = raw[:2] == b"\x1f\x8b"
    if gz:
        raw = gzip.decompress(raw)
    klass = nib.Nifti2Header if struct.unpack("<i", raw[:4])[0] in (540, 469893120) \
        else nib.Nifti1Header
    hdr = klass.from_fileobj(io.BytesIO(raw), check=False)
    block = bytearray(hdr.binaryblock)
    arr = np.ndarray(shape=(), dtype=hdr.structarr.dtype, buffer=block)
    for k, v in fields.items():
        arr[k] = v
    raw = bytes(block) + raw[len(block):]
    if gz:
        raw = gzip.compress(raw, 6)
    open(path, "wb").write(raw)


def make_big_endian(src, dst):
    """Byte-swap an uncompressed little-endian NIfTI file (header and data)."""
    raw = open(src, "rb").read()
    klass = nib.Nifti2Header if struct.unpack("<i", raw[:4])[0] == 540 else nib.Nifti1Header
    hdr = klass.from_fileobj(io.BytesIO(raw))
    off = int(hdr["vox_offset"])
    be = hdr.as_byteswapped(">")
    data = np.frombuffer(raw[off:], dtype=hdr.get_data_dtype()).byteswap()
    hsize = len(hdr.binaryblock)
    out = be.binaryblock + raw[hsize:off] + data.tobytes()
    open(dst, "wb").write(out)
    assert nib.load(dst).header.endianness == ">"


def generated_files(tmp):
    """(path, label) of NIfTI files made with nibabel to cover the cases."""
    rng = np.random.default_rng(7)
    aff = np.array([[-1.5, 0.1, 0.0, 90.25], [0.05, 1.75, -0.2, -126.5],
                    [0.0, 0.3, 2.25, -72.0], [0, 0, 0, 1]])
    out = []

    def save(data, name, cls=nib.Nifti1Image, **scl):
        img = cls(data, aff)
        img.header.set_data_dtype(data.dtype)
        img.header.set_xyzt_units("mm", "sec")
        p = os.path.join(tmp, name)
        nib.save(img, p)
        if scl:
            patch_header(p, scl)
        out.append((p, name))
        return p

    shape = (5, 4, 3, 6)
    for dt in DT.values():
        info = np.iinfo(dt) if np.dtype(dt).kind in "iu" else None
        if info is not None:
            d = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
            d.flat[0], d.flat[1] = info.min, info.max
        else:
            d = (rng.standard_normal(shape) * 1000).astype(dt)
            d.flat[:5] = [np.nan, np.inf, -np.inf, -0.0, np.finfo(dt).tiny / 2]
        name = np.dtype(dt).name
        save(d, f"all_{name}.nii")
        save(d, f"all_{name}.nii.gz")
        save(d[..., 0], f"all_{name}_3d.nii.gz")
    i16 = rng.integers(-2000, 30000, size=shape).astype(np.int16)
    i16.flat[0] = 0
    f32 = (rng.standard_normal(shape) * 100).astype(np.float32)
    f32.flat[0] = -0.0
    u8 = rng.integers(0, 255, size=shape).astype(np.uint8)
    save(i16, "scaled_int16.nii.gz", scl_slope=2.5, scl_inter=-3.25)
    save(i16, "scaled_int16_slope_only.nii", scl_slope=0.0754069685, scl_inter=0.0)
    save(i16, "scaled_int16_inter_only.nii", scl_slope=1.0, scl_inter=3100.76)
    save(f32, "scaled_f32.nii.gz", scl_slope=0.5, scl_inter=0.0)
    save(f32, "scaled_f32_inter.nii", scl_slope=1.0, scl_inter=-7.5)
    save(u8, "scaled_u8_nan_slope.nii", scl_slope=np.nan, scl_inter=4.0)
    save(u8, "scaled_u8_zero_slope.nii.gz", scl_slope=0.0, scl_inter=4.0)
    save(f32, "scaled_f32_unit.nii", scl_slope=1.0, scl_inter=0.0)
    save(f32, "scaled_f32_inf_slope.nii", scl_slope=np.inf, scl_inter=1.0)
    # NIfTI-2, both compressions, one of them scaled.
    save(i16, "nifti2_int16.nii", cls=nib.Nifti2Image)
    save(f32, "nifti2_f32.nii.gz", cls=nib.Nifti2Image)
    save(i16, "nifti2_scaled.nii.gz", cls=nib.Nifti2Image, scl_slope=1.0 / 3.0,
         scl_inter=0.1)
    # Big-endian copies of a few of the above.
    for src in ("all_int16.nii", "all_float32.nii", "all_float64.nii", "all_uint16.nii",
                "scaled_int16_slope_only.nii", "nifti2_int16.nii"):
        dst = os.path.join(tmp, "be_" + src)
        make_big_endian(os.path.join(tmp, src), dst)
        out.append((dst, "be_" + src))
    # Geometry variants: qform only, neither code (affine from pixdim only).
    p = save(f32, "qform_only.nii.gz")
    im = nib.load(p)
    im2 = nib.Nifti1Image(np.asanyarray(im.dataobj), None, header=im.header)
    im2.header.set_qform(aff, code=1)
    im2.header.set_sform(None, code=0)
    nib.save(im2, p)
    p = save(i16, "no_codes.nii")
    patch_header(p, {"qform_code": 0, "sform_code": 0})
    # 5-D with trailing singleton axes: read as 4-D.
    save(i16[..., None], "five_d_trailing1.nii.gz")
    # More values than one conversion chunk of the reader (65536), scaled,
    # big-endian, and split into gzip members (Python's gzip reads all members).
    big = rng.integers(-2000, 30000, size=(61, 53, 23, 2)).astype(np.int16)
    save(big, "big_scaled_int16.nii.gz", scl_slope=0.25, scl_inter=-1.5)
    bigf = (rng.standard_normal((61, 53, 23, 2)) * 100).astype(np.float32)
    src = save(bigf, "big_float32.nii")
    dst = os.path.join(tmp, "be_big_float32.nii")
    make_big_endian(src, dst)
    with open(dst, "rb") as f:
        raw = f.read()
    with open(dst + ".gz", "wb") as f:
        f.write(gzip.compress(raw, 6))
    out.append((dst + ".gz", "be_big_float32.nii.gz"))
    src = save(big, "members_src.nii")
    with open(src, "rb") as f:
        raw = f.read()
    p = os.path.join(tmp, "members.nii.gz")
    with open(p, "wb") as f:
        for a, b, lvl in ((0, 100, 6), (100, 5353, 1), (5353, 12697, 0), (12697, len(raw), 9)):
            f.write(gzip.compress(raw[a:b], lvl))
    out.append((p, "members.nii.gz"))
    return out


def test_reading(tmp):
    files = [os.path.join(DIPY, f) for f in (
        "small_64D.nii", "small_101D.nii.gz", "small_25.nii.gz", "S0_10slices.nii.gz",
        "aniso_vox.nii.gz", "ascm_out_test.nii.gz", "func_coef.nii.gz", "test_piesno.nii.gz")]
    files += [os.path.join(NIBD, f) for f in (
        "example4d.nii.gz", "example_nifti2.nii.gz", "anatomical.nii", "functional.nii",
        "reoriented_anat_moved.nii", "resampled_anat_moved.nii", "standard.nii.gz")]
    for f in files:
        check_read(f, tmp)
    gen = os.path.join(tmp, "gen")
    os.mkdir(gen)
    for p, label in generated_files(gen):
        check_read(p, tmp, label)

    # Cases nibabel refuses or that we do not support must fail clearly.
    bad = os.path.join(tmp, "bad")
    os.mkdir(bad)
    rng = np.random.default_rng(1)
    d = rng.integers(0, 100, size=(4, 4, 4, 3)).astype(np.int16)
    p = os.path.join(bad, "nan_inter.nii")
    nib.save(nib.Nifti1Image(d, np.eye(4)), p)
    patch_header(p, {"scl_slope": 2.0, "scl_inter": np.nan})
    try:
        np.asanyarray(nib.load(p).dataobj)
        check(False, "nibabel was expected to refuse a NaN scl_inter")
    except Exception:
        pass
    expect_read_error(p, tmp, "nan_inter", "scl_inter")
    p = os.path.join(bad, "complex.nii.gz")
    nib.save(nib.Nifti1Image(d.astype(np.complex64), np.eye(4)), p)
    expect_read_error(p, tmp, "complex", "unsupported datatype")
    p = os.path.join(bad, "int64.nii")
    nib.save(nib.Nifti1Image(d.astype(np.int64), np.eye(4), dtype=np.int64), p)
    expect_read_error(p, tmp, "int64", "unsupported datatype")
    good = os.path.join(bad, "good.nii.gz")
    nib.save(nib.Nifti1Image(rng.standard_normal((20, 20, 20, 4)).astype(np.float32),
                             np.eye(4)), good)
    blob = open(good, "rb").read()
    p = os.path.join(bad, "half.nii.gz")
    open(p, "wb").write(blob[:len(blob) // 2])
    expect_read_error(p, tmp, "half gzip", "truncated or corrupt gzip")
    p = os.path.join(bad, "no_trailer.nii.gz")
    open(p, "wb").write(blob[:-6])
    expect_read_error(p, tmp, "gzip without trailer", "truncated or corrupt gzip")
    p = os.path.join(bad, "flipped.nii.gz")
    flipped = bytearray(blob)
    flipped[len(blob) * 3 // 4] ^= 0x55
    open(p, "wb").write(bytes(flipped))
    expect_read_error(p, tmp, "corrupt gzip", "gzip")
    # Stored blocks: a flipped byte decodes fine, only the CRC-32 catches it.
    raw = gzip.decompress(blob)
    stored = bytearray(gzip.compress(raw, 0))
    stored[len(stored) // 2] ^= 0x04
    p = os.path.join(bad, "stored_flipped.nii.gz")
    open(p, "wb").write(bytes(stored))
    check(np.asanyarray(nib.load(p).dataobj).shape == (20, 20, 20, 4),
          "nibabel reads the damaged stored-block file without noticing")
    expect_read_error(p, tmp, "stored flipped", "CRC-32")
    # Members: the stream ends cleanly after the first, short of data.
    p = os.path.join(bad, "first_member.nii.gz")
    open(p, "wb").write(gzip.compress(raw[:5000]))
    expect_read_error(p, tmp, "first member only", "truncated or corrupt gzip stream (read ")
    p = os.path.join(bad, "garbage.nii")
    open(p, "wb").write(rng.integers(0, 256, 4000).astype(np.uint8).tobytes())
    expect_read_error(p, tmp, "garbage", "not a NIfTI file")
    expect_read_error(os.path.join(bad, "missing.nii.gz"), tmp, "missing", "no such file")
    expect_read_error(os.path.join(NIBD, "row_major.dconn.nii"), tmp, "cifti 6-D",
                      "only 3-D or 4-D")


# ---------------------------------------------------------------- writing

def affines(img):
    h = img.header
    s, sc = h.get_sform(coded=True)
    q, qc = h.get_qform(coded=True)
    return img.affine, s, int(sc), q, int(qc)


def same_affines(a, b):
    out = True
    for x, y in zip(a, b):
        if isinstance(x, int) or x is None or y is None:
            out &= (x is None and y is None) or (x == y)
        else:
            out &= np.array_equal(x, y)
            stats["max_affine_err"] = max(stats["max_affine_err"],
                                          float(np.max(np.abs(x - y))))
    return out


def test_writing(tmp):
    wdir = os.path.join(tmp, "write")
    os.mkdir(wdir)
    rng = np.random.default_rng(3)
    sources = [os.path.join(DIPY, "small_64D.nii"), os.path.join(DIPY, "S0_10slices.nii.gz"),
               os.path.join(DIPY, "small_25.nii.gz"),
               os.path.join(NIBD, "example4d.nii.gz"), os.path.join(NIBD, "anatomical.nii"),
               os.path.join(NIBD, "functional.nii"),
               os.path.join(NIBD, "example_nifti2.nii.gz"),
               os.path.join(tmp, "gen", "be_all_float32.nii"),
               os.path.join(tmp, "gen", "nifti2_f32.nii.gz"),
               os.path.join(tmp, "gen", "qform_only.nii.gz"),
               os.path.join(tmp, "gen", "no_codes.nii")]
    # copy: same values, another dtype, the source's geometry.
    for src in sources:
        simg = nib.load(src)
        sdata = np.asanyarray(simg.dataobj)
        is_int = sdata.dtype.kind in "iu"
        targets = [np.float32, np.float64] + ([np.int32, sdata.dtype.type] if is_int else [])
        for t in targets:
            for ext in (".nii.gz", ".nii"):
                name = f"copy_{os.path.basename(src).split('.')[0]}_{np.dtype(t).name}{ext}"
                out = os.path.join(wdir, name)
                r = harness("copy", src, out, CODE[np.dtype(t).newbyteorder("=")])
                if not check(r["ok"], f"{name}: copy failed: {r.get('error')}"):
                    continue
                stats["write_files"] += 1
                oimg = nib.load(out)
                odata = np.asanyarray(oimg.dataobj)
                check(odata.dtype == np.dtype(t), f"{name}: dtype {odata.dtype}")
                want = sdata.astype(np.dtype(t).newbyteorder("="))
                check(odata.shape == want.shape, f"{name}: shape {odata.shape}")
                check(np.array_equal(odata, want, equal_nan=True), f"{name}: data differ")
                a_src, a_out = affines(simg), affines(oimg)
                if isinstance(simg, nib.Nifti2Image):
                    # NIfTI-1 stores geometry as float32: exact only when the
                    # NIfTI-2 doubles are float32 values.
                    f32 = all(x is None or isinstance(x, int) or
                              np.array_equal(x, x.astype(np.float32)) for x in a_src)
                    if not f32:
                        ok = all(x is None or isinstance(x, int) or
                                 np.allclose(x, y, rtol=1e-6, atol=1e-5)
                                 for x, y in zip(a_src, a_out))
                        stats["nifti2_affine_err"] = max(
                            stats["nifti2_affine_err"], max(
                                float(np.max(np.abs(x - y))) for x, y in zip(a_src, a_out)
                                if not (x is None or isinstance(x, int))))
                        check(ok, f"{name}: affine beyond float32 rounding")
                        continue
                check(same_affines(a_src, a_out),
                      f"{name}: affines differ\n{a_src}\n{a_out}")
                check(np.array_equal(oimg.header.get_zooms()[:3], simg.header.get_zooms()[:3]),
                      f"{name}: zooms")
                check(oimg.header.get_xyzt_units() == simg.header.get_xyzt_units(),
                      f"{name}: units {oimg.header.get_xyzt_units()}")

    # write: arbitrary raw data of each dtype, 3-D/4-D/5-D, with a geometry.
    geom = os.path.join(NIBD, "example4d.nii.gz")
    gimg = nib.load(geom)
    for code, t in DT.items():
        for shape in ((7, 5, 3), (7, 5, 3, 4), (7, 5, 3, 3, 3)):
            if np.dtype(t).kind in "iu":
                info = np.iinfo(t)
                d = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(t)
            else:
                d = (rng.standard_normal(shape) * 50).astype(t)
                d.flat[:3] = [np.nan, -0.0, np.inf]
            rawp = os.path.join(wdir, "in.raw")
            d.ravel(order="F").tofile(rawp)
            for ext in (".nii.gz", ".nii"):
                out = os.path.join(wdir, f"w_{np.dtype(t).name}_{len(shape)}d{ext}")
                r = harness("write", geom, out, code, rawp, *shape)
                if not check(r["ok"], f"{out}: write failed: {r.get('error')}"):
                    continue
                stats["write_files"] += 1
                oimg = nib.load(out)
                odata = np.asanyarray(oimg.dataobj)
                check(odata.dtype == np.dtype(t) and odata.shape == shape,
                      f"{out}: {odata.dtype} {odata.shape}")
                check(np.array_equal(bits(odata.astype(np.float64)), bits(d.astype(np.float64)))
                      if odata.shape == shape else False, f"{out}: data differ")
                check(same_affines(affines(gimg), affines(oimg)), f"{out}: affines differ")
                left = [f for f in os.listdir(wdir) if f.startswith(".tmp-")]
                check(not left, f"temporary files left: {left}")


# -------------------------------------------------------------- gradients

def dipy_read(kind, path):
    """What dipy gives for one file alone (None on error)."""
    try:
        if kind == "bvals":
            v, _ = read_bvals_bvecs(path, None)
            v = np.atleast_1d(v)
            if v.ndim != 1:
                return None
            return v
        _, v = read_bvals_bvecs(None, path)
        return v
    except Exception:
        return None


def gtab_usable(bvecs):
    """True if dipy's gradient_table accepts these b-vectors."""
    try:
        n = bvecs.shape[0] if bvecs.ndim == 2 else 1
        # b = 0 everywhere: only the shape matters, not unit norms or NaNs.
        gradient_table(np.zeros(n), bvecs)
        return True
    except Exception:
        return False


def test_gradients(tmp):
    gdir = os.path.join(tmp, "grad")
    os.mkdir(gdir)
    # small_64D.bvec is stored as 65 x 3 (first row NaN); bvec64 is its 3 x 65 FSL form.
    bvec64 = np.loadtxt(os.path.join(DIPY, "small_64D.bvec")).T
    bval64 = np.loadtxt(os.path.join(DIPY, "small_64D.bval"))
    u = bvec64[:, 1:4]

    def fmt(rows, sep=" "):
        return "\n".join(sep.join(repr(float(x)) for x in r) for r in rows) + "\n"

    cases = {
        # name: (kind, text)
        "sample_64D.bvec": ("bvecs", open(os.path.join(DIPY, "small_64D.bvec")).read()),
        "fsl_3xN.bvec": ("bvecs", fmt(bvec64)),
        "fsl_101.bvec": ("bvecs", open(os.path.join(DIPY, "small_101D.bvec")).read()),
        "fsl_25.bvec": ("bvecs", open(os.path.join(DIPY, "small_25.bvec")).read()),
        "Nx3.bvec": ("bvecs", fmt(bvec64.T)),
        "3x3.bvec": ("bvecs", fmt(u)),
        "3x4.bvec": ("bvecs", fmt(bvec64[:, :4])),
        "4x3.bvec": ("bvecs", fmt(bvec64[:, :4].T)),
        "commas_tabs.bvec": ("bvecs", "# comment line\n\n" + "\n".join(
            ",\t".join(repr(float(x)) for x in r) + "  # trailing" for r in bvec64[:, :6])
            + "\r\n"),
        "crlf.bvec": ("bvecs", fmt(bvec64[:, :5]).replace("\n", "\r\n")),
        "oddnums.bvec": ("bvecs", "nan NaN +0.5 .5 -0 1e-3\n-nan inf -inf 1.E2 5. 0\n"
                                  "1 2 3 4 5 6\n"),
        "cr_only.bvec": ("bvecs", fmt(bvec64[:, :4]).replace("\n", "\r")),
        "words_inf.bvec": ("bvecs", "Infinity -infinity 1\n0 0 1\n1 0 0\n"),
        "fsl.bval": ("bvals", open(os.path.join(DIPY, "small_64D.bval")).read()),
        "fsl101.bval": ("bvals", open(os.path.join(DIPY, "small_101D.bval")).read()),
        "column.bval": ("bvals", fmt(bval64[:, None])),
        "commas.bval": ("bvals", ", ".join(str(int(x)) for x in bval64) + ",\n"),
        "tabs_comments.bval": ("bvals", "# b-values\n0\t1000\t# ok\n".replace("\n0", "\n0")),
        "nan.bval": ("bvals", "0 nan 1000 2000\n"),
        # errors
        "4xN.bvec": ("bvecs", fmt(np.vstack([bvec64, bvec64[:1]]))),
        "2x5.bvec": ("bvecs", fmt(bvec64[:2, :5])),
        "2x3.bvec": ("bvecs", fmt(u[:, :2].T)),
        "3x2.bvec": ("bvecs", fmt(u[:, :2])),
        "single.bvec": ("bvecs", "0.1 0.2 0.97\n"),
        "single_col.bvec": ("bvecs", "0.1\n0.2\n0.97\n"),
        "ragged.bvec": ("bvecs", "1 2 3\n4 5\n6 7 8\n"),
        "word.bvec": ("bvecs", "1 2 3\n4 x 6\n7 8 9\n"),
        "hex.bvec": ("bvecs", "1 2 3\n4 0x5 6\n7 8 9\n"),
        "empty.bvec": ("bvecs", "# nothing\n\n"),
        "matrix.bval": ("bvals", "0 1000\n2000 3000\n"),
        "empty.bval": ("bvals", ""),
        "ragged.bval": ("bvals", "0 1000\n2000\n"),
    }
    for name, (kind, text) in cases.items():
        p = os.path.join(gdir, name)
        with open(p, "w", newline="") as f:
            f.write(text)
        ref = dipy_read(kind, p)
        usable = ref is not None and ref.size > 0
        if kind == "bvecs" and usable:
            usable = ref.ndim == 2 and gtab_usable(ref)
        r = harness(kind, p)
        stats["grad_cases"] += 1
        if not usable:
            check(not r["ok"] and p in r.get("error", ""),
                  f"{name}: dipy cannot use it, we should fail naming the file: "
                  f"{str(r)[:200]}")
            continue
        if not check(r["ok"], f"{name}: we failed where dipy reads it: {r.get('error')}"):
            continue
        ours = np.array([int(b, 16) for b in r["bits"]], dtype=np.uint64).view(np.float64)
        want = ref.astype(np.float64).ravel()  # bvecs are N x 3, row-major
        check(r["n"] == ref.shape[0], f"{name}: n {r['n']} vs {ref.shape}")
        check(ours.shape == want.shape and np.array_equal(bits(ours), bits(want)),
              f"{name}: values differ\n{ours[:12]}\n{want[:12]}")


def main():
    global HARNESS
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    HARNESS = os.path.join(os.path.abspath(args.build_dir), "tests", "harness_image")
    if not os.access(HARNESS, os.X_OK):
        print(f"harness not found: {HARNESS}")
        return 1
    global INFLATE
    with tempfile.TemporaryDirectory(prefix="dmri_image_io_") as tmp:
        for INFLATE in ("zlib", ""):
            sub = os.path.join(tmp, INFLATE or "default")
            os.mkdir(sub)
            test_reading(sub)
        tmp = sub  # test_writing uses files generated by the last pass
        test_writing(tmp)
        test_gradients(tmp)
    print(f"files read: {stats['read_files']}, files written: {stats['write_files']}, "
          f"gradient cases: {stats['grad_cases']}")
    print(f"max abs error of read values vs nibabel: {stats['max_abs_err']:.3g} "
          f"(bit-identical required); max affine difference after a write: "
          f"{stats['max_affine_err']:.3g} (identical required); NIfTI-2 source with "
          f"non-float32 geometry written as NIfTI-1: {stats['nifti2_affine_err']:.3g}")
    print(f"{stats['checks'] - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
