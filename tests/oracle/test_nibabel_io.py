"""NIfTI input/output against nibabel, an independent reader/writer.

nibabel writes volumes of several data types, affines and both header
versions (.nii and .nii.gz); tests/tool_io reads them with reflabel and
writes label and float outputs "like" them. nibabel then checks: the voxels
reflabel read, the shape, the affine, the zooms, the header version and the
output data types. Also the real Colin27 T1 and AAL atlas shipped by
mricron-data. Usage: test_nibabel_io.py BUILD_DIR
"""
import os
import subprocess
import sys
import tempfile

import nibabel as nib  # a missing oracle must fail the test, not skip it
import numpy as np

from oracle_checks import check, report

BUILD = sys.argv[1]
TOOL = os.path.join(BUILD, "tests", "tool_io")
TEMPLATES = "/usr/share/mricron/templates"



def rel_l2(a, b):
    """The relative L2 norm every oracle comparison uses (rl_rel_l2)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def run_tool(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=60)


def rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_affine(rng, zooms):
    aff = np.eye(4)
    aff[:3, :3] = rotation(rng) @ np.diag(zooms)
    aff[:3, 3] = rng.uniform(-100, 100, size=3)
    return aff


def roundtrip(tmp, name, img, ext, mod, expect_label_dtype):
    """Writes img with nibabel, reads/writes it with reflabel, checks."""
    src = os.path.join(tmp, name + ext)
    nib.save(img, src)
    check_file(tmp, name, src, ext, mod, expect_label_dtype)


def check_file(tmp, name, src, ext, mod, expect_label_dtype):
    """Reads src with reflabel, writes outputs like it (ext), checks them."""
    npy = os.path.join(tmp, name + "_data.npy")
    lab = os.path.join(tmp, name + "_labels" + ext)
    flt = os.path.join(tmp, name + "_float" + ext)
    res = run_tool("roundtrip", src, npy, lab, flt, str(mod))
    check(res.returncode == 0, "%s: tool failed: %s" % (name, res.stderr.strip()))
    if res.returncode != 0:
        return
    ref = nib.load(src)
    expected = np.asarray(ref.get_fdata(), np.float64)
    if expected.ndim == 2:
        expected = expected[:, :, None]
    ours = np.load(npy).transpose(2, 1, 0)  # (nz, ny, nx) -> (nx, ny, nz)
    check(ours.shape == expected.shape, "%s: shape %s vs %s" % (name, ours.shape, expected.shape))
    if ours.shape == expected.shape:
        err = rel_l2(ours, expected.astype(np.float32))
        check(err < 1e-7, "%s: voxels differ, rel L2 %g" % (name, err))

    n = expected.size
    want_labels = (np.arange(n) % mod).reshape(expected.shape, order="F")
    for path, kind in ((lab, "labels"), (flt, "float")):
        out = nib.load(path)
        what = "%s %s" % (name, kind)
        check(type(out) is type(ref), "%s: header version %s, source %s"
              % (what, type(out).__name__, type(ref).__name__))
        check(np.allclose(out.affine, ref.affine, atol=1e-5), "%s: affine\n%s\nvs\n%s"
              % (what, out.affine, ref.affine))
        check(np.allclose(out.header.get_zooms()[:3], ref.header.get_zooms()[:3]),
              "%s: zooms %s vs %s" % (what, out.header.get_zooms(), ref.header.get_zooms()))
        check(int(out.header["qform_code"]) == int(ref.header["qform_code"])
              and int(out.header["sform_code"]) == int(ref.header["sform_code"]),
              "%s: qform/sform codes changed" % what)
        check(out.header.get_xyzt_units() == ref.header.get_xyzt_units(), "%s: units" % what)
        got = np.asarray(out.get_fdata(), np.float64)
        if got.ndim == 2:
            got = got[:, :, None]
        if kind == "labels":
            check(out.get_data_dtype() == np.dtype(expect_label_dtype),
                  "%s: dtype %s, expected %s" % (what, out.get_data_dtype(), expect_label_dtype))
            check(got.shape == want_labels.shape and np.array_equal(got, want_labels),
                  "%s: label values differ" % what)
            slope, inter = out.header.get_slope_inter()
            check(slope in (None, 1.0) and inter in (None, 0.0),
                  "%s: scaling %s %s not reset" % (what, slope, inter))
        else:
            check(out.get_data_dtype() == np.dtype(np.float32), "%s: dtype %s"
                  % (what, out.get_data_dtype()))
            check(got.shape == expected.shape
                  and rel_l2(got, expected.astype(np.float32)) < 1e-7,
                  "%s: float values differ" % what)


def expect_error(tmp, name, img, ext, needle):
    path = os.path.join(tmp, name + ext)
    nib.save(img, path)
    res = run_tool("info", path)
    # one line: ours; niftilib must not have printed anything of its own
    check(res.returncode == 1 and needle in res.stderr and path in res.stderr
          and len(res.stderr.strip().splitlines()) == 1,
          "%s: expected an error containing %r naming the file, got rc %d: %s"
          % (name, needle, res.returncode, res.stderr.strip()))


def main():
    rng = np.random.default_rng(20220222)
    with tempfile.TemporaryDirectory(dir=os.environ.get("RL_TEST_TMP") or None) as tmp:
        shape = (7, 6, 5)
        # float32, NIfTI-1, plain, oblique affine with unequal zooms
        data = rng.normal(size=shape).astype(np.float32)
        img = nib.Nifti1Image(data, make_affine(rng, (0.8, 1.1, 2.5)))
        img.header.set_xyzt_units("mm", "sec")
        roundtrip(tmp, "f32_n1", img, ".nii", 7, np.uint8)

        # int16 with scl_slope/scl_inter, NIfTI-1, gzip; labels need int16
        data = rng.integers(-500, 500, size=(9, 8, 7)).astype(np.int16)
        img = nib.Nifti1Image(data, make_affine(rng, (1.0, 1.0, 3.0)))
        img.header.set_slope_inter(0.5, -3.0)
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=2)
        roundtrip(tmp, "i16_scaled_n1", img, ".nii.gz", 300, np.int16)

        # uint8, NIfTI-2, gzip
        data = rng.integers(0, 255, size=shape).astype(np.uint8)
        img = nib.Nifti2Image(data, make_affine(rng, (2.0, 2.0, 2.0)))
        roundtrip(tmp, "u8_n2", img, ".nii.gz", 4, np.uint8)

        # float64, NIfTI-2, plain
        data = rng.normal(scale=100, size=shape)
        img = nib.Nifti2Image(data, make_affine(rng, (0.5, 0.7, 0.9)))
        roundtrip(tmp, "f64_n2", img, ".nii", 9, np.uint8)

        # big-endian int32 with a slope
        data = rng.integers(-100000, 100000, size=shape).astype(">i4")
        img = nib.Nifti1Image(data, make_affine(rng, (1.2, 1.2, 1.2)))
        img.header.set_slope_inter(2.0, 1.0)
        roundtrip(tmp, "i32_be_n1", img, ".nii", 5, np.uint8)

        # other integer types
        for dtype in (np.int8, np.uint16, np.uint32, np.int64):
            data = rng.integers(0, 100, size=shape).astype(dtype)
            img = nib.Nifti1Image(data, make_affine(rng, (1.0, 2.0, 3.0)), dtype=dtype)
            roundtrip(tmp, "%s_n1" % np.dtype(dtype).name, img, ".nii.gz", 3, np.uint8)

        # a 2D image (dim[0] = 2)
        data = rng.integers(0, 4000, size=(9, 8)).astype(np.uint16)
        img = nib.Nifti1Image(data, np.diag([0.3, 0.4, 1.0, 1.0]))
        roundtrip(tmp, "u16_2d_n1", img, ".nii.gz", 2, np.uint8)

        # header extensions are carried over to the outputs
        data = rng.integers(0, 9, size=shape).astype(np.uint8)
        img = nib.Nifti1Image(data, make_affine(rng, (1.0, 1.0, 1.0)))
        img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"made by nibabel"))
        roundtrip(tmp, "ext_n1", img, ".nii.gz", 3, np.uint8)
        for kind in ("labels", "float"):
            path = os.path.join(tmp, "ext_n1_%s.nii.gz" % kind)
            if os.path.exists(path):
                exts = nib.load(path).header.extensions
                content = exts[0].get_content().rstrip(b"\0") if len(exts) == 1 else None
                check(content == b"made by nibabel",
                      "ext_n1 %s: extension lost: %s" % (kind, exts))

        # writing an image back in its own data type (no scaling)
        data = rng.integers(0, 255, size=shape).astype(np.uint8)
        img = nib.Nifti1Image(data, make_affine(rng, (1.0, 1.0, 1.0)))
        src = os.path.join(tmp, "image_src.nii.gz")
        out = os.path.join(tmp, "image_out.nii.gz")
        nib.save(img, src)
        res = run_tool("image", src, out)
        check(res.returncode == 0, "image write: %s" % res.stderr.strip())
        if res.returncode == 0:
            back = nib.load(out)
            check(back.get_data_dtype() == np.uint8, "image write: dtype %s"
                  % back.get_data_dtype())
            check(np.array_equal(np.asarray(back.dataobj), data), "image write: data")
            check(np.allclose(back.affine, img.affine, atol=1e-5), "image write: affine")

        # rejected inputs
        img = nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4))
        expect_error(tmp, "four_d", img, ".nii", "only 2D/3D")
        data = np.zeros(shape, np.float64)
        data[1, 2, 3] = 1e300  # finite as float64, infinite as float32
        expect_error(tmp, "huge_voxel", nib.Nifti1Image(data, np.eye(4)), ".nii",
                     "voxel (1, 2, 3) is not finite")
        # niftilib replaces NaN/inf stored in float files by 0 while loading
        # (documented in docs/DATA.md): check it stays that way.
        data = np.ones(shape, np.float32)
        data[1, 2, 3] = np.nan
        path = os.path.join(tmp, "nan_voxel.nii")
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        res = run_tool("info", path)
        check(res.returncode == 0 and res.stdout.split()[8:] == ["0", "1"],
              "nan_voxel: expected NaN read as 0, got %r %r" % (res.stdout, res.stderr))
        img = nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4))
        img.header["pixdim"][2] = 0
        expect_error(tmp, "zero_pixdim", img, ".nii", "pixdim[2]")
        img = nib.Nifti2Image(np.zeros(shape, np.float32), np.eye(4))
        img.header["pixdim"][3] = -1
        expect_error(tmp, "negative_pixdim", img, ".nii.gz", "pixdim[3]")
        img = nib.Nifti1Image(np.zeros(shape, np.complex64), np.eye(4))
        expect_error(tmp, "complex", img, ".nii", "not supported")

        # the real data shipped by mricron-data
        for name in ("ch2", "aal"):
            path = os.path.join(TEMPLATES, name + ".nii.gz")
            ref = nib.load(path)
            res = run_tool("info", path)
            check(res.returncode == 0, "%s: %s" % (name, res.stderr.strip()))
            if res.returncode != 0:
                continue
            f = res.stdout.split()
            dims = tuple(int(v) for v in f[:3])
            zooms = tuple(float(v) for v in f[3:6])
            d = np.asarray(ref.dataobj)
            check(dims == ref.shape, "%s: dims %s vs %s" % (name, dims, ref.shape))
            check(np.allclose(zooms, ref.header.get_zooms()), "%s: zooms" % name)
            check(int(f[7]) == int(ref.header["datatype"]), "%s: datatype" % name)
            check(float(f[8]) == d.min() and float(f[9]) == d.max(), "%s: range" % name)
            if name == "aal":  # the full round trip once: 7M voxels, 35 MB written
                check_file(tmp, name, path, ".nii", 117, np.uint8)

    return report()


if __name__ == "__main__":
    sys.exit(main())
