"""`transfer-sweep submit` / `logs` / `status --address` against a real Ray head with token auth.

The driver runs on the head as a Ray Job. The head was started from this virtualenv, which need not be
on its PATH, so the tests point TRANSFER_SWEEP_DRIVER at this Python (`python -m orchestrator.cli`);
on a cluster the image's `transfer-sweep` is used. The decisions alone: tests/unit/test_submit_decide.py."""
from __future__ import annotations

import json
import subprocess
import sys

from sweep_helpers import cli, env_with, tiny_spec

from orchestrator.execution.driver_job import (
    DRIVER_ENV,
    META_SWEEP,
    submission_base,
)
from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan
from sweepcore.records import read_results
from sweepcore.store import open_store

DRIVER = f"{sys.executable} -m orchestrator.cli"


def _spec(spec_path, store_dir, *overrides):
    spec = load_spec(spec_path, overrides)
    return spec.model_copy(update={"store": str(store_dir)})


def _jobs(head) -> list[dict]:
    """The head's jobs, listed by a separate process with the head's token (like any client)."""
    code = ("import json; from ray.job_submission import JobSubmissionClient as C; "
            f"print(json.dumps([{{'id': j.submission_id, 'status': str(j.status), 'metadata': j.metadata}} "
            f"for j in C({head.dashboard_url!r}).list_jobs()]))")
    out = subprocess.run([sys.executable, "-c", code], env=head.client_env(), capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- on a real head -------------------------------------------------------------------------------
def test_submit_twice_runs_one_driver_and_commits_every_trial(ray_head, tmp_path):
    spec_path = tiny_spec(tmp_path, "jobsweep", treatments=["base", "selffer", "transfer"], layers=[2],
                          train={"iterations": 40})
    store_dir = tmp_path / "store"
    spec = _spec(spec_path, store_dir)
    plan = make_plan(spec)
    job_id = submission_base(spec)
    env = env_with(ray_head, {DRIVER_ENV: DRIVER})
    url = ray_head.dashboard_url
    submit = ("submit", str(spec_path), "--address", url, "--store", str(store_dir))

    first = cli(*submit, env=env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"submitted sweep jobsweep as Ray job {job_id}: {len(plan)} of {len(plan)} trials" in first.stdout
    assert f"dashboard: {url}/#/jobs/{job_id}" in first.stdout
    assert (store_dir / "sweeps" / "jobsweep" / "spec.yaml").is_file()  # what the driver resumes from

    second = cli(*submit, env=env, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"already running as Ray job {job_id}" in second.stdout
    conflict = cli(*submit, "--set", "train.iterations=41", env=env, timeout=120)
    assert conflict.returncode == 2 and "already running" in conflict.stderr
    assert f"as Ray job {job_id} with a different spec" in conflict.stderr
    mine = [j for j in _jobs(ray_head) if j["metadata"].get(META_SWEEP) == "jobsweep"]
    assert [j["id"] for j in mine] == [job_id]

    follow = cli("logs", "jobsweep", "--address", url, "--follow", env=env, timeout=600)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert f"sweep jobsweep: {len(plan)}/{len(plan)} committed ({len(plan)} trained now" in follow.stdout
    assert f"Ray job {job_id}: SUCCEEDED" in follow.stderr
    assert f"Ray dashboard: {url}\n" in follow.stdout  # the driver joined this cluster, not a Ray of its own

    table = read_results(open_store(str(store_dir)))
    assert sorted(table.column("key").to_pylist()) == sorted(t.key for t in plan.trials)
    assert table.column("status").to_pylist() == ["ok"] * len(plan)

    status = cli("status", "jobsweep", "--store", str(store_dir), "--address", url, env=env, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"driver: Ray job {job_id} SUCCEEDED" in status.stdout
    assert f"done {len(plan)} " in status.stdout

    # A finished sweep is not submitted again, by `submit` or by `resume` of a dashboard URL: nothing is left.
    third = cli(*submit, env=env, timeout=120)
    assert third.returncode == 0 and "nothing to submit" in third.stdout, third.stdout + third.stderr
    resume = cli("resume", "jobsweep", "--store", str(store_dir), "--address", url, env=env, timeout=120)
    assert resume.returncode == 0 and "nothing to submit" in resume.stdout, resume.stdout + resume.stderr
    assert [j["id"] for j in _jobs(ray_head) if j["metadata"].get(META_SWEEP) == "jobsweep"] == [job_id]


def test_submit_without_the_token_is_refused_in_one_line(ray_head, tmp_path):
    spec_path = tiny_spec(tmp_path, "noauth")
    env = env_with(ray_head, {DRIVER_ENV: DRIVER, "RAY_AUTH_TOKEN": "0" * 32})
    proc = cli("submit", str(spec_path), "--address", ray_head.dashboard_url, "--store", str(tmp_path / "store"),
               env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("transfer-sweep: error: the Ray Jobs API at "), proc.stderr
    assert "RAY_AUTH_MODE=token" in lines[0] and "0" * 32 not in proc.stderr
    assert not any(j["metadata"].get(META_SWEEP) == "noauth" for j in _jobs(ray_head))
