"""What the store holds, on top of its byte API: checkpoints with sha256 sidecars, the results and
curve Parquet rows, progress, and the failure and attempt records of each trial.

Knows neither torch nor ray (callers hand over bytes and dicts). Paths: layout.py; schema for users:
docs/contracts.md.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import socket
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from sweepcore.layout import (
    RESULTS,
    attempts_prefix,
    check_hash,
    check_key,
    checkpoint_path,
    checkpoint_prefix,
    curve_path,
    data_pointer_path,
    failures_prefix,
    heartbeat_path,
    progress_path,
    result_path,
    rounds_path,
)
from sweepcore.record_schema import (
    MAX_JSON_RECORD_BYTES,
    MAX_RESULT_BYTES,
    RecordError,
    check_result_table,
    json_record,
)
from sweepcore.store import Store, redact
from sweepcore.terminal import for_terminal

log = logging.getLogger(__name__)


# --- checkpoints: bytes + sha256 sidecar ---------------------------------------------------------
_CKPT_RE = re.compile(r"/step-(\d{9})\.pt$")


def _checkpoint_steps(store: Store, key: str) -> list[int]:
    """Steps that have a checkpoint file or a sidecar, ascending."""
    steps = set()
    for path in store.list(checkpoint_prefix(key)):
        match = _CKPT_RE.search(path.removesuffix(".sha256"))
        if match:
            steps.add(int(match.group(1)))
    return sorted(steps)


def save_checkpoint(store: Store, key: str, step: int, data: bytes, keep: int = 2) -> None:
    """Write step-<step>.pt and its .sha256 sidecar, then delete all but the newest `keep`.

    The sidecar is written last, so a checkpoint without one is incomplete. Pruning keeps this step
    and the newest keep-1 older ones; newer steps are leftovers of an abandoned attempt (resume
    chose this older one because they were invalid) and would shadow this one, so they go too.
    """
    path = checkpoint_path(key, step)
    store.write_bytes(path, data)
    store.write_bytes(path + ".sha256", hashlib.sha256(data).hexdigest().encode())
    steps = _checkpoint_steps(store, key)
    older = [s for s in steps if s < step]
    doomed = older[:max(0, len(older) - max(keep, 1) + 1)] + [s for s in steps if s > step]
    for old in doomed:
        store.delete(checkpoint_path(key, old) + ".sha256")  # sidecar first: a half-pruned
        store.delete(checkpoint_path(key, old))              # checkpoint reads as invalid


def load_latest_checkpoint(store: Store, key: str,
                           decode: Callable[[bytes], Any] | None = None) -> tuple[int, Any] | None:
    """Newest checkpoint whose sha256 matches and that `decode` accepts, as (step, bytes), or (step,
    decode(bytes)) with `decode`; corrupt ones, and ones `decode` raises on (a store writer can plant a
    file with a matching sidecar), are skipped with a warning naming the file. None if none is valid."""
    for step in reversed(_checkpoint_steps(store, key)):
        path = checkpoint_path(key, step)
        try:
            data = store.read_bytes(path)
        except FileNotFoundError:
            log.warning("checkpoint %s is missing (only its sidecar exists); trying the previous one",
                        store.uri(path))
            continue
        try:
            expected = store.read_bytes(path + ".sha256").decode("ascii", "replace").split()
        except FileNotFoundError:
            log.warning("checkpoint %s has no sha256 sidecar (incomplete write); trying the previous "
                        "one", store.uri(path))
            continue
        actual = hashlib.sha256(data).hexdigest()
        if not expected or expected[0].lower() != actual:
            log.warning("checkpoint %s is corrupt (sha256 %s, expected %s, %d bytes); trying the "
                        "previous one", store.uri(path), actual[:12],
                        expected[0][:12] if expected else "nothing", len(data))
            continue
        if decode is None:
            return step, data
        try:
            return step, decode(data)
        except Exception as exc:  # noqa: BLE001 (whatever a planted file makes the decoder raise: not ours)
            # the exception's type only: a loader's message can advise turning its safety checks off
            log.warning("checkpoint %s does not load as this trial's checkpoint (%s); trying the previous one",
                        store.uri(path), type(exc).__name__)
    return None


# --- results -------------------------------------------------------------------------------------
def _field(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


RESULT_SCHEMA = pa.schema([
    _field("sweep", pa.string()), _field("key", pa.string()), _field("name", pa.string()),
    _field("dataset", pa.string()), _field("split", pa.string()),
    _field("source_half", pa.string(), True), _field("target_half", pa.string()),
    _field("n", pa.int64()), _field("treatment", pa.string()), _field("seed", pa.int64()),
    _field("base_key", pa.string(), True), _field("top1_final", pa.float64()),
    _field("top1_paper", pa.float64()), _field("steps", pa.int64()),
    _field("wall_seconds", pa.float64()), _field("status", pa.string()),
    _field("error", pa.string(), True), _field("protocol", pa.int64()),
    _field("finished_at", pa.timestamp("us", tz="UTC")), _field("settings_json", pa.string()),
    _field("weights_sha256", pa.string(), True),
    _field("data_version", pa.string(), True),
    _field("final_loss", pa.float64(), True),
    _field("state_sha256", pa.string(), True), _field("environment_json", pa.string(), True),
    _field("rng_root", pa.string(), True),
])
# Columns added after rows were first committed: a row written before one existed reads it as null.
# (Every other column must be there: a row without one is damaged, not old.)
LATER_RESULT_COLUMNS = frozenset({"weights_sha256", "data_version", "final_loss", "state_sha256",
                                  "environment_json", "rng_root"})

# What a row measured: two rows of one key that differ in any of these are two networks under one name
# (run_trial warns of a losing attempt's, compare refuses them, verify compares a retrained row's).
MEASURED = ("top1_final", "top1_paper", "final_loss", "steps", "state_sha256")

CURVE_SCHEMA = pa.schema([
    _field("key", pa.string()), _field("step", pa.int64()), _field("top1", pa.float64(), True),
    _field("loss", pa.float64(), True), _field("lr", pa.float64(), True),
    _field("seconds", pa.float64(), True),
])


def _to_table(rows: list[dict], schema: pa.Schema, what: str) -> pa.Table:
    """Build a table with exactly `schema`'s columns; ValueError names missing/unknown/bad columns."""
    names = set(schema.names)
    for row in rows:
        missing, unknown = sorted(names - set(row)), sorted(set(row) - names)
        if missing or unknown:
            raise ValueError(f"{what}: missing columns {missing}, unknown columns {unknown}")
    columns = []
    for field in schema:
        values = [row[field.name] for row in rows]
        if not field.nullable and any(v is None for v in values):
            raise ValueError(f"{what}: column {field.name!r} must not be null")
        if pa.types.is_timestamp(field.type) and any(
                isinstance(v, dt.datetime) and v.tzinfo is None for v in values):
            raise ValueError(f"{what}: column {field.name!r} needs a timezone-aware datetime (UTC)")
        try:
            columns.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{what}: column {field.name!r}: {exc}") from None
    return pa.Table.from_arrays(columns, schema=schema)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _read_parquet(data: bytes, schema: pa.Schema, later: frozenset[str] = frozenset(),
                  where: str = "parquet", limit: int = MAX_RESULT_BYTES) -> pa.Table:
    """The table in `data` with exactly `schema`'s columns; those in `later` that it lacks read as null.
    RecordError (naming `where`) for bytes that are not such a table."""
    if len(data) > limit:  # a cell can decode to far more than the file: bound the file
        raise RecordError(f"{where}: more than {limit} bytes, the most one record may be")
    try:
        # one thread: a record is small, and Arrow's pool can abort the process at exit (apache/arrow#34314)
        table = pq.read_table(pa.BufferReader(data), use_threads=False)
        for field in schema:
            if field.name in later and field.name not in table.column_names:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, KeyError, ValueError, TypeError, OSError) as exc:
        raise RecordError(f"{where}: not a table of {', '.join(schema.names[:3])}, ... "
                          f"({type(exc).__name__}: {for_terminal(exc, 100)})") from None


def _read_result_bytes(store: Store, key: str, data: bytes) -> pa.Table:
    where = store.uri(result_path(key))
    return check_result_table(_read_parquet(data, RESULT_SCHEMA, LATER_RESULT_COLUMNS, where), key, where)


# A results file as `report --out` writes it holds every row of a sweep: a few hundred rows of ~2 kB.
MAX_RESULTS_FILE_BYTES = 64 * 1024 * 1024


def read_results_file(data: bytes, where: str) -> pa.Table:
    """The rows of a results file (`report --out`'s results.parquet, a published folder's), each checked
    as a committed row is (record_schema.check_result_table); RecordError names `where` and the row."""
    table = _read_parquet(data, RESULT_SCHEMA, LATER_RESULT_COLUMNS, where, MAX_RESULTS_FILE_BYTES)
    for i in range(table.num_rows):
        row = table.slice(i, 1)
        key = row.column("key")[0].as_py()
        check_result_table(row, key if isinstance(key, str) else "", f"{where} row {i + 1}")
    return table


def commit_result(store: Store, row: dict) -> bool:
    """Commit one result row (docs/contracts.md schema) to results/<key>.parquet, create-only.
    True if this call committed it; False if a row for that key was already there."""
    table = _to_table([row], RESULT_SCHEMA, "result row")
    return store.commit_bytes(result_path(row["key"]), _parquet_bytes(table))


def read_result(store: Store, key: str) -> dict | None:
    """The committed row for `key`, or None."""
    try:
        data = store.read_bytes(result_path(key), MAX_RESULT_BYTES)
    except FileNotFoundError:
        return None
    return _read_result_bytes(store, key, data).to_pylist()[0]


def committed_keys(store: Store) -> set[str]:
    """Keys that have a committed result (a listing, no file reads)."""
    return {p[len(RESULTS) + 1:-len(".parquet")] for p in store.list(RESULTS)
            if p.endswith(".parquet") and p.count("/") == 1}


def read_results(store: Store, keys: set[str] | None = None):
    """All committed rows (or those in `keys`) as one pyarrow.Table with the result schema,
    sorted by key; an empty table with the schema when there are none. A damaged row is left out
    with a warning naming it (record_schema.py): the command goes on with the others."""
    wanted = sorted(committed_keys(store) if keys is None else committed_keys(store) & set(keys))
    if not wanted:
        return RESULT_SCHEMA.empty_table()
    # object stores answer one GET at a time: overlap them (the client is thread-safe)
    with ThreadPoolExecutor(max_workers=store.parallel_reads) as pool:
        blobs = list(pool.map(lambda k: store.read_bytes(result_path(k), MAX_RESULT_BYTES), wanted))
    tables = []
    for key, blob in zip(wanted, blobs):
        try:
            tables.append(_read_result_bytes(store, key, blob))
        except RecordError as exc:
            log.warning("%s; left out", for_terminal(exc))
    return pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()


def commit_curve(store: Store, key: str, rows: list[dict]) -> bool:
    """Commit the evaluation curve (columns key, step, top1, loss, lr, seconds), create-only.
    Rows may omit `key`; one that names another key is a ValueError."""
    check_key(key)
    full = []
    for row in rows:
        if row.get("key", key) != key:
            raise ValueError(f"curve row for key {row['key']!r} given to commit_curve({key!r})")
        full.append({**row, "key": key})
    table = _to_table(full, CURVE_SCHEMA, "curve row")
    return store.commit_bytes(curve_path(key), _parquet_bytes(table))


def read_curve(store: Store, key: str) -> pa.Table | None:
    """The committed curve of `key` as a table (CURVE_SCHEMA), or None."""
    try:
        path = curve_path(key)
        table = _read_parquet(store.read_bytes(path, MAX_RESULT_BYTES), CURVE_SCHEMA, where=store.uri(path))
    except FileNotFoundError:
        return None
    except RecordError as exc:
        log.warning("%s; left out", for_terminal(exc))
        return None
    if set(table.column("key").to_pylist()) - {key}:
        log.warning("%s: curve rows of another key; left out", store.uri(curve_path(key)))
        return None
    return table



def read_base_curves(store: Store, results: Any) -> Any:
    """The learning curves (key, step, top1, ...) of the bases among `results` (a DataFrame of result
    rows), as one Arrow table; None when there is none."""
    if results.empty or "treatment" not in results.columns:
        return None
    tables = [t for key in results.loc[results.treatment == "base", "key"]
              if (t := read_curve(store, str(key))) is not None]
    return pa.concat_tables(tables) if tables else None

def write_progress(store: Store, key: str, progress: dict) -> None:
    """Overwrite trials/<key>/progress.json (step, total_steps, updated_at, ...)."""
    data = json.dumps(progress, sort_keys=True, default=str).encode()
    store.write_bytes(progress_path(key), data)


def read_progress(store: Store, key: str) -> dict | None:
    """The last progress written for `key`, or None (also, with a warning, when it is not a record)."""
    return read_record(store, progress_path(key), "progress")


def write_rounds(store: Store, sweep: str, record: dict) -> None:
    """Overwrite sweeps/<name>/rounds.json with the driver's latest judgement (round, units, the named
    claims' verdicts and CIs, whether it goes on and why). A view for `status`: the driver itself
    derives its round from the committed rows, never from this record."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    store.write_bytes(rounds_path(sweep), json.dumps({**record, "at": now}, sort_keys=True).encode())


def read_rounds(store: Store, sweep: str) -> dict | None:
    """The sweep's rounds record, validated, or None (absent or damaged, with a warning)."""
    return read_record(store, rounds_path(sweep), "rounds")


def read_record(store: Store, path: str, kind: str) -> dict | None:
    """The validated JSON record at `path`, or None: absent, or damaged (a warning names it)."""
    try:
        return json_record(store.read_bytes(path, MAX_JSON_RECORD_BYTES), kind, store.uri(path))
    except FileNotFoundError:
        return None
    except RecordError as exc:
        log.warning("%s; ignored", for_terminal(exc))
        return None


def read_data_version(store: Store, dataset: str) -> str:
    """The prepared version of `dataset` the store points new sweeps at (datasets/<name>/LATEST),
    checked to be a content hash. FileNotFoundError when it was never prepared; ValueError (naming the
    object) when the pointer holds anything but a hash: a shared store has other writers."""
    pointer = data_pointer_path(dataset)
    text = store.read_bytes(pointer).decode("utf-8", "replace").strip()
    try:
        return check_hash(text)
    except ValueError as exc:
        raise ValueError(f"{store.uri(pointer)}: {exc}") from None


def write_heartbeat(store: Store, key: str, run: str | None = None) -> None:
    """Overwrite trials/<key>/heartbeat.json: an attempt of `key` is alive in this process now."""
    beat = {"at": dt.datetime.now(dt.timezone.utc).isoformat(), "pid": os.getpid(),
            "host": socket.gethostname(), "run": run}
    store.write_bytes(heartbeat_path(key), json.dumps(beat, sort_keys=True).encode())


def read_heartbeat(store: Store, key: str) -> dict | None:
    """The last heartbeat of `key` (at, pid, host, run), or None (also when it is not a record)."""
    return read_record(store, heartbeat_path(key), "heartbeat")


def _commit_record(store: Store, prefix: str, record: dict) -> str:
    """Commit a JSON record named <utc time>-<short uuid>.json (names sort oldest first)."""
    now = dt.datetime.now(dt.timezone.utc)
    path = f"{prefix}/{now:%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:8]}.json"
    store.commit_bytes(path, json.dumps({**record, "at": now.isoformat()}, sort_keys=True).encode())
    return path


def _read_records(store: Store, prefix: str, kind: str) -> list[dict]:
    """The valid `kind` records under `prefix`, oldest first; damaged ones skipped with a warning."""
    found = (read_record(store, p, kind) for p in store.list(prefix) if p.endswith(".json"))
    return [record for record in found if record is not None]


def record_failure(store: Store, key: str, error_line: str, traceback_text: str, where: str) -> str:
    """Write one failure record; returns its path. `where` says where the full log is."""
    record = {"error": redact(error_line), "traceback": redact(traceback_text), "where": where}
    return _commit_record(store, failures_prefix(key), record)


def record_exception(store: Store, key: str, exc: BaseException, where: str) -> str:
    """The failure record of an attempt that raised `exc`: its first line ('ValueError: ...') and its
    traceback (record_failure)."""
    line = f"{type(exc).__name__}: {exc}".splitlines()[0]
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return record_failure(store, key, line, text, where)


def read_failures(store: Store, key: str) -> list[dict]:
    """All failure records of `key` (error, traceback, where, at), oldest first."""
    return _read_records(store, failures_prefix(key), "failure")


def newest_checkpoint_step(store: Store, key: str) -> int:
    """The step of the newest checkpoint present (valid or not), 0 if none."""
    steps = _checkpoint_steps(store, key)
    return steps[-1] if steps else 0


def record_attempt(store: Store, key: str, run: str | None = None, warm: bool | None = None) -> str:
    """Record that an attempt at `key` starts in this process; returns its path. Fields: at, pid,
    host, run (the driver run that started it), resume_step (the newest checkpoint step present now,
    0 if none: where it will resume unless that checkpoint fails verification), warm (whether the
    worker process had the training code imported before the trial came: Ray's preloaded workers)."""
    record = {"pid": os.getpid(), "host": socket.gethostname(), "run": run,
              "resume_step": newest_checkpoint_step(store, key), "warm": warm}
    return _commit_record(store, attempts_prefix(key), record)


def read_attempts(store: Store, key: str) -> list[dict]:
    """All attempt records of `key`, oldest first."""
    return _read_records(store, attempts_prefix(key), "attempt")

