"""The function Ray Tune runs on a worker for each trial: the one place the driver's code reaches into
`workers` (imported lazily, so the driver never imports torch).

Each call is one attempt. It records where it resumes from, gives up (without training) when the
trial's recent attempts made no progress (retries.py), and otherwise runs the trial to its committed
row. Failures are recorded in the store with their traceback and where the worker's log is.

In the Ray dashboard every trial is its own actor of class `TransferTrial` whose repr is the trial's
readable name and key ("AnB+ n=5 random:0 s0 [3fa2...]"): the Actors page shows and searches it, the
actor's task is named after it ("... .train") and every line the trial logs carries it as a prefix.
Ray fixes an actor's repr when the actor is created (Ray 2.60 has no call to change it later), which
is why the schedule does not reuse actors between trials.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

import ray
from ray import tune
from ray.tune.trainable.function_trainable import wrap_function

from orchestrator.execution.metrics import TrialMetrics
from orchestrator.execution.retries import give_up_line, should_give_up
from sweepcore.records import (
    newest_checkpoint_step,
    read_attempts,
    read_failures,
    read_result,
    record_attempt,
    record_exception,
    record_failure,
    write_heartbeat,
)
from sweepcore.settings import TrialSettings
from sweepcore.store import Store, StoreError

HEARTBEAT_SECONDS = 10.0  # status calls an attempt interrupted after a few missed beats


def _trainable(config: dict) -> None:
    """Tune trainable. `config`: settings (TrialSettings as a dict), store (a StoreRef), run (the
    driver run's id: retries count attempts of this run only) and retries."""
    warm = "workers.trial" in sys.modules  # preloaded by Ray before the trial came (session.PRELOAD_MODULES)
    from workers.trial import run_trial  # noqa: PLC0415 (the driver must not import torch)

    settings = TrialSettings.from_dict(config["settings"])
    key, run = settings.key, config["run"]
    store = config["store"].open()  # unchecked: the driver checked it before the run
    metrics = TrialMetrics(settings.sweep, settings.name, key)
    if read_result(store, key) is None:
        steps = [a.get("resume_step", 0) for a in read_attempts(store, key) if a.get("run") == run]
        steps.append(newest_checkpoint_step(store, key))
        if should_give_up(steps, int(config["retries"])):
            failures = read_failures(store, key)
            last = failures[-1].get("error") if failures else None
            record_failure(store, key, give_up_line(steps, last), "", _log_location())
            print(f"gave up: {give_up_line(steps, last)}", flush=True)
            tune.report({"gave_up": 1, "committed": 0})
            return
        record_attempt(store, key, run=run, warm=warm)
        where = f"step {steps[-1]}" if steps[-1] else "the start"
        print(f"trial {settings.name} [{key}] of sweep {settings.sweep}: training from {where} on node "
              f"{ray.util.get_node_ip_address()}, GPUs {ray.get_gpu_ids() or 'none'}, "
              f"{'warm' if warm else 'cold'} worker", flush=True)

    def report(values: dict) -> None:
        metrics.reported(values)
        tune.report({**values, "timesteps_total": values["step"]})  # TensorBoard's x axis: SGD steps
    try:
        with _heartbeat(store, key, run, metrics):
            row = run_trial(settings, store, report=report)
    except Exception as exc:
        record_exception(store, key, exc, _log_location())
        raise
    finally:
        metrics.finished()
    print(f"trial {settings.name} [{key}]: committed, top-1 {row['top1_paper']:.4f}", flush=True)
    tune.report({"top1_paper": row["top1_paper"], "top1_final": row["top1_final"], "committed": 1})


def actor_label(config: dict) -> str:
    """What the Ray dashboard calls a trial's actor: 'AnB+ n=5 random:0 s0 [<key>]'."""
    settings = config.get("settings") or {}
    return f"{settings.get('name', 'trial')} [{settings.get('key', '?')}]"


def named_trial_actor(trainable) -> type:
    """Tune's function trainable for `trainable`, as a class (`TransferTrial`) whose actors are named
    after the trial they run (see the module doc)."""
    class TransferTrial(wrap_function(trainable)):  # type: ignore[misc]
        def __repr__(self) -> str:
            return actor_label(getattr(self, "config", None) or {})

    return TransferTrial


@contextlib.contextmanager
def _heartbeat(store: Store, key: str, run: str, metrics: TrialMetrics) -> Iterator[None]:
    """Beat every HEARTBEAT_SECONDS while the block runs (and refresh the checkpoint-age metric); a
    killed worker simply stops beating."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                write_heartbeat(store, key, run)
            except (StoreError, OSError):
                pass  # a missed beat only makes status cautious; the training must not fail for it
            metrics.tick()
            if stop.wait(HEARTBEAT_SECONDS):
                return
    thread = threading.Thread(target=beat, name=f"heartbeat-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _log_location() -> str:
    try:
        ctx = tune.get_context()
        return f"node {ray.util.get_node_ip_address()}: {ctx.get_trial_dir()}"
    except Exception:  # noqa: BLE001 (best effort: a log path is a hint, never a reason to fail)
        return f"node {os.uname().nodename}: Ray worker logs"
