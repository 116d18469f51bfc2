#!/usr/bin/env bash
# A short libFuzzer run of every fuzz target, for CI (scripts/test.sh runs
# it): the replays under CTest only re-check the committed corpus and
# regressions, this also tries new inputs against the current code.
#
#   bash scripts/fuzz_smoke.sh [SECONDS_PER_TARGET]     # default 15
#
# Builds the targets in their own folder (build-fuzz-smoke, or
# $RL_FUZZ_SMOKE_BUILD_DIR), so it neither reuses nor disturbs a long run in
# build-fuzz, and delegates the runs to scripts/fuzz.sh: each target on a
# copy of its corpus, with ASan + UBSan, -timeout=10 and -rss_limit_mb=2048;
# any crash, leak, sanitizer report, hang or out-of-memory fails the script
# (exit 1), and its input is kept in build-fuzz-smoke/fuzz-findings/<target>/.
# Needs clang with libFuzzer and OpenMP (bash scripts/setup.sh installs
# them).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-15}
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
fi
if ! command -v "${CC:-clang}" > /dev/null; then
  echo "fuzz_smoke.sh: ${CC:-clang} not found (bash scripts/setup.sh installs clang)" >&2
  exit 1
fi

targets=$(find "$root/fuzz" -maxdepth 1 -name 'fuzz_*.c' | wc -l)
echo "fuzz smoke run: $targets targets, ${seconds} s each"
start=$SECONDS
RL_FUZZ_BUILD_DIR=${RL_FUZZ_SMOKE_BUILD_DIR:-$root/build-fuzz-smoke} \
  RL_FUZZ_JOBS=${RL_FUZZ_JOBS:-$(nproc)} \
  bash "$root/scripts/fuzz.sh" "$seconds"
echo "fuzz smoke run: no finding ($((SECONDS - start)) s including the build)"
