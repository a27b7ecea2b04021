"""Bad specs end as one line naming the field and what is allowed, exit 2, no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((ROOT / "sweeps" / "demo.yaml").read_text())


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def write_spec(tmp_path, mutate):
    raw = yaml.safe_load(yaml.safe_dump(DEMO))
    mutate(raw)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _set(path, value):
    def mutate(raw):
        node = raw
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return mutate


CASES = [
    ("unknown field", _set(["colour"], "red"), ["colour: unknown field", "allowed: name, dataset, splits"]),
    ("unknown nested field", _set(["train", "lr_sched"], "x"), ["train.lr_sched: unknown field", "lr_schedule"]),
    ("wrong type", _set(["train", "batch_size"], "big"), ["train.batch_size", "integer", "'big'"]),
    ("layer 0", _set(["layers"], [0, 1]), ["layers", "layer 0 is not allowed (allowed: 1..7)"]),
    ("layer 8", _set(["layers"], [1, 8]), ["layers", "layer 8 is not allowed (allowed: 1..7)"]),
    ("unknown treatment", _set(["treatments"], ["base", "fintune"]),
     ["treatments[1]", "'fintune' is not allowed", "'selffer+'", "'random'"]),
    ("unknown dataset", _set(["dataset"], "cifar"),
     ["dataset", "unknown dataset 'cifar'", "fashion-animals, imagenet"]),
    ("unknown split", _set(["splits"], ["random:x"]), ["splits[0].split", "unknown split 'random:x'",
                                                       "random:<seed>, natman, all"]),
    ("per-split layer", _set(["splits"], [{"split": "natman", "layers": [9]}]), ["splits[0].layers", "layer 9"]),
    ("missing field", lambda raw: raw.pop("train"), ["train: required field is missing"]),
    ("epochs and iterations", _set(["train", "iterations"], 100), ["train", "exactly one of epochs or iterations"]),
    ("transfer on one half", _set(["splits"], [{"split": "all", "treatments": ["transfer"]}]),
     ["splits[0]", "split 'all' has one half", "allowed: base, selffer, selffer+, random"]),
]


@pytest.mark.parametrize("label,mutate,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_is_one_line_exit_2(tmp_path, label, mutate, expected):
    path = write_spec(tmp_path, mutate)
    proc = run_cli("plan", str(path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith(f"transfer-sweep: error: {path}: ")
    for fragment in expected:
        assert fragment in lines[0], lines[0]


def test_missing_file(tmp_path):
    proc = run_cli("plan", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"transfer-sweep: error: {tmp_path / 'nope.yaml'}: spec file not found"


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: demo\nsplits: [random:0\ntrain: {epochs: 1}\n")
    proc = run_cli("plan", str(path))
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"transfer-sweep: error: {path}: line ") and "malformed YAML" in line


def test_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    proc = run_cli("plan", str(path))
    assert proc.returncode == 2
    assert "a spec must be a YAML mapping" in proc.stderr


def test_bad_override(tmp_path):
    proc = run_cli("plan", str(ROOT / "sweeps" / "demo.yaml"), "--set", "train.epochs=-1")
    assert proc.returncode == 2
    assert "train.epochs" in proc.stderr and "greater than 0" in proc.stderr
