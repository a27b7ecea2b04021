"""`transfer-sweep import FOLDER --store URI`: a published results folder's rows into a store, so that
`resume` of its spec trains only what the folder cannot supply.

A published folder carries rows, not weights. A dependent's row is complete without its base's weights
(they are only read to train it), so it is committed as it is. A base's row names weights that its
dependents would load: committed without them, every new dependent of that base would fail, so a
base is committed only together with its weights (`bases/<key>/model-<sha256>.safetensors` in the
folder, checked against the row); otherwise it is left for `resume` to retrain, and since rows
reproduce from their keys the retrained base is the published one, bitwise (`verify` proves it).

Nothing committed is ever changed: a row already in the store is kept (the same numbers: nothing to
do; other numbers: named, exit 1). Rows planned before draws came from rng_root do not reproduce from
their key and are refused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from orchestrator.cli import args as options
from orchestrator.errors import EXIT_FAILED, EXIT_OK, UsageError
from orchestrator.execution.verify import folder_rows
from sweepcore import layout, records
from sweepcore.settings import RNG_ROOT_FROM
from sweepcore.store import Store, open_store

# The most a base's weights file in a folder is read to (CaffeNet's are ~0.25 GB).
MAX_WEIGHTS_BYTES = 2 * 1024 ** 3


@dataclass
class Imported:
    """What an import did, row by row."""

    committed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    bases_left: list[str] = field(default_factory=list)  # names of bases without weights: resume retrains them
    conflicts: list[str] = field(default_factory=list)  # one line each


def read_folder(folder: str) -> list[dict]:
    """The rows of a results folder, every one checked; UsageError for anything else or for rows that
    do not reproduce from their keys."""
    if not Path(folder).is_dir():
        raise UsageError(f"{folder}: no such results folder (import reads a folder holding results.parquet)")
    rows = folder_rows(folder).rows
    old = [r for r in rows if r["protocol"] < RNG_ROOT_FROM or r["rng_root"] is None]
    if old:
        raise UsageError(f"{folder}: {len(old)} of {len(rows)} rows are of protocol {old[0]['protocol']}, planned "
                         "before draws came from rng_root: they do not reproduce from their keys; run the sweep "
                         "again instead of importing them")
    return rows


def import_rows(folder: str, rows: list[dict], store: Store) -> Imported:
    """Commit the folder's `rows` (read_folder) into `store`, bases with their weights only (module doc)."""
    done = Imported()
    for row in sorted(rows, key=lambda r: (r["base_key"] is not None, r["key"])):  # bases first
        existing = records.read_result(store, row["key"])
        if existing is not None:
            _kept(existing, row, done)
            continue
        if row["treatment"] == "base":
            blob = _weights(Path(folder), row)
            if blob is None:
                done.bases_left.append(row["name"])
                continue
            store.commit_bytes(layout.base_weights_path(row["key"], row["weights_sha256"]), blob)
        if records.commit_result(store, row):
            done.committed.append(row["name"])
        else:  # another writer committed it meanwhile
            _kept(records.read_result(store, row["key"]) or {}, row, done)
    return done


def _kept(existing: dict, row: dict, done: Imported) -> None:
    differing = [name for name in records.MEASURED if existing.get(name) != row.get(name)]
    if not differing:
        done.already.append(row["name"])
        return
    name = differing[0]
    done.conflicts.append(f"{row['name']} ({row['key']}): the store's row has {name} {existing.get(name)}, the "
                          f"folder's {row.get(name)}; the store's is kept (a key names one network: "
                          "`transfer-sweep verify` retrains it to tell which reproduces)")


def _weights(folder: Path, row: dict) -> Optional[bytes]:
    """The base's weights from the folder when it holds them and they hash to what the row names."""
    sha = row.get("weights_sha256")
    if not sha:
        return None
    path = folder / layout.base_weights_path(row["key"], sha)
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        blob = fh.read(MAX_WEIGHTS_BYTES + 1)
    if hashlib.sha256(blob).hexdigest() != sha:
        raise UsageError(f"{path}: does not hash to the sha256 {sha} that base {row['key']}'s row names")
    return blob


def cmd_import(args) -> int:
    """`transfer-sweep import FOLDER --store URI`: exit 0, or 1 when a stored row disagrees with the folder's."""
    rows = read_folder(args.folder)  # checked before the store is opened (or created)
    store = open_store(args.store, args.endpoint)
    done = import_rows(args.folder, rows, store)
    print(f"import {args.folder} into {store.root}: {len(done.committed)} row(s) committed, {len(done.already)} "
          f"already there, {len(done.bases_left)} base(s) left for `resume` to retrain (no weights in the folder)")
    for line in done.conflicts:
        print(f"  conflict: {line}")
    return EXIT_FAILED if done.conflicts else EXIT_OK


def add_parsers(sub) -> None:
    """Register `import FOLDER --store URI`."""
    sp = sub.add_parser("import", help="commit a published results folder's rows into a store (then `resume` "
                        "its spec trains only the bases whose weights the folder lacks)")
    sp.add_argument("folder", help="a results folder holding results.parquet (as `report --out` writes)")
    options.add_store(sp, default=None)
    sp.set_defaults(func=cmd_import)
