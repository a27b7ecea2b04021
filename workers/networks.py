"""Every network a trial can train, built from its ModelSettings, and the cut points surgery counts.

small/caffenet: LayeredNet (workers.models), initialised by its init rule from the generator;
resnet: workers.resnet; factory: a user's function (workers.factory). Each is initialised from the
generator only: ResNets and factories are built with torch's global RNG seeded from one draw of
it, inside torch.random.fork_rng (the global stream is left as it was).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn

from sweepcore.cut_points import CAFFENET_CUT_POINTS, resnet_cut_points
from sweepcore.settings import ModelSettings
from workers.factory import build_factory, module_sha256
from workers.models import build_model
from workers.resnet import ResNet

SEED_BOUND = 2**62  # torch.manual_seed takes up to 64 bits; any wide range draws distinct streams


@contextlib.contextmanager
def global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Within the block, torch's (CPU) global RNG is seeded from one draw of `generator`; after it,
    the global RNG is back where it was. For code that draws from the global RNG only
    (nn.Module constructors, reset_parameters)."""
    seed = int(torch.randint(0, SEED_BOUND, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def cut_points_of(model_settings: ModelSettings) -> tuple[str, ...]:
    """The cut points of the settings' network, the head last: small/caffenet conv1..fc8, resnet
    from its blocks, factory the ones the plan resolved through the probe (settings.cut_points)."""
    m = model_settings
    if m.arch in ("small", "caffenet", "resnet"):
        own = CAFFENET_CUT_POINTS if m.arch != "resnet" else resnet_cut_points(m.blocks or ())
        if m.cut_points is not None and tuple(m.cut_points) != own:
            raise ValueError(f"{m.arch}: settings name cut points {list(m.cut_points)}, but the network's are "
                             f"{list(own)}")
        return own
    if m.arch == "factory":
        if not m.cut_points:
            raise ValueError(f"factory {m.factory!r}: settings name no cut points (the plan resolves them "
                             "through `python -m workers.factory probe`)")
        return tuple(m.cut_points)
    raise ValueError(f"unknown arch {m.arch!r}: expected 'small', 'caffenet', 'resnet' or 'factory'")


def build_network(model_settings: ModelSettings, generator: torch.Generator,
                  refused_roots: Sequence[str] = ()) -> nn.Module:
    """The network of `model_settings`, initialised from `generator` only (same generator state,
    bitwise the same weights). A factory that now returns other cut points than the settings name
    (the plan probed other code), or whose module lies under `refused_roots` (the store folder) or is
    not installed code (workers.code_origin), is a one-line ValueError."""
    m = model_settings
    if m.arch in ("small", "caffenet"):
        return build_model(m, generator)
    expected = cut_points_of(m)
    if m.arch == "resnet":
        with global_rng_from(generator):
            return ResNet(m)
    if not m.factory or m.in_channels is None:
        raise ValueError(f"arch 'factory' needs settings.factory and settings.in_channels "
                         f"(got {m.factory!r}, {m.in_channels!r})")
    with global_rng_from(generator):
        module, cut_points = build_factory(m.factory, int(m.num_outputs), int(m.in_channels), refused_roots)
    if cut_points != expected:
        raise ValueError(f"factory {m.factory!r} returns cut points {list(cut_points)}, but the settings name "
                         f"{list(expected)}: plan the sweep with the code the workers run")
    source = module_sha256(m.factory)
    if source != m.factory_sha256:  # another network than the key names: never train it under that key
        raise ValueError(f"factory {m.factory!r}: its module file has sha256 {source[:12]}..., the settings were "
                         f"planned from {str(m.factory_sha256)[:12]}...: plan the sweep again with the code the "
                         "workers run (its keys change with it)")
    return module
