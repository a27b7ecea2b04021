"""The CLI's live view of a sweep: one bar with done / failed / running / pending and an ETA.

Where the console is not a terminal (a Ray Job's driver log, CI, `| tee`), a bar draws nothing useful,
so a summary line with the same counts, the throughput and the ETA is printed at a steady interval
(TRANSFER_SWEEP_PROGRESS_SECONDS, default 30) besides the one line per event.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PROGRESS_ENV = "TRANSFER_SWEEP_PROGRESS_SECONDS"
PROGRESS_SECONDS = 30.0


def make_bar(console: Console) -> Progress:
    """A rich progress bar whose task carries failed/running/pending counts as fields."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[green]done {task.fields[done]}[/] [red]failed {task.fields[failed]}[/] "
                   "[yellow]running {task.fields[running]}[/] pending {task.fields[pending]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)


class SweepProgress:
    """Listener for schedule.ProgressCallback: keeps the counts and prints one line per finished trial."""

    def __init__(self, console: Console, total: int, already_done: int, name: str,
                 publish: Optional[Callable[[dict], None]] = None):
        """`publish(counts)` receives done/failed/running/pending at every change (the sweep's Ray
        metrics, metrics.py)."""
        self.console, self.total, self.publish = console, total, publish
        self.n_done, self.n_failed = already_done, 0
        self.running: set[str] = set()
        self.bar = make_bar(console)
        self.task = self.bar.add_task(name, total=total, completed=already_done, **self._fields())
        self.started_at = time.monotonic()
        self.name, self.already_done = name, already_done
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None
        if not console.is_terminal:
            every = float(os.environ.get(PROGRESS_ENV, "") or PROGRESS_SECONDS)
            self._ticker = threading.Thread(target=self._tick, args=(every,), name="progress-lines", daemon=True)

    def summary(self) -> str:
        """'progress demo: done 5/23, running 2, failed 0, pending 16; 1.5 trials/min; ETA 12 min'."""
        f = self._fields()
        minutes = (time.monotonic() - self.started_at) / 60
        trained = self.n_done - self.already_done
        rate = trained / minutes if minutes > 0 else 0.0
        left = f["running"] + f["pending"]
        eta = f"ETA {left / rate:.1f} min" if rate > 0 else "ETA unknown (nothing finished yet)"
        return (f"progress {self.name}: done {self.n_done}/{self.total}, running {f['running']}, failed "
                f"{self.n_failed}, pending {f['pending']}; {rate:.1f} trials/min; {eta if left else 'ETA 0 min'}")

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self.console.print(self.summary(), markup=False, highlight=False)

    def _fields(self) -> dict:
        pending = self.total - self.n_done - self.n_failed - len(self.running)
        return dict(done=self.n_done, failed=self.n_failed, running=len(self.running), pending=max(0, pending))

    def _refresh(self) -> None:
        fields = self._fields()
        self.bar.update(self.task, completed=self.n_done + self.n_failed, **fields)
        if self.publish is not None:
            self.publish(fields)

    def __enter__(self):
        self.bar.start()
        self._refresh()
        if self._ticker is not None:
            self._ticker.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        """End the display (once; a second call does nothing): the run ended, or its driver must exit now."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.bar.stop()
        if self._ticker is not None:
            self.console.print(self.summary(), markup=False, highlight=False)

    def started(self, name: str) -> None:
        self.running.add(name)
        self.console.print(f"[cyan]start[/] {name}")
        self._refresh()

    def retrying(self, name: str, resume_step: int) -> None:
        where = f"from step {resume_step}" if resume_step else "from the start (no checkpoint yet)"
        self.console.print(f"[yellow]retry[/] {name:<28} resumes {where}")

    def finished(self, name: str, top1: Optional[float]) -> None:
        self.running.discard(name)
        self.n_done += 1
        score = f"top-1 {top1:.4f}" if top1 is not None else ""
        self.console.print(f"[green]ok[/]    {name:<28} {score}")
        self._refresh()

    def failed(self, name: str, error_file: str) -> None:
        self.running.discard(name)
        self.n_failed += 1
        self.console.print(f"[red]fail[/]  {name:<28} log: {error_file}")
        self._refresh()
