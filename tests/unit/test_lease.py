"""One driver per sweep: a second driver refuses with one line naming the first, takes over a stale lease,
and --force takes over at once."""
import datetime as dt
import json
import os
import socket
import threading

import pytest

from orchestrator.errors import UsageError
from orchestrator.execution import lease as leases
from sweepcore.store import open_store


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


def test_a_second_driver_refuses_naming_the_first(store):
    with leases.acquire(store, "demo"):
        with pytest.raises(UsageError) as err:
            leases.acquire(store, "demo")
    line = str(err.value)
    assert line.startswith(f"sweep demo is already being run by pid {os.getpid()} on host {socket.gethostname()}")
    assert line.endswith("wait for it to finish, or pass --force to take over") and "\n" not in line


def test_a_released_lease_is_free_and_force_takes_over(store):
    with leases.acquire(store, "demo"):
        pass
    first = leases.acquire(store, "demo")          # released before: free
    second = leases.acquire(store, "demo", force=True)  # held and fresh: only with --force
    assert (first.record["generation"], second.record["generation"]) == (2, 3)
    first.release()
    second.release()


def test_a_stale_lease_is_taken_over(store):
    held = leases.acquire(store, "demo")
    held._stop.set()  # its driver was SIGKILLed: no more heartbeats
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=leases.STALE_SECONDS + 5)).isoformat()
    store.write_bytes(held.path, json.dumps({**held.record, "heartbeat": old}).encode())
    taker = leases.acquire(store, "demo")
    assert taker.record["generation"] == held.record["generation"] + 1
    taker.release()


def test_two_drivers_starting_at_once_get_exactly_one_lease(store):
    outcomes = []
    barrier = threading.Barrier(4)

    def race():
        barrier.wait()
        try:
            outcomes.append(leases.acquire(store, "race"))
        except UsageError as exc:
            outcomes.append(str(exc))
    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = [o for o in outcomes if isinstance(o, leases.Lease)]
    assert len(held) == 1 and all("sweep race" in o for o in outcomes if isinstance(o, str))
    held[0].release()


def test_the_driver_that_lost_its_lease_to_force_is_told_and_stops_beating(store, monkeypatch):
    monkeypatch.setattr(leases, "HEARTBEAT_SECONDS", 0.05)
    told = threading.Event()
    lines = []
    first = leases.acquire(store, "demo", on_lost=lambda line: (lines.append(line), told.set()))
    assert first.taken_over_by() is None
    second = leases.acquire(store, "demo", force=True)
    assert told.wait(10), "the first driver never noticed"
    assert lines == [f"sweep lease {store.uri(second.path)} was taken over by pid {os.getpid()} on host "
                     f"{socket.gethostname()}, since {second.record['started']}, last heartbeat "
                     f"{lines[0].rsplit('heartbeat ', 1)[1]}"]
    first._thread.join(5)
    assert not first._thread.is_alive()  # it writes its lease no more
    second.release()


def test_a_heartbeat_from_the_future_does_not_hold_the_lease(store):
    held = leases.acquire(store, "demo")
    held._stop.set()
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).isoformat()
    store.write_bytes(held.path, json.dumps({**held.record, "heartbeat": future}).encode())
    taker = leases.acquire(store, "demo")  # no --force needed
    assert taker.record["generation"] == held.record["generation"] + 1
    taker.release()
