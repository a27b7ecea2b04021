"""The driver's watchdog: notice when the Ray cluster under a sweep is gone, or never grows the nodes
it waits for, and end the run with one line instead of hanging.

When the head's GCS stops answering, or no node is alive, Tune's loop does not fail: it prints
"Cluster resources not detected ... Attempt #5" forever. The watchdog polls the cluster from a thread
(each poll itself bounded by a timeout, since a half-dead GCS can block a call for minutes) and calls
`on_lost(line)` once the cluster has been unhealthy for `lost_seconds`, or, when the sweep waits for
the autoscaler, once `scale_seconds` passed without a node that fits a trial.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Optional

from orchestrator.execution.feasibility import fits, live_nodes

POLL_SECONDS = 5.0  # between health checks
CALL_TIMEOUT = 10.0


def gcs_reachable(gcs_address: str, timeout: float = 2.0) -> bool:
    """Whether the GCS port accepts a TCP connection."""
    host, _, port = gcs_address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _bounded(fn: Callable[[], object], timeout: float) -> tuple[bool, object]:
    """(finished, value) of fn() run in a daemon thread for at most `timeout` seconds."""
    box: dict = {}

    def call() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 (any failure of a health probe means: not healthy)
            box["error"] = exc
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    return ("value" in box), box.get("value")


class Watchdog:
    """Polls the cluster until stopped; calls `on_lost(line)` at most once."""

    def __init__(self, gcs_address: str, demand: dict[str, float], on_lost: Callable[[str], None],
                 lost_seconds: float = 30.0, scale_seconds: Optional[float] = None,
                 waiting_for: str = "", poll_seconds: float = POLL_SECONDS):
        self.gcs_address, self.demand, self.on_lost = gcs_address, demand, on_lost
        self.poll_seconds = poll_seconds
        self.lost_seconds, self.scale_seconds, self.waiting_for = lost_seconds, scale_seconds, waiting_for
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cluster-watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def health(self) -> tuple[bool, str, list[dict[str, float]]]:
        """(healthy, what is wrong, live nodes)."""
        if not gcs_reachable(self.gcs_address):
            return False, f"the Ray head's GCS at {self.gcs_address} does not answer", []
        finished, nodes = _bounded(live_nodes, CALL_TIMEOUT)
        if not finished or not isinstance(nodes, list):
            return False, f"the Ray head at {self.gcs_address} does not answer queries", []
        if not nodes:
            return False, f"the Ray cluster at {self.gcs_address} has no alive node", []
        return True, "", nodes

    def _loop(self) -> None:
        started = time.monotonic()
        unhealthy_since: Optional[float] = None
        while not self._stop.wait(self.poll_seconds):
            healthy, problem, nodes = self.health()
            now = time.monotonic()
            if healthy:
                unhealthy_since = None
            elif unhealthy_since is None:
                unhealthy_since = now
            elif now - unhealthy_since >= self.lost_seconds:
                self._lose(f"{problem} (for {now - unhealthy_since:.0f} s): the cluster is gone")
                return
            if (healthy and self.scale_seconds is not None and now - started >= self.scale_seconds
                    and not any(fits(self.demand, n) for n in nodes)):
                self._lose(f"{self.waiting_for or 'waited for the autoscaler'}: no node that fits a trial "
                           f"joined within {self.scale_seconds:.0f} s")
                return

    def _lose(self, line: str) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.on_lost(line)
