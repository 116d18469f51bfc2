#!/usr/bin/env bash
# Fuzzes reflabel's file readers with libFuzzer + ASan + UBSan.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# TARGET is a name of fuzz/fuzz_<TARGET>.c (png nifti gif metaimage jsrt
# dataset_json safetensors labeled_list); all of them by default. SECONDS_PER_TARGET
# defaults to 60. Targets run one after the other, each on a copy of
# fuzz/corpus/<TARGET> (the committed seeds stay as they are). Prints, per
# target, the executions, coverage (cov: edges, ft: features), corpus growth
# and findings; crash/leak/timeout/oom inputs are kept in
# BUILD/fuzz-findings/<TARGET>/ (minimise one with
#   BUILD/fuzz/fuzz_<TARGET> -minimize_crash=1 -runs=10000 FILE
# and add it to fuzz/regressions/<TARGET>/). Exits 1 on any finding.
#
# Environment: RL_FUZZ_BUILD_DIR (default build-fuzz), RL_FUZZ_JOBS (build
# parallelism, default 1), CC (default clang).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi
shift || true
build=${RL_FUZZ_BUILD_DIR:-$root/build-fuzz}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in "$root"/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    targets+=("${name#fuzz_}")
  done
fi
for t in "${targets[@]}"; do
  if [ ! -f "$root/fuzz/fuzz_$t.c" ]; then
    echo "fuzz.sh: no target '$t' (fuzz/fuzz_$t.c)" >&2
    exit 2
  fi
done

mkdir -p "$build"
CC=${CC:-clang} cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRL_FUZZ=ON \
  -DBUILD_TESTING=OFF > "$build/fuzz-configure.log" 2>&1 ||
  { cat "$build/fuzz-configure.log" >&2; exit 1; }
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "fuzz_$t"); done
cmake --build "$build" -j"${RL_FUZZ_JOBS:-1}" "${build_targets[@]}"

# One thread each: the readers do not need more and the fuzzer measures
# coverage, not speed.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}

status=0
summary=()
for t in "${targets[@]}"; do
  work=$(mktemp -d "${TMPDIR:-/tmp}/reflabel-fuzz.XXXXXX")
  mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp"
  cp -r "$root/fuzz/corpus/$t/." "$work/corpus/" 2>/dev/null || true
  seeds=$(find "$work/corpus" -type f | wc -l)
  log="$build/fuzz-$t.log"
  echo "== fuzz_$t: ${seconds}s on $seeds seeds (log: $log)"
  rc=0
  # -timeout: one input taking 10 s is a finding (hang); -rss_limit_mb keeps
  # a hostile size field from taking the machine down.
  TMPDIR="$work/tmp" "$build/fuzz/fuzz_$t" "$work/corpus" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" > "$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<< "$last")
  findings=$(find "$work/artifacts" -type f | wc -l)
  if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
    status=1
    mkdir -p "$build/fuzz-findings/$t"
    cp "$work/artifacts/"* "$build/fuzz-findings/$t/" 2>/dev/null || true
    grep -m3 -E 'ERROR: |runtime error|SUMMARY' "$log" || true
    result="FOUND $findings input(s), exit $rc: see $build/fuzz-findings/$t and $log"
  else
    result="no finding"
  fi
  line=$(printf '%-14s execs %-9s cov %-6s ft %-6s corpus %-10s %s' "$t" "${execs:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")
  echo "$line"
  summary+=("$line")
  rm -rf "$work"
done

echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
