"""`transfer-sweep status`: the state of every planned trial, read from the store alone (no Ray).

A running attempt writes a heartbeat every few seconds (trainable.py); one whose heartbeat stopped
(its worker, node or driver died) is *interrupted*, not running, and no ETA is shown for work nobody is
doing.
"""
from __future__ import annotations

import enum
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from rich.console import Console
from rich.table import Table

from orchestrator.lease import CLOCK_SKEW_SECONDS
from orchestrator.plan import Plan
from orchestrator.spec import SweepSpec
from orchestrator.spec_source import resume_command
from sweepcore.layout import failures_prefix
from sweepcore.records import committed_keys, read_heartbeat, read_progress, read_record, read_results
from sweepcore.store import Store
from sweepcore.terminal import for_terminal

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


def print_status(spec: SweepSpec, plan: Plan, store: Store, console: Console) -> int:
    """Print the status table, bar, ETA and failures. Exit 1 when some trial has failed."""
    states = trial_states(plan, store)
    table = Table(title=f"sweep {spec.name}: {len(plan)} trials in {store.uri()}")
    for col in ("treatment", "split", *[s.value for s in TrialState]):
        table.add_column(col, justify="left" if col in ("treatment", "split") else "right")
    groups: dict[tuple, Counter] = defaultdict(Counter)
    for s in states:
        groups[(s.treatment, s.split)][s.state] += 1
    for (treatment, split), c in groups.items():
        table.add_row(treatment, split, *[str(c[s]) for s in TrialState])
    console.print(table)
    total = Counter(s.state for s in states)
    eta = eta_seconds(store, states)
    if eta is not None:
        eta_text = f"{eta / 60:.1f} min"
    elif not total[TrialState.RUNNING]:
        eta_text = f"none: nothing is running (`{resume_command(spec)}` finishes it)"
    else:
        eta_text = "unknown (nothing finished yet)"
    counts_line = " ".join(f"{s.value} {total[s]}" for s in TrialState) + f"; ETA {eta_text}"
    filled = round(50 * total[TrialState.DONE] / max(1, len(plan)))
    console.print(f"[green]{'━' * filled}[/][grey50]{'━' * (50 - filled)}[/] "
                  f"{total[TrialState.DONE]}/{len(plan)}")
    console.print(counts_line)
    for s in states:
        if s.state is TrialState.RUNNING:
            console.print(f"running {s.name}: step {s.step}/{s.total_steps}", markup=False)
    for s in states:
        if s.state is TrialState.INTERRUPTED:
            when = datetime.fromtimestamp(s.since or 0).strftime("%Y-%m-%d %H:%M:%S")
            console.print(f"interrupted {s.name}: last alive {when} at step {s.step or 0}/{s.total_steps or '?'}",
                          markup=False)
    for s in states:
        if s.state is TrialState.FAILED:
            console.print(f"failed {s.name}: {for_terminal(s.error, 2000)}\n    log: {for_terminal(s.where, 500)}\n"
                          f"    record: {for_terminal(s.record, 500)}", markup=False, style="red")
    return 1 if total[TrialState.FAILED] else 0
