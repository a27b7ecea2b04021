"""Specs for networks beyond CaffeNet: `model.arch: resnet` planned with n over the model's own cut
points, keys and digests of existing specs kept, and bad model specs as one line. A `model.factory`
spec, whose cut points the plan asks a subprocess for: tests/store/test_model_specs_factory.py."""
from pathlib import Path

import pytest

from orchestrator.execution.driver_job import spec_digest
from orchestrator.spec import SpecError, load_spec, parse_spec
from orchestrator.spec.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]


def spec_dict(**over):
    raw = {"name": "m", "dataset": "fashion-animals", "splits": ["random:0"],
           "treatments": ["base", "selffer", "transfer"], "directions": ["A->B"], "train": {"epochs": 1}}
    raw.update(over)
    return raw


def test_resnet_plans_n_over_its_cut_points_and_its_settings_are_complete():
    plan = make_plan(parse_spec(spec_dict(model={"arch": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1],
                                                 "dropout": 0.0})))
    assert sorted({t.n for t in plan.trials}) == [0, 1, 2, 3, 4]  # 5 cut points: stem, 3 blocks, fc
    m = plan.trials[0].settings.model
    assert (m.arch, m.widths, m.blocks, m.in_channels, m.num_outputs, m.frozen_bn) == \
        ("resnet", (8, 16, 32), (1, 1, 1), 1, 20, "frozen")
    assert m.cut_points == ("stem", "layer1.0", "layer2.0", "layer3.0", "fc")
    default = make_plan(parse_spec(spec_dict(model={"arch": "resnet"})))
    assert sorted({t.n for t in default.trials}) == list(range(8))  # (2, 2, 2): n = 1..7 as in the paper
    adapt = make_plan(parse_spec(spec_dict(model={"arch": "resnet", "frozen_bn": "adapt"})))
    assert {t.key for t in adapt.trials}.isdisjoint({t.key for t in default.trials})  # it changes results


def test_existing_specs_keep_their_digest_and_keys():
    spec = load_spec(ROOT / "sweeps" / "demo.yaml")
    assert spec_digest(spec) == "bc3e2dca73"
    # The key pins the protocol: protocol 3 (draws from rng_root) changed every key once, on purpose.
    assert make_plan(spec).trials[0].key == "aa5b0365a2dae494"


@pytest.mark.parametrize("model,message", [
    ({"arch": "resnet", "blocks": [1, 1]}, "resnet widths and blocks give one number per stage"),
    ({"arch": "resnet", "fc_width": 64}, "fc_width is for the CaffeNet-shaped networks"),
    ({"arch": "caffenet", "factory": "user_models:tiny_mlp"}, "give model.arch or model.factory, not both"),
    ({"factory": "user_models"}, "factory 'user_models' is not 'package.module:function'"),
    ({"factory": "user_models:tiny_mlp", "widths": [8, 8, 8, 8, 8]}, "widths is for the built-in networks"),
    ({"blocks": [2, 2]}, "blocks is for arch resnet"),
])
def test_bad_model_specs_are_one_line(model, message):
    with pytest.raises(SpecError, match=message) as err:
        parse_spec(spec_dict(model=model))
    assert "\n" not in str(err.value)


def test_layers_beyond_the_models_cut_points_are_refused():
    with pytest.raises(SpecError, match=r"layers: layer 5 is not allowed \(allowed: 1..4\): this model has 5 cut"):
        parse_spec(spec_dict(layers=[1, 5], model={"arch": "resnet", "blocks": [1, 1, 1]}))
