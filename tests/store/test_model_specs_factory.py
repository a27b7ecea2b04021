"""Specs of `model.factory` networks: the plan asks the factory for its cut points in a subprocess
(`python -P -m workers.factory probe`: the driver never imports torch), and `plan` of a bad factory is
one line with exit 2 (specs that need no probe: tests/unit/test_model_specs.py)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.errors import UsageError
from orchestrator.sources import with_factory_cut_points
from orchestrator.spec import parse_spec
from orchestrator.spec.plan import make_plan
from workers.networks import build_network

ROOT = Path(__file__).resolve().parents[2]

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
