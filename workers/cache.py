"""The node-local cache of prepared data: where it is, and how a file gets into it.

Several trials on one node may fill the same file at once; each writes a private temporary file and
renames it into place, so a reader sees the whole file or none.
"""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TRANSFER_SWEEP_CACHE"


def cache_dir() -> Path:
    """Local cache root: $TRANSFER_SWEEP_CACHE or ~/.cache/transfer-sweep."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "transfer-sweep"))


def publish_local(path: Path, data: bytes) -> None:
    """Write `path` atomically (temporary file + rename), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
