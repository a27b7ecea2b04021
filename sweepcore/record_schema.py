"""What each record read back from the store must look like: one validator per kind of record.

A shared store has other writers, and a crash can leave half a file: every progress, heartbeat,
attempt and failure record, and every result row, is checked here before any command uses it. A record
that fails is a RecordError naming the object and what is wrong, on one line; readers that can go on
without it (status, logs, report) skip it with a warning instead of stopping.

The JSON records' models (record_models.py) are pydantic's, imported only where a JSON record is read
back: a trial never reads one, so `workers` runs where pydantic is not installed (the Ray-free loop,
workers/loop.py, on an accelerator machine that has torch alone).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

import pyarrow as pa

from sweepcore.errors import OneLineError
from sweepcore.terminal import for_terminal
from sweepcore.vocabulary import TREATMENTS

MAX_JSON_RECORD_BYTES = 1 << 20  # progress, heartbeat, attempt, failure: a few hundred bytes when honest
MAX_RESULT_BYTES = 4 << 20  # one result row: its settings_json is the big cell (a few KB)
RESULT_STATUSES = ("ok",)  # what commit_result writes: failed trials have failure records, not rows


class RecordError(OneLineError, ValueError):
    """A record read back from the store that is not one (the message names the object)."""


def _timestamp(value: str) -> str:
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a time without a timezone")
    return value


def bounded_json(data: bytes, limit: int, what: str, where: str, error: type[OneLineError]) -> Any:
    """The JSON value in `data` (read from `where`), at most `limit` bytes of it; otherwise `error`
    saying '<where>: not <what> (more than N bytes | not JSON: ...)'."""
    if len(data) > limit:
        raise error(f"{where}: not {what} (more than {limit} bytes)")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{where}: not {what} (not JSON: {for_terminal(exc, 80)})") from None


def json_record(data: bytes, kind: str, where: str) -> dict[str, Any]:
    """The JSON record of `kind` in `data` (read from `where`), validated; RecordError otherwise."""
    raw = bounded_json(data, MAX_JSON_RECORD_BYTES, f"a {kind} record", where, RecordError)
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: not a {kind} record (a JSON {type(raw).__name__}, not an object)")
    from pydantic import ValidationError  # noqa: PLC0415 (see the module docstring)

    from sweepcore.record_models import SCHEMAS  # noqa: PLC0415 (see the module docstring)
    try:
        record = SCHEMAS[kind].model_validate(raw)
        for name in ("at", "updated_at"):
            if isinstance(getattr(record, name, None), str):
                _timestamp(getattr(record, name))
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": ("at",), "msg": str(exc)}
        field = ".".join(str(p) for p in first["loc"]) or kind
        raise RecordError(f"{where}: not a {kind} record ({field}: {for_terminal(first['msg'], 120)})") from None
    return raw


def check_result_table(table: pa.Table, key: str, where: str) -> pa.Table:
    """A result file's table: one row, for `key`, with values a training can have; RecordError otherwise."""
    if table.num_rows != 1:
        raise RecordError(f"{where}: not a result row ({table.num_rows} rows, expected 1)")
    row = table.slice(0, 1).to_pylist()[0]
    if row["key"] != key:
        raise RecordError(f"{where}: not the result row of {key} (it names key {for_terminal(row['key'], 40)})")
    for name in ("top1_final", "top1_paper"):
        value = row[name]
        if not (isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0):
            raise RecordError(f"{where}: not a result row ({name} {for_terminal(value, 40)} is not an accuracy)")
    if row["status"] not in RESULT_STATUSES or row["treatment"] not in TREATMENTS:
        raise RecordError(f"{where}: not a result row (status {for_terminal(row['status'], 40)}, "
                          f"treatment {for_terminal(row['treatment'], 40)})")
    if row["steps"] < 0 or not (math.isfinite(row["wall_seconds"]) and row["wall_seconds"] >= 0):
        raise RecordError(f"{where}: not a result row (steps {row['steps']}, wall_seconds {row['wall_seconds']})")
    for name in ("state_sha256", "weights_sha256"):
        if row.get(name) is not None and not _HEX64.fullmatch(row[name]):
            raise RecordError(f"{where}: not a result row ({name} {for_terminal(row[name], 70)} is not hex digits)")
    if row.get("rng_root") is not None and not _HEX16.fullmatch(row["rng_root"]):
        raise RecordError(f"{where}: not a result row (rng_root {for_terminal(row['rng_root'], 40)} "
                          "is not 16 hex digits)")
    return table


_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
