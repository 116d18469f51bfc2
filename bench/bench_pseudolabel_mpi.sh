#!/usr/bin/env bash
# Pseudo-labels per second of `reflabel pseudolabel` in 1 and 2 MPI ranks,
# in the same run, on COUNT small slices (docs/DISTRIBUTED.md).
#
#   bash bench/bench_pseudolabel_mpi.sh [BUILD_DIR] [COUNT]
#
# BUILD_DIR defaults to build/ (a Release build with MPI), COUNT to 1000.
# It generates COUNT labeled 32x32 slices (reflabel data shapes), keeps the
# labels of 20 of them (--labeled 20; per-class sampling, 64 pixels per class
# and slice, so the bank is small and built in well under a second) and
# pseudo-labels the other COUNT - 20 with a tiny U-Net trained for 40 steps
# (its quality does not matter here). Both launches go through the same
# launcher (mpirun -np 1, then -np 2), each rank with one thread, so that
# the launcher's start-up is in both times; the wall time is the whole
# command: reading the dataset, the bank on rank 0 and its broadcast, every
# case, the metrics. The launches alternate RL_BENCH_REPEATS times (default
# 2) and each keeps its best time: on a machine shared with other work the
# least disturbed run is the closest to the machine's own speed. The two
# output folders are compared byte for byte after each pair.
#
# Prints one line per launch and the ratio. The launcher is $MPIEXEC
# (default mpirun); --allow-run-as-root is added as root and --oversubscribe
# always (a 2-core machine has no spare slot for the launcher's bookkeeping).
# The work folder ($RL_BENCH_DIR, default a new folder under $TMPDIR) is
# removed afterwards unless RL_BENCH_KEEP=1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
count=${2:-1000}
repeats=${RL_BENCH_REPEATS:-2}
exe=$build/reflabel
mpiexec=${MPIEXEC:-mpirun}
if [ ! -x "$exe" ]; then
  echo "bench_pseudolabel_mpi.sh: $exe not found (build first: cmake --build $build)" >&2
  exit 2
fi
if ! command -v "$mpiexec" > /dev/null; then
  echo "bench_pseudolabel_mpi.sh: no $mpiexec (apt-get install openmpi-bin, or set MPIEXEC)" >&2
  exit 2
fi
launch=("$mpiexec" --oversubscribe)
if [ "$(id -u)" = 0 ]; then launch+=(--allow-run-as-root); fi
work=${RL_BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/reflabel-plmpi.XXXXXX")}
mkdir -p "$work"
if [ "${RL_BENCH_KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi

labeled=20
queries=$((count - labeled))
"$exe" data shapes --out "$work/data" --train "$count" --test 0 --size 32x32 --seed 1 > /dev/null
"$exe" train --data "$work/data" --out "$work/model" --steps 40 --batch 4 --depth 2 --width 8 \
  --threads 1 --quiet > /dev/null

# Seconds (wall) of one launch of N ranks into folder OUT.
one_launch() {
  local n=$1 out=$2 t0 t1
  rm -rf "$out"
  t0=$(date +%s.%N)
  "${launch[@]}" -np "$n" "$exe" pseudolabel --model "$work/model" --data "$work/data" \
    --out "$out" --labeled "$labeled" --sampling per-class --per-class 64 --threads 1 --quiet \
    > /dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

best1= best2=
for ((r = 0; r < repeats; r++)); do
  s1=$(one_launch 1 "$work/out-1")
  s2=$(one_launch 2 "$work/out-2")
  if ! diff -r -q "$work/out-1" "$work/out-2" > /dev/null; then
    echo "bench_pseudolabel_mpi.sh: 2 ranks wrote other files than 1 rank" >&2
    exit 1
  fi
  if [ -z "$best1" ] || [ "$(echo "$s1 < $best1" | bc -l)" = 1 ]; then best1=$s1; fi
  if [ -z "$best2" ] || [ "$(echo "$s2 < $best2" | bc -l)" = 1 ]; then best2=$s2; fi
  printf 'run %d: 1 rank %.2f s, 2 ranks %.2f s\n' $((r + 1)) "$s1" "$s2"
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
rate1=$(echo "$queries / $best1" | bc -l)
rate2=$(echo "$queries / $best2" | bc -l)
echo "# bash bench/bench_pseudolabel_mpi.sh $build $count  ($(date -u +%Y-%m-%d), $(nproc) cores, $cpu)"
echo "# $queries queries of 32x32, --labeled $labeled --sampling per-class --per-class 64," \
  "--threads 1 per rank, best of $repeats"
printf '1 rank : %7.2f s  %8.1f pseudo-labels/s\n' "$best1" "$rate1"
printf '2 ranks: %7.2f s  %8.1f pseudo-labels/s\n' "$best2" "$rate2"
printf 'ratio 2 ranks / 1 rank: %.2fx\n' "$(echo "$rate2 / $rate1" | bc -l)"
