"""Store writes off the training thread: a checkpoint is snapshotted to host memory between two steps,
then serialised and uploaded by one background thread while training goes on.

At most one write is in flight: submitting the next waits for the previous one, so memory holds at
most two snapshots and the store sees checkpoints in step order. A failed write is raised on the
training thread at the next submit or wait, so a trial never carries on believing it has a checkpoint
it has not. What a resumed trial reads is unchanged: records.save_checkpoint writes the sha256 sidecar
last, so a write cut short by a crash leaves a checkpoint that resume skips.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import torch


def host_copy(obj: Any) -> Any:
    """`obj` with every tensor copied to host memory (dicts, lists and tuples rebuilt): a snapshot
    that later in-place updates (SGD steps, momentum) cannot change."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(host_copy(v) for v in obj)
    return obj  # numbers, strings, None: immutable


class BackgroundWriter:
    """One background thread for a training's store writes (see the module doc)."""

    def __init__(self, name: str):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"store-writer-{name}")
        self._pending: Future | None = None
        self.waited_seconds = 0.0  # how long the training thread waited for writes (bench/store_io.py)

    def submit(self, write: Callable[[], None]) -> None:
        """Run `write()` in the background after the previous write has finished."""
        self.wait()
        self._pending = self._pool.submit(write)

    def wait(self) -> None:
        """Block until the write in flight (if any) is done; re-raise its error."""
        if self._pending is None:
            return
        import time  # noqa: PLC0415 (only for the wait statistic)
        started = time.perf_counter()
        pending, self._pending = self._pending, None
        try:
            pending.result()
        finally:
            self.waited_seconds += time.perf_counter() - started

    def close(self, quiet: bool = False) -> None:
        """Wait for the last write, then stop the thread (also when the wait raises). `quiet`: drop
        the write's error (the caller is already raising one of its own)."""
        try:
            self.wait()
        except Exception:
            if not quiet:
                raise
        finally:
            self._pool.shutdown(wait=True)
