"""`reflabel train` feature-source and rounds options, end to end on the
synthetic shapes data:

- online refpl with --keep-fraction 0.5 keeps half of the unlabeled pixels
  in every step, and out-of-range values are refused with one line;
- online refpl with --margin-accuracy logs its threshold (pl_min_margin),
  a stricter accuracy gives a threshold no lower, the option is recorded,
  checked on --resume and refused with one line where it cannot work;
- online refpl with --features hypercolumn: the first step's pseudo-labels
  (pl_accuracy in log.csv) differ from those of the last decoder map while
  the supervised part of that step is the same, the model's metadata names
  the source, and --resume refuses another source;
- --rounds 2: rounds.csv gains `kept`, the share of query voxels that got a
  pseudo-label; --min-margin X leaves part of them unlabeled (0 < kept < 1,
  and the kept ones are more often right), a margin no match can reach leaves
  none and round 2 still trains; --features, --sampling with
  --refs-per-class, --topk, --per-image-vote and --similarity each change the
  round's pseudo-labels while round 1 (supervised) stays the same;
  refpl with an EMA teacher and its views runs its rounds (the later,
  supervised ones without them).

Every run uses one thread, so the runs are reproducible bit for bit."""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from clitest import Checks, main_args, run, scratch  # noqa: E402

EXE = main_args()
T = Checks("cli_test_train_options")
ROOT = scratch("cli-train-options")
DATA = os.path.join(ROOT, "data")
COMMON = ["--data", DATA, "--steps", 6, "--batch", 2, "--depth", 2, "--width", 4,
          "--patch", "32x32", "--labeled", 4, "--seed", 3, "--threads", 1,
          "--checkpoint-every", 0, "--quiet"]


def train(name, *extra):
    """Runs `reflabel train` into ROOT/name; returns the run directory."""
    out = os.path.join(ROOT, name)
    rc, _, err = run(EXE, "train", *COMMON, *extra, "--out", out)
    T.check(rc == 0, f"{name}: exit {rc}: {err.strip()}")
    return out


def csv_rows(path):
    """The rows of a CSV file as dicts of strings (an empty list if absent)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def round_row(out):
    """rounds.csv's row of round 1 (the pseudo-labels made for round 2)."""
    rows = csv_rows(os.path.join(out, "rounds.csv"))
    T.check(len(rows) == 1 and rows[0].get("round") == "1", f"{out}: rounds.csv rows {rows}")
    return rows[0] if rows else {}


def log_without_seconds(out, name="log.csv"):
    with open(os.path.join(out, name)) as f:
        return [line.rsplit(",", 1)[0] for line in f.read().splitlines()]


def training_metadata(path):
    """The reflabel.training JSON of a safetensors model, read from its header."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["reflabel.training"])


rc, _, err = run(EXE, "data", "shapes", "--out", DATA, "--train", 12, "--test", 0, "--size",
                 "32x32", "--seed", 1)
T.check(rc == 0, f"data shapes: {err}")

# ---- the options are documented and checked ----------------------------------
rc, out, _ = run(EXE, "train", "--help")
T.check(rc == 0 and "--features" in out and "hypercolumn" in out and "between rounds" in out
        and "refpl only" in out, "train --help documents --features and the rounds options")
rc, _, err = run(EXE, "train", *COMMON, "--features", "deepest", "--out", os.path.join(ROOT, "bad"))
T.check(rc == 2 and "--features must be last or hypercolumn" in err
        and len(err.strip().splitlines()) == 1, f"--features deepest: exit {rc}, {err!r}")

# ---- online refpl ---------------------------------------------------------------
# Without the calibrated threshold (the default --margin-accuracy 0.9), so
# that every pixel gets a pseudo-label and the runs differ only in the option
# under test; the calibration has its own section below.
REFPL = ["--method", "refpl", "--ref-count", 256, "--margin-accuracy", 0]
online = {f: train(f"online-{f}", *REFPL, "--features", f) for f in ("last", "hypercolumn")}
steps = {f: csv_rows(os.path.join(d, "log.csv")) for f, d in online.items()}
T.check(all(len(rows) == 6 for rows in steps.values()), "online runs log 6 steps each")
if all(len(rows) == 6 for rows in steps.values()):
    first = {f: rows[0] for f, rows in steps.items()}
    # The warm-up keeps lambda at 0: step 1's supervised loss is the same, and
    # only the features the pseudo-labels were matched in differ.
    T.check(first["last"]["lambda"] == "0" and first["last"]["ce"] == first["hypercolumn"]["ce"],
            f"online step 1: lambda {first['last']['lambda']}, ce {first['last']['ce']} vs "
            f"{first['hypercolumn']['ce']}")
    T.check(first["last"]["pl_accuracy"] != first["hypercolumn"]["pl_accuracy"],
            f"online step 1: hypercolumn pseudo-labels equal the last map's "
            f"(pl_accuracy {first['last']['pl_accuracy']})")
    T.check(all(float(r["pl_kept"]) == 1.0 for r in steps["hypercolumn"]),
            "online hypercolumn: every unlabeled pixel labeled at --min-margin 0")
for f, d in online.items():
    meta = training_metadata(os.path.join(d, "model.safetensors"))
    T.check(meta.get("semi", {}).get("features") == f, f"model metadata of {f}: {meta.get('semi')}")

# A state saved with one source does not resume with another; the sampling
# default (proportional online, all between rounds) is not the same as
# --sampling per-class given explicitly.
resumable = train("online-resumable", *REFPL, "--features", "hypercolumn",
                  "--checkpoint-every", 3)
for words, word in ((["--features", "last"], "--features"),
                    (["--sampling", "per-class"], "--sampling"),
                    (["--keep-fraction", "0.5"], "--keep-fraction")):
    rc, _, err = run(EXE, "train", "--resume", resumable, *words)
    T.check(rc != 0 and word in err and "conflicts" in err and len(err.strip().splitlines()) == 1,
            f"--resume with {words}: exit {rc}, {err!r}")
rc, _, err = run(EXE, "train", "--resume", resumable, "--quiet")
T.check(rc == 0, f"--resume of a complete hypercolumn run: {err}")

# ---- online refpl --keep-fraction ---------------------------------------------------
# Half of the unlabeled pixels (the higher margins) are kept, so
# the kept share of every step is 0.5 up to rounding and ties; the supervised
# part of the first step is untouched.
half = train("online-keep-half", *REFPL, "--keep-fraction", 0.5)
half_rows = csv_rows(os.path.join(half, "log.csv"))
T.check(len(half_rows) == 6 and all(0.5 <= float(r["pl_kept"]) <= 0.52 for r in half_rows),
        f"--keep-fraction 0.5: kept shares {[r.get('pl_kept') for r in half_rows]}")
T.check(bool(half_rows) and half_rows[0]["ce"] == steps["last"][0]["ce"],
        "--keep-fraction changed the supervised loss of step 1")
T.check(training_metadata(os.path.join(half, "model.safetensors")).get("semi", {})
        .get("keep_fraction") == 0.5, "model metadata of --keep-fraction 0.5")
for value in ("0", "1.5", "-0.1", "half"):
    rc, _, err = run(EXE, "train", *COMMON, *REFPL, "--keep-fraction", value,
                     "--out", os.path.join(ROOT, "bad"))
    T.check(rc == 2 and "--keep-fraction expects a number in" in err
            and len(err.strip().splitlines()) == 1, f"--keep-fraction {value}: exit {rc}, {err!r}")
T.check(not os.path.exists(os.path.join(ROOT, "bad")), "a refused option wrote a run folder")

# ---- online refpl --margin-accuracy ------------------------------------------------
# Each step logs the threshold it applied: --min-margin (0) without
# calibration; with it, the calibrated margin (-inf: keep all, inf: keep
# none). The random streams of the run are untouched, so step 1's supervised
# loss is the same; a stricter accuracy never lowers the threshold of step 1
# (same network, same batch), and keeps no more of its pixels.
T.check(all(r["pl_min_margin"] == "0" for r in steps["last"]),
        f"refpl without calibration logs pl_min_margin 0: {[r['pl_min_margin'] for r in steps['last']]}")
calibrated = {a: csv_rows(os.path.join(train(f"online-acc{a}", *REFPL, "--margin-accuracy", a),
                                        "log.csv")) for a in (0.5, 0.99)}
T.check(all(len(rows) == 6 for rows in calibrated.values()), "calibrated runs log 6 steps each")
if all(len(rows) == 6 for rows in calibrated.values()):
    lax, strict = calibrated[0.5][0], calibrated[0.99][0]
    T.check(lax["ce"] == strict["ce"] == steps["last"][0]["ce"],
            "--margin-accuracy changed the supervised loss of step 1")
    T.check(float(strict["pl_min_margin"]) >= float(lax["pl_min_margin"])
            and float(strict["pl_kept"]) <= float(lax["pl_kept"]),
            f"step 1: accuracy 0.99 gave threshold {strict['pl_min_margin']} (kept "
            f"{strict['pl_kept']}), 0.5 gave {lax['pl_min_margin']} (kept {lax['pl_kept']})")
    T.check(all(r["pl_min_margin"] not in ("nan", "") for rows in calibrated.values() for r in rows),
            "every calibrated step logs its threshold")
T.check(training_metadata(os.path.join(ROOT, "online-acc0.5", "model.safetensors"))
        .get("semi", {}).get("margin_accuracy") == 0.5, "model metadata of --margin-accuracy 0.5")
rc, _, err = run(EXE, "train", "--resume", os.path.join(ROOT, "online-acc0.5"),
                 "--margin-accuracy", 0.9)
T.check(rc != 0 and "--margin-accuracy" in err and "conflicts" in err
        and len(err.strip().splitlines()) == 1, f"--resume with another accuracy: exit {rc}, {err!r}")
refusals = [(["--margin-accuracy", "1.5"], "--margin-accuracy"),
            (["--margin-accuracy", "x"], "--margin-accuracy"),
            (["--method", "predpl", "--margin-accuracy", "0.9"], "is for --method refpl")]
for words, word in refusals:
    args = [w for w in COMMON] + (REFPL if "--method" not in words else []) + words
    rc, _, err = run(EXE, "train", *args, "--out", os.path.join(ROOT, "bad"))
    T.check(rc == 2 and word in err and len(err.strip().splitlines()) == 1,
            f"{words}: exit {rc}, {err!r}")
# One labeled image per step has nothing to be matched against: refused when
# asked for, turned off with a one-line note when it is the default.
rc, _, err = run(EXE, "train", *COMMON, *REFPL, "--margin-accuracy", 0.9, "--batch", 1,
                 "--out", os.path.join(ROOT, "bad"))
T.check(rc != 0 and "2 labeled images per step" in err and len(err.strip().splitlines()) == 1,
        f"--margin-accuracy with --batch 1: exit {rc}, {err!r}")
default = os.path.join(ROOT, "online-default")
rc, _, err = run(EXE, "train", *COMMON, "--method", "refpl", "--out", default)
T.check(rc == 0 and err.count("no margin calibration") == 0, f"refpl defaults: exit {rc}, {err!r}")
T.check(training_metadata(os.path.join(default, "model.safetensors")).get("semi", {})
        .get("margin_accuracy") == 0.9, "the default --margin-accuracy is 0.9")
T.check(any(r["pl_min_margin"] not in ("0", "nan") for r in csv_rows(os.path.join(default, "log.csv"))),
        "refpl defaults: the threshold is calibrated (never anything but --min-margin 0)")
single = os.path.join(ROOT, "online-batch1")
rc, _, err = run(EXE, "train", *COMMON, "--method", "refpl", "--batch", 1, "--out", single)
T.check(rc == 0 and "note: no margin calibration (--margin-accuracy): it needs 2 labeled images per step" in err
        and len(err.strip().splitlines()) == 1, f"refpl defaults with --batch 1: exit {rc}, {err!r}")
T.check(training_metadata(os.path.join(single, "model.safetensors")).get("semi", {})
        .get("margin_accuracy") == 0, "--batch 1 records the calibration as off")
T.check(not os.path.exists(os.path.join(ROOT, "bad")), "a refused option wrote a run folder")

# ---- pseudo-label rounds ----------------------------------------------------------
base = train("rounds", "--rounds", 2)
base_row = round_row(base)
T.check(float(base_row.get("kept", "nan")) == 1.0,
        f"--rounds 2 at --min-margin 0: kept {base_row.get('kept')} (top-1 margins are >= 0)")

margin = train("rounds-margin", "--rounds", 2, "--min-margin", 0.003)
row = round_row(margin)
kept = float(row.get("kept", "nan"))
T.check(0.02 < kept < 0.98, f"--min-margin 0.003: kept {kept} (expected part of the voxels)")
T.check(float(row.get("pl_accuracy", "nan")) > float(base_row.get("pl_accuracy", "nan")),
        f"--min-margin 0.003: the kept voxels are right {row.get('pl_accuracy')} of the time, "
        f"all voxels {base_row.get('pl_accuracy')}")
T.check(log_without_seconds(margin) == log_without_seconds(base),
        "--min-margin changed round 1 of --rounds (supervised)")
T.check(log_without_seconds(margin, "log_round2.csv")
        != log_without_seconds(base, "log_round2.csv"),
        "--min-margin did not change what round 2 trained on")

none_kept = train("rounds-margin-max", "--rounds", 2, "--min-margin", 2)
row = round_row(none_kept)
T.check(row.get("kept") == "0" and row.get("pl_accuracy") == "nan",
        f"--min-margin 2: kept {row.get('kept')}, pl_accuracy {row.get('pl_accuracy')}")
T.check(len(csv_rows(os.path.join(none_kept, "log_round2.csv"))) == 6,
        "round 2 trains on the labeled cases alone when no voxel was kept")

meta = training_metadata(os.path.join(margin, "model.safetensors")).get("rounds", {})
T.check(meta.get("count") == 2 and meta.get("sampling") == "all" and meta.get("features") == "last"
        and abs(meta.get("min_margin", 0) - 0.003) < 1e-9, f"rounds metadata: {meta}")

# Each matching option reaches the offline pseudo-labelling: same round 1,
# other pseudo-labels (pl_accuracy or the per-class Dice of the round).
VARIANTS = {
    "features": ["--features", "hypercolumn"],
    "sampling": ["--sampling", "per-class", "--refs-per-class", 2],
    "topk": ["--topk", 9],
    "per-image-vote": ["--per-image-vote"],
    "similarity": ["--similarity", "dot"],
}
quality = [k for k in base_row if k == "pl_accuracy" or k.startswith("pl_dice_")]
for name, words in VARIANTS.items():
    out = train(f"rounds-{name}", "--rounds", 2, *words)
    row = round_row(out)
    T.check(log_without_seconds(out) == log_without_seconds(base),
            f"{words}: round 1 of --rounds differs (it is supervised)")
    T.check(any(row.get(k) != base_row.get(k) for k in quality),
            f"{words}: the round's pseudo-labels are those of the defaults ({row})")

# The teacher and the views belong to round 1's method: the later,
# supervised rounds train without them (they once refused the teacher).
out = train("rounds-teacher", "--rounds", 2, "--method", "refpl", "--teacher", "ema",
            "--strong-views", 1, "--ref-images", 2, "--consistency", 1)
T.check(len(csv_rows(os.path.join(out, "log_round2.csv"))) == 6,
        "--teacher ema --rounds 2: round 2 did not train its 6 steps")

sys.exit(T.report())
