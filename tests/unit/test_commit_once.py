"""Every result is committed exactly once: an attempt that loses the race to commit a key keeps the
winner's row, loses nothing, and says so when it trained different numbers. Store tier: a local
folder store, a tiny registered dataset, real training; the rival commit lands mid-training."""
from __future__ import annotations

import logging

import pytest
from plan_helpers import TINY_RECIPE, noise_arrays, planned_settings

from sweepcore import layout, records
from sweepcore.store import open_store
from workers import data
from workers.trial import run_trial

TRAIN = {"iterations": 6, "epochs": None, "eval_every": 3, "checkpoint_every": 3, "top_k": 2, "augment": False}
SETTINGS = planned_settings("baseA random:0 s0", dataset="tiny-once", train=TRAIN)


@pytest.fixture(autouse=True)
def tiny_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(data.DATASETS, "tiny-once", data.DatasetSpec("tiny-once", 20, TINY_RECIPE,
                                                               lambda: noise_arrays(1, 2, 2)))
    data.clear_memo()
    yield
    data.clear_memo()


def test_a_losing_attempt_keeps_the_winners_row_and_warns_that_its_numbers_differ(tmp_path, caplog):
    store = open_store(str(tmp_path / "store"))
    clean = run_trial(SETTINGS, open_store(str(tmp_path / "clean")))  # what this attempt trains
    rival = {**clean, "top1_paper": 0.125, "state_sha256": "0" * 64, "wall_seconds": 99.0}

    def commit_rival_mid_training(metrics):
        if metrics["step"] == 3:  # another worker's attempt finishes first
            assert records.commit_result(store, rival)
    committed_before = None
    with caplog.at_level(logging.WARNING, logger="workers.trial"):
        row = run_trial(SETTINGS, store, report=commit_rival_mid_training)
        committed_before = store.read_bytes(layout.result_path(SETTINGS.key))
    assert row["top1_paper"] == 0.125 and row["state_sha256"] == "0" * 64  # the winner's row is the answer
    assert records.read_result(store, SETTINGS.key) == row  # the stored row is the winner's, unchanged
    assert store.read_bytes(layout.result_path(SETTINGS.key)) == committed_before
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"trial {SETTINGS.key} (baseA random:0 s0): another attempt committed first and "
                              f"trained different numbers: top1_paper 0.125 (committed) vs {clean['top1_paper']} "
                              "(this attempt); state_sha256 " + "0" * 64)


def test_a_losing_attempt_that_trained_the_same_numbers_says_nothing(tmp_path, caplog):
    store = open_store(str(tmp_path / "store"))
    clean = run_trial(SETTINGS, open_store(str(tmp_path / "clean")))

    def commit_twin(metrics):
        if metrics["step"] == 3:
            assert records.commit_result(store, {**clean, "wall_seconds": 99.0})  # bookkeeping differs only
    with caplog.at_level(logging.WARNING, logger="workers.trial"):
        row = run_trial(SETTINGS, store, report=commit_twin)
    assert row["wall_seconds"] == 99.0
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
