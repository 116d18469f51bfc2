"""3D NIfTI volumes end to end: a dataset of small oblique, anisotropic
volumes; train on axial slices, predict along each axis, and check with
nibabel that every prediction is one volume on the input's grid: same shape,
same affine and zooms, integer labels in range, and a float confidence map."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, require, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_predict_nifti")
nib, np = require(T, "nibabel", "numpy")

ROOT = scratch("cli-predict-nifti")
DATA = os.path.join(ROOT, "data")
for sub in ("imagesTr", "labelsTr", "imagesTs"):
    os.makedirs(os.path.join(DATA, sub))
rng = np.random.default_rng(3)
shape = (20, 17, 9)
affine = np.array([[0.9, 0.1, 0.0, -30.0],
                   [-0.1, 0.9, 0.05, 12.5],
                   [0.0, -0.04, 2.5, 7.0],
                   [0.0, 0.0, 0.0, 1.0]])
for i in range(4):
    lab = np.zeros(shape, np.uint8)
    c = rng.integers(5, 12, size=3)
    zz, yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    lab[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2] / 2) ** 2 < 16] = 1
    img = (lab * 2.0 + rng.normal(size=shape)).astype(np.float32)
    sub, name = ("imagesTs", f"vol{i}") if i == 3 else ("imagesTr", f"vol{i}")
    nib.save(nib.Nifti1Image(img, affine), os.path.join(DATA, sub, f"{name}_0000.nii.gz"))
    if i < 3:
        nib.save(nib.Nifti1Image(lab, affine), os.path.join(DATA, "labelsTr", f"{name}.nii.gz"))
with open(os.path.join(DATA, "dataset.json"), "w") as f:
    f.write('{"channel_names": {"0": "MR"}, "labels": {"background": 0, "blob": 1},'
            ' "file_ending": ".nii.gz", "numTraining": 3}')

run_dir = os.path.join(ROOT, "run")
rc, _, err = run(EXE, "train", "--data", DATA, "--out", run_dir, "--steps", "4", "--batch", "2",
                 "--depth", "2", "--width", "4", "--axis", "2", "--threads", "1", "--quiet")
T.check(rc == 0, f"train: {err}")
src = nib.load(os.path.join(DATA, "imagesTs", "vol3_0000.nii.gz"))
for axis in ("0", "1", "2"):
    out = os.path.join(ROOT, f"pred{axis}")
    rc, _, err = run(EXE, "predict", "--model", run_dir, "--in", os.path.join(DATA, "imagesTs"), "--out",
                     out, "--axis", axis, "--confidence", "--quiet", "--threads", "1")
    T.check(rc == 0, f"predict axis {axis}: {err}")
    pred = nib.load(os.path.join(out, "vol3.nii.gz"))
    conf = nib.load(os.path.join(out, "vol3_confidence.nii.gz"))
    data = np.asanyarray(pred.dataobj)
    T.check(pred.shape == src.shape, f"axis {axis}: shape {pred.shape} vs {src.shape}")
    T.check(np.allclose(pred.affine, src.affine, atol=1e-5), f"axis {axis}: affine changed")
    T.check(np.allclose(pred.header.get_zooms(), src.header.get_zooms()), f"axis {axis}: zooms changed")
    T.check(np.issubdtype(data.dtype, np.integer), f"axis {axis}: label dtype {data.dtype}")
    T.check(set(np.unique(data)) <= {0, 1}, f"axis {axis}: labels {np.unique(data)}")
    c = np.asanyarray(conf.dataobj)
    T.check(c.dtype == np.float32 and c.shape == src.shape, f"axis {axis}: confidence {c.dtype} {c.shape}")
    T.check(float(c.min()) >= 0.5 - 1e-6 and float(c.max()) <= 1.0 + 1e-6,
            f"axis {axis}: 2-class softmax confidence outside [0.5, 1]: {c.min()} {c.max()}")
    T.check(np.allclose(conf.affine, src.affine, atol=1e-5), f"axis {axis}: confidence affine")
sys.exit(T.report())
