#!/usr/bin/env bash
# Installs every build and test dependency of reflabel from Debian packages,
# when missing. Safe to run repeatedly; needs root (or sudo) only to install.
#   bash scripts/setup.sh          build + test dependencies
#   bash scripts/setup.sh --build  build dependencies only
set -euo pipefail

# libdnnl-dev: oneDNN, the optional second convolution backend (RL_DNNL).
build_pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev zlib1g-dev libpng-dev
            libnifti2-dev libcjson-dev mricron-data libdnnl-dev)
# Optional, detected at build time (reflabel builds and runs without them):
# Open MPI for running under mpirun/srun (docs/DISTRIBUTED.md).
build_pkgs+=(libopenmpi-dev openmpi-bin)
# Test oracles: PyTorch, SciPy, nibabel, FAISS, and Pillow (reads PNG outputs
# independently of our reader).
test_pkgs=(python3 python3-numpy python3-torch python3-scipy python3-nibabel python3-faiss python3-pil)
# The fuzzing smoke run (scripts/fuzz_smoke.sh): clang, its libFuzzer and
# sanitizer runtimes (libclang_rt.fuzzer*.a are in libclang-rt-14-dev on
# bookworm), and LLVM's OpenMP for clang's -fopenmp. time:
# bench/pseudolabel_10k.sh (peak RSS with /usr/bin/time -v).
test_pkgs+=(clang libclang-rt-dev libomp-dev time)

pkgs=("${build_pkgs[@]}")
if [[ "${1:-}" != "--build" ]]; then
  pkgs+=("${test_pkgs[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#pkgs[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
