"""Replicate until decided, driven for real: the driver on Ray trains round 1 (one random split x 2
seeds, 12 iterations: claim 2's curvature over 2 units has a t(0.975, 1) = 12.7 interval, so it is
undecided by construction), adds the one split the rule asks for, stops at max_units, and a driver
killed between the rounds is resumed without a row trained twice. The rule's other paths (decided
after a later round, a seed when a split does not fit): tests/unit/test_replicate.py."""
from __future__ import annotations

import json
import os
import re
import signal

from sweep_helpers import attempt_count, cli, cli_background, env_with, result_files, tiny_spec, wait_for

from orchestrator.spec import load_spec, make_plan
from orchestrator.spec.replicate import rounds
from sweepcore.records import read_results
from sweepcore.store import open_store

REPLICATE = {"until": "decided", "claims": [2], "max_units": 4}


def test_driver_adds_the_rule_s_units_and_resumes_between_rounds_without_duplicates(ray_head, tmp_path):
    spec_path = tiny_spec(tmp_path, "untildecided", treatments=["base", "selffer"], layers=[2, 3, 4],
                          seeds=[0, 1], replicate=REPLICATE)
    first, second = (make_plan(r.spec) for r in rounds(load_spec(spec_path)))
    assert (len(first), len(second)) == (8, 16)  # per unit: base B and BnB at n = 2, 3, 4
    added = set(second.by_key()) - set(first.by_key())
    assert {second.by_key()[k].split for k in added} == {"random:1"}
    store_dir = tmp_path / "store"
    log = tmp_path / "run.log"
    # the driver judges round 1, says it goes on, and is killed before round 2 commits anything
    proc = cli_background("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address,
                          env=env_with(ray_head), log=log)
    try:
        wait_for(lambda: "round 2 of at most 2" in log.read_text(), 300, "the driver starting round 2")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    text = log.read_text()
    assert re.search(r"round 1 \(2 units\): claim 2 undecided: BnB curvature over n = 2\.\.4 .*\(k=2, "
                     r"conditional on split random:0\): claim 2 undecided, so round 2 adds split random:1 "
                     r"\(4 units\)", text), text[-3000:]
    store = open_store(str(store_dir))
    round_one = {p.name: p.read_bytes() for p in result_files(store_dir)
                 if p.name.removesuffix(".parquet") in first.by_key()}
    assert len(round_one) == 8

    # status reads the driver's judgement: round 2 is where the sweep stands
    status = cli("status", "untildecided", "--store", str(store_dir))
    said = " ".join(status.stdout.split())  # the console wraps at its width
    assert "replicate until claim(s) 2 are decided: round 2 of at most 2, 4 of at most 4 units (this round " \
           "added split random:1)" in said, status.stdout
    assert "claim 2: undecided, BnB curvature over n = 2..4" in said and "8/16" in said

    resumed = cli("resume", "untildecided", "--store", str(store_dir), "--address", ray_head.address, "--force",
                  env=env_with(ray_head))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-3000:]
    # the same loop again: round 1 has nothing to train, is judged the same, and round 2 runs the rest
    assert "sweep untildecided: 8 trials, 8 already committed, 0 to run" in resumed.stderr
    assert re.search(r"round 2 \(4 units\): claim 2 (undecided|holds|fails|excluded).*stopping", resumed.stderr)
    assert "round 3" not in resumed.stderr  # max_units 4: no third round
    keys = read_results(store).column("key").to_pylist()
    assert sorted(keys) == sorted(second.by_key()) and len(result_files(store_dir)) == 16  # none twice
    for name, blob in round_one.items():
        assert (store_dir / "results" / name).read_bytes() == blob  # committed rows untouched
        assert attempt_count(store, name.removesuffix(".parquet")) == 1  # and not trained again
    record = json.loads((store_dir / "sweeps" / "untildecided" / "rounds.json").read_text())
    assert (record["round"], record["units"], record["go_on"]) == (2, 4, False)

    # the report covers both rounds and lists the driver's judgements
    out = tmp_path / "report"
    report = cli("report", "untildecided", "--store", str(store_dir), "--out", str(out))
    assert report.returncode == 0, report.stderr[-3000:]
    md = (out / "report.md").read_text()
    assert "## Rounds" in md and "1. round 1 (2 units): claim 2 undecided" in md  # the killed driver's
    assert "2. round 2 (4 units): claim 2" in md  # and the resumed one's
    assert "16 ok trial(s)" in md
