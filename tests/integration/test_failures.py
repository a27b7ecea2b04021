"""Failures a user never has to babysit: retries that follow progress, trials given up on for a reason,
impossible requests, a dead head, and a console that says one line per event."""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path

import pytest
from ray_cluster import pids_using, start_head, stop_head
from sweep_helpers import cli, cli_background, env_with, tiny_spec, wait_for

from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan
from sweepcore.records import newest_checkpoint_step, read_attempts, read_failures, read_results
from sweepcore.store import open_store

LONG_BASE = dict(treatments=["base"], directions=["A->B"], retries=1,
                 model={"widths": [16, 32, 48, 48, 32], "fc_width": 256},
                 train={"iterations": 240, "batch_size": 64, "eval_every": 20, "checkpoint_every": 20})


@pytest.fixture(scope="module")
def calm(ray_head, tmp_path_factory):
    """The long base trained without any disturbance: what every disturbed run must end bitwise equal to."""
    tmp = tmp_path_factory.mktemp("calm")
    run = cli("run", str(tiny_spec(tmp, "longbase", **LONG_BASE)), "--store", str(tmp / "store"),
              "--address", ray_head.address, env=env_with(ray_head))
    assert run.returncode == 0, run.stderr
    return _rows(tmp / "store"), _bases(tmp / "store")


def _rows(store_dir: Path) -> list[dict]:
    rows = read_results(open_store(str(store_dir))).to_pylist()
    return [{k: v for k, v in r.items() if k not in ("wall_seconds", "finished_at")} for r in rows]


def _bases(store_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (store_dir / "bases").rglob("model-*")}


def test_kills_after_each_checkpoint_never_exhaust_the_retries_and_change_nothing(ray_head, calm, tmp_path):
    spec_path = tiny_spec(tmp_path, "longbase", **LONG_BASE)
    (base,) = make_plan(load_spec(spec_path)).trials
    store_dir = tmp_path / "store"
    proc = cli_background("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address,
                          env=env_with(ray_head), log=tmp_path / "run.log")
    kills = 0
    try:
        store = wait_for(lambda: store_dir.exists() and open_store(str(store_dir)), 120, "store")
        # retries: 1, yet three kills: each attempt checkpoints before it dies, so none is without progress
        for _ in range(3):
            attempt = wait_for(lambda: (a := read_attempts(store, base.key)) and len(a) == kills + 1 and a[-1],
                               240, f"attempt {kills + 1}")
            wait_for(lambda: newest_checkpoint_step(store, base.key) >= attempt["resume_step"] + 40, 240,
                     "two more checkpoints")
            os.kill(attempt["pid"], signal.SIGKILL)
            kills += 1
        assert proc.wait(400) == 0, (tmp_path / "run.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (tmp_path / "run.log").read_text()
    steps = [a["resume_step"] for a in read_attempts(store, base.key)]
    assert len(steps) == 4 and steps == sorted(steps) and steps[-1] >= 120
    assert f"retry baseB random:0 s0            resumes from step {steps[1]}" in out
    # quiet: no Ray daemon paragraphs, no Tune tracebacks on the console; they are in the log file
    assert "(raylet)" not in out and "Traceback" not in out and "A worker died" not in out
    log_file = Path(out.split("Ray and Tune logs: ", 1)[1].split(" (--verbose", 1)[0])
    assert "A worker died or was killed" in log_file.read_text()
    assert (_rows(store_dir), _bases(store_dir)) == calm


def test_a_trial_failing_the_same_way_is_given_up_after_its_retries(ray_head, tmp_path):
    spec_path = tiny_spec(tmp_path, "giveup", retries=1)
    plan = make_plan(load_spec(spec_path))
    store_dir = tmp_path / "store"
    env = env_with(ray_head)
    only_base = cli("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address,
                    "--set", "treatments=[base]", env=env)
    assert only_base.returncode == 0, only_base.stderr
    tampered = {p.stem for p in (store_dir / "results").glob("*.parquet")}  # the bases run so far
    for weights in (store_dir / "bases").rglob("model-*"):
        weights.write_bytes(b"not the weights the row was committed with")
    run = cli("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    store = open_store(str(store_dir))
    doomed = [t for t in plan.trials if t.base_key in tampered]
    assert len(doomed) == 1  # BnB copies the tampered baseB; AnB copies baseA, trained untouched in this run
    for trial in doomed:
        assert [a["resume_step"] for a in read_attempts(store, trial.key)] == [0, 0]  # first try + 1 retry
        last = read_failures(store, trial.key)[-1]["error"]
        assert last.startswith("gave up after 2 consecutive attempts without progress (each resumed from step 0")
    assert len(read_results(store)) == len(plan) - 1
    status = cli("status", "giveup", "--store", str(store_dir), env=env)
    assert status.returncode == 1 and "failed 1" in status.stdout and "gave up after 2" in status.stdout


def test_a_gpu_request_on_a_cpu_cluster_exits_2_at_once_with_one_line(ray_head, tmp_path):
    spec_path = tiny_spec(tmp_path, "nogpu")
    started = time.monotonic()
    run = cli("run", str(spec_path), "--store", str(tmp_path / "store"), "--address", ray_head.address,
              "--set", "resources.gpus=1", env=env_with(ray_head), timeout=120)
    assert time.monotonic() - started < 30
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr == ("transfer-sweep: error: resources.gpus: a trial needs 1 GPU on one node, but the "
                          "largest of the 1 live node(s) has 0; no autoscaler node types are configured\n")
    assert not list((tmp_path / "store").glob("results/*"))


def test_when_the_head_dies_run_exits_with_the_resume_command(ray_head, calm, tmp_path):
    spec_path = tiny_spec(tmp_path, "longbase", **LONG_BASE)
    (base,) = make_plan(load_spec(spec_path)).trials
    store_dir = tmp_path / "store"
    head = start_head(num_cpus=1)
    # the driver must not look like one of the head's processes, or killing the head kills it too
    env = {k: v for k, v in env_with(head).items() if k != "TRANSFER_SWEEP_RAY_TMP"}
    try:
        proc = cli_background("run", str(spec_path), "--store", str(store_dir), "--address", head.address,
                              env=env, log=tmp_path / "run.log")
        store = wait_for(lambda: store_dir.exists() and open_store(str(store_dir)), 120, "store")
        wait_for(lambda: newest_checkpoint_step(store, base.key) >= 20, 240, "a checkpoint")
        for pid in pids_using(head.temp_dir):  # the head dies at once: GCS, raylet, workers, all
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        died = time.monotonic()
        code = proc.wait(120)
        waited = time.monotonic() - died
    finally:
        stop_head(head)
        if proc.poll() is None:
            proc.kill()
    out = (tmp_path / "run.log").read_text()
    assert code == 1 and waited < 90, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("transfer-sweep: error: the Ray head's GCS at ") and "the cluster is gone" in last
    assert last.endswith(f"run `transfer-sweep resume longbase --store {store_dir}` once the cluster is back")
    resumed = cli("resume", "longbase", "--store", str(store_dir), "--address", ray_head.address, "--force",
                  env=env_with(ray_head))
    assert resumed.returncode == 0, resumed.stderr
    assert (_rows(store_dir), _bases(store_dir)) == calm  # nothing lost, nothing changed


NODE_LOSS = r"""
import json, os, subprocess, sys
from ray.cluster_utils import Cluster
from sweep_helpers import CLI, wait_for
from sweepcore.records import newest_checkpoint_step, read_attempts
from sweepcore.store import open_store

spec_path, store_dir, key, log = sys.argv[1:5]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
cluster.wait_for_nodes()
try:
    proc = subprocess.Popen([*CLI, "run", spec_path, "--store", store_dir, "--address", cluster.address],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    store = wait_for(lambda: os.path.isdir(store_dir) and open_store(store_dir), 120, "store")
    attempt = wait_for(lambda: (a := read_attempts(store, key)) and a[0], 240, "a first attempt")
    wait_for(lambda: newest_checkpoint_step(store, key) >= 40, 240, "two checkpoints")
    parent = int(open(f"/proc/{attempt['pid']}/stat").read().rsplit(")", 1)[1].split()[1])
    victim = next(n for n in workers if n.all_processes["raylet"][0].process.pid == parent)
    cluster.remove_node(victim)
    print(json.dumps({"code": proc.wait(400), "removed": workers.index(victim)}))
finally:
    cluster.shutdown()
"""


def test_a_lost_worker_node_moves_its_trial_to_another_node_and_changes_nothing(calm, tmp_path):
    """A two-node Ray (ray.cluster_utils.Cluster, in its own process): the node running the trial is
    removed mid-training; the trial resumes from its checkpoint on the other node."""
    import json
    import subprocess
    import sys

    spec_path = tiny_spec(tmp_path, "longbase", **LONG_BASE)
    (base,) = make_plan(load_spec(spec_path)).trials
    store_dir = tmp_path / "store"
    tests = Path(__file__).resolve().parents[1]  # tests/: sweep_helpers and the rest
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])}
    done = subprocess.run([sys.executable, "-c", NODE_LOSS, str(spec_path), str(store_dir), base.key,
                           str(tmp_path / "run.log")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["code"] == 0, (tmp_path / "run.log").read_text()
    steps = [a["resume_step"] for a in read_attempts(open_store(str(store_dir)), base.key)]
    assert len(steps) == 2 and steps[1] >= 40  # moved once, resumed from its checkpoint
    assert (_rows(store_dir), _bases(store_dir)) == calm
