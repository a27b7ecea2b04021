"""Store tier: SeaweedFS, one per test run (the session's `s3_server`), and the CLI or a worker as a
process (`python -m orchestrator.cli ...`, `python -m workers.trial`, the factory probe); no Ray.
A test that needs a Ray cluster belongs to tests/integration: `ray_head` fails here."""
import pytest

RULE = "store tests start no Ray"


@pytest.fixture(scope="session")
def ray_head():
    pytest.fail(f"{RULE}: this test asks for ray_head (a Ray cluster): move it to tests/integration", pytrace=False)
