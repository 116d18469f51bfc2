"""refpl with its default settings on the stripes data, 2 labeled images:

- it does not collapse: the pseudo-labels' class shares stay close to the
  labeled images' (mean pl_drift, the total-variation distance, over the
  steps where the unlabeled loss acts); with the per-class reference cap that
  was the default before commit dca11ef, this run drifted 3 to 10 times as
  far and scored a test Dice of 0.45 (measured before 60c40ae, with batches
  drawn with replacement); neither the drift warning nor the per-class
  share warning of train appears;
- on held-out images it is not worse than supervised training on the same two
  images (by more than NOT_WORSE), and it beats pseudo-labels taken from the
  network's own predictions (predpl, the confirmation-bias baseline of the
  paper) by at least OVER_PREDPL. Measured at commit 60c40ae: supervised
  0.609, refpl 0.652, predpl 0.576; mean drift 0.028. At commit 031d378, whose
  refpl default thresholds at a margin calibrated to 90% accuracy on the
  labeled images (--margin-accuracy 0.9), on another machine: supervised
  0.617, refpl 0.641, predpl 0.559; mean drift 0.024 (OpenBLAS picks its
  kernels by CPU, so numbers move a little between machines).

A fixed margin threshold of 0.1 (`--min-margin 0.1 --margin-accuracy 0`, the
setting that first put refpl ahead of supervised on the brain atlas at 5%)
keeps under 3% of the pixels here: train must say so on stderr.

This is not the issue's stronger target, refpl beating supervised training by
a clear margin (test_refpl_beats_supervised.py asserts it on larger stripes
data, where it held in 3 seeds of 3): refpl's lead here is seed 0's; with training seeds 1 and 2 on
the same data it was -0.038 and +0.003 without a threshold, and the
calibrated one scored 0.630 and 0.605 against 0.634 and 0.620 for supervised
(on the machine of 031d378), and over 11 runs on larger stripes data the
calibrated refpl was ahead in 7, by 0.014 on average: differences of 0.05 are
within one seed's noise on this data (docs/TRAINING.md, "Status of the
defaults", items 4 and 6). One thread per run: each run is
reproducible bit for bit, so the numbers above are those of every run of the
same build."""
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_refpl_stripes")
ROOT = scratch("cli-refpl-stripes")
DATA = os.path.join(ROOT, "data")
TRAIN = ["--data", DATA, "--labeled", 2, "--batch", 4, "--depth", 3,
         "--width", 8, "--lr", 3e-3, "--seed", 0, "--threads", 1, "--checkpoint-every", 0,
         "--quiet"]
MAX_DRIFT = 0.05
NOT_WORSE = 0.05
OVER_PREDPL = 0.05

rc, _, err = run(EXE, "data", "stripes", "--out", DATA, "--train", 48, "--test", 16, "--size",
                 "48x48", "--seed", 0)
T.check(rc == 0, f"data stripes: {err}")


def train(name, method, *options, steps=300):
    out = os.path.join(ROOT, name)
    rc, _, err = run(EXE, "train", "--out", out, "--method", method, "--steps", steps, *TRAIN,
                     *options)
    T.check(rc == 0, f"train --method {method} {options}: {err}")
    try:
        with open(os.path.join(out, "test_metrics.json")) as f:
            dice = json.load(f)["foreground_mean"]["dice"]["mean"]
        with open(os.path.join(out, "log.csv")) as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        T.check(False, f"{name}: {e}")
        return float("nan"), [], err
    return dice, rows, err


dice, logs, errs = {}, {}, {}
for method in ("supervised", "refpl", "predpl"):
    dice[method], logs[method], errs[method] = train(method, method)
print("test Dice (foreground mean): " +
      ", ".join(f"{m} {d:.4f}" for m, d in dice.items()))

active = [r for r in logs["refpl"] if float(r["lambda"]) > 0 and r["pl_drift"] != "nan"]
T.check(len(active) > 100, f"refpl: {len(active)} steps with the unlabeled loss acting")
if active:
    drift = sum(float(r["pl_drift"]) for r in active) / len(active)
    # NaN in a step that kept no pixel
    kept_steps = [float(r["pl_accuracy"]) for r in active if r["pl_accuracy"] != "nan"]
    accuracy = sum(kept_steps) / max(len(kept_steps), 1)
    print(f"refpl while the unlabeled loss acts: mean pl_drift {drift:.4f}, "
          f"mean pl_accuracy {accuracy:.4f}")
    T.check(drift <= MAX_DRIFT, f"refpl drifted: mean pl_drift {drift:.4f} > {MAX_DRIFT}")
# No class is lost, so neither collapse warning may appear.
T.check("pseudo-label class shares differ" not in errs["refpl"]
        and "of the labeled pixels" not in errs["refpl"],
        f"refpl without collapse warned: {errs['refpl']!r}")
T.check(dice["refpl"] >= dice["supervised"] - NOT_WORSE,
        f"refpl {dice['refpl']:.4f} is worse than supervised {dice['supervised']:.4f} "
        f"by more than {NOT_WORSE}")
T.check(dice["refpl"] >= dice["predpl"] + OVER_PREDPL,
        f"refpl {dice['refpl']:.4f} does not beat predpl {dice['predpl']:.4f} by {OVER_PREDPL}")

# A margin threshold on the scale of the brain atlas keeps almost nothing
# here, and train says so.
dice["refpl-margin"], rows, err = train("refpl-margin", "refpl", "--min-margin", 0.1,
                                       "--margin-accuracy", 0)
active = [r for r in rows if float(r["lambda"]) > 0]
kept = sum(float(r["pl_kept"]) for r in active) / max(len(active), 1)
print(f"refpl --min-margin 0.1: test Dice {dice['refpl-margin']:.4f}, mean pl_kept {kept:.4f}")
T.check(len(active) >= 50 and kept < 0.05,
        f"--min-margin 0.1 on stripes: {len(active)} active steps, mean pl_kept {kept:.4f}")
T.check("of the unlabeled pixels reached --min-margin 0.1" in err,
        f"no warning about the pixels kept: {err!r}")
sys.exit(T.report())
