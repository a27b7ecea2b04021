"""`transfer-sweep submit`'s pure decisions: one driver per sweep, and the entrypoint a driver job
resumes the sweep with (against a real Ray head: tests/integration/test_submit.py)."""
from __future__ import annotations

from types import SimpleNamespace

from sweep_helpers import tiny_spec

from orchestrator.execution.driver_job import (
    DRIVER_ENV,
    META_SPEC,
    META_STORE,
    META_SWEEP,
    decide,
    driver_entrypoint,
    spec_digest,
    submission_base,
)
from orchestrator.spec import load_spec
from orchestrator.trust import spec_sha256


def _spec(spec_path, store_dir, *overrides):
    spec = load_spec(spec_path, overrides)
    return spec.model_copy(update={"store": str(store_dir)})


# --- pure decisions ---------------------------------------------------------------------------------
def _job(sid, status, spec, start, **meta):
    metadata = {META_SWEEP: spec.name, META_SPEC: spec_digest(spec), META_STORE: spec.store, **meta}
    return SimpleNamespace(submission_id=sid, status=status, metadata=metadata, start_time=start)


def test_decide_one_driver_per_sweep(tmp_path):
    spec = _spec(tiny_spec(tmp_path, "decide"), tmp_path / "store")
    other = _spec(tiny_spec(tmp_path, "decide"), tmp_path / "store", "train.iterations=13")
    base = submission_base(spec)
    assert base.startswith("transfer-sweep-decide-") and base != submission_base(other)
    assert decide([], spec).action == "submit" and decide([], spec).submission_id == base
    running = _job(base, "RUNNING", spec, 1)
    assert (decide([running], spec).action, decide([running], spec).submission_id) == ("running", base)
    # ended: a new attempt under a new id (the Jobs API never reuses one)
    ended = [_job(base, "FAILED", spec, 1), _job(f"{base}-2", "STOPPED", spec, 2)]
    again = decide(ended, spec)
    assert (again.action, again.submission_id, again.previous.submission_id) == ("submit", f"{base}-3", f"{base}-2")
    # another spec of the same sweep and store is running: refuse; in another store: independent
    assert decide([running], other).action == "conflict"
    elsewhere = _job(base, "RUNNING", spec, 1, **{META_STORE: "/elsewhere"})
    assert decide([elsewhere], other).action == "submit"


def test_driver_entrypoint_resumes_from_the_store(tmp_path, monkeypatch):
    spec = _spec(tiny_spec(tmp_path, "entry"), "/data/my store").model_copy(update={"endpoint": "http://s3:8333"})
    monkeypatch.delenv(DRIVER_ENV, raising=False)
    assert driver_entrypoint(spec) == ("transfer-sweep resume entry --store '/data/my store' --endpoint http://s3:8333 "
                                       f"--spec-digest {spec_sha256(spec)}")
    monkeypatch.setenv(DRIVER_ENV, "/venv/bin/python -m orchestrator.cli")
    assert driver_entrypoint(spec).startswith("/venv/bin/python -m orchestrator.cli resume entry ")
