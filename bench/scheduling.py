"""Scheduling quality: makespan of the real plan through the real run_plan on a simulated cluster.

A `ray.cluster_utils.Cluster` with 3 worker nodes x 2 fake GPUs (plus a CPU-less head for the driver)
runs the trials of sweeps/standard.yaml (orchestrator.spec.plan.make_plan: 96 trainings, 5 bases) through
orchestrator.execution.schedule.run_plan with `resources.gpus=1`, its trainable swapped for a sleep of a KNOWN
duration: base 6 s, fine-tuned (selffer+, transfer+) 4 s, frozen (selffer, transfer, random) 4 s at
n=1 down to 2 s at n=7 (frozen layers get no backward pass, so deeper cuts train faster).

Arms on the same cluster, one after the other (order reversed on every other repeat):
  D   run_plan exactly as it is (DependencySearcher: a trial starts when its base is done);
  Dp  the same with TUNE_MAX_PENDING_TRIALS_PG = the plan's size. Tune lets a custom searcher keep
      ONE trial pending unless told otherwise (tune_controller._get_max_pending_trials), so trials
      start one at a time, each waiting for its placement group and actor;
  Bp  the baseline: run_plan with the searcher given a stage barrier (every dependency-free trial
      first, then the rest), pending as Dp;
  D6, B6 (optional, --arms) as Dp, Bp with 6 pending trials (the slot count).
Makespan = last trial end - first trial start, from the trials' own clocks. Lower bound =
max(critical path, total work / GPU slots). Last line:
    RATIO makespan/lower_bound=<D> (target <= 1.10) pending_plan=<Dp> barrier_pending_plan=<Bp> (...)
Usage: python bench/scheduling.py [--scale 1.0] [--repeats 1]
"""
from __future__ import annotations

import argparse
import contextlib
import heapq
import logging
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray._private.utils import get_ray_address_file  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from orchestrator.execution import schedule  # noqa: E402
from orchestrator.spec import Plan, PlannedTrial, Sweep, load_spec, make_plan  # noqa: E402
from sweepcore.store import open_store  # noqa: E402

NODES, GPUS_PER_NODE = 3, 2
SLOTS = NODES * GPUS_PER_NODE


def duration(trial: PlannedTrial, scale: float) -> float:
    """Known training time of a trial, in seconds."""
    if trial.treatment == "base":
        return 6.0 * scale
    if trial.treatment.endswith("+"):
        return 4.0 * scale
    return (4.0 - 2.0 * (trial.n - 1) / 6) * scale


def lower_bound(plan: Plan, durations: dict[str, float], slots: int) -> tuple[float, float, float]:
    """(bound, critical path, work / slots): no schedule on `slots` slots can finish sooner."""
    critical = max(durations[t.key] + (durations[t.base_key] if t.base_key else 0.0) for t in plan.trials)
    per_slot = sum(durations.values()) / slots
    return max(critical, per_slot), critical, per_slot


def simulate(plan: Plan, durations: dict[str, float], slots: int, barrier: bool) -> float:
    """Makespan of the same greedy policy with zero overhead: whenever a slot is free, start the first
    trial in plan order whose base is done (with `barrier`: once every dependency-free trial is done)."""
    pending, done, running, now = list(plan.trials), set(), [], 0.0  # running: (end, key)
    stage1 = {t.key for t in plan.trials if t.base_key is None}
    while pending or running:
        for t in list(pending):
            if len(running) == slots:
                break
            blocked = (t.base_key is not None and t.base_key not in done) or (
                barrier and t.base_key is not None and not stage1 <= done)
            if not blocked:
                pending.remove(t)
                running.append((now + durations[t.key], t.key))
        running.sort()
        now, key = running.pop(0)
        done.add(key)
    return now


class BarrierSearcher(schedule.DependencySearcher):
    """The baseline: the same searcher, but nothing with a dependency starts before every
    dependency-free trial (bases, random) has finished: a two-stage pipeline."""

    def __init__(self, trials, *args, **kwargs):
        super().__init__(trials, *args, **kwargs)
        self.stage1 = {t.key for t in trials if t.base_key is None}

    def _next_ready(self):
        stage1 = [entry for entry in self._ready if entry[1].base_key is None]
        if stage1:  # the first dependency-free trial in plan order
            first = min(stage1, key=lambda e: e[0])
            self._ready.remove(first)
            heapq.heapify(self._ready)
            return first[1]
        if self.stage1 - self.done - self.failed:
            return None  # the barrier: stage 1 still running
        return super()._next_ready()


def make_sleeper(durations: dict[str, float]):
    """A Tune trainable that sleeps for its trial's known duration and reports its own clock."""
    def sleep_trainable(config: dict) -> None:
        start = time.time()
        time.sleep(durations[config["settings"]["key"]])
        tune.report({"t_start": start, "t_end": time.time(), "node": ray.get_runtime_context().get_node_id()})
    return sleep_trainable


class Recorder(tune.Callback):
    """Collects the sleepers' reports in the driver."""

    def __init__(self):
        self.metrics: list[dict] = []

    def __getstate__(self):  # Tune pickles callbacks into its experiment state: keep that small
        return {"metrics": []}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "t_end" in result:
            self.metrics.append({k: result[k] for k in ("t_start", "t_end", "node")})


ARMS = {  # name: (searcher class, TUNE_MAX_PENDING_TRIALS_PG: None = Tune's default, "slots", "plan")
    "D": (schedule.DependencySearcher, None),
    "Dp": (schedule.DependencySearcher, "plan"),
    "Bp": (BarrierSearcher, "plan"),
    "D6": (schedule.DependencySearcher, "slots"),
    "B6": (BarrierSearcher, "slots"),
}
LABELS = {"D": "D  run_plan as is", "Dp": "Dp run_plan, pending = plan", "Bp": "Bp barrier, pending = plan",
          "D6": "D6 run_plan, pending = slots", "B6": "B6 barrier, pending = slots"}


def run_arm(arm: str, plan: Plan, spec, durations: dict[str, float], store_uri: str) -> dict:
    """run_plan on the connected cluster, with the sleeper as trainable and the arm's searcher."""
    searcher_cls, pending = ARMS[arm]
    pending = {None: None, "slots": str(SLOTS), "plan": str(len(plan))}[pending]
    saved = (schedule._trainable, schedule.DependencySearcher, os.environ.get("TUNE_MAX_PENDING_TRIALS_PG"))
    schedule._trainable, schedule.DependencySearcher = make_sleeper(durations), searcher_cls
    if pending is None:
        os.environ.pop("TUNE_MAX_PENDING_TRIALS_PG", None)
    else:
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = pending
    recorder = Recorder()
    try:
        sweep = Sweep(spec.model_copy(update={"store": store_uri}), open_store(store_uri))
        summary = schedule.run_plan(plan, sweep, hooks=schedule.RunHooks(callbacks=[recorder]))  # Ray is up: it joins
    finally:
        schedule._trainable, schedule.DependencySearcher = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop("TUNE_MAX_PENDING_TRIALS_PG", None)
        else:
            os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = saved[2]
    metrics = recorder.metrics
    # the sleepers commit nothing to the store, so run_plan's summary counts them as not done:
    # what matters is that every trial ran once
    if len(metrics) != len(plan):
        raise RuntimeError(f"arm {arm}: {len(metrics)} of {len(plan)} sleep trials reported")
    start, end = min(m["t_start"] for m in metrics), max(m["t_end"] for m in metrics)
    events = sorted([(m["t_start"], 1) for m in metrics] + [(m["t_end"], -1) for m in metrics])
    peak = running = 0
    for _, delta in events:  # the most trials ever running at once, from their own clocks
        running += delta
        peak = max(peak, running)
    return {"makespan": end - start, "wall": summary.wall_seconds, "trials": len(metrics), "peak": peak,
            "nodes": len({m["node"] for m in metrics}), "busy": sum(m["t_end"] - m["t_start"] for m in metrics)}


def _restore_address_file(path: str, previous: str | None) -> None:
    """Put back /tmp/ray/ray_current_cluster as it was: Cluster() writes its own address there, and any
    `ray.init()` without an address on this machine (someone else's test, say) would join the bench's
    fake-GPU cluster."""
    if previous is None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    else:
        Path(path).write_text(previous)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every duration")
    parser.add_argument("--repeats", type=int, default=1, help="runs per arm, order reversed every other repeat")
    parser.add_argument("--arms", default="D,Dp,Bp", help="comma-separated subset of " + ",".join(ARMS))
    args = parser.parse_args()
    arms = args.arms.split(",")

    spec = load_spec(ROOT / "sweeps" / "standard.yaml", ("resources.gpus=1", "resources.cpus=1"))
    plan = make_plan(spec)
    durations = {t.key: duration(t, args.scale) for t in plan.trials}
    bound, critical, per_slot = lower_bound(plan, durations, SLOTS)
    print(f"plan sweeps/standard.yaml: {len(plan)} trials, {len(plan.bases)} bases, total work "
          f"{sum(durations.values()):.0f} s on {NODES} nodes x {GPUS_PER_NODE} GPUs = {SLOTS} slots")
    sim = {b: simulate(plan, durations, SLOTS, b) for b in (False, True)}
    print(f"lower bound {bound:.1f} s = max(critical path {critical:.1f} s, work/slots {per_slot:.1f} s); "
          f"the same policy with zero overhead, simulated: {sim[False]:.1f} s (/bound {sim[False] / bound:.2f}), "
          f"with the barrier {sim[True]:.1f} s (/bound {sim[True] / bound:.2f}); load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)

    temp_dir = tempfile.mkdtemp(prefix="tsc-", dir="/tmp")  # short: AF_UNIX socket path limit
    work = tempfile.mkdtemp(prefix="bench-scheduling-")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    address_file = get_ray_address_file(None)
    previous = Path(address_file).read_text() if os.path.exists(address_file) else None
    t0 = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "num_gpus": 0, "include_dashboard": False, "dashboard_port": free_port(),
        "temp_dir": temp_dir})
    _restore_address_file(address_file, previous)  # the driver below connects by explicit address
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    try:
        for _ in range(NODES):
            cluster.add_node(num_cpus=GPUS_PER_NODE, num_gpus=GPUS_PER_NODE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        print(f"cluster up in {time.time() - t0:.1f} s: {ray.cluster_resources().get('GPU')} GPUs", flush=True)
        for i in range(args.repeats):
            for arm in arms if i % 2 == 0 else arms[::-1]:
                r = run_arm(arm, plan, spec, durations, f"{work}/store-{arm}{i}")
                results[arm].append(r)
                print(f"run {i + 1} {arm:<3}: makespan {r['makespan']:5.1f} s (/bound {r['makespan'] / bound:.2f})  "
                      f"run_plan {r['wall']:5.1f} s  {r['trials']} trials on {r['nodes']} nodes, peak "
                      f"{r['peak']} at once, slot use {r['busy'] / (SLOTS * r['makespan']):.0%}  "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
        _restore_address_file(address_file, previous)  # shutdown() deletes the file, whoever wrote it
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    med = {arm: statistics.median(r["makespan"] for r in results[arm]) for arm in arms}
    wall = {arm: statistics.median(r["wall"] for r in results[arm]) for arm in arms}
    print()
    print(f"{'median over ' + str(args.repeats) + ' runs':<30}{'makespan':>10}{'/bound':>8}{'run_plan':>10}")
    print(f"{'lower bound':<30}{bound:>8.1f} s{1:>8.2f}")
    for arm in arms:
        print(f"{LABELS[arm]:<30}{med[arm]:>8.1f} s{med[arm] / bound:>8.2f}{wall[arm]:>8.1f} s")
    names = {"D": "makespan/lower_bound", "Dp": "pending_plan", "Bp": "barrier_pending_plan", "D6": "pending_slots",
             "B6": "barrier_pending_slots"}
    parts = [f"{names[arm]}={med[arm] / bound:.2f}" + (" (target <= 1.10)" if arm == "D" else "") for arm in arms]
    if "Dp" in med and "Bp" in med:
        parts.append(f"(Bp must exceed Dp: {'yes' if med['Bp'] > med['Dp'] else 'NO'})")
    print("RATIO " + " ".join(p for p in parts if p))


if __name__ == "__main__":
    main()
