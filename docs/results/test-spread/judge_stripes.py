"""Applies the checks of tests/cli/test_refpl_stripes.py to a finished refpl
run and the supervised run of the same seed, without training again: how
docs/TESTING.md shows that a broken refpl fails the test.

    /usr/bin/python3 judge_stripes.py REFPL_RUN SUPERVISED_RUN [STDERR_FILE]"""
import csv, json, os, re, sys
MIN_PL_DICE, MAX_DRIFT, NOT_WORSE = 0.50, 0.05, 0.11
ref, sup = sys.argv[1:3]
err = open(sys.argv[3]).read() if len(sys.argv) > 3 else ""
def mean(v): return sum(v) / len(v) if v else float("nan")
d = {k: json.load(open(os.path.join(p, "test_metrics.json")))["foreground_mean"]["dice"]["mean"] for k, p in (("refpl", ref), ("supervised", sup))}
rows = list(csv.DictReader(open(os.path.join(ref, "log.csv"))))
active = [r for r in rows if float(r["lambda"]) > 0 and r["pl_accuracy"] != "nan"]
fails = []
if not len(active) > 100: fails.append(f"{len(active)} active steps")
if active:
    drift = mean([float(r["pl_drift"]) for r in active])
    fg = [k for k in active[0] if k.startswith("pl_dice_") and k != "pl_dice_background"]
    pld = mean([mean([float(r[k]) for k in fg if r[k] != "nan"]) for r in active if any(r[k] != "nan" for k in fg)])
    print(f"active {len(active)}, drift {drift:.4f}, pl fg Dice {pld:.4f}, test Dice refpl {d['refpl']:.4f} supervised {d['supervised']:.4f}")
    if pld < MIN_PL_DICE: fails.append(f"pl Dice {pld:.4f} < {MIN_PL_DICE}")
    if drift > MAX_DRIFT: fails.append(f"drift {drift:.4f} > {MAX_DRIFT}")
else:
    print(f"active 0, test Dice refpl {d['refpl']:.4f} supervised {d['supervised']:.4f}")
shares = re.findall(r"'(\w+)' is [\d.]+% of the pseudo-labels", err)
if "pseudo-label class shares differ" in err or [c for c in shares if c != "diagonal"]: fails.append("warned")
if d["refpl"] < d["supervised"] - NOT_WORSE: fails.append(f"refpl {d['refpl']:.4f} behind supervised by more than {NOT_WORSE}")
print("FAILS: " + "; ".join(fails) if fails else "passes")
