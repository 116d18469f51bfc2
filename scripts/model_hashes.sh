#!/usr/bin/env bash
# Fingerprints of training behaviour: trains each method for a few steps at a
# fixed seed on small generated data and prints the SHA-256 of every written
# model.safetensors. Run it with the binaries from before and after a change
# that must not change behaviour (same machine, same thread count) and
# compare the two outputs line by line:
#   bash scripts/model_hashes.sh OLD_BINARY /tmp/h-old > old.txt
#   bash scripts/model_hashes.sh build/reflabel /tmp/h-new > new.txt
#   diff old.txt new.txt
# The hashes do not depend on the work folder; they do depend on the CPU,
# the BLAS kernels and the thread count (RL_HASH_THREADS, default 1). Only
# the tensors are hashed, not the safetensors header, whose metadata (the
# run's options) grows with every new option.
set -euo pipefail
bin=$(realpath "$1")
work=${2:-/tmp/rl-model-hashes}
threads=${RL_HASH_THREADS:-1}
rm -rf "$work" && mkdir -p "$work"
cd "$work"
"$bin" data shapes --out shapes --train 24 --test 4 --size 32x32 --seed 3 >/dev/null
"$bin" data stripes --out stripes --train 24 --test 4 --size 32x32 --seed 3 >/dev/null
"$bin" data shapes --out multi --train 24 --test 4 --size 32x32 --seed 3 --multilabel >/dev/null
common=(--steps 30 --batch 4 --depth 2 --width 8 --threads "$threads" --quiet --seed 7
        --checkpoint-every 0)
tensors() { # the bytes after the safetensors header (8-byte length, JSON)
  local n
  n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  tail -c +$((9 + n)) "$1"
}
run() { # name data [options...]
  local name=$1 data=$2; shift 2
  "$bin" train --data "$data" --out "run-$name" "${common[@]}" "$@" >/dev/null 2>&1 ||
    { echo "$name: train failed" >&2; exit 1; }
  echo "$name $(tensors "run-$name/model.safetensors" | sha256sum | cut -d' ' -f1)"
}
run supervised shapes --labeled 6
run refpl stripes --labeled 6 --method refpl --pl-warmup 0.1
run refpl-hyper stripes --labeled 6 --method refpl --pl-warmup 0.1 --features hypercolumn \
    --memory 3 --keep-fraction 0.5 --margin-accuracy 0
run refpl-batchnorm stripes --labeled 6 --method refpl --pl-warmup 0.1 --norm batch --topk 3 --sampling per-class \
    --memory 2
run predpl shapes --labeled 6 --method predpl --pl-warmup 0.1 --min-confidence 0.5
run meanteacher shapes --labeled 6 --method meanteacher --pl-warmup 0.1
run refpl-vote stripes --labeled 6 --method refpl --pl-warmup 0.1 --per-image-vote --similarity dot
run multilabel-refpl multi --labeled 6 --method refpl --pl-warmup 0.1
run multilabel-predpl multi --labeled 6 --method predpl --pl-warmup 0.1 --min-confidence 0.5
run rounds stripes --labeled 6 --rounds 2 --steps 20
run rounds-refpl stripes --labeled 6 --rounds 2 --steps 20 --method refpl --pl-warmup 0.1
# Offline pseudo-labels of a trained model, every file they write.
pl() { # name [options...]
  local name=$1; shift
  "$bin" pseudolabel --model run-supervised --data shapes --labeled 6 --out "pl-$name" \
      --threads "$threads" --quiet "$@" >/dev/null 2>&1 ||
    { echo "pseudolabel $name failed" >&2; exit 1; }
  echo "pseudolabel-$name $(cd "pl-$name" && find . -type f | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
}
pl default
pl tuned --sampling per-class --per-class 64 --topk 3 --min-confidence 0.05 --export-nnunet pl-tuned-nnunet
