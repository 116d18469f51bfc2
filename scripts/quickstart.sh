#!/usr/bin/env bash
# Sets up, builds, generates a synthetic dataset, trains a small U-Net on it,
# and scores its predictions on the held-out cases. About a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
out=${1:-quickstart}
rm -rf "$out"
build/reflabel data shapes --out "$out/data" --train 64 --test 16
build/reflabel train --data "$out/data" --out "$out/run" --steps 400 --batch 8 --depth 3 \
  --width 16 --lr 3e-3 --seed 0
echo "report: $out/run/test_metrics.json"
