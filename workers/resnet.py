"""A CIFAR-style ResNet for small images, whose cut points are its stem, each residual block and its head.

stem (3x3 conv, BN, ReLU) | layer1 .. layerK (nn.Sequential of BasicBlocks; stride 2 at the first
block of every stage after the first) | global average pool, dropout, fc. Cut points (see
sweepcore.cut_points.resnet_cut_points): 'stem', 'layer1.0', ..., 'fc'; they are also the order
the forward runs, so a frozen prefix of them runs under no_grad like LayeredNet's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sweepcore.cut_points import resnet_cut_points
from sweepcore.settings import ModelSettings

# torch 2.13's CPU backward of a 1x1 stride-2 convolution on channels-last inputs of fewer than 8
# channels corrupts the heap (the process dies with "double free or corruption"); the same projection
# as a subsample and a stride-1 convolution computes the same values and does not.
SMALL_PROJECTION_CHANNELS = 8


class StridedPointwise(nn.Conv2d):
    """A 1x1 convolution of stride s computed as conv(x[..., ::s, ::s]): same parameters, same values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride[0]
        return F.conv2d(x[:, :, ::s, ::s], self.weight, self.bias, 1)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with a ReLU between, plus a shortcut: identity, or a 1x1 conv + BN
    projection where the block changes the channel count or the resolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            pointwise = StridedPointwise if stride != 1 and in_channels < SMALL_PROJECTION_CHANNELS else nn.Conv2d
            self.shortcut = nn.Sequential(pointwise(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(out, inplace=True)


def check_resnet_settings(model_settings: ModelSettings) -> None:
    """One-line ValueError for resnet settings no ResNet can be built from."""
    m = model_settings
    widths, blocks = list(m.widths), list(m.blocks or ())
    if m.arch != "resnet":
        raise ValueError(f"arch {m.arch!r} is not a resnet")
    resnet_cut_points(blocks)  # blocks: at least one stage, each of one or more blocks
    if len(widths) != len(blocks) or any(w < 1 for w in widths):
        raise ValueError(f"resnet widths must give one positive channel count per stage: widths {widths}, "
                         f"blocks {blocks}")
    if m.in_channels is None or m.in_channels < 1:
        raise ValueError(f"resnet in_channels must be a positive channel count, got {m.in_channels}")
    if m.num_outputs < 1 or not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"resnet needs num_outputs >= 1 and 0 <= dropout < 1 (got {m.num_outputs}, {m.dropout})")
    if m.init != "default":
        raise ValueError(f"resnet init {m.init!r}: expected 'default' (each module's own reset_parameters)")


class ResNet(nn.Module):
    """stem | layer1 .. layerK | pool, dropout, fc; `cut_points` in forward order, the head last.

    `frozen_prefix` = k runs cut points 1..k under torch.no_grad() (surgery sets it when they are all
    frozen), as LayeredNet does.
    """

    def __init__(self, model_settings: ModelSettings):
        super().__init__()
        check_resnet_settings(model_settings)
        widths, blocks = list(model_settings.widths), list(model_settings.blocks or ())
        self.cut_points = resnet_cut_points(blocks)
        self.dropout = float(model_settings.dropout)
        self.frozen_prefix = 0
        self.stem = nn.Sequential(nn.Conv2d(int(model_settings.in_channels or 0), widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        channels = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
            stride = 1 if stage == 1 else 2
            stage_blocks = [BasicBlock(channels if b == 0 else width, width, stride if b == 0 else 1)
                            for b in range(count)]
            setattr(self, f"layer{stage}", nn.Sequential(*stage_blocks))
            channels = width
        self.fc = nn.Linear(channels, int(model_settings.num_outputs))

    def _stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Cut point `name`, with the pooling and dropout before the head."""
        if name == "fc":
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
            return self.fc(F.dropout(x, self.dropout, self.training))
        # looked up by name, not held in a list: DataParallel's replicas must run their own copies
        return self.get_submodule(name)(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for name in self.cut_points[:self.frozen_prefix]:
                x = self._stage(name, x)
        for name in self.cut_points[self.frozen_prefix:]:
            x = self._stage(name, x)
        return x
