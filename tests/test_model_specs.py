"""Specs for networks beyond CaffeNet: `model.arch: resnet` and `model.factory`, planned with n over the
model's own cut points, the factory asked in a subprocess (the driver never imports torch), and bad
model specs as one line with exit 2."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.driver_job import spec_digest
from orchestrator.errors import UsageError
from orchestrator.plan import make_plan
from orchestrator.spec import SpecError, load_spec, parse_spec
from orchestrator.spec_source import with_factory_cut_points
from workers.networks import build_network

ROOT = Path(__file__).resolve().parents[1]

FACTORY = textwrap.dedent('''
    """A user's model library: a function returning (module, cut points)."""
    from torch import nn


    def tiny_mlp(num_outputs, in_channels):
        net = nn.Sequential()
        net.add_module("flat", nn.Flatten())
        net.add_module("hidden1", nn.Sequential(nn.Linear(in_channels * 28 * 28, 32), nn.ReLU()))
        net.add_module("hidden2", nn.Sequential(nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU()))
        net.add_module("head", nn.Linear(32, num_outputs))
        return net, ["hidden1", "hidden2", "head"]


    def not_a_submodule(num_outputs, in_channels):
        net, _ = tiny_mlp(num_outputs, in_channels)
        return net, ["hidden1", "hiden2", "head"]


    def broken(num_outputs, in_channels):
        raise RuntimeError("no GPU, no network")
''')


def spec_dict(**over):
    raw = {"name": "m", "dataset": "fashion-animals", "splits": ["random:0"],
           "treatments": ["base", "selffer", "transfer"], "directions": ["A->B"], "train": {"epochs": 1}}
    raw.update(over)
    return raw


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(FACTORY)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


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


def test_a_factory_declares_the_cut_points_the_plan_runs_over(user_models):
    spec = parse_spec(spec_dict(model={"factory": "user_models:tiny_mlp"}))
    with pytest.raises(ValueError, match="its cut points and source are not resolved"):
        make_plan(spec)
    resolved = with_factory_cut_points(spec, "spec.yaml")
    assert resolved.model.cut_points == ("hidden1", "hidden2", "head")
    plan = make_plan(resolved)
    assert sorted({t.n for t in plan.trials}) == [0, 1, 2]
    m = plan.trials[0].settings.model
    assert (m.arch, m.factory, m.in_channels, m.cut_points) == \
        ("factory", "user_models:tiny_mlp", 1, ("hidden1", "hidden2", "head"))
    assert with_factory_cut_points(resolved) is resolved  # resolved once: resume reads the stored ones


@pytest.mark.parametrize("factory,message", [
    ("user_models:not_a_submodule", "'hiden2' is not a submodule"),
    ("user_models:missing", "user_models:missing"),
    ("no_such_package.models:net", "no_such_package"),
    ("user_models:broken", "no GPU, no network"),
])
def test_a_factory_that_cannot_build_its_network_is_one_line(user_models, factory, message):
    with pytest.raises(UsageError, match=message) as err:
        with_factory_cut_points(parse_spec(spec_dict(model={"factory": factory})), "spec.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith(f"spec.yaml: model.factory {factory}: ")


def test_cli_plan_of_a_bad_factory_exits_2_with_one_line(user_models, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec_dict(model={"factory": "user_models:not_a_submodule"})))
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'hiden2' is not a submodule" in lines[0], proc.stderr
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(spec_dict(model={"factory": "user_models:tiny_mlp"})))
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(ok)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "sweep m: 6 trainings, 2 distinct bases" in proc.stdout, proc.stdout + proc.stderr


# --- end to end on the tests' Ray head ----------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("model,ns", [
    ({"arch": "resnet", "widths": [4, 8], "blocks": [1, 1], "dropout": 0.0}, [1, 2]),
    ({"factory": "user_models:tiny_cnn"}, [1, 3]),
])
def test_a_resnet_and_a_factory_sweep_run_to_committed_rows(ray_head, tmp_path, model, ns):
    from sweep_helpers import cli, env_with, tiny_spec

    from sweepcore.records import read_results
    from sweepcore.store import open_store
    name = "resnet" if "arch" in model else "factory"
    spec = tiny_spec(tmp_path, name, layers=ns, treatments=["base", "selffer", "transfer+"])
    raw = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**raw, "model": model}))  # not merged with the tiny CaffeNet shape
    env = env_with(ray_head, {"PYTHONPATH": ray_head.env["PYTHONPATH"]})  # the driver probes the factory too
    proc = cli("run", str(spec), "--store", str(tmp_path / "store"), "--address", ray_head.address, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = read_results(open_store(str(tmp_path / "store"))).to_pylist()
    assert len(rows) == 2 + 2 * len(ns) and {r["status"] for r in rows} == {"ok"}
    assert sorted({r["n"] for r in rows}) == [0, *ns]
    settings = [yaml.safe_load(r["settings_json"])["model"] for r in rows]
    assert {s["arch"] for s in settings} == {"resnet" if name == "resnet" else "factory"}
    assert {s["frozen_bn"] for s in settings} == {"frozen"}


EDITABLE_FACTORY = textwrap.dedent('''
    from torch import nn


    def build(num_outputs, in_channels):
        net = nn.Sequential()
        net.add_module("hidden", nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, 8), nn.ReLU()))
        net.add_module("head", nn.Linear(8, num_outputs))
        return net, ["hidden", "head"]
''')


def test_a_factory_whose_body_changes_gets_new_keys_and_workers_refuse_the_old_ones(tmp_path, monkeypatch):
    """The code is part of a network's identity: the name 'module:function' alone would reuse the rows
    of the network the old body built."""
    folder = tmp_path / "code"
    folder.mkdir()
    module = folder / "edited_factory.py"
    module.write_text(EDITABLE_FACTORY)
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.syspath_prepend(str(folder))
    spec = parse_spec(spec_dict(model={"factory": "edited_factory:build"}))
    before = make_plan(with_factory_cut_points(spec))
    module.write_text(EDITABLE_FACTORY.replace("nn.ReLU()", "nn.ReLU(inplace=True)"))
    after = make_plan(with_factory_cut_points(spec))
    assert len(before.trials) == len(after.trials)
    assert not {t.key for t in before.trials} & {t.key for t in after.trials}
    sys.modules.pop("edited_factory", None)
    with pytest.raises(ValueError, match=r"factory 'edited_factory:build': its module file has sha256 .*, the "
                                         r"settings were planned from .*: plan the sweep again"):
        # the edited code under the old key: never
        build_network(before.trials[0].settings.model, torch.Generator().manual_seed(0))
    sys.modules.pop("edited_factory", None)
