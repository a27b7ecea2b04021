"""Bad specs end as one line naming the field and what is allowed, exit 2, no traceback: `plan` run as
a process on each (load_spec itself on the same hostile files: tests/unit/test_spec_errors.py)."""
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hostile_specs import HOSTILE, LONG_LINE

ROOT = Path(__file__).resolve().parents[2]
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
    ("unknown field", _set(["colour"], "red"), ["colour: unknown field", "allowed: name, dataset, images, splits"]),
    ("unknown nested field", _set(["train", "lr_sched"], "x"), ["train.lr_sched: unknown field", "lr_schedule"]),
    ("wrong type", _set(["train", "batch_size"], "big"), ["train.batch_size", "integer", "'big'"]),
    ("layer 0", _set(["layers"], [0, 1]), ["layers", "layer 0 is not allowed (allowed: 1..7 for the CaffeNet shapes"]),
    ("layer 8", _set(["layers"], [1, 8]), ["layers", "layer 8 is not allowed (allowed: 1..7)"]),
    ("unknown treatment", _set(["treatments"], ["base", "fintune"]),
     ["treatments[1]", "'fintune' is not allowed", "'selffer+'", "'random'"]),
    ("unknown dataset", _set(["dataset"], "cifar"),
     ["dataset", "unknown dataset 'cifar'", "fashion-animals, imagenet"]),
    ("unknown split", _set(["splits"], ["random:x"]), ["splits[0].split", "unknown split 'random:x'",
                                                       "random:<seed>, natman, groups, all"]),
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


# --- hostile spec files: bounded in size, time and message length ------------------------------------
def run_plan_timed(path, *args):
    """`python -m orchestrator.cli plan PATH ...` with the seconds it took (interpreter start included)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(path), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=20)
    return proc, time.perf_counter() - start


def assert_one_line_error(proc, prefix):
    assert proc.returncode == 2, proc.stderr[:2000]
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr, proc.stderr[:2000]
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr[:2000]
    line = proc.stderr[:-1]
    assert line.startswith(f"transfer-sweep: error: {prefix}"), line
    assert len(line) < LONG_LINE, line
    return line


@pytest.mark.parametrize("label,data,expected", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_spec_file_cli(tmp_path, label, data, expected):
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    proc, seconds = run_plan_timed(path)
    line = assert_one_line_error(proc, f"{path}: ")
    for fragment in expected:
        assert fragment in line, line
    assert seconds < 10, f"{label}: {seconds:.1f} s"  # the goal is < 2 s beyond interpreter start


def test_bad_override_yaml_cli():
    proc, _ = run_plan_timed(ROOT / "sweeps" / "demo.yaml", "--set", "train.epochs=[1")
    line = assert_one_line_error(proc, "--set train.epochs: ")
    assert "malformed YAML" in line
