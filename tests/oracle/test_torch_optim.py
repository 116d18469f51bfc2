"""Oracle: AdamW and SGD (Nesterov) trajectories, with the warm-up + poly /
cosine schedule and gradient-norm clipping, equal torch.optim's.

tests/tool_optim records 20 steps of the C optimizer on seeded gradients;
this script replays the same gradients through torch.optim.AdamW / SGD with
torch.nn.utils.clip_grad_norm_ and LambdaLR, in float32 as in training.

usage: test_torch_optim.py BUILD_DIR
"""
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

TOL = 1e-5
STEPS, WARMUP = 20, 4
SPANS = [(0, 20, True), (20, 30, False), (30, 50, True)]


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def schedule(kind, base, min_lr, t):
    """The documented schedule: linear warm-up from 0, then poly(0.9) or cosine."""
    if t < WARMUP:
        return base * t / WARMUP
    s = min((t - WARMUP) / (STEPS - WARMUP), 1.0)
    if kind == "poly":
        return min_lr + (base - min_lr) * (1 - s) ** 0.9
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * s))


def replay(kind, sched, out):
    init = np.load(os.path.join(out, "init.npy"))
    grads = np.load(os.path.join(out, "grads.npy"))
    params = [torch.nn.Parameter(torch.from_numpy(init[a:b].copy())) for a, b, _ in SPANS]
    decayed = [p for p, (_, _, d) in zip(params, SPANS) if d]
    plain = [p for p, (_, _, d) in zip(params, SPANS) if not d]
    if kind == "adamw":
        base, wd = 1e-2, 0.05
        groups = [{"params": decayed, "weight_decay": wd}, {"params": plain, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=base, betas=(0.9, 0.999), eps=1e-8)
    else:
        base, wd = 0.1, 1e-3
        groups = [{"params": decayed, "weight_decay": wd}, {"params": plain, "weight_decay": 0.0}]
        opt = torch.optim.SGD(groups, lr=base, momentum=0.9, nesterov=True)
    lr_lambda = lambda t: schedule(sched, base, 1e-4, t) / base  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    traj, lrs, norms = [], [], []
    for t in range(STEPS):
        for p, (a, b, _) in zip(params, SPANS):
            p.grad = torch.from_numpy(grads[t, a:b].copy())
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, 1.0)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
        traj.append(torch.cat([p.detach() for p in params]).numpy().copy())
    return np.stack(traj), np.array(lrs), np.array(norms)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    tool = os.path.join(build, "tests", "tool_optim")
    passed = failed = 0
    base = os.environ.get("RL_TEST_TMP", tempfile.gettempdir())
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as workdir:
        for kind, sched in [("adamw", "poly"), ("sgd", "cosine"), ("adamw", "cosine"),
                            ("sgd", "poly")]:
            out = os.path.join(workdir, f"{kind}-{sched}")
            os.makedirs(out)
            subprocess.run([tool, out, kind, sched], check=True)
            traj, lrs, norms = replay(kind, sched, out)
            init = np.load(os.path.join(out, "init.npy"))
            c_traj = np.load(os.path.join(out, "params.npy"))
            # Compare the movement from the start, not the parameters themselves,
            # so that the error is relative to what the optimizer changed.
            checks = [("params - init", c_traj - init, traj - init),
                      ("lr", np.load(os.path.join(out, "lr.npy")), lrs),
                      ("grad norm", np.load(os.path.join(out, "norm.npy")), norms)]
            # Every step, not just the whole trajectory, must agree.
            worst = max(rel_l2(c_traj[t] - init, traj[t] - init) for t in range(STEPS))
            checks.append(("worst step", [worst], [0.0]))
            for label, c_value, t_value in checks:
                err = worst if label == "worst step" else rel_l2(c_value, t_value)
                ok = err <= TOL
                print(f"{'ok  ' if ok else 'FAIL'} {kind}+{sched} {label}: rel_l2 {err:.2e}")
                passed += ok
                failed += not ok
            clipped = int((norms > 1.0).sum())
            ok = 0 < clipped < STEPS  # both regimes of clipping were exercised
            print(f"{'ok  ' if ok else 'FAIL'} {kind}+{sched} clipped {clipped}/{STEPS} steps")
            passed += ok
            failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
