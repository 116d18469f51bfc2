"""The reflabel U-Net as a torch nn.Module, with identical state_dict names.

Used by the oracle tests (tests/oracle/test_torch_unet.py) and the training
benchmark (bench/bench_train_torch.py). The config dict has the keys of the
"reflabel.config" checkpoint metadata (see docs/CHECKPOINTS.md). Also holds a
numpy-only safetensors reader, since Debian ships no safetensors package.
"""
import json
import math
import struct

import numpy as np
import torch
from torch import nn

DEFAULT_CONFIG = {
    "in_channels": 1,
    "num_classes": 2,
    "depth": 4,
    "base_width": 32,
    "max_width": 320,
    "norm": "group",
    "groups": 8,
    "leaky_slope": 0.01,
    "bn_momentum": 0.1,
    "norm_eps": 1e-5,
}


def width(cfg, level):
    return min(cfg["base_width"] << level, cfg["max_width"])


def make_norm(cfg, channels):
    if cfg["norm"] == "group":
        return nn.GroupNorm(math.gcd(channels, cfg["groups"]), channels, eps=cfg["norm_eps"])
    if cfg["norm"] == "batch":
        return nn.BatchNorm2d(channels, eps=cfg["norm_eps"], momentum=cfg["bn_momentum"])
    return nn.Identity()


class Block(nn.Module):
    """[conv3x3 -> norm -> LeakyReLU] x 2; convs carry a bias only without norm."""

    def __init__(self, cfg, cin, cout):
        super().__init__()
        bias = cfg["norm"] == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.norm1 = make_norm(cfg, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        self.norm2 = make_norm(cfg, cout)
        self.slope = cfg["leaky_slope"]

    def forward(self, x):
        x = nn.functional.leaky_relu(self.norm1(self.conv1(x)), self.slope)
        return nn.functional.leaky_relu(self.norm2(self.conv2(x)), self.slope)


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG, **cfg)
        self.cfg = cfg
        d = cfg["depth"]
        w = [width(cfg, level) for level in range(d + 1)]
        self.enc = nn.ModuleList(
            Block(cfg, cfg["in_channels"] if level == 0 else w[level - 1], w[level])
            for level in range(d + 1))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(w[level + 1], w[level], 2, stride=2) for level in range(d))
        self.dec = nn.ModuleList(Block(cfg, 2 * w[level], w[level]) for level in range(d))
        self.head = nn.Conv2d(w[0], cfg["num_classes"], 1)
        self.features = None
        self.decoder_outputs = {}

    def reset_parameters_like_reflabel(self):
        """The distribution rl_unet_create draws from (not the same numbers):
        Kaiming-normal conv weights (fan_in, leaky-ReLU gain), zero biases,
        norm weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=self.cfg["leaky_slope"], mode="fan_in",
                                        nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        skips = []
        for level, block in enumerate(self.enc):
            if level > 0:
                x = nn.functional.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for level in reversed(range(self.cfg["depth"])):
            x = self.up[level](x)
            x = self.dec[level](torch.cat([skips[level], x], dim=1))
            self.decoder_outputs[level] = x
        self.features = x
        return self.head(x)


_DTYPES = {"F32": np.float32, "I64": np.int64, "F64": np.float64, "I32": np.int32}


def read_safetensors(path):
    """Returns ({name: np.ndarray}, metadata dict), parsed with numpy only."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"])
        tensors[name] = arr.copy()
    return tensors, meta


def load_unet(path, dtype=torch.float64):
    """Builds the module from a reflabel checkpoint and loads it strictly."""
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["reflabel.config"])
    net = UNet(cfg).to(dtype)
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    net.load_state_dict(state, strict=True)
    return net, cfg, meta
