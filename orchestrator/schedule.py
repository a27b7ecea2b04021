"""Run a plan as one Ray Tune experiment, releasing each trial the moment its base is committed.

Tune has no notion of dependencies between trials
(ray-project/ray#23654), so a Searcher does it: `suggest()` hands out a trial only once its base's
result is in the store, returns None while everything left is waiting, and FINISHED when nothing is
left. There is no barrier between bases and transfers: a transfer starts seconds after its base.

The store is the source of truth, not Tune's state: trials whose result is committed are never handed
out, and a trial that runs twice (a retry, a second driver) finds its own committed result and returns
it, so every key gets exactly one row. That is also why `resume` is just another run: it plans again
and runs whatever is not committed; nothing of Tune's state is read back.

Tune retries every failed attempt (max_failures=-1); the trainable (trainable.py) decides when a trial
stops making progress and gives up, so kills that cost one checkpoint interval each never exhaust it.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import ray
from ray import tune
from ray.tune.execution import class_cache
from ray.tune.search import Searcher

from orchestrator.errors import EXIT_FAILED, UsageError
from orchestrator.feasibility import autoscaler_node_types, judge, live_nodes, trial_demand
from orchestrator.plan import Plan, PlannedTrial
from orchestrator.ray_session import connect
from orchestrator.spec import SweepSpec
from orchestrator.trainable import _trainable, named_trial_actor
from orchestrator.watchdog import Watchdog
from sweepcore.records import committed_keys, newest_checkpoint_step
from sweepcore.store import Store, open_store

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: counts the CLI prints and turns into an exit code."""

    planned: int
    already_done: int
    completed: int = 0
    failed: list[str] = field(default_factory=list)   # keys whose trial errored after all retries
    blocked: list[str] = field(default_factory=list)  # keys whose base failed, so never started
    stopped: list[str] = field(default_factory=list)  # keys neither committed nor failed: the run was stopped
    wall_seconds: float = 0.0
    trained: list[str] = field(default_factory=list)  # keys committed by this run


class DependencySearcher(Searcher):
    """Hands out pending trials in plan order as soon as their base trial has committed a result."""

    def __init__(self, trials: list[PlannedTrial], done: set[str], store_uri: str, endpoint: Optional[str],
                 run: str = "", retries: int = 2):
        super().__init__()  # no metric: this searcher orders work, it does not optimise
        self.pending = list(trials)
        self.done = set(done)
        self.failed: set[str] = set()
        self.blocked: list[PlannedTrial] = []
        self.running: dict[str, str] = {}  # tune trial id -> key
        self.store_uri, self.endpoint, self.run, self.retries = store_uri, endpoint, run, retries

    def suggest(self, trial_id: str):
        for i, trial in enumerate(self.pending):
            if trial.base_key is None or trial.base_key in self.done:
                del self.pending[i]
                self.running[trial_id] = trial.key
                return {"settings": trial.settings.to_dict(), "store_uri": self.store_uri,
                        "endpoint": self.endpoint, "run": self.run, "retries": self.retries}
        self._block_orphans()
        if not self.pending:
            return Searcher.FINISHED
        return None

    def _block_orphans(self) -> None:
        """Trials whose base failed for good can never run: give up on them instead of waiting."""
        keep = []
        for trial in self.pending:
            (self.blocked.append(trial) if trial.base_key in self.failed else keep.append(trial))
        self.pending = keep

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the store is the state, and `resume` plans again from it."""

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        key = self.running.pop(trial_id, None)
        if key is not None:
            committed = not error and bool((result or {}).get("committed"))
            (self.done if committed else self.failed).add(key)


# Tune copies these from the driver's environment into every trial actor's runtime_env, and Ray's
# runtime-env agent then logs them in plain text (found by tests/test_store_cli.py). Workers take
# credentials from their own node (instance role, or the env the node was started with) instead.
_TUNE_PROPAGATED_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")


@contextlib.contextmanager
def _credentials_hidden_from_tune():
    saved = {name: os.environ.pop(name) for name in _TUNE_PROPAGATED_SECRETS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _no_tune_runtime_env():
    """Tune gives every trial actor a runtime env of its own ({"env_vars": {"PL_DISABLE_FORK": "1"}},
    for PyTorch Lightning, which trials do not use). A worker whose runtime env differs from an idle
    worker's cannot take it over, so every trial would wait for a fresh process and import torch
    (~2-3 s measured, the largest per-trial cost of a short sweep); without it, trials start on Ray's
    idle workers, which have the training code preloaded (ray_session.PRELOAD_MODULES)."""
    saved = dict(class_cache.DEFAULT_ENV_VARS)
    class_cache.DEFAULT_ENV_VARS.clear()
    try:
        yield
    finally:
        class_cache.DEFAULT_ENV_VARS.update(saved)


def tune_storage(spec: SweepSpec, store_uri: str) -> str:
    """Where Tune keeps its experiment state and the driver its log: always the driver's own disk
    (~/ray_results/transfer-sweep/<sweep>-<store hash>), never the store. Tune's state is pickles, and a
    shared store has other writers; nothing reads that state back anyway (the store decides what is
    done). Tune would also read S3 credentials from the driver's environment, which is hidden from it."""
    where = hashlib.sha256(store_uri.encode()).hexdigest()[:8]
    return os.path.join(os.path.expanduser("~"), "ray_results", "transfer-sweep", f"{spec.name}-{where}")


def _trainable_with_resources(spec: SweepSpec):
    cls = tune.with_resources(named_trial_actor(_trainable), {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus})
    cls.__name__ = cls.__qualname__ = "TransferTrial"  # the dashboard's Class column (Ray shows the qualname)
    return cls


def trial_dirname(name: str, key: str) -> str:
    """A trial's folder under the Tune storage (TensorBoard's run name): readable and unique,
    e.g. 'AnB+_n=5_random-0_s0-<key>'."""
    return re.sub(r"[^A-Za-z0-9=+._-]", "_", name.replace(":", "-")) + "-" + key


def mlflow_callbacks(spec: SweepSpec) -> list:
    """Tune's MLflowLoggerCallback when the spec asks for it (`mlflow:`), else nothing. Checked before
    Ray starts: a missing package is a one-line error, not a traceback after the first trial."""
    if spec.mlflow is None:
        return []
    if importlib.util.find_spec("mlflow") is None:
        raise UsageError("mlflow: the spec logs trials to MLflow, but this driver has no `mlflow` package: "
                         "pip install 'transfer-sweep[mlflow]' (or remove mlflow from the spec)")
    _check_mlflow(spec.mlflow.tracking_uri)
    from ray.air.integrations.mlflow import MLflowLoggerCallback  # noqa: PLC0415 (imports mlflow)
    return [MLflowLoggerCallback(tracking_uri=spec.mlflow.tracking_uri, experiment_name=spec.mlflow.experiment,
                                 tags={"transfer_sweep": spec.name}, save_artifact=False)]


def _check_mlflow(uri: str) -> None:
    """One request to the tracking server, with few retries: an unreachable or refusing MLflow is a
    one-line error now, not a traceback from inside Tune (or minutes of MLflow's own retries)."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 (optional dependency)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 (any failure of the server or the URI is the user's to fix)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UsageError(f"mlflow.tracking_uri: MLflow at {uri} refused or did not answer: {first}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _new_tuner(spec: SweepSpec, store_uri: str, searcher: DependencySearcher, num_samples: int,
               callbacks: list) -> tune.Tuner:
    return tune.Tuner(
        _trainable_with_resources(spec),
        tune_config=tune.TuneConfig(
            # one actor per trial: its repr, fixed at creation, names the trial in the dashboard
            search_alg=searcher, num_samples=num_samples, reuse_actors=False,
            max_concurrent_trials=spec.max_concurrent,
            trial_name_creator=lambda t: t.config["settings"]["name"],
            trial_dirname_creator=lambda t: trial_dirname(t.config["settings"]["name"], t.config["settings"]["key"])),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=tune_storage(spec, store_uri),
            # every failure is retried; the trainable gives up once attempts stop making progress
            failure_config=tune.FailureConfig(max_failures=-1),
            callbacks=callbacks, verbose=0),
    )


def run_plan(plan: Plan, spec: SweepSpec, store_uri: str, endpoint: Optional[str] = None,
             address: Optional[str] = None, callbacks: Optional[list] = None,
             on_start: Optional[Callable[[int, int, Optional[str]], None]] = None,
             log_file: Optional[Path] = None, on_lost: Optional[Callable[[str], None]] = None,
             say: Callable[[str], None] = lambda line: None) -> RunSummary:
    """Train every trial of `plan` not yet committed in the store; return what happened.

    The store decides what is done: a first run, a `resume` after a crash and a re-run are the same
    call. `on_start(to_run, already_done, dashboard_url)` is called once Ray is up, or right away
    when there is nothing to run (Ray is then never started). With `log_file`, Ray's and Tune's own
    messages go to that file instead of the console.

    Before training, a trial's demand is checked against the cluster (feasibility.py): infeasible is a
    UsageError; feasible only after scaling is said through `say` and bounded by
    `resources.scale_timeout`. While training, a watchdog calls `on_lost(line)` when the cluster is
    gone (default: print the line and exit 1: nothing committed is lost, `resume` finishes the sweep).
    """
    started = time.monotonic()
    tracking = mlflow_callbacks(spec)
    store = open_store(store_uri, endpoint)
    keys = set(plan.by_key())
    done = committed_keys(store) & keys
    summary = RunSummary(planned=len(plan), already_done=len(done))
    if done == keys:
        if on_start:
            on_start(0, len(done), None)
        return summary
    _, dashboard = connect(address, log_file=log_file)
    demand = trial_demand(spec.resources.cpus, spec.resources.gpus)
    verdict = judge(demand, live_nodes(), autoscaler_node_types())
    if verdict.kind == "infeasible":
        raise UsageError(verdict.line)
    if on_start:
        on_start(len(keys - done), len(done), dashboard)
    if verdict.kind == "scale":
        say(verdict.line)
    # The CLI draws its own progress; Tune's legacy reporter at verbose=0 prints nothing.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # With a custom searcher Tune keeps one trial pending, so ready trials start one at a time and an
    # autoscaler sees a demand of one (bench/scheduling.py: makespan/lower bound 1.09 -> 1.03).
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(2, min(len(keys - done), 100))))
    todo = [t for t in plan.trials if t.key not in done]
    # a fresh id per run: each run gives every trial the full retry budget again
    searcher = DependencySearcher(todo, done, store_uri, endpoint, run=uuid.uuid4().hex[:12], retries=spec.retries)
    watchdog = Watchdog(ray.get_runtime_context().gcs_address, demand, on_lost or _exit_lost,
                        scale_seconds=spec.resources.scale_timeout if verdict.kind == "scale" else None,
                        waiting_for=verdict.line)
    with watchdog, _credentials_hidden_from_tune(), _no_tune_runtime_env():
        _new_tuner(spec, store_uri, searcher, len(todo), [*(callbacks or []), *tracking]).fit()
    committed = committed_keys(store) & keys
    summary.completed = len(committed) - len(done)
    summary.trained = sorted(committed - done)
    by_key = plan.by_key()
    summary.failed, summary.blocked, summary.stopped = sort_missing(by_key, committed, searcher.failed)
    summary.wall_seconds = time.monotonic() - started
    return summary


def sort_missing(by_key: dict[str, PlannedTrial], committed: set[str],
                 errored: set[str]) -> tuple[list[str], list[str], list[str]]:
    """The planned keys a run did not commit, as (failed, blocked, stopped): failed ended in an error
    after their retries; blocked have a failed trial somewhere down their chain of bases; stopped are
    the rest, which the run never finished because it was stopped (Ctrl+C or SIGTERM to the driver),
    not because anything went wrong. Each list sorted."""
    missing = [k for k in by_key if k not in committed]
    failed = {k for k in missing if k in errored}

    def base_failed(key: str) -> bool:
        base = by_key[key].base_key
        while base is not None:
            if base in failed:
                return True
            base = by_key[base].base_key if base in by_key else None
        return False

    blocked = {k for k in missing if k not in failed and base_failed(k)}
    return sorted(failed), sorted(blocked), sorted(set(missing) - failed - blocked)


def _exit_lost(line: str) -> None:
    """Default on_lost: one line, exit 1 (the Tune loop would otherwise wait forever)."""
    print(f"transfer-sweep: error: {line}; committed results are kept: run `transfer-sweep resume` to finish",
          file=sys.stderr, flush=True)
    os._exit(EXIT_FAILED)


class ProgressCallback(tune.Callback):
    """Forwards Tune's trial events to a listener with plain methods (the CLI's progress display):
    started(name), finished(name, top1), retrying(name, resume_step), failed(name, where)."""

    def __init__(self, listener, store_uri: str, endpoint: Optional[str] = None):
        self.listener = listener
        self.store_uri, self.endpoint = store_uri, endpoint
        self._store: Optional[Store] = None  # opened on the first retry, then reused

    # Tune pickles its callbacks into the experiment state; a live display cannot (and need not) go.
    def __getstate__(self):
        return {**self.__dict__, "listener": None, "_store": None}

    def _call(self, method, *args):
        if self.listener is not None:
            getattr(self.listener, method)(*args)

    @staticmethod
    def _name(trial) -> str:
        return trial.config["settings"]["name"]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._call("started", self._name(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("committed"):
            self._call("finished", self._name(trial), result.get("top1_paper"))
        elif result.get("gave_up"):
            self._call("failed", self._name(trial), f"transfer-sweep status {trial.config['settings']['sweep']}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._call("failed", self._name(trial), str(trial.error_file or ""))

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self._store is None:
            self._store = open_store(self.store_uri, self.endpoint, check=False)
        self._call("retrying", self._name(trial), newest_checkpoint_step(self._store, trial.config["settings"]["key"]))
