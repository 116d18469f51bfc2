"""PyTorch baseline for `reflabel bench train`: times one training step
(forward, softmax cross-entropy, backward, AdamW update) of the identical
U-Net (tests/oracle/torch_unet.py) on CPU and prints one JSON line.

usage: bench_train_torch.py [--batch 8] [--size 128] [--width 16] [--depth 4]
                            [--classes 8] [--norm group] [--threads 2]
                            [--steps 10] [--warmup 2]
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "oracle"))
import torch_unet  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--norm", choices=["none", "group", "batch"], default="group")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = {"in_channels": 1, "num_classes": args.classes, "depth": args.depth,
           "base_width": args.width, "norm": args.norm}
    net = torch_unet.UNet(cfg)
    net.reset_parameters_like_reflabel()
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.randn(args.batch, 1, args.size, args.size)
    labels = torch.randint(0, args.classes, (args.batch, args.size, args.size))

    def step():
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "impl": "torch", "torch_version": torch.__version__, "threads": args.threads,
        "ms_per_step": round(ms, 3), "images_per_s": round(args.batch * 1e3 / ms, 3),
        "peak_rss_mib": round(rss_kib / 1024, 1),
    }))


if __name__ == "__main__":
    main()
