"""The state of every planned trial of a sweep, read from the store alone (no Ray): what `status`
prints (cli/status.py) and what the chaos drill checks.

A running attempt writes a heartbeat every few seconds (trainable.py); one whose heartbeat stopped
(its worker, node or driver died) is *interrupted*, not running, and no ETA is shown for work nobody is
doing.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from orchestrator.execution.lease import CLOCK_SKEW_SECONDS
from orchestrator.spec.plan import Plan
from sweepcore.layout import failures_prefix
from sweepcore.records import committed_keys, read_heartbeat, read_progress, read_record, read_results
from sweepcore.store import Store

# An attempt that has not beaten for this long is no longer running (it beats every 10 s).
STALE_SECONDS = 60.0


class TrialState(str, enum.Enum):
    DONE = "done"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True)
class TrialStatus:
    """One planned trial as the store sees it."""

    key: str
    name: str
    treatment: str
    split: str
    state: TrialState
    step: Optional[int] = None
    total_steps: Optional[int] = None
    error: Optional[str] = None
    where: Optional[str] = None
    record: Optional[str] = None
    since: Optional[float] = None  # interrupted: the time of the last sign of life (epoch seconds)


def trial_states(plan: Plan, store: Store, now: Optional[float] = None) -> list[TrialStatus]:
    """Classify each planned trial: done (result committed), failed (a failure newer than any sign of
    life), running (a fresh heartbeat), interrupted (it had started, but its heartbeat stopped), pending
    (never started)."""
    now = time.time() if now is None else now
    done = committed_keys(store)
    out = []
    for t in plan.trials:
        base: dict[str, Any] = dict(key=t.key, name=t.name, treatment=t.treatment, split=t.split)
        if t.key in done:
            out.append(TrialStatus(state=TrialState.DONE, **base))
            continue
        progress = read_progress(store, t.key) or {}
        heartbeat = read_heartbeat(store, t.key) or {}
        failure, failure_path = _newest_failure(store, t.key)
        # a sign of life dated ahead of this clock (skew aside) is not one: it would read "running" forever
        alive = max((t for t in (_epoch(progress.get("updated_at")), _epoch(heartbeat.get("at")))
                     if t <= now + CLOCK_SKEW_SECONDS), default=0.0)
        steps: dict[str, Any] = dict(step=progress.get("step"), total_steps=progress.get("total_steps"))
        if failure and _epoch(failure.get("at")) >= alive:
            out.append(TrialStatus(state=TrialState.FAILED, error=failure.get("error"),
                                   where=failure.get("where"), record=store.uri(failure_path), **base))
        elif alive and now - alive < STALE_SECONDS:
            out.append(TrialStatus(state=TrialState.RUNNING, **steps, **base))
        elif alive:
            out.append(TrialStatus(state=TrialState.INTERRUPTED, since=alive, **steps, **base))
        else:
            out.append(TrialStatus(state=TrialState.PENDING, **base))
    return out


def _newest_failure(store: Store, key: str) -> tuple[Optional[dict], str]:
    """The newest valid failure record of `key` and its path: a damaged one is named and skipped."""
    for path in sorted((p for p in store.list(failures_prefix(key)) if p.endswith(".json")), reverse=True):
        record = read_record(store, path, "failure")
        if record is not None:
            return record, path
    return None, ""


def _epoch(iso: Optional[str]) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


def eta_seconds(store: Store, states: list[TrialStatus]) -> Optional[float]:
    """Remaining work / parallelism, from the mean wall time of the committed trials; None when nothing
    has finished yet or nothing is running (then nobody is doing the work)."""
    left = sum(s.state in (TrialState.PENDING, TrialState.RUNNING, TrialState.INTERRUPTED) for s in states)
    if not left:
        return 0.0
    if not any(s.state is TrialState.RUNNING for s in states):
        return None
    walls = read_results(store, {s.key for s in states if s.state is TrialState.DONE}).column("wall_seconds")
    if len(walls) == 0:
        return None
    mean = sum(walls.to_pylist()) / len(walls)
    parallel = max(1, sum(s.state is TrialState.RUNNING for s in states))
    return left * mean / parallel
