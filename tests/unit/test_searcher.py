"""The order of work: the DependencySearcher hands out a trial only once its base is committed, in plan
order, waits (None) while everything left depends on something running, blocks what a failed base
can never feed, and says FINISHED when nothing is left (pure logic: nothing is started)."""
from __future__ import annotations

from ray.tune.search import Searcher

from orchestrator.execution.searcher import DependencySearcher
from orchestrator.spec import make_plan, parse_spec
from sweepcore.store import StoreRef

SPEC = {"name": "order", "dataset": "fashion-animals", "splits": ["random:0"],
        "treatments": ["base", "selffer", "transfer"], "layers": [1, 2], "directions": ["A->B"],
        "model": {"arch": "small"}, "train": {"iterations": 4}}
STORE = StoreRef("/tmp/nowhere", None)


def _plan():
    return make_plan(parse_spec(SPEC))


def _drain(searcher: DependencySearcher, prefix: str) -> list[str]:
    """Names handed out until the searcher waits or finishes, with trial ids prefix0, prefix1, ..."""
    names = []
    while isinstance(config := searcher.suggest(f"{prefix}{len(names)}"), dict):
        names.append(config["settings"]["name"])
    return names


def test_dependents_wait_for_their_base_and_come_in_plan_order():
    plan = _plan()
    searcher = DependencySearcher(list(plan.trials), set(), STORE, run="r1", retries=3)
    assert _drain(searcher, "a") == ["baseA random:0 s0", "baseB random:0 s0"]  # every transfer waits
    assert searcher.suggest("wait") is None
    base_b = next(t for t in plan.bases if t.name.startswith("baseB"))
    trial_id = next(i for i, k in searcher.running.items() if k == base_b.key)
    searcher.on_trial_complete(trial_id, {"committed": 1})  # baseB commits: exactly its dependents come
    assert _drain(searcher, "b") == ["BnB n=1 random:0 s0", "BnB n=2 random:0 s0"]
    assert searcher.suggest("still waiting for baseA") is None


def test_the_config_is_complete_settings_and_the_stores_reference():
    plan = _plan()
    searcher = DependencySearcher(list(plan.trials), set(), STORE, run="r1", retries=3)
    config = searcher.suggest("t0")
    assert config == {"settings": plan.bases[0].settings.to_dict(), "store": STORE, "run": "r1", "retries": 3,
                      "cpus": 1.0, "gpus": 0.0}


def test_committed_bases_release_their_dependents_at_once_and_nothing_is_handed_out_twice():
    plan = _plan()
    todo = [t for t in plan.trials if t.base_key is not None]
    searcher = DependencySearcher(todo, {b.key for b in plan.bases}, STORE)
    assert sorted(_drain(searcher, "t")) == sorted(t.name for t in todo)
    assert searcher.suggest("again") is Searcher.FINISHED


def test_a_failed_base_blocks_its_dependents_and_the_searcher_finishes():
    plan = _plan()
    searcher = DependencySearcher(list(plan.trials), set(), STORE)
    _drain(searcher, "a")
    for trial_id, key in list(searcher.running.items()):
        searcher.on_trial_complete(trial_id, error=True)  # both bases failed for good
    assert searcher.suggest("next") is Searcher.FINISHED
    assert sorted(t.key for t in searcher.blocked) == sorted(t.key for t in plan.trials if t.base_key)
    assert searcher.failed == {b.key for b in plan.bases}


def test_a_trial_that_reports_no_commit_counts_as_failed():
    plan = _plan()
    searcher = DependencySearcher(list(plan.trials), set(), STORE)
    _drain(searcher, "a")
    base_a = next(i for i, k in searcher.running.items() if k == plan.bases[0].key)
    searcher.on_trial_complete(base_a, {"gave_up": 1, "committed": 0})  # the trainable gave up
    assert searcher.failed == {plan.bases[0].key} and searcher.done == set()
    assert searcher.suggest("next") is None  # baseB still runs; baseA's dependents are blocked
    assert [t.name for t in searcher.blocked] == ["AnB n=1 random:0 s0", "AnB n=2 random:0 s0"]
