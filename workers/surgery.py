"""Network surgery: copy cut points 1..n from a base, freeze them or not, re-initialise the rest.

Cut points are the named submodules that "layer n" counts, the head last (sweepcore.cut_points):
conv1..fc8 for the CaffeNet shapes, stem/blocks/fc for the ResNet, whatever a factory declares.
"Under a cut point" means every state_dict entry (parameters and buffers, batch-norm running
statistics included) and submodule whose name starts with it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from sweepcore.cut_points import cut_point_of
from workers.factory import check_cut_points
from workers.models import LAYER_NAMES, LayeredNet, init_layers
from workers.networks import global_rng_from
from workers.resnet import ResNet

MAX_CUT = len(LAYER_NAMES) - 1  # CaffeNet shapes: fc8 is always new, the cut is after layer 1..7
BN_MODES = ("frozen", "adapt")  # batch norm under frozen cut points: eval mode, or statistics follow the data
# normalisation layers with running statistics (BatchNorm*, SyncBatchNorm, InstanceNorm* tracking them)
_NORM_WITH_STATS = nn.modules.batchnorm._NormBase


def transplant(model: nn.Module, base_state_dict: dict | None, n: int, frozen: bool, generator: torch.Generator,
               cut_points: Optional[Sequence[str]] = None, frozen_bn: Optional[str] = None) -> list[str]:
    """Prepare `model` for one treatment and return the names of its frozen parameters.

    - base_state_dict given: every state_dict entry under cut points 1..n is copied from it bitwise,
      cut points n+1..end are re-initialised from `generator` (selffer/transfer and their '+' variants).
    - base_state_dict None: every cut point is re-initialised from `generator`; with `frozen`, cut
      points 1..n keep that random init and never train (the 'random' treatment); n = 0 is a base.
    With `frozen`, parameters under cut points 1..n get requires_grad=False (LayeredNet and ResNet
    also run them under no_grad: model.frozen_prefix), and batch norms there stay in eval mode, running
    statistics unchanged, whatever model.train() says; frozen_bn="adapt" lets those statistics follow
    the new data (their affine parameters stay frozen). frozen_bn None means "frozen".

    `cut_points` None: the model's own (LayeredNet, ResNet); other networks must name theirs.
    Re-initialising uses LayeredNet's init rule (init_layers), else each submodule's
    reset_parameters() with torch's global RNG seeded from one draw of `generator`.
    """
    points = _cut_points(model, cut_points)
    last = len(points) - 1
    if not 0 <= n <= last:
        raise ValueError(f"n={n}: the cut must be after layer 0..{last} ({points[-1]} is always new)")
    if frozen_bn is not None and frozen_bn not in BN_MODES:
        raise ValueError(f"frozen_bn {frozen_bn!r}: expected one of {BN_MODES}")
    if base_state_dict is None:
        _reinitialise(model, points, generator)
    else:
        _copy_entries(model, base_state_dict, points[:n])
        _reinitialise(model, points[n:], generator)
    held = points[:n] if frozen else ()
    frozen_names = [name for name, _ in model.named_parameters() if cut_point_of(name, held)]
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen_names)
    if isinstance(model, (LayeredNet, ResNet)):  # their forward runs the cut points in order
        model.frozen_prefix = len(held)
    _hold_batch_norm(model, held if frozen_bn != "adapt" else ())
    return frozen_names


def _cut_points(model: nn.Module, given: Optional[Sequence[str]]) -> tuple[str, ...]:
    """The cut points to operate on: the model's own where it has them (and `given` must agree), else
    `given`, checked against the model."""
    own: Optional[tuple[str, ...]] = None
    if isinstance(model, LayeredNet):
        own = LAYER_NAMES
    elif isinstance(model, ResNet):
        own = model.cut_points
    if given is None:
        if own is None:
            raise ValueError(f"transplant: a {type(model).__name__} declares no cut points: pass them")
        return own
    points = tuple(given)
    if own is not None and points != own:
        raise ValueError(f"transplant: cut points {list(points)} are not this {type(model).__name__}'s {list(own)}")
    if own is None:
        check_cut_points(model, points, "transplant")
    return points


def _copy_entries(model: nn.Module, base_state_dict: dict, points: Sequence[str]) -> None:
    """Copy every state_dict entry under `points` from `base_state_dict` into `model`, bitwise."""
    entries = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, target in entries.items():
            if cut_point_of(name, points) is None:
                continue
            if name not in base_state_dict:
                raise ValueError(f"base weights have no {name!r}: not a model of this project")
            source = base_state_dict[name]
            if tuple(source.shape) != tuple(target.shape):
                raise ValueError(f"cannot copy {name}: base has shape {tuple(source.shape)}, this "
                                 f"model {tuple(target.shape)} (different widths or arch?)")
            target.copy_(source)


def _reinitialise(model: nn.Module, points: Sequence[str], generator: torch.Generator) -> None:
    """Re-initialise everything under `points` from `generator` only."""
    if isinstance(model, LayeredNet):  # its init rule, drawn as it always was: earlier results stay bitwise
        init_layers(model, points, generator)
        return
    modules = [m for name, m in model.named_modules()
               if cut_point_of(name, points) and callable(getattr(m, "reset_parameters", None))]
    with global_rng_from(generator), torch.no_grad():
        for module in modules:  # in definition order: the draws do not depend on how points are listed
            module.reset_parameters()


def _stay_in_eval(module: nn.Module, _args: tuple) -> None:
    module.training = False  # before every forward: model.train() may have switched it back


def _hold_batch_norm(model: nn.Module, points: Sequence[str]) -> None:
    """Keep the normalisation layers under `points` in eval mode, and no others (an earlier
    transplant's holds are released)."""
    for handle in getattr(model, "_surgery_norm_holds", []):
        handle.remove()
    holds = [m.register_forward_pre_hook(_stay_in_eval) for name, m in model.named_modules()
             if cut_point_of(name, points) and isinstance(m, _NORM_WITH_STATS)]
    setattr(model, "_surgery_norm_holds", holds)
