"""Surgery: what is copied, frozen, re-initialised, and what training then changes."""
from dataclasses import replace

import pytest
import torch
from plan_helpers import planned_settings, random_half, seeded, state_copy

from sweepcore.store import open_store
from workers.models import LAYER_NAMES, build_model
from workers.surgery import transplant
from workers.train import train

SETTINGS = planned_settings("baseA random:0 s0", train={"iterations": 6, "epochs": None, "warmup_fraction": 0.0,
                                                         "checkpoint_every": 3, "top_k": 2, "bias_lr_mult": 2.0,
                                                         "bias_decay": False})
MODEL = SETTINGS.model




def _layer(name):
    return name.split(".")[0]


@pytest.fixture(scope="module")
def half():
    return random_half(10)


@pytest.fixture
def base():
    return state_copy(build_model(MODEL, seeded(1)))


def _train(model, half, tmp_path, key="t1"):
    settings = replace(SETTINGS, key=key)
    return train(model, half, settings, open_store(str(tmp_path / "store")), seed=3)


@pytest.mark.parametrize("n", [1, 4, 7])
def test_copied_layers_equal_the_base_bitwise_and_the_rest_are_new(base, n):
    model = build_model(MODEL, seeded(2))
    frozen = transplant(model, base, n, True, seeded(9))
    copied = set(LAYER_NAMES[:n])
    for name, value in model.state_dict().items():
        if _layer(name) in copied:
            assert torch.equal(value, base[name]), name
        elif name.endswith("weight"):
            assert not torch.equal(value, base[name]), name  # re-initialised, not kept
    assert frozen == [f"{layer}.{p}" for layer in LAYER_NAMES[:n] for p in ("weight", "bias")]
    assert {k for k, p in model.named_parameters() if not p.requires_grad} == set(frozen)
    assert model.frozen_prefix == n


def test_reinitialised_layers_depend_only_on_the_generator(base):
    a, b = build_model(MODEL, seeded(2)), build_model(MODEL, seeded(3))
    transplant(a, base, 3, False, seeded(9))
    transplant(b, base, 3, False, seeded(9))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a.frozen_prefix == 0 and all(p.requires_grad for p in a.parameters())


def test_frozen_layers_stay_bitwise_unchanged_while_the_rest_train(base, half, tmp_path):
    model = build_model(MODEL, seeded(2))
    frozen = transplant(model, base, 3, True, seeded(9))
    before = state_copy(model)
    _train(model, half, tmp_path)
    after = state_copy(model)
    for name in after:
        assert torch.equal(after[name], before[name]) == (name in frozen), name


def test_plus_treatment_trains_every_layer(base, half, tmp_path):
    model = build_model(MODEL, seeded(2))
    assert transplant(model, base, 5, False, seeded(9)) == []
    before = state_copy(model)
    _train(model, half, tmp_path)
    assert [n for n, v in state_copy(model).items() if torch.equal(v, before[n])] == []


def test_random_treatment_freezes_its_fresh_init(half, tmp_path):
    model = build_model(MODEL, seeded(2))
    frozen = transplant(model, None, 2, True, seeded(9))
    reference = build_model(MODEL, seeded(9))  # all eight layers drawn from the same generator state
    for name in frozen:
        assert torch.equal(model.state_dict()[name], reference.state_dict()[name])
    before = state_copy(model)
    _train(model, half, tmp_path)
    for name, value in state_copy(model).items():
        assert torch.equal(value, before[name]) == (name in frozen), name


def test_dropout_still_runs_inside_a_frozen_prefix(base):
    model = build_model(MODEL, seeded(2))
    transplant(model, base, 7, True, seeded(9))
    x = torch.randn(4, 1, 28, 28, generator=seeded(4))
    model.train()
    assert not torch.equal(model(x), model(x))  # fc6/fc7 dropout is active although frozen
    model.eval()
    assert torch.equal(model(x), model(x))


def test_bad_cuts_and_mismatched_bases_are_named(base):
    model = build_model(MODEL, seeded(2))
    with pytest.raises(ValueError, match="n=8: the cut must be after layer 0..7"):
        transplant(model, base, 8, True, seeded(9))
    wider = build_model(replace(MODEL, widths=(6, 4, 4, 4, 4)), seeded(2))
    with pytest.raises(ValueError, match=r"cannot copy conv1.weight: base has shape \(4, 1, 5, 5\)"):
        transplant(wider, base, 2, True, seeded(9))
