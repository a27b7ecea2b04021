"""The stored spec is input from a shared place: it never decides where signed requests go, and the
cluster's driver refuses one that is not what was submitted."""
import pytest
import yaml

from orchestrator.cli import main
from orchestrator.errors import UsageError
from orchestrator.execution.driver_job import driver_entrypoint, spec_digest
from orchestrator.sources import StoredSpecCheck, record_spec, stored_sweep
from orchestrator.spec import parse_spec
from orchestrator.trust import record_path, recorded, spec_sha256
from sweepcore.layout import spec_path
from sweepcore.store import open_store

RAW = {"name": "src", "dataset": "fashion-animals", "splits": ["random:0"], "treatments": ["base"],
       "train": {"epochs": 1}}


def _recorded(tmp_path, **over):
    spec = parse_spec({**RAW, "store": str(tmp_path / "store"), **over})
    store = open_store(spec.store)
    record_spec(spec, store)
    return spec, store


def test_the_endpoint_is_never_written_and_never_read_back(tmp_path):
    spec, store = _recorded(tmp_path, endpoint="http://127.0.0.1:9000")
    assert yaml.safe_load(store.read_bytes(spec_path("src")))["endpoint"] is None
    hostile = {**yaml.safe_load(store.read_bytes(spec_path("src"))), "endpoint": "https://collector.example"}
    store.write_bytes(spec_path("src"), yaml.safe_dump(hostile).encode())
    assert stored_sweep("src", spec.store, None).spec.endpoint is None            # env / AWS default decide
    assert stored_sweep("src", spec.store, "http://mine:9000").spec.endpoint == "http://mine:9000"


def _tamper(store, **fields):
    raw = yaml.safe_load(store.read_bytes(spec_path("src")))
    for dotted, value in fields.items():
        section, _, name = dotted.partition("__")
        if name:
            raw[section] = {**(raw.get(section) or {}), name: value}
        else:
            raw[section] = value
    store.write_bytes(spec_path("src"), yaml.safe_dump(raw).encode())


def test_the_driver_refuses_a_stored_spec_that_is_not_the_one_submitted(tmp_path, capsys):
    spec, store = _recorded(tmp_path)
    submitted = spec_sha256(stored_sweep("src", spec.store, None).spec)
    assert len(submitted) == 64 and spec_digest(spec) == submitted_id(spec)  # ids stay 10 hex, unchanged
    assert f"--spec-digest {submitted}" in driver_entrypoint(stored_sweep("src", spec.store, None).spec)
    _tamper(store, retries=99)
    code = main(["resume", "src", "--store", spec.store, "--spec-digest", submitted])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "is not the one submitted (the digest the job was submitted with)" in err and "refusing it" in err
    assert not store.list("sweeps/src/lease")  # refused before anything else: no lease, no Ray


def submitted_id(spec):
    from orchestrator.trust import spec_id
    return spec_id(spec)


def test_a_short_digest_is_not_an_integrity_check(tmp_path, capsys):
    spec, _ = _recorded(tmp_path)
    code = main(["resume", "src", "--store", spec.store, "--spec-digest", spec_digest(spec)])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"transfer-sweep: error: --spec-digest {spec_digest(spec)}: expected the spec's "
                                 "full sha256 (64 lowercase hex digits, what `submit` puts in the job)\n")


def test_resume_refuses_a_stored_spec_changed_since_it_was_submitted_naming_the_fields(tmp_path, capsys):
    spec, store = _recorded(tmp_path)
    before = store.read_bytes(spec_path("src"))
    _tamper(store, mlflow={"tracking_uri": "http://127.0.0.1:9/\x1b[2J", "experiment": "x"}, retries=7)
    tampered = store.read_bytes(spec_path("src"))
    assert tampered != before
    code = main(["resume", "src", "--store", spec.store])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "\x1b" not in err, err
    assert ('changed: mlflow.experiment: (unset) -> "x"; mlflow.tracking_uri: (unset) -> '
            '"http://127.0.0.1:9/\\u001b[2J"; retries: 2 -> 7; refusing it') in err, err
    assert "give your spec file (`transfer-sweep resume SPEC.yaml`)" in err
    assert store.read_bytes(spec_path("src")) == tampered  # nothing written back, no lease taken
    assert not store.list("sweeps/src/lease")


def test_resume_without_a_record_refuses_unless_told_to_trust_the_store(tmp_path, capsys, monkeypatch):
    spec, store = _recorded(tmp_path)
    monkeypatch.setenv("TRANSFER_SWEEP_STATE", str(tmp_path / "another-machine"))
    code = main(["resume", "src", "--store", spec.store])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "this machine has no record of submitting sweep src to store" in err
    assert "--trust-stored-spec to run what the store holds" in err
    # read-only commands go on, saying the spec is unverified
    trusted = stored_sweep("src", spec.store, None, StoredSpecCheck(trust=True)).spec
    assert stored_sweep("src", spec.store, None).spec == trusted
    err = capsys.readouterr().err
    assert "note: the stored spec of sweep src is not verified" in err
    assert "trusting the stored spec of sweep src (no digest to check it against): store=" in err


def test_a_trusted_stored_spec_may_name_only_an_installed_factory(tmp_path, capsys, monkeypatch):
    spec, store = _recorded(tmp_path)
    monkeypatch.setenv("TRANSFER_SWEEP_STATE", str(tmp_path / "another-machine"))
    raw = yaml.safe_load(store.read_bytes(spec_path("src")))
    raw["model"] = {"factory": "store.evil:build", "cut_points": ["a", "b"]}
    store.write_bytes(spec_path("src"), yaml.safe_dump(raw).encode())
    code = main(["resume", "src", "--store", spec.store, "--trust-stored-spec"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert ("model.factory store.evil:build is not declared by an installed package (entry point group "
            "transfer_sweep.factories)") in err


def test_the_local_record_is_per_store_and_sweep_and_the_latest_submission_wins(tmp_path):
    spec, store = _recorded(tmp_path)
    first = recorded(spec.store, "src")
    assert first is not None and first.sha256 == spec_sha256(spec)
    assert recorded(spec.store, "other") is None and recorded(spec.store + "-2", "src") is None
    changed = spec.model_copy(update={"retries": 5})
    record_spec(changed, store)
    assert recorded(spec.store, "src").sha256 == spec_sha256(changed) != first.sha256
    assert stored_sweep("src", spec.store, None, StoredSpecCheck(runs=True)).spec == changed
    path = record_path(spec.store, "src")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("{not json")
    with pytest.raises(UsageError, match="the local record of sweep src is unreadable"):
        stored_sweep("src", spec.store, None).spec
