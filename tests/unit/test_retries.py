"""Retries follow progress: the pure rule, and the failure record of a trial given up on."""
import pytest

from orchestrator.execution.retries import attempts_without_progress, give_up_line, should_give_up


@pytest.mark.parametrize("steps, stalled", [
    ([0], 0),                      # the first attempt: nothing has ended yet
    ([0, 50], 0),                  # the first attempt checkpointed before it died
    ([0, 0], 1),                   # ... or did not
    ([0, 50, 100, 150, 200], 0),   # killed four times, each time after a new checkpoint
    ([0, 50, 50, 50], 2),          # two attempts in a row resumed from 50 and got no further
    ([0, 0, 50, 50], 1),           # progress resets the count
])
def test_attempts_without_progress_counts_back_from_the_newest(steps, stalled):
    assert attempts_without_progress(steps) == stalled


def test_a_trial_that_keeps_checkpointing_is_never_given_up():
    steps = list(range(0, 5000, 25))  # 200 kills, each after one more checkpoint
    assert not should_give_up(steps, retries=0)


def test_retries_count_the_first_try_and_the_retries_without_progress():
    assert not should_give_up([0, 0, 0], retries=2)      # first try + 1 retry failed: retry again
    assert should_give_up([0, 0, 0, 0], retries=2)       # first try + 2 retries failed: give up
    assert should_give_up([0, 40, 40], retries=0)        # retries: 0 stops at the first stall
    assert not should_give_up([0, 40], retries=0)


def test_the_give_up_line_says_how_many_attempts_from_which_step_and_the_last_error():
    assert give_up_line([0, 40, 40, 40], "ValueError: boom") == (
        "gave up after 2 consecutive attempts without progress (each resumed from step 40; 3 attempts in "
        "this run); last error: ValueError: boom")
