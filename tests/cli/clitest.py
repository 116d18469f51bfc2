"""Small harness for the end-to-end tests of the reflabel command."""
import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

# The commands run with 2 threads on machines that CI and other jobs share;
# an idle OpenMP thread that spins instead of sleeping made a 2-thread run
# many times slower there (libgomp reads this when the process starts, so the
# command cannot set it for itself).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Settings of the machine's environment that make OpenBLAS or libgomp print to
# stderr ("Core: Haswell", the OpenMP environment block) would fail every
# check that stderr holds exactly one line; they are not the command's output.
# OPENBLAS_CORETYPE and OMP_NUM_THREADS stay: they change the floating-point
# path, not the output, and the bounds are measured across them
# (docs/TESTING.md).
for _var in ("OPENBLAS_VERBOSE", "OMP_DISPLAY_ENV", "OMP_DISPLAY_AFFINITY"):
    os.environ.pop(_var, None)


class Checks:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}", flush=True)

    def report(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 and self.passed > 0 else 1


def require(checks, *modules):
    """Imports the oracle modules a test needs (numpy, nibabel, PIL.Image...)
    and returns them in order. They are test dependencies that
    scripts/setup.sh installs, so a missing one fails the test, with one
    line, instead of skipping it."""
    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as e:
        checks.check(False, f"{e.name} missing: run with /usr/bin/python3 (bash scripts/setup.sh "
                            f"installs it)")
        sys.exit(checks.report())


def scratch(name):
    root = os.environ.get("RL_TEST_TMP") or tempfile.gettempdir()
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"{name}-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def run(exe, *args, timeout=900):
    p = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def files_under(path):
    out = []
    for root, _, files in os.walk(path):
        out += [os.path.relpath(os.path.join(root, f), path) for f in files]
    return sorted(out)


def main_args():
    if len(sys.argv) < 2:
        sys.exit("usage: test.py REFLABEL_EXE [BUILD_DIR]")
    return sys.argv[1]


def wait_for_checkpoint(proc, run_dir, timeout=120):
    """Waits until the run started as proc has saved a checkpoint (written
    under a temporary name and renamed, so one that exists is whole); False
    if it ended or timeout seconds passed first."""
    import time
    path = os.path.join(run_dir, "checkpoint.safetensors")
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(path):
            return True
        time.sleep(0.002)
    return False


def model_weights(run_dir):
    """Every float tensor of RUN_DIR/model.safetensors, in name order, as one
    float64 numpy vector."""
    import numpy as np
    with open(os.path.join(run_dir, "model.safetensors"), "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    parts = []
    for name in sorted(k for k in header if k != "__metadata__"):
        if header[name]["dtype"] == "F32":
            begin, end = header[name]["data_offsets"]
            parts.append(np.frombuffer(blob[8 + n + begin:8 + n + end], dtype=np.float32))
    return np.concatenate(parts).astype(np.float64)


def checkpoint_step(run_dir):
    """The step of a complete RUN_DIR/checkpoint.safetensors, read with the
    format's own rule (u64 header length, JSON header, data) rather than our
    reader; None when the file is missing or does not hold all its data."""
    path = os.path.join(run_dir, "checkpoint.safetensors")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    if len(blob) != 8 + n + end:
        return None
    begin = 8 + n + header["trainer.counters"]["data_offsets"][0]
    return struct.unpack("<q", blob[begin:begin + 8])[0]


def mpi_env():
    """The environment of ranks started by mpirun_apps.

    Open MPI keeps allocations until exit by design, in plugins it unloads
    before LeakSanitizer looks (so no suppression can name them): in the
    sanitizer build the ranks run without leak detection, with every other
    check on. reflabel's own leaks are caught by the one-process runs of the
    same commands, which run with it. LeakSanitizer is on by default, so a
    sanitizer build run by hand (ctest with no ASAN_OPTIONS) needs the switch
    as much as scripts/test.sh; a build without sanitizers ignores it."""
    env = dict(os.environ)
    opts = [o for o in env.get("ASAN_OPTIONS", "").split(":")
            if o and not o.startswith("detect_leaks=")]
    env["ASAN_OPTIONS"] = ":".join(opts + ["detect_leaks=0"])
    return env


def mpi_command(mpiexec, exe, *apps):
    """One launch of several app contexts, each (ranks, args); root in CI,
    and more ranks than cores on a 2-core machine."""
    cmd = [mpiexec, "--allow-run-as-root", "--oversubscribe"]
    for i, (n, args) in enumerate(apps):
        cmd += ([":"] if i else []) + ["-np", str(n), exe, *map(str, args)]
    return cmd


def mpirun_apps(mpiexec, exe, *apps, timeout=120):
    """Runs mpi_command; returns (exit status, stdout, stderr, seconds)."""
    import time
    t0 = time.monotonic()
    p = subprocess.run(mpi_command(mpiexec, exe, *apps), capture_output=True, text=True,
                       timeout=timeout, env=mpi_env(), stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0
