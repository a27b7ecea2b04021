"""What clusters do to sweeps: a SIGKILLed worker, a SIGKILLed driver, an object store that goes away."""
from __future__ import annotations

import os
import re
import signal
import time

from sweep_helpers import attempt_count, cli, cli_background, env_with, result_files, tiny_spec, wait_for

from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan
from sweepcore.layout import checkpoint_prefix
from sweepcore.records import read_attempts, read_results
from sweepcore.store import open_store


def _latest_checkpoint(store, key) -> int:
    steps = [int(p.rsplit("step-", 1)[1][:9]) for p in store.list(checkpoint_prefix(key)) if p.endswith(".pt")]
    return max(steps, default=0)


def test_killed_worker_resumes_from_its_last_checkpoint(ray_head, tmp_path):
    spec_path = tiny_spec(tmp_path, "killworker", treatments=["base"], directions=["A->B"],
                          model={"widths": [16, 32, 48, 48, 32], "fc_width": 256},
                          train={"iterations": 400, "batch_size": 64, "eval_every": 20, "checkpoint_every": 20})
    (base,) = make_plan(load_spec(spec_path)).trials
    store_dir = tmp_path / "store"
    proc = cli_background("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address,
                          env=env_with(ray_head), log=tmp_path / "run.log")
    try:
        store = wait_for(lambda: store_dir.exists() and open_store(str(store_dir)), 120, "store")
        wait_for(lambda: _latest_checkpoint(store, base.key) >= 60, 240, "two checkpoints")
        (attempt,) = read_attempts(store, base.key)
        killed_after = _latest_checkpoint(store, base.key)
        os.kill(attempt["pid"], signal.SIGKILL)
        assert proc.wait(300) == 0, (tmp_path / "run.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    first, second = read_attempts(store, base.key)
    assert second["pid"] != first["pid"]
    # the retry started from the newest checkpoint written before the kill, not from scratch:
    # at most one checkpoint interval of work was redone
    assert second["resume_step"] >= killed_after > 0
    (row,) = read_results(store).to_pylist()
    assert row["key"] == base.key and row["steps"] == 400 and row["status"] == "ok"


def test_killed_driver_then_resume_gives_exactly_one_row_per_trial(ray_head, tmp_path):
    spec_path = tiny_spec(tmp_path, "killdriver", treatments=["base", "selffer", "transfer"], layers=[1, 2, 3],
                          train={"iterations": 40, "eval_every": 10, "checkpoint_every": 10})
    plan = make_plan(load_spec(spec_path))
    store_dir = tmp_path / "store"
    proc = cli_background("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address,
                          env=env_with(ray_head), log=tmp_path / "run.log")
    try:
        wait_for(lambda: len(result_files(store_dir)) >= 3, 300, "three committed results")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    store = open_store(str(store_dir))
    done_before = {p.name: p.read_bytes() for p in result_files(store_dir)}
    assert 3 <= len(done_before) < len(plan)

    # the killed driver's lease is still fresh: a second driver refuses, naming it, until --force
    refused = cli("resume", "killdriver", "--store", str(store_dir), "--address", ray_head.address,
                  env=env_with(ray_head))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(f"transfer-sweep: error: sweep killdriver is already being run by pid {proc.pid} ")
    resumed = cli("resume", "killdriver", "--store", str(store_dir), "--address", ray_head.address, "--force",
                  env=env_with(ray_head))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    committed_before = int(re.search(r"(\d+) already committed", resumed.stderr).group(1))
    assert 3 <= committed_before < len(plan)  # resume plans again from the store and runs only the rest

    keys = read_results(store).column("key").to_pylist()
    assert sorted(keys) == sorted(t.key for t in plan.trials)  # none missing, none twice
    for name, blob in done_before.items():
        assert (store_dir / "results" / name).read_bytes() == blob  # committed rows untouched
        assert attempt_count(store, name.removesuffix(".parquet")) == 1  # and not trained again


def test_sweep_survives_the_object_store_going_away_for_20_seconds(ray_head, s3_server, tmp_path):
    bucket = s3_server.make_bucket()
    uri = f"s3://{bucket}/sweeps"
    spec_path = tiny_spec(tmp_path, "outage", treatments=["base", "selffer"], layers=[1, 2],
                          train={"iterations": 60, "eval_every": 10, "checkpoint_every": 10})
    plan = make_plan(load_spec(spec_path))
    env = env_with(ray_head, s3_server.env())
    proc = cli_background("run", str(spec_path), "--store", uri, "--address", ray_head.address, env=env,
                          log=tmp_path / "run.log")
    client = s3_server.client()

    def committed() -> int:
        try:
            return client.list_objects_v2(Bucket=bucket, Prefix="sweeps/results/").get("KeyCount", 0)
        except Exception:  # noqa: BLE001
            return 0
    try:
        wait_for(lambda: committed() >= 1, 300, "a first committed result")
        s3_server.stop()
        time.sleep(20)
        s3_server.start()
        assert proc.wait(400) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    for name, value in s3_server.env().items():
        os.environ.setdefault(name, value)
    store = open_store(uri, s3_server.endpoint)
    keys = read_results(store).column("key").to_pylist()
    assert sorted(keys) == sorted(t.key for t in plan.trials)
