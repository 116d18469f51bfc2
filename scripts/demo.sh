#!/usr/bin/env bash
# The first thing to run on a fresh Debian machine: installs the build
# dependencies (including the brain atlas of Debian's mricron-data), builds
# reflabel, and runs `reflabel demo`, which trains a U-Net with the expert
# labels of 5% of the slices of a brain MRI, pseudo-labels the rest and
# writes OUT/report/report.html (docs/DEMO.md).
#   bash scripts/demo.sh [OUT_DIR]      (default reflabel-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
build/reflabel demo --out "${1:-reflabel-demo}"
