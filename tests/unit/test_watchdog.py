"""The driver's watchdog ends a run whose Ray cluster is gone, instead of Tune waiting forever."""
import threading
import time

from ray_cluster import free_port

from orchestrator.execution.watchdog import Watchdog, gcs_reachable


def test_a_dead_gcs_is_reported_once_after_the_grace_period():
    lost, done = [], threading.Event()
    address = f"127.0.0.1:{free_port()}"  # nothing listens there: the head is gone
    assert not gcs_reachable(address)
    started = time.monotonic()
    with Watchdog(address, {"CPU": 1}, lambda line: (lost.append(line), done.set()), lost_seconds=0.5,
                  poll_seconds=0.1):
        assert done.wait(10)
    assert time.monotonic() - started < 5
    assert lost == [f"the Ray head's GCS at {address} does not answer (for 0 s): the cluster is gone"] or (
        len(lost) == 1 and lost[0].startswith(f"the Ray head's GCS at {address} does not answer (for "))
