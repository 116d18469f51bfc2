#!/usr/bin/env python3
"""The spread of the learned scores that the tests assert, where the
floating-point path changes: OpenBLAS kernels (OPENBLAS_CORETYPE), thread
counts (--threads) and training seeds. docs/TESTING.md holds the table.

    /usr/bin/python3 scripts/experiments/test_spread.py REFLABEL WORKDIR TSV [GROUP...]
    /usr/bin/python3 scripts/experiments/test_spread.py --table TSV

Runs the training commands of the tests (the same data, options and
budgets as the test files) once per variant and appends one row per
measured value to TSV: group, metric, coretype, threads, seed, value.
Rows already in TSV are not measured again, so an interrupted run resumes.
GROUP picks some of: stripes, beats, shapes, multilabel (all by default), and
stripes-logs (no training: the pseudo-label quality read from the log.csv of
the stripes refpl runs already in WORKDIR).
Two runs at a time (RL_SPREAD_JOBS to change): every run is one process with
its own thread count, and the values do not depend on what runs beside it.
RL_SPREAD_VARIANTS (e.g. "Prescott:1,SkylakeX:1") replaces the paths of seed
0, RL_SPREAD_SEED_VARIANTS those of the other seeds, RL_SPREAD_SEEDS (e.g.
"0,1,2") the seeds.

Why these variants: OpenBLAS (Debian's DYNAMIC_ARCH build) picks its SGEMM
kernels by CPU at start-up, and OPENBLAS_CORETYPE overrides the choice; the
kernels and the thread count change the order of the float additions, so a
run is bit for bit reproducible on one machine, with one thread count, only.
On the Sapphire Rapids VM of these measurements the library's own choice is
Prescott (OpenBLAS 0.3.21 does not know the CPU model and falls back to its
SSE3 kernels); Zen gives the same bits as Haswell and SapphireRapids (not a
name 0.3.21 knows) the same as Cooperlake, so they are not listed twice.
"""
import concurrent.futures as cf
import csv
import json
import os
import subprocess
import sys

CORES_ALL = ["Prescott", "Haswell", "SkylakeX", "Cooperlake", "Sandybridge"]
# 7 distinct paths: every kernel set with 1 thread, and the two whose 2-thread
# runs differ from their 1-thread runs (measured on 40 refpl steps: SkylakeX,
# Cooperlake and Sandybridge gave the same model with 1 and 2 threads).
VARIANTS = [(c, 1) for c in CORES_ALL] + [("Prescott", 2), ("Haswell", 2)]
# Seeds beyond 0 on two paths: the seed noise is what the bounds must cover.
SEED_VARIANTS = [("Prescott", 1), ("SkylakeX", 1)]


def variants(name, default):
    spec = os.environ.get(name)
    if not spec:
        return default
    return [(c, int(t)) for c, t in (v.split(":") for v in spec.split(","))]


VARIANTS = variants("RL_SPREAD_VARIANTS", VARIANTS)
SEED_VARIANTS = variants("RL_SPREAD_SEED_VARIANTS", SEED_VARIANTS)
SEEDS = [int(s) for s in os.environ.get("RL_SPREAD_SEEDS", "0,1,2").split(",")]

if len(sys.argv) == 3 and sys.argv[1] == "--table":
    EXE = WORK = None
    TSV = sys.argv[2]
    GROUPS = []
else:
    EXE, WORK, TSV = sys.argv[1:4]
    GROUPS = sys.argv[4:] or ["stripes", "beats", "shapes", "multilabel"]
JOBS = int(os.environ.get("RL_SPREAD_JOBS", "2"))


def path_env(core):
    """The environment of a path: an OpenBLAS kernel set name (convolutions
    by im2col + that SGEMM), or "dnnl" / "dnnl-ISA" (oneDNN's convolutions,
    its JIT limited to ISA by ONEDNN_MAX_CPU_ISA, e.g. dnnl-avx2 for a CPU
    without AVX-512; OpenBLAS picks its own kernels)."""
    if core.startswith("dnnl"):
        env = {"RL_CONV": "dnnl"}
        isa = core.partition("-")[2]
        if isa:
            env["ONEDNN_MAX_CPU_ISA"] = isa.upper()
        return env
    return {"RL_CONV": "im2col", "OPENBLAS_CORETYPE": core}


def run(args, core, cwd=None):
    """Runs reflabel with the kernels of core; returns (stdout, stderr). A
    command with --out whose folder is complete (it holds stderr.txt, written
    last) is not run again: its saved stderr is returned (None for a training
    finished by an earlier version of this script, which kept no stderr)."""
    out = args[args.index("--out") + 1] if "--out" in args else None
    saved = os.path.join(out, "stderr.txt") if out else None
    if args[0] == "data":
        saved = None
    elif saved and os.path.exists(saved):
        with open(saved) as f:
            return "", f.read()
    elif args[0] == "train" and os.path.exists(os.path.join(out, "test_metrics.json")):
        return "", None  # finished before stderr was saved: its warnings are unknown
    if saved:
        subprocess.run(["rm", "-rf", out], check=True)
    env = dict(os.environ, **path_env(core), OMP_WAIT_POLICY="PASSIVE")
    p = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError(f"{args}: exit {p.returncode}: {p.stderr.strip()}")
    if saved:
        with open(saved, "w") as f:
            f.write(p.stderr)
    return p.stdout, p.stderr


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def fg_dice(run_dir):
    with open(os.path.join(run_dir, "test_metrics.json")) as f:
        return json.load(f)["foreground_mean"]["dice"]["mean"]


def class_dice(run_dir, name):
    with open(os.path.join(run_dir, "test_metrics.json")) as f:
        return json.load(f)["per_class"][name]["dice"]["mean"]


def loss_ratio(run_dir):
    """Mean loss of the last 20 steps over that of the first 20 (the tests'
    "the loss fell" checks)."""
    losses = [float(r["loss"]) for r in rows(os.path.join(run_dir, "log.csv"))]
    return (sum(losses[-20:]) / 20) / (sum(losses[:20]) / 20)


def data(name, *args):
    """Generated data sets are the same on every path (no BLAS): made once."""
    out = os.path.join(WORK, name)
    if not os.path.exists(os.path.join(out, "dataset.json")):
        run(["data", *args, "--out", out], "Prescott")
    return out


# ---- tests/cli/test_refpl_stripes.py --------------------------------------------
def stripes(core, threads, seed):
    d = data("stripes48", "stripes", "--train", 48, "--test", 16, "--size", "48x48", "--seed", 0)
    base = os.path.join(WORK, f"stripes-{core}-t{threads}-s{seed}")
    common = ["--data", d, "--labeled", 2, "--batch", 4, "--depth", 3, "--width", 8, "--lr",
              3e-3, "--seed", seed, "--threads", threads, "--checkpoint-every", 0, "--quiet",
              "--steps", 300]
    out, dice = {}, {}
    for method in ("supervised", "refpl", "predpl"):
        rd = f"{base}-{method}"
        _, err = run(["train", "--out", rd, "--method", method, *common], core)
        dice[method] = out[f"{method}_dice"] = fg_dice(rd)
        if method == "refpl":
            active = [r for r in rows(os.path.join(rd, "log.csv"))
                      if float(r["lambda"]) > 0 and r["pl_drift"] != "nan"]
            out.update(pseudo_label_quality(rd))
            out["refpl_active_steps"] = len(active)
            out["refpl_mean_drift"] = sum(float(r["pl_drift"]) for r in active) / len(active)
            if err is not None:
                out["refpl_warned"] = int("pseudo-label class shares differ" in err
                                          or "of the labeled pixels" in err)
    out["refpl_minus_predpl"] = dice["refpl"] - dice["predpl"]
    out["refpl_minus_supervised"] = dice["refpl"] - dice["supervised"]
    out["supervised_minus_predpl"] = dice["supervised"] - dice["predpl"]
    # the --min-margin 0.1 run on three paths only: it keeps about 1% of the
    # pixels on every one, far from the test's 5%
    if seed == 0 and threads == 1 and core in ("Prescott", "Haswell", "SkylakeX", "dnnl",
                                               "dnnl-avx2"):
        rd = f"{base}-margin"
        _, err = run(["train", "--out", rd, "--method", "refpl", *common, "--min-margin", 0.1,
                      "--margin-accuracy", 0], core)
        active = [r for r in rows(os.path.join(rd, "log.csv")) if float(r["lambda"]) > 0]
        out["margin0.1_kept"] = sum(float(r["pl_kept"]) for r in active) / len(active)
        if err is not None:
            out["margin0.1_warned"] = int("of the unlabeled pixels reached --min-margin 0.1"
                                          in err)
    return out


def pseudo_label_quality(rd):
    """refpl's pseudo-labels against the hidden labels while the unlabeled
    loss acts: mean pl_accuracy, mean over steps of the mean foreground
    pl_dice (classes absent from a step's batch skipped), and the background
    share of the pseudo-labels (the accuracy of labelling all background)."""
    active = [r for r in rows(os.path.join(rd, "log.csv"))
              if float(r["lambda"]) > 0 and r["pl_accuracy"] != "nan"]
    fg = [k for k in active[0] if k.startswith("pl_dice_") and k != "pl_dice_background"]
    dice = []
    for r in active:
        v = [float(r[k]) for k in fg if r[k] != "nan"]
        if v:
            dice.append(sum(v) / len(v))
    return {"refpl_pl_accuracy": sum(float(r["pl_accuracy"]) for r in active) / len(active),
            "refpl_pl_fg_dice": sum(dice) / len(dice),
            "refpl_pl_share_background": sum(float(r["pl_share_background"]) for r in active)
            / len(active)}


def stripes_logs(core, threads, seed):
    """Group "stripes-logs": the pseudo-label quality of finished stripes
    refpl runs (no training; added after the first measurements)."""
    return pseudo_label_quality(os.path.join(WORK, f"stripes-{core}-t{threads}-s{seed}-refpl"))


# ---- tests/cli/test_refpl_beats_supervised.py (removed; its claim is measured here) ----
def beats(core, threads, seed):
    d = data("stripes128", "stripes", "--train", 128, "--test", 32, "--size", "48x48", "--seed", 0)
    base = os.path.join(WORK, f"beats-{core}-t{threads}-s{seed}")
    out = {}
    for method in ("supervised", "refpl"):
        rd = f"{base}-{method}"
        run(["train", "--out", rd, "--method", method, "--data", d, "--labeled", 2, "--steps",
             400, "--batch", 4, "--depth", 3, "--width", 8, "--lr", 3e-3, "--seed", seed,
             "--threads", threads, "--checkpoint-every", 0, "--quiet"], core)
        out[f"{method}_dice"] = fg_dice(rd)
    out["refpl_minus_supervised"] = out["refpl_dice"] - out["supervised_dice"]
    return out


# ---- tests/cli/test_train_shapes.py -------------------------------------------------
def shapes(core, threads, seed):
    d = data("shapes64", "shapes", "--train", 64, "--test", 16, "--seed", 0)
    rd = os.path.join(WORK, f"shapes-{core}-t{threads}-s{seed}")
    run(["train", "--data", d, "--out", rd, "--steps", 300, "--batch", 8, "--depth", 3,
         "--width", 16, "--lr", 3e-3, "--seed", seed, "--threads", threads, "--quiet"], core)
    return {"dice": fg_dice(rd), "loss_last20_over_first20": loss_ratio(rd)}


# ---- tests/cli/test_multilabel.py ----------------------------------------------------
def multilabel(core, threads, seed):
    d = data("multilabel", "shapes", "--multilabel", "--train", 24, "--test", 8, "--size",
             "32x32", "--seed", 0)
    base = os.path.join(WORK, f"multilabel-{core}-t{threads}-s{seed}")
    net = ["--depth", 3, "--width", 8, "--lr", 1e-2, "--batch", 4, "--seed", seed, "--threads",
           threads, "--quiet"]
    out = {}
    sup = f"{base}-supervised"
    run(["train", "--data", d, "--out", sup, "--steps", 200, *net], core)
    out["supervised_loss_ratio"] = loss_ratio(sup)
    for name in ("disc", "bar"):
        out[f"supervised_{name}"] = class_dice(sup, name)
    pred = f"{base}-pred"
    run(["predict", "--model", sup, "--in", os.path.join(d, "imagesTs"), "--out", pred,
         "--quiet", "--threads", threads], core)
    from PIL import Image  # Debian's python3-pil, as in the test
    import numpy as np
    out["overlap_pixels"] = sum(int(np.sum(np.array(Image.open(os.path.join(pred, f))) == 3))
                                for f in os.listdir(pred) if f.endswith(".png"))
    ref = f"{base}-refpl"
    run(["train", "--data", d, "--out", ref, "--method", "refpl", "--labeled", 6, "--steps", 200,
         *net], core)
    last = rows(os.path.join(ref, "log.csv"))[-20:]
    for name in ("disc", "bar"):
        out[f"refpl_{name}"] = class_dice(ref, name)
        out[f"refpl_pl_dice_{name}"] = sum(float(r[f"pl_dice_{name}"]) for r in last) / 20
    pl = f"{base}-pl"
    run(["pseudolabel", "--model", sup, "--data", d, "--labeled", 6, "--out", pl, "--quiet",
         "--threads", threads], core)
    with open(os.path.join(pl, "pseudolabel_metrics.json")) as f:
        plm = json.load(f)
    for name in ("disc", "bar"):
        out[f"pseudolabel_{name}"] = plm["all"]["dice"][name]
    rounds = f"{base}-rounds"
    run(["train", "--data", d, "--out", rounds, "--rounds", 2, "--labeled", 6, "--steps", 60,
         *net], core)
    r = rows(os.path.join(rounds, "rounds.csv"))[0]
    out["rounds_pl_accuracy"] = float(r["pl_accuracy"])
    out["rounds_min_of_kept_and_dice"] = min(float(r[k]) for k in
                                             ("kept", "pl_dice_background", "pl_dice_disc",
                                              "pl_dice_bar"))
    return out


def plan():
    jobs = []
    for group in GROUPS:
        seeds = [0] if group in ("shapes", "multilabel") else SEEDS
        for seed in seeds:
            for core, threads in (VARIANTS if seed == 0 else SEED_VARIANTS):
                jobs.append((group, core, threads, seed))
    return jobs


def main():
    os.makedirs(WORK, exist_ok=True)
    done = set()
    if os.path.exists(TSV):
        with open(TSV) as f:
            done = {tuple(line.split("\t")[i] for i in (0, 2, 3, 4))
                    for line in f.read().splitlines()[1:]}
    else:
        with open(TSV, "w") as f:
            f.write("group\tmetric\tcoretype\tthreads\tseed\tvalue\n")
    todo = [j for j in plan() if (j[0], j[1], str(j[2]), str(j[3])) not in done]
    # the generated data first, so that two workers never write it at once
    for group in {j[0] for j in todo}:
        {"stripes": lambda: data("stripes48", "stripes", "--train", 48, "--test", 16,
                                 "--size", "48x48", "--seed", 0),
         "beats": lambda: data("stripes128", "stripes", "--train", 128, "--test", 32,
                               "--size", "48x48", "--seed", 0),
         "shapes": lambda: data("shapes64", "shapes", "--train", 64, "--test", 16, "--seed", 0),
         "multilabel": lambda: data("multilabel", "shapes", "--multilabel", "--train", 24,
                                    "--test", 8, "--size", "32x32", "--seed", 0)}.get(
                                        group, lambda: None)()
    fns = {"stripes": stripes, "stripes-logs": stripes_logs, "beats": beats, "shapes": shapes, "multilabel": multilabel}
    with cf.ThreadPoolExecutor(JOBS) as pool:
        futures = {pool.submit(fns[g], c, t, s): (g, c, t, s) for g, c, t, s in todo}
        for fut in cf.as_completed(futures):
            g, c, t, s = futures[fut]
            try:
                values = fut.result()
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                print(f"{g} {c} t{t} s{s}: {e}", file=sys.stderr, flush=True)
                continue
            with open(TSV, "a") as f:
                for k, v in values.items():
                    f.write(f"{g}\t{k}\t{c}\t{t}\t{s}\t{v:.6g}\n")
            print(f"{g} {c} t{t} s{s}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()),
                  flush=True)


def table():
    """--table TSV: per group and metric, the number of runs, min, max and
    range over every path and seed, then min and max over the paths of seed 0
    alone (Markdown)."""
    with open(TSV) as f:
        data, seen = [], set()
        for r in csv.DictReader(f, delimiter="\t"):
            # stripes-logs adds metrics of stripes runs: one group, each value once
            r["group"] = r["group"].replace("stripes-logs", "stripes")
            key = (r["group"], r["metric"], r["coretype"], r["threads"], r["seed"])
            if key not in seen:
                seen.add(key)
                data.append(r)
    keys = []
    for r in data:
        if (r["group"], r["metric"]) not in keys:
            keys.append((r["group"], r["metric"]))
    print("| group | metric | runs | min | max | range | seed 0: paths | min | max |")
    print("| --- " * 9 + "|")
    for g, m in keys:
        v = [float(r["value"]) for r in data if (r["group"], r["metric"]) == (g, m)]
        v0 = [float(r["value"]) for r in data
              if (r["group"], r["metric"]) == (g, m) and r["seed"] == "0"]
        print(f"| {g} | {m} | {len(v)} | {min(v):.4g} | {max(v):.4g} | {max(v) - min(v):.4g} | "
              f"{len(v0)} | {min(v0):.4g} | {max(v0):.4g} |" if v0 else
              f"| {g} | {m} | {len(v)} | {min(v):.4g} | {max(v):.4g} | {max(v) - min(v):.4g} "
              f"| 0 | | |")


    # the method comparisons that left the tests, run by run
    for g, metrics in (("stripes", ("supervised_dice", "refpl_dice", "predpl_dice",
                                    "refpl_minus_supervised", "refpl_minus_predpl")),
                       ("beats", ("supervised_dice", "refpl_dice", "refpl_minus_supervised"))):
        runs = []
        for r in data:
            key = (r["coretype"], r["threads"], r["seed"])
            if r["group"] == g and key not in runs:
                runs.append(key)
        if not runs:
            continue
        print(f"\n{g}:\n\n| kernels | threads | seed | " + " | ".join(metrics) + " |")
        print("| --- " * (3 + len(metrics)) + "|")
        for key in sorted(runs, key=lambda k: (k[2], k[1], k[0])):
            v = {r["metric"]: float(r["value"]) for r in data
                 if r["group"] == g and (r["coretype"], r["threads"], r["seed"]) == key}
            print(f"| {key[0]} | {key[1]} | {key[2]} | " +
                  " | ".join(f"{v[m]:+.3f}" if "minus" in m else f"{v[m]:.3f}" for m in metrics)
                  + " |")


if __name__ == "__main__":
    if EXE is None:
        table()
    else:
        main()
