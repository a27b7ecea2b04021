"""Where a factory's module would be imported from, found without running any of it, and refused
unless it is installed code or code the user put on PYTHONPATH.

A spec names its network's code as 'package.module:function', and specs come back from a shared store.
Ray puts the driver's working directory on every worker's sys.path, and the default store is ./store:
a `.py` file written into a local or NFS store folder would be importable as `store.<name>`. So a
factory's module must resolve (1) through an installed package (site-packages, an editable install, the
standard library) or through a folder named on PYTHONPATH, never through the working directory Ray or
`python -m` put on the path, and (2) never to a file under the sweep's store folder, whatever path.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from typing import Sequence

INTERPRETER_TIMEOUT = 60  # seconds for a bare interpreter to print its path


@functools.lru_cache(maxsize=4)
def _trusted_entries(pythonpath: str) -> frozenset[str]:
    """The sys.path a bare interpreter of this environment starts with (-P: no script or working
    directory prepended): the standard library, site-packages and what .pth files add, and PYTHONPATH."""
    try:
        out = subprocess.run([sys.executable, "-P", "-c", "import json, sys; print(json.dumps(sys.path))"],
                             capture_output=True, text=True, timeout=INTERPRETER_TIMEOUT, check=True).stdout
        entries = [str(e) for e in json.loads(out)]
    except (OSError, subprocess.SubprocessError, ValueError):  # fall back to what PYTHONPATH alone names
        entries = [e for e in pythonpath.split(os.pathsep) if e]
    return frozenset(os.path.realpath(e) for e in entries if e)


def trusted_entries() -> frozenset[str]:
    """Real paths of the sys.path entries a factory's module may be found through (see module doc)."""
    return _trusted_entries(os.environ.get("PYTHONPATH", ""))


def _under(path: str | os.PathLike, roots: Sequence[str]) -> str | None:
    real = Path(os.path.realpath(path))
    for root in roots:
        if real == Path(root) or Path(root) in real.parents:
            return root
    return None


def _locations(spec: ModuleSpec) -> list[str]:
    where = list(spec.submodule_search_locations or [])
    if spec.origin and spec.has_location:
        where.append(spec.origin)
    return where


def _top_level(name: str) -> list[tuple[str | None, ModuleSpec]]:
    """(sys.path entry, or None for a finder that is not the path's, spec) of every portion top-level
    module `name` would be imported from, asking the finders in import order: one for a module or a
    regular package, each portion of a namespace package. Empty when nothing finds it."""
    for finder in sys.meta_path:
        if finder is PathFinder or (isinstance(finder, type) and issubclass(finder, PathFinder)):
            portions: list[tuple[str | None, ModuleSpec]] = []
            for entry in sys.path:
                found = PathFinder.find_spec(name, [entry])
                if found is not None and found.loader is not None:  # a regular one wins, as in import
                    return [(entry, found)]
                if found is not None:
                    portions.append((entry, found))
            if portions:
                return portions
            continue
        find = getattr(finder, "find_spec", None)
        found = find(name, None) if find is not None else None
        if found is not None:  # builtin, frozen, an editable install's finder: installed code
            return [(None, found)]
    return []


def check_module_origin(module_name: str, refused_roots: Sequence[str] = ()) -> None:
    """ValueError (one line) unless `module_name` would be imported from installed code or PYTHONPATH,
    and from nowhere under `refused_roots` (the store folder). Runs none of the module's code."""
    parts = module_name.split(".")
    roots = [os.path.realpath(r) for r in refused_roots]
    found = _top_level(parts[0])
    if not found:
        raise ValueError(f"cannot import module {module_name!r}: ModuleNotFoundError: No module named {parts[0]!r}")
    trusted = trusted_entries()
    for entry, spec in found:
        if entry is not None and os.path.realpath(entry or ".") not in trusted:
            raise ValueError(f"module {module_name!r} would be imported from {os.path.realpath(entry or '.')}, "
                             "a working directory on the path, not installed code: install it, or put its folder "
                             "on PYTHONPATH")
    specs = [spec for _, spec in found]
    for depth in range(len(parts)):
        for spec in specs:
            for location in _locations(spec):
                if (root := _under(location, roots)) is not None:
                    raise ValueError(f"module {module_name!r} would be imported from {location}, inside the "
                                     f"store {root}: code is never imported from a store")
        if depth + 1 == len(parts):
            return
        search = [loc for spec in specs for loc in (spec.submodule_search_locations or [])]
        inner = PathFinder.find_spec(parts[depth + 1], search) if search else None
        if inner is None:
            return  # not found: importing it says so, in the loader's own words
        specs = [inner]
