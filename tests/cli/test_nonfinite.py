"""Numerical trouble in `reflabel train`. A learning rate far too large
makes the network output overflow: the run stops within one step with one
line naming the step and the cases of its batch, keeps the last good
checkpoint, and fails again at the same step when resumed as it was; with
--skip-nonfinite it goes on, logs every skipped batch (nan loss, running
count in the skipped column) and never writes a non-finite weight. A voxel
beyond float32's range is refused when it is read, naming the file. Safetensors
files are read here with numpy, not with our reader."""
import json
import os
import re
import shutil
import struct
import sys

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_nonfinite")
ROOT = scratch("cli-nonfinite")
DATA = os.path.join(ROOT, "data")
STEPS = 30
# Plain SGD steps of size 10 without clipping or normalisation blow the
# activations up within a few steps.
EXPLODE = ["--data", DATA, "--steps", STEPS, "--batch", 2, "--depth", 2, "--width", 4, "--patch",
           "32x32", "--optimizer", "sgd", "--lr", 10, "--clip", 0, "--norm", "none", "--seed", 0,
           "--threads", 1, "--checkpoint-every", 1, "--quiet"]


def tensors(path):
    """name -> numpy array of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        b, e = v["data_offsets"]
        dtype = {"F32": "<f4", "I64": "<i8"}[v["dtype"]]
        out[name] = np.frombuffer(blob[8 + n + b:8 + n + e], dtype).reshape(v["shape"])
    return out


def log(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as f:
        lines = f.read().splitlines()
    head = lines[0].split(",")
    return [dict(zip(head, line.split(","))) for line in lines[1:]]


rc, _, err = run(EXE, "data", "shapes", "--out", DATA, "--train", 8, "--test", 0, "--size",
                 "32x32", "--seed", 4)
T.check(rc == 0, f"data shapes: {err}")
case_ids = {f[:-len("_0000.png")] for f in os.listdir(os.path.join(DATA, "imagesTr"))}

# Stop within one step, naming the step and the batch.
bad = os.path.join(ROOT, "explode")
rc, _, err = run(EXE, "train", *EXPLODE, "--out", bad)
lines = err.strip().splitlines()
m = re.match(r"reflabel: step (\d+): .* not finite \(batch: ([^)]*)\)", lines[0] if lines else "")
T.check(rc == 1 and len(lines) == 1 and m, f"exploding run: exit {rc}, {err!r}")
step = int(m.group(1)) if m else 0
batch = m.group(2).split() if m else []
T.check(len(batch) == 2 and all(b.rsplit("/", 1)[0] in case_ids for b in batch),
        f"batch {batch} does not name 2 training cases")
T.check(1 < step < STEPS, f"the loss should explode after a few steps, not at step {step}")
T.check("checkpoint.safetensors (step %d) is kept" % (step - 1) in err, f"message: {err!r}")
kept = tensors(os.path.join(bad, "checkpoint.safetensors"))
T.check(int(kept["trainer.counters"][0]) == step - 1, "the kept checkpoint is not the last good step")
T.check(all(np.isfinite(v).all() for k, v in kept.items() if k.startswith("model.")),
        "the kept checkpoint holds non-finite weights")
T.check([int(r["step"]) for r in log(bad)] == list(range(1, step)),
        "log.csv should hold exactly the steps before the failing one")
print(f"learning rate 10: stopped at step {step}, batch {' '.join(batch)}")

# Deterministic: resumed as it was, it fails at the same step, same batch.
shutil.copy(os.path.join(bad, "checkpoint.safetensors"), os.path.join(ROOT, "good.safetensors"))
rc, _, err2 = run(EXE, "train", "--resume", bad)
T.check(rc == 1 and err2.strip() == err.strip(), f"resumed: exit {rc}, {err2!r} vs {err!r}")

# --skip-nonfinite: on to the end, every skip logged, weights stay finite.
rc, _, err = run(EXE, "train", "--resume", bad, "--skip-nonfinite")
T.check(rc == 0, f"--skip-nonfinite: exit {rc}, {err!r}")
warned = [line for line in err.splitlines() if "batch skipped (--skip-nonfinite)" in line]
T.check(1 <= len(warned) <= 10 and f"step {step}:" in warned[0], f"warnings: {err!r}")
T.check("batches skipped as not finite" in err, f"no summary: {err!r}")
rows = log(bad)
T.check(len(rows) == STEPS, f"log.csv has {len(rows)} rows")
count = 0
for r in rows:
    skipped_here = int(r["skipped"]) == count + 1
    count = int(r["skipped"])
    T.check(skipped_here == (not np.isfinite(float(r["loss"])) or
                             not np.isfinite(float(r["grad_norm"]))),
            f"step {r['step']}: skipped column {r['skipped']} vs loss {r['loss']}")
T.check(count >= 1 and int(rows[step - 1]["skipped"]) == 1, f"{count} skipped, first at {step}?")
model = tensors(os.path.join(bad, "model.safetensors"))
T.check(all(np.isfinite(v).all() for v in model.values()), "non-finite weights were saved")
if count == STEPS - step + 1:
    # Every step after the explosion was skipped: nothing may have moved.
    good = tensors(os.path.join(ROOT, "good.safetensors"))
    T.check(all(np.array_equal(v, good["model." + k]) for k, v in model.items()),
            "skipped steps changed the weights")
print(f"--skip-nonfinite: {count} of {STEPS} batches skipped, weights finite")

# A voxel beyond float32's range never reaches training: the reader refuses
# the file. (niftilib itself turns stored NaN and infinity into 0, so
# those cannot reach the trainer through a NIfTI file at all.)
big_data = os.path.join(ROOT, "overflow-data")
for sub in ("imagesTr", "labelsTr"):
    os.makedirs(os.path.join(big_data, sub))
for i in range(3):
    img = np.random.default_rng(i).normal(size=(16, 16, 4))
    if i == 1:
        img[3, 4, 2] = 1e300
    nib.save(nib.Nifti1Image(img, np.eye(4)), os.path.join(big_data, "imagesTr", f"v{i}_0000.nii.gz"))
    nib.save(nib.Nifti1Image((img > 0).astype(np.uint8), np.eye(4)),
             os.path.join(big_data, "labelsTr", f"v{i}.nii.gz"))
with open(os.path.join(big_data, "dataset.json"), "w") as f:
    f.write('{"channel_names": {"0": "MR"}, "labels": {"background": 0, "blob": 1},'
            ' "file_ending": ".nii.gz", "numTraining": 3}')
rc, _, err = run(EXE, "train", "--data", big_data, "--out", os.path.join(ROOT, "overflow-run"),
                 "--steps", 2, "--batch", 2, "--depth", 2, "--width", 4, "--quiet")
lines = err.strip().splitlines()
T.check(rc == 1 and len(lines) == 1 and "v1_0000.nii.gz" in lines[0] and "not finite" in lines[0],
        f"voxel 1e300: exit {rc}, {err!r}")

sys.exit(T.report())
