"""What makes the unit tier a unit tier: starting a process fails the test (tests/unit/conftest.py
applies it to each unit test's setup, call and teardown; tests/unit/test_tiers.py proves it fires).

Every way of starting a process in CPython on POSIX is refused: subprocess (and with it
`python -m orchestrator.cli`, `ray start`, workers/code_origin.py's bare-interpreter probe),
multiprocessing (fork, spawn, forkserver: DataLoader workers too), os.fork/forkpty/posix_spawn/system.
The same functions reached as posix.* (what a pickle names: tests/tampered_checkpoint.py) are left alone.
"""
from __future__ import annotations

import _posixsubprocess
import contextlib
import os
import subprocess
from collections.abc import Iterator

import pytest

RULE = "unit tests start no process or server"
MOVE = "move this test to tests/store (SeaweedFS, the CLI or a worker as a process) or tests/integration (Ray)"

# (owner, attribute): subprocess and multiprocessing's spawn/forkserver end in _posixsubprocess.fork_exec;
# Popen._execute_child comes first and names the command.
STARTERS = [(subprocess.Popen, "_execute_child"), (_posixsubprocess, "fork_exec"), (os, "fork"),
            (os, "forkpty"), (os, "posix_spawn"), (os, "posix_spawnp"), (os, "system")]

_active: list[list[str]] = []  # the refusals of each guard that is on, innermost last


def _command(args: tuple) -> str:
    for arg in args:
        if isinstance(arg, (str, bytes, os.PathLike)):
            return repr(os.fsdecode(arg))[:200]
        if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], (str, bytes, os.PathLike)):
            return repr(" ".join(os.fsdecode(a) for a in arg))[:200]
    return ""


def _refuser(name: str, started: list[str]):
    def refuse(*args, **kwargs):
        what = f"{name}({_command(args[1:] if name == '_execute_child' else args)})"
        started.append(what)
        # pytest.fail raises a BaseException: an `except Exception` or `except OSError` fallback in the
        # code under test (workers/code_origin.py has one) cannot turn the refusal into a quiet pass
        pytest.fail(f"{RULE}: {what}: {MOVE}")
    return refuse


@contextlib.contextmanager
def no_process_started() -> Iterator[list[str]]:
    """Within: starting a process fails, and the block fails after it even if the code under test
    swallowed the refusal (or it was raised on another thread). Yields the refusals so far."""
    started: list[str] = []
    saved = [(owner, name, getattr(owner, name)) for owner, name in STARTERS if hasattr(owner, name)]
    for owner, name, _ in saved:
        setattr(owner, name, _refuser(name, started))
    _active.append(started)
    try:
        yield started
    finally:
        _active.remove(started)
        for owner, name, original in saved:
            setattr(owner, name, original)
    if started:
        pytest.fail(f"{RULE}: {', '.join(started)}: {MOVE}", pytrace=False)


def refused_so_far() -> list[str]:
    """The refusals of the innermost guard that is on (a test that swallows one on purpose clears it)."""
    return _active[-1]
