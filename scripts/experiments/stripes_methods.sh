#!/usr/bin/env bash
# supervised, refpl and predpl on generated stripes with 2 labeled images,
# over training seeds: the comparison that tests/cli/test_refpl_stripes.py and
# tests/cli/test_refpl_beats_supervised.py used to assert at one seed. It is
# documented here (docs/TESTING.md, docs/TRAINING.md), not asserted, because
# the gaps between the methods are within one seed's noise and move with the
# OpenBLAS kernels and the thread count (docs/results/test-spread/).
#
#   bash scripts/experiments/stripes_methods.sh REFLABEL OUT [TRAIN_IMAGES [SEED...]]
#
# TRAIN_IMAGES: 48 (the stripes test: 16 test images, 300 steps; default) or
# 128 (the former beats-supervised test: 32 test images, 400 steps). SEEDS:
# training seeds (default 0 1 2); the data seed is 0. Methods: METHODS
# (default "supervised refpl predpl"); threads: THREADS (default 1). Finished
# runs (OUT/NAME/test_metrics.json) are not trained again. Prints a Markdown
# table of held-out foreground Dice per seed and method and refpl's lead.
# Each run takes 10-30 s of one core.
set -euo pipefail
exe=${1:?usage: stripes_methods.sh REFLABEL OUT [TRAIN_IMAGES [SEED...]]}
out=${2:?usage: stripes_methods.sh REFLABEL OUT [TRAIN_IMAGES [SEED...]]}
n=${3:-48}
shift $(($# < 3 ? $# : 3))
if (($# > 0)); then seeds=("$@"); else seeds=(0 1 2); fi
methods=(${METHODS:-supervised refpl predpl})
threads=${THREADS:-1}
case $n in
  48) test_images=16 steps=300 ;;
  128) test_images=32 steps=400 ;;
  *) echo "stripes_methods.sh: TRAIN_IMAGES must be 48 or 128" >&2; exit 2 ;;
esac
mkdir -p "$out"
data=$out/stripes$n
[[ -f $data/dataset.json ]] || "$exe" data stripes --out "$data" --train "$n" --test "$test_images" \
  --size 48x48 --seed 0 >/dev/null
for seed in "${seeds[@]}"; do
  for m in "${methods[@]}"; do
    run=$out/$m-n$n-s$seed-t$threads
    [[ -f $run/test_metrics.json ]] && continue
    rm -rf "$run"
    "$exe" train --data "$data" --out "$run" --method "$m" --labeled 2 --steps "$steps" --batch 4 \
      --depth 3 --width 8 --lr 3e-3 --seed "$seed" --threads "$threads" --checkpoint-every 0 --quiet
  done
done
/usr/bin/python3 - "$out" "$n" "$threads" "${seeds[*]}" "${methods[*]}" <<'EOF'
import json, os, sys
out, n, threads, seeds, methods = sys.argv[1:]
seeds, methods = seeds.split(), methods.split()
def dice(m, s):
    with open(os.path.join(out, f"{m}-n{n}-s{s}-t{threads}", "test_metrics.json")) as f:
        return json.load(f)["foreground_mean"]["dice"]["mean"]
others = [m for m in methods if m != "refpl"]
lead = [f"refpl - {m}" for m in others] if "refpl" in methods else []
print(f"stripes, {n} training images, 2 labeled, {threads} thread(s), "
      f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
print("| seed | " + " | ".join(methods + lead) + " |")
print("| --- " * (1 + len(methods) + len(lead)) + "|")
for s in seeds:
    d = {m: dice(m, s) for m in methods}
    cells = [f"{d[m]:.4f}" for m in methods] + [f"{d['refpl'] - d[m]:+.4f}" for m in others
                                                 if "refpl" in methods]
    print(f"| {s} | " + " | ".join(cells) + " |")
EOF
