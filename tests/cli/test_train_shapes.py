"""End to end: generate the shapes dataset, train a small U-Net with a fixed
step budget, predict the held-out cases and score them. The network must
reach a mean foreground Dice of at least 0.90 on the held-out images; the
same seed must give the same model file bit for bit."""
import filecmp
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_train_shapes")
ROOT = scratch("cli-train-shapes")
DATA = os.path.join(ROOT, "data")
# The budget: about a minute of training on 2 unloaded cores (Release build).
TRAIN = ["--steps", "300", "--batch", "8", "--depth", "3", "--width", "16", "--lr", "3e-3",
         "--seed", "0", "--threads", "2", "--quiet"]
MIN_DICE = 0.90

rc, _, err = run(EXE, "data", "shapes", "--out", DATA, "--train", "64", "--test", "16", "--seed", "0")
T.check(rc == 0, f"data shapes: {err}")

run_dir = os.path.join(ROOT, "run")
rc, _, err = run(EXE, "train", "--data", DATA, "--out", run_dir, *TRAIN)
T.check(rc == 0, f"train: {err}")
for name in ("model.safetensors", "log.csv", "labeled.txt", "test_metrics.json"):
    T.check(os.path.exists(os.path.join(run_dir, name)), f"train wrote {name}")

# predict + evaluate as a user would, independent of the training run's own scoring.
pred = os.path.join(ROOT, "pred")
rc, _, err = run(EXE, "predict", "--model", run_dir, "--in", os.path.join(DATA, "imagesTs"), "--out",
                 pred, "--confidence", "--quiet")
T.check(rc == 0, f"predict: {err}")
T.check(len([f for f in os.listdir(pred) if f.endswith("_confidence.png")]) == 16,
        "predict wrote 16 confidence maps")
summary = os.path.join(ROOT, "summary.json")
rc, out, err = run(EXE, "evaluate", "--pred", pred, "--gt", os.path.join(DATA, "labelsTs"), "--labels",
                   os.path.join(DATA, "dataset.json"), "--json", summary)
T.check(rc == 0, f"evaluate: {err}")
print(out, end="")
with open(summary) as f:
    report = json.load(f)
dice = report["foreground_mean"]["dice"]["mean"]
T.check(dice >= MIN_DICE, f"mean foreground Dice {dice:.4f} below {MIN_DICE}")
for name in ("disk", "square", "triangle"):
    T.check(report["per_class"][name]["dice"]["count"] == 16, f"{name} scored on all 16 cases")
with open(os.path.join(run_dir, "test_metrics.json")) as f:
    same = json.load(f)["foreground_mean"]["dice"]["mean"]
T.check(abs(same - dice) < 1e-12, f"train's own test scoring {same} equals evaluate's {dice}")

# The log has one row per step, finite losses, and the loss went down.
with open(os.path.join(run_dir, "log.csv")) as f:
    rows = [line.split(",") for line in f.read().splitlines()[1:]]
T.check(len(rows) == 300, f"log.csv has {len(rows)} rows")
first = sum(float(r[1]) for r in rows[:20]) / 20
last = sum(float(r[1]) for r in rows[-20:]) / 20
T.check(last < 0.5 * first, f"loss fell from {first:.3f} to {last:.3f}")

# Reproducible: a second run with the same seed and threads, shorter, twice.
for i in range(2):
    rc, _, err = run(EXE, "train", "--data", DATA, "--out", os.path.join(ROOT, f"repeat{i}"),
                     *[a if a != "300" else "15" for a in TRAIN])
    T.check(rc == 0, f"repeat {i}: {err}")
T.check(filecmp.cmp(os.path.join(ROOT, "repeat0", "model.safetensors"),
                    os.path.join(ROOT, "repeat1", "model.safetensors"), shallow=False),
        "same seed gives the same model file")

print(f"mean foreground Dice {dice:.4f} (required >= {MIN_DICE})")
sys.exit(T.report())
