"""run_trial: one trial's settings (sweepcore.settings.TrialSettings) -> trained network -> one committed
result row.

Idempotent and resumable: a committed result is returned without training; an interrupted
training resumes from its newest valid checkpoint. Order of commits: base weights, curve, result
(dependents wait for the result, so the base weights are always there when it appears).

Debug entry: python -m workers.trial SETTINGS.json --store URI [--stop-after K]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from datetime import datetime, timezone
from typing import Callable

import torch

from sweepcore import layout, records
from sweepcore import store as st
from sweepcore.settings import TrialSettings
from sweepcore.vocabulary import COPYING_TREATMENTS, TREATMENTS
from workers.data import load_half
from workers.models import build_model
from workers.surgery import transplant
from workers.train import TrainOutcome, train


def derive_seed(seed: int, key: str, purpose: str) -> int:
    """A 64-bit torch seed from the replicate seed, the trial key and what it seeds."""
    return int(hashlib.sha256(f"{seed}:{key}:{purpose}".encode()).hexdigest()[:16], 16)


def load_base_weights(store: st.Store, base_key: str) -> dict:
    """The committed final weights of base `base_key`, or a one-line FileNotFoundError."""
    path = layout.base_model_path(base_key)
    try:
        blob = store.read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"base weights {path} not found in store {store.root}: "
                                f"base trial {base_key} must finish first") from None
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


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


def result_row(settings: TrialSettings, outcome: TrainOutcome) -> dict:
    """The result row of docs/contracts.md for a finished training."""
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
    }


def run_trial(settings: TrialSettings, store: st.Store, report: Callable[[dict], None] | None = None,
              stop_after: int | None = None) -> dict:
    """Run one trial to its committed result row (or return the row already committed).

    `report` receives metrics after each evaluation; `stop_after` is for tests (see train.train).
    """
    key = settings.key
    existing = records.read_result(store, key)
    if existing is not None:
        return existing
    _check_treatment(settings)
    torch.set_num_threads(settings.runtime.threads)
    data = load_half(settings.dataset, settings.split, settings.target_half, store)
    base = load_base_weights(store, settings.base_key) if settings.base_key else None
    model = build_model(settings.model, torch.Generator().manual_seed(derive_seed(settings.seed, key, "build")))
    transplant(model, base, settings.n, settings.frozen,
               torch.Generator().manual_seed(derive_seed(settings.seed, key, "init")))
    outcome = train(model, data, settings, store, seed=derive_seed(settings.seed, key, "train"),
                    report=report, stop_after=stop_after)
    if settings.treatment == "base":
        blob = io.BytesIO()
        torch.save(outcome.state_dict, blob)
        store.commit_bytes(layout.base_model_path(key), blob.getvalue())  # before the result: see module doc
    records.commit_curve(store, key, [{"key": key, **row} for row in outcome.curve])
    row = result_row(settings, outcome)
    committed = records.commit_result(store, row)
    for path in store.list(layout.checkpoint_prefix(key)):
        store.delete(path)  # the result is final: checkpoints would only cost space (CaffeNet: ~0.5 GB)
    if committed:
        return row
    winner = records.read_result(store, key)  # another attempt committed first: its row is the answer
    if winner is None:
        raise RuntimeError(f"trial {key}: the store refused the result as already committed, but has none")
    return winner


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
