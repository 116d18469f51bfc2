"""Full disks and read-only output folders: train (its checkpoint), predict
(PNG and NIfTI outputs) and pseudolabel must stop with one stderr line naming
the file and the reason, exit status 1, leave the files of an earlier
successful run byte-identical (model.safetensors above all), and leave no
temporary file or staging folder behind.

How the failure is produced depends on what the machine allows (the mode
that ran is printed):
  tmpfs:  the outputs live on a small tmpfs; "full" fills it with a filler
          file until ENOSPC, "read-only" remounts it with `mount -o remount,ro`.
  rlimit: (mount not permitted) "full" runs the command with RLIMIT_FSIZE
          below the size of its outputs and SIGXFSZ ignored, so writes fail
          with EFBIG on the same paths; "read-only" chmods the folder 0555
          (and, when running as root without mount, runs the command as
          nobody, since root ignores the mode bits).
RL_DISK_FULL_MODE=rlimit forces the fallback."""
import os
import re
import resource
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, files_under, main_args, require, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_disk_full")
ROOT = scratch("cli-disk-full")
TRAIN = ["--steps", "4", "--batch", "2", "--depth", "2", "--width", "4", "--quiet",
         "--threads", "1"]
NOBODY = 65534
# Set to None once src/io/nifti.c reports errno on failed writes.
NIFTI_ERRNO_GAP = None

nib, np = require(T, "nibabel", "numpy")


def try_mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    if os.environ.get("RL_DISK_FULL_MODE") == "rlimit":
        return False
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True)
    return p.returncode == 0


DISK = os.path.join(ROOT, "disk")
MODE = "tmpfs" if try_mount_tmpfs(DISK, "4m") else "rlimit"
print(f"mode: {MODE}", flush=True)


def remount(options):
    p = subprocess.run(["mount", "-o", f"remount,{options}", DISK], capture_output=True,
                       text=True)
    T.check(p.returncode == 0, f"remount {options} failed: {p.stderr.strip()}")


def fill_disk(leave_bytes):
    """Writes a filler until the tmpfs is full, then gives back leave_bytes
    (so that small files still fit and a larger one is the first to fail);
    returns its path."""
    filler = os.path.join(DISK, "filler")
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:
            while True:  # the last partial block
                f.write(b"\0" * 512)
        except OSError:
            pass
        f.truncate(max(0, f.tell() - leave_bytes))
    return filler


def limited(max_bytes):
    """preexec_fn: files may not grow past max_bytes; the write fails with
    EFBIG instead of the process being killed by SIGXFSZ."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def as_nobody():
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def run_with(preexec, args):
    p = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=600,
                       stdin=subprocess.DEVNULL, preexec_fn=preexec, restore_signals=False)
    return p.returncode, p.stderr


def snapshot(folder):
    out = {}
    for rel in files_under(folder):
        with open(os.path.join(folder, rel), "rb") as f:
            out[rel] = f.read()
    return out


def leftovers(folder):
    """Hidden temporaries in folder's tree and staging folders beside it."""
    found = [rel for rel in files_under(folder) if os.path.basename(rel).startswith(".")]
    for root, dirs, _ in os.walk(folder):
        found += [os.path.join(root, d) for d in dirs if d.startswith(".")]
    parent, name = os.path.split(folder)
    found += [e for e in os.listdir(parent) if e.startswith(f".{name}.")]
    return found


def expect_clean_failure(what, rc, err, folder, before, reasons, watched, culprit, known_gap):
    lines = [line for line in err.splitlines() if line.strip()]
    print(f"{what}: {err.strip()}", flush=True)
    T.check(rc == 1, f"{what}: exit status {rc}, expected 1 ({err.strip()!r})")
    T.check(len(lines) == 1, f"{what}: expected one stderr line, got {lines!r}")
    T.check(folder in err, f"{what}: {err.strip()!r} should name the file under {folder}")
    T.check(culprit is None or re.search(re.escape(folder) + culprit, err) is not None,
            f"{what}: {err.strip()!r} should name a file matching {culprit}")
    clear = any(r in err for r in reasons) and "/." not in err
    if known_gap and not clear:
        print(f"KNOWN GAP ({known_gap}): {what}: the reason {reasons} is missing or the "
              "message names a hidden temporary", flush=True)
    else:
        T.check(any(r in err for r in reasons), f"{what}: {err.strip()!r} should say {reasons}")
        T.check("/." not in err, f"{what}: {err.strip()!r} names a hidden temporary")
    after = snapshot(folder) if os.path.isdir(folder) else {}
    for rel in watched(before) if watched else before:
        T.check(after.get(rel) == before[rel], f"{what}: {rel} changed or vanished")
    T.check(leftovers(folder) == [], f"{what}: temporaries left: {leftovers(folder)}")


# ---- inputs: a PNG dataset, a model, and NIfTI images for predict ------------
DATA = os.path.join(ROOT, "shapes")
rc, _, err = run(EXE, "data", "shapes", "--out", DATA, "--train", "8", "--test", "4",
                 "--size", "48x48")
T.check(rc == 0, f"data shapes failed: {err}")
NII = os.path.join(ROOT, "nii-in")
os.makedirs(NII)
rng = np.random.default_rng(0)
for i in range(3):
    img = rng.normal(size=(48, 48, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(img, np.eye(4)), os.path.join(NII, f"c{i}_0000.nii.gz"))

FULL = "No space left on device" if MODE == "tmpfs" else "File too large"
READ_ONLY = ["Read-only file system"] if MODE == "tmpfs" else ["Permission denied",
                                                               "Read-only file system"]
# rlimit mode: a limit below each command's smallest output, in bytes
LIMIT = {"train": 8192, "predict": 100, "pseudolabel": 100}


def scenario(name, args_for, first_args_for=None, watched=None, full_culprit=None,
             free_bytes=0, known_gap=None):
    """Runs the command once successfully into DISK/name, then again with the
    disk full and with the folder read-only; each must fail cleanly and leave
    the first run's files as they were."""
    folder = os.path.join(DISK, name)
    rc, _, err = run(EXE, *(first_args_for or args_for)(folder))
    T.check(rc == 0, f"{name}: the first (successful) run failed: {err.strip()}")
    before = snapshot(folder)
    T.check(len(before) > 0, f"{name}: the first run wrote nothing")
    if watched:
        T.check(len(watched(before)) > 0, f"{name}: the first run wrote none of the watched files")

    # full disk
    if MODE == "tmpfs":
        filler = fill_disk(free_bytes)
        rc, err = run_with(None, args_for(folder))
        os.remove(filler)
    else:
        rc, err = run_with(limited(LIMIT[name.split("-")[0]]), args_for(folder))
    expect_clean_failure(f"{name}/full ({MODE})", rc, err, folder, before, [FULL], watched,
                         full_culprit, known_gap)

    # read-only output folder
    if MODE == "tmpfs":
        remount("ro")
        rc, err = run_with(None, args_for(folder))
        remount("rw")
    else:
        mode = os.stat(folder).st_mode
        os.chmod(folder, 0o555)
        rc, err = run_with(as_nobody if os.geteuid() == 0 else None, args_for(folder))
        os.chmod(folder, mode)
    expect_clean_failure(f"{name}/read-only ({MODE})", rc, err, folder, before, READ_ONLY,
                         watched, None, known_gap)


try:
    # 16 kB left: room for the small files train writes first (labeled.txt,
    # config, log), which the rerun may replace, but not for a 33 kB
    # checkpoint, the write that must fail and leave the old ones intact.
    scenario("train", lambda out: ["train", "--data", DATA, "--out", out, *TRAIN],
             watched=lambda files: [f for f in files if f.endswith(".safetensors")],
             full_culprit=r"/[^ :/]+\.safetensors: ", free_bytes=16384)
    model = os.path.join(DISK, "train")
    scenario("predict-png", lambda out: ["predict", "--model", model, "--in",
                                         os.path.join(DATA, "imagesTs"), "--out", out,
                                         "--confidence", "--quiet", "--threads", "1"])
    # src/io/nifti.c drops errno ("write failed", "cannot create <temporary>"),
    # see docs/RELIABILITY.md, "Full disks"; everything else is asserted.
    scenario("predict-nifti", lambda out: ["predict", "--model", model, "--in", NII, "--out",
                                           out, "--confidence", "--quiet", "--threads", "1"],
             known_gap=NIFTI_ERRNO_GAP)
    pl = ["pseudolabel", "--model", model, "--data", DATA, "--labeled", "3", "--quiet",
          "--threads", "1"]
    # the second run must be allowed to write into the first one's folder
    scenario("pseudolabel", lambda out: [*pl, "--out", out, "--force"],
             first_args_for=lambda out: [*pl, "--out", out])
finally:
    if MODE == "tmpfs":
        subprocess.run(["umount", DISK], capture_output=True)
shutil.rmtree(ROOT, ignore_errors=True)
sys.exit(T.report())
