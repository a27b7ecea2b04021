"""Unit tier: tests that start nothing: no server, no process, no Ray (the whole tier in under a minute).

While a unit test's setup, call and teardown run, starting any process fails the test
(tests/process_guard.py), and so do the `s3_server` and `ray_head` fixtures. In-process training,
loopback HTTP stubs on a thread and reading the repository's files are fine. A test that needs more
belongs to tests/store (SeaweedFS, the CLI or a worker as a process) or tests/integration (Ray).
"""
import platform

import pytest
from process_guard import RULE, no_process_started

# The standard library runs `uname -p` once per process, the first time anything reads the processor
# (mlflow's import does, through platform.platform()): read here, before any test, so that whichever
# test comes first is not blamed for a cache the interpreter fills.
platform.uname().processor


# The hooks of this conftest run for the tests under this folder only; setup and teardown cover their
# module- and session-scoped fixtures too.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with no_process_started():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with no_process_started():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with no_process_started():
        return (yield)


@pytest.fixture(scope="session")
def s3_server():
    pytest.fail(f"{RULE}: this test asks for s3_server (SeaweedFS): move it to tests/store", pytrace=False)


@pytest.fixture(scope="session")
def ray_head():
    pytest.fail(f"{RULE}: this test asks for ray_head (a Ray cluster): move it to tests/integration", pytrace=False)
