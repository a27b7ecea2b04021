"""Joining or starting Ray, the same way for every command that needs it (`run`, `resume`, `data prepare`).

Where the driver connects: the given address; else RAY_ADDRESS (Ray sets it for a Ray Job's driver,
which `submit` runs, so it joins the cluster it runs on); else a private local Ray for this command
(`address="local"`: a bare `ray.init()` would silently join whatever cluster was last started on this
machine, found when a demo joined a benchmark's).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import ray

from orchestrator.execution.driver_log import route_ray_output

RAY_TMP_ENV = "TRANSFER_SWEEP_RAY_TMP"  # a short temp dir for a private Ray (socket paths are limited)
# What Ray's idle worker processes import before any work comes: Tune and the trainable, so that a
# trial slot (a reused Tune actor, trainable.py) starts warm. Not torch: attempts run on workers that
# stay warm from trial to trial and import it once, at their first trial, and the idle workers that
# never train (Ray prestarts one per CPU) no longer spend ~2 s of CPU each on it (bench/overhead.py).
# Cluster nodes get the same list through RAY_preload_python_modules (Dockerfile).
PRELOAD_MODULES = ("ray.tune", "orchestrator.execution.trainable")


def connect(address: Optional[str], dashboard: bool = True,
            log_file: Optional[Path] = None) -> tuple[bool, Optional[str]]:
    """Connect this process to Ray. Returns (started, dashboard_url): `started` is True when this call
    connected (the caller then calls ray.shutdown() when done), False when Ray was already up.
    With `log_file`, Ray's and Tune's own messages go there instead of the console (driver_log.py)."""
    if ray.is_initialized():
        return False, _dashboard_url(ray.get_runtime_context())
    kwargs: dict[str, Any] = dict(log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    if log_file is not None:
        route_ray_output(log_file)  # before init: its start-up warnings go to the file too
        kwargs["configure_logging"] = False  # which would put a console handler back
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ctx = ray.init(address=address, **kwargs)
    else:
        ctx = ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1",
                       _temp_dir=os.environ.get(RAY_TMP_ENV),
                       _system_config={"preload_python_modules": list(PRELOAD_MODULES)}, **kwargs)
    if log_file is not None:
        route_ray_output(log_file)  # again: init starts the thread that prints the cluster's errors
    return True, _dashboard_url(ctx)


def _dashboard_url(ctx: Any) -> Optional[str]:
    url = getattr(ctx, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"



def disconnect() -> bool:
    """Leave Ray as a command's last step; True when this process was connected. A private local Ray
    is torn down without waiting for its processes to exit (every result is in the store by now), and
    without the half second Ray's own exit hook sleeps for log lines this CLI routes itself."""
    if not ray.is_initialized():
        return False
    ray.shutdown()
    return True
