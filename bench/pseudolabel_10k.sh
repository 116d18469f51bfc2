#!/usr/bin/env bash
# Peak memory of `reflabel pseudolabel` over 1,000 and 10,000 small slices.
#
#   bash bench/pseudolabel_10k.sh [BUILD_DIR] [COUNT...]
#
# BUILD_DIR defaults to build/ (a Release build), COUNT to "1000 10000".
# For each COUNT it generates a synthetic dataset of COUNT labeled 32x32
# slices (reflabel data shapes), keeps the labels of 20 of them (--labeled 20)
# and pseudo-labels the other COUNT - 20 under /usr/bin/time -v, with one
# thread. The reference bank is the same size for every COUNT (20 slices, 64
# pixels per class each), so a peak RSS that grows with COUNT would be
# per-case memory that is not given back, or the list of cases itself. To
# tell the two apart, each COUNT is also run without --labeled: every case
# then keeps its label and pseudolabel stops with an error right after
# listing the dataset, so that run's peak RSS is the listing alone. The
# model is a tiny U-Net trained for 40 steps on the first dataset: its
# quality does not matter here.
#
# Prints one line per COUNT and writes them to $RL_BENCH_OUT (default
# bench/pseudolabel_10k.txt). The work folder ($RL_BENCH_DIR, default a new
# folder under $TMPDIR) is removed afterwards unless RL_BENCH_KEEP=1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
shift || true
counts=("$@")
if [ ${#counts[@]} -eq 0 ]; then counts=(1000 10000); fi
exe=$build/reflabel
if [ ! -x "$exe" ]; then
  echo "pseudolabel_10k.sh: $exe not found (build first: cmake --build $build)" >&2
  exit 2
fi
work=${RL_BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/reflabel-pl10k.XXXXXX")}
mkdir -p "$work"
result=${RL_BENCH_OUT:-$root/bench/pseudolabel_10k.txt}
if [ "${RL_BENCH_KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi

labeled=20
for n in "${counts[@]}"; do
  "$exe" data shapes --out "$work/data-$n" --train "$n" --test 0 --size 32x32 --seed 1 \
    > /dev/null
done
"$exe" train --data "$work/data-${counts[0]}" --out "$work/model" --steps 40 --batch 4 \
  --depth 2 --width 8 --threads 1 --quiet > /dev/null

# Peak RSS in MiB from a /usr/bin/time -v report.
peak_mib() {
  sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$1" |
    awk '{printf "%.1f", $1 / 1024}'
}

{
  echo "# bash bench/pseudolabel_10k.sh $build ${counts[*]}"
  echo "#   $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
  echo "# reflabel pseudolabel --labeled $labeled --sampling per-class --per-class 64" \
    "--threads 1, 32x32 slices"
} > "$result.partial"
for n in "${counts[@]}"; do
  out=$work/out-$n
  /usr/bin/time -v -o "$work/time-$n.txt" "$exe" pseudolabel --model "$work/model" \
    --data "$work/data-$n" --out "$out" --labeled "$labeled" --sampling per-class \
    --per-class 64 --threads 1 --quiet > "$work/stdout-$n.txt"
  wall=$(sed -n 's/^[[:space:]]*Elapsed (wall clock) time.*: //p' "$work/time-$n.txt")
  written=$(find "$out" -type f | wc -l)
  # the listing alone: exits 1 ("nothing to pseudo-label") before any pixel work
  /usr/bin/time -v -o "$work/time-list-$n.txt" "$exe" pseudolabel --model "$work/model" \
    --data "$work/data-$n" --out "$work/unused" --threads 1 --quiet 2> /dev/null || true
  line=$(printf 'slices %6d  queries %6d  peak RSS %6s MiB (listing alone %6s MiB)' \
    "$n" $((n - labeled)) "$(peak_mib "$work/time-$n.txt")" \
    "$(peak_mib "$work/time-list-$n.txt")")
  line="$line  wall $wall  files written $written"
  echo "$line"
  echo "$line" >> "$result.partial"
  rm -rf "$out"
done
mv "$result.partial" "$result"
echo "results: $result"
