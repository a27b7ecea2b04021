"""The one writer of output files (report, compare): never through a symlink, never half a file.

Every file is written to a dot-named temporary file in the output folder and then moved onto its name
with `os.replace`, which replaces whatever is there, a symlink included, as a link: the file it pointed
at is never touched. The output folder itself must be a real folder: a symlink there is refused
(UsageError), and a folder that must stay inside another (the report's default place in a local store)
is refused when, symlinks resolved, it lies outside.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Union

from orchestrator.errors import UsageError

TMP_PREFIX = ".tmp-"  # dot-named: never mistaken for an output file, and left out of directory reads


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def output_folder(out_dir: Union[str, Path], within: Union[str, Path, None] = None) -> Path:
    """out_dir, created when absent. UsageError (one line) when it is a symlink or not a folder, or,
    with `within`, when it resolves (symlinks followed) outside that folder."""
    out = Path(out_dir)
    if out.is_symlink():
        raise UsageError(f"output folder {out} is a symbolic link (to {os.path.realpath(out)}); refusing to "
                         "write through it: give --out a real folder")
    if within is not None:
        root, real = os.path.realpath(within), os.path.realpath(out)
        if not _inside(real, root):
            raise UsageError(f"output folder {out} leads outside {within} (to {real}); refusing to write there")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"output folder {out} exists and is not a folder") from None
    except OSError as exc:
        raise UsageError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    if out.is_symlink() or not out.is_dir():  # swapped for a link or a file meanwhile
        raise UsageError(f"output folder {out} is not a real folder; refusing to write there")
    return out


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary name in path's folder to write to; when the block ends, what was written there is
    moved onto `path` with os.replace (a symlink at `path` is replaced, never followed); nothing written:
    `path` is left as it is. On an error the temporary file is removed."""
    if path.is_dir() and not path.is_symlink():
        raise UsageError(f"{path} is a folder; refusing to replace it with an output file")
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        yield tmp
        if os.path.lexists(tmp):
            os.replace(tmp, path)
    finally:
        remove_file(tmp)


def remove_file(path: Path) -> None:
    """Remove a file or a symlink (the link, never its target); folders and absent paths stay as they are."""
    if path.is_symlink() or path.is_file():
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file (see the module doc)."""
    with replacing(path) as tmp:
        tmp.write_text(text)
