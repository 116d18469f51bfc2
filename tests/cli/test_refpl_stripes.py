"""refpl with its default settings on the stripes data, 2 labeled images,
training seed 0: what holds on every floating-point path measured, with room.

The floating-point path (OpenBLAS's kernels, chosen by CPU; the thread count)
changes every learned number here, so each bound below was set from the
spread measured over 5 OpenBLAS kernel sets and 1 and 2 threads at this seed
and over training seeds 1 and 2, which stand for what another path does to a
run this chaotic (docs/TESTING.md, raw numbers in docs/results/test-spread/;
a bound with less room than that fails on some machine, as "refpl beats
predpl by 0.05" did in CI, by 0.0001):

- refpl trains with the unlabeled loss acting (more than 100 steps) and its
  pseudo-labels are far better than chance: their mean foreground Dice
  against the hidden labels, while the unlabeled loss acts, is at least
  MIN_PL_DICE (all-background labels score 0, labels drawn at the class
  shares about 0.1);
- it does not collapse: the pseudo-labels' class shares stay close to the
  labeled images' (mean pl_drift, the total-variation distance, at most
  MAX_DRIFT; with the per-class reference cap that was the default before
  commit dca11ef, this run drifted 3 to 10 times as far), train's drift
  warning does not appear, and its per-class share warning names no class but
  the diagonal one (2% of the labeled pixels: at seeds 1 and 2 its share of
  the pseudo-labels fell under half of that, and train said so);
- on held-out images it is not worse than supervised training on the same two
  images by more than NOT_WORSE: a refpl whose pseudo-labels hurt fails it.

A fixed margin threshold of 0.1 (`--min-margin 0.1 --margin-accuracy 0`, the
setting that first put refpl ahead of supervised on the brain atlas at 5%)
keeps about 1% of the pixels here: train must say so on stderr.

What it does not assert: that refpl beats supervised training or predpl
(pseudo-labels from the network's own predictions). At seed 0 refpl was
ahead of predpl by 0.0499 on the CI machine where the test asserted "by
0.05", and by 0.023 to 0.085 over the kernel sets and thread counts of
docs/TESTING.md; at seed 2 predpl was ahead, and refpl was ahead of
supervised in 6 of 9 runs. The
comparison is an experiment, scripts/experiments/stripes_methods.sh, whose tables are in
docs/TESTING.md and docs/TRAINING.md ("Status of the defaults", item 4)."""
import csv
import json
import os
import re
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
# Measured minimum-maximum over 11 paths at seed 0 (7 on im2col + OpenBLAS,
# 4 on oneDNN) and seeds 1 and 2 (docs/TESTING.md). Each bound lies beyond
# the worst measured value by at least the whole measured range (a factor of
# 2 on the spread), rounded outward.
MIN_PL_DICE = 0.50   # measured 0.596-0.647 (range 0.051)
MAX_DRIFT = 0.05     # measured 0.024-0.036 (range 0.012)
NOT_WORSE = 0.12     # measured refpl - supervised -0.043 to +0.033 (range 0.075)
MAX_KEPT_AT_MARGIN = 0.05   # measured 0.008-0.017

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


def mean(values):
    return sum(values) / len(values) if values else float("nan")


dice, logs, errs = {}, {}, {}
for method in ("supervised", "refpl"):
    dice[method], logs[method], errs[method] = train(method, method)
print("test Dice (foreground mean): " +
      ", ".join(f"{m} {d:.4f}" for m, d in dice.items()))

# Steps where the unlabeled loss acts and kept pixels (pl_accuracy is NaN in a
# step that kept none).
active = [r for r in logs["refpl"] if float(r["lambda"]) > 0 and r["pl_accuracy"] != "nan"]
T.check(len(active) > 100, f"refpl: {len(active)} steps with the unlabeled loss acting")
if active:
    drift = mean([float(r["pl_drift"]) for r in active])
    foreground = [k for k in active[0] if k.startswith("pl_dice_") and k != "pl_dice_background"]
    # per step, the mean over the foreground classes present in its batch
    pl_dice = mean([mean([float(r[k]) for k in foreground if r[k] != "nan"]) for r in active
                    if any(r[k] != "nan" for k in foreground)])
    accuracy = mean([float(r["pl_accuracy"]) for r in active])
    print(f"refpl while the unlabeled loss acts: mean pl_drift {drift:.4f}, "
          f"mean foreground pl Dice {pl_dice:.4f}, mean pl_accuracy {accuracy:.4f}")
    T.check(pl_dice >= MIN_PL_DICE,
            f"refpl pseudo-labels: mean foreground Dice {pl_dice:.4f} < {MIN_PL_DICE}")
    T.check(drift <= MAX_DRIFT, f"refpl drifted: mean pl_drift {drift:.4f} > {MAX_DRIFT}")
# No collapse, so the drift warning (a step's drift above 0.25) may not
# appear, nor the class-share warning for a class of 10% of the pixels; the
# diagonal class is 2% of the labeled pixels, and its share of the
# pseudo-labels fell under half of that at seeds 1 and 2 (docs/TESTING.md).
shares = re.findall(r"'(\w+)' is [\d.]+% of the pseudo-labels", errs["refpl"])
T.check("pseudo-label class shares differ" not in errs["refpl"]
        and not [c for c in shares if c != "diagonal"],
        f"refpl without collapse warned: {errs['refpl']!r}")
T.check(dice["refpl"] >= dice["supervised"] - NOT_WORSE,
        f"refpl {dice['refpl']:.4f} is worse than supervised {dice['supervised']:.4f} "
        f"by more than {NOT_WORSE}")

# A margin threshold on the scale of the brain atlas keeps almost nothing
# here, and train says so.
dice["refpl-margin"], rows, err = train("refpl-margin", "refpl", "--min-margin", 0.1,
                                       "--margin-accuracy", 0)
acting = [r for r in rows if float(r["lambda"]) > 0]
kept = mean([float(r["pl_kept"]) for r in acting])
print(f"refpl --min-margin 0.1: test Dice {dice['refpl-margin']:.4f}, mean pl_kept {kept:.4f}")
T.check(len(acting) >= 50 and kept < MAX_KEPT_AT_MARGIN,
        f"--min-margin 0.1 on stripes: {len(acting)} active steps, mean pl_kept {kept:.4f}")
T.check("of the unlabeled pixels reached --min-margin 0.1" in err,
        f"no warning about the pixels kept: {err!r}")
sys.exit(T.report())
