"""`transfer-sweep logs` and `status --address` without a cluster, the CLI as a process: recorded
failures come from the store (against a real Ray head: tests/integration/test_submit.py)."""
from __future__ import annotations

from ray_cluster import free_port
from sweep_helpers import cli, tiny_spec

from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan
from sweepcore.store import open_store


def _spec(spec_path, store_dir, *overrides):
    spec = load_spec(spec_path, overrides)
    return spec.model_copy(update={"store": str(store_dir)})


def test_logs_without_address_prints_recorded_failures(tmp_path):
    from sweepcore.records import record_failure

    spec_path = tiny_spec(tmp_path, "faillogs")
    store_dir = tmp_path / "store"
    spec = _spec(spec_path, store_dir)
    store = open_store(str(store_dir))
    store.write_bytes("sweeps/faillogs/spec.yaml", spec_path.read_bytes())
    trial = make_plan(spec).trials[0]
    record_failure(store, trial.key, "RuntimeError: [boom] out of memory", "Traceback (most recent call last):\n"
                   "  File \"x.py\", line 1\nRuntimeError: [boom] out of memory", "node 10.0.0.7: /tmp/ray/x")
    proc = cli("logs", "faillogs", "--store", str(store_dir), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"{trial.name} ({trial.key}): RuntimeError: [boom] out of memory" in proc.stdout
    assert "  where: node 10.0.0.7: /tmp/ray/x" in proc.stdout
    assert '  File "x.py", line 1' in proc.stdout
    # `status --address` still answers from the store when the cluster cannot be reached
    down = f"http://127.0.0.1:{free_port()}"
    status = cli("status", "faillogs", "--store", str(store_dir), "--address", down, timeout=120)
    assert status.returncode == 1, status.stdout + status.stderr  # 1: a trial has failed
    assert "failed 1" in status.stdout
    assert f"driver: state unknown (cannot reach the Ray Jobs API at {down}" in status.stdout
