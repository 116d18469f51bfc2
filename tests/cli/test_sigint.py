"""Ctrl-C during `reflabel train`: the first SIGINT (or SIGTERM) lets the
step finish, saves a resumable checkpoint, says so in one line and exits
with status 130; resuming it ends with the same model file as a run never
interrupted. A second SIGINT exits at once, without the save, and leaves
no partial file under a final name. Signal times are random and printed
with their seed (RL_TEST_SEED reruns one)."""
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, checkpoint_step, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_sigint")
ROOT = scratch("cli-sigint")
DATA = os.path.join(ROOT, "data")
STEPS = 40
FAST = ["--data", DATA, "--steps", STEPS, "--batch", 2, "--depth", 2, "--width", 4, "--patch",
        "32x32", "--seed", 5, "--threads", 1, "--checkpoint-every", 0]
# Steps of over half a second: long enough to signal twice inside one.
SLOW = ["--data", DATA, "--steps", 1000, "--batch", 8, "--depth", 2, "--width", 16, "--patch",
        "128x128", "--threads", 1, "--checkpoint-every", 0]
seed = int(os.environ.get("RL_TEST_SEED", time.time_ns() % 1000000))
rng = random.Random(seed)
print(f"signal times drawn with RL_TEST_SEED={seed}")


def start_training(args, run_dir):
    """Starts a run (not --quiet) and returns once its first line says that
    training, and with it the signal handling, has begun."""
    proc = subprocess.Popen([EXE, "train", *map(str, args), "--out", run_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    first = proc.stderr.readline()
    return proc, first


rc, _, err = run(EXE, "data", "shapes", "--out", DATA, "--train", 8, "--test", 0, "--size",
                 "32x32", "--seed", 2)
T.check(rc == 0, f"data shapes: {err}")

whole = os.path.join(ROOT, "whole")
t0 = time.time()
rc, _, err = run(EXE, "train", *FAST, "--out", whole, "--quiet")
T.check(rc == 0, f"uninterrupted run: {err}")
run_seconds = time.time() - t0

# One SIGINT (then one SIGTERM): save, one line, status 130, resumable.
for sig in (signal.SIGINT, signal.SIGTERM):
    name = signal.Signals(sig).name
    for attempt in range(4):
        cut = os.path.join(ROOT, f"{name}-{attempt}")
        proc, first = start_training(FAST, cut)
        T.check(first.startswith("reflabel train: supervised"), f"{name}: first line {first!r}")
        # Later tries wait less; the last signals as soon as training starts.
        time.sleep(rng.uniform(0, 0.5 * run_seconds) * (3 - attempt) / 3)
        proc.send_signal(sig)
        rest = proc.stderr.read()
        proc.wait()
        if proc.returncode != 0:
            break
    m = re.search(r"interrupted at step (\d+); continue with: reflabel train --resume", rest)
    T.check(proc.returncode == 130 and m and len(rest.strip().splitlines()) == 1,
            f"{name}: exit {proc.returncode}, {rest!r}")
    if not m:
        continue
    step = int(m.group(1))
    saved = checkpoint_step(cut)
    T.check(saved == step, f"{name}: checkpoint holds step {saved}, not {step}")
    with open(os.path.join(cut, "log.csv")) as f:
        T.check(len(f.read().splitlines()) == step + 1, f"{name}: log.csv rows != {step}")
    rc, _, err = run(EXE, "train", "--resume", cut, "--quiet")
    T.check(rc == 0, f"{name}: resume: {err}")
    with open(os.path.join(whole, "model.safetensors"), "rb") as a, \
            open(os.path.join(cut, "model.safetensors"), "rb") as b:
        T.check(a.read() == b.read(), f"{name} at step {step}, resumed: the model differs")
    print(f"{name} at step {step} of {STEPS}: saved, resumed, model identical")

# Two SIGINTs inside the first (long) step: the second ends the process at
# once, so the first never gets to its save. The pause between them lets
# the first be delivered on its own (pending signals of one kind merge).
slow = os.path.join(ROOT, "twice")
proc, first = start_training(SLOW, slow)
time.sleep(rng.uniform(0.0, 0.1))
proc.send_signal(signal.SIGINT)
time.sleep(0.1)
proc.send_signal(signal.SIGINT)
t0 = time.time()
rest = proc.stderr.read()
proc.wait()
gone = time.time() - t0
T.check(proc.returncode == 130, f"second SIGINT: exit {proc.returncode}, {rest!r}")
T.check("interrupted at step" not in rest, f"second SIGINT: the save ran anyway: {rest!r}")
T.check(not os.path.exists(os.path.join(slow, "checkpoint.safetensors")) or checkpoint_step(slow),
        "second SIGINT left an incomplete checkpoint.safetensors")
print(f"second SIGINT: exited {gone:.3f} s after it, without saving")

sys.exit(T.report())
