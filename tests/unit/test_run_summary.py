"""What a run says about the trials it did not commit: failed, blocked behind a failed base, or stopped
(the driver was interrupted). A stopped sweep is not a failed one: 'resume' finishes it."""
from __future__ import annotations

from orchestrator.execution.schedule import sort_missing
from orchestrator.spec import parse_spec
from orchestrator.spec.plan import make_plan

SPEC = {"name": "summary", "dataset": "fashion-animals", "splits": ["random:0"],
        "treatments": ["base", "selffer", "transfer"], "layers": [1, 2], "directions": ["A->B"],
        "model": {"arch": "small", "widths": [4, 4, 4, 4, 4], "fc_width": 16}, "train": {"epochs": 1}}


def _plan():
    return make_plan(parse_spec(SPEC))


def test_an_interrupted_run_failed_nothing():
    plan = _plan()
    by_key = plan.by_key()
    base_b = next(t.key for t in plan.bases if t.name.startswith("baseB"))
    failed, blocked, stopped = sort_missing(by_key, committed={base_b}, errored=set())
    assert (failed, blocked) == ([], [])
    assert stopped == sorted(set(by_key) - {base_b})


def test_dependents_of_a_failed_base_are_blocked_and_the_rest_stopped():
    plan = _plan()
    by_key = plan.by_key()
    base_a = next(t for t in plan.bases if t.name.startswith("baseA"))
    base_b = next(t for t in plan.bases if t.name.startswith("baseB"))
    on_a = {t.key for t in plan.trials if t.base_key == base_a.key}
    on_b = {t.key for t in plan.trials if t.base_key == base_b.key}
    assert len(on_a) == 2 and len(on_b) == 2  # AnB n=1,2 on baseA; BnB n=1,2 on baseB
    failed, blocked, stopped = sort_missing(by_key, committed=set(), errored={base_a.key})
    assert failed == [base_a.key]
    assert blocked == sorted(on_a)
    assert stopped == sorted({base_b.key} | on_b)


def test_a_committed_trial_is_never_reported_even_if_an_attempt_errored():
    plan = _plan()
    by_key = plan.by_key()
    base_b = next(t.key for t in plan.bases if t.name.startswith("baseB"))
    failed, blocked, stopped = sort_missing(by_key, committed=set(by_key), errored={base_b})
    assert (failed, blocked, stopped) == ([], [], [])
