"""The stored spec is input from a shared place: it never decides where signed requests go, and the
cluster's driver refuses one that is not what was submitted."""
import yaml

from orchestrator.cli import main
from orchestrator.driver_job import driver_entrypoint, spec_digest
from orchestrator.spec import parse_spec
from orchestrator.spec_source import record_spec, stored_spec
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
    assert stored_spec("src", spec.store, None).endpoint is None            # env / AWS default decide
    assert stored_spec("src", spec.store, "http://mine:9000").endpoint == "http://mine:9000"


def test_the_driver_refuses_a_stored_spec_that_is_not_the_one_submitted(tmp_path, capsys):
    spec, store = _recorded(tmp_path)
    submitted = spec_digest(stored_spec("src", spec.store, None))
    assert f"--spec-digest {submitted}" in driver_entrypoint(stored_spec("src", spec.store, None))
    changed = {**yaml.safe_load(store.read_bytes(spec_path("src"))), "retries": 99}
    store.write_bytes(spec_path("src"), yaml.safe_dump(changed).encode())
    code = main(["resume", "src", "--store", spec.store, "--spec-digest", submitted])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "refusing to run it" in err
    assert f"not the {submitted} that was submitted" in err
    assert not store.list("sweeps/src/lease")  # refused before anything else: no lease, no Ray
