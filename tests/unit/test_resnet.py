"""The CIFAR-style ResNet: its cut points, its build, and surgery on it (batch norm included)."""
from dataclasses import replace

import pytest
import torch
from plan_helpers import (
    assert_frozen_prefix_changes_only_autograd,
    planned_settings,
    random_half,
    seeded,
    state_copy,
)

from sweepcore.cut_points import CAFFENET_CUT_POINTS, cut_point_of, resnet_cut_points
from sweepcore.settings import ModelSettings
from sweepcore.store import open_store
from workers.models import LAYER_NAMES
from workers.networks import build_network, cut_points_of
from workers.resnet import ResNet
from workers.surgery import transplant
from workers.train import train

RESNET = ModelSettings(arch="resnet", num_outputs=10, widths=(4, 8, 8), fc_width=0, dropout=0.0, init="default",
                       cut_points=None, blocks=(2, 2, 2), in_channels=1, factory=None, frozen_bn="frozen")
# train() reads the key, solver and runtime of its settings, never their model: the plan's tiny settings do
TRAINING = planned_settings("baseA random:0 s0", train={"iterations": 6, "epochs": None, "warmup_fraction": 0.0,
                                                         "checkpoint_every": 3, "top_k": 2})




def _under(name, n, cut_points=resnet_cut_points((2, 2, 2))):
    return cut_point_of(name, cut_points[:n]) is not None


@pytest.fixture(scope="module")
def half():
    return random_half(10)


@pytest.fixture(scope="module")
def base():
    """A base whose batch norms have seen data: running statistics unlike a fresh build's."""
    model = build_network(RESNET, seeded(1)).train()
    with torch.no_grad():
        for seed in range(3):
            model(torch.randn(8, 1, 28, 28, generator=seeded(100 + seed)))
    return state_copy(model)


def _train(model, half, tmp_path):
    return train(model, half, replace(TRAINING, key="resnet-t"), open_store(str(tmp_path / "store")), seed=3)


# --- cut points and the build ----------------------------------------------------------------------
def test_cut_points_are_the_stem_every_block_and_the_head():
    assert resnet_cut_points((2, 2, 2)) == ("stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0",
                                            "layer3.1", "fc")
    assert resnet_cut_points([1, 3]) == ("stem", "layer1.0", "layer2.0", "layer2.1", "layer2.2", "fc")
    assert cut_points_of(RESNET) == resnet_cut_points((2, 2, 2)) == build_network(RESNET, seeded(0)).cut_points
    assert CAFFENET_CUT_POINTS == LAYER_NAMES == cut_points_of(TRAINING.model)
    assert cut_point_of("layer1.10.bn1.weight", ("layer1.1", "layer1.10")) == "layer1.10"  # not a prefix match


@pytest.mark.parametrize("blocks", [(), (2, 0), (2, True)])
def test_bad_blocks_are_refused(blocks):
    with pytest.raises(ValueError) as err:
        resnet_cut_points(blocks)
    assert str(err.value) == f"resnet blocks must give at least one stage of 1 or more blocks, got {list(blocks)}"


def test_settings_that_name_other_cut_points_are_refused():
    with pytest.raises(ValueError, match=r"resnet: settings name cut points \['stem', 'fc'\], but the network's"):
        cut_points_of(replace(RESNET, cut_points=("stem", "fc")))


@pytest.mark.parametrize("change, message", [
    ({"widths": (4, 8)}, "resnet widths must give one positive channel count per stage: widths [4, 8], "
                         "blocks [2, 2, 2]"),
    ({"in_channels": None}, "resnet in_channels must be a positive channel count, got None"),
    ({"init": "kaiming"}, "resnet init 'kaiming': expected 'default' (each module's own reset_parameters)"),
])
def test_bad_settings_are_one_line_errors(change, message):
    with pytest.raises(ValueError) as err:
        build_network(replace(RESNET, **change), seeded(0))
    assert str(err.value) == message


def test_shapes_names_and_every_entry_under_a_cut_point():
    model = build_network(RESNET, seeded(0)).eval()
    assert isinstance(model, ResNet)
    assert tuple(model(torch.randn(3, 1, 28, 28, generator=seeded(1))).shape) == (3, 10)
    assert isinstance(model.get_submodule("layer1.0.shortcut"), torch.nn.Identity)  # 4 -> 4 channels, stride 1
    projection = model.get_submodule("layer2.0.shortcut.0")
    assert (projection.kernel_size, projection.stride, projection.out_channels) == ((1, 1), (2, 2), 8)
    assert isinstance(model.get_submodule("layer3.1.shortcut"), torch.nn.Identity)
    assert [n for n in model.state_dict() if cut_point_of(n, model.cut_points) is None] == []
    rgb = build_network(replace(RESNET, in_channels=3, blocks=(1, 1, 1)), seeded(0)).eval()
    assert tuple(rgb(torch.randn(2, 3, 32, 32)).shape) == (2, 10)


def test_the_build_depends_only_on_the_generator_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = state_copy(build_network(RESNET, seeded(0))), state_copy(build_network(RESNET, seeded(0))), \
        state_copy(build_network(RESNET, seeded(1)))
    assert torch.equal(torch.get_rng_state(), before)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drawn = {k for k in a if a[k].dim() > 1} | {"fc.bias"}  # conv and fc weights, fc bias; BN starts at 1 / 0
    assert {k for k in a if not torch.equal(a[k], c[k])} == drawn


def test_frozen_prefix_changes_nothing_but_autograd():
    assert_frozen_prefix_changes_only_autograd(build_network(RESNET, seeded(0)).eval(), 3, "layer1.1.conv2.weight",
                                               "layer2.0.conv1.weight")


# --- surgery -----------------------------------------------------------------------------------------
def test_copied_entries_are_the_bases_bitwise_and_the_rest_are_fresh(base):
    model = build_network(RESNET, seeded(2))
    frozen = transplant(model, base, 3, True, seeded(9), cut_points_of(RESNET), "frozen")
    fresh = state_copy(build_network(RESNET, seeded(5)))  # defaults of a fresh build: BN statistics 0 / 1 / 0 batches
    for name, value in model.state_dict().items():
        if _under(name, 3):
            assert torch.equal(value, base[name]), name
        elif "running" in name or "num_batches" in name:
            assert torch.equal(value, fresh[name]) and not torch.equal(value, base[name]), name
        elif name.endswith("conv1.weight") or name.endswith("conv2.weight") or name == "fc.weight":
            assert not torch.equal(value, base[name]), name
    block = ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"]
    assert frozen == ["stem.0.weight", "stem.1.weight", "stem.1.bias",
                      *[f"layer1.{b}.{p}" for b in (0, 1) for p in block]]
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == set(frozen)
    assert model.frozen_prefix == 3


def test_reinitialised_entries_depend_only_on_the_init_generator(base):
    a, b = build_network(RESNET, seeded(2)), build_network(RESNET, seeded(3))
    assert transplant(a, base, 3, False, seeded(9)) == []
    transplant(b, base, 3, False, seeded(9))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a.frozen_prefix == 0 and all(p.requires_grad for p in a.parameters())


def test_random_treatment_freezes_what_a_fresh_build_from_its_generator_gives():
    model = build_network(RESNET, seeded(2))
    transplant(model, None, 2, True, seeded(9))
    reference = state_copy(build_network(RESNET, seeded(9)))
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())


def test_frozen_cut_points_stay_bitwise_unchanged_buffers_included(base, half, tmp_path):
    model = build_network(RESNET, seeded(2))
    transplant(model, base, 3, True, seeded(9), cut_points_of(RESNET), "frozen")
    before = state_copy(model)
    _train(model, half, tmp_path)  # model.train() in the loop, model.eval() around each evaluation
    changed = {n for n, v in state_copy(model).items() if not torch.equal(v, before[n])}
    assert changed == {n for n in before if not _under(n, 3)}


def test_adapting_batch_norm_follows_the_data_while_its_weights_stay(base, half, tmp_path):
    model = build_network(RESNET, seeded(2))
    transplant(model, base, 3, True, seeded(9), cut_points_of(RESNET), "adapt")
    before = state_copy(model)
    _train(model, half, tmp_path)
    changed = {n for n, v in state_copy(model).items() if not torch.equal(v, before[n])}
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    assert changed == {n for n in before if not _under(n, 3) or n.endswith(statistics)}
    assert "stem.1.running_mean" in changed and "layer1.1.bn2.num_batches_tracked" in changed


def test_a_later_transplant_releases_batch_norm_held_by_an_earlier_one(base):
    model = build_network(RESNET, seeded(2))
    transplant(model, base, 3, True, seeded(9))
    transplant(model, base, 3, False, seeded(9))  # selffer+: nothing frozen, every batch norm trains
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 28, 28, generator=seeded(4)))
    assert not torch.equal(model.state_dict()["stem.1.running_mean"], base["stem.1.running_mean"])


def test_bad_cuts_cut_points_modes_and_bases_are_named(base):
    model = build_network(RESNET, seeded(2))
    with pytest.raises(ValueError, match=r"^n=8: the cut must be after layer 0\.\.7 \(fc is always new\)$"):
        transplant(model, base, 8, True, seeded(9))
    with pytest.raises(ValueError, match=r"^transplant: cut points \['stem', 'fc'\] are not this ResNet's \["):
        transplant(model, base, 1, True, seeded(9), ("stem", "fc"))
    with pytest.raises(ValueError, match=r"^frozen_bn 'thaw': expected one of \('frozen', 'adapt'\)$"):
        transplant(model, base, 1, True, seeded(9), frozen_bn="thaw")
    wider = build_network(replace(RESNET, widths=(6, 8, 8)), seeded(2))
    with pytest.raises(ValueError, match=r"^cannot copy stem\.0\.weight: base has shape \(4, 1, 3, 3\), this model "
                                         r"\(6, 1, 3, 3\) \(different widths or arch\?\)$"):
        transplant(wider, base, 2, True, seeded(9))
    without_stats = {k: v for k, v in base.items() if k != "layer1.0.bn1.running_var"}
    with pytest.raises(ValueError, match=r"^base weights have no 'layer1\.0\.bn1\.running_var'"):
        transplant(model, without_stats, 2, True, seeded(9))
