#!/usr/bin/env bash
# Training throughput (images per second) of `reflabel train` as 1 rank x 1
# thread, 2 ranks x 1 thread (data parallel, src/train/shard.c) and 1 rank x
# 2 threads, in the same run (docs/DISTRIBUTED.md).
#
#   bash bench/bench_train_mpi.sh [BUILD_DIR] [STEPS]
#
# BUILD_DIR defaults to build/ (a Release build with MPI), STEPS to 40. The
# data are 64 generated 128x128 slices (reflabel data shapes), 16 of them
# labeled; the network is train's default (depth 4, width 16, group norm).
# Each configuration trains STEPS steps of batch 8 (RL_BENCH_METHODS,
# default "supervised refpl": refpl adds 8 unlabeled images per step), and
# its rate is read from log.csv's seconds column between the 5th and the
# last step, so that start-up (reading the data, creating the network, MPI's
# launch) is not counted: images per second = drawn images per step x steps
# / seconds. Every configuration goes through the same launcher (mpirun -np
# 1 or 2), repeated RL_BENCH_REPEATS times (default 2), alternating, and
# keeps its best rate: on a machine shared with other work the least
# disturbed run is the closest to the machine's own speed.
#
# Prints one line per configuration and method, and the ratios of 2 ranks
# to 1 rank x 1 thread and to 1 rank x 2 threads. The launcher is $MPIEXEC
# (default mpirun); --allow-run-as-root is added as root, --oversubscribe
# always. The work folder ($RL_BENCH_DIR, default a new folder under
# $TMPDIR) is removed afterwards unless RL_BENCH_KEEP=1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
steps=${2:-40}
repeats=${RL_BENCH_REPEATS:-2}
methods=${RL_BENCH_METHODS:-supervised refpl}
exe=$build/reflabel
mpiexec=${MPIEXEC:-mpirun}
if [ ! -x "$exe" ]; then
  echo "bench_train_mpi.sh: $exe not found (build first: cmake --build $build)" >&2
  exit 2
fi
if ! command -v "$mpiexec" > /dev/null; then
  echo "bench_train_mpi.sh: no $mpiexec (apt-get install openmpi-bin, or set MPIEXEC)" >&2
  exit 2
fi
# Idle OpenMP threads sleep instead of spinning (libgomp reads this when the
# process starts): spinning made 2 threads on 2 busy cores several times
# slower (docs/PERFORMANCE.md), which would flatter the ranks.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
launch=("$mpiexec" --oversubscribe)
if [ "$(id -u)" = 0 ]; then launch+=(--allow-run-as-root); fi
work=${RL_BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/reflabel-trainmpi.XXXXXX")}
mkdir -p "$work"
if [ "${RL_BENCH_KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi

"$exe" data shapes --out "$work/data" --train 64 --test 0 --size 128x128 --seed 1 > /dev/null

# Images per second of one launch: ranks, threads, method.
rate() {
  local ranks=$1 threads=$2 method=$3 out="$work/run"
  rm -rf "$out"
  "${launch[@]}" -np "$ranks" "$exe" train --data "$work/data" --out "$out" --labeled 16 \
    --method "$method" --steps "$steps" --batch 8 --threads "$threads" --checkpoint-every 0 \
    --seed 1 --quiet > /dev/null
  local images=8
  if [ "$method" != supervised ]; then images=16; fi
  awk -F, -v from=5 -v images="$images" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") col = i; next }
    $1 == from { t0 = $col } { step = $1; t1 = $col }
    END { printf "%.3f\n", images * (step - from) / (t1 - t0) }' "$out/log.csv"
}

better() { [ -z "$2" ] || [ "$(echo "$1 > $2" | bc -l)" = 1 ]; }

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "# $(date -u +%Y-%m-%d), $(nproc) cores, $cpu; $steps steps of batch 8, 128x128, best of $repeats"
for method in $methods; do
  r11= r21= r12=
  for ((r = 0; r < repeats; r++)); do
    x=$(rate 1 1 "$method"); if better "$x" "$r11"; then r11=$x; fi
    x=$(rate 2 1 "$method"); if better "$x" "$r21"; then r21=$x; fi
    x=$(rate 1 2 "$method"); if better "$x" "$r12"; then r12=$x; fi
  done
  printf '%-10s 1 rank x 1 thread  %7.2f images/s\n' "$method" "$r11"
  printf '%-10s 2 ranks x 1 thread %7.2f images/s  (%.2fx 1 rank x 1 thread)\n' "$method" "$r21" \
    "$(echo "$r21 / $r11" | bc -l)"
  printf '%-10s 1 rank x 2 threads %7.2f images/s  (2 ranks: %.2fx this)\n' "$method" "$r12" \
    "$(echo "$r21 / $r12" | bc -l)"
done
