"""A tampered pickle in the store never runs: checkpoints and base weights load with weights_only=True.

The store's sha256 sidecar only proves a checkpoint is the one that was written, not that whoever
wrote it was honest (anyone with write access to the bucket can write both). So each payload here
has a correct sidecar, and only torch.load(weights_only=True) stands between it and a shell.
"""
from __future__ import annotations

import hashlib

import pytest
import safetensors.torch
import torch
from plan_helpers import noise_arrays, planned_settings
from tampered_checkpoint import KEY, RESOURCES, SETTINGS, TRAIN, tampered

from sweepcore import layout, records
from sweepcore import store as st
from workers import data, trial
from workers.train import TrainOutcome

TRANSFER = planned_settings("BnA n=2 random:0 s0", dataset="tiny-safety", train=TRAIN, resources=RESOURCES)
BASE = planned_settings("baseB random:0 s0", dataset="tiny-safety", train=TRAIN, resources=RESOURCES)
BASE_KEY = TRANSFER.base_key
_tampered = tampered  # the payload is live: tests/store/test_checkpoint_payload.py runs it


@pytest.fixture(autouse=True)
def tiny_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(data.DATASETS, "tiny-safety", data.DatasetSpec("tiny-safety", 20, {"version": 1},
                                                                 lambda: noise_arrays(0, 4, 4, high=255)))
    data.clear_memo()
    yield
    data.clear_memo()


def _commit_base(store, weights: bytes) -> str:
    """Commit a result row for base BASE_KEY naming `weights` (as a finished base would); the weights
    file itself is up to the test. Returns the path the row names."""
    sha = hashlib.sha256(weights).hexdigest()
    outcome = TrainOutcome(steps=8, curve=[], wall_seconds=1.0, top1_final=0.5, top1_paper=0.5, state_dict={})
    assert records.commit_result(store, trial.result_row(BASE, outcome, weights_sha256=sha))
    return layout.base_weights_path(BASE_KEY, sha)


def test_resume_never_unpickles_a_tampered_checkpoint_with_a_valid_sidecar_and_trains_without_it(tmp_path):
    marker = tmp_path / "pwned"
    store = st.open_store(str(tmp_path / "store"))
    records.save_checkpoint(store, KEY, 4, _tampered(marker))
    assert records.load_latest_checkpoint(store, KEY)[0] == 4  # the sha256 check passes: only torch.load is left
    row = trial.run_trial(SETTINGS, store)  # skipped as corrupt: trained from the start, not blocked for good
    assert not marker.exists()
    assert row["status"] == "ok" and records.read_result(store, KEY)["steps"] == row["steps"]
    clean = trial.run_trial(SETTINGS, st.open_store(str(tmp_path / "clean")))
    assert row["top1_final"] == clean["top1_final"]  # the same network as a run that never saw the file


def test_dependent_refuses_tampered_base_weights(tmp_path):
    marker = tmp_path / "pwned"
    store = st.open_store(str(tmp_path / "store"))
    assert BASE.key == BASE_KEY
    tampered = _tampered(marker)
    assert store.commit_bytes(_commit_base(store, tampered), tampered)  # the row's sha256 matches, but
    with pytest.raises(ValueError, match="are not readable safetensors"):  # base weights are never unpickled
        trial.run_trial(TRANSFER, store)
    assert not marker.exists()
    assert records.read_result(store, TRANSFER.key) is None


def test_dependent_refuses_base_weights_that_do_not_hash_to_the_rows_sha256(tmp_path):
    # The bytes are checked against the row before any unpickling: not even torch.load sees them.
    marker = tmp_path / "pwned"
    store = st.open_store(str(tmp_path / "store"))
    honest = safetensors.torch.save({"fc8.weight": torch.zeros(20, 16)})
    path = _commit_base(store, honest)
    assert store.commit_bytes(path, _tampered(marker))  # under the honest name, other bytes
    with pytest.raises(ValueError, match=f"base weights {path} in store .* hash to sha256 [0-9a-f]{{64}}, "
                                         f"not the {path[-76:-12]} that results/{BASE_KEY}.parquet names"):
        trial.run_trial(TRANSFER, store)
    assert not marker.exists()
    assert records.read_result(store, TRANSFER.key) is None


def test_torch_floor_is_past_the_weights_only_advisories():
    """Checkpoints read back from a shared store go through torch.load(weights_only=True): it is a
    boundary only from torch 2.10 on (CVE-2025-32434 up to 2.5.1, GHSA-63cw-57p8-fm3p up to 2.9.1)."""
    import re
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[2]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_dep,) = [d for d in deps if d.startswith("torch")]
    floor = re.search(r">=\s*([0-9.]+)", torch_dep).group(1)
    assert tuple(map(int, floor.split("."))) >= (2, 10, 0), torch_dep
    base = re.search(r"^FROM pytorch/pytorch:([0-9.]+)-", (root / "Dockerfile").read_text(), re.M).group(1)
    assert tuple(map(int, base.split("."))) >= (2, 10, 0), base
    assert tuple(map(int, torch.__version__.split("+")[0].split("."))) >= (2, 10, 0)
