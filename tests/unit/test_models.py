"""The eight named layers, the cheap LRN, the init rules, and CaffeNet's exact parameter counts."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from plan_helpers import assert_frozen_prefix_changes_only_autograd, planned_settings

from sweepcore.settings import ModelSettings
from workers import models
from workers.models import LAYER_NAMES, build_model, init_layers

TINY = planned_settings("baseA random:0 s0").model  # the small net, 4 channels per conv, fc 16


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels", [1, 2, 5, 16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cheap_lrn_equals_torch_local_response_norm(channels, channels_last):
    x = torch.randn(3, channels, 6, 6, generator=_gen()) * 30  # large values: the norm term matters
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = models.CheapLRN(channels)(x1)
    ref = F.local_response_norm(x2, 5, alpha=1e-4, beta=0.75, k=1.0)
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ref, x)  # the normalisation is not a no-op at this scale
    ours.sum().backward()
    ref.sum().backward()
    assert torch.allclose(x1.grad, x2.grad, rtol=1e-4, atol=1e-6)


def test_small_net_has_the_eight_layers_in_order_and_maps_28px_to_logits():
    model = build_model(replace(TINY, widths=(6, 8, 10, 12, 14)), _gen())
    names = [f"{layer}.{p}" for layer in LAYER_NAMES for p in ("weight", "bias")]
    assert [n for n, _ in model.named_parameters()] == names
    assert model.fc6.in_features == 14 * 3 * 3  # 28 -> 14 -> 7 -> 3
    assert model.conv2.groups == model.conv4.groups == model.conv5.groups == 2 and model.conv3.groups == 1
    assert tuple(model(torch.zeros(3, 1, 28, 28)).shape) == (3, 20)
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}  # LRN bands are not weights
    assert models.layer_parameter_names(6) == ["fc6.weight", "fc6.bias"]
    with pytest.raises(ValueError, match="layer 9 does not exist"):
        models.layer_parameter_names(9)


def test_groups_need_even_widths():
    with pytest.raises(ValueError, match="conv2: 4 -> 5 channels cannot be split into 2 groups"):
        build_model(replace(TINY, widths=(4, 5, 4, 4, 4)))


def test_caffenet_matches_the_papers_parameter_counts():
    model = build_model(ModelSettings(arch="caffenet", num_outputs=1000, widths=(96, 256, 384, 384, 256),
                                      fc_width=4096, dropout=0.5, init="caffe"), _gen())
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in LAYER_NAMES}
    assert counts == {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936,
                      "conv5": 442_624, "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000}
    assert sum(counts.values()) == 60_965_224
    model.eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(2, 3, 227, 227, generator=_gen())).shape) == (2, 1000)
    # Caffe init: Gaussian std 0.01 / 0.005, biases 0 or 1 as in the paper
    assert abs(model.fc6.weight.std().item() - 0.005) < 1e-4 and abs(model.fc8.weight.std().item() - 0.01) < 2e-4
    assert {n: model.get_submodule(n).bias.unique().tolist() for n in LAYER_NAMES} == {
        "conv1": [0.0], "conv2": [1.0], "conv3": [0.0], "conv4": [1.0], "conv5": [1.0],
        "fc6": [1.0], "fc7": [1.0], "fc8": [0.0]}


def test_kaiming_init_is_he_normal_with_zero_biases():
    model = build_model(replace(TINY, widths=(64,) * 5, fc_width=512), _gen())
    assert abs(model.conv3.weight.std().item() - math.sqrt(2 / (64 * 9))) < 0.003
    assert abs(model.fc7.weight.std().item() - math.sqrt(2 / 512)) < 0.002
    assert all(getattr(model, n).bias.abs().sum() == 0 for n in LAYER_NAMES)


def test_init_layers_is_deterministic_and_touches_only_the_named_layers():
    a = build_model(TINY, _gen(0))
    b = build_model(TINY, _gen(0))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    before = {k: v.clone() for k, v in a.state_dict().items()}
    init_layers(a, ["fc7", "conv2"], _gen(5))
    init_layers(b, ["conv2", "fc7"], _gen(5))  # order given does not matter
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
        changed = k.split(".")[0] in ("conv2", "fc7") and k.endswith("weight")
        assert torch.equal(v, before[k]) != changed, k
    with pytest.raises(ValueError, match="unknown layers"):
        init_layers(a, ["fc9"], _gen())


def test_frozen_prefix_changes_nothing_but_autograd():
    assert_frozen_prefix_changes_only_autograd(build_model(TINY, _gen()).eval(), 5, "conv5.weight", "fc6.weight")
