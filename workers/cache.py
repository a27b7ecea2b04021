"""The node-local cache of prepared data: where it is, how a file gets into it, and how big it may grow.

Several trials on one node may want the same file at once. `fetch_once` takes a per-file lock
(fcntl, so it holds across the node's processes): the first trial downloads, the others wait and then
find the file; every file is written to a private temporary name and renamed into place, so a reader
sees the whole file or none.

The cache is bounded: before a download, the least recently used files (by modification time, which
every use refreshes) are evicted until the new file fits under the limit: $TRANSFER_SWEEP_CACHE_GB
when set, else what the cache holds plus the disk's free space minus a reserve (10 % of the disk, at
least 2 GiB) so training never fills the disk. A file another process has memory-mapped stays
readable after its eviction (POSIX unlink), so eviction never breaks a running trial.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

CACHE_ENV = "TRANSFER_SWEEP_CACHE"
CACHE_LIMIT_ENV = "TRANSFER_SWEEP_CACHE_GB"
_LOCKS = ".locks"


def cache_dir() -> Path:
    """Local cache root: $TRANSFER_SWEEP_CACHE or ~/.cache/transfer-sweep."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "transfer-sweep"))


def publish_local(path: Path, data: bytes) -> None:
    """Write `path` atomically (temporary file + rename), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def cached_files(root: Path) -> list[Path]:
    """Every complete cached file below `root` (not locks, not temporary files)."""
    if not root.is_dir():
        return []
    return [Path(d, f) for d, dirs, files in os.walk(root) if _LOCKS not in Path(d).parts
            for f in files if not f.startswith(".")]


def limit_bytes(root: Path) -> int:
    """How many bytes the cache below `root` may hold (see the module doc)."""
    raw = os.environ.get(CACHE_LIMIT_ENV)
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            gb = -1.0
        if not gb > 0:
            raise ValueError(f"{CACHE_LIMIT_ENV}={raw!r}: expected a positive number of GB")
        return int(gb * 1e9)
    probe = root
    while not probe.exists():
        probe = probe.parent
    disk = shutil.disk_usage(probe)
    held = sum(p.stat().st_size for p in cached_files(root))
    return held + disk.free - max(disk.total // 10, 2 << 30)


def make_room(root: Path, incoming: int, keep: frozenset[Path] = frozenset()) -> list[Path]:
    """Evict least recently used files below `root` until `incoming` more bytes fit under the limit;
    never the files in `keep` (those the caller is about to use). Returns the evicted paths; raises a
    one-line ValueError when even evicting everything else cannot make room."""
    limit = limit_bytes(root)
    files = sorted(((p, p.stat()) for p in cached_files(root)), key=lambda ps: ps[1].st_mtime)
    held = sum(st.st_size for _, st in files)
    evicted = []
    for path, st in files:
        if held + incoming <= limit:
            break
        if path.resolve() in keep:
            continue
        path.unlink(missing_ok=True)
        held -= st.st_size
        evicted.append(path)
    if held + incoming > limit:
        raise ValueError(f"node cache {root} may hold {limit / 1e9:.1f} GB ({CACHE_LIMIT_ENV} or the disk's "
                         f"free space) but needs {(held + incoming) / 1e9:.1f} GB for the files this trial "
                         f"reads: give the node more disk or raise {CACHE_LIMIT_ENV}")
    return evicted


@contextlib.contextmanager
def file_lock(root: Path, rel: str) -> Iterator[None]:
    """An exclusive lock on cached file `rel` below `root`, shared by every process of the node."""
    lock = root / _LOCKS / (rel.replace("/", "__") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fetch_once(root: Path, rel: str, size: int | None, download: Callable[[], bytes],
               keep: frozenset[Path] = frozenset()) -> Path:
    """The cached file `rel` below `root`, downloaded by `download()` unless a process of this node
    already did (one download per node: see the module doc). `size`: the expected byte count when
    known, so room is made before downloading. The file's modification time is refreshed: it is the
    eviction order."""
    path = root / rel
    with file_lock(root, rel):
        if path.is_file():
            os.utime(path)
            return path
        make_room(root, size or 0, keep)
        data = download()
        if size is None:
            make_room(root, len(data), keep)
        publish_local(path, data)
    return path
