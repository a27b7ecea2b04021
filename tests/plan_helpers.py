"""Trial settings for worker tests, made by the plan (never by hand), so a drift between what the
plan produces and what workers read fails here; and the tiny random data and seeded generators those
tests train with.

Worker tests train on tiny in-memory datasets registered under their own names (with the recipe
TINY_RECIPE); the plan only knows the real datasets, so the helper plans for fashion-animals and then
swaps the dataset name and its data version (and with them every key, the copied base's included).
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from orchestrator.spec import parse_spec
from orchestrator.spec.plan import make_plan
from sweepcore.settings import TrialSettings
from sweepcore.vocabulary import recipe_hash

TINY_RECIPE = {"version": 1}  # what the worker tests register their tiny datasets with

TINY = {
    "name": "test", "dataset": "fashion-animals", "splits": ["random:0"],
    "treatments": ["base", "selffer", "selffer+", "transfer", "transfer+", "random"],
    "layers": [1, 2, 3, 4, 5, 6, 7], "directions": ["A->B", "B->A"],
    "model": {"arch": "small", "widths": [4, 4, 4, 4, 4], "fc_width": 16},
    "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "warmup_fraction": 0.1, "eval_every": 3,
              "checkpoint_every": 4, "top_k": 3, "augment": True},
}


def _merge(into: dict, changes: dict) -> dict:
    out = copy.deepcopy(into)
    for key, value in changes.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def planned_settings(name: str, dataset: str | None = None, model: dict | None = None,
                     **spec_changes: dict) -> TrialSettings:
    """The settings of trial `name` (e.g. 'baseA random:0 s0', 'AnB n=3 random:0 s0') of the tiny spec
    with `spec_changes` merged in (e.g. train={"iterations": 8, "epochs": None}) and its model replaced
    by `model` when given; with `dataset`, the trial reads that registered dataset instead."""
    raw = _merge(TINY, spec_changes)
    if model is not None:
        raw["model"] = dict(model)
    spec = parse_spec(raw, source="test spec")
    trials = {t.name: t for t in make_plan(spec).trials}
    settings = trials[name].settings
    if dataset is None:
        return settings
    data = recipe_hash(dataset, TINY_RECIPE)
    base_key = settings.base_key
    if base_key is not None:
        base = next(t.settings for t in trials.values() if t.key == base_key)
        base_key = dataclasses.replace(base, dataset=dataset, data=data).with_key().key
    return dataclasses.replace(settings, dataset=dataset, data=data, base_key=base_key).with_key()


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`."""
    return torch.Generator().manual_seed(seed)


def state_copy(model: torch.nn.Module) -> dict:
    """Every state_dict entry of `model` (parameters and buffers), detached copies."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def noise_arrays(seed: int, train_per_class: int, test_per_class: int, shape: tuple[int, ...] = (28, 28),
                 high: int = 256) -> dict[str, np.ndarray]:
    """Prepared-array dict of 20 classes of uniform-noise uint8 images (values below `high`), drawn by
    NumPy's legacy generator (its stream is fixed across NumPy versions): train images first."""
    rng = np.random.RandomState(seed)
    return {"train_x": rng.randint(0, high, (20 * train_per_class, *shape)).astype(np.uint8),
            "train_y": np.repeat(np.arange(20), train_per_class).astype(np.uint8),
            "test_x": rng.randint(0, high, (20 * test_per_class, *shape)).astype(np.uint8),
            "test_y": np.repeat(np.arange(20), test_per_class).astype(np.uint8)}


def random_half(num_classes: int):
    """A HalfLoader over `num_classes` of 20 classes of random 28x28 images (2 train, 1 test each)."""
    from workers import data
    return data.half_from_arrays(noise_arrays(0, 2, 1), list(range(num_classes)))


def assert_frozen_prefix_changes_only_autograd(model: torch.nn.Module, prefix: int, frozen: str, trained: str):
    """With `frozen_prefix = prefix` the network computes the same outputs, bitwise, and only autograd
    changes: parameter `frozen` gets no gradient, `trained` does (what frozen transfers rely on)."""
    x = torch.randn(4, 1, 28, 28, generator=seeded(1))
    full = model(x)
    model.frozen_prefix = prefix
    prefixed = model(x)
    assert torch.equal(full, prefixed)
    prefixed.sum().backward()
    assert model.get_parameter(frozen).grad is None and model.get_parameter(trained).grad is not None
