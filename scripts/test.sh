#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: first a Release build, then
# the same tests under AddressSanitizer + UndefinedBehaviorSanitizer, then a
# short libFuzzer run of every fuzz target (scripts/fuzz_smoke.sh, about
# 15 s per target plus its build).
#   bash scripts/test.sh            all three
#   bash scripts/test.sh --fast     Release build only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

if [[ "${1:-}" != "--fast" ]]; then
  # -O2 keeps the sanitized run of the training test within minutes.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRL_SANITIZE=ON
  cmake --build build-asan -j"$jobs"
  # detect_leaks: the library must not leak; halt_on_error: a report fails the test.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")
  # New inputs, not only the replayed corpus; exits 1 on any finding.
  bash scripts/fuzz_smoke.sh "${RL_FUZZ_SMOKE_SECONDS:-15}"
fi
