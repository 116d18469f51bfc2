"""reflabel under MPI (include/reflabel/dist.h): `predict` and `pseudolabel`
(with and without --export-nnunet) with 2 ranks write the files of one
process byte for byte; a bad case on one rank stops both ranks within
seconds with one line naming it, and pseudolabel then leaves no output
folder; ranks that see different cases stop; a command that cannot share
its work refuses to run in several ranks instead of running whole in each.

Built without MPI (RL_TEST_MPIEXEC empty), the same binary started with a
launcher's variables in its environment must still run as one process."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import clitest  # noqa: E402
from clitest import Checks, main_args, run, scratch, files_under  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

EXE = main_args()
T = Checks("cli_test_mpi")
ROOT = scratch("cli-mpi")
MPIEXEC = os.environ.get("RL_TEST_MPIEXEC", "")



def mpirun_apps(*apps, timeout=120):
    return clitest.mpirun_apps(MPIEXEC, EXE, *apps, timeout=timeout)


def mpirun(n, *args, timeout=120):
    return mpirun_apps((n, args), timeout=timeout)


def read_all(folder):
    return {f: open(os.path.join(folder, f), "rb").read() for f in files_under(folder)}


def tree_hashes(folder):
    """Every file under folder (relative path) with the SHA-256 of its bytes."""
    return {f: hashlib.sha256(data).hexdigest() for f, data in read_all(folder).items()}


def copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return dst


def leftovers(folder):
    """Staging folders (".NAME.tmp.PID") left in folder."""
    return [f for f in os.listdir(folder) if f.startswith(".") and ".tmp." in f]


# pseudolabel: 3 of the 12 training cases keep their labels, 9 are queries;
# without and with the margin threshold, the nnU-Net export and its copies
PL_PLAIN = ["--labeled", "3", "--threads", "1", "--quiet"]
PL_EXPORT = ["--labeled", "3", "--min-confidence", "0.1", "--threads", "1", "--quiet"]


def pseudolabel_args(dataset, out, extra, export=None):
    return (["pseudolabel", "--model", run_dir, "--data", dataset, "--out", out, *extra] +
            (["--export-nnunet", export] if export else []))


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
pl_one, pl_one_x, pl_one_exp = (os.path.join(ROOT, n) for n in ("pl-one", "pl-one-x", "pl-one-exp"))
rc, pl_one_stdout, err = run(EXE, *pseudolabel_args(data, pl_one, PL_PLAIN))
T.check(rc == 0 and len(files_under(pl_one)) == 19, f"pseudolabel in one process: {err}")
rc, pl_one_x_stdout, err = run(EXE, *pseudolabel_args(data, pl_one_x, PL_EXPORT, pl_one_exp))
T.check(rc == 0 and os.path.isfile(os.path.join(pl_one_exp, "dataset.json")),
        f"pseudolabel --export-nnunet in one process: {err}")
# the queries in the dataset's order, as the ranks deal them
queries = sorted(f[:-4] for f in files_under(pl_one) if f.endswith(".png") and "_confidence" not in f)

if not MPIEXEC:
    # The fallback: a build without MPI ignores a launcher's variables.
    env = dict(os.environ, OMPI_COMM_WORLD_SIZE="2", PMI_SIZE="2")
    out = os.path.join(ROOT, "fallback")
    p = subprocess.run([EXE, "predict", "--model", run_dir, "--in", os.path.join(data, "imagesTs"),
                        "--out", out, "--confidence", "--threads", "1", "--quiet"],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    T.check(p.returncode == 0 and read_all(out) == read_all(one),
            f"without MPI, a launcher's environment changes nothing: {p.stderr}")
    out = os.path.join(ROOT, "fallback-pl")
    p = subprocess.run([EXE, *pseudolabel_args(data, out, PL_PLAIN)], capture_output=True,
                       text=True, env=env, stdin=subprocess.DEVNULL)
    T.check(p.returncode == 0 and tree_hashes(out) == tree_hashes(pl_one),
            f"without MPI, pseudolabel ignores a launcher's environment: {p.stderr}")
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

# pseudolabel under 2 ranks: the bank built on rank 0 and broadcast, the
# queries dealt round-robin, the counts summed for the metrics; every file
# (labels, margins, metrics JSON, the export's copies and dataset.json) and
# the printed agreement are those of one process.
pl_two, pl_two_x, pl_two_exp = (os.path.join(ROOT, n) for n in ("pl-two", "pl-two-x", "pl-two-exp"))
rc, out, err, _ = mpirun(2, *pseudolabel_args(data, pl_two, PL_PLAIN))
T.check(rc == 0 and out == pl_one_stdout, f"pseudolabel under 2 ranks exits 0, prints once: {err}")
T.check(tree_hashes(pl_two) == tree_hashes(pl_one),
        f"pseudolabel: 2 ranks write the files of one process ({len(files_under(pl_two))} files)")
rc, out, err, _ = mpirun(2, *pseudolabel_args(data, pl_two_x, PL_EXPORT, pl_two_exp))
T.check(rc == 0 and out == pl_one_x_stdout, f"pseudolabel --export-nnunet under 2 ranks: {err}")
T.check(tree_hashes(pl_two_x) == tree_hashes(pl_one_x) and
        tree_hashes(pl_two_exp) == tree_hashes(pl_one_exp),
        f"pseudolabel --export-nnunet: 2 ranks write the files of one process "
        f"({len(files_under(pl_two_x))} + {len(files_under(pl_two_exp))} files)")
T.check(not leftovers(ROOT), f"no staging folder left: {leftovers(ROOT)}")

# A damaged query that only rank 1 reads (the 2nd query goes to rank 1):
# both ranks stop within seconds, one line, and neither folder appears.
pl_bad = copy_dataset(data, os.path.join(ROOT, "pl-bad"))
bad_image = os.path.join(pl_bad, "imagesTr", queries[1] + "_0000.png")
with open(bad_image, "wb") as f:
    f.write(b"not a png")
bad_out, bad_exp = os.path.join(ROOT, "pl-bad-out"), os.path.join(ROOT, "pl-bad-exp")
rc, _, err, seconds = mpirun(2, *pseudolabel_args(pl_bad, bad_out, PL_EXPORT, bad_exp))
ours = [line for line in err.splitlines() if line.startswith("reflabel")]
T.check(rc != 0 and seconds < 30, f"pseudolabel: a bad query on rank 1 fails the job quickly ({seconds:.1f} s)")
T.check(len(ours) == 1 and "rank 1" in ours[0] and queries[1] + "_0000.png" in ours[0],
        f"pseudolabel: one line names the rank and the file: {ours}")
T.check(not os.path.exists(bad_out) and not os.path.exists(bad_exp) and not leftovers(ROOT),
        f"pseudolabel: no output folder after a failure: {os.listdir(ROOT)}")

# A node with another copy of the data (one query case fewer): every rank
# stops before the first round instead of waiting in one another never reaches.
pl_fewer = copy_dataset(data, os.path.join(ROOT, "pl-fewer"))
os.remove(os.path.join(pl_fewer, "imagesTr", queries[-1] + "_0000.png"))
os.remove(os.path.join(pl_fewer, "labelsTr", queries[-1] + ".png"))
with open(os.path.join(pl_fewer, "dataset.json")) as f:
    meta = json.load(f)
meta["numTraining"] -= 1
with open(os.path.join(pl_fewer, "dataset.json"), "w") as f:
    json.dump(meta, f)
mixed_out = os.path.join(ROOT, "pl-mixed")
rc, _, err, seconds = mpirun_apps((1, pseudolabel_args(data, mixed_out, PL_PLAIN)),
                                  (1, pseudolabel_args(pl_fewer, mixed_out, PL_PLAIN)))
ours = [line for line in err.splitlines() if line.startswith("reflabel")]
T.check(rc != 0 and len(ours) == 1 and "rank 1" in ours[0] and
        "11 training cases (8 to pseudo-label) here, 12 (9) on rank 0" in ours[0] and seconds < 30,
        f"pseudolabel: ranks with different cases stop: {ours}")
T.check(not os.path.exists(mixed_out) and not leftovers(ROOT), "pseudolabel: nothing written")

# A failure of rank 0 alone (it alone stages the output): one line, every rank stops.
rc, _, err, seconds = mpirun(2, *pseudolabel_args(data, pl_one, PL_PLAIN))
ours = [line for line in err.splitlines() if line.startswith("reflabel")]
T.check(rc != 0 and len(ours) == 1 and "folder is not empty" in ours[0] and seconds < 30,
        f"pseudolabel: a non-empty --out stops every rank: {ours}")

# A command that does not share its work refuses several ranks.
rc, _, err, _ = mpirun(2, "evaluate", "--pred", two, "--gt", os.path.join(data, "labelsTs"),
                       )
ours = [line for line in err.splitlines() if line.startswith("reflabel")]
T.check(rc != 0 and len(ours) == 1 and "MPI" in ours[0], f"evaluate under 2 ranks refuses: {ours}")

sys.exit(T.report())
