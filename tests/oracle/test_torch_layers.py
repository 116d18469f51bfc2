"""Oracle: every layer and loss of reflabel against PyTorch.

Runs BUILDDIR/tests/tool_layers, which writes seeded random inputs and
reflabel's outputs and gradients as .npy files, recomputes everything with
torch in float64 from the same float32 inputs (autograd for the gradients),
and requires a relative L2 error ||a - b|| / ||b|| <= 1e-4 for every tensor.

The tool runs once per convolution backend (RL_CONV=im2col, =dnnl; every
layer, so that the other layers are checked twice too); a backend the build
lacks (tool exit 77) is skipped with a note.

Usage: test_torch_layers.py BUILDDIR
Prints one line per comparison, then "N passed, M failed"; exits non-zero on
any failure, or when torch or numpy is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # an oracle that cannot run must fail, not skip
    print(f"test_torch_layers: cannot import the oracle: {exc}")
    print("0 passed, 1 failed")
    sys.exit(1)

TOLERANCE = 1e-4


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.worst = {}

    def compare(self, case, kind, tensor, got, want):
        """got: reflabel's array; want: torch's float64 tensor or array."""
        want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            self.failed += 1
            print(f"FAIL {case}.{tensor}: shape {got.shape} != {want.shape}")
            return
        den = np.linalg.norm(want)
        err = np.linalg.norm(got - want) / (den if den > 1e-30 else 1e-15)
        ok = bool(err <= TOLERANCE)
        self.passed += ok
        self.failed += not ok
        key = (kind, tensor)
        self.worst[key] = max(self.worst.get(key, 0.0), err)
        print(f"{'ok  ' if ok else 'FAIL'} {case}.{tensor}: relative L2 error {err:.3e}")

    def require(self, case, what, condition):
        self.passed += bool(condition)
        self.failed += not condition
        print(f"{'ok  ' if condition else 'FAIL'} {case}: {what}")


def parse_cases(folder):
    cases = []
    with open(os.path.join(folder, "cases.txt")) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            params = dict(item.split("=", 1) for item in fields[2:])
            cases.append((fields[0], fields[1], params))
    return cases


class Case:
    """Loads <folder>/<name>.<tensor>.npy on demand."""

    def __init__(self, folder, name):
        self.folder, self.name = folder, name

    def has(self, tensor):
        return os.path.exists(self.path(tensor))

    def path(self, tensor):
        return os.path.join(self.folder, f"{self.name}.{tensor}.npy")

    def np(self, tensor):
        return np.load(self.path(tensor))

    def leaf(self, tensor):
        """float64 torch tensor that records gradients."""
        return torch.from_numpy(self.np(tensor).astype(np.float64)).requires_grad_(True)

    def const(self, tensor):
        return torch.from_numpy(self.np(tensor).astype(np.float64))


def backward(y, dy, case):
    y.backward(case.const(dy))


def check_conv2d(c, p, chk, kind):
    x, w = c.leaf("x"), c.leaf("weight")
    b = c.leaf("bias") if p["bias"] == "1" else None
    y = F.conv2d(x, w, b, stride=int(p["stride"]), padding=int(p["pad"]))
    backward(y, "dy", c)
    chk.compare(c.name, kind, "y", c.np("y"), y)
    chk.compare(c.name, kind, "dx", c.np("dx"), x.grad)
    chk.compare(c.name, kind, "dweight", c.np("dweight"), w.grad)
    if b is not None:
        chk.compare(c.name, kind, "dbias", c.np("dbias"), b.grad)


def check_convt2x2(c, p, chk, kind):
    x, w = c.leaf("x"), c.leaf("weight")
    b = c.leaf("bias") if p["bias"] == "1" else None
    y = F.conv_transpose2d(x, w, b, stride=2)
    backward(y, "dy", c)
    chk.compare(c.name, kind, "y", c.np("y"), y)
    chk.compare(c.name, kind, "dx", c.np("dx"), x.grad)
    chk.compare(c.name, kind, "dweight", c.np("dweight"), w.grad)
    if b is not None:
        chk.compare(c.name, kind, "dbias", c.np("dbias"), b.grad)


def check_maxpool(c, p, chk, kind):
    x = c.leaf("x")
    y, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    backward(y, "dy", c)
    chk.compare(c.name, kind, "y", c.np("y"), y)
    chk.compare(c.name, kind, "dx", c.np("dx"), x.grad)
    # torch's flat index into the input plane -> position (0..3) in the window
    w = x.shape[3]
    row, col = idx // w, idx % w
    window = ((row % 2) * 2 + (col % 2)).numpy()
    chk.require(c.name, "argmax equals torch's window position (ties: first wins)",
                np.array_equal(window, c.np("argmax").astype(window.dtype)))


def check_groupnorm(c, p, chk, kind):
    x, gamma, beta = c.leaf("x"), c.leaf("gamma"), c.leaf("beta")
    groups, eps = int(p["groups"]), float(p["eps"])
    y = F.group_norm(x, groups, gamma, beta, eps)
    backward(y, "dy", c)
    xg = x.detach().reshape(x.shape[0], groups, -1)
    mean = xg.mean(dim=2)
    rstd = 1.0 / torch.sqrt(xg.var(dim=2, unbiased=False) + eps)
    chk.compare(c.name, kind, "y", c.np("y"), y)
    chk.compare(c.name, kind, "mean", c.np("mean"), mean)
    chk.compare(c.name, kind, "rstd", c.np("rstd"), rstd)
    chk.compare(c.name, kind, "dx", c.np("dx"), x.grad)
    chk.compare(c.name, kind, "dgamma", c.np("dgamma"), gamma.grad)
    chk.compare(c.name, kind, "dbeta", c.np("dbeta"), beta.grad)


def check_batchnorm(c, p, chk, kind):
    x, gamma, beta = c.leaf("x"), c.leaf("gamma"), c.leaf("beta")
    running_mean = c.const("running_mean_before").clone()
    running_var = c.const("running_var_before").clone()
    training = p["training"] == "1"
    y = F.batch_norm(x, running_mean, running_var, gamma, beta, training=training,
                     momentum=float(p["momentum"]), eps=float(p["eps"]))
    backward(y, "dy", c)
    kind = f"{kind}_{'train' if training else 'eval'}"
    chk.compare(c.name, kind, "y", c.np("y"), y)
    chk.compare(c.name, kind, "running_mean", c.np("running_mean"), running_mean)
    chk.compare(c.name, kind, "running_var", c.np("running_var"), running_var)
    chk.compare(c.name, kind, "dx", c.np("dx"), x.grad)
    chk.compare(c.name, kind, "dgamma", c.np("dgamma"), gamma.grad)
    chk.compare(c.name, kind, "dbeta", c.np("dbeta"), beta.grad)


def check_leaky_relu(c, p, chk, kind):
    x = c.leaf("x")
    slope = float(p["slope"])
    y = F.relu(x) if slope == 0.0 else F.leaky_relu(x, slope)
    backward(y, "dy", c)
    chk.compare(c.name, kind, "y", c.np("y"), y)
    chk.compare(c.name, kind, "dx", c.np("dx"), x.grad)


def check_concat(c, p, chk, kind):
    a, b = c.leaf("a"), c.leaf("b")
    y = torch.cat([a, b], dim=1)
    backward(y, "dy", c)
    chk.compare(c.name, kind, "y", c.np("y"), y)
    chk.compare(c.name, kind, "da", c.np("da"), a.grad)
    chk.compare(c.name, kind, "db", c.np("db"), b.grad)


def finish_loss(c, chk, kind, loss, logits, scale):
    (loss * scale).backward()
    chk.compare(c.name, kind, "loss", c.np("loss"), loss.detach().reshape(1))
    chk.compare(c.name, kind, "dlogits", c.np("dlogits"), logits.grad)


def check_softmax_ce(c, p, chk, kind):
    logits = c.leaf("logits")
    labels = torch.from_numpy(c.np("labels").astype(np.int64))
    ignore = int(p["ignore_index"])
    ce = F.cross_entropy(logits, labels, reduction="none", ignore_index=ignore)
    weights = c.const("weights") if p["weights"] == "1" else torch.ones_like(ce)
    valid = (labels != ignore).to(torch.float64)
    loss = (ce * weights).sum() / valid.sum()
    finish_loss(c, chk, kind, loss, logits, float(p["scale"]))


def soft_dice(probs, onehot, valid, smooth, first_class):
    """Batch soft Dice over classes [first_class, K): 1 - mean_c D_c."""
    mask = valid.unsqueeze(1)
    inter = (probs * onehot * mask).sum(dim=(0, 2, 3))
    total = (probs * mask).sum(dim=(0, 2, 3)) + (onehot * mask).sum(dim=(0, 2, 3))
    dice = (2 * inter + smooth) / (total + smooth)
    return 1 - dice[first_class:].mean()


def check_soft_dice(c, p, chk, kind):
    logits = c.leaf("logits")
    labels = torch.from_numpy(c.np("labels").astype(np.int64))
    valid = labels != int(p["ignore_index"])
    k = logits.shape[1]
    onehot = F.one_hot(torch.where(valid, labels, 0), k).permute(0, 3, 1, 2).to(torch.float64)
    loss = soft_dice(torch.softmax(logits, dim=1), onehot, valid.to(torch.float64),
                     float(p["smooth"]), int(p["first_class"]))
    finish_loss(c, chk, kind, loss, logits, float(p["scale"]))


def valid_mask(c, p, logits):
    if p["valid"] == "1":
        return c.const("valid")
    return torch.ones(logits.shape[0], logits.shape[2], logits.shape[3], dtype=torch.float64)


def check_sigmoid_bce(c, p, chk, kind):
    logits, targets = c.leaf("logits"), c.const("targets")
    valid = valid_mask(c, p, logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = (bce * valid.unsqueeze(1)).sum() / (valid.sum() * logits.shape[1])
    finish_loss(c, chk, kind, loss, logits, float(p["scale"]))


def check_sigmoid_dice(c, p, chk, kind):
    logits, targets = c.leaf("logits"), c.const("targets")
    valid = valid_mask(c, p, logits)
    loss = soft_dice(torch.sigmoid(logits), targets, valid, float(p["smooth"]), 0)
    finish_loss(c, chk, kind, loss, logits, float(p["scale"]))


def check_softmax_mse(c, p, chk, kind):
    logits, valid = c.leaf("logits"), valid_mask(c, p, c.leaf("logits"))
    targets = torch.softmax(c.const("teacher"), dim=1)  # the teacher gets no gradient
    chk.compare(c.name, kind, "targets", c.np("targets"), targets)
    sq = ((torch.softmax(logits, dim=1) - targets) ** 2).sum(dim=1)
    loss = (sq * valid).sum() / (valid.sum() * logits.shape[1])
    finish_loss(c, chk, kind, loss, logits, float(p["scale"]))


CHECKS = {
    "conv2d": check_conv2d,
    "convt2x2": check_convt2x2,
    "maxpool": check_maxpool,
    "groupnorm": check_groupnorm,
    "batchnorm": check_batchnorm,
    "leaky_relu": check_leaky_relu,
    "concat": check_concat,
    "softmax_ce": check_softmax_ce,
    "soft_dice": check_soft_dice,
    "sigmoid_bce": check_sigmoid_bce,
    "sigmoid_dice": check_sigmoid_dice,
    "softmax_mse": check_softmax_mse,
}


def main():
    if len(sys.argv) != 2:
        print("usage: test_torch_layers.py BUILDDIR")
        print("0 passed, 1 failed")
        return 1
    tool = os.path.join(sys.argv[1], "tests", "tool_layers")
    if not os.access(tool, os.X_OK):
        print(f"FAIL {tool} is missing: build the project first")
        print("0 passed, 1 failed")
        return 1
    chk = Checker()
    root = os.environ.get("RL_TEST_TMP") or None
    if root:
        os.makedirs(root, exist_ok=True)
    for backend in ("im2col", "dnnl"):
        with tempfile.TemporaryDirectory(prefix="torch_layers-", dir=root) as folder:
            run = subprocess.run([tool, folder], capture_output=True, text=True,
                                 env=dict(os.environ, RL_CONV=backend))
            if run.returncode == 77:
                print(f"skip {backend}: not in this build")
                continue
            if run.returncode != 0:
                print(f"FAIL {tool} exited with {run.returncode}: {run.stderr.strip()}")
                print("0 passed, 1 failed")
                return 1
            print(f"convolution backend {backend}:")
            for name, kind, params in parse_cases(folder):
                if kind not in CHECKS:
                    chk.require(name, f"unknown case kind {kind}", False)
                    continue
                CHECKS[kind](Case(folder, name), params, chk, kind)
    print("worst relative L2 error per layer and tensor:")
    for (kind, tensor), err in sorted(chk.worst.items()):
        print(f"  {kind:18s} {tensor:14s} {err:.2e}")
    print(f"{chk.passed} passed, {chk.failed} failed")
    return 0 if chk.failed == 0 and chk.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
