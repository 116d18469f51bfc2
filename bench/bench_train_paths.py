#!/usr/bin/env python3
"""The U-Net training step on each convolution path against PyTorch, in one
run (docs/PERFORMANCE.md, "Training step").

    /usr/bin/python3 bench/bench_train_paths.py [BUILD_DIR] [STEPS]

For width 16 and 32 and 1 and 2 threads (batch 8, 128x128, depth 4, group
norm, 8 classes): `reflabel bench train --conv dnnl --torch` (oneDNN and
PyTorch 1.13 one after the other, same settings) and `--conv im2col`; then
the same with every library held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 for
oneDNN, ours and PyTorch's; ATEN_CPU_CAPABILITY=avx2 for PyTorch's own
kernels), which stands in for a CPU without AVX-512. STEPS timed steps
(default 5) after one warm-up, medians; OMP_WAIT_POLICY=PASSIVE. Prints a
Markdown table: ms per step, the oneDNN / PyTorch ratio, the convolutions'
GFLOP/s and fraction of the measured FP32 peak, peak RSS.
RL_BENCH_ISAS="native" skips the AVX2 rows; RL_BENCH_IM2COL=0 the im2col
column."""
import json
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build")
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
exe = os.path.join(build, "reflabel")
isas = os.environ.get("RL_BENCH_ISAS", "native avx2").split()
with_im2col = os.environ.get("RL_BENCH_IM2COL", "1") != "0"
if not os.access(exe, os.X_OK):
    sys.exit(f"bench_train_paths.py: {exe} not found (build first)")


def bench(width, threads, conv, isa, torch):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if isa == "avx2":
        env.update(ONEDNN_MAX_CPU_ISA="AVX2", DNNL_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    cmd = [exe, "bench", "train", "--batch", "8", "--size", "128", "--width", str(width),
           "--depth", "4", "--norm", "group", "--classes", "8", "--threads", str(threads),
           "--steps", str(steps), "--warmup", "1", "--conv", conv] + (["--torch"] if torch else [])
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if p.returncode != 0:
        sys.exit(f"bench_train_paths.py: {' '.join(cmd)}: {p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


print("| ISA | width | threads | im2col ms | oneDNN ms | PyTorch ms | oneDNN / PyTorch | "
      "oneDNN GFLOP/s (of peak) | PyTorch GFLOP/s (of peak) | peak RSS oneDNN / PyTorch |")
print("| --- " * 10 + "|")
gflop = {}
for isa in isas:
    for width in (16, 32):
        for threads in (1, 2):
            d = bench(width, threads, "dnnl", isa, True)
            im = bench(width, threads, "im2col", isa, False)["c"]["ms_per_step"] \
                if with_im2col and isa == "native" else None
            c, t = d["c"], d["torch"]
            gflop[width] = d["conv_gflop_per_step"]
            frac = lambda s: f"{s['gflops']:.0f} ({s.get('fraction_of_peak', 0):.2f})"  # noqa: E731
            print(f"| {isa} | {width} | {threads} | {'' if im is None else f'{im:.0f}'} | "
                  f"{c['ms_per_step']:.0f} | {t['ms_per_step']:.0f} | "
                  f"{d['ratio_c_over_torch']:.2f} | {frac(c)} | {frac(t)} | "
                  f"{c['peak_rss_mib']:.0f} / {t['peak_rss_mib']:.0f} MiB |", flush=True)
print("\nThe convolutions' GFLOP per step: " +
      ", ".join(f"{v:.1f} at width {w}" for w, v in gflop.items()) +
      "; each fraction is of the FP32 peak measured with the row's thread count.")
