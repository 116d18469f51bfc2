"""Oracle: the unlabeled loss of weak and strong views (src/train/views.c)
equals PyTorch's, gradient for gradient.

tests/tool_views runs three training steps of fixmatch, unimatch and refpl
(a strong view, a pool of reference images, consistency weight 0.7) and
writes the last step's logits of every image, the loss gradient the trainer
computed, its targets and CutMix boxes. Here, from the logits alone:
  - the weak view's targets (fixmatch, unimatch): argmax where the softmax
    maximum reaches 0.4 and the pixel is not padding, else ignored; refpl's come from reference matching
    (checked against FAISS and brute force elsewhere) and are taken as given;
  - the strong views' targets: the weak ones with each view's box pasted
    from the next unlabeled image's;
  - the loss: CE + Dice (weight 1) on the labeled images; on each strong view
    weight (1 or 0.5 with perturbed copies) / views of CE + PL_DICE * Dice
    against its targets, refpl's consistency (weak argmax >= 0.4) at 0.7 of
    that, unimatch's perturbed copies at 0.5 against the weak targets;
and torch.autograd's gradient of it must equal the trainer's, which must
also be exactly zero on the weak views and the reference images.

usage: test_torch_views.py BUILD_DIR
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from oracle_checks import check, report

THRESHOLD, CONSISTENCY, SMOOTH = 0.4, 0.7, 1e-5


def ce(logits, targets):
    valid = targets >= 0
    if not valid.any():
        return logits.sum() * 0
    return F.cross_entropy(logits, targets.clamp(min=0), reduction="none")[valid].mean()


def dice(logits, targets):
    """1 - mean over classes of batch Dice on the non-ignored pixels."""
    valid = (targets >= 0).unsqueeze(1).to(logits.dtype)
    if valid.sum() == 0:
        return logits.sum() * 0
    probs = torch.softmax(logits, dim=1) * valid
    onehot = F.one_hot(targets.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2) * valid
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1 - ((2 * inter + SMOOTH) / (total + SMOOTH)).mean()


def mixed(targets, boxes, views, nu):
    out = []
    for j in range(views):
        for i in range(nu):
            t = targets[i].clone()
            y, x, h, w = boxes[j * nu + i]
            t[y:y + h, x:x + w] = targets[(i + 1) % nu][y:y + h, x:x + w]
            out.append(t)
    return torch.stack(out)


def run(build, method, pl_dice):
    name = f"{method} pl_dice {pl_dice}"
    with tempfile.TemporaryDirectory(dir=os.environ.get("RL_TEST_TMP")) as out:
        subprocess.run([os.path.join(build, "tests", "tool_views"), out, method, str(pl_dice)],
                       check=True)
        load = lambda f: np.load(os.path.join(out, f))
        nl, nu, nr, ns, nfp, k = (int(v) for v in load("layout.npy"))
        logits = torch.from_numpy(load("logits.npy")).double().requires_grad_(True)
        want = load("dlogits.npy").astype(np.float64)
        codes = torch.from_numpy(load("labels.npy")).long()
        labels = codes[:nl]
        valid = codes[nl:nl + nu] != -1  # not padding the augmentation moved in
        pseudo = torch.from_numpy(load("pseudo.npy")).long()
        s0, fp0 = nl + nu + nr, nl + nu + nr + ns * nu

        weak = logits[nl:nl + nu].detach()
        conf, arg = torch.softmax(weak, dim=1).max(dim=1)
        confident = torch.where((conf >= THRESHOLD) & valid, arg, torch.full_like(arg, -1))
        if method != "refpl":
            near = (conf - THRESHOLD).abs() < 1e-5
            check(bool((pseudo == confident)[~near].all()),
                  f"{name}: weak targets differ from argmax >= {THRESHOLD}")
        check(bool((pseudo >= 0).any()) and bool((pseudo < 0).any()),
              f"{name}: the targets should keep some pixels and drop others")

        loss = ce(logits[:nl], labels) + dice(logits[:nl], labels)
        share = 0.5 if nfp else 1.0
        boxes = load("boxes.npy") if ns else None
        if ns:
            strong = mixed(pseudo, boxes, ns, nu)
            got = torch.from_numpy(load("strong_targets.npy")).long()
            check(bool((strong == got).all()), f"{name}: strong targets are not the mixed ones")
            cons = mixed(confident, boxes, ns, nu)
        for j in range(max(ns, 1)):
            first = s0 + j * nu if ns else nl
            view = logits[first:first + nu]
            targets = strong[j * nu:(j + 1) * nu] if ns else pseudo
            w = share / max(ns, 1)
            loss = loss + w * (ce(view, targets) + pl_dice * dice(view, targets))
            if method == "refpl":
                c = cons[j * nu:(j + 1) * nu] if ns else confident
                loss = loss + w * CONSISTENCY * (ce(view, c) + pl_dice * dice(view, c))
        if nfp:
            view = logits[fp0:fp0 + nu]
            loss = loss + 0.5 * (ce(view, pseudo) + pl_dice * dice(view, pseudo))
        loss.backward()
        grad = logits.grad.numpy()
        check(not want[nl:s0].any(), f"{name}: weak views or references got a gradient")
        err = np.abs(grad - want).max() / max(np.abs(grad).max(), 1e-30)
        check(err < 2e-5, f"{name}: gradient differs from torch's by {err:.3g} (relative max)")
        print(f"{name}: {nl} labeled, {nu} unlabeled, {nr} references, {ns} strong views, "
              f"{nfp} perturbed; gradient relative max error {err:.2e}")


def main():
    build = sys.argv[1]
    torch.set_num_threads(1)
    for method in ("fixmatch", "unimatch", "refpl"):
        for pl_dice in (0.0, 1.0):
            run(build, method, pl_dice)
    return report()


if __name__ == "__main__":
    sys.exit(main())
