#!/usr/bin/env python3
"""Tables and the pseudo-label accuracy figure of docs/RESULTS.md.

    /usr/bin/python3 scripts/experiments/summarize.py RESULTS_DIR... [--svg FILE]

Each RESULTS_DIR holds finished runs of scripts/experiments/atlas.sh
(NAME-sSEED/ with test_metrics.json, command.txt and log.csv), or their
copies kept in git by scripts/experiments/archive.sh (log.csv.gz); a run found
in several folders is taken from the last one. Prints Markdown: one row per
configuration with the mean and standard deviation over its seeds of

- pooled Dice: per class, 2*sum(intersection) / sum(|pred| + |expert|) over all
  test slices (the Dice of the test slabs as one volume), averaged over the 8
  lobe classes; the primary number. The intersection of a slice is recovered
  from its Dice and voxel counts, so no prediction is re-read.
- slice Dice: reflabel evaluate's foreground mean (MONAI DiceMetric with
  ignore_empty=False: a slice where the class is absent from both expert label
  and prediction counts 1), for comparison with MONAI-based papers.
- HD95 in mm, mean over the slices and classes where it is defined.

and a per-class table of pooled Dice. --svg writes the figure of pseudo-label
pixel accuracy against step (mean over seeds, 25-step moving average) for the
refpl-* and predpl-* runs at 5% labels.
"""
import csv
import gzip
import json
import math
import os
import re
import sys
from collections import defaultdict

RUN_NAME = re.compile(r"^(?P<name>.+)-s(?P<seed>\d+)$")


def pooled_dice(metrics, classes):
    """Per-class Dice of all test slices pooled as one volume."""
    inter = defaultdict(float)
    total = defaultdict(float)
    for case in metrics["per_case"].values() if isinstance(metrics["per_case"], dict) else []:
        for c in classes:
            m = case[c]
            n = m["gt_voxels"] + m["pred_voxels"]
            inter[c] += m["dice"] * n / 2.0
            total[c] += n
    return {c: (2.0 * inter[c] / total[c] if total[c] > 0 else float("nan")) for c in classes}


def mean_std(values):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def fmt(ms, digits=3):
    m, s = ms
    if math.isnan(m):
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def open_log(run_path):
    """The run's log.csv, or the gzipped copy of an archived run; None if neither."""
    plain = os.path.join(run_path, "log.csv")
    if os.path.isfile(plain):
        return open(plain, newline="")
    packed = plain + ".gz"
    if os.path.isfile(packed):
        return gzip.open(packed, "rt", newline="")
    return None


def load_runs(roots):
    runs = defaultdict(dict)  # name -> seed -> run info
    for root in roots:
        load_runs_from(root, runs)
    return runs


def load_runs_from(root, runs):
    for entry in sorted(os.listdir(root)):
        match = RUN_NAME.match(entry)
        path = os.path.join(root, entry)
        if not match or not os.path.isfile(os.path.join(path, "test_metrics.json")):
            continue
        with open(os.path.join(path, "test_metrics.json")) as f:
            metrics = json.load(f)
        classes = [c for c in metrics["classes"] if c != "background"] \
            if isinstance(metrics["classes"], list) else \
            [c for c in metrics["per_class"] if c != "background"]
        pooled = pooled_dice(metrics, classes)
        hd = [m["hd95_mm"] for case in metrics["per_case"].values() for c, m in case.items()
              if c in classes and m.get("hd95_mm") is not None]
        command = ""
        if os.path.isfile(os.path.join(path, "command.txt")):
            with open(os.path.join(path, "command.txt")) as f:
                # The executable's path is the machine's; say `reflabel`.
                words = f.readline().split()
                command = " ".join(["reflabel"] + words[1:]) if words else ""
        runs[match["name"]][int(match["seed"])] = {
            "path": path,
            "classes": classes,
            "pooled": pooled,
            "pooled_mean": sum(pooled.values()) / len(pooled),
            "slice_mean": metrics["foreground_mean"]["dice"]["mean"],
            "hd95": sum(hd) / len(hd) if hd else float("nan"),
            "command": command,
        }


def order_key(name):
    # methods in the order of the issue, then by labeled share
    methods = ["sup", "predpl", "meanteacher", "fixmatch", "unimatch", "refpl", "rounds2"]
    base, _, rest = name.partition("-")
    share = re.match(r"(\d+)", rest)
    return (0 if "-" not in rest else 1, int(share.group(1)) if share else 999,
            methods.index(base) if base in methods else 99, name)


def tables(runs):
    out = []
    names = sorted(runs, key=order_key)
    out.append("| configuration | seeds | pooled Dice (8 lobes) | slice Dice (MONAI) | HD95 mm |")
    out.append("|---|---|---|---|---|")
    for name in names:
        seeds = runs[name]
        out.append(f"| `{name}` | {','.join(map(str, sorted(seeds)))} | "
                   f"{fmt(mean_std([r['pooled_mean'] for r in seeds.values()]))} | "
                   f"{fmt(mean_std([r['slice_mean'] for r in seeds.values()]))} | "
                   f"{fmt(mean_std([r['hd95'] for r in seeds.values()]), 1)} |")
    classes = next(iter(next(iter(runs.values())).values()))["classes"] if runs else []
    out.append("")
    out.append("| configuration | " + " | ".join(classes) + " |")
    out.append("|---|" + "---|" * len(classes))
    for name in names:
        seeds = runs[name].values()
        cells = [fmt(mean_std([r["pooled"][c] for r in seeds]), 2) for c in classes]
        out.append(f"| `{name}` | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Commands (seed 0 shown; other seeds differ only in `--seed`):")
    out.append("")
    for name in names:
        first = runs[name][min(runs[name])]
        out.append(f"- `{name}`: `{first['command']}`")
    return "\n".join(out)


def pl_table(runs):
    """Pseudo-label accuracy against the hidden labels over the first and the
    last 100 steps in which the unlabeled loss acts (lambda > 0), the share
    of the unlabeled pixels kept, per configuration (mean of its seeds), and
    for each seed the class most under-represented in the pseudo-labels over
    the last 100 steps: its share of the matches (pl_share, before any
    threshold) over its share of the labeled pixels, for classes of at least
    1% of them, as train's class-share warning computes it. The pooled
    accuracy can hide a lost class, and so can the per-class Dice of the
    kept pixels once a threshold drops the class (docs/TRAINING.md, item 5 of
    "Status of the defaults"); this ratio does not."""
    out = ["| configuration | seeds | kept share | accuracy, first 100 steps | "
           "accuracy, last 100 steps | lowest share ratio, last 100 steps (per seed) |",
           "|---|---|---|---|---|---|"]
    for name in sorted(runs, key=order_key):
        first, last, kept, seeds, worst = [], [], [], [], []
        for seed, run in sorted(runs[name].items()):
            log = open_log(run["path"])
            if not log:
                continue
            with log:
                rows = [r for r in csv.DictReader(log)
                        if float(r.get("lambda") or 0) > 0 and r.get("pl_accuracy") not in (None, "", "nan")]
            if len(rows) < 200:
                continue
            mean = lambda rs, k: sum(float(r[k]) for r in rs) / len(rs)
            first.append(mean(rows[:100], "pl_accuracy"))
            last.append(mean(rows[-100:], "pl_accuracy"))
            kept.append(mean(rows, "pl_kept"))
            seeds.append(seed)
            ratio = {}
            for k in rows[0]:
                if k.startswith("labeled_share_"):
                    cls = k[len("labeled_share_"):]
                    labeled = float(rows[0][k])
                    if labeled >= 0.01 and f"pl_share_{cls}" in rows[0]:
                        ratio[cls] = mean(rows[-100:], f"pl_share_{cls}") / labeled
            if ratio:
                cls = min(ratio, key=ratio.get)
                worst.append(f"{cls} {ratio[cls]:.2f}")
        if seeds:
            out.append(f"| `{name}` | {','.join(map(str, seeds))} | {fmt(mean_std(kept), 2)} | "
                       f"{fmt(mean_std(first))} | {fmt(mean_std(last))} | {'; '.join(worst)} |")
    return "\n".join(out) if len(out) > 2 else ""


def matched_vs_pred_table(runs):
    """Every unlabeled pixel, before any threshold, against the hidden
    labels, over the steps in which the unlabeled loss acts: the method's
    labels (matched_accuracy; for refpl the reference matches) against the
    weak view's own predictions (pred_accuracy), mean over the first and the
    last 100 of those steps, and the share of the steps in which the matches
    were the more accurate (logs from before these columns are skipped)."""
    out = ["| configuration | seeds | matches, first 100 | weak predictions, first 100 | "
           "matches, last 100 | weak predictions, last 100 | steps with matches ahead |",
           "|---|---|---|---|---|---|---|"]
    for name in sorted(runs, key=order_key):
        cols = defaultdict(list)
        seeds = []
        for seed, run in sorted(runs[name].items()):
            log = open_log(run["path"])
            if not log:
                continue
            with log:
                rows = [r for r in csv.DictReader(log)
                        if float(r.get("lambda") or 0) > 0
                        and r.get("matched_accuracy") not in (None, "", "nan")
                        and r.get("pred_accuracy") not in (None, "", "nan")]
            if len(rows) < 200:
                continue
            mean = lambda rs, k: sum(float(r[k]) for r in rs) / len(rs)
            seeds.append(seed)
            cols["m0"].append(mean(rows[:100], "matched_accuracy"))
            cols["p0"].append(mean(rows[:100], "pred_accuracy"))
            cols["m1"].append(mean(rows[-100:], "matched_accuracy"))
            cols["p1"].append(mean(rows[-100:], "pred_accuracy"))
            cols["ahead"].append(sum(float(r["matched_accuracy"]) > float(r["pred_accuracy"])
                                     for r in rows) / len(rows))
        if seeds and name.startswith("refpl"):
            out.append(f"| `{name}` | {','.join(map(str, seeds))} | " +
                       " | ".join(fmt(mean_std(cols[k]), 3 if k != "ahead" else 2)
                                  for k in ("m0", "p0", "m1", "p1", "ahead")) + " |")
    return "\n".join(out) if len(out) > 2 else ""


def read_curve(f, column):
    steps, values = [], []
    with f:
        for row in csv.DictReader(f):
            v = row.get(column, "")
            if v in ("", "nan"):
                continue
            steps.append(int(row["step"]))
            values.append(float(v))
    return steps, values


def moving_average(values, width):
    out = []
    acc = 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= width:
            acc -= values[i - width]
        out.append(acc / min(i + 1, width))
    return out


def svg_figure(runs, path):
    """Pseudo-label pixel accuracy vs step at 5%: refpl with its defaults,
    with a margin threshold and with the per-class cap it had before, predpl
    and the mean teacher (those of them that ran)."""
    series = []
    for name, colour in (("refpl-5", "#1f77b4"), ("refpl-5-margin", "#ff7f0e"),
                         ("refpl-5-perclass", "#9467bd"), ("predpl-5", "#d62728"),
                         ("meanteacher-5", "#2ca02c")):
        curves = []
        for run in runs.get(name, {}).values():
            log = open_log(run["path"])
            if log:
                curves.append(dict(zip(*read_curve(log, "pl_accuracy"))))
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        mean = [sum(c[s] for c in curves) / len(curves) for s in steps]
        seeds = f"{len(curves)} seed{'s' if len(curves) != 1 else ''}"
        series.append((f"{name} ({seeds})", colour, steps, moving_average(mean, 25)))
    if not series:
        return False
    w, h, left, right, top, bottom = 640, 360, 60, 20, 20, 50
    xmax = max(max(s[2]) for s in series)
    px = lambda x: left + (w - left - right) * x / xmax
    py = lambda y: top + (h - top - bottom) * (1 - y)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>']
    for i in range(6):
        y = i / 5
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                     f'stroke="#ddd"/><text x="{left - 6}" y="{py(y) + 4:.1f}" '
                     f'text-anchor="end">{y:.1f}</text>')
    for i in range(5):
        x = xmax * i / 4
        parts.append(f'<text x="{px(x):.1f}" y="{h - bottom + 16}" text-anchor="middle">'
                     f'{int(x)}</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">'
                 f'training step</text>')
    parts.append(f'<text transform="translate(14 {(top + h - bottom) / 2}) rotate(-90)" '
                 f'text-anchor="middle">pseudo-label pixel accuracy (hidden labels)</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{w - left - right}" '
                 f'height="{h - top - bottom}" fill="none" stroke="#333"/>')
    for i, (label, colour, steps, values) in enumerate(series):
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(steps, values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" '
                     f'points="{points}"/>')
        ly = py(0) - 18 * (len(series) - i) + 4  # legend rows above the bottom axis
        parts.append(f'<line x1="{w - right - 190}" x2="{w - right - 165}" y1="{ly:.1f}" '
                     f'y2="{ly:.1f}" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{w - right - 160}" y="{ly + 4:.1f}">{label}</text>')
    parts.append("</svg>")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(parts) + "\n")
    os.replace(tmp, path)
    return True


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    roots = argv[1:argv.index("--svg")] if "--svg" in argv else argv[1:]
    runs = load_runs(roots)
    if not runs:
        print(f"summarize.py: no finished runs in {' '.join(roots)}", file=sys.stderr)
        return 1
    print(tables(runs))
    pl = pl_table(runs)
    if pl:
        print("\nPseudo-labels while the unlabeled loss acts (hidden labels):\n\n" + pl)
    mp = matched_vs_pred_table(runs)
    if mp:
        print("\nReference matches against the weak view's own predictions, every unlabeled "
              "pixel (hidden labels):\n\n" + mp)
    if "--svg" in argv:
        path = argv[argv.index("--svg") + 1]
        if svg_figure(runs, path):
            print(f"\n(figure written to {path})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
