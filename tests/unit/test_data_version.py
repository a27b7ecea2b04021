"""The prepared data's version is part of every trial's key and row; workers read exactly that version
and check content hashes when they read, not only when they build."""
import dataclasses

import pytest

from orchestrator.errors import UsageError
from orchestrator.sources import with_data_version
from orchestrator.spec import parse_spec
from orchestrator.spec.plan import UNRESOLVED, make_plan
from sweepcore.layout import data_pointer_path
from sweepcore.store import open_store
from sweepcore.vocabulary import DATASETS
from workers import data

RAW = {"name": "dv", "dataset": "fashion-animals", "splits": ["random:0"], "treatments": ["base"],
       "train": {"epochs": 1}}


def test_the_data_version_is_in_every_key():
    pinned = make_plan(parse_spec(RAW)).trials[0].settings
    worker_version = data.dataset_spec("fashion-animals").content_hash()
    assert pinned.data == DATASETS["fashion-animals"].pinned_version == worker_version
    other = make_plan(parse_spec({**RAW, "data_version": "0123456789abcdef"})).trials[0].settings
    assert other.data == "0123456789abcdef" and other.key != pinned.key
    assert dataclasses.replace(pinned, data=other.data).with_key().key == other.key


def test_imagenet_reads_the_version_prepared_in_the_store_and_the_run_records_it(tmp_path):
    spec = parse_spec({**RAW, "dataset": "imagenet", "store": str(tmp_path / "store")})
    assert make_plan(spec).trials[0].settings.data == UNRESOLVED  # `plan` offline: not known yet
    store = open_store(spec.store)
    with pytest.raises(UsageError, match="imagenet is not prepared in store .*: run `transfer-sweep data prepare"):
        with_data_version(spec, store)
    store.write_bytes(data_pointer_path("imagenet"), b"../../etc/passwd")
    with pytest.raises(UsageError, match="LATEST: '../../etc/passwd' is not a dataset hash"):
        with_data_version(spec, store)
    store.write_bytes(data_pointer_path("imagenet"), b"c2c365e31490f6c3\n")
    resolved = with_data_version(spec, store)
    assert resolved.data_version == "c2c365e31490f6c3"
    assert make_plan(resolved).trials[0].settings.data == "c2c365e31490f6c3"


def test_a_worker_refuses_to_train_on_another_version(tmp_path):
    with pytest.raises(ValueError, match="the trial reads fashion-animals version 0123456789abcdef, but this "
                                         "worker's code prepares version"):
        data.load_half("fashion-animals", "random:0", "A", None, "0123456789abcdef")


def test_prepared_arrays_are_checked_against_the_pinned_content_when_read(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "cache"))
    data.clear_memo()
    spec = data.dataset_spec("fashion-animals")
    real = data.prepared_arrays("fashion-animals")  # built once, cached under its version
    forged = {**real, "test_y": real["test_y"][::-1].copy()}  # a cache whose manifest matches its content
    folder = tmp_path / "cache" / "datasets" / "fashion-animals" / spec.content_hash()
    data._write_local(folder, {n: data._npy_bytes(forged[n]) for n in data.ARRAY_NAMES}, data._manifest(forged))
    data.clear_memo()
    with pytest.raises(ValueError, match="prepared test_y has sha256 .* expected 8a7a104d8e9f0ffb"):
        data.prepared_arrays("fashion-animals")
    data.clear_memo()
