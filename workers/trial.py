"""run_trial: one trial's settings (sweepcore.settings.TrialSettings) -> trained network -> one committed
result row.

Idempotent and resumable: a committed result is returned without training; an interrupted
training resumes from its newest valid checkpoint. Order of commits: base weights, curve, result
(dependents wait for the result, so the base weights are always there when it appears).

Base weights are content-addressed safetensors (tensors only: loading them runs no code, whatever
the store hands back): each attempt commits its own bytes to bases/<key>/model-<sha256>.safetensors
and the result row names that sha256 (column weights_sha256). Two
attempts need not train bitwise-equal weights (on a GPU they do not), so an attempt that committed
weights and died before its row must not decide what the row's dependents load: they read the file
the committed row names and check its sha256 before unpickling it.

Debug entry: python -m workers.trial SETTINGS.json --store URI [--stop-after K]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Iterator

import safetensors.torch
import torch

from sweepcore import layout, records
from sweepcore import store as st
from sweepcore.settings import TrialSettings, derive_seed
from sweepcore.vocabulary import COPYING_TREATMENTS, TREATMENTS
from workers.data import load_half
from workers.networks import build_network, cut_points_of
from workers.surgery import transplant
from workers.train import TrainOutcome, train

log = logging.getLogger(__name__)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_base_weights(store: st.Store, base_key: str) -> dict:
    """The final weights of base `base_key` that its committed result row names (weights_sha256),
    after checking their sha256. A missing row or file is a one-line FileNotFoundError, a row that
    names no weights or bytes that do not hash to what it names a one-line ValueError."""
    row_path = layout.result_path(base_key)
    row = records.read_result(store, base_key)
    if row is None:
        raise FileNotFoundError(f"base result {row_path} not found in store {store.root}: "
                                f"base trial {base_key} must finish first")
    sha = row.get("weights_sha256")
    if not sha:
        raise ValueError(f"base result {row_path} in store {store.root} names no weights (weights_sha256 is "
                         f"null: a row from before content-addressed weights, or not a base): rerun base {base_key}")
    path = layout.base_weights_path(base_key, sha)
    try:
        blob = store.read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"base weights {path} not found in store {store.root}, "
                                f"though {row_path} names them") from None
    actual = sha256_hex(blob)
    if actual != sha:
        raise ValueError(f"base weights {path} in store {store.root} hash to sha256 {actual}, not the "
                         f"{sha} that {row_path} names: refusing to load them")
    try:
        return safetensors.torch.load(blob)
    except Exception as exc:  # noqa: BLE001 (the format's own errors have no common base)
        raise ValueError(f"base weights {path} in store {store.root} are not readable safetensors: "
                         f"{' '.join(str(exc).split())[:200]}") from None


def weights_bytes(state_dict: dict) -> bytes:
    """The final weights as safetensors bytes: what a base commits, and what every row's state_sha256
    hashes (the same bytes for the same weights: `verify` compares them)."""
    return safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()})


def environment() -> dict:
    """What a result's bits depend on beyond its settings: torch's version, the device, the CPU's
    vector ISA that torch dispatches to (a row reproduces bitwise where these match)."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"torch": torch.__version__, "device": device, "cpu_isa": torch.backends.cpu.get_cpu_capability()}


def _commit_base_weights(store: st.Store, key: str, state_dict: dict) -> str:
    """Commit this attempt's final weights of base `key` under their sha256; returns the sha256."""
    blob = weights_bytes(state_dict)
    sha = sha256_hex(blob)
    # create-only; False means an earlier attempt trained the very same bytes (same name, same hash)
    store.commit_bytes(layout.base_weights_path(key, sha), blob)
    return sha


def _drop_unnamed_base_weights(store: st.Store, key: str, named: str | None) -> None:
    """Delete the weights of base `key` that its committed row does not name: left by attempts that
    died before their row or lost the race to commit it. No dependent can read them (they read the
    row's), and no attempt still running can commit a row naming them (the row is there)."""
    for path in store.list(layout.base_weights_prefix(key)):
        sha = layout.base_weights_sha256(path)
        if sha is not None and sha != named:
            store.delete(path)


def _check_treatment(settings: TrialSettings) -> None:
    treatment, n, base_key = settings.treatment, settings.n, settings.base_key
    if treatment not in TREATMENTS:
        raise ValueError(f"unknown treatment {treatment!r}: expected one of {TREATMENTS}")
    if treatment == "base" and (n != 0 or base_key is not None):
        raise ValueError(f"a base trial has n=0 and no base_key (got n={n}, base_key={base_key})")
    if treatment not in COPYING_TREATMENTS and base_key is not None:
        raise ValueError(f"a {treatment} trial copies nothing: base_key must be None")
    if treatment in COPYING_TREATMENTS and base_key is None:
        raise ValueError(f"treatment {treatment!r} needs the base_key of the network it copies from")


def result_row(settings: TrialSettings, outcome: TrainOutcome, weights_sha256: str | None = None) -> dict:
    """The result row of docs/contracts.md for a finished training; `weights_sha256`: the sha256 of
    the base weights this attempt committed (bases only; None for every other treatment)."""
    if (settings.treatment == "base") != (weights_sha256 is not None):
        raise ValueError(f"trial {settings.key} ({settings.treatment}): a base row names its committed weights "
                         f"and no other row does (weights_sha256={weights_sha256!r})")
    return {
        "sweep": settings.sweep, "key": settings.key, "name": settings.name,
        "dataset": settings.dataset, "split": settings.split,
        "source_half": settings.source_half, "target_half": settings.target_half,
        "n": settings.n, "treatment": settings.treatment, "seed": settings.seed,
        "base_key": settings.base_key, "top1_final": float(outcome.top1_final),
        "top1_paper": float(outcome.top1_paper), "steps": int(outcome.steps),
        "wall_seconds": float(outcome.wall_seconds), "status": "ok", "error": None,
        "protocol": settings.protocol, "finished_at": datetime.now(timezone.utc),
        "settings_json": json.dumps(settings.to_dict(), sort_keys=True),
        "weights_sha256": weights_sha256, "data_version": settings.data,
        "final_loss": float(outcome.curve[-1]["loss"]) if outcome.curve else None,
        "state_sha256": sha256_hex(weights_bytes(outcome.state_dict)),
        "environment_json": json.dumps(environment(), sort_keys=True),
        "rng_root": settings.rng_root,
    }


PHASES = ("lookup", "data", "base weights", "build", "train", "commit")  # what run_trial's timings name


@contextlib.contextmanager
def _phase(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the block's wall seconds to timings[name] (when timings is given)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def run_trial(settings: TrialSettings, store: st.Store, report: Callable[[dict], None] | None = None,
              stop_after: int | None = None, timings: dict[str, float] | None = None) -> dict:
    """Run one trial to its committed result row (or return the row already committed).

    `report` receives metrics after each evaluation; `stop_after` is for tests (see train.train).
    `timings`, when given, receives the wall seconds of each phase (PHASES; bench/overhead.py).
    """
    with _phase(timings, "lookup"):
        existing = records.read_result(store, settings.key)
    if existing is not None:
        return existing
    return _train_and_commit(settings, store, report, stop_after, timings)


def _train_and_commit(settings: TrialSettings, store: st.Store, report: Callable[[dict], None] | None,
                      stop_after: int | None, timings: dict[str, float] | None) -> dict:
    key = settings.key
    _check_treatment(settings)
    root = settings.rng_root
    if root is None:
        raise ValueError(f"trial {key}: settings of protocol {settings.protocol} carry no rng_root, so its draws "
                         "cannot be made from what the network is: plan the sweep again")
    torch.set_num_threads(settings.runtime.threads)
    with _phase(timings, "data"):
        data = load_half(settings.dataset, settings.split, settings.target_half, store, settings.data,
                         list(settings.classes) if settings.classes else None)
    with _phase(timings, "base weights"):
        base = load_base_weights(store, settings.base_key) if settings.base_key else None
    with _phase(timings, "build"):
        store_folder = store.local_path()  # a factory's code is never imported from a store folder
        model = build_network(settings.model, torch.Generator().manual_seed(derive_seed(root, "build")),
                              refused_roots=(store_folder,) if store_folder else ())
        transplant(model, base, settings.n, settings.frozen,
                   torch.Generator().manual_seed(derive_seed(root, "init")),
                   cut_points_of(settings.model), settings.model.frozen_bn)
    with _phase(timings, "train"):
        outcome = train(model, data, settings, store, seed=derive_seed(root, "train"),
                        report=report, stop_after=stop_after)
    with _phase(timings, "commit"):
        return _commit(settings, store, outcome)


def _commit(settings: TrialSettings, store: st.Store, outcome: TrainOutcome) -> dict:
    """Commit a finished training's weights (bases), curve and row; drop its checkpoints."""
    key = settings.key
    weights_sha256 = None
    if settings.treatment == "base":  # before the result: see module doc
        weights_sha256 = _commit_base_weights(store, key, outcome.state_dict)
    records.commit_curve(store, key, [{"key": key, **row} for row in outcome.curve])
    row = result_row(settings, outcome, weights_sha256)
    if not records.commit_result(store, row):
        winner = records.read_result(store, key)  # another attempt committed first: its row is the answer
        if winner is None:
            raise RuntimeError(f"trial {key}: the store refused the result as already committed, but has none")
        differing = [f"{name} {winner[name]} (committed) vs {row[name]} (this attempt)"
                     for name in records.MEASURED if winner[name] != row[name]]
        if differing:  # a key names one network: the first row stands, and this one is not kept anywhere
            log.warning("trial %s (%s): another attempt committed first and trained different numbers: %s; its row "
                        "stands (`transfer-sweep verify` retrains the row to tell which reproduces)",
                        key, settings.name, "; ".join(differing))
        row = winner
    for path in store.list(layout.checkpoint_prefix(key)):
        store.delete(path)  # the result is final: checkpoints would only cost space (CaffeNet: ~0.5 GB)
    if settings.treatment == "base":
        _drop_unnamed_base_weights(store, key, row.get("weights_sha256"))  # same: orphans (~0.25 GB each)
    return row


def main(argv: list[str] | None = None) -> int:
    """Debug entry: run one trial from a settings JSON file against a store URI."""
    parser = argparse.ArgumentParser(prog="python -m workers.trial", description=__doc__.splitlines()[0])
    parser.add_argument("settings", help="resolved trial settings (JSON file)")
    parser.add_argument("--store", required=True, help="store root URI (folder or s3://bucket/prefix)")
    parser.add_argument("--stop-after", type=int, default=None, help="interrupt after this step")
    args = parser.parse_args(argv)
    with open(args.settings) as fh:
        settings = TrialSettings.from_dict(json.load(fh))
    row = run_trial(settings, st.open_store(args.store), report=lambda m: print(json.dumps(m)),
                    stop_after=args.stop_after)
    print(json.dumps(row, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
