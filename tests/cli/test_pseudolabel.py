"""End-to-end runs of `reflabel pseudolabel`: the synthetic PNG shapes data
(reference selection shared with train, outputs, metrics recomputed here,
the nnU-Net export checked file by file) and a 3D NIfTI dataset built with
nibabel, whose unlabeled cases are copies of labeled ones, so the
pseudo-labels must reproduce the copied labels exactly; reassembly along
every axis and the header/affine round trip are checked with nibabel.
PNGs are read with Pillow, NIfTIs with nibabel: never with our readers."""
import json
import os
import shutil
import sys

import nibabel as nib
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, files_under, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_pseudolabel")
ROOT = scratch("cli-pseudolabel")
TRAIN = ["--steps", "6", "--batch", "2", "--depth", "2", "--width", "4", "--quiet",
         "--threads", "2", "--checkpoint-every", "0"]


def ok(what, *args):
    rc, out, err = run(EXE, *args)
    T.check(rc == 0, f"{what}: exit {rc}: {err.strip()}")
    return out, err


def png(path):
    return np.asarray(Image.open(path))


def check_export(exp, data, keep, out, ending, with_ignore, read):
    """The nnU-Net export: names, dataset.json, bytes and label values."""
    with open(os.path.join(data, "dataset.json")) as f:
        src = json.load(f)
    with open(os.path.join(exp, "dataset.json")) as f:
        dj = json.load(f)
    labels = dict(src["labels"])
    k = len(labels)
    if with_ignore:
        labels["ignore"] = k
    T.check(dj["labels"] == labels, f"{exp}: labels {dj['labels']} != {labels}")
    T.check(dj["channel_names"] == src["channel_names"], f"{exp}: channel_names")
    T.check(dj["file_ending"] == ending, f"{exp}: file_ending {dj['file_ending']}")
    images = sorted(os.listdir(os.path.join(exp, "imagesTr")))
    cases = sorted({f[: -len(ending) - 5] for f in images})
    T.check(dj["numTraining"] == len(cases), f"{exp}: numTraining {dj['numTraining']} vs {len(cases)}")
    T.check(images == sorted(c + "_0000" + ending for c in cases), f"{exp}: imagesTr names {images}")
    T.check(sorted(os.listdir(os.path.join(exp, "labelsTr"))) == [c + ending for c in cases],
            f"{exp}: labelsTr names")
    for f in images:
        with open(os.path.join(exp, "imagesTr", f), "rb") as a, \
                open(os.path.join(data, "imagesTr", f), "rb") as b:
            T.check(a.read() == b.read(), f"{exp}: imagesTr/{f} is not a byte copy")
    allowed = set(range(k + 1 if with_ignore else k))
    seen = set()
    for c in cases:
        lab = os.path.join(exp, "labelsTr", c + ending)
        with open(lab, "rb") as a:
            got = a.read()
        if c in keep:
            with open(os.path.join(data, "labelsTr", c + ending), "rb") as b:
                T.check(got == b.read(), f"{exp}: labelsTr/{c} is not the original label")
        else:
            T.check(np.array_equal(read(lab), read(os.path.join(out, c + ending))),
                    f"{exp}: labelsTr/{c} differs from the pseudo-label")
        vals = set(np.unique(read(lab)).tolist())
        seen |= vals
        T.check(vals <= allowed, f"{exp}: labelsTr/{c} holds {vals}, declared {allowed}")
    if with_ignore:
        T.check(k in seen, f"{exp}: no voxel got the ignore label {k}")
    if os.path.isdir(os.path.join(data, "imagesTs")):
        T.check(sorted(os.listdir(os.path.join(exp, "imagesTs"))) ==
                sorted(os.listdir(os.path.join(data, "imagesTs"))), f"{exp}: imagesTs")


# ---- PNG: reflabel data shapes ------------------------------------------------
shapes = os.path.join(ROOT, "shapes")
ok("data shapes", "data", "shapes", "--out", shapes, "--train", "8", "--test", "2",
   "--size", "32x32")
run_dir = os.path.join(ROOT, "run")
ok("train", "train", "--data", shapes, "--out", run_dir, "--labeled", "3", "--labeled-mode",
   "random", "--seed", "5", *TRAIN)
with open(os.path.join(run_dir, "labeled.txt")) as f:
    keep = set(f.read().split())
T.check(len(keep) == 3, f"labeled.txt: {keep}")
all_cases = sorted(f[:-9] for f in os.listdir(os.path.join(shapes, "imagesTr")))
queries = [c for c in all_cases if c not in keep]

out = os.path.join(ROOT, "pl")
exp = os.path.join(ROOT, "exp")
stdout, stderr = ok("pseudolabel png", "pseudolabel", "--model", run_dir, "--data", shapes,
                    "--out", out, "--labeled", "3", "--labeled-mode", "random", "--seed", "5",
                    "--min-confidence", "0.02", "--export-nnunet", exp, "--threads", "2")
T.check("pixel accuracy" in stdout, f"metrics not printed: {stdout!r}")
expected = sorted([c + ".png" for c in queries] + [c + "_confidence.png" for c in queries]
                  + ["pseudolabel_metrics.json"])
T.check(files_under(out) == expected, f"outputs {files_under(out)} != {expected}")
if files_under(out) == expected:
    # the metrics, recomputed from the files (raw labels: ignored ones excluded there)
    with open(os.path.join(out, "pseudolabel_metrics.json")) as f:
        m = json.load(f)
    T.check(m["cases"] == len(queries) and m["references"] == 3, f"metrics header {m}")
    tot = cor = 0
    for c in queries:
        p = png(os.path.join(out, c + ".png")).astype(int)
        g = png(os.path.join(shapes, "labelsTr", c + ".png")).astype(int)
        conf = png(os.path.join(out, c + "_confidence.png"))
        with open(os.path.join(out, c + "_confidence.png"), "rb") as f:
            depth = f.read(25)[24]  # IHDR bit depth
        T.check(p.shape == g.shape and conf.shape == g.shape and depth == 16,
                f"{c}: shapes {p.shape} {conf.shape}, bit depth {depth}")
        # ignore (4) exactly where the stored margin (margin / 2 * 65535) is below 0.02
        low = conf.astype(float) / 65535 * 2 < 0.02 - 2 / 65535
        high = conf.astype(float) / 65535 * 2 > 0.02 + 2 / 65535
        T.check(np.all(p[low] == 4) and np.all(p[high] != 4), f"{c}: ignore label vs margin")
        mask = p != 4
        tot += mask.sum()
        cor += (p[mask] == g[mask]).sum()
    T.check(m["confident"]["voxels"] == tot, f"confident voxels {m['confident']['voxels']} != {tot}")
    T.check(abs(m["confident"]["accuracy"] - cor / max(tot, 1)) < 1e-9, "confident accuracy")
    T.check(0 <= m["all"]["accuracy"] <= 1 and m["all"]["voxels"] == 32 * 32 * len(queries),
            f"all: {m['all']}")
    check_export(exp, shapes, keep, out, ".png", True, png)

# without --min-confidence: no ignore; --force over a non-empty folder
exp2 = os.path.join(ROOT, "exp2")
ok("pseudolabel png (per-class, hypercolumn)", "pseudolabel", "--model",
   os.path.join(run_dir, "model.safetensors"), "--data", shapes, "--out", out, "--force",
   "--labeled", "3", "--labeled-mode", "random", "--seed", "5", "--features", "hypercolumn",
   "--sampling", "per-class", "--per-class", "50", "--topk", "3", "--export-nnunet", exp2,
   "--quiet")
check_export(exp2, shapes, keep, out, ".png", False, png)

# refusals leave nothing behind
rc, _, err = run(EXE, "pseudolabel", "--model", run_dir, "--data", shapes, "--out", out,
                 "--labeled", "3", "--quiet")
T.check(rc != 0 and "not empty" in err and len(err.strip().splitlines()) == 1,
        f"non-empty --out accepted: {rc} {err!r}")
renamed = os.path.join(ROOT, "renamed")
shutil.copytree(shapes, renamed)
with open(os.path.join(renamed, "dataset.json")) as f:
    dj = json.load(f)
dj["labels"] = {("circle" if k == "disk" else k): v for k, v in dj["labels"].items()}
with open(os.path.join(renamed, "dataset.json"), "w") as f:
    json.dump(dj, f)
bad_out = os.path.join(ROOT, "bad-out")
rc, _, err = run(EXE, "pseudolabel", "--model", run_dir, "--data", renamed, "--out", bad_out,
                 "--labeled", "3", "--quiet")
T.check(rc != 0 and "model.safetensors" in err and "classes" in err
        and len(err.strip().splitlines()) == 1, f"class mismatch: {rc} {err!r}")
T.check(not os.path.exists(bad_out) and not [f for f in os.listdir(ROOT) if ".tmp." in f],
        "class mismatch left output behind")

# a corrupt query image, found after the bank is built: one line, nothing left
corrupt = os.path.join(ROOT, "corrupt")
shutil.copytree(shapes, corrupt)
victim = os.path.join(corrupt, "imagesTr", queries[-1] + "_0000.png")
with open(victim, "r+b") as f:
    f.truncate(40)
c_out, c_exp = os.path.join(ROOT, "corrupt-out"), os.path.join(ROOT, "corrupt-exp")
rc, _, err = run(EXE, "pseudolabel", "--model", run_dir, "--data", corrupt, "--out", c_out,
                 "--labeled", "3", "--labeled-mode", "random", "--seed", "5",
                 "--export-nnunet", c_exp, "--quiet")
T.check(rc != 0 and victim in err and len(err.strip().splitlines()) == 1,
        f"corrupt image: {rc} {err!r}")
T.check(not os.path.exists(c_out) and not os.path.exists(c_exp)
        and not [f for f in os.listdir(ROOT) if ".tmp." in f], "corrupt image left output behind")

# --refs: the references come from another dataset
other = os.path.join(ROOT, "other")
ok("data shapes (refs)", "data", "shapes", "--out", other, "--train", "2", "--test", "0",
   "--size", "32x32", "--seed", "9")
out3 = os.path.join(ROOT, "pl-refs")
_, err = ok("pseudolabel --refs", "pseudolabel", "--model", run_dir, "--data", shapes,
            "--refs", other, "--labeled", "1", "--out", out3)
T.check("2 reference cases" in err and "7 query cases" in err, f"--refs summary: {err!r}")

# ---- NIfTI: 3D volumes, unlabeled cases are copies of labeled ones ------------
nii = os.path.join(ROOT, "nii")
for d in ("imagesTr", "labelsTr"):
    os.makedirs(os.path.join(nii, d))
rng = np.random.default_rng(3)
shape = (11, 9, 6)
affine = np.array([[0.0, -1.2, 0.0, 10.0], [0.9, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 3.0],
                   [0, 0, 0, 1]])
truth = {}
for i in range(2):
    img = rng.integers(0, 1000, shape).astype(np.int16)
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    lab = ((x + 2 * y + 3 * z + i) // 4 % 3).astype(np.uint8)
    for case in (f"case_{i:03d}", f"copy_{i:03d}"):
        nib.save(nib.Nifti1Image(img, affine), os.path.join(nii, "imagesTr", case + "_0000.nii.gz"))
        nib.save(nib.Nifti1Image(lab, affine), os.path.join(nii, "labelsTr", case + ".nii.gz"))
        truth[case] = lab
with open(os.path.join(nii, "dataset.json"), "w") as f:
    json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
               "numTraining": 4, "file_ending": ".nii.gz"}, f)
with open(os.path.join(ROOT, "refs.txt"), "w") as f:
    f.write("# references\ncase_000\ncase_001\n")
nrun = os.path.join(ROOT, "nrun")
ok("train nifti", "train", "--data", nii, "--out", nrun, "--labeled",
   os.path.join(ROOT, "refs.txt"), *TRAIN)


def nii_read(path):
    return np.asarray(nib.load(path).dataobj)


for axis in (0, 1, 2):
    nout = os.path.join(ROOT, f"npl{axis}")
    nexp = os.path.join(ROOT, f"nexp{axis}")
    stdout, _ = ok(f"pseudolabel nifti axis {axis}", "pseudolabel", "--model", nrun, "--data", nii,
                   "--out", nout, "--labeled", os.path.join(ROOT, "refs.txt"), "--axis", axis,
                   "--export-nnunet", nexp, "--quiet")
    for case in ("copy_000", "copy_001"):
        p = os.path.join(nout, case + ".nii.gz")
        c = os.path.join(nout, case + "_confidence.nii.gz")
        if not (os.path.exists(p) and os.path.exists(c)):
            T.check(False, f"axis {axis}: {case} outputs missing")
            continue
        li, ci = nib.load(p), nib.load(c)
        src = nib.load(os.path.join(nii, "imagesTr", case + "_0000.nii.gz"))
        lab, conf = np.asarray(li.dataobj), np.asarray(ci.dataobj)
        T.check(lab.shape == shape and conf.shape == shape, f"axis {axis}: shape {lab.shape}")
        T.check(np.allclose(li.affine, src.affine) and np.allclose(ci.affine, src.affine),
                f"axis {axis}: affine {li.affine}")
        T.check(lab.dtype == np.uint8 and conf.dtype == np.float32,
                f"axis {axis}: dtypes {lab.dtype} {conf.dtype}")
        T.check(np.all(conf >= 0), f"axis {axis}: negative margin")
        # identical images: every label is recovered, except exact ties (margin 0)
        wrong = (lab != truth[case]) & (conf > 1e-5)
        T.check(not wrong.any(), f"axis {axis}: {int(wrong.sum())} voxels of {case} not recovered")
        T.check((lab == truth[case]).mean() > 0.99, f"axis {axis}: {case} recovery "
                f"{(lab == truth[case]).mean():.4f}")
    T.check("pixel accuracy" in stdout, f"axis {axis}: metrics not printed")
    check_export(nexp, nii, {"case_000", "case_001"}, nout, ".nii.gz", False, nii_read)

sys.exit(T.report())
