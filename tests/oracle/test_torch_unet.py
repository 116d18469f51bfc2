"""Oracle: the C U-Net's forward and backward pass equal PyTorch's.

For each config, tests/tool_unet writes a checkpoint (before the step) and
the tensors of one forward + softmax-CE + backward step. This script loads the
checkpoint into tests/oracle/torch_unet.py with load_state_dict(strict=True),
repeats the step in float64 and compares with the relative L2 error.
Every config runs once per convolution backend (RL_CONV=im2col, =dnnl); a
backend the build lacks (tool exit 77) is skipped with a note.

usage: test_torch_unet.py BUILD_DIR
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_unet  # noqa: E402

TOL = 1e-4
IGNORE = 255
BACKENDS = ("im2col", "dnnl")
SKIP = 77

# (norm, depth, base_width, classes, mode, max_width)
CONFIGS = [
    ("group", 2, 6, 3, "train", 320),   # widths 6, 12, 24: GN groups gcd(6, 4) = 2
    ("batch", 3, 4, 5, "train", 320),
    ("batch", 2, 4, 3, "eval", 320),
    ("none", 2, 4, 2, "train", 6),      # widths 4, 6, 6: the cap applies
    ("group", 3, 4, 7, "eval", 320),    # group norm ignores the mode
]


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def compare(self, label, c_value, torch_value):
        err = rel_l2(c_value, torch_value)
        ok = np.shape(c_value) == np.shape(torch_value) and err <= TOL
        print(f"{'ok  ' if ok else 'FAIL'} {label}: rel_l2 {err:.2e}")
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def run_config(tool, workdir, config, backend, results):
    """False when the build lacks the backend."""
    norm, depth, width, classes, mode, max_width = config
    tag = f"{backend} {norm}-d{depth}-w{width}-k{classes}-{mode}"
    out = os.path.join(workdir, tag.replace(" ", "-"))
    os.makedirs(out, exist_ok=True)
    run = subprocess.run([tool, out, norm, str(depth), str(width), str(classes), mode,
                          str(max_width)], env=dict(os.environ, RL_CONV=backend))
    if run.returncode == SKIP:
        return False
    run.check_returncode()
    load = lambda name: np.load(os.path.join(out, name + ".npy"))  # noqa: E731

    net, cfg, _ = torch_unet.load_unet(os.path.join(out, "checkpoint.safetensors"))
    net.train(mode == "train")
    x = torch.from_numpy(load("x")).double()
    labels = torch.from_numpy(load("labels")).long()
    logits = net(x)
    per_pixel = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE,
                                                  reduction="none")
    loss = per_pixel.sum() / (labels != IGNORE).sum()
    loss.backward()

    results.compare(f"{tag} loss", load("loss"), [loss.item()])
    results.compare(f"{tag} logits", load("logits"), logits.detach().numpy())
    results.compare(f"{tag} features", load("features"), net.features.detach().numpy())
    for level in range(depth):
        results.compare(f"{tag} dec.{level}", load(f"dec.{level}"),
                        net.decoder_outputs[level].detach().numpy())
    for name, p in net.named_parameters():
        results.compare(f"{tag} grad {name}", load(f"grad.{name}"), p.grad.numpy())
    for name, b in net.named_buffers():
        if name.endswith("num_batches_tracked"):
            same = int(load(f"after.{name}")) == int(b)
            print(f"{'ok  ' if same else 'FAIL'} {tag} {name}: {int(load(f'after.{name}'))} "
                  f"vs {int(b)}")
            results.passed += same
            results.failed += not same
            continue
        results.compare(f"{tag} {name}", load(f"after.{name}"), b.numpy())
    return True


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    tool = os.path.join(build, "tests", "tool_unet")
    if not os.path.exists(tool):
        print(f"missing {tool}")
        print("0 passed, 1 failed")
        return 1
    torch.manual_seed(0)
    results = Results()
    base = os.environ.get("RL_TEST_TMP", tempfile.gettempdir())
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as workdir:
        for backend in BACKENDS:
            for config in CONFIGS:
                if not run_config(tool, workdir, config, backend, results):
                    print(f"skip {backend}: not in this build")
                    break
    print(f"{results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
