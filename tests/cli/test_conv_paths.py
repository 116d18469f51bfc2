"""The two convolution paths train the same model. `reflabel train` at one
seed with RL_CONV=im2col (im2col + OpenBLAS, the reference) and RL_CONV=dnnl
(oneDNN, the default of builds that have it): every logged loss and the
final weights agree within bounds set from their measured spread
(docs/TESTING.md), for AdamW and for SGD with momentum. In a build without
oneDNN, RL_CONV=dnnl is refused with one line. (Resume is bit for bit within
each path: cli_test_resume runs on the default path, cli_test_resume_im2col
on im2col.)"""
import csv
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import clitest  # noqa: E402
from clitest import Checks, main_args, require, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_conv_paths")
(np,) = require(T, "numpy")
ROOT = scratch("cli-conv-paths")
DATA = os.path.join(ROOT, "data")
COMMON = ["--data", DATA, "--steps", 30, "--batch", 4, "--depth", 3, "--width", 8,
          "--lr", 0.01, "--seed", 7, "--threads", 1, "--checkpoint-every", 0, "--quiet"]
# optimizer: (bound on the relative L2 distance of the weights, on the
# relative difference of each logged loss). Measured on 12 paths (im2col with
# 4 OpenBLAS kernel sets, oneDNN with AVX-512 and AVX2, 1 and 2 threads each),
# im2col against oneDNN: AdamW at most 1.1e-6 and 0 (the log's 6 digits); SGD
# at most 1.7e-4 and 8.3e-5.
BOUNDS = {"adamw": (1e-5, 1e-4), "sgd": (1e-3, 1e-3)}


def train(conv, optimizer):
    out = os.path.join(ROOT, f"{conv}-{optimizer}")
    env = dict(os.environ, RL_CONV=conv)
    p = subprocess.run([EXE, "train", "--out", out, "--optimizer", optimizer,
                        *map(str, COMMON)], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL)
    return p, out


def losses(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as f:
        return np.array([float(r["loss"]) for r in csv.DictReader(f)])


rc, _, err = run(EXE, "data", "shapes", "--out", DATA, "--train", 24, "--test", 4, "--size",
                 "32x32", "--seed", 3)
T.check(rc == 0, f"data shapes: {err}")

probe, _ = train("dnnl", "adamw")
if probe.returncode != 0:
    lines = probe.stderr.strip().splitlines()
    T.check(len(lines) == 1 and "RL_CONV" in lines[0] and "not in this build" in lines[0],
            f"a build without oneDNN refuses RL_CONV=dnnl with one line: {probe.stderr!r}")
    p, _ = train("im2col", "adamw")
    T.check(p.returncode == 0, f"im2col trains: {p.stderr}")
    print("built without oneDNN: only the im2col path is tested")
    sys.exit(T.report())

for optimizer, (w_bound, loss_bound) in BOUNDS.items():
    runs = {}
    for conv in ("im2col", "dnnl"):
        p, out = train(conv, optimizer)
        T.check(p.returncode == 0, f"{conv} {optimizer}: {p.stderr}")
        runs[conv] = out
    if T.failed:
        break
    wa, wb = clitest.model_weights(runs["im2col"]), clitest.model_weights(runs["dnnl"])
    dw = float(np.linalg.norm(wa - wb) / np.linalg.norm(wa))
    la, lb = losses(runs["im2col"]), losses(runs["dnnl"])
    dl = float(np.max(np.abs(la - lb) / np.abs(la)))
    print(f"{optimizer}: weights {dw:.3g} apart (bound {w_bound:g}), losses at most {dl:.3g} "
          f"(bound {loss_bound:g})")
    T.check(len(la) == len(lb) == 30, f"{optimizer}: 30 logged steps on each path")
    T.check(dw <= w_bound, f"{optimizer}: weights {dw:.3g} apart, bound {w_bound:g}")
    T.check(dl <= loss_bound, f"{optimizer}: a logged loss {dl:.3g} apart, bound {loss_bound:g}")
sys.exit(T.report())
