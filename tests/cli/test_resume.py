"""`reflabel train --resume`: a run killed with SIGKILL at a random step and
resumed from its last checkpoint ends with the same model file, byte for
byte, and the same log.csv (apart from the seconds column) as the same run
never interrupted; for supervised training (batch norm, SGD momentum),
refpl with a 3-batch memory bank (AdamW), matching the last decoder map
and the hypercolumn, the mean teacher, and refpl's recipe with an EMA
teacher. A write that fails (file size
limit, as a full disk would) leaves the previous checkpoint whole and
resumable. Options that would change the run are
refused with one line. The random kill points are printed with their seed
(RL_TEST_SEED reruns one)."""
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, checkpoint_step, main_args, run, scratch, wait_for_checkpoint  # noqa: E402

EXE = main_args()
# Two threads: the determinism of the OpenMP reductions is part of what is
# tested (clitest.py makes idle threads sleep instead of spinning).
T = Checks("cli_test_resume")
ROOT = scratch("cli-resume")
DATA = os.path.join(ROOT, "data")
DATA_ML = os.path.join(ROOT, "data-multilabel")
STEPS = 30
EVERY = 4
COMMON = ["--data", DATA, "--steps", STEPS, "--batch", 2, "--depth", 2, "--width", 4,
          "--patch", "32x32", "--labeled", 4, "--seed", 3, "--threads", 2,
          "--checkpoint-every", EVERY, "--quiet"]
METHODS = {
    "supervised": ["--method", "supervised", "--norm", "batch", "--optimizer", "sgd",
                   "--lr", "0.01"],
    "refpl": ["--method", "refpl", "--memory", 3, "--pl-warmup", 0.1, "--pl-ramp", 0.1,
              "--ref-count", 64],
    "refpl-hypercolumn": ["--method", "refpl", "--features", "hypercolumn", "--memory", 3,
                          "--pl-warmup", 0.1, "--pl-ramp", 0.1, "--sampling", "per-class",
                          "--refs-per-class", 16],
    "meanteacher": ["--method", "meanteacher", "--norm", "batch", "--pl-warmup", 0.1],
    # the paper's recipe with an EMA teacher: the teacher's tensors are state
    "refpl-teacher": ["--method", "refpl", "--teacher", "ema", "--norm", "batch",
                      "--ref-images", 2, "--strong-views", 1, "--consistency", 1,
                      "--pl-warmup", 0.1, "--pl-ramp", 0.1],
    # the bank's label ids stand for bit masks there: the id table is state too
    "refpl-multilabel": ["--data", DATA_ML, "--method", "refpl", "--memory", 3,
                         "--pl-warmup", 0.1, "--pl-ramp", 0.1, "--ref-count", 64],
}
seed = int(os.environ.get("RL_TEST_SEED", time.time_ns() % 1000000))
rng = random.Random(seed)
print(f"kill points drawn with RL_TEST_SEED={seed}")


def log_rows(run_dir):
    """log.csv without the seconds column (the only one that may differ)."""
    with open(os.path.join(run_dir, "log.csv")) as f:
        return [line.rsplit(",", 1)[0] for line in f.read().splitlines()]


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def start(args, preexec=None):
    return subprocess.Popen([EXE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, preexec_fn=preexec)


def kill_at_random_step(args, run_dir, step_seconds):
    """Starts the run, SIGKILLs it at a random moment after its first
    checkpoint; returns the step of the checkpoint it left, or None when
    every try finished before the kill."""
    for attempt in range(4):
        shutil.rmtree(run_dir, ignore_errors=True)  # no checkpoint of an earlier try
        proc = start(["train", *args, "--out", run_dir])
        if not wait_for_checkpoint(proc, run_dir):
            proc.wait()
            continue
        # Later tries wait less; the last kills right after the first checkpoint.
        time.sleep(rng.uniform(0, (STEPS - EVERY) * step_seconds) * (3 - attempt) / 3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            step = checkpoint_step(run_dir)
            if step is not None and step < STEPS:
                return step
        proc.wait()
    return None


def check_log_repair(cut, whole, step):
    """A kill between writing log.csv and writing the state leaves rows past
    the checkpoint: they are dropped. A log missing rows is refused."""
    ahead = cut + "-log-ahead"
    shutil.copytree(cut, ahead)
    shutil.copy(os.path.join(whole, "log.csv"), os.path.join(ahead, "log.csv"))
    rc, _, err = run(EXE, "train", "--resume", ahead, "--quiet")
    T.check(rc == 0 and log_rows(ahead) == log_rows(whole),
            f"resume with log rows past step {step}: exit {rc}, {err}")
    behind = cut + "-log-behind"
    shutil.copytree(cut, behind)
    with open(os.path.join(behind, "log.csv")) as f:
        lines = f.read().splitlines(keepends=True)
    with open(os.path.join(behind, "log.csv"), "w") as f:
        f.writelines(lines[:step])  # the header and steps 1..step-1
    rc, _, err = run(EXE, "train", "--resume", behind, "--quiet")
    T.check(rc == 1 and f"rows only up to step {step - 1}" in err,
            f"resume with a log short of step {step}: exit {rc}, {err!r}")


rc, _, err = run(EXE, "data", "shapes", "--out", DATA, "--train", 12, "--test", 0, "--size",
                 "32x32", "--seed", 1)
T.check(rc == 0, f"data shapes: {err}")
rc, _, err = run(EXE, "data", "shapes", "--multilabel", "--out", DATA_ML, "--train", 12, "--test",
                 0, "--size", "32x32", "--seed", 1)
T.check(rc == 0, f"data shapes --multilabel: {err}")

for name, extra in METHODS.items():
    args = COMMON + extra
    whole = os.path.join(ROOT, f"{name}-whole")
    t0 = time.time()
    rc, _, err = run(EXE, "train", *args, "--out", whole)
    T.check(rc == 0, f"{name}: uninterrupted run: {err}")
    step_seconds = (time.time() - t0) / STEPS
    cut = os.path.join(ROOT, f"{name}-killed")
    step = kill_at_random_step(args, cut, step_seconds)
    T.check(step is not None, f"{name}: could not kill the run before its end")
    if step is None:
        continue
    if name == "supervised":
        check_log_repair(cut, whole, step)
    rc, _, err = run(EXE, "train", "--resume", cut, "--threads", 2, "--quiet")
    T.check(rc == 0, f"{name}: resume from step {step}: {err}")
    same_model = same_file(os.path.join(whole, "model.safetensors"),
                           os.path.join(cut, "model.safetensors"))
    same_log = log_rows(whole) == log_rows(cut)
    T.check(same_model, f"{name}: killed after the checkpoint of step {step} and resumed: "
                        "the model differs")
    T.check(same_log, f"{name}: log.csv differs after resuming")
    print(f"{name}: killed with checkpoint at step {step} of {STEPS}, resumed: "
          f"model {'identical' if same_model else 'DIFFERENT'}, "
          f"log {'identical' if same_log else 'DIFFERENT'}")

# A run that was already complete resumes to the same files.
whole = os.path.join(ROOT, "supervised-whole")
with open(os.path.join(whole, "model.safetensors"), "rb") as f:
    before = f.read()
rc, _, err = run(EXE, "train", "--resume", whole, "--quiet")
T.check(rc == 0, f"resuming a complete run: {err}")
with open(os.path.join(whole, "model.safetensors"), "rb") as f:
    T.check(f.read() == before, "resuming a complete run changed its model")

# Options that change what is computed are refused; the others are taken.
for bad, word in ((["--lr", "0.5"], "--lr"), (["--memory", "2"], "--memory"),
                  (["--data", ROOT], "--data"), (["--no-augment"], "--no-augment")):
    rc, _, err = run(EXE, "train", "--resume", whole, *bad)
    lines = err.strip().splitlines()
    T.check(rc != 0 and len(lines) == 1 and word in lines[0] and "conflicts" in lines[0],
            f"--resume with {bad}: exit {rc}, {err!r}")
# Later rounds of --rounds train on pseudo-labels no checkpoint keeps.
rounds = os.path.join(ROOT, "rounds")
rc, _, err = run(EXE, "train", *[a if a != STEPS else 4 for a in COMMON], "--rounds", 2,
                 "--out", rounds)
T.check(rc == 0, f"--rounds 2: {err}")
rc, _, err = run(EXE, "train", "--resume", rounds)
T.check(rc == 1 and "only the first round" in err and len(err.strip().splitlines()) == 1,
        f"--resume in round 2: exit {rc}, {err!r}")
rc, _, err = run(EXE, "train", "--resume", os.path.join(ROOT, "nothing-here"))
T.check(rc == 1 and "checkpoint.safetensors" in err and len(err.strip().splitlines()) == 1,
        f"--resume of a folder without a checkpoint: exit {rc}, {err!r}")


def no_big_files():
    """In the child: writes past 20 kB fail with EFBIG (SIGXFSZ ignored),
    as writes to a full disk fail with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


# A failed write keeps the previous checkpoint: the size limit is lowered
# while the run is going, so some checkpoints succeed and the next fails.
args = COMMON + METHODS["refpl"]
full = os.path.join(ROOT, "disk-full")
proc = start(["train", *args, "--out", full], preexec=no_big_files)
if wait_for_checkpoint(proc, full):
    try:
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (20000, 20000))
    except ProcessLookupError:
        pass
_, err = proc.communicate()
if proc.returncode == 0:
    print("the limited run finished before its limit took effect; nothing to check")
else:
    T.check(proc.returncode == 1 and "write failed" in err, f"failed write: exit {proc.returncode}, {err!r}")
    step = checkpoint_step(full)
    T.check(step is not None and step % EVERY == 0, f"checkpoint after a failed write: step {step}")
    T.check(not [f for f in os.listdir(full) if ".tmp." in f], "a temporary file was left behind")
    rc, _, err = run(EXE, "train", "--resume", full, "--quiet")
    T.check(rc == 0, f"resume after a failed write: {err}")
    same_model = same_file(os.path.join(ROOT, "refpl-whole", "model.safetensors"),
                           os.path.join(full, "model.safetensors"))
    T.check(same_model, f"resumed after a failed write at step {step}: the model differs")
    print(f"failed write after the checkpoint of step {step}: previous checkpoint intact, "
          f"resumed, model {'identical' if same_model else 'DIFFERENT'}")

sys.exit(T.report())
