"""Killed writers: every file reflabel writes must appear complete or not at
all. Each writing command (data shapes, data atlas, convert, train, predict,
pseudolabel with --export-nnunet) first runs to completion (its duration T
and the set of files it writes), then is started again in a fresh folder
and SIGKILLed at a seeded random moment in (0.02 T, 0.98 T), three times.
After each kill, every file under a final name must parse completely (PNG
with Pillow, NIfTI with nibabel, JSON, safetensors by its header and size,
CSV by its rows), and any leftover must be a hidden temporary of the
documented forms:
  .NAME.tmp<pid><ext>   a file being written (src/core/fileio.c)
  .NAME.tmp.<pid>       pseudolabel's staging folder (src/cli/cmd_pseudolabel.c)
pseudolabel publishes its output folders whole, so a killed run leaves each
of them absent or with every file of the complete run."""
import atexit
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, require, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_killed_writers")
# A kill stops the process, not the machine: what reaches the page cache is
# what the next reader sees, so fsync plays no part here. The work goes to
# /dev/shm when there is one (a tmpfs: each of the ~2,000 fsyncs is free
# there, which keeps the test short on a busy disk).
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    os.environ["RL_TEST_TMP"] = "/dev/shm"
ROOT = scratch("reflabel-cli-killed")
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)  # memory, when on /dev/shm
KILLS_PER_COMMAND = 3
RNG = random.Random(20261126)  # the kill moments are reproducible

nib, np, Image = require(T, "nibabel", "numpy", "PIL.Image")

TEMP_FILE = re.compile(r"^\..+\.tmp\d+(\.[A-Za-z0-9.]+)?$")
STAGING_DIR = re.compile(r"^\..+\.tmp\.\d+$")


# ---- independent readers: each returns None when the file is complete -------

def check_png(path):
    with Image.open(path) as im:
        im.load()  # decodes every row: a truncated IDAT raises


def check_nifti(path):
    img = nib.load(path)
    data = np.asarray(img.dataobj)  # inflates all of a .nii.gz: truncation raises
    if data.size != int(np.prod(img.shape)):
        raise ValueError("data shorter than the header's shape")


def check_json(path):
    with open(path) as f:
        json.load(f)


def check_safetensors(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
              default=0)
    if 8 + n + end != size:
        raise ValueError(f"header says {8 + n + end} bytes, file has {size}")


def check_csv(path):
    with open(path) as f:
        text = f.read()
    if not text.endswith("\n"):
        raise ValueError("last line is cut")
    rows = [line.split(",") for line in text.splitlines()]
    if len(rows) < 2 or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("rows of unequal length")


def check_text(path):
    with open(path) as f:
        text = f.read()
    if not text or not text.endswith("\n"):
        raise ValueError("empty or cut")


READERS = [(".nii.gz", check_nifti), (".nii", check_nifti), (".png", check_png),
           (".json", check_json), (".safetensors", check_safetensors), (".csv", check_csv),
           (".txt", check_text)]


def validate_tree(what, top):
    """Checks every file under top; returns (final files, temporaries)."""
    finals, temps = [], []
    for root, dirs, files in os.walk(top):
        rel_root = os.path.relpath(root, top)
        for d in list(dirs):
            if d.startswith("."):
                T.check(STAGING_DIR.match(d) is not None,
                        f"{what}: hidden folder {os.path.join(rel_root, d)} is not a staging name")
                temps.append(os.path.join(rel_root, d))
                dirs.remove(d)  # a staging folder's content is unfinished by definition
        for name in files:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if name.startswith("."):
                T.check(TEMP_FILE.match(name) is not None,
                        f"{what}: hidden file {rel} is not a temporary name")
                temps.append(rel)
                continue
            reader = next((r for ending, r in READERS if name.endswith(ending)), None)
            if reader is None:
                T.check(False, f"{what}: {rel}: no reader for this kind of file")
                continue
            try:
                reader(os.path.join(root, name))
                ok, why = True, ""
            except Exception as e:  # any failure to parse is a truncated file
                ok, why = False, f"{type(e).__name__}: {e}"
            T.check(ok, f"{what}: {rel} is incomplete under its final name ({why})")
            finals.append(rel)
    return sorted(finals), temps


def make_retouch_source(top):
    """A tiny RETOUCH tree: 2 Cirrus + 1 Topcon cases, MetaImage uchar."""
    rng = np.random.default_rng(1)
    for vendor, case in (("Cirrus", "TRAIN001"), ("Cirrus", "TRAIN002"), ("Topcon", "TRAIN003")):
        d = os.path.join(top, vendor, case)
        os.makedirs(d)
        for stem, values in (("oct", 256), ("reference", 4)):
            data = rng.integers(0, values, size=(12, 48, 64), dtype=np.uint8)
            data.tofile(os.path.join(d, stem + ".raw"))
            with open(os.path.join(d, stem + ".mhd"), "w") as f:
                f.write("ObjectType = Image\nNDims = 3\nBinaryData = True\n"
                        "BinaryDataByteOrderMSB = False\nDimSize = 64 48 12\n"
                        "ElementSpacing = 0.01 0.004 0.05\nElementType = MET_UCHAR\n"
                        f"ElementDataFile = {stem}.raw\n")


# ---- inputs the writers need --------------------------------------------------

SHAPES = os.path.join(ROOT, "shapes")
rc, _, err = run(EXE, "data", "shapes", "--out", SHAPES, "--train", "24", "--test", "8",
                 "--size", "48x48")
T.check(rc == 0, f"data shapes failed: {err}")
MODEL = os.path.join(ROOT, "model")
rc, _, err = run(EXE, "train", "--data", SHAPES, "--out", MODEL, "--steps", "4", "--batch", "2",
                 "--depth", "2", "--width", "4", "--quiet", "--threads", "1")
T.check(rc == 0, f"train (model for predict/pseudolabel) failed: {err}")
RETOUCH = os.path.join(ROOT, "retouch-src")
make_retouch_source(RETOUCH)
if T.failed:
    sys.exit(T.report())

# Streaming over many cases (issue 5, shortened): 200 slices pseudo-labeled in
# one run. In the sanitizer build LeakSanitizer fails the process (non-zero
# exit) if any per-case buffer is not given back; bench/pseudolabel_10k.sh
# measures the peak RSS of the full-size runs.
MANY = os.path.join(ROOT, "many")
rc, _, err = run(EXE, "data", "shapes", "--out", MANY, "--train", "200", "--test", "0",
                 "--size", "16x16", "--seed", "3")
T.check(rc == 0, f"data shapes (200 slices) failed: {err}")
rc, _, err = run(EXE, "pseudolabel", "--model", MODEL, "--data", MANY, "--out", MANY + "-pl",
                 "--labeled", "10", "--sampling", "per-class", "--per-class", "16", "--quiet",
                 "--threads", "1")
T.check(rc == 0, f"pseudolabel over 200 slices failed (a leak, under ASan?): {err.strip()}")
written = os.listdir(MANY + "-pl") if os.path.isdir(MANY + "-pl") else []
T.check(len(written) == 2 * 190 + 1,
        f"pseudolabel over 200 slices wrote {len(written)} files, expected 381")

# name -> arguments with {out} for the output folder (the folder it creates)
COMMANDS = {
    "data-shapes": ["data", "shapes", "--out", "{out}", "--train", "60", "--test", "20",
                    "--size", "48x48"],
    "convert-retouch": ["convert", "retouch", "--in", RETOUCH, "--out", "{out}"],
    "train": ["train", "--data", SHAPES, "--out", "{out}", "--steps", "30", "--batch", "2",
              "--depth", "2", "--width", "4", "--checkpoint-every", "3", "--quiet",
              "--threads", "1"],
    "predict": ["predict", "--model", MODEL, "--in", os.path.join(SHAPES, "imagesTs"), "--out",
                "{out}", "--confidence", "--quiet", "--threads", "1"],
    "pseudolabel": ["pseudolabel", "--model", MODEL, "--data", SHAPES, "--out", "{out}",
                    "--export-nnunet", "{out}-export", "--labeled", "5", "--sampling",
                    "per-class", "--per-class", "32", "--quiet", "--threads", "1"],
}
ATLAS_SOURCES = [os.path.join("/usr/share/mricron/templates", name)
                 for name in ("ch2.nii.gz", "aal.nii.gz", "aal.nii.txt")]
if all(os.path.exists(p) for p in ATLAS_SOURCES):
    COMMANDS["data-atlas"] = ["data", "atlas", "--out", "{out}", "--downsample", "1",
                              "--min-voxels", "14000"]
else:
    print("data atlas: not attacked, mricron-data is not installed (bash scripts/setup.sh)")


def start(name, out):
    args = [a.replace("{out}", out) for a in COMMANDS[name]]
    return subprocess.Popen([EXE, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def outputs(out):
    """The folders a run writes: out and, for pseudolabel, out-export."""
    return [out, out + "-export"]


total_kills = mid_run_kills = files_checked = temps_seen = 0
for name in COMMANDS:
    # complete run: the duration and the full set of files
    out = os.path.join(ROOT, name, "complete")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    t0 = time.monotonic()
    p = start(name, out)
    _, err = p.communicate(timeout=600)
    duration = time.monotonic() - t0
    T.check(p.returncode == 0, f"{name}: complete run failed: {err.decode(errors='replace')}")
    complete = {}
    for d in outputs(out):
        if os.path.isdir(d):
            complete[d[len(out):]], temps = validate_tree(f"{name} (complete)", d)
            T.check(temps == [], f"{name}: a complete run left temporaries {temps}")
    T.check(sum(map(len, complete.values())) > 0, f"{name}: the complete run wrote nothing")
    print(f"{name}: complete run {duration:.2f} s, "
          f"{sum(map(len, complete.values()))} files", flush=True)

    for k in range(KILLS_PER_COMMAND):
        out = os.path.join(ROOT, name, f"killed-{k}")
        moment = RNG.uniform(0.02, 0.98) * duration
        p = start(name, out)
        time.sleep(moment)
        still_running = p.poll() is None
        if still_running:
            p.send_signal(signal.SIGKILL)
        p.communicate(timeout=600)
        total_kills += 1
        mid_run_kills += still_running
        what = f"{name} killed at {moment:.2f}s of {duration:.2f}s"
        parent = os.path.dirname(out)
        for d in outputs(out):
            if os.path.isdir(d):
                finals, temps = validate_tree(what, d)
                files_checked += len(finals)
                temps_seen += len(temps)
        # beside the output folders: only their staging folders
        for entry in os.listdir(parent):
            if entry.startswith(f".killed-{k}"):
                T.check(STAGING_DIR.match(entry) is not None and
                        os.path.isdir(os.path.join(parent, entry)),
                        f"{what}: {entry} beside the output is not a staging folder")
                temps_seen += 1
        if name == "pseudolabel":
            for suffix, files in complete.items():
                d = out + suffix
                if os.path.isdir(d):
                    got, _ = validate_tree(what, d)
                    T.check(got == files,
                            f"{what}: {os.path.basename(d)} published with {len(got)} of "
                            f"{len(files)} files")

print(f"{total_kills} kills ({mid_run_kills} while the command ran) over {len(COMMANDS)} "
      f"commands: {files_checked} files under final names parsed completely, "
      f"{temps_seen} hidden temporaries left")
T.check(mid_run_kills >= total_kills // 2, "too few kills landed while a command was running")
sys.exit(T.report())
