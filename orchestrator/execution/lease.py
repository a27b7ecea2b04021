"""One driver per sweep: a lease object in the store, taken create-only, kept alive by a heartbeat.

Two drivers of one sweep (a local `resume` while the cluster's job still runs it) would not break
exactly-once, but they would race for every trial and double the cost. A driver takes generation g+1
of sweeps/<name>/lease/ with a create-only commit (one winner, on any backend), rewrites it every
HEARTBEAT_SECONDS and marks it released when it ends. Another driver refuses while the newest lease is
held and fresh; a lease whose heartbeat is older than STALE_SECONDS (its driver was killed) is taken
over, and `--force` takes over at once.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from orchestrator.errors import UsageError
from sweepcore.layout import lease_prefix
from sweepcore.store import Store, StoreError
from sweepcore.terminal import for_terminal

HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 90.0
# how far ahead of this clock another host's timestamps may be; a heartbeat dated further ahead is no
# sign of life (it would hold the lease, or read "running", forever)
CLOCK_SKEW_SECONDS = 300.0
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray for a Ray Job's driver
JOB_META = "transfer_sweep_job"  # the submission id `submit` puts in the job's metadata


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _ray_job() -> Optional[str]:
    try:
        return json.loads(os.environ.get(JOB_CONFIG_ENV, "{}")).get("metadata", {}).get(JOB_META)
    except (ValueError, AttributeError):
        return None


def describe_holder(holder: dict, now: dt.datetime) -> str:
    """'pid 123 on host h (Ray job j), since ..., last heartbeat 12 s ago'."""
    shown = {k: for_terminal(holder.get(k), 80) for k in ("pid", "host", "job", "started")}  # store text
    job = f" (Ray job {shown['job']})" if holder.get("job") else ""
    beat = _age(holder, now)
    return (f"pid {shown['pid']} on host {shown['host']}{job}, since {shown['started']}, "
            f"last heartbeat {beat:.0f} s ago")


def _age(holder: dict, now: dt.datetime) -> float:
    try:
        age = (now - dt.datetime.fromisoformat(holder["heartbeat"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return float("inf")  # unreadable: treat as stale rather than block the sweep forever
    return age if age >= -CLOCK_SKEW_SECONDS else float("inf")  # from the future: no sign of life


@dataclass
class Lease:
    """A held lease; `release()` (or leaving the `with` block) ends it."""

    store: Store
    path: str
    record: dict
    on_lost: Optional[Callable[[str], None]] = None  # told, from the heartbeat thread, when another took over
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None

    def taken_over_by(self) -> Optional[str]:
        """Who holds a newer generation of this sweep's lease (`--force`, or a takeover of a lease that
        looked stale), as a line; None while this one is the newest."""
        prefix, mine = self.path.rsplit("/", 1)
        newer = sorted(p for p in self.store.list(prefix) if _generation(p) > _generation(mine))
        if not newer:
            return None
        holder = _read(self.store, newer[-1]) or {}
        return (f"sweep lease {self.store.uri(newer[-1])} was taken over by "
                f"{describe_holder(holder, _now())}")

    def _write(self) -> None:
        self.store.write_bytes(self.path, json.dumps(self.record, sort_keys=True).encode())

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                lost = self.taken_over_by()
            except (StoreError, OSError):
                lost = None  # the next beat looks again
            if lost is not None:  # the other driver runs the sweep now: this one must stop, and say so
                self._stop.set()
                if self.on_lost is not None:
                    self.on_lost(lost)
                return
            self.record["heartbeat"] = _now().isoformat()
            try:
                self._write()
            except (StoreError, OSError):
                pass  # the next beat retries; a lease that looks stale only lets --force-less takeover

    def start(self) -> "Lease":
        self._thread = threading.Thread(target=self._beat, name="sweep-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.record.update(released=True, heartbeat=_now().isoformat())
        try:
            self._write()
        except (StoreError, OSError):
            pass  # an unreleased lease goes stale by itself

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _generation(path: str) -> int:
    """The generation a lease file's name holds (000042.json: 42); -1 for any other name."""
    name = path.rsplit("/", 1)[-1]
    return int(name[:-5]) if name.endswith(".json") and name[:-5].isdigit() and len(name) <= 25 else -1


def acquire(store: Store, sweep: str, force: bool = False,
            on_lost: Optional[Callable[[str], None]] = None) -> Lease:
    """Take the sweep's lease, or raise UsageError naming the driver that holds it. `on_lost` is called
    (from the heartbeat thread) if another driver takes the lease over later."""
    prefix = lease_prefix(sweep)
    generations = sorted(g for p in store.list(prefix) if (g := _generation(p)) >= 0)
    newest = generations[-1] if generations else 0
    now = _now()
    if newest and not force:
        holder = _read(store, f"{prefix}/{newest:06d}.json")
        if holder is not None and not holder.get("released") and _age(holder, now) < STALE_SECONDS:
            raise UsageError(f"sweep {sweep} is already being run by {describe_holder(holder, now)}; wait for "
                             f"it to finish, or pass --force to take over")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "job": _ray_job(),
              "started": now.isoformat(), "heartbeat": now.isoformat(), "generation": newest + 1}
    path = f"{prefix}/{newest + 1:06d}.json"
    if not store.commit_bytes(path, json.dumps(record, sort_keys=True).encode()):
        winner = _read(store, path) or {}
        raise UsageError(f"sweep {sweep} was just started by {describe_holder(winner, _now())}; not run twice")
    return Lease(store, path, record, on_lost).start()


def _read(store: Store, path: str) -> Optional[dict]:
    try:
        value = json.loads(store.read_bytes(path))
        return value if isinstance(value, dict) else None
    except (FileNotFoundError, ValueError):
        return None
