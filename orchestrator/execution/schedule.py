"""Run a plan as one Ray Tune experiment, releasing each trial the moment its base is committed.

Tune has no notion of dependencies between trials
(ray-project/ray#23654), so a Searcher does it (searcher.py): a trial is handed out only once its
base's result is in the store. There is no barrier between bases and transfers: a transfer starts
seconds after its base.

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
from ray.tune import tune as tune_entry
from ray.tune.execution import class_cache

from orchestrator.errors import EXIT_FAILED, UsageError, print_error
from orchestrator.execution.feasibility import autoscaler_node_types, judge, live_nodes, trial_demand
from orchestrator.execution.searcher import DependencySearcher
from orchestrator.execution.session import connect
from orchestrator.execution.trainable import _trainable, slot_actor
from orchestrator.execution.watchdog import Watchdog
from orchestrator.spec.plan import Plan, PlannedTrial
from orchestrator.spec.schema import SweepSpec
from orchestrator.spec.sweep import Sweep
from sweepcore.records import committed_keys, newest_checkpoint_step
from sweepcore.store import Store

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


# Tune copies these from the driver's environment into every trial actor's runtime_env, and Ray's
# runtime-env agent then logs them in plain text (found by tests/integration/test_store_credentials.py). Workers take
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
    idle workers, which have the training code preloaded (session.PRELOAD_MODULES)."""
    saved = dict(class_cache.DEFAULT_ENV_VARS)
    class_cache.DEFAULT_ENV_VARS.clear()
    try:
        yield
    finally:
        class_cache.DEFAULT_ENV_VARS.update(saved)


@contextlib.contextmanager
def _tune_start_up_trimmed():
    """Two costs of Tune's start-up that buy this driver nothing (bench/overhead.py measured both, on a
    2-core machine: 3.2 s from `fit()` to the first trial, 0.01 s without them):
    - Tune's default TensorBoard logger imports tensorboardX, which imports torch when it can (only to
      accept torch tensors as values, and the driver logs floats): 2.6 s, and the driver would hold
      torch. tensorboardX is imported here with torch hidden, so it takes numpy arrays only.
    - Tune's usage telemetry imports every logger integration it knows to count the callbacks, mlflow
      among them where it is installed (1.3 s); the count is not recorded."""
    if "tensorboardX" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
        try:
            import tensorboardX  # noqa: F401, PLC0415 (imported once, without torch)
        finally:
            del sys.modules["torch"]
    saved = tune_entry.air_usage.tag_callbacks
    tune_entry.air_usage.tag_callbacks = lambda callbacks: False
    try:
        yield
    finally:
        tune_entry.air_usage.tag_callbacks = saved


def tune_storage(spec: SweepSpec) -> str:
    """Where Tune keeps its experiment state and the driver its log: always the driver's own disk
    (~/ray_results/transfer-sweep/<sweep>-<store hash>), never the store. Tune's state is pickles, and a
    shared store has other writers; nothing reads that state back anyway (the store decides what is
    done). Tune would also read S3 credentials from the driver's environment, which is hidden from it."""
    where = hashlib.sha256(spec.store.encode()).hexdigest()[:8]
    return os.path.join(os.path.expanduser("~"), "ray_results", "transfer-sweep", f"{spec.name}-{where}")


def _trainable_with_resources(spec: SweepSpec):
    # an empty head bundle: the slot actor holds nothing; the attempt task gets the trial's CPUs and GPUs
    bundle = {"CPU": spec.resources.cpus, "GPU": spec.resources.gpus}
    cls = tune.with_resources(slot_actor(_trainable), tune.PlacementGroupFactory([{}, bundle]))
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


def _new_tuner(spec: SweepSpec, searcher: DependencySearcher, num_samples: int,
               callbacks: list) -> tune.Tuner:
    return tune.Tuner(
        _trainable_with_resources(spec),
        tune_config=tune.TuneConfig(
            # slots are reused; each trial's attempt is a task named after it (trainable.py)
            search_alg=searcher, num_samples=num_samples, reuse_actors=True,
            max_concurrent_trials=spec.max_concurrent,
            trial_name_creator=lambda t: t.config["settings"]["name"],
            trial_dirname_creator=lambda t: trial_dirname(t.config["settings"]["name"], t.config["settings"]["key"])),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=tune_storage(spec),
            # every failure is retried; the trainable gives up once attempts stop making progress
            failure_config=tune.FailureConfig(max_failures=-1),
            callbacks=callbacks, verbose=0),
    )


@dataclass
class RunHooks:
    """How a run talks back to its caller; every one is optional.

    callbacks: Tune callbacks (the CLI's progress display); on_start(to_run, already_done, dashboard_url):
    once Ray is up, or right away when there is nothing to run (Ray is then never started); on_lost(line):
    the cluster is gone (default: print the line and exit 1); say(line): what the run wants the user to
    know (waiting for nodes to scale up); log_file: where Ray's and Tune's own messages go instead of
    the console.
    """

    callbacks: list = field(default_factory=list)
    on_start: Optional[Callable[[int, int, Optional[str]], None]] = None
    on_lost: Optional[Callable[[str], None]] = None
    say: Callable[[str], None] = lambda line: None
    log_file: Optional[Path] = None


def run_plan(plan: Plan, sweep: Sweep, address: Optional[str] = None, hooks: Optional[RunHooks] = None) -> RunSummary:
    """Train every trial of `plan` not yet committed in the sweep's store; return what happened.

    The store decides what is done: a first run, a `resume` after a crash and a re-run are the same
    call. Before training, a trial's demand is checked against the cluster (feasibility.py): infeasible
    is a UsageError; feasible only after scaling is said through `hooks.say` and bounded by
    `resources.scale_timeout`. While training, a watchdog calls `hooks.on_lost(line)` when the cluster
    is gone (nothing committed is lost, `resume` finishes the sweep).
    """
    hooks = hooks or RunHooks()
    spec, store = sweep.spec, sweep.store
    started = time.monotonic()
    tracking = mlflow_callbacks(spec)
    keys = set(plan.by_key())
    done = committed_keys(store) & keys
    summary = RunSummary(planned=len(plan), already_done=len(done))
    if done == keys:
        if hooks.on_start:
            hooks.on_start(0, len(done), None)
        return summary
    _, dashboard = connect(address, log_file=hooks.log_file)
    demand = trial_demand(spec.resources.cpus, spec.resources.gpus)
    verdict = judge(demand, live_nodes(), autoscaler_node_types())
    if verdict.kind == "infeasible":
        raise UsageError(verdict.line)
    if hooks.on_start:
        hooks.on_start(len(keys - done), len(done), dashboard)
    if verdict.kind == "scale":
        hooks.say(verdict.line)
    # The CLI draws its own progress; Tune's legacy reporter at verbose=0 prints nothing.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # With a custom searcher Tune keeps one trial pending, so ready trials start one at a time and an
    # autoscaler sees a demand of one (bench/scheduling.py: makespan/lower bound 1.09 -> 1.03).
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(2, min(len(keys - done), 100))))
    todo = [t for t in plan.trials if t.key not in done]
    # a fresh id per run: each run gives every trial the full retry budget again
    searcher = DependencySearcher(todo, done, sweep.ref, run=uuid.uuid4().hex[:12], retries=spec.retries,
                                  resources=(spec.resources.cpus, spec.resources.gpus))
    watchdog = Watchdog(ray.get_runtime_context().gcs_address, demand, hooks.on_lost or _exit_lost,
                        scale_seconds=spec.resources.scale_timeout if verdict.kind == "scale" else None,
                        waiting_for=verdict.line)
    with watchdog, _credentials_hidden_from_tune(), _no_tune_runtime_env(), _tune_start_up_trimmed():
        _new_tuner(spec, searcher, len(todo), [*hooks.callbacks, *tracking]).fit()
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
    print_error(f"{line}; committed results are kept: run `transfer-sweep resume` to finish")
    os._exit(EXIT_FAILED)


class ProgressCallback(tune.Callback):
    """Forwards Tune's trial events to a listener with plain methods (the CLI's progress display):
    started(name), finished(name, top1), retrying(name, resume_step), failed(name, where). The listener
    may be set later (None: events are dropped), once the display is up."""

    def __init__(self, listener, store: Store):
        self.listener, self.store = listener, store  # the run's store: it says where a retry resumes

    # Tune pickles its callbacks into the experiment state; a live display and a store client cannot
    # (and need not) go.
    def __getstate__(self):
        return {**self.__dict__, "listener": None, "store": None}

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
        if self.store is not None:
            step = newest_checkpoint_step(self.store, trial.config["settings"]["key"])
            self._call("retrying", self._name(trial), step)
