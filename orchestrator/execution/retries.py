"""When to stop retrying a trial: a pure rule over where its attempts resumed from.

An attempt that saved a newer checkpoint than the one it started from made progress, however it
ended; killing it cost at most one checkpoint interval. So retries follow progress: a trial fails for
good only when its first try and `retries` retries in a row ended without progress (each resumed from
the same step), which is what a deterministic error looks like, while a trial whose workers keep being
killed (spot nodes, OOM kills of neighbours) keeps going as long as it keeps checkpointing.
"""
from __future__ import annotations

from typing import Optional, Sequence


def attempts_without_progress(resume_steps: Sequence[int]) -> int:
    """How many attempts in a row, counting back from the newest finished one, ended without saving a
    newer checkpoint. `resume_steps` are the steps each attempt of this run started from, oldest first,
    the one about to start last (so every attempt before it has ended)."""
    count = 0
    for earlier, later in zip(reversed(resume_steps[:-1]), reversed(resume_steps[1:])):
        if later > earlier:
            break
        count += 1
    return count


def should_give_up(resume_steps: Sequence[int], retries: int) -> bool:
    """True when the first try and `retries` retries in a row ended without progress."""
    return attempts_without_progress(resume_steps) > retries


def give_up_line(resume_steps: Sequence[int], last_error: Optional[str]) -> str:
    """The one-line failure record of a trial given up on."""
    stalled = attempts_without_progress(resume_steps)
    cause = f"; last error: {last_error}" if last_error else ""
    return (f"gave up after {stalled} consecutive attempts without progress (each resumed from step "
            f"{resume_steps[-1]}; {len(resume_steps) - 1} attempts in this run){cause}")
