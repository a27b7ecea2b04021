"""A truthful `status`: running only with a fresh heartbeat, interrupted when it stopped, no ETA for
work nobody is doing."""
import datetime as dt
import json

import pytest
from rich.console import Console

from orchestrator.cli.status import print_status
from orchestrator.execution.states import STALE_SECONDS, TrialState, trial_states
from orchestrator.spec import Sweep, parse_spec
from orchestrator.spec.plan import make_plan
from sweepcore import layout, records
from sweepcore.store import open_store

NOW = dt.datetime.now(dt.timezone.utc)  # the records written by the code under test carry real times


@pytest.fixture
def sweep(tmp_path):
    spec = parse_spec({"name": "st", "dataset": "fashion-animals", "splits": ["random:0"],
                       "treatments": ["base", "selffer"], "layers": [1, 2, 3], "directions": ["A->B"],
                       "train": {"epochs": 1}, "store": str(tmp_path / "store")})
    return spec, make_plan(spec), open_store(spec.store)


def _at(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).isoformat()


def _beat(store, key, seconds_ago):
    store.write_bytes(layout.heartbeat_path(key), json.dumps({"at": _at(seconds_ago)}).encode())


def _states(plan, store):
    return {s.name: s for s in trial_states(plan, store, now=NOW.timestamp())}


def test_heartbeats_tell_running_from_interrupted(sweep):
    spec, plan, store = sweep
    base, bnb1, bnb2, bnb3 = plan.trials
    store.commit_bytes(layout.result_path(base.key), b"x")  # the base is done: a committed row
    records.write_progress(store, bnb1.key, {"step": 40, "total_steps": 63, "updated_at": _at(30)})
    _beat(store, bnb1.key, 5)                                  # alive 5 s ago
    records.write_progress(store, bnb2.key, {"step": 20, "total_steps": 63, "updated_at": _at(600)})
    _beat(store, bnb2.key, STALE_SECONDS + 1)                  # its worker died a while ago
    states = _states(plan, store)
    assert states[base.name].state is TrialState.DONE
    assert (states[bnb1.name].state, states[bnb1.name].step) == (TrialState.RUNNING, 40)
    assert (states[bnb2.name].state, states[bnb2.name].step) == (TrialState.INTERRUPTED, 20)
    assert states[bnb3.name].state is TrialState.PENDING


def test_a_failure_newer_than_the_last_sign_of_life_is_failed_with_its_line(sweep):
    spec, plan, store = sweep
    trial = plan.trials[1]
    _beat(store, trial.key, 120)
    path = records.record_failure(store, trial.key, "gave up after 3 consecutive attempts without progress",
                                  "", "node 127.0.0.1")
    state = _states(plan, store)[trial.name]
    assert (state.state, state.error) == (TrialState.FAILED, "gave up after 3 consecutive attempts without progress")
    assert state.record == store.uri(path)


def test_no_eta_when_nothing_is_running(sweep, capsys):
    spec, plan, store = sweep
    _beat(store, plan.trials[0].key, 3600)  # the driver and its workers are long gone
    console = Console(width=200, force_terminal=False)
    print_status(Sweep(spec, store), console)
    out = capsys.readouterr().out
    assert "running 0" in out and "interrupted 1" in out
    assert (f"ETA none: nothing is running (`transfer-sweep resume st --store {spec.store}` finishes it)"
            in " ".join(out.split()))
    assert "interrupted base" in out and "min" not in out.split("ETA", 1)[1].splitlines()[0]


def test_stored_text_is_printed_literally_never_as_markup(sweep, capsys):
    spec, plan, store = sweep
    hostile = "ValueError: [/x] [link=https://evil.example]click[/link] [bold red]"
    records.record_failure(store, plan.trials[1].key, hostile, "", "node [/y]")
    assert print_status(Sweep(spec, store), Console(width=300, force_terminal=False)) == 1
    out = capsys.readouterr().out
    assert hostile in out and "log: node [/y]" in out
