"""The Ray-free path: train a sweep's exported trials with a plain loop over `workers`, on a machine
that has torch but neither Ray nor pydantic (a lent accelerator), into the same store layout.

    transfer-sweep plan sweeps/dip-gpu.yaml --export dip-gpu.json     # where the orchestrator is
    python -m workers.loop dip-gpu.json --store ./store --workers 4    # where the GPU is

The file holds every trial's complete settings, bases first (sweepcore/trial_list.py); nothing is
planned or defaulted here. A trial starts once its base is committed; a committed trial is never run
again (its row is read back), so a second run, or a run after the driver trained part of the sweep,
trains only what is missing, and the rows are the ones `transfer-sweep run` would commit for the same
keys. `--workers K` runs K trials at once in K processes that each import torch once (several small
trials share one GPU); `--unit SPLIT,SEED` and `--limit N` take a slice. A trial that raises gets a
failure record (what `status` shows), and the trials that copy it are not started.
Exit: 0 when every trial of the slice is committed, 1 when some failed or were blocked, 2 for bad input.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Optional

from sweepcore import records
from sweepcore import store as st
from sweepcore.errors import OneLineError
from sweepcore.settings import TrialSettings
from sweepcore.trial_list import load_trials

_store: Optional[st.Store] = None  # one per worker process, opened by its first trial


def _run_one(settings_dict: dict, store_uri: str) -> dict:
    """In a worker process: run one trial to its committed row (or read the row back)."""
    from workers.trial import run_trial  # noqa: PLC0415 (torch in the worker processes only)

    global _store
    if _store is None:
        _store = st.open_store(store_uri, check=False)
    settings = TrialSettings.from_dict(settings_dict)
    try:
        return run_trial(settings, _store)
    except Exception as exc:
        records.record_exception(_store, settings.key, exc, f"workers.loop pid {os.getpid()}")
        raise


def select(trials: list[TrialSettings], unit: Optional[str], limit: Optional[int]) -> list[TrialSettings]:
    """The slice to run: the trials of one unit ('random:0,1': split and seed), then the first `limit`."""
    if unit is not None:
        split, _, seed = unit.rpartition(",")
        if not split or not seed.isdigit():
            raise OneLineError(f"--unit {unit!r}: give SPLIT,SEED, e.g. random:0,0")
        trials = [t for t in trials if t.split == split and t.seed == int(seed)]
        if not trials:
            raise OneLineError(f"--unit {unit}: no trial of the file has split {split} and seed {seed}")
    return trials[:limit] if limit is not None else trials


def run_loop(trials: list[TrialSettings], store: st.Store, store_uri: str, workers: int, say=print) -> int:
    """Train the trials not committed, each once its base is; print a line per trial; the exit code."""
    committed = records.committed_keys(store) & {t.key for t in trials}
    todo = [t for t in trials if t.key not in committed]
    before = len(committed)
    failed: set[str] = set()
    blocked: set[str] = set()
    started, trained = time.monotonic(), 0
    say(f"loop {trials[0].sweep}: {len(trials)} trials, {before} already committed, {len(todo)} to run, "
        f"{workers} at once; store {store.uri()}")
    # spawn: CUDA cannot be used in a forked child
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running: dict[Future, TrialSettings] = {}
        while todo or running:
            for t in [t for t in todo if t.base_key in failed | blocked]:
                todo.remove(t)
                blocked.add(t.key)
                say(f"blocked {t.name}: its base failed")
            for t in [t for t in todo if t.base_key is None or t.base_key in committed]:
                if len(running) >= workers:
                    break
                todo.remove(t)
                running[pool.submit(_run_one, t.to_dict(), store_uri)] = t
                say(f"start {t.name}")
            if not running:
                break  # the rest waits for a base that is neither committed nor in this slice
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                t = running.pop(fut)
                try:
                    row = fut.result()
                except Exception as exc:  # noqa: BLE001 (a trial's failure is reported, the others go on)
                    failed.add(t.key)
                    say(f"fail  {t.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                    continue
                committed.add(t.key)
                trained += 1
                left = len(todo) + len(running)
                rate = trained / max(1e-9, time.monotonic() - started)
                say(f"ok    {t.name:<28} top-1 {row['top1_paper']:.4f} ({row['wall_seconds']:.1f} s); "
                    f"{len(committed)}/{len(trials)} committed, ETA {left / rate / 60:.1f} min")
    waiting = [t for t in todo if t.key not in blocked]
    say(f"loop {trials[0].sweep}: {len(committed)}/{len(trials)} committed ({trained} trained now, {before} "
        f"before) in {time.monotonic() - started:.0f} s; {len(failed)} failed, {len(blocked)} blocked"
        + (f", {len(waiting)} waiting for a base outside this slice" if waiting else ""))
    return 0 if len(committed) == len(trials) else 1


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.loop", description=__doc__.splitlines()[0])
    parser.add_argument("trials", help="a trials file (`transfer-sweep plan SPEC --export FILE`)")
    parser.add_argument("--store", required=True, help="store root: a local folder or s3://bucket/prefix")
    parser.add_argument("--workers", type=int, default=1, help="trials at once, one process each (default 1)")
    parser.add_argument("--unit", help="only the trials of one unit of replication: SPLIT,SEED (random:0,0)")
    parser.add_argument("--limit", type=int, help="only the first N trials (of the unit, if given)")
    args = parser.parse_args(argv)
    try:
        if args.workers < 1 or (args.limit is not None and args.limit < 1):
            raise OneLineError("--workers and --limit must be 1 or more")
        path = Path(args.trials)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise OneLineError(f"{path}: cannot read the trials file ({exc.strerror or type(exc).__name__})") from None
        _, trials = load_trials(data, str(path))
        trials = select(trials, args.unit, args.limit)
        store = st.open_store(args.store)
        return run_loop(trials, store, args.store, args.workers)
    except OneLineError as exc:
        print(f"workers.loop: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
