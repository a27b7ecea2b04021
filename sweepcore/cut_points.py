"""Cut points: the named submodules that "layer n" counts, the head last.

Surgery copies (and maybe freezes) cut points 1..n of a base and re-initialises the rest; the head
is always new, so n runs 0..len - 1. Pure Python: the driver plans and validates sweeps with these
names without importing torch.
"""
from __future__ import annotations

from typing import Optional, Sequence

# The paper's eight layers; the small 28x28 net has the same names.
CAFFENET_CUT_POINTS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def resnet_cut_points(blocks: Sequence[int]) -> tuple[str, ...]:
    """Cut points of the CIFAR-style ResNet with `blocks` residual blocks per stage: the stem, every
    block in order ('layer1.0', 'layer1.1', ..., 'layerK.m'), then the head 'fc'.

    (2, 2, 2) -> ('stem', 'layer1.0', 'layer1.1', 'layer2.0', 'layer2.1', 'layer3.0', 'layer3.1', 'fc').
    """
    counts = list(blocks)
    if not counts or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in counts):
        raise ValueError(f"resnet blocks must give at least one stage of 1 or more blocks, got {counts}")
    inner = [f"layer{stage}.{b}" for stage, count in enumerate(counts, start=1) for b in range(count)]
    return ("stem", *inner, "fc")


def cut_point_of(name: str, cut_points: Sequence[str]) -> Optional[str]:
    """The cut point that a parameter, buffer or submodule `name` lies under (itself or inside it),
    None if under none: 'layer1.0.bn1.weight' -> 'layer1.0'."""
    for point in cut_points:
        if name == point or name.startswith(point + "."):
            return point
    return None
