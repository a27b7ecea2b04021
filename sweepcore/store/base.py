"""The byte API every store backend implements, its retry loop, and the rules for what may be written.

A store is one root (a local folder or s3://bucket/prefix) holding datasets, checkpoints and results.
Everything crosses this boundary as bytes; what the bytes mean is records.py and layout.py.

Credentials come only from the standard AWS chain (env vars, config files, instance role); they are
never accepted in URIs, never logged and never written (writes containing them are refused).
"""
from __future__ import annotations

import abc
import logging
import os
import time
from typing import Any, Callable, TypeVar

from sweepcore.errors import OneLineError

log = logging.getLogger(__name__)

RETRY_SECONDS = 60.0  # default budget for retrying transient errors; env overrides (below)
RETRY_ENV = "TRANSFER_SWEEP_STORE_RETRY_SECONDS"
_MAX_BACKOFF = 2.0  # short enough to notice a recovered endpoint within seconds
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
T = TypeVar("T")


class StoreError(OneLineError):
    """A store problem a user can act on; str() is one line naming the problem (never a secret)."""


def retry_seconds() -> float:
    """The current retry budget for transient errors (env TRANSFER_SWEEP_STORE_RETRY_SECONDS)."""
    value = os.environ.get(RETRY_ENV)
    return float(value) if value else RETRY_SECONDS


def clean_path(path: str, allow_empty: bool = False) -> str:
    """Normalise a store-relative path; refuse absolute paths and '..' (no escaping the root)."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts or str(path).startswith("/"):
        raise ValueError(f"store paths are relative and stay under the root: {path!r}")
    if not parts and not allow_empty:
        raise ValueError("empty store path")
    return "/".join(parts)


def refuse_secrets(path: str, data: bytes) -> None:
    """Refuse to write an object that contains a credential value from the environment."""
    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= 8 and value.encode() in data:
            raise StoreError(f"refusing to write {path}: it contains the value of {name}")


def redact(text: str) -> str:
    """Replace credential values from the environment by '***' (tracebacks may quote them)."""
    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= 8:
            text = text.replace(value, "***")
    return text


def one_line(exc: BaseException) -> str:
    """Type and message of an error, one line; connection errors cut to their cause
    ("[Errno 111] Connection refused") instead of the full request URL."""
    kwargs = getattr(exc, "kwargs", None)  # botocore keeps the underlying error there
    cause = kwargs.get("error") if isinstance(kwargs, dict) else None
    text = str(cause).rsplit(": ", 1)[-1] if cause is not None else str(exc)
    return f"{type(exc).__name__}: {' '.join(text.split())[:300]}"


class Store(abc.ABC):
    """Byte-level access to one store root, with create-only commits and retried transient errors."""

    root: str  # the root URI as given (no secrets; URIs with secrets are rejected by open_store)
    # How many reads a caller may overlap: object stores answer one GET at a time per connection.
    parallel_reads: int = 1

    @abc.abstractmethod
    def read_bytes(self, path: str, limit: int | None = None) -> bytes:
        """Return the object at `path` (relative to the root). FileNotFoundError if absent. With `limit`,
        at most limit + 1 bytes are read: more than `limit` back means the object is larger (a record
        read back from a shared store is checked for size before it is all in memory)."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool:
        """Whether an object exists at `path`."""

    @abc.abstractmethod
    def write_bytes(self, path: str, data: bytes) -> None:
        """Write (or replace) `path` atomically: readers see the old or the new object, never a part."""

    @abc.abstractmethod
    def commit_bytes(self, path: str, data: bytes) -> bool:
        """Create `path` only if absent. True if this call created it, False if it already existed.
        (After an S3 request whose answer was lost, a retry can see its own object and say False:
        either way the object exists with committed content.)"""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Relative paths of all objects under `prefix` (recursive, sorted). Empty if none."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove `path` if present."""

    @abc.abstractmethod
    def uri(self, path: str = "") -> str:
        """Full URI of `path`, for pandas/duckdb/pyarrow users (local path or s3://...)."""

    @abc.abstractmethod
    def filesystem(self, path: str = "") -> tuple[Any, str]:
        """(pyarrow.fs.FileSystem, path in it) for direct reads, e.g. pq.read_table(p, filesystem=fs)."""

    def local_path(self, path: str = "") -> str | None:
        """The path of `path` on this machine's file system when the store is a folder, else None
        (readers then memory-map the store's own file instead of caching a copy)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    # --- shared retry loop ---------------------------------------------------------------------
    def _transient(self, exc: BaseException) -> bool:
        return False

    def _translate(self, exc: BaseException, op: str, path: str) -> BaseException:
        return exc

    def _call(self, op: str, path: str, fn: Callable[[], T], budget: float | None = None) -> T:
        """Run fn(), retrying transient errors with exponential backoff until `budget` seconds pass."""
        deadline = time.monotonic() + (retry_seconds() if budget is None else budget)
        delay, attempt = 0.25, 0
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified below, everything else re-raised
                left = deadline - time.monotonic()
                if not self._transient(exc) or left <= 0:
                    translated = self._translate(exc, op, path)
                    if translated is exc:
                        raise
                    raise translated from exc
                attempt += 1
                wait = min(delay, left)
                log.warning("store: %s %s failed (%s); retry %d in %.1f s (%.0f s left)",
                            op, self.uri(path) if path else self.root, one_line(exc), attempt,
                            wait, left)
                time.sleep(wait)
                delay = min(delay * 2, _MAX_BACKOFF)
