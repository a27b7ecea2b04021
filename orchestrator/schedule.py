"""Run a plan as one Ray Tune experiment, releasing each trial the moment its base is committed.

Tune has no notion of dependencies between trials
(ray-project/ray#23654), so a Searcher does it: `suggest()` hands out a trial only once its base's
result is in the store, returns None while everything left is waiting, and FINISHED when nothing is
left. There is no barrier between bases and transfers: a transfer starts seconds after its base.

The store is the source of truth, not Tune's state: trials whose result is committed are never handed
out, and a trial that runs twice (a retry, a restored experiment) finds its own committed result and
returns it, so every key gets exactly one row.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import pickle
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional

import ray
from ray import tune
from ray.tune.search import Searcher

from orchestrator.plan import Plan, PlannedTrial
from orchestrator.ray_session import connect
from orchestrator.spec import SweepSpec
from sweepcore.layout import sweep_prefix
from sweepcore.records import committed_keys, read_result, record_attempt, record_failure
from sweepcore.settings import TrialSettings
from sweepcore.store import open_store

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: counts the CLI prints and turns into an exit code."""

    planned: int
    already_done: int
    completed: int = 0
    failed: list[str] = field(default_factory=list)   # keys whose trial errored after all retries
    blocked: list[str] = field(default_factory=list)  # keys whose base failed, so never started
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


class DependencySearcher(Searcher):
    """Hands out pending trials in plan order as soon as their base trial has committed a result."""

    def __init__(self, trials: list[PlannedTrial], done: set[str], store_uri: str, endpoint: Optional[str]):
        super().__init__()  # no metric: this searcher orders work, it does not optimise
        self.pending = list(trials)
        self.done = set(done)
        self.failed: set[str] = set()
        self.blocked: list[PlannedTrial] = []
        self.running: dict[str, str] = {}  # tune trial id -> key
        self.store_uri, self.endpoint = store_uri, endpoint

    def suggest(self, trial_id: str):
        for i, trial in enumerate(self.pending):
            if trial.base_key is None or trial.base_key in self.done:
                del self.pending[i]
                self.running[trial_id] = trial.key
                return {"settings": trial.settings.to_dict(), "store_uri": self.store_uri, "endpoint": self.endpoint}
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

    # Tune snapshots the searcher with the experiment so `Tuner.restore` can continue it.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        # A restored experiment retries its errored trials (resume_errored): trials given up on because
        # their base had failed wait for it again instead of staying blocked.
        self.pending, self.blocked, self.failed = self.blocked + self.pending, [], set()

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        key = self.running.pop(trial_id, None)
        if key is not None:
            (self.failed if error else self.done).add(key)


def _trainable(config: dict) -> None:
    """Tune trainable: run one trial in this worker. The one place the driver's code reaches into
    `workers`, lazily, so the driver never imports torch."""
    from workers.trial import run_trial  # noqa: PLC0415 (the driver must not import torch)

    settings = TrialSettings.from_dict(config["settings"])
    store = open_store(config["store_uri"], config["endpoint"], check=False)
    if read_result(store, settings.key) is None:
        record_attempt(store, settings.key)
    try:
        row = run_trial(settings, store, report=lambda metrics: tune.report(metrics))
    except Exception as exc:
        where = _log_location()
        record_failure(store, settings.key, f"{type(exc).__name__}: {exc}".splitlines()[0],
                       traceback.format_exc(), where)
        raise
    tune.report({"top1_paper": row["top1_paper"], "top1_final": row["top1_final"], "committed": 1})


def _log_location() -> str:
    try:
        ctx = tune.get_context()
        return f"node {ray.util.get_node_ip_address()}: {ctx.get_trial_dir()}"
    except Exception:  # noqa: BLE001 (best effort: a log path is a hint, never a reason to fail)
        return f"node {os.uname().nodename}: Ray worker logs"


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


def tune_storage(spec: SweepSpec, store_uri: str) -> str:
    """Where Tune keeps its experiment state: beside the sweep in a local store; on the driver's disk
    for an object store, because Tune would read S3 credentials from the driver's environment, which
    is hidden from it (see _credentials_hidden_from_tune). The store, not Tune's state, is what
    resume relies on."""
    if "://" not in store_uri:
        return os.path.join(os.path.abspath(store_uri), sweep_prefix(spec.name), "tune")
    return os.path.join(os.path.expanduser("~"), "ray_results", "transfer-sweep", spec.name)


def restorable_experiment(spec: SweepSpec, store_uri: str) -> Optional[str]:
    """The newest Tune experiment of this sweep that `Tuner.restore` can continue, if any."""
    root = tune_storage(spec, store_uri)
    runs = sorted(glob.glob(os.path.join(root, f"{spec.name}-*")), reverse=True)
    return next((path for path in runs if tune.Tuner.can_restore(path)), None)


def _trainable_with_resources(spec: SweepSpec):
    return tune.with_resources(_trainable, {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus})


def _new_tuner(spec: SweepSpec, store_uri: str, searcher: DependencySearcher, num_samples: int,
               callbacks: list) -> tune.Tuner:
    return tune.Tuner(
        _trainable_with_resources(spec),
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=num_samples, reuse_actors=True,
            max_concurrent_trials=spec.max_concurrent,
            trial_name_creator=lambda t: t.config["settings"]["name"],
            trial_dirname_creator=lambda t: t.config["settings"]["key"]),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=tune_storage(spec, store_uri),
            failure_config=tune.FailureConfig(max_failures=spec.retries),
            callbacks=callbacks, verbose=0),
    )


def _restore_tuner(path: str, spec: SweepSpec, callbacks: list) -> tune.Tuner:
    tuner = tune.Tuner.restore(path, trainable=_trainable_with_resources(spec), resume_errored=True)
    # Tuner.restore takes no RunConfig; the progress display is not part of the pickled state.
    local = tuner._local_tuner
    assert local is not None, "Tuner.restore on the driver always has a local tuner"
    local.get_run_config().callbacks = callbacks
    return tuner


def run_plan(plan: Plan, spec: SweepSpec, store_uri: str, endpoint: Optional[str] = None,
             address: Optional[str] = None, callbacks: Optional[list] = None,
             on_start: Optional[Callable[[int, int, Optional[str]], None]] = None,
             restore: bool = False) -> RunSummary:
    """Train every trial of `plan` not yet committed in the store; return what happened.

    With `restore`, the sweep's newest Tune experiment is continued first (`Tuner.restore`, errored
    trials retried); whatever is still not committed after it runs in a new experiment. Either way
    the store decides what is done, so a trial that Tune's (possibly stale) snapshot thought
    unfinished just finds its committed row. `on_start(to_run, already_done, dashboard_url)` is
    called once Ray is up, or right away when there is nothing to run (Ray is then never started).
    """
    started = time.monotonic()
    store = open_store(store_uri, endpoint)
    keys = set(plan.by_key())
    done = committed_keys(store) & keys
    summary = RunSummary(planned=len(plan), already_done=len(done))
    if done == keys:
        if on_start:
            on_start(0, len(done), None)
        return summary
    _, dashboard = connect(address)
    if on_start:
        on_start(len(keys - done), len(done), dashboard)
    # The CLI draws its own progress; Tune's legacy reporter at verbose=0 prints nothing.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # With a custom searcher Tune keeps one trial pending, so ready trials start one at a time and an
    # autoscaler sees a demand of one (bench/scheduling.py: makespan/lower bound 1.09 -> 1.03).
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(2, min(len(keys - done), 100))))
    callbacks = callbacks or []
    previous = restorable_experiment(spec, store_uri) if restore else None
    if previous:
        log.warning("continuing Tune experiment %s", previous)
        with _credentials_hidden_from_tune():
            _restore_tuner(previous, spec, callbacks).fit()
    now_done = committed_keys(store) & keys
    todo = [t for t in plan.trials if t.key not in now_done]
    if todo:
        searcher = DependencySearcher(todo, now_done, store_uri, endpoint)
        with _credentials_hidden_from_tune():
            _new_tuner(spec, store_uri, searcher, len(todo), callbacks).fit()
    committed = committed_keys(store) & keys
    summary.completed = len(committed) - len(done)
    by_key = plan.by_key()
    missing = [k for k in by_key if k not in committed]
    summary.blocked = sorted(k for k in missing if by_key[k].base_key and by_key[k].base_key not in committed)
    summary.failed = sorted(k for k in missing if k not in summary.blocked)
    summary.wall_seconds = time.monotonic() - started
    return summary


class ProgressCallback(tune.Callback):
    """Forwards Tune's trial events to a listener with plain methods (the CLI's progress display)."""

    def __init__(self, listener):
        self.listener = listener

    # Tune pickles its callbacks into the experiment state; a live display cannot (and need not) go.
    def __getstate__(self):
        return {"listener": None}

    def _call(self, method, *args):
        if self.listener is not None:
            getattr(self.listener, method)(*args)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._call("started", trial.config["settings"]["name"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("committed"):
            self._call("finished", trial.config["settings"]["name"], result.get("top1_paper"))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._call("failed", trial.config["settings"]["name"], str(trial.error_file or ""))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._call("retrying", trial.config["settings"]["name"])
