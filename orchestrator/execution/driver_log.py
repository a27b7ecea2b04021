"""A quiet console: Ray's and Tune's own messages go to a log file, the user sees one line per event.

Three sources would otherwise interleave with the progress bar: records of the `ray` logger tree
(Tune's "Trial task failed" tracebacks, start-up warnings), and the error messages the cluster pushes to
every driver ("(raylet) A worker died or was killed ..."), which Ray prints from a background thread
through `ray._private.worker.print_to_stdstream`. `route_ray_output(path)` sends all three to `path`.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_lock = threading.Lock()


def route_ray_output(path: Path) -> None:
    """Send the `ray` logger tree and Ray's pushed error messages to the file `path` (appended).
    Calling it again (after ray.init, which may add console handlers) adds no second file handler."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ["ray", *(n for n in logging.root.manager.loggerDict if n.startswith("ray."))]
    for name in names:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if not isinstance(old, logging.FileHandler):
                logger.removeHandler(old)
        if name != "ray":
            logger.propagate = True  # up to the file; a non-propagating logger left bare would reach stderr
    ray_logger = logging.getLogger("ray")
    target = os.path.abspath(path)
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == target for h in ray_logger.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
        ray_logger.addHandler(handler)
    ray_logger.propagate = False
    _route_pushed_errors(path)


def _route_pushed_errors(path: Path) -> None:
    try:
        import ray._private.worker as ray_worker  # noqa: PLC0415 (Ray internals: only when routing)
    except ImportError:
        return
    if not hasattr(ray_worker, "print_to_stdstream"):
        return  # a Ray without this hook prints as before: noisy, never broken

    def to_file(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        with _lock, open(path, "a", encoding="utf-8") as fh:
            for line in data.get("lines", []):
                fh.write(f"({data.get('pid', 'ray')}) {line}\n")
    ray_worker.print_to_stdstream = to_file
