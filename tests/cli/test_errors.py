"""Bad input to the reflabel command: every case gives exactly one line on
stderr naming the file or problem, a non-zero exit, and no output files."""
import gzip
import os
import shutil
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, files_under, main_args, require, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_errors")
ROOT = scratch("cli-errors")
TRAIN = ["--steps", "2", "--batch", "2", "--depth", "2", "--width", "4", "--quiet",
         "--threads", "1"]


def png_gray8(path, rows):
    """A minimal 8-bit grayscale PNG writer (the test must not trust ours)."""
    h, w = len(rows), len(rows[0])
    raw = b"".join(b"\0" + bytes(r) for r in rows)

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def fresh(name):
    d = os.path.join(ROOT, name)
    shutil.copytree(os.path.join(ROOT, "base"), d)
    return d


def expect_failure(what, args, needle, out_dir=None, rc_expected=None):
    rc, out, err = run(EXE, *args)
    lines = [l for l in err.splitlines() if l.strip()]
    T.check(rc != 0, f"{what}: exit status {rc} should be non-zero")
    if rc_expected is not None:
        T.check(rc == rc_expected, f"{what}: exit status {rc}, expected {rc_expected}")
    T.check(len(lines) == 1, f"{what}: expected one stderr line, got {lines!r}")
    T.check(needle in err, f"{what}: stderr {err.strip()!r} should mention {needle!r}")
    if out_dir is not None:
        left = files_under(out_dir) if os.path.isdir(out_dir) else []
        T.check(left == [], f"{what}: output left behind: {left}")
    return err


rc, _, err = run(EXE, "data", "shapes", "--out", os.path.join(ROOT, "base"), "--train", "6",
                 "--test", "2", "--size", "32x32")
T.check(rc == 0, f"data shapes failed: {err}")
rc, _, err = run(EXE, "data", "shapes", "--out", os.path.join(ROOT, "small"), "--train", "1",
                 "--test", "0", "--size", "16x16")
T.check(rc == 0, f"data shapes (small) failed: {err}")


def train_fails(name, needle, mutate):
    d = fresh(name)
    mutate(d)
    out = os.path.join(ROOT, name + "-run")
    expect_failure(f"train/{name}", ["train", "--data", d, "--out", out, *TRAIN], needle, out)


missing = os.path.join(ROOT, "does-not-exist")
expect_failure("train/missing-dir", ["train", "--data", missing, "--out", missing + "-run", *TRAIN],
               "does-not-exist", missing + "-run")
train_fails("no-json", "dataset.json", lambda d: os.remove(os.path.join(d, "dataset.json")))


def corrupt_json(d):
    with open(os.path.join(d, "dataset.json"), "w") as f:
        f.write('{"channel_names": {"0": "x"}, "labels": ')


train_fails("bad-json", "dataset.json", corrupt_json)


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


train_fails("truncated-png", "shapes_000_0000.png",
            lambda d: truncate(os.path.join(d, "imagesTr", "shapes_000_0000.png"), 40))


def garbage_label(d):
    with open(os.path.join(d, "labelsTr", "shapes_001.png"), "wb") as f:
        f.write(b"this is not a png at all" * 10)


train_fails("garbage-label", "shapes_001.png", garbage_label)
train_fails("shape-mismatch", "shapes_002",
            lambda d: shutil.copy(os.path.join(ROOT, "small", "labelsTr", "shapes_000.png"),
                                  os.path.join(d, "labelsTr", "shapes_002.png")))
train_fails("undeclared-label", "shapes_003.png",
            lambda d: png_gray8(os.path.join(d, "labelsTr", "shapes_003.png"),
                                [[7 if (x + y) % 5 == 0 else 0 for x in range(32)] for y in range(32)]))


def empty(d):
    for sub in ("imagesTr", "labelsTr"):
        shutil.rmtree(os.path.join(d, sub))
        os.makedirs(os.path.join(d, sub))


train_fails("empty", "imagesTr", empty)

# NIfTI datasets: a truncated gzip image.
nib, np = require(T, "nibabel", "numpy")

nii = os.path.join(ROOT, "nii")
for sub in ("imagesTr", "labelsTr"):
    os.makedirs(os.path.join(nii, sub))
rng = np.random.default_rng(0)
for i in range(3):
    img = rng.normal(size=(32, 32, 1)).astype(np.float32)
    lab = (img > 0.5).astype(np.uint8)
    nib.save(nib.Nifti1Image(img, np.eye(4)), os.path.join(nii, "imagesTr", f"c{i}_0000.nii.gz"))
    nib.save(nib.Nifti1Image(lab, np.eye(4)), os.path.join(nii, "labelsTr", f"c{i}.nii.gz"))
with open(os.path.join(nii, "dataset.json"), "w") as f:
    f.write('{"channel_names": {"0": "MR"}, "labels": {"background": 0, "fg": 1},'
            ' "file_ending": ".nii.gz", "numTraining": 3}')
out = os.path.join(ROOT, "nii-ok-run")
rc, _, err = run(EXE, "train", "--data", nii, "--out", out, *TRAIN)
T.check(rc == 0 and os.path.exists(os.path.join(out, "model.safetensors")),
        f"valid NIfTI dataset should train: {err}")
with open(os.path.join(nii, "imagesTr", "c1_0000.nii.gz"), "rb") as f:
    blob = f.read()
with open(os.path.join(nii, "imagesTr", "c1_0000.nii.gz"), "wb") as f:
    f.write(blob[: len(blob) // 2])
expect_failure("train/truncated-nifti", ["train", "--data", nii, "--out", os.path.join(ROOT, "nii-run"),
                                          *TRAIN], "c1_0000.nii.gz", os.path.join(ROOT, "nii-run"))

# predict: a missing and a corrupt model; evaluate: a missing prediction.
model_dir = os.path.join(ROOT, "nii-ok-run")
pred = os.path.join(ROOT, "pred")
expect_failure("predict/missing-model", ["predict", "--model", os.path.join(ROOT, "nope"), "--in",
                                          os.path.join(ROOT, "base", "imagesTs"), "--out", pred],
               "nope", pred)
bad_model = os.path.join(ROOT, "bad.safetensors")
with open(bad_model, "wb") as f:
    f.write(struct.pack("<Q", 1 << 40) + b"{}")
expect_failure("predict/corrupt-model", ["predict", "--model", bad_model, "--in",
                                          os.path.join(ROOT, "base", "imagesTs"), "--out", pred],
               "bad.safetensors", pred)
rc, _, err = run(EXE, "train", "--data", os.path.join(ROOT, "base"), "--out", os.path.join(ROOT, "ok"),
                 *TRAIN)
T.check(rc == 0, f"valid PNG dataset should train: {err}")
gt_dir = os.path.join(ROOT, "base", "labelsTs")
half = os.path.join(ROOT, "half-pred")
os.makedirs(half)
shutil.copy(os.path.join(gt_dir, "shapes_006.png"), half)
expect_failure("evaluate/missing-prediction", ["evaluate", "--pred", half, "--gt", gt_dir, "--json",
                                                os.path.join(ROOT, "eval.json")], "shapes_007")
T.check(not os.path.exists(os.path.join(ROOT, "eval.json")), "evaluate left a report behind")

# Usage errors exit 2; every command has --help.
expect_failure("train/unknown-option", ["train", "--data", "x", "--out", "y", "--frobnicate"],
               "--frobnicate", rc_expected=2)
expect_failure("train/bad-number", ["train", "--data", "x", "--out", "y", "--steps", "ten"], "--steps",
               rc_expected=2)
# An unknown flag given last is named as unknown, not as a known option
# missing its value; a known value option given last still says so.
for cmd in (["train", "--data", "x", "--out", "y"], ["predict", "--model", "m", "--in", "i"],
            ["evaluate", "--pred", "p", "--gt", "g"], ["pseudolabel", "--model", "m"],
            ["data", "shapes"], ["data", "stripes"], ["data", "atlas"], ["convert", "jsrt"]):
    name = "/".join(cmd[:2] if cmd[0] in ("data", "convert") else cmd[:1])
    err = expect_failure(f"{name}/unknown-last", [*cmd, "--frobnicate"], "unknown option '--frobnicate'",
                         rc_expected=2)
expect_failure("data/stripes-multilabel", ["data", "stripes", "--out", os.path.join(ROOT, "st"),
                                          "--multilabel"],
               "--multilabel applies to shapes only", os.path.join(ROOT, "st"), rc_expected=2)
expect_failure("data/unknown-dataset", ["data", "circles", "--out", os.path.join(ROOT, "c")],
               "unknown dataset 'circles' (available: shapes, stripes, atlas)", rc_expected=2)
expect_failure("predict/missing-value", ["predict", "--model", "m", "--in", "i", "--out"],
               "--out needs a value", rc_expected=2)
expect_failure("evaluate/missing-value", ["evaluate", "--pred", "p", "--json"],
               "--json needs a value", rc_expected=2)
expect_failure("train/missing-value", ["train", "--data", "x", "--method"], "--method needs a value",
               rc_expected=2)
for cmd in (["train"], ["predict"], ["evaluate"], ["pseudolabel"], ["convert"], ["data"], ["data", "atlas"],
            ["bench", "train"], ["bench", "match"]):
    rc, out, err = run(EXE, *cmd, "--help")
    T.check(rc == 0 and "usage" in out.lower(), f"{' '.join(cmd)} --help: rc {rc}, {out[:80]!r}")
rc, out, _ = run(EXE, "--help")
T.check(rc == 0 and "train" in out, "reflabel --help")

sys.exit(T.report())
