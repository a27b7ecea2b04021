"""Valid result rows for tests: make_row (a made-up row: the store's tests) and row_of (the row a sweep
would commit for a planned trial, numbers made up: the `plan --diff` tests)."""
from __future__ import annotations

import datetime as dt
import json

from sweepcore import records
from sweepcore.settings import PROTOCOL_VERSION

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)


def make_row(key: str, n: int = 3, **changes) -> dict:
    row = {"sweep": "demo", "key": key, "name": f"AnB n={n}", "dataset": "fashion-animals",
           "split": "random:0", "source_half": "A", "target_half": "B", "n": n,
           "treatment": "transfer", "seed": 0, "base_key": "b" * 16, "top1_final": 0.8125,
           "top1_paper": 0.80078125, "steps": 500, "wall_seconds": 12.5, "status": "ok",
           "error": None, "protocol": 1, "finished_at": WHEN, "settings_json": '{"n": %s}' % n,
           "weights_sha256": None, "data_version": None, "final_loss": 0.5, "state_sha256": "c" * 64,
           "environment_json": '{"cpu_isa": "AVX2", "device": "cpu", "torch": "2.13.0+cpu"}',
           "rng_root": "d" * 16}
    row.update(changes)
    return row


def row_of(trial, protocol=PROTOCOL_VERSION) -> dict:
    s = trial.settings
    row = {"sweep": s.sweep, "key": s.key, "name": s.name, "dataset": s.dataset, "split": s.split,
           "source_half": s.source_half, "target_half": s.target_half, "n": s.n, "treatment": s.treatment,
           "seed": s.seed, "base_key": s.base_key, "top1_final": 0.5, "top1_paper": 0.5, "steps": 10,
           "wall_seconds": 1.0, "status": "ok", "error": None, "protocol": protocol,
           "finished_at": dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc),
           "settings_json": json.dumps({**s.to_dict(), "protocol": protocol}, sort_keys=True),
           "weights_sha256": "a" * 64 if s.treatment == "base" else None, "data_version": s.data,
           "final_loss": 0.7, "state_sha256": "b" * 64, "environment_json": "{}"}
    return {name: row.get(name) for name in records.RESULT_SCHEMA.names}
