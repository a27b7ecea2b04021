"""Carry published result rows across a protocol bump: protocol 1 -> 2.

Protocol 2 made the prepared data's content hash part of every trial's settings, so every key
changed although no training changed. A protocol-1 row of a dataset whose version is pinned in code
(fashion-animals) was trained on exactly that version (its arrays were checked against the pinned
content hashes when built), so its settings gain `data` = that version, its key is recomputed from
them, its base_key is mapped the same way, and the row gains `data_version`. Rows of a dataset whose
version lived in the store (ImageNet) cannot be re-keyed from the row alone and are refused.

`transfer-sweep migrate-results FILE.parquet [...]` rewrites results.parquet and base_curves.parquet
files (the report's output) in place, atomically.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.errors import UsageError
from sweepcore.settings import PROTOCOL_VERSION, TrialSettings, trial_key
from sweepcore.vocabulary import dataset_info


def migrated_settings(settings: dict) -> dict:
    """Protocol-1 settings (a dict) as protocol-2 settings, key recomputed; ValueError if impossible."""
    if settings.get("protocol") != 1:
        raise ValueError(f"protocol {settings.get('protocol')!r}: only protocol 1 rows are migrated")
    version = dataset_info(str(settings.get("dataset"))).pinned_version
    if version is None:
        raise ValueError(f"dataset {settings.get('dataset')!r} has no version pinned in code: its rows cannot "
                         "be re-keyed without the store they were trained from")
    out = {**settings, "protocol": PROTOCOL_VERSION, "data": version}
    out["key"] = trial_key(out)
    TrialSettings.from_dict(out)  # complete and consistent, or ValueError
    return out


def migrate_results(table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """(rows with new keys, base keys, protocol, settings_json and data_version; old key -> new key)."""
    rows = table.to_pylist()
    if rows and all(r.get("protocol") == PROTOCOL_VERSION for r in rows):
        return table, {r["key"]: r["key"] for r in rows}
    mapping: dict[str, str] = {}
    settings = {}
    for r in rows:
        new = migrated_settings(json.loads(r["settings_json"]))
        mapping[r["key"]] = new["key"]
        settings[r["key"]] = new
    bases = dict(mapping)  # bases copy nothing: their new keys are final after the first pass
    for r in rows:
        new = settings[r["key"]]
        if r.get("base_key") is not None and r["base_key"] not in bases:
            raise ValueError(f"row {r['key']} copies base {r['base_key']}, which is not in the same file: "
                             "migrate a file that holds the sweep's bases too")
        base_key = bases[r["base_key"]] if r.get("base_key") else None
        new["base_key"] = base_key
        new["key"] = trial_key(new)
        mapping[r["key"]] = new["key"]
        r.update(key=new["key"], base_key=base_key, protocol=PROTOCOL_VERSION, data_version=new["data"],
                 settings_json=json.dumps(new, sort_keys=True))
    schema = table.schema
    if "data_version" not in schema.names:
        schema = schema.append(pa.field("data_version", pa.string(), nullable=True))
    return pa.Table.from_pylist(rows, schema=schema), mapping


def migrate_file(path: Path, mapping: dict[str, str] | None = None) -> dict[str, str]:
    """Rewrite a results.parquet (or, given the mapping, a curves table keyed by `key`) in place."""
    table = pq.read_table(path)
    if "settings_json" in table.column_names:
        table, mapping = migrate_results(table)
    elif mapping is not None:
        keys = [mapping.get(k, k) for k in table.column("key").to_pylist()]
        table = table.set_column(table.column_names.index("key"), "key", pa.array(keys, pa.string()))
    else:
        raise UsageError(f"{path}: not a results table (no settings_json column), and no results file given first")
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return mapping or {}
