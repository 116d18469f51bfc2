"""`reflabel train` warns when the pseudo-labels lose a class.

A class that the pseudo-labels stop giving is soon lost by the network too,
while the drift of the class histogram as a whole can stay small (on the brain
atlas, --keep-fraction 0.5 lost the cerebellum with a drift of 0.12,
docs/RESULTS.md). Training averages each class's share of the pseudo-labels
over windows of 100 steps of the unlabeled loss and warns, once per class,
when it falls under half of the class's share in the labeled images.

Two generated datasets of 12 images, 4 of them labeled (the same 4 in both):
each labeled image holds a bright square (class 1) and a grey square (class
2). In the first, the unlabeled images hold bright and grey squares too, so
the pseudo-labels keep both classes and no warning may appear. In the second
they hold bright squares only, so class 2 is missing from the pseudo-labels
(rightly: the warning cannot tell this from a class being lost, and says so)
and the warning must name it, with its two shares, exactly once.

One thread, a fixed seed: the runs are reproducible bit for bit."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, require, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_train_warnings")
np, Image = require(T, "numpy", "PIL.Image")

ROOT = scratch("cli-train-warnings")
SIZE, CASES, LABELED = 32, 12, ["sq_000", "sq_003", "sq_006", "sq_009"]
# 150 steps with a warm-up of 10%: 135 steps of the unlabeled loss, one full
# window of 100. A second of CPU in Release.
TRAIN = ["--method", "refpl", "--steps", 150, "--pl-warmup", 0.1, "--batch", 2, "--depth", 2,
         "--width", 8, "--lr", 1e-2, "--seed", 0, "--threads", 1, "--checkpoint-every", 0,
         "--quiet"]


def square(label, image, rng, value, cls):
    """Draws a 10x10 square of intensity value and class cls at a free spot."""
    for _ in range(100):
        y, x = rng.randint(0, SIZE - 10, size=2)
        if not label[y:y + 10, x:x + 10].any():
            label[y:y + 10, x:x + 10] = cls
            image[y:y + 10, x:x + 10] = value
            return
    raise RuntimeError("no free spot for a square")


def write_dataset(root, grey_in_unlabeled):
    """An nnU-Net v2 raw dataset of squares on noise; returns its folder."""
    rng = np.random.RandomState(7)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in range(CASES):
        case = f"sq_{i:03d}"
        image = np.full((SIZE, SIZE), 10000.0)
        label = np.zeros((SIZE, SIZE), np.uint8)
        square(label, image, rng, 50000, 1)
        if case in LABELED or grey_in_unlabeled:
            square(label, image, rng, 30000, 2)
        image += rng.normal(0, 1500, image.shape)
        Image.fromarray(np.clip(image, 0, 65535).astype(np.uint16)).save(
            os.path.join(root, "imagesTr", f"{case}_0000.png"))
        Image.fromarray(label).save(os.path.join(root, "labelsTr", f"{case}.png"))
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "intensity"},
                   "labels": {"background": 0, "bright": 1, "grey": 2},
                   "numTraining": CASES, "file_ending": ".png"}, f)
    return root


labeled_file = os.path.join(ROOT, "labeled.txt")
with open(labeled_file, "w") as f:
    f.write("\n".join(LABELED) + "\n")

WARNING = re.compile(r"reflabel train: warning: steps (\d+)-(\d+): '(\w+)' is ([\d.]+)% of the "
                     r"pseudo-labels against ([\d.]+)% of the labeled pixels")

for name, grey_in_unlabeled in (("both", True), ("bright-only", False)):
    data = write_dataset(os.path.join(ROOT, f"data-{name}"), grey_in_unlabeled)
    out = os.path.join(ROOT, f"run-{name}")
    rc, _, err = run(EXE, "train", "--data", data, "--labeled", labeled_file, *TRAIN, "--out", out)
    T.check(rc == 0, f"{name}: exit {rc}: {err.strip()}")
    found = [m.groups() for m in WARNING.finditer(err)]
    if grey_in_unlabeled:
        T.check(not found,
                f"{name}: a class-share warning without a lost class: {err.strip()!r}")
        continue
    T.check(len(found) == 1, f"{name}: expected one class-share warning, got {err.strip()!r}")
    if len(found) == 1:
        first, last, cls, pl_share, labeled_share = found[0]
        # The first window: the first 100 steps at which the loss acts.
        with open(os.path.join(out, "log.csv")) as f:
            rows = [line.split(",") for line in f.read().splitlines()]
        col = rows[0].index("lambda")
        acting = [int(r[0]) for r in rows[1:] if float(r[col]) > 0]
        T.check(cls == "grey" and len(acting) >= 100
                and (int(first), int(last)) == (acting[0], acting[99]),
                f"{name}: warning names {cls} over steps {first}-{last}; the loss acts from "
                f"step {acting[0] if acting else None}")
        T.check(float(pl_share) < 0.5 * float(labeled_share) and float(labeled_share) >= 1.0,
                f"{name}: shares {pl_share}% vs {labeled_share}%")
        T.check(os.path.join(out, "log.csv") in err, f"{name}: the warning names the log")

sys.exit(T.report())
