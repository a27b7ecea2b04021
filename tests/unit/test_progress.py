"""Progress where there is no terminal (a Ray Job's driver log): event lines and a steady summary line."""
import io
import time

from rich.console import Console

from orchestrator.cli.progress import PROGRESS_ENV, SweepProgress


def test_a_non_terminal_gets_summary_lines_with_counts_throughput_and_eta(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "0.05")
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with SweepProgress(console, total=4, already_done=1, name="demo") as progress:
        progress.started("baseA random:0 s0")
        progress.finished("baseA random:0 s0", 0.75)
        progress.started("BnB n=1 random:0 s0")
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert "start baseA random:0 s0" in lines and "ok    baseA random:0 s0            top-1 0.7500" in lines
    ticks = [line for line in lines if line.startswith("progress demo: ")]
    assert len(ticks) >= 3  # a steady line while it runs, and the final one
    assert ticks[-1].startswith("progress demo: done 2/4, running 1, failed 0, pending 1; ")
    assert " trials/min; ETA " in ticks[-1]


def test_a_terminal_gets_the_bar_and_no_summary_lines(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "0.05")
    out = io.StringIO()
    with SweepProgress(Console(file=out, force_terminal=True, width=200), 2, 0, "demo") as progress:
        progress.started("baseA random:0 s0")
        time.sleep(0.2)
    assert "progress demo:" not in out.getvalue()
