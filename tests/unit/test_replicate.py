"""Replicate until decided: which units each round adds (spec/replicate.py), when the driver goes on
(analysis/stopping.py), and the loop itself (cli/rounds.run_rounds) over a stand-in trainer that
commits keys into a set and a judge whose verdicts are fixed by construction; the real driver on Ray:
tests/integration/test_replicate_run.py."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from orchestrator.analysis.claims import HOLDS, UNDECIDED, Claim
from orchestrator.analysis.stats import Interval, Point
from orchestrator.cli.main import main
from orchestrator.cli.rounds import run_rounds, shown_round
from orchestrator.spec import SpecError, make_plan, parse_spec
from orchestrator.spec.replicate import reached_plan, round_reached, rounds, worst_case

DIP = {
    "name": "dip-test", "dataset": "fashion-animals",
    "splits": [e for k in range(4) for e in (
        {"split": f"random:{k}", "treatments": ["base", "selffer"], "layers": [2, 3, 4, 5, 6, 7]},
        {"split": f"random:{k}", "treatments": ["selffer+", "transfer+"], "layers": [7]})],
    "treatments": ["base"], "layers": [2, 3, 4, 5, 6, 7], "directions": ["A->B", "B->A"], "seeds": [0, 1],
    "train": {"iterations": 10},
    "replicate": {"until": "decided", "claims": [2], "max_units": 12},
}


def spec_of(**changes):
    return parse_spec({**DIP, **changes})


def test_rounds_add_a_split_with_every_seed_until_max_units():
    spec = spec_of()
    got = [(r.number, r.units, r.added) for r in rounds(spec)]
    assert got == [(1, 8, ""), (2, 10, "split random:4"), (3, 12, "split random:5")]
    plans = [make_plan(r.spec) for r in rounds(spec)]
    assert [len(p) for p in plans] == [144, 180, 216]
    for before, after in zip(plans, plans[1:]):  # a round keeps every trial of the last, under its key
        new = set(after.by_key()) - set(before.by_key())
        assert set(before.by_key()) < set(after.by_key()) and len(new) == 36
        assert {after.by_key()[k].split for k in new} == {f"random:{len(set(p.split for p in before.trials))}"}
        assert {after.by_key()[k].seed for k in new} == {0, 1}


def test_a_seed_when_a_split_does_not_fit():
    """One split x 3 seeds, max 5: a split (3 units) never fits, so seeds come one at a time."""
    spec = spec_of(splits=["random:0"], treatments=["base", "selffer"], seeds=[0, 1, 2],
                   replicate={"until": "decided", "claims": [2], "max_units": 5})
    assert [(r.units, r.added) for r in rounds(spec)] == [(3, ""), (4, "seed 3"), (5, "seed 4")]


def test_no_replicate_section_is_one_round():
    spec = spec_of(replicate=None)
    assert [r.number for r in rounds(spec)] == [1]
    assert reached_plan(spec, set()).by_key() == make_plan(spec).by_key()


def test_round_reached_follows_committed_keys():
    spec = spec_of()
    first, second, third = (make_plan(r.spec) for r in rounds(spec))
    assert round_reached(spec, set()).number == 1
    assert round_reached(spec, set(first.by_key())).number == 1
    one_new = next(iter(set(second.by_key()) - set(first.by_key())))
    assert round_reached(spec, {one_new}).number == 2
    assert worst_case(spec).number == 3 and len(reached_plan(spec, set(third.by_key()))) == 216


@pytest.mark.parametrize("replicate,expected", [
    ({"until": "decided", "claims": [], "max_units": 10},
     "replicate.claims: until: decided needs the claims it waits for: give one or more of 1, 2, 3, 4, 5, 6, 7, 8"),
    ({"until": "decided", "claims": [9], "max_units": 10},
     "replicate.claims: unknown claim 9 (allowed: 1, 2, 3, 4, 5, 6, 7, 8)"),
    ({"until": "decided", "claims": [2], "max_units": 6},
     "replicate.max_units 6 is below the first round's 8 units (4 splits x 2 seeds): allowed 8 or more"),
    ({"until": "converged", "claims": [2], "max_units": 10}, "replicate.until: 'converged' is not allowed"),
    ({"claims": [2], "max_units": 10}, "replicate.until: required field is missing"),
])
def test_bad_replicate_sections_name_the_field(replicate, expected):
    with pytest.raises(SpecError) as info:
        spec_of(replicate=replicate)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_replicate_needs_a_random_split():
    with pytest.raises(SpecError, match="replicate: adds random splits modelled on the spec's first random split"):
        spec_of(splits=["natman"], treatments=["base", "transfer"])


def test_plan_refuses_a_bad_replicate_section_with_exit_2(tmp_path, capsys):
    import yaml
    path = tmp_path / "dip.yaml"
    path.write_text(yaml.safe_dump({**DIP, "replicate": {"until": "decided", "claims": [2], "max_units": 3}}))
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "replicate.max_units 3 is below the first round's 8 units" in err[0], err


# --- the loop, over a stand-in trainer and a judge fixed by construction ------------------------------
@dataclass
class Summary:
    trained: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    blocked: list = field(default_factory=list)
    stopped: list = field(default_factory=list)


class Killed(Exception):
    """The driver dies (here: before round `kill_at` trains anything)."""


@dataclass
class StandIn:
    """Commits every key of a round not yet committed (counting each commit), and judges claim 2
    undecided until the round reaches `decided_at` units."""

    decided_at: int
    committed: set = field(default_factory=set)
    commits: list = field(default_factory=list)
    kill_at: int = 0
    judged: list = field(default_factory=list)

    def run_round(self, r):
        if r.number == self.kill_at:
            self.kill_at = 0
            raise Killed
        todo = sorted(set(make_plan(r.spec).by_key()) - self.committed)
        self.committed |= set(todo)
        self.commits += todo
        return Summary(trained=todo)

    def judge(self, r):
        self.judged.append(r.units)
        verdict = HOLDS if r.units >= self.decided_at else UNDECIDED
        diff = Interval(0.001, -0.001 if verdict == UNDECIDED else 0.0005, 0.003, r.units, "paired")
        return [Claim(2, "dip", verdict, "", {}, 0.0, points=(), deciding=Point("curvature", diff, ">")),
                Claim(1, "general", UNDECIDED, "", {}, 0.0)]  # not named: never keeps the loop going


def test_the_loop_adds_exactly_the_rule_s_units_and_stops_when_decided():
    spec, stand_in, said = spec_of(), StandIn(decided_at=10), []
    outcome = run_rounds(spec, stand_in.committed, stand_in.run_round, stand_in.judge,
                         lambda r, d: said.append(d.why))
    assert [r.number for r, _ in outcome.ran] == [1, 2] and stand_in.judged == [8, 10]
    assert len(stand_in.commits) == 180 == len(set(stand_in.commits))  # round 3 (216) never ran
    assert not outcome.decision.go_on
    assert said[0].startswith("round 1 (8 units): claim 2 undecided: curvature +0.0010 [-0.0010, +0.0030] (k=8)")
    assert said[0].endswith("claim 2 undecided, so round 2 adds split random:4 (10 units)")
    assert said[1].endswith("every named claim is decided, stopping")


def test_the_loop_stops_at_max_units_and_says_so():
    spec, stand_in, said = spec_of(), StandIn(decided_at=math.inf), []
    run_rounds(spec, stand_in.committed, stand_in.run_round, stand_in.judge, lambda r, d: said.append(d.why))
    assert stand_in.judged == [8, 10, 12] and len(stand_in.commits) == 216
    assert said[-1].endswith("claim 2 still undecided, but max_units is reached (12 units): stopping")


def test_a_driver_killed_between_rounds_goes_on_without_a_duplicate():
    spec, stand_in = spec_of(), StandIn(decided_at=12, kill_at=2)
    with pytest.raises(Killed):  # round 1 committed and judged, then the driver dies
        run_rounds(spec, stand_in.committed, stand_in.run_round, stand_in.judge, lambda r, d: None)
    assert len(stand_in.commits) == 144 and stand_in.judged == [8]
    # a new driver: the same loop from the committed rows (round 1 again: nothing to train; judged again)
    outcome = run_rounds(spec, stand_in.committed, stand_in.run_round, stand_in.judge, lambda r, d: None)
    assert [r.number for r, _ in outcome.ran] == [1, 2, 3] and outcome.ran[0][1].trained == []
    assert len(stand_in.commits) == 216 == len(set(stand_in.commits))


def test_a_round_that_does_not_finish_is_not_judged():
    spec, stand_in = spec_of(), StandIn(decided_at=math.inf)

    def failing(r):
        summary = stand_in.run_round(r)
        summary.failed = summary.trained[:1]
        return summary
    outcome = run_rounds(spec, stand_in.committed, failing, stand_in.judge, lambda r, d: None)
    assert len(outcome.ran) == 1 and outcome.decision is None and stand_in.judged == []


def test_status_shows_the_round_the_driver_went_on_to():
    spec = spec_of()
    first = set(make_plan(spec).by_key())
    record = {"round": 1, "go_on": True}
    assert shown_round(spec, first, record).number == 2
    assert shown_round(spec, first, {**record, "go_on": False}).number == 1
    assert shown_round(spec, first, None).number == 1


def test_plan_shows_the_first_round_and_the_worst_case(tmp_path, capsys):
    import json

    import yaml
    path = tmp_path / "dip.yaml"
    path.write_text(yaml.safe_dump(DIP))
    assert main(["plan", str(path), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["total"] == 144 and shown["replicate"]["rounds"] == [
        {"round": 1, "units": 8, "trainings": 144, "adds": ""},
        {"round": 2, "units": 10, "trainings": 180, "adds": "split random:4"},
        {"round": 3, "units": 12, "trainings": 216, "adds": "split random:5"}]
    assert main(["plan", str(path)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ("replicate until claim(s) 2 are decided: this is round 1 (8 units, 144 trainings); worst case round 3 "
            "(12 of max_units 12, 216 trainings, +72; adds split random:4, split random:5); at worst: ") in text


def test_the_rounds_record_the_driver_writes_is_one_status_can_read_back():
    import json

    from orchestrator.analysis.stopping import decide
    from sweepcore.record_schema import RecordError, json_record

    stand_in = StandIn(decided_at=10)
    decision = decide(stand_in.judge(rounds(spec_of()).__next__()), (2,), 1, 8, "split random:4", 10)
    record = {**decision.record(1, 8, 12, [decision.why]), "at": "2026-12-07T16:00:00+00:00"}
    back = json_record(json.dumps(record).encode(), "rounds", "rounds.json")
    assert back["claims"] == [{"id": 2, "verdict": "undecided", "test": "", "low": -0.001, "high": 0.003,
                               "deciding": "curvature +0.0010 [-0.0010, +0.0030] (k=8)"}]
    for bad, where in (({"round": 0}, "round"), ({"claims": [{"id": 9, "verdict": "x"}]}, "claims.0.id"),
                       ({"go_on": "perhaps"}, "go_on")):
        with pytest.raises(RecordError, match=rf"rounds.json: not a rounds record \({where}: "):
            json_record(json.dumps({**record, **bad}).encode(), "rounds", "rounds.json")
