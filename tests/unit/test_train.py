"""Training loop and run_trial: schedule, exact resume, corrupt checkpoints, exactly-once results."""
import dataclasses
import hashlib
import io
import math

import numpy as np
import pytest
import safetensors.torch
import torch
from plan_helpers import planned_settings

from sweepcore import layout, records
from sweepcore import store as st
from workers import data, trial
from workers import train as training
from workers.models import build_model
from workers.surgery import transplant

# tiny-test: 10 classes x 6 images per half -> 60 images, 7 batches of 8 per epoch, 15 steps
TRAIN = {"bias_lr_mult": 2.0, "bias_decay": False}
SETTINGS = planned_settings("baseA random:0 s0", dataset="tiny-test", train=TRAIN)


def _tiny_arrays():
    rng = np.random.RandomState(0)
    # learnable: each class has its own mean brightness pattern, plus noise
    protos = rng.randint(0, 200, (20, 28, 28))
    y_train, y_test = np.repeat(np.arange(20), 6), np.repeat(np.arange(20), 2)
    noise = lambda n: rng.randint(0, 56, (n, 28, 28))  # noqa: E731
    return {"train_x": (protos[y_train] + noise(120)).astype(np.uint8), "train_y": y_train.astype(np.uint8),
            "test_x": (protos[y_test] + noise(40)).astype(np.uint8), "test_y": y_test.astype(np.uint8)}


@pytest.fixture(autouse=True)
def tiny_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(data.DATASETS, "tiny-test",
                        data.DatasetSpec("tiny-test", 20, {"version": 1}, _tiny_arrays))
    data.clear_memo()
    yield
    data.clear_memo()


def _store(tmp_path, name="store"):
    return st.open_store(str(tmp_path / name))


def _weights_path(store, key):
    """The base weights file that the committed row of base `key` names."""
    return layout.base_weights_path(key, records.read_result(store, key)["weights_sha256"])


def _state(store, key):
    return safetensors.torch.load(store.read_bytes(_weights_path(store, key)))


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _curve(store, key):
    import pyarrow.parquet as pq
    rows = pq.read_table(store.uri(layout.curve_path(key))).to_pylist()
    return [(r["step"], r["top1"], r["loss"], r["lr"]) for r in rows]  # seconds differ between runs


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- schedule and optimiser -----------------------------------------------------------------------
def _checkpoint_steps_fit(reports, checkpoints, resumed_from) -> bool:
    """Each report names the newest checkpoint handed to the writer by its step or the one before it;
    the last report names the final one."""
    for r in reports:
        handed = [c for c in [resumed_from, *checkpoints] if c is None or c <= r["step"]]
        if r["checkpoint_step"] not in handed[-2:]:
            return False
    return reports[-1]["checkpoint_step"] == checkpoints[-1]


def test_iterations_and_learning_rate_schedules():
    tr = SETTINGS.train
    assert training.total_iterations(tr, 60) == math.ceil(2.0 * 60 / 8) == 15
    assert training.total_iterations(dataclasses.replace(tr, iterations=7), 60) == 7
    cos = dataclasses.replace(tr, lr=1.0, warmup_fraction=0.1)
    assert [training.learning_rate(cos, s, 100) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert training.learning_rate(cos, 55, 100) == pytest.approx(0.5)
    assert training.learning_rate(cos, 99, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    step = dataclasses.replace(tr, lr=0.01, lr_schedule="step", lr_step_every=10, lr_gamma=0.1, warmup_fraction=0.0)
    assert [training.learning_rate(step, s, 100) for s in (0, 9, 10, 25)] == \
        [0.01, 0.01, 0.01 * 0.1, 0.01 * 0.1 ** 2]
    with pytest.raises(ValueError, match="unknown lr_schedule 'poly'"):
        training.learning_rate(dataclasses.replace(tr, lr_schedule="poly"), 0, 10)


def test_paper_metric_is_the_mean_of_the_top_k():
    assert training.paper_metric([0.1, 0.5, 0.3, 0.4], 2) == pytest.approx(0.45)
    assert training.paper_metric([0.2, 0.4], 10) == pytest.approx(0.3)


def test_optimizer_skips_frozen_params_and_applies_bias_rules():
    model = build_model(SETTINGS.model, torch.Generator().manual_seed(0))
    transplant(model, None, 2, True, torch.Generator().manual_seed(1))
    opt = training.make_optimizer(model, SETTINGS.train)
    weights, biases = opt.param_groups
    trainable = {id(p) for n, p in model.named_parameters() if not n.startswith(("conv1", "conv2"))}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable
    assert (weights["lr_mult"], weights["weight_decay"]) == (1.0, 0.0005)
    assert (biases["lr_mult"], biases["weight_decay"]) == (2.0, 0.0)
    assert len(weights["params"]) == len(biases["params"]) == 6


# --- run_trial -------------------------------------------------------------------------------------
def test_base_trial_commits_weights_curve_result_and_reports(tmp_path):
    store, reports = _store(tmp_path), []
    row = trial.run_trial(SETTINGS, store, report=reports.append)
    key = SETTINGS.key
    assert row["status"] == "ok" and row["error"] is None and row["steps"] == 15 and row["n"] == 0
    assert [r["step"] for r in reports] == [3, 6, 9, 12, 15]
    assert set(reports[0]) == {"step", "total_steps", "top1", "loss", "lr", "images_per_second", "checkpoint_step",
                               "checkpoint_unix"} and reports[0]["total_steps"] == 15
    # what the dashboard's checkpoint-age metric is computed from: the newest checkpoint at each report
    # checkpoints are written in the background: a report may still see the one before the newest
    # handed over; the last report comes after the final checkpoint is in the store
    assert _checkpoint_steps_fit(reports, [4, 8, 12, 15], None)
    assert all((r["checkpoint_unix"] is None) == (r["checkpoint_step"] is None) for r in reports)
    assert reports[0]["checkpoint_unix"] is None and reports[-1]["checkpoint_unix"] > 0
    assert all(r["images_per_second"] > 0 for r in reports)
    assert row["top1_final"] == reports[-1]["top1"]
    assert row["top1_paper"] == pytest.approx(sum(sorted(r["top1"] for r in reports)[-3:]) / 3)
    assert row["wall_seconds"] > 0
    assert records.read_result(store, key)["top1_paper"] == pytest.approx(row["top1_paper"])
    assert [c[0] for c in _curve(store, key)] == [3, 6, 9, 12, 15]
    assert set(_state(store, key)) == {f"{layer}.{p}" for layer in ("conv1", "conv2", "conv3", "conv4", "conv5",
                                                              "fc6", "fc7", "fc8") for p in ("weight", "bias")}
    assert store.exists(layout.progress_path(key))
    assert store.list(layout.checkpoint_prefix(key)) == []  # dropped once the result is committed


def test_base_row_names_the_sha256_of_the_weights_file_it_names(tmp_path):
    store = _store(tmp_path)
    row = trial.run_trial(SETTINGS, store)
    key, sha = SETTINGS.key, row["weights_sha256"]
    assert records.read_result(store, key)["weights_sha256"] == sha
    assert records.read_results(store).column("weights_sha256").to_pylist() == [sha]
    path = layout.base_weights_path(key, sha)
    assert path == f"bases/{key}/model-{sha}.safetensors"
    assert store.list(layout.base_weights_prefix(key)) == [path]
    assert _sha256(store.read_bytes(path)) == sha
    assert _same_state(trial.load_base_weights(store, key), _state(store, key))


def test_interrupted_and_resumed_equals_uninterrupted_bitwise(tmp_path):
    whole = _store(tmp_path, "whole")
    expected = trial.run_trial(SETTINGS, whole)
    split = _store(tmp_path, "split")
    with pytest.raises(training.TrainingInterrupted):
        trial.run_trial(SETTINGS, split, stop_after=10)  # checkpoint at 8, steps 9-10 lost
    assert records.read_result(split, SETTINGS.key) is None
    reports = []
    resumed = trial.run_trial(SETTINGS, split, report=reports.append)
    assert [r["step"] for r in reports] == [9, 12, 15]  # resumed at the step-8 checkpoint
    assert _checkpoint_steps_fit(reports, [8, 12, 15], 8)
    assert _same_state(_state(split, SETTINGS.key), _state(whole, SETTINGS.key))
    assert _curve(split, SETTINGS.key) == _curve(whole, SETTINGS.key)
    assert (resumed["top1_final"], resumed["top1_paper"], resumed["steps"]) == \
        (expected["top1_final"], expected["top1_paper"], expected["steps"])


class _SlowCheckpointStore:
    """A local store whose checkpoint uploads take `delay` seconds (like a far S3) or fail at `fail_step`."""

    def __init__(self, inner, delay=0.0, fail_step=None):
        self.inner, self.delay, self.fail_step, self.threads = inner, delay, fail_step, set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write_bytes(self, path, data):
        if "/ckpt/" in path and path.endswith(".pt"):
            import threading
            import time
            self.threads.add(threading.current_thread().name)
            if self.fail_step is not None and path.endswith(f"step-{self.fail_step:09d}.pt"):
                raise st.StoreError(f"upload of {path} failed")
            time.sleep(self.delay)
        return self.inner.write_bytes(path, data)


def test_checkpoints_upload_off_the_training_thread_and_results_stay_bitwise_equal(tmp_path):
    expected = trial.run_trial(SETTINGS, _store(tmp_path, "plain"))
    slow = _SlowCheckpointStore(_store(tmp_path, "slow"), delay=0.2)
    reports = []
    row = trial.run_trial(SETTINGS, slow, report=reports.append)
    assert all(name.startswith("store-writer-") for name in slow.threads) and slow.threads
    assert _same_state(_state(slow.inner, SETTINGS.key), _state(_store(tmp_path, "plain"), SETTINGS.key))
    assert (row["top1_final"], row["top1_paper"]) == (expected["top1_final"], expected["top1_paper"])
    assert records.load_latest_checkpoint(slow.inner, SETTINGS.key) is None  # pruned after the commit


def test_a_failed_checkpoint_upload_fails_the_training_with_its_error(tmp_path):
    store = _SlowCheckpointStore(_store(tmp_path), fail_step=8)
    with pytest.raises(st.StoreError, match="upload of .*step-000000008.pt failed"):
        trial.run_trial(SETTINGS, store)
    assert records.read_result(store.inner, SETTINGS.key) is None
    assert records.load_latest_checkpoint(store.inner, SETTINGS.key)[0] == 4  # only complete checkpoints


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    whole = _store(tmp_path, "whole")
    trial.run_trial(SETTINGS, whole)
    split, key = _store(tmp_path, "split"), SETTINGS.key
    with pytest.raises(training.TrainingInterrupted):
        trial.run_trial(SETTINGS, split, stop_after=12)  # checkpoints at 8 and 12
    newest = f"{layout.checkpoint_prefix(key)}/step-{12:09d}.pt"
    blob = bytearray(split.read_bytes(newest))
    blob[len(blob) // 2] ^= 0xFF
    split.write_bytes(newest, bytes(blob))
    assert records.load_latest_checkpoint(split, key)[0] == 8
    reports = []
    trial.run_trial(SETTINGS, split, report=reports.append)
    assert [r["step"] for r in reports] == [9, 12, 15]
    assert _same_state(_state(split, key), _state(whole, key))
    assert _curve(split, key) == _curve(whole, key)


def test_second_run_returns_the_committed_row_without_training(tmp_path, monkeypatch):
    calls = []
    real_train = trial.train
    monkeypatch.setattr(trial, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    store = _store(tmp_path)
    first = trial.run_trial(SETTINGS, store)
    second = trial.run_trial(SETTINGS, store)
    assert len(calls) == 1
    assert {k: second[k] for k in ("key", "top1_final", "top1_paper", "steps", "wall_seconds")} == \
        {k: first[k] for k in ("key", "top1_final", "top1_paper", "steps", "wall_seconds")}


def test_transfer_copies_the_committed_base_and_keeps_frozen_layers(tmp_path, monkeypatch):
    store = _store(tmp_path)
    trial.run_trial(SETTINGS, store)
    base = _state(store, SETTINGS.key)
    transfer = planned_settings("AnB n=3 random:0 s0", dataset="tiny-test", train=TRAIN)
    assert transfer.base_key == SETTINGS.key
    captured = {}
    real_train = trial.train

    def spy(model, *a, **k):
        outcome = real_train(model, *a, **k)
        captured.update(outcome.state_dict)
        return outcome
    monkeypatch.setattr(trial, "train", spy)
    row = trial.run_trial(transfer, store)
    assert row["treatment"] == "transfer" and row["base_key"] == SETTINGS.key and row["n"] == 3
    for name, value in captured.items():
        assert torch.equal(value, base[name]) == name.startswith(("conv1", "conv2", "conv3")), name
    assert row["weights_sha256"] is None and records.read_result(store, transfer.key)["weights_sha256"] is None
    assert store.list(layout.base_weights_prefix(transfer.key)) == []  # only bases publish weights


def test_rerun_base_with_other_weights_names_its_own_and_dependents_load_them(tmp_path, monkeypatch):
    """On a GPU two attempts of a base train different bytes. Attempt A commits its weights and dies
    before its row; attempt B's row must name B's weights, and a dependent must load B's, not A's."""
    store, key = _store(tmp_path), SETTINGS.key
    real_train, trained = trial.train, []

    def gpu_like(*a, **k):  # A's weights differ from what B will train from the same checkpoints
        outcome = real_train(*a, **k)
        outcome.state_dict["fc8.bias"] = outcome.state_dict["fc8.bias"] + 1000.0
        return outcome

    def dies(store_, row):
        raise RuntimeError("attempt A died before its row")
    with monkeypatch.context() as m:
        m.setattr(trial, "train", gpu_like)
        m.setattr(records, "commit_result", dies)
        with pytest.raises(RuntimeError, match="attempt A died"):
            trial.run_trial(SETTINGS, store)
    (a_path,) = store.list(layout.base_weights_prefix(key))
    a_bytes = store.read_bytes(a_path)
    assert a_path == layout.base_weights_path(key, _sha256(a_bytes)) and records.read_result(store, key) is None

    monkeypatch.setattr(trial, "train", lambda *a, **k: trained.append(real_train(*a, **k)) or trained[-1])
    row = trial.run_trial(SETTINGS, store)
    b_path = layout.base_weights_path(key, row["weights_sha256"])
    b_bytes = store.read_bytes(b_path)
    assert _sha256(b_bytes) == row["weights_sha256"] != _sha256(a_bytes)
    assert records.read_result(store, key)["weights_sha256"] == row["weights_sha256"]
    assert store.list(layout.base_weights_prefix(key)) == [b_path]  # A's orphan is dropped once B's row is in
    b_state = safetensors.torch.load(b_bytes)
    assert _same_state(b_state, trained[0].state_dict)

    loaded = []
    real_transplant = trial.transplant
    monkeypatch.setattr(trial, "transplant", lambda model, base, *a: loaded.append(base) or
                        real_transplant(model, base, *a))
    dependent = planned_settings("AnB n=7 random:0 s0", dataset="tiny-test", train=TRAIN)
    assert dependent.base_key == key
    trial.run_trial(dependent, store)
    assert _same_state(loaded[0], b_state)
    assert torch.all(loaded[0]["fc8.bias"].abs() < 100)  # not A's marker


def test_dependent_refuses_weights_whose_bytes_differ_from_the_rows_sha256(tmp_path):
    store, key = _store(tmp_path), SETTINGS.key
    trial.run_trial(SETTINGS, store)
    path, state = _weights_path(store, key), _state(store, key)
    other = safetensors.torch.save({**state, "fc8.bias": state["fc8.bias"] + 1.0})  # valid, but not the row's
    store.write_bytes(path, other)
    transfer = planned_settings("AnB n=3 random:0 s0", dataset="tiny-test", train=TRAIN)
    with pytest.raises(ValueError, match=f"base weights {path} in store .* hash to sha256 "
                                         f"{_sha256(other)}, not the {path[-76:-12]} that "
                                         f"results/{key}.parquet names"):
        trial.run_trial(transfer, store)
    assert records.read_result(store, transfer.key) is None


def test_missing_base_weights_is_a_clear_error(tmp_path):
    transfer = dataclasses.replace(planned_settings("AnA n=2 random:0 s0", dataset="tiny-test", train=TRAIN),
                                   base_key="0000111122223333")
    with pytest.raises(FileNotFoundError, match="base result results/0000111122223333.parquet not found"):
        trial.run_trial(transfer, _store(tmp_path))


def test_base_weights_missing_behind_a_committed_row_is_a_clear_error(tmp_path):
    store = _store(tmp_path)
    trial.run_trial(SETTINGS, store)
    path = _weights_path(store, SETTINGS.key)
    store.delete(path)
    transfer = planned_settings("AnB n=3 random:0 s0", dataset="tiny-test", train=TRAIN)
    with pytest.raises(FileNotFoundError, match=f"base weights {path} not found in store .*, though "
                                                f"results/{SETTINGS.key}.parquet names them"):
        trial.run_trial(transfer, store)


def test_row_written_before_weights_sha256_reads_null_and_is_refused_by_dependents(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store, key = _store(tmp_path), SETTINGS.key
    trial.run_trial(SETTINGS, store)
    row = records.read_result(store, key)
    old_schema = pa.schema([f for f in records.RESULT_SCHEMA if f.name != "weights_sha256"])
    old = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{k: row[k] for k in old_schema.names}], schema=old_schema), old)
    store.delete(layout.result_path(key))
    assert store.commit_bytes(layout.result_path(key), old.getvalue())  # as an older version committed it
    assert records.read_result(store, key) == {**row, "weights_sha256": None}
    assert records.read_results(store).to_pylist() == [{**row, "weights_sha256": None}]
    transfer = planned_settings("AnB n=3 random:0 s0", dataset="tiny-test", train=TRAIN)
    with pytest.raises(ValueError, match=f"base result results/{key}.parquet in store .* names no weights"):
        trial.run_trial(transfer, store)


def test_inconsistent_treatments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="needs the base_key"):
        trial.run_trial(dataclasses.replace(SETTINGS, treatment="transfer", n=2), _store(tmp_path))
    with pytest.raises(ValueError, match="a base trial has n=0"):
        trial.run_trial(dataclasses.replace(SETTINGS, n=2), _store(tmp_path))


class _Planted:
    """A class no weights_only load accepts: what a store writer would pickle to run code."""


def test_a_checkpoint_that_does_not_load_is_skipped_like_a_corrupt_one(tmp_path, caplog):
    whole = _store(tmp_path, "whole")
    trial.run_trial(SETTINGS, whole)
    split, key = _store(tmp_path, "split"), SETTINGS.key
    with pytest.raises(training.TrainingInterrupted):
        trial.run_trial(SETTINGS, split, stop_after=12)  # checkpoints at 8 and 12
    planted = io.BytesIO()
    torch.save({"key": key, "model": _Planted()}, planted)
    records.save_checkpoint(split, key, 12, planted.getvalue())  # with a matching sha256 sidecar
    reports = []
    trial.run_trial(SETTINGS, split, report=reports.append)
    assert [r["step"] for r in reports] == [9, 12, 15]  # resumed from step 8, not blocked for good
    assert _same_state(_state(split, key), _state(whole, key))
    warnings = [r.getMessage() for r in caplog.records if "does not load" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].endswith("(UnpicklingError); trying the previous one"), warnings
    assert "weights_only" not in warnings[0]


def test_a_training_whose_loss_is_not_a_number_fails_and_commits_nothing(tmp_path):
    store = _store(tmp_path)
    diverging = dataclasses.replace(SETTINGS, train=dataclasses.replace(SETTINGS.train, lr=1e30, warmup_fraction=0.0))
    with pytest.raises(training.TrainingDiverged, match=r"^training diverged: the mean loss over steps 1-3 is nan "
                                                         r"\(lr 9.56773e\+29 at step 3\); lower train.lr, or "
                                                         r"lengthen train.warmup_fraction$"):
        trial.run_trial(diverging, store)
    assert records.read_result(store, diverging.key) is None
