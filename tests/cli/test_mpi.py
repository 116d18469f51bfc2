"""reflabel under MPI (include/reflabel/dist.h): `predict` with 2 ranks writes
the files of one process byte for byte; a bad case on one rank stops both
ranks within seconds with one line naming it; a command that cannot share
its work refuses to run in several ranks instead of running whole in each.

Built without MPI (RL_TEST_MPIEXEC empty), the same binary started with a
launcher's variables in its environment must still run as one process."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, run, scratch, files_under  # noqa: E402
import subprocess  # noqa: E402

EXE = main_args()
T = Checks("cli_test_mpi")
ROOT = scratch("cli-mpi")
MPIEXEC = os.environ.get("RL_TEST_MPIEXEC", "")



def mpi_env():
    env = dict(os.environ)
    # Open MPI keeps allocations until exit by design, in plugins it unloads
    # before LeakSanitizer looks (so no suppression can name them): in the
    # sanitizer build the ranks run without leak detection, with every other
    # check on. reflabel's own leaks in predict are caught by the one-process
    # run below, which runs with it.
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"].replace("detect_leaks=1", "detect_leaks=0")
    return env


def mpirun_apps(*apps, timeout=120):
    """Runs one launch of several app contexts, each (ranks, args); root in
    CI, and more ranks than cores on a 2-core machine."""
    cmd = [MPIEXEC, "--allow-run-as-root", "--oversubscribe"]
    for i, (n, args) in enumerate(apps):
        cmd += ([":"] if i else []) + ["-np", str(n), EXE, *map(str, args)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=mpi_env(),
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def mpirun(n, *args, timeout=120):
    return mpirun_apps((n, args), timeout=timeout)


def read_all(folder):
    return {f: open(os.path.join(folder, f), "rb").read() for f in files_under(folder)}


data, run_dir = os.path.join(ROOT, "shapes"), os.path.join(ROOT, "run")
rc, _, err = run(EXE, "data", "shapes", "--out", data, "--train", "12", "--test", "7", "--size", "32x32")
T.check(rc == 0, f"data shapes: {err}")
rc, _, err = run(EXE, "train", "--data", data, "--out", run_dir, "--steps", "6", "--depth", "2",
                 "--width", "8", "--threads", "1", "--quiet")
T.check(rc == 0, f"train: {err}")
one = os.path.join(ROOT, "one")
rc, _, err = run(EXE, "predict", "--model", run_dir, "--in", os.path.join(data, "imagesTs"),
                 "--out", one, "--confidence", "--threads", "1", "--quiet")
T.check(rc == 0 and len(files_under(one)) == 14, f"predict in one process: {err}")

if not MPIEXEC:
    # The fallback: a build without MPI ignores a launcher's variables.
    env = dict(os.environ, OMPI_COMM_WORLD_SIZE="2", PMI_SIZE="2")
    out = os.path.join(ROOT, "fallback")
    p = subprocess.run([EXE, "predict", "--model", run_dir, "--in", os.path.join(data, "imagesTs"),
                        "--out", out, "--confidence", "--threads", "1", "--quiet"],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    T.check(p.returncode == 0 and read_all(out) == read_all(one),
            f"without MPI, a launcher's environment changes nothing: {p.stderr}")
    sys.exit(T.report())

# 2 ranks: every file of the one-process run, byte for byte.
two = os.path.join(ROOT, "two")
rc, _, err, _ = mpirun(2, "predict", "--model", run_dir, "--in", os.path.join(data, "imagesTs"),
                       "--out", two, "--confidence", "--threads", "1", "--quiet")
T.check(rc == 0, f"predict under 2 ranks exits 0: {err}")
T.check(read_all(two) == read_all(one),
        f"2 ranks write the files of one process byte for byte ({len(files_under(two))} files)")

# A bad case dealt to rank 1 (cases go round-robin: the 2nd, 4th... are rank 1's).
bad = os.path.join(ROOT, "bad")
os.makedirs(bad)
names = sorted(os.listdir(os.path.join(data, "imagesTs")))
for i, name in enumerate(names):
    with open(os.path.join(data, "imagesTs", name), "rb") as f:
        content = f.read()
    with open(os.path.join(bad, name), "wb") as f:
        f.write(b"not a png" if i == 3 else content)
rc, _, err, seconds = mpirun(2, "predict", "--model", run_dir, "--in", bad, "--out",
                             os.path.join(ROOT, "bad-out"), "--threads", "1", "--quiet")
ours = [line for line in err.splitlines() if line.startswith("reflabel")]
T.check(rc != 0, "a bad case on rank 1 fails the job")
T.check(len(ours) == 1 and "rank 1" in ours[0] and names[3] in ours[0],
        f"one line names the rank and the file: {ours}")
T.check(seconds < 30, f"both ranks stopped within seconds ({seconds:.1f} s)")

# Ranks that see different folders (a node with another copy of the data):
# every rank stops instead of waiting in a round another never reaches.
fewer = os.path.join(ROOT, "fewer")
os.makedirs(fewer)
for name in names[:-1]:
    with open(os.path.join(data, "imagesTs", name), "rb") as f, open(os.path.join(fewer, name), "wb") as g:
        g.write(f.read())
common = ["predict", "--model", run_dir, "--out", os.path.join(ROOT, "mixed-out"), "--threads", "1",
          "--quiet"]
rc, _, err, seconds = mpirun_apps((1, [*common, "--in", os.path.join(data, "imagesTs")]),
                                  (1, [*common, "--in", fewer]))
ours = [line for line in err.splitlines() if line.startswith("reflabel")]
T.check(rc != 0 and len(ours) == 1 and "6 cases here, 7 on rank 0" in ours[0] and seconds < 30,
        f"ranks with different case counts stop: {ours}")

# A command that does not share its work refuses several ranks.
rc, _, err, _ = mpirun(2, "train", "--data", data, "--out", os.path.join(ROOT, "run2"),
                       "--steps", "2", "--quiet")
ours = [line for line in err.splitlines() if line.startswith("reflabel")]
T.check(rc != 0 and len(ours) == 1 and "MPI" in ours[0] and not os.path.exists(
    os.path.join(ROOT, "run2", "model.safetensors")), f"train under 2 ranks refuses: {ours}")

sys.exit(T.report())
