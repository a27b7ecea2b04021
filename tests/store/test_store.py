"""The store, on both backends: a local folder and a real S3 server (SeaweedFS, tests/s3_server.py)
(what needs no server: tests/unit/test_store_local.py)."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import pickle
import socket
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from result_rows import WHEN, make_row

from sweepcore import records
from sweepcore import store as st
from sweepcore.store import StoreError, open_store

try:
    from tests.s3_server import use_server_env
except ImportError:
    from s3_server import use_server_env

# docs/contracts.md, written out again on purpose: the store's schema must match the document
CONTRACT_COLUMNS = [
    ("sweep", "string"), ("key", "string"), ("name", "string"), ("dataset", "string"),
    ("split", "string"), ("source_half", "string"), ("target_half", "string"), ("n", "int64"),
    ("treatment", "string"), ("seed", "int64"), ("base_key", "string"), ("top1_final", "double"),
    ("top1_paper", "double"), ("steps", "int64"), ("wall_seconds", "double"), ("status", "string"),
    ("error", "string"), ("protocol", "int64"), ("finished_at", "timestamp[us, tz=UTC]"),
    ("settings_json", "string"), ("weights_sha256", "string"), ("data_version", "string"),
    ("final_loss", "double"), ("state_sha256", "string"), ("environment_json", "string"),
    ("rng_root", "string"),
]


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch):
    """The same store API on a fresh local folder or a fresh S3 bucket."""
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    server = request.getfixturevalue("s3_server")
    use_server_env(server, monkeypatch)
    return open_store(f"s3://{server.make_bucket()}/root")


@pytest.fixture
def s3(s3_server, monkeypatch):
    use_server_env(s3_server, monkeypatch)
    return s3_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- bytes ------------------------------------------------------------------------------------
def test_write_read_exists_list_delete(store):
    assert store.list("") == []
    assert not store.exists("a/one.bin")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a/one.bin")
    store.write_bytes("a/one.bin", b"1")
    store.write_bytes("a/one.bin", b"first replaced")
    store.write_bytes("a/b/two.bin", b"2")
    store.write_bytes("ab/three.bin", b"3")
    assert store.read_bytes("a/one.bin") == b"first replaced"
    assert store.exists("a/one.bin")
    assert store.list("a") == ["a/b/two.bin", "a/one.bin"]  # "ab/" is not under "a"
    assert store.list("") == ["a/b/two.bin", "a/one.bin", "ab/three.bin"]
    store.delete("a/one.bin")
    store.delete("a/one.bin")  # absent: no error
    assert not store.exists("a/one.bin")
    assert store.list("a") == ["a/b/two.bin"]
    with pytest.raises(ValueError):
        store.write_bytes("../escape", b"x")


def test_commit_is_create_only(store):
    assert store.commit_bytes("results/x.bin", b"first") is True
    assert store.commit_bytes("results/x.bin", b"second") is False
    assert store.read_bytes("results/x.bin") == b"first"
    assert store.list("results") == ["results/x.bin"]  # no temporary files left behind


def test_racing_committers_have_exactly_one_winner(store):
    store.write_bytes("warm-up.bin", b"warm")  # SeaweedFS: a new bucket's first write takes longer
    barrier, outcomes = threading.Barrier(8), {}

    def commit(i):
        barrier.wait()
        outcomes[i] = store.commit_bytes("race/result.bin", f"writer {i}".encode())

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in outcomes.items() if won]
    assert len(outcomes) == 8 and len(winners) == 1
    assert store.read_bytes("race/result.bin") == f"writer {winners[0]}".encode()
    assert store.list("race") == ["race/result.bin"]


def test_store_pickles_without_secrets(store):
    """Ray ships the store to workers: it must pickle, carry no credential, and still work."""
    blob = pickle.dumps(store)
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        if os.environ.get(name):
            assert os.environ[name].encode() not in blob
    copy = pickle.loads(blob)
    copy.write_bytes("p.bin", b"via copy")
    assert store.read_bytes("p.bin") == b"via copy"


# --- checkpoints ------------------------------------------------------------------------------
def test_checkpoints_are_pruned_and_latest_loaded(store):
    assert records.load_latest_checkpoint(store, "k1") is None
    for step in (10, 20, 30):
        records.save_checkpoint(store, "k1", step, f"state {step}".encode(), keep=2)
    assert store.list("trials/k1") == [
        "trials/k1/ckpt/step-000000020.pt", "trials/k1/ckpt/step-000000020.pt.sha256",
        "trials/k1/ckpt/step-000000030.pt", "trials/k1/ckpt/step-000000030.pt.sha256"]
    assert store.read_bytes("trials/k1/ckpt/step-000000030.pt.sha256").decode() == (
        hashlib.sha256(b"state 30").hexdigest())
    assert records.load_latest_checkpoint(store, "k1") == (30, b"state 30")


@pytest.mark.parametrize("damage", ["flipped", "truncated", "no sidecar"])
def test_damaged_newest_checkpoint_falls_back_with_warning(store, caplog, damage):
    data = bytes(range(256)) * 40
    records.save_checkpoint(store, "k2", 100, b"older " + data)
    records.save_checkpoint(store, "k2", 200, data)
    newest = "trials/k2/ckpt/step-000000200.pt"
    if damage == "flipped":
        store.write_bytes(newest, data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:])
    elif damage == "truncated":
        store.write_bytes(newest, data[: len(data) // 2])
    else:
        store.delete(newest + ".sha256")
    with caplog.at_level(logging.WARNING, logger="orchestrator.records"):
        assert records.load_latest_checkpoint(store, "k2") == (100, b"older " + data)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "step-000000200.pt" in warnings[0]


def test_resaving_an_older_step_drops_newer_leftovers(store):
    for step in (1, 2, 3):
        records.save_checkpoint(store, "k3", step, b"s%d" % step, keep=1)
    records.save_checkpoint(store, "k3", 2, b"again", keep=1)  # resumed from 2 after 3 went bad
    assert store.list("trials/k3") == ["trials/k3/ckpt/step-000000002.pt",
                                       "trials/k3/ckpt/step-000000002.pt.sha256"]
    assert records.load_latest_checkpoint(store, "k3") == (2, b"again")


# --- results ----------------------------------------------------------------------------------
def test_commit_result_once(store):
    assert records.commit_result(store, make_row("aaaa", top1_final=0.5)) is True
    assert records.commit_result(store, make_row("aaaa", top1_final=0.9)) is False
    table = records.read_results(store)
    assert table.num_rows == 1 and table.column("top1_final").to_pylist() == [0.5]
    assert records.read_result(store, "aaaa") == make_row("aaaa", top1_final=0.5)
    assert records.read_result(store, "bbbb") is None


def test_read_results_schema_rows_and_keys(store):
    assert records.read_results(store).num_rows == 0
    assert [(f.name, str(f.type)) for f in records.read_results(store).schema] == CONTRACT_COLUMNS
    rows = [make_row("k3", n=3), make_row("k1", n=1, source_half=None, base_key=None,
                                         treatment="random"), make_row("k2", n=2)]
    assert [records.commit_result(store, r) for r in rows] == [True, True, True]
    assert records.committed_keys(store) == {"k1", "k2", "k3"}
    table = records.read_results(store)
    assert [(f.name, str(f.type)) for f in table.schema] == CONTRACT_COLUMNS
    assert table.to_pylist() == sorted(rows, key=lambda r: r["key"])
    assert records.read_results(store, {"k3", "k1", "absent"}).to_pylist() == [rows[1], rows[0]]


def test_commit_result_rejects_bad_rows_and_writes_nothing(store):
    incomplete = make_row("kk")
    del incomplete["steps"]
    with pytest.raises(ValueError, match="steps"):
        records.commit_result(store, incomplete)
    with pytest.raises(ValueError, match="unknown columns \\['extra'\\]"):
        records.commit_result(store, make_row("kk", extra=1))
    with pytest.raises(ValueError, match="'n'"):
        records.commit_result(store, make_row("kk", n="three"))
    with pytest.raises(ValueError, match="timezone"):
        records.commit_result(store, make_row("kk", finished_at=WHEN.replace(tzinfo=None)))
    with pytest.raises(ValueError, match="'status' must not be null"):
        records.commit_result(store, make_row("kk", status=None))
    assert store.list("") == []


def test_results_readable_directly_by_users(store):
    """pandas (local) / pyarrow with an S3 filesystem (s3) read the flat results folder."""
    rows = [make_row("k1", n=1), make_row("k2", n=2)]
    for row in rows:
        records.commit_result(store, row)
    if store.uri().startswith("s3://"):
        import pyarrow.fs as pafs
        fs, path = pafs.FileSystem.from_uri(store.uri("results"))  # endpoint from AWS_ENDPOINT_URL
        table = pq.read_table(path, filesystem=fs)
        fs2, path2 = store.filesystem("results")
        assert pq.read_table(path2, filesystem=fs2).num_rows == 2
    else:
        import pandas
        table = pa.Table.from_pandas(pandas.read_parquet(store.uri("results")), preserve_index=False)
    assert sorted(table.to_pylist(), key=lambda r: r["key"]) == rows


def test_curve_progress_and_failures(store):
    curve = [{"step": 25, "top1": 0.5, "loss": 1.25, "lr": 0.05, "seconds": 1.5},
             {"key": "k1", "step": 50, "top1": 0.75, "loss": 0.5, "lr": 0.025, "seconds": 3.0}]
    assert records.commit_curve(store, "k1", curve) is True
    assert records.commit_curve(store, "k1", curve[:1]) is False
    assert records.read_curve(store, "k1").to_pylist() == [{"key": "k1", **curve[0]}, curve[1]]
    with pytest.raises(ValueError):
        records.commit_curve(store, "k2", [{**curve[0], "key": "other"}])
    records.write_progress(store, "k1", {"step": 10, "total_steps": 100})
    records.write_progress(store, "k1", {"step": 20, "total_steps": 100})
    assert records.read_progress(store, "k1") == {"step": 20, "total_steps": 100}
    first = records.record_failure(store, "k1", "RuntimeError: boom", "Traceback ...", "ray logs: w1")
    second = records.record_failure(store, "k1", "OSError: gone", "Traceback ...", "ray logs: w2")
    assert first != second and first.startswith("trials/k1/failures/") and first.endswith(".json")
    assert store.list("trials/k1/failures") == sorted([first, second])
    failures = records.read_failures(store, "k1")
    assert [r["error"] for r in failures] == ["RuntimeError: boom", "OSError: gone"]
    assert failures[0]["where"] == "ray logs: w1" and failures[0]["traceback"] == "Traceback ..."
    assert dt.datetime.fromisoformat(failures[0]["at"]).tzinfo is not None


def test_attempts_record_pid_and_resume_step(store):
    first = records.record_attempt(store, "k1")
    records.save_checkpoint(store, "k1", 40, b"weights")
    second = records.record_attempt(store, "k1")
    assert store.list("trials/k1/attempts") == [first, second]
    attempts = records.read_attempts(store, "k1")
    assert [a["resume_step"] for a in attempts] == [0, 40]
    assert [a["pid"] for a in attempts] == [os.getpid(), os.getpid()]
    assert dt.datetime.fromisoformat(attempts[0]["at"]) <= dt.datetime.fromisoformat(attempts[1]["at"])


def test_no_credential_value_is_ever_written(store, monkeypatch, tmp_path, request):
    if not os.environ.get("AWS_SECRET_ACCESS_KEY"):  # local backend: any secret in the env counts
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local-test-secret-value")
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    with pytest.raises(StoreError, match="AWS_SECRET_ACCESS_KEY") as info:
        store.write_bytes("leak.bin", b"prefix " + secret.encode())
    assert secret not in str(info.value)
    with pytest.raises(StoreError):
        records.commit_result(store, make_row("k1", settings_json='{"key": "%s"}' % secret))
    path = records.record_failure(store, "k1", f"failed with {secret}", f"env: {secret}", "log")
    assert records.read_failures(store, "k1")[0]["error"] == "failed with ***"
    records.save_checkpoint(store, "k1", 1, b"weights")
    records.commit_result(store, make_row("k1"))
    records.commit_curve(store, "k1", [{"step": 1, "top1": 0.1, "loss": 2.0, "lr": 0.1, "seconds": 1.0}])
    records.write_progress(store, "k1", {"step": 1})
    assert not store.exists("leak.bin") and store.exists(path)
    values = [os.environ[k].encode() for k in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
              if os.environ.get(k)]
    if store.uri().startswith("s3://"):  # every object of every test's bucket so far
        objects = request.getfixturevalue("s3_server").objects()
    else:  # every file, temporary ones included
        objects = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert len(objects) >= 6
    assert [name for name, data in objects.items() if any(v in data for v in values)] == []


def test_s3_wrong_credentials(s3, monkeypatch):
    bucket = s3.make_bucket()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
    with pytest.raises(StoreError, match=f"credentials rejected by {s3.endpoint}") as info:
        open_store(f"s3://{bucket}/root")
    assert "\n" not in str(info.value) and "wrong-secret-value-123" not in str(info.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKUNKNOWN")
    with pytest.raises(StoreError, match="credentials"):
        open_store(f"s3://{bucket}/root")
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_s3_missing_bucket(s3):
    with pytest.raises(StoreError) as info:
        open_store("s3://no-such-bucket-here/root")
    assert str(info.value) == f"bucket 'no-such-bucket-here' does not exist at {s3.endpoint}"
    assert "no-such-bucket-here" not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]


def test_s3_unreachable_endpoint_fails_fast(s3):
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        open_store("s3://bucket/root", endpoint=endpoint)
    assert time.monotonic() - started < 10
    assert endpoint in str(info.value) and "unreachable" in str(info.value)
    assert "\n" not in str(info.value)


def test_s3_endpoint_precedence(s3, monkeypatch):
    bucket = s3.make_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # dead
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)  # wins over AWS_ENDPOINT_URL
    assert open_store(f"s3://{bucket}").list("") == []
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # dead
    assert open_store(f"s3://{bucket}", endpoint=s3.endpoint).list("") == []  # argument wins


def test_s3_gives_up_after_the_retry_budget(s3, monkeypatch, caplog):
    # 4 s, not 1: on a loaded 2-core machine one refused connection (botocore's own retries included)
    # took about 1 s, so a 1 s budget left room for a single retry
    monkeypatch.setenv("TRANSFER_SWEEP_STORE_RETRY_SECONDS", "4")
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = open_store("s3://bucket/root", endpoint=endpoint, check=False)
    with caplog.at_level(logging.WARNING, logger="sweepcore.store"):
        with pytest.raises(StoreError, match="unreachable"):
            store.write_bytes("x.bin", b"x")
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) >= 2 and all(s3.secret_key not in m for m in caplog.messages)


def test_s3_operation_survives_an_outage(s3, caplog):
    store = open_store(f"s3://{s3.make_bucket()}/root")
    store.write_bytes("before.bin", b"before")
    stopped = threading.Event()

    def outage():
        s3.stop()
        stopped.set()
        time.sleep(5)
        s3.start()

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        assert stopped.wait(30)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="sweepcore.store"):
            assert store.commit_bytes("during.bin", b"during") is True
        assert time.monotonic() - started >= 4
    finally:
        thread.join()
    assert store.read_bytes("before.bin") == b"before"
    assert store.read_bytes("during.bin") == b"during"
    retries = [m for m in caplog.messages if "retry" in m]
    assert retries and all(s3.secret_key not in m and s3.access_key not in m for m in retries)


# --- create-only commits proven on open (S3) ---------------------------------------------------
def test_s3_open_proves_create_only_and_leaves_no_probe(s3, monkeypatch):
    """Against the real server: the probe commits twice through commit_bytes' path (created, then
    refused) and is gone afterwards; every checked open proves it again (a command opens its store
    once: orchestrator/sources.py), and an unchecked one does not."""
    bucket = s3.make_bucket()
    commits: list[tuple[str, bool]] = []
    real_commit = st.S3Store._commit

    def spy(self, path, data, budget=None):
        outcome = real_commit(self, path, data, budget)
        commits.append((path, outcome))
        return outcome

    monkeypatch.setattr(st.S3Store, "_commit", spy)
    store = open_store(f"s3://{bucket}/root")
    assert [won for _, won in commits] == [True, False]
    assert commits[0][0] == commits[1][0] and commits[0][0].startswith(st.s3.PROBE_PREFIX)
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert store.list("") == [] and records.committed_keys(store) == set()
    open_store(f"s3://{bucket}/other")
    assert [won for _, won in commits] == [True, False, True, False] and commits[2][0] != commits[0][0]
    open_store(f"s3://{bucket}/root", check=False)  # what a trial process does: no probe
    assert len(commits) == 4 and s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_bounded_read_stops_after_one_byte_more_than_its_limit(store):
    store.write_bytes("sweeps/big/spec.yaml", b"x" * 10_000)
    assert store.read_bytes("sweeps/big/spec.yaml", 100) == b"x" * 101  # more than the limit: too big
    assert store.read_bytes("sweeps/big/spec.yaml", 20_000) == b"x" * 10_000
    assert store.read_bytes("sweeps/big/spec.yaml") == b"x" * 10_000
    with pytest.raises(FileNotFoundError):
        store.read_bytes("sweeps/none/spec.yaml", 100)
