"""What Ray Tune runs for each trial: the one place the driver's code reaches into `workers` (imported
lazily, so the driver never imports torch).

Two processes take part in a trial, and both outlive it:
- the **slot**: Tune's trainable actor (class `TransferTrial`), reused from trial to trial
  (`reuse_actors=True`). It holds no resources of its own (an empty head bundle) and does no work:
  it starts the attempt and forwards what it yields to `tune.report`.
- the **attempt**: a Ray task named after the trial and its key ("AnB+ n=5 random:0 s0 [3fa2...]"),
  which asks for the trial's CPUs and GPUs inside the trial's placement group and runs on one of
  Ray's idle workers. Ray keeps a finished task's worker for the next task, so torch is imported,
  and a split's arrays are loaded, once per process, not once per trial (bench/overhead.py).

The name: Ray fixes an actor's name when the actor is created (Ray 2.60 has no call to change it),
so a reused actor cannot carry its trial's name; a task's name is given per call. The dashboard's
task table, the State API (`ray list tasks`) and the worker's log prefix show it, and the worker's
process title while it trains is `ray::<name>`.

Each attempt records where it resumes from, gives up (without training) when the trial's recent
attempts made no progress (retries.py), and otherwise runs the trial to its committed row. Failures
are recorded in the store with their traceback and where the worker's log is. A killed attempt
(its process SIGKILLed) fails the trial's Tune run, which Tune retries.
"""
from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from typing import Any, Generator, Iterator

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
    """Tune trainable (the slot). `config`: settings (TrialSettings as a dict), store (a StoreRef), run
    (the driver run's id: retries count attempts of this run only), retries, and cpus and gpus (what
    the attempt asks for)."""
    slot_start, reporting = time.time(), 0.0
    attempt = _attempt.options(name=trial_label(config), num_cpus=config["cpus"], num_gpus=config["gpus"])
    stream: Any = attempt.remote(config)  # an ObjectRefGenerator: one ref per yielded value
    for ref in stream:
        values = ray.get(ref)
        if "committed" in values:  # the last report: with where the slot's time went (bench/overhead.py)
            values = {**values, "t_slot_start": slot_start, "s_report": reporting,
                      "slot": ray.get_runtime_context().get_actor_id()}
        start = time.perf_counter()
        tune.report(values)
        reporting += time.perf_counter() - start


# max_calls=0: Ray would otherwise end a GPU task's worker after one call (its default for GPU tasks),
# and with it the warm process. max_retries=0: a lost attempt is Tune's to retry (it counts attempts).
@ray.remote(num_returns="streaming", max_calls=0, max_retries=0)
def _attempt(config: dict) -> Iterator[dict]:
    """One attempt at a trial, on a worker that stays warm: yields what the slot reports to Tune (a
    result per evaluation; then committed or gave_up)."""
    attempt_start = time.time()
    warm = "workers.trial" in sys.modules  # preloaded by Ray, or imported by an earlier trial
    from workers.trial import run_trial  # noqa: PLC0415 (the driver must not import torch)
    timings = {"import": time.time() - attempt_start}

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
            yield {"gave_up": 1, "committed": 0}
            return
        record_attempt(store, key, run=run, warm=warm)
        where = f"step {steps[-1]}" if steps[-1] else "the start"
        print(f"trial {settings.name} [{key}] of sweep {settings.sweep}: training from {where} on node "
              f"{ray.util.get_node_ip_address()}, GPUs {ray.get_gpu_ids() or 'none'}, "
              f"{'warm' if warm else 'cold'} worker", flush=True)

    try:
        with _heartbeat(store, key, run, metrics):
            row = yield from _training(run_trial, settings, store, metrics, timings)
    except Exception as exc:
        record_exception(store, key, exc, _log_location())
        raise
    finally:
        metrics.finished()
    print(f"trial {settings.name} [{key}]: committed, top-1 {row['top1_paper']:.4f}", flush=True)
    yield {"top1_paper": row["top1_paper"], "top1_final": row["top1_final"], "committed": 1,
           "t_attempt_start": attempt_start, "t_attempt_end": time.time(),
           **{f"s_{phase.replace(' ', '_')}": seconds for phase, seconds in timings.items()}}


_END = object()


def _training(run_trial, settings: TrialSettings, store: Store, metrics: TrialMetrics,
              timings: dict[str, float]) -> Generator[dict, None, dict]:
    """Run the trial in a thread and yield each evaluation's metrics as the training reports them (a
    generator cannot yield from inside the training loop's callback); return the committed row.
    `timings` receives run_trial's phases (workers.trial.PHASES)."""
    channel: "queue.Queue" = queue.Queue()
    outcome: dict = {}

    def report(values: dict) -> None:
        metrics.reported(values)
        channel.put({**values, "timesteps_total": values["step"]})  # TensorBoard's x axis: SGD steps

    def train() -> None:
        try:
            outcome["row"] = run_trial(settings, store, report=report, timings=timings)
        except BaseException as exc:  # noqa: BLE001 (re-raised below, in the task's thread)
            outcome["error"] = exc
        finally:
            channel.put(_END)
    thread = threading.Thread(target=train, name=f"train-{settings.key}", daemon=True)
    thread.start()
    while (item := channel.get()) is not _END:
        yield item
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["row"]


def trial_label(config: dict) -> str:
    """What the Ray dashboard calls a trial's attempt (its task name): 'AnB+ n=5 random:0 s0 [<key>]'."""
    settings = config.get("settings") or {}
    return f"{settings.get('name', 'trial')} [{settings.get('key', '?')}]"


def slot_actor(trainable) -> type:
    """Tune's function trainable for `trainable`, as a class named `TransferTrial` (the dashboard's
    Class column) whose reused actors read 'transfer-sweep slot' (they run one trial after another:
    the trial's name is its attempt's task name)."""
    class TransferTrial(wrap_function(trainable)):  # type: ignore[misc]
        def __repr__(self) -> str:
            return "transfer-sweep slot"

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
    """Where the attempt's log is: its node, and the Ray command that prints it."""
    node = ray.util.get_node_ip_address() if ray.is_initialized() else os.uname().nodename
    try:
        task = ray.get_runtime_context().get_task_id()
        return f"node {node}: `ray logs task --id {task}`"
    except Exception:  # noqa: BLE001 (best effort: a log path is a hint, never a reason to fail)
        return f"node {node}: Ray worker logs"
