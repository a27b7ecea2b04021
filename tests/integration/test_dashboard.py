"""What a user sees of a running sweep: the Ray dashboard in a real browser, and the sweep's metrics.

A sweep is submitted as a Ray Job to the session's token-auth head, as a user would; while its trials
train, headless Chromium (Debian's `chromium`, driven by Playwright with `executable_path`: nothing is
downloaded) logs in with the token, looks at the Actors page (the trial slots) and the Job page, and
asks the dashboard's State API for the tasks (each trial's attempt, by name); the node's metrics
export endpoint is read over HTTP. With TRANSFER_SWEEP_SCREENSHOTS=<folder> the pages are saved there
(docs/img holds the ones the README shows).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest
from sweep_helpers import cli, env_with, tiny_spec, wait_for

from orchestrator.execution.driver_job import DRIVER_ENV, submission_base
from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan
from sweepcore.records import read_results
from sweepcore.store import open_store

DRIVER = f"{sys.executable} -m orchestrator.cli"

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def _browser_or_skip():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no `chromium` on PATH: `bash .ci/setup` installs Debian's chromium (as root)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (only this test drives a browser)
    except ImportError:
        pytest.skip("Playwright is not installed: `bash .ci/setup` installs it (pip install -e '.[test]')")
    return chromium, sync_playwright


def _metrics(head) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{head.metrics_port}/metrics", timeout=10) as response:
        return response.read().decode()


def _gauge(text: str, name: str, **tags) -> list[float]:
    """Values of Prometheus gauge `name` whose labels include `tags`."""
    values = []
    for match in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(labels.get(k) == v for k, v in tags.items()):
            values.append(float(match.group(2)))
    return values


def _log_in(page, url: str, token: str) -> None:
    page.goto(url)
    box = page.get_by_placeholder("Enter your authentication token")
    box.wait_for(timeout=30_000)
    box.fill(token)
    page.get_by_role("button", name="Submit").click()
    box.wait_for(state="hidden", timeout=30_000)


def test_a_running_sweep_is_readable_in_the_dashboard_and_its_metrics(ray_head, tmp_path):
    chromium, sync_playwright = _browser_or_skip()
    shots = Path(os.environ.get("TRANSFER_SWEEP_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    # two bases, long enough (~1 min each here) to be looked at while they train
    spec_path = tiny_spec(tmp_path, "watched", treatments=["base"], directions=["A->B", "B->A"], max_concurrent=2,
                          train={"iterations": 5000, "eval_every": 250, "checkpoint_every": 500})
    store_dir = tmp_path / "store"
    spec = load_spec(spec_path, ()).model_copy(update={"store": str(store_dir)})
    plan = make_plan(spec)
    names = {t.settings.name: t.key for t in plan.trials}
    job_id = submission_base(spec)
    env = env_with(ray_head, {DRIVER_ENV: DRIVER})
    url = ray_head.dashboard_url
    submitted = cli("submit", str(spec_path), "--address", url, "--store", str(store_dir), env=env, timeout=120)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    # metrics: the driver's trial counts and each running trial's step, from the node's export endpoint
    def running_metrics():
        text = _metrics(ray_head)
        counts = _gauge(text, "ray_transfer_sweep_trials", sweep="watched", state="running")
        steps = {name: _gauge(text, "ray_transfer_sweep_trial_step", sweep="watched", trial=name, key=key)
                 for name, key in names.items()}
        return text if counts and counts[-1] >= 1 and any(v and v[-1] > 0 for v in steps.values()) else None
    text = wait_for(running_metrics, 180, "the sweep's metrics on the node's metrics endpoint", every=2)
    assert _gauge(text, "ray_transfer_sweep_trials", sweep="watched", state="pending") is not None
    assert any(v > 0 for v in _gauge(text, "ray_transfer_sweep_trial_images_per_second", sweep="watched"))
    assert _gauge(text, "ray_transfer_sweep_trial_checkpoint_age_seconds", sweep="watched")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            _log_in(page, f"{url}/#/actors", ray_head.env["RAY_AUTH_TOKEN"])
            # trial slots are reused Tune actors of class TransferTrial (trainable.py)
            page.get_by_text("TransferTrial").first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "dashboard-actors.png"))

            # each running trial's attempt is a task named after the trial, with its key (searchable, not
            # anonymous): asked of the dashboard's State API, with the browser's logged-in session
            labels = {f"{name} [{key}]" for name, key in names.items()}

            def named_tasks():
                answer = page.request.get(f"{url}/api/v0/tasks?limit=1000&detail=1")
                tasks = answer.json().get("data", {}).get("result", {}).get("result", []) if answer.ok else []
                seen = {t.get("name") for t in tasks}
                return seen if labels & seen else None
            assert labels & wait_for(named_tasks, 60, "a trial's task in the dashboard's task list", every=2)

            # the Job page: the driver's log carries the sweep's progress lines
            page.goto(f"{url}/#/jobs/{job_id}")
            page.get_by_text(re.compile(r"progress watched: done \d+/2, running \d+")).first.wait_for(timeout=90_000)
            page.screenshot(path=str(shots / "dashboard-job.png"), full_page=True,  # header, tasks and the log
                            clip={"x": 0, "y": 0, "width": 1600, "height": 1150})
        finally:
            browser.close()

    follow = cli("logs", "watched", "--address", url, "--follow", env=env, timeout=600)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert re.search(r"progress watched: done 2/2, running 0, failed 0, pending 0", follow.stdout), follow.stdout
    rows = read_results(open_store(str(store_dir)))
    assert sorted(rows.column("key").to_pylist()) == sorted(names.values())


def test_learning_curves_reach_tensorboard_and_mlflow(ray_head, tmp_path, monkeypatch):
    from orchestrator.execution.schedule import trial_dirname, tune_storage  # noqa: PLC0415 (Ray only for the tiers that run it)

    mlruns = tmp_path / "mlruns"
    spec_path = tiny_spec(tmp_path, "curves", treatments=["base", "transfer"],
                          mlflow={"tracking_uri": mlruns.as_uri(), "experiment": "curves-test"})
    store_dir = tmp_path / "store"
    spec = load_spec(spec_path, ()).model_copy(update={"store": str(store_dir)})
    plan = make_plan(spec)
    proc = cli("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address,
               env=env_with(ray_head, {"MLFLOW_ALLOW_FILE_STORE": "true"}))  # MLflow 3 wants a database
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logdir = Path(tune_storage(spec))
    assert f"learning curves: tensorboard --logdir {logdir}" in proc.stderr

    # TensorBoard: one event file per trial, in a folder named after the trial, with its top-1 curve
    for trial in plan.trials:
        events = list(logdir.glob(f"curves-*/{trial_dirname(trial.name, trial.key)}/events.out.tfevents.*"))
        assert events, f"no TensorBoard events for {trial.name} under {logdir}"
        assert b"ray/tune/top1" in events[-1].read_bytes()

    # MLflow: one run per trial, named after it, with the top-1 of every evaluation
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 (optional dependency)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=mlruns.as_uri())
    experiment = client.get_experiment_by_name("curves-test")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(t.name for t in plan.trials)
    evaluations = 12 // 4  # TINY_TRAIN: 12 steps, an evaluation every 4
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "top1")) == evaluations, run.info.run_name
        assert run.data.tags.get("transfer_sweep") == "curves"
