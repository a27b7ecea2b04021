"""The CLI's live view of a sweep: one bar with done / failed / running / pending and an ETA."""
from __future__ import annotations

import time
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def make_bar(console: Console) -> Progress:
    """A rich progress bar whose task carries failed/running/pending counts as fields."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[green]done {task.fields[done]}[/] [red]failed {task.fields[failed]}[/] "
                   "[yellow]running {task.fields[running]}[/] pending {task.fields[pending]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)


class SweepProgress:
    """Listener for schedule.ProgressCallback: keeps the counts and prints one line per finished trial."""

    def __init__(self, console: Console, total: int, already_done: int, name: str):
        self.console, self.total = console, total
        self.n_done, self.n_failed = already_done, 0
        self.running: set[str] = set()
        self.bar = make_bar(console)
        self.task = self.bar.add_task(name, total=total, completed=already_done, **self._fields())
        self.started_at = time.monotonic()

    def _fields(self) -> dict:
        pending = self.total - self.n_done - self.n_failed - len(self.running)
        return dict(done=self.n_done, failed=self.n_failed, running=len(self.running), pending=max(0, pending))

    def _refresh(self) -> None:
        self.bar.update(self.task, completed=self.n_done + self.n_failed, **self._fields())

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

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
