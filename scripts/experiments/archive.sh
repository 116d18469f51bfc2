#!/usr/bin/env bash
# Copies the finished runs of a results folder into a folder kept in git, so
# that the numbers of docs/RESULTS.md outlive the machine they were measured
# on (results/ is not tracked: it holds models and the dataset).
#
#   bash scripts/experiments/archive.sh [RESULTS_DIR [ARCHIVE_DIR]]
#
# Defaults: results/atlas -> docs/results/atlas. Per run NAME-sSEED/ it keeps
# command.txt, test_metrics.json, rounds.csv (runs with --rounds: the quality of
# each round's pseudo-labels) and log.csv as log.csv.gz (gzip -n: the same log
# gives the same bytes), which is all that summarize.py reads:
#   /usr/bin/python3 scripts/experiments/summarize.py docs/results/atlas
# Runs already archived are copied again (a rerun replaces them); unfinished
# (.partial) runs are skipped.
set -euo pipefail
src=${1:-results/atlas}
dst=${2:-docs/results/atlas}
[ -d "$src" ] || { echo "archive.sh: $src: no such folder" >&2; exit 1; }
count=0
for run in "$src"/*-s[0-9]*; do
  name=$(basename "$run")
  [[ $name == *.partial* ]] && continue
  [ -f "$run/test_metrics.json" ] && [ -f "$run/log.csv" ] || continue
  tmp="$dst/.$name.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp "$run/test_metrics.json" "$tmp/"
  for f in command.txt rounds.csv; do if [ -f "$run/$f" ]; then cp "$run/$f" "$tmp/"; fi; done
  gzip -n -9 < "$run/log.csv" > "$tmp/log.csv.gz"
  rm -rf "${dst:?}/$name"
  mv "$tmp" "$dst/$name"
  count=$((count + 1))
done
echo "archive.sh: $count run(s) of $src in $dst"
