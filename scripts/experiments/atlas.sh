#!/usr/bin/env bash
# The brain-atlas experiments of docs/RESULTS.md, resumable.
#
#   bash scripts/experiments/atlas.sh [GROUP|NAME...]
#
# GROUP is main or ablation (both by default); NAME picks single rows of
# scripts/experiments/atlas_configs.tsv. Every (row, seed) is one
# `reflabel train` run into $RL_EXP_DIR/NAME-sSEED/. A run trains in
# NAME-sSEED.partial/ and is renamed when it has finished and been scored, so
# an interrupted sweep (Ctrl-C, SIGKILL, reboot) restarts the unfinished runs
# only: rerun the same command. Finished runs are never repeated; delete a
# run's folder to repeat it. A run archived in git (RL_ARCHIVE, by
# scripts/experiments/archive.sh) counts as finished too, so that a new
# machine, whose results folder is empty, runs only what the archive lacks.
# When all runs are done, archive them and summarise both folders:
#   bash scripts/experiments/archive.sh $RL_EXP_DIR
#   /usr/bin/python3 scripts/experiments/summarize.py $RL_ARCHIVE $RL_EXP_DIR
#
# Environment:
#   RL_EXP_DIR   results folder (default results/atlas)
#   RL_ARCHIVE   archived runs that are not repeated (default docs/results/atlas;
#                empty: repeat them)
#   RL_DATA      the 2 mm atlas dataset, built when missing (default
#                $RL_EXP_DIR/atlas2: `reflabel data atlas --downsample 2`)
#   RL_SEEDS     seeds (default "0 1 2")
#   RL_JOBS      runs in parallel (default 1), each with RL_THREADS threads (1)
#   RL_REFLABEL  the executable (default build/reflabel)
#   RL_STEPS     training steps of every run (default 2000; the pilot: 400)
#   RL_CONFIGS   the table of rows (default scripts/experiments/atlas_configs.tsv;
#                the in-plane benchmark: atlas_inplane_configs.tsv)
#   RL_COMMON    the options every run shares (default: those of the 2 mm
#                table, below)
#   RL_DATA_ARGS how `reflabel data atlas` builds RL_DATA (default
#                "--downsample 2"; the in-plane benchmark: "--downsample 2 --in-plane")
set -euo pipefail
# The whole script is one block, read before it runs: bash reads a script as
# it goes, so editing a plain script under a running sweep would make the sweep
# run whatever now sits at its old position in the file.
{

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exe=${RL_REFLABEL:-$root/build/reflabel}
out=${RL_EXP_DIR:-results/atlas}
archive=${RL_ARCHIVE-$root/docs/results/atlas}
data=${RL_DATA:-$out/atlas2}
seeds=${RL_SEEDS:-0 1 2}
jobs=${RL_JOBS:-1}
threads=${RL_THREADS:-1}
configs=${RL_CONFIGS:-$root/scripts/experiments/atlas_configs.tsv}
# What every run shares, so that rows differ only in their own options.
common="--steps ${RL_STEPS:-2000} ${RL_COMMON:---batch 4 --depth 4 --width 8 --lr 2e-3 --labeled-mode even}"

[ -x "$exe" ] || { echo "atlas.sh: $exe not found; build first (cmake --build build)" >&2; exit 1; }
mkdir -p "$out"
if [ ! -f "$data/dataset.json" ]; then
  "$exe" data atlas --out "$data" ${RL_DATA_ARGS:---downsample 2}
fi

selected=("$@")
[ ${#selected[@]} -eq 0 ] && selected=(main ablation)
wanted() { # name group
  local s
  for s in "${selected[@]}"; do [ "$s" = "$1" ] || [ "$s" = "$2" ] && return 0; done
  return 1
}

# One line per pending run: "NAME SEED OPTIONS...".
# Seed-major order: a partial sweep has every row for the first seeds.
pending=()
for seed in $seeds; do
  while IFS=$'\t' read -r name group options; do
    [[ -z $name || $name == \#* ]] && continue
    wanted "$name" "$group" || continue
    [ -f "$out/$name-s$seed/test_metrics.json" ] && continue
    [ -n "$archive" ] && [ -f "$archive/$name-s$seed/test_metrics.json" ] && continue
    pending+=("$name $seed $options")
  done < "$configs"
done
echo "atlas.sh: ${#pending[@]} run(s) to do in $out (data $data, $jobs at a time)"
[ ${#pending[@]} -eq 0 ] && exit 0

run_one() { # NAME SEED OPTIONS...
  local name=$1 seed=$2
  shift 2
  local dir="$out/$name-s$seed"
  rm -rf "$dir.partial"
  local cmd=("$exe" train --data "$data" --out "$dir.partial" $common "$@" --seed "$seed"
             --threads "$threads" --quiet)
  local t0=$SECONDS
  if "${cmd[@]}" > "$dir.partial.log" 2>&1; then
    { printf '%s\n' "${cmd[*]}" | sed "s#$dir.partial#$dir#"
      echo "# reflabel built from commit $source_rev"; } > "$dir.partial/command.txt"
    mv "$dir.partial.log" "$dir.partial/train.log"
    mv "$dir.partial" "$dir"
    echo "done   $name seed $seed ($((SECONDS - t0)) s)"
  else
    echo "FAILED $name seed $seed: see $dir.partial.log" >&2
    return 1
  fi
}
export -f run_one
# The commit the executable was built from, recorded with every run.
source_rev=$(git -C "$(dirname "$exe")" rev-parse --short HEAD 2>/dev/null || echo unknown)
export exe out data common threads source_rev

printf '%s\n' "${pending[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
exit
}
