"""CaffeNet (exact, 227x227 inputs) and a small CaffeNet-shaped net for 1x28x28 inputs.

Both are a `LayeredNet`: eight named layers conv1..conv5, fc6, fc7, fc8, so that "layer n" means
what it means in the paper (layer n = the n-th name, with its ReLU/pool/LRN/dropout; the cut is
after it). Parameter names are '<layer>.weight' / '<layer>.bias'.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sweepcore.cut_points import CAFFENET_CUT_POINTS
from sweepcore.settings import ModelSettings

LAYER_NAMES = CAFFENET_CUT_POINTS  # conv1..conv5, fc6, fc7, fc8: the paper's layers are the cut points
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 1.0
CAFFE_STD = {"conv1": 0.01, "conv2": 0.01, "conv3": 0.01, "conv4": 0.01, "conv5": 0.01,
             "fc6": 0.005, "fc7": 0.005, "fc8": 0.01}
CAFFE_BIAS = {"conv1": 0.0, "conv2": 1.0, "conv3": 0.0, "conv4": 1.0, "conv5": 1.0,
              "fc6": 1.0, "fc7": 1.0, "fc8": 0.0}


def layer_parameter_names(i: int) -> list[str]:
    """Parameter names of layer i (1..8), e.g. 3 -> ['conv3.weight', 'conv3.bias']."""
    if not 1 <= i <= len(LAYER_NAMES):
        raise ValueError(f"layer {i} does not exist: layers are 1..{len(LAYER_NAMES)}")
    name = LAYER_NAMES[i - 1]
    return [f"{name}.weight", f"{name}.bias"]


class CheapLRN(nn.Module):
    """Cross-channel LRN equal to F.local_response_norm(x, 5, 1e-4, 0.75, 1.0), computed faster.

    The windowed sum of squares over channels is a 1x1 convolution with a fixed 0/1 band matrix:
    with channels_last that is one small GEMM instead of a padded 3-D average pool.
    """

    def __init__(self, channels: int, size: int = LRN_SIZE):
        super().__init__()
        self.size = size
        c = torch.arange(channels)
        lo, hi = size // 2, (size - 1) // 2  # window [c - lo, c + hi], as local_response_norm pads
        band = ((c[None, :] >= c[:, None] - lo) & (c[None, :] <= c[:, None] + hi)).float()
        self.band: torch.Tensor
        self.register_buffer("band", band[:, :, None, None], persistent=False)  # not a weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = F.conv2d(x * x, self.band.to(dtype=x.dtype))
        return x * (window * (LRN_ALPHA / self.size) + LRN_K).pow(-LRN_BETA)


def _arch_spec(model_settings: ModelSettings) -> dict:
    """Layer shapes of an architecture: conv (out, kernel, stride, pad, groups), pools, fc sizes."""
    arch = model_settings.arch
    widths = list(model_settings.widths)
    if len(widths) != 5:
        raise ValueError(f"model widths must list 5 conv widths, got {widths}")
    if arch == "small":
        return {"in_channels": 1, "in_size": 28, "pool_pad": (1, 1, 0),
                "convs": [(widths[0], 5, 1, 2, 1), (widths[1], 5, 1, 2, 2), (widths[2], 3, 1, 1, 1),
                          (widths[3], 3, 1, 1, 2), (widths[4], 3, 1, 1, 2)]}
    if arch == "caffenet":
        return {"in_channels": 3, "in_size": 227, "pool_pad": (0, 0, 0),
                "convs": [(widths[0], 11, 4, 0, 1), (widths[1], 5, 1, 2, 2), (widths[2], 3, 1, 1, 1),
                          (widths[3], 3, 1, 1, 2), (widths[4], 3, 1, 1, 2)]}
    raise ValueError(f"unknown arch {arch!r}: expected 'small' or 'caffenet'")


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


class LayeredNet(nn.Module):
    """conv1 ReLU pool LRN | conv2 ReLU pool LRN | conv3 ReLU | conv4 ReLU | conv5 ReLU pool |
    fc6 ReLU dropout | fc7 ReLU dropout | fc8.

    `frozen_prefix` = k runs layers 1..k under torch.no_grad() (set by surgery when they are all
    frozen): no autograd bookkeeping for a prefix that gets no gradient. Dropout after a frozen fc6
    still runs in training mode and draws the same random numbers.
    """

    def __init__(self, model_settings: ModelSettings):
        super().__init__()
        spec = _arch_spec(model_settings)
        self.init_rule = model_settings.init
        if self.init_rule not in ("kaiming", "caffe"):
            raise ValueError(f"unknown init {self.init_rule!r}: expected 'kaiming' or 'caffe'")
        self.pool_pad = spec["pool_pad"]
        self.dropout = float(model_settings.dropout)
        self.frozen_prefix = 0
        channels, size = spec["in_channels"], spec["in_size"]
        for i, (out, k, stride, pad, groups) in enumerate(spec["convs"], start=1):
            if channels % groups or out % groups:
                raise ValueError(f"conv{i}: {channels} -> {out} channels cannot be split into {groups} groups")
            setattr(self, f"conv{i}", nn.Conv2d(channels, out, k, stride, pad, groups=groups))
            channels, size = out, _out_size(size, k, stride, pad)
            if i in (1, 2, 5):
                size = _out_size(size, 3, 2, self.pool_pad[(1, 2, 5).index(i)])
        self.lrn1 = CheapLRN(spec["convs"][0][0])
        self.lrn2 = CheapLRN(spec["convs"][1][0])
        fc = int(model_settings.fc_width)
        self.fc6 = nn.Linear(channels * size * size, fc)
        self.fc7 = nn.Linear(fc, fc)
        self.fc8 = nn.Linear(fc, int(model_settings.num_outputs))

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Layer i (1..8) with its ReLU / pool / LRN / dropout."""
        name = LAYER_NAMES[i - 1]
        if i == 6:
            x = torch.flatten(x, 1)
        x = getattr(self, name)(x)
        if i == 8:
            return x
        x = F.relu(x, inplace=True)
        if i in (1, 2, 5):
            x = F.max_pool2d(x, 3, 2, self.pool_pad[(1, 2, 5).index(i)])
        if i in (1, 2):
            x = (self.lrn1 if i == 1 else self.lrn2)(x)
        if i in (6, 7):
            x = F.dropout(x, self.dropout, self.training)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for i in range(1, self.frozen_prefix + 1):
                x = self._stage(i, x)
        for i in range(self.frozen_prefix + 1, len(LAYER_NAMES) + 1):
            x = self._stage(i, x)
        return x


def init_layers(model: LayeredNet, layer_names, generator: torch.Generator | None) -> None:
    """Re-initialise the named layers with the model's init rule, drawing only from `generator`.

    Layers are drawn in network order whatever the order given, so the result depends only on the
    set of names and the generator state. kaiming: He-normal weights (fan-in, ReLU gain), zero
    biases. caffe: Gaussian std 0.01 (conv, fc8) / 0.005 (fc6, fc7); biases 0 or 1 as in the paper.
    """
    wanted = set(layer_names)
    unknown = wanted - set(LAYER_NAMES)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}: layers are {LAYER_NAMES}")
    with torch.no_grad():
        for name in LAYER_NAMES:
            if name not in wanted:
                continue
            layer = getattr(model, name)
            if model.init_rule == "kaiming":
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
                layer.bias.zero_()
            else:
                nn.init.normal_(layer.weight, 0.0, CAFFE_STD[name], generator=generator)
                layer.bias.fill_(CAFFE_BIAS[name])


def build_model(model_settings: ModelSettings, generator: torch.Generator | None = None) -> LayeredNet:
    """The network of `model_settings` (arch, num_outputs, widths, fc_width, dropout, init), with
    every layer initialised by its init rule from `generator` (torch's global RNG when None)."""
    model = LayeredNet(model_settings)
    init_layers(model, LAYER_NAMES, generator)
    return model
