"""The local-folder backend: a plain path or file:// URI.

Writes go to a dot-named temporary file in the target's folder, then `os.replace` (write) or
`os.link` (create-only commit: fails if the target exists). Dot-named files are ignored by
pyarrow/pandas dataset reads, so a crashed writer never shows up.

Nothing leaves the store's folder through a symlink: every read, write, commit, list, delete (and
local_path) first resolves the path's folder with os.path.realpath, and the path itself when it is a
symlink; a path whose resolved location lies outside the resolved store folder is refused with a
StoreError naming it. Links that stay inside the folder work as before. `list` walks without
following symlinked folders; a listed symlink that leads outside is refused when it is read.
"""
from __future__ import annotations

import errno
import functools
import os
import uuid
from typing import Any

from sweepcore.store.base import Store, StoreError, clean_path, one_line, refuse_secrets

TMP_PREFIX = ".tmp-"


class LocalStore(Store):
    """A local folder: temp file + os.replace for writes, temp file + os.link for commits."""

    def __init__(self, root: str, directory: str):
        self.root = root
        self.directory = directory

    def _full(self, path: str, allow_empty: bool = False) -> str:
        clean = clean_path(path, allow_empty)
        return os.path.join(self.directory, *clean.split("/")) if clean else self.directory

    def _checked(self, path: str, op: str, allow_empty: bool = False) -> str:
        """_full(path), after making sure that, symlinks resolved, it lies inside the store's folder:
        one realpath of its folder (and one of the path itself when it is a symlink)."""
        full = self._full(path, allow_empty)
        if full == self.directory:
            return full
        root = _real_root(self.directory)
        where = os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full))
        if os.path.islink(where):
            where = os.path.realpath(where)
        if not (where == root or where.startswith(root.rstrip(os.sep) + os.sep)):
            raise StoreError(f"local store: refusing to {op} {full}: it leads outside the store folder "
                             f"{self.directory} (to {where}) through a symbolic link")
        return full

    def _transient(self, exc: BaseException) -> bool:
        return isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.EAGAIN, errno.EBUSY,
                                                          errno.ESTALE, errno.ETIMEDOUT)

    def _translate(self, exc: BaseException, op: str, path: str) -> BaseException:
        if isinstance(exc, (FileNotFoundError, ValueError, StoreError)) or not isinstance(exc, OSError):
            return exc
        return StoreError(f"local store: cannot {op} {self._full(path, True)}: "
                          f"{exc.strerror or one_line(exc)}")

    def _write_temp(self, target: str, data: bytes) -> str:
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(target)}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def read_bytes(self, path: str, limit: int | None = None) -> bytes:
        full = self._checked(path, "read")

        def read() -> bytes:
            with open(full, "rb") as f:
                return f.read() if limit is None else f.read(limit + 1)
        return self._call("read", path, read)

    def exists(self, path: str) -> bool:
        return os.path.isfile(self._checked(path, "read"))

    def write_bytes(self, path: str, data: bytes) -> None:
        full, data = self._checked(path, "write"), bytes(data)
        refuse_secrets(path, data)

        def write() -> None:
            tmp = self._write_temp(full, data)
            try:
                os.replace(tmp, full)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        self._call("write", path, write)

    def commit_bytes(self, path: str, data: bytes) -> bool:
        full, data = self._checked(path, "commit"), bytes(data)
        refuse_secrets(path, data)

        def commit() -> bool:
            tmp = self._write_temp(full, data)
            try:
                os.link(tmp, full)  # atomic and create-only: fails if the target exists
                return True
            except FileExistsError:
                return False
            finally:
                _unlink_quietly(tmp)
        return self._call("commit", path, commit)

    def list(self, prefix: str) -> list[str]:
        base = self._checked(prefix, "list", allow_empty=True)
        found = []
        for folder, _, files in os.walk(base):  # symlinked folders are not followed
            for name in files:
                if not name.startswith(TMP_PREFIX):
                    rel = os.path.relpath(os.path.join(folder, name), self.directory)
                    found.append(rel.replace(os.sep, "/"))
        return sorted(found)

    def delete(self, path: str) -> None:
        _unlink_quietly(self._checked(path, "delete"))

    def uri(self, path: str = "") -> str:
        return self._full(path, allow_empty=True)

    def local_path(self, path: str = "") -> str | None:
        return self._checked(path, "read", allow_empty=True)

    def filesystem(self, path: str = "") -> tuple[Any, str]:
        import pyarrow.fs as pafs  # noqa: PLC0415 (Arrow only where a file system is asked for)
        return pafs.LocalFileSystem(), self.uri(path)


@functools.lru_cache(maxsize=64)
def _real_root(directory: str) -> str:
    """The store folder, symlinks resolved: once per process and folder (never pickled: another machine
    may mount the same folder through other links)."""
    return os.path.realpath(directory)


def _unlink_quietly(full: str) -> None:
    try:
        os.remove(full)
    except FileNotFoundError:
        pass


def open_local(uri: str, directory: str, check: bool) -> LocalStore:
    """A LocalStore for `directory`; with `check`, create it on first use or say why it cannot be used."""
    directory = os.path.abspath(os.path.expanduser(directory))
    if check:
        _prepare_local(directory)
    return LocalStore(uri, directory)


def _prepare_local(directory: str) -> None:
    """Create the store folder on first use; refuse files, unwritable folders (creating nothing)."""
    if os.path.exists(directory):
        if not os.path.isdir(directory):
            raise StoreError(f"store path {directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(f"store folder {directory} is not writable")
        return
    parent = os.path.dirname(directory)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise StoreError(f"cannot create store folder {directory}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create store folder {directory}: {parent} is not writable")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create store folder {directory}: {exc.strerror}") from None
