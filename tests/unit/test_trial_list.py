"""The trials file (`plan --export`, read by workers/loop.py): a round trip keeps every trial in plan
order, and a file that was damaged, edited or reordered is refused with one line naming the entry."""
from __future__ import annotations

import json

import pytest

from orchestrator.spec import make_plan, parse_spec
from sweepcore.trial_list import TrialListError, dump_trials, load_trials
from workers.loop import select

SPEC = {"name": "export", "dataset": "fashion-animals", "splits": ["random:0", "random:1"],
        "treatments": ["base", "selffer", "transfer"], "layers": [2, 5], "directions": ["A->B"],
        "seeds": [0, 1], "train": {"iterations": 10}}


def exported() -> tuple[list, dict]:
    plan = make_plan(parse_spec(SPEC))
    return list(plan.trials), json.loads(dump_trials(plan.sweep, [t.settings for t in plan.trials]))


def test_round_trip_keeps_the_plan_order_and_every_field():
    trials, doc = exported()
    sweep, loaded = load_trials(json.dumps(doc).encode(), "f.json")
    assert sweep == "export" and loaded == [t.settings for t in trials]
    assert all(not t.base_key for t in loaded[:8]) and len(loaded) == 8 + 2 * 2 * 4  # bases first


@pytest.mark.parametrize("damage,expected", [
    (lambda d: d.update(format="other"), "f.json: not a trials file (expected format 'transfer-sweep trials' "
                                         "version 1, as `transfer-sweep plan SPEC --export FILE` writes)"),
    (lambda d: d.update(trials=[]), "f.json: not a trials file (needs a sweep name and a non-empty list"),
    (lambda d: d["trials"].__setitem__(0, 7), "f.json: trials[0] is not a settings object"),
    (lambda d: d["trials"][1].update(seed=5), "f.json: trials[1]: settings.rng_root "),
    (lambda d: d["trials"][2].pop("model"), "f.json: trials[2]: settings: missing fields ['model']"),
    (lambda d: d["trials"].append(d["trials"][0]), "is listed twice"),
    (lambda d: d["trials"].reverse(), "copies base"),
])
def test_a_damaged_file_is_refused_with_one_line(damage, expected):
    _, doc = exported()
    damage(doc)
    with pytest.raises(TrialListError) as info:
        load_trials(json.dumps(doc).encode(), "f.json")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_not_json_and_too_large():
    with pytest.raises(TrialListError, match="f.json: not a trials file .not JSON"):
        load_trials(b"{", "f.json")
    with pytest.raises(TrialListError, match="more than"):
        load_trials(b" " * ((64 << 20) + 1), "f.json")


def test_a_unit_slice_holds_its_bases_and_their_dependents():
    trials, _ = exported()
    one = select([t.settings for t in trials], "random:1,0", None)
    assert {(t.split, t.seed) for t in one} == {("random:1", 0)} and len(one) == 2 + 4
    keys = {t.key for t in one}
    assert all(t.base_key in keys for t in one if t.base_key)
    assert len(select([t.settings for t in trials], None, 3)) == 3

