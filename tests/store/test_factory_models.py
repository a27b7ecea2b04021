"""Networks from a user's factory: loading it, checking its cut points, the probe CLI, and surgery on it."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from plan_helpers import planned_settings, random_half, seeded, state_copy

from sweepcore.settings import ModelSettings
from sweepcore.store import open_store
from workers.factory import build_factory, check_forward, load_factory, probe
from workers.networks import build_network, cut_points_of
from workers.surgery import transplant
from workers.train import train

ROOT = Path(__file__).resolve().parents[2]
MODULE = "user_nets_for_tests"  # written by the `user_module` fixture, as a user would write theirs
USER_CODE = textwrap.dedent('''
    from collections import OrderedDict

    from torch import nn

    CUTS = ["block1", "block2", "block3", "head"]
    NOT_CALLABLE = 3


    def _block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))


    def _net(num_outputs, in_channels):
        return nn.Sequential(OrderedDict(block1=_block(in_channels, 4), block2=_block(4, 8), block3=_block(8, 8),
                                         pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
                                         head=nn.Linear(8, num_outputs)))


    def build(num_outputs, in_channels):
        return _net(num_outputs, in_channels), CUTS


    def with_cuts(cuts):
        return lambda num_outputs, in_channels: (_net(num_outputs, in_channels), cuts)


    misspelt = with_cuts(["block1", "blok2", "block3", "head"])
    one_cut = with_cuts(["head"])
    twice = with_cuts(["block1", "block1", "head"])
    overlapping = with_cuts(["block1", "block1.0", "head"])
    unordered = with_cuts(["block2", "block1", "block3", "head"])
    parameterless = with_cuts(["block1", "block2", "block3", "pool", "head"])
    uncovered = with_cuts(["block1", "block2", "head"])


    class Skipping(nn.Module):
        def __init__(self, num_outputs, in_channels):
            super().__init__()
            self.body, self.unused, self.head = _block(in_channels, 4), nn.Linear(4, 4), nn.Linear(4, num_outputs)

        def forward(self, x):
            return self.head(self.body(x).mean(dim=(2, 3)))  # never calls self.unused


    def skipping(num_outputs, in_channels):
        return Skipping(num_outputs, in_channels), ["body", "unused", "head"]


    def failing(num_outputs, in_channels):
        raise RuntimeError("needs a GPU\\nwhich is not here")


    def not_a_pair(num_outputs, in_channels):
        return _net(num_outputs, in_channels)
''')
SETTINGS = ModelSettings(arch="factory", num_outputs=5, widths=(), fc_width=0, dropout=0.0, init="default",
                         cut_points=("block1", "block2", "block3", "head"), blocks=None, in_channels=1,
                         factory=f"{MODULE}:build", frozen_bn="frozen",
                         factory_sha256=hashlib.sha256(USER_CODE.encode()).hexdigest())
# train() reads the key, solver and runtime of its settings, never their model: the plan's tiny settings do
TRAINING = planned_settings("baseA random:0 s0", train={"iterations": 6, "epochs": None, "warmup_fraction": 0.0,
                                                         "checkpoint_every": 3, "top_k": 2})
PARAMETERS = (1 * 4 * 9 + 2 * 4) + (4 * 8 * 9 + 2 * 8) + (8 * 8 * 9 + 2 * 8) + (8 * 5 + 5)  # = 985


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user-code")
    (folder / f"{MODULE}.py").write_text(USER_CODE)
    # on PYTHONPATH, as a user names their code's folder (a path entry put there by hand is refused)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), before) if p)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)
    if before is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def half():
    return random_half(5)




def _base():
    """A base whose batch norms have seen data."""
    model = build_network(SETTINGS, seeded(1)).train()
    with torch.no_grad():
        model(torch.randn(8, 1, 28, 28, generator=seeded(100)))
    return state_copy(model)


def _probe_cli(user_module, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_module), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "workers.factory", "probe", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


# --- building ---------------------------------------------------------------------------------------
def test_a_factory_builds_deterministically_from_the_generator(user_module):
    assert cut_points_of(SETTINGS) == ("block1", "block2", "block3", "head")
    torch.manual_seed(7)
    before = torch.get_rng_state()
    model = build_network(SETTINGS, seeded(0)).eval()
    a = state_copy(model)
    b, c = (state_copy(build_network(SETTINGS, seeded(s))) for s in (0, 1))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k for k in a if not torch.equal(a[k], c[k])} == {"block1.0.weight", "block2.0.weight", "block3.0.weight",
                                                               "head.weight", "head.bias"}
    assert tuple(model(torch.zeros(2, 1, 28, 28)).shape) == (2, 5)


def test_settings_whose_cut_points_the_factory_no_longer_returns_are_refused(user_module):
    with pytest.raises(ValueError) as err:
        build_network(replace(SETTINGS, cut_points=("block1", "head")), seeded(0))
    assert str(err.value) == (f"factory '{MODULE}:build' returns cut points ['block1', 'block2', 'block3', 'head'], "
                              "but the settings name ['block1', 'head']: plan the sweep with the code the workers run")
    with pytest.raises(ValueError, match=r"^factory '.*:build': settings name no cut points \(the plan resolves"):
        cut_points_of(replace(SETTINGS, cut_points=None))


@pytest.mark.parametrize("path, message", [
    ("no_such_module_xyz:build", "factory 'no_such_module_xyz:build': cannot import module 'no_such_module_xyz': "
                                 "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    (f"{MODULE}:nope", f"factory '{MODULE}:nope': module '{MODULE}' has no attribute 'nope'"),
    (f"{MODULE}:NOT_CALLABLE", f"factory '{MODULE}:NOT_CALLABLE': 'NOT_CALLABLE' is int, not a function"),
    (MODULE, f"factory '{MODULE}': expected 'package.module:function'"),
])
def test_unloadable_factories_are_one_line_errors(user_module, path, message):
    with pytest.raises(ValueError) as err:
        load_factory(path)
    assert str(err.value) == message


@pytest.mark.parametrize("function, message", [
    ("misspelt", "cut point 'blok2' is not a submodule of the network (submodules include: block2, block1, block3, "
                 "pool, flat, head)"),
    ("one_cut", "needs at least 2 cut points (layers to cut after, then the head), got ['head']"),
    ("twice", "cut point 'block1' is listed twice"),
    ("overlapping", "cut points 'block1' and 'block1.0' overlap (one lies inside the other)"),
    ("unordered", "cut point 'block1' is defined before 'block2': list cut points in forward order"),
    ("parameterless", "cut point 'pool' has no parameters (nothing to copy or freeze)"),
    ("uncovered", "'block3.0.weight' lies under no cut point: every parameter and buffer must belong to one, so "
                  "surgery copies or re-initialises it"),
    ("failing", "failed: RuntimeError: needs a GPU which is not here"),
    ("not_a_pair", "returned Sequential: expected (torch module, cut points)"),
])
def test_factories_surgery_cannot_work_with_are_one_line_errors(user_module, function, message):
    with pytest.raises(ValueError) as err:
        build_factory(f"{MODULE}:{function}", 5, 1)
    expected = f"factory '{MODULE}:{function}'{' ' if message.startswith(('failed', 'returned')) else ': '}{message}"
    assert str(err.value) == expected


def test_the_forward_check_finds_cut_points_the_forward_skips_and_wrong_outputs(user_module):
    assert probe(f"{MODULE}:build", 5, 1, image_size=28) == {"cut_points": list(SETTINGS.cut_points),
                                                              "parameters": PARAMETERS,
                                                              "source_sha256": SETTINGS.factory_sha256}
    with pytest.raises(ValueError) as err:
        probe(f"{MODULE}:skipping", 5, 1, image_size=28)
    assert str(err.value) == (f"factory '{MODULE}:skipping': the forward runs cut points as ['body', 'head'], "
                              "not as declared ['body', 'unused', 'head']")
    module, cut_points = build_factory(f"{MODULE}:build", 5, 1)
    with pytest.raises(ValueError) as err:
        check_forward(module, cut_points, 1, 28, 7, "a factory")
    assert str(err.value) == "a factory: the output has shape (2, 5) for a batch of 2, expected (2, 7)"
    with pytest.raises(ValueError, match=r"^a factory: forward on 2x3x28x28 failed: RuntimeError: .*channels"):
        check_forward(module, cut_points, 3, 28, 5, "a factory")
    assert module.training  # the check leaves the mode as it found it


# --- the probe CLI ----------------------------------------------------------------------------------
def test_the_probe_prints_the_cut_points_as_json(user_module):
    proc = _probe_cli(user_module, f"{MODULE}:build", "--num-outputs", "5", "--in-channels", "1")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout) == {"cut_points": ["block1", "block2", "block3", "head"], "parameters": PARAMETERS,
                                       "source_sha256": SETTINGS.factory_sha256}


def test_the_probe_exits_2_with_one_line_on_stderr(user_module):
    proc = _probe_cli(user_module, f"{MODULE}:misspelt", "--num-outputs", "5", "--in-channels", "1")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"factory '{MODULE}:misspelt': cut point 'blok2' is not a submodule of the network "
                           "(submodules include: block2, block1, block3, pool, flat, head)\n")


# --- surgery ----------------------------------------------------------------------------------------
def test_surgery_copies_and_freezes_the_declared_cut_points(user_module):
    base = _base()
    model = build_network(SETTINGS, seeded(2))
    frozen = transplant(model, base, 2, True, seeded(9), cut_points_of(SETTINGS), "frozen")
    assert frozen == ["block1.0.weight", "block1.1.weight", "block1.1.bias",
                      "block2.0.weight", "block2.1.weight", "block2.1.bias"]
    for name, value in model.state_dict().items():
        copied = name.startswith(("block1.", "block2."))
        if copied or name.endswith("0.weight") or name.startswith("head") or "running" in name:
            assert torch.equal(value, base[name]) == copied, name
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == set(frozen)
    with pytest.raises(ValueError, match=r"^transplant: a Sequential declares no cut points: pass them$"):
        transplant(model, base, 2, True, seeded(9))
    with pytest.raises(ValueError, match=r"^transplant: cut point 'blok2' is not a submodule of the network"):
        transplant(model, base, 1, True, seeded(9), ("block1", "blok2", "head"))


@pytest.mark.parametrize("frozen_bn", ["frozen", "adapt"])
def test_frozen_cut_points_stay_bitwise_unchanged_through_training(user_module, half, tmp_path, frozen_bn):
    model = build_network(replace(SETTINGS, frozen_bn=frozen_bn), seeded(2))
    transplant(model, _base(), 2, True, seeded(9), cut_points_of(SETTINGS), frozen_bn)
    before = state_copy(model)
    train(model, half, replace(TRAINING, key=f"factory-{frozen_bn}"), open_store(str(tmp_path / "store")), seed=3)
    changed = {n for n, v in state_copy(model).items() if not torch.equal(v, before[n])}
    statistics = ("running_mean", "running_var", "num_batches_tracked") if frozen_bn == "adapt" else ()
    assert changed == {n for n in before if n.startswith(("block3.", "head.")) or n.endswith(statistics)}

