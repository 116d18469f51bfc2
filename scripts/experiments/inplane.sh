#!/usr/bin/env bash
# The in-plane atlas benchmark of docs/RESULTS.md (issue 16), resumable:
#
#   bash scripts/experiments/inplane.sh [GROUP|NAME...]
#
# GROUP: main4, full, main8, ablation (rows of atlas_inplane_configs.tsv).
# atlas.sh runs them (same environment: RL_SEEDS, RL_JOBS, RL_THREADS,
# RL_EXP_DIR ...), here with width 16, batch 4, lr 2e-3, evenly spaced
# labeled slices, and RL_STEPS steps (default 600: what 2 cores allow for
# the grid in a few hours; docs/RESULTS.md gives the steps of every table).
# The numbers of docs/RESULTS.md were run with RL_CONV=dnnl and
# OPENBLAS_CORETYPE=SkylakeX (the kernels of the Sapphire Rapids VM), set
# below unless the environment sets them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export RL_CONFIGS=$here/atlas_inplane_configs.tsv
export RL_COMMON="--batch 4 --depth 4 --width 16 --lr 2e-3 --labeled-mode even"
export RL_DATA_ARGS="--downsample 2 --in-plane"
export RL_STEPS=${RL_STEPS:-600}
export RL_EXP_DIR=${RL_EXP_DIR:-results/inplane}
export RL_ARCHIVE=${RL_ARCHIVE-$here/../../docs/results/inplane}
export RL_DATA=${RL_DATA:-$RL_EXP_DIR/atlas-inplane}
export RL_CONV=${RL_CONV:-dnnl}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
[ $# -eq 0 ] && set -- main4 full main8 ablation
exec bash "$here/atlas.sh" "$@"
