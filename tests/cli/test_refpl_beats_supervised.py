"""refpl with its default settings beats supervised training on generated data
with 2 labeled images, by at least CLEAR_MARGIN of held-out Dice, at a fixed
seed: `reflabel data stripes` with 128 training images (126 of them unlabeled),
400 steps, training seed 0.

Measured at commit 031d378 (default --margin-accuracy 0.9): supervised 0.740,
refpl 0.806 (+0.066); training seeds 1 and 2 on the same data: +0.043 and
+0.051. This asserts one data set, not a law: with data seed 2 refpl was ahead
in 2 of 5 training seeds and behind by up to 0.100 in the others (it lost the
diagonal class, 3.3% of those two labeled images' pixels), and with 256
images in 2 of 3 (docs/TRAINING.md, "Status of the defaults", item 6). The
margin is kept below the smallest lead of the three seeds, because runs move a
little between machines (OpenBLAS picks its kernels by CPU). One thread per
run: on one machine each run is the same bit for bit."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_refpl_beats_supervised")
ROOT = scratch("cli-refpl-beats-supervised")
DATA = os.path.join(ROOT, "data")
TRAIN = ["--data", DATA, "--labeled", 2, "--steps", 400, "--batch", 4, "--depth", 3,
         "--width", 8, "--lr", 3e-3, "--seed", 0, "--threads", 1, "--checkpoint-every", 0,
         "--quiet"]
CLEAR_MARGIN = 0.04

rc, _, err = run(EXE, "data", "stripes", "--out", DATA, "--train", 128, "--test", 32, "--size",
                 "48x48", "--seed", 0)
T.check(rc == 0, f"data stripes: {err}")

dice = {}
for method in ("supervised", "refpl"):
    out = os.path.join(ROOT, method)
    rc, _, err = run(EXE, "train", "--out", out, "--method", method, *TRAIN)
    T.check(rc == 0, f"train --method {method}: {err}")
    try:
        with open(os.path.join(out, "test_metrics.json")) as f:
            dice[method] = json.load(f)["foreground_mean"]["dice"]["mean"]
    except (OSError, KeyError, ValueError) as e:
        T.check(False, f"{method}: no test metrics ({e})")
        dice[method] = float("nan")
print(f"test Dice (foreground mean): supervised {dice['supervised']:.4f}, "
      f"refpl {dice['refpl']:.4f}, lead {dice['refpl'] - dice['supervised']:+.4f}")
T.check(dice["refpl"] >= dice["supervised"] + CLEAR_MARGIN,
        f"refpl {dice['refpl']:.4f} does not beat supervised {dice['supervised']:.4f} "
        f"by {CLEAR_MARGIN}")
sys.exit(T.report())
