"""Network surgery: copy layers 1..n from a base, freeze them or not, re-initialise the rest."""
from __future__ import annotations

import torch

from workers.models import LAYER_NAMES, LayeredNet, init_layers, layer_parameter_names

MAX_CUT = len(LAYER_NAMES) - 1  # fc8 is always new: the cut is after layer 1..7


def transplant(model: LayeredNet, base_state_dict: dict | None, n: int, frozen: bool,
               generator: torch.Generator) -> list[str]:
    """Prepare `model` for one treatment and return the names of its frozen parameters.

    - base_state_dict given: layers 1..n are copied from it bitwise, layers n+1..8 re-initialised
      from `generator` (selffer/transfer and their '+' variants).
    - base_state_dict None: every layer is re-initialised from `generator`; with `frozen`, layers
      1..n keep that random init and never train (the 'random' treatment); n = 0 is a base.
    With `frozen`, layers 1..n get requires_grad=False and run under no_grad (model.frozen_prefix).
    """
    if not 0 <= n <= MAX_CUT:
        raise ValueError(f"n={n}: the cut must be after layer 0..{MAX_CUT} (fc8 is always new)")
    if base_state_dict is None:
        init_layers(model, LAYER_NAMES, generator)
    else:
        _copy_layers(model, base_state_dict, n)
        init_layers(model, LAYER_NAMES[n:], generator)
    frozen_names = [p for i in range(1, n + 1) for p in layer_parameter_names(i)] if frozen else []
    params = dict(model.named_parameters())
    for name, param in params.items():
        param.requires_grad_(name not in frozen_names)
    model.frozen_prefix = n if frozen else 0
    return frozen_names


def _copy_layers(model: LayeredNet, base_state_dict: dict, n: int) -> None:
    """Copy the parameters of layers 1..n from `base_state_dict` into `model`, bitwise."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for i in range(1, n + 1):
            for name in layer_parameter_names(i):
                if name not in base_state_dict:
                    raise ValueError(f"base weights have no {name!r}: not a model of this project")
                source = base_state_dict[name]
                if tuple(source.shape) != tuple(params[name].shape):
                    raise ValueError(f"cannot copy {name}: base has shape {tuple(source.shape)}, this "
                                     f"model {tuple(params[name].shape)} (different widths or arch?)")
                params[name].copy_(source)
