"""The unit tier's guard fires: a unit test that starts a process, or asks for SeaweedFS or Ray, fails
with a message naming the rule and where the test belongs (tests/process_guard.py, tests/unit/conftest.py)."""
import multiprocessing
import os
import subprocess

import pytest
from process_guard import no_process_started, refused_so_far

REFUSED = r"^unit tests start no process or server: .*: move this test to tests/store .* or tests/integration"


def test_a_subprocess_in_a_unit_test_is_refused_before_it_starts(tmp_path):
    """The guard the conftest put around this very test: nothing runs, the failure names the rule."""
    marker = tmp_path / "ran"
    with pytest.raises(pytest.fail.Exception, match=REFUSED) as info:
        subprocess.run(["touch", str(marker)], check=False)
    assert f"_execute_child('touch {marker}')" in str(info.value)
    assert not marker.exists()
    assert len(refused_so_far()) == 1
    refused_so_far().clear()  # caught here on purpose: otherwise the guard fails this test after it


def _start_fork():
    multiprocessing.get_context("fork").Process(target=os.getpid).start()


def _start_spawn():
    multiprocessing.get_context("spawn").Process(target=os.getpid).start()


@pytest.mark.parametrize("start", [
    lambda path: os.system(f"touch '{path}'"),
    lambda path: os.posix_spawn("/bin/touch", ["touch", str(path)], os.environ),
    lambda path: _start_fork(),
    lambda path: _start_spawn(),
], ids=["os.system", "os.posix_spawn", "multiprocessing fork", "multiprocessing spawn"])
def test_every_way_of_starting_a_process_is_refused_even_when_the_code_swallows_it(tmp_path, start):
    marker = tmp_path / "ran"
    with pytest.raises(pytest.fail.Exception, match=REFUSED):
        with no_process_started():
            try:
                start(marker)
            except BaseException:  # noqa: BLE001 - code under test that hides the refusal
                pass
    assert not marker.exists()


@pytest.mark.parametrize("fixture, belongs", [("s3_server", "tests/store"), ("ray_head", "tests/integration")])
def test_the_server_fixtures_fail_in_the_unit_tier(request, fixture, belongs):
    with pytest.raises(pytest.fail.Exception, match=rf"^unit tests start no process or server: this test asks "
                                                    rf"for {fixture} .*: move it to {belongs}$"):
        request.getfixturevalue(fixture)
