"""The Ray-free path: `plan --export` then `python -m workers.loop` in an interpreter where pydantic,
Ray, boto3 and the orchestrator cannot be imported (as on the accelerator machine), into a local store:
every trial committed once, rows equal to the ones `run_trial` (what each Ray trial runs) commits for
the same settings, and a second run trains nothing."""
from __future__ import annotations

import json
import subprocess
import sys

from sweep_helpers import ROOT, cli, tiny_spec

from orchestrator.spec import load_spec, make_plan
from sweepcore.records import MEASURED, read_results
from sweepcore.store import open_store
from sweepcore.trial_list import load_trials

ABSENT_THERE = ("pydantic", "ray", "boto3", "orchestrator", "yaml")
BLOCKER = ("import sys\nfor _name in {names!r}:\n    sys.modules[_name] = None  # importing it raises ImportError\n")


def loop(tmp_path, *args) -> subprocess.CompletedProcess:
    """`python -m workers.loop ARGS` with the accelerator machine's missing packages made unimportable
    in it and in the worker processes it spawns (a sitecustomize on PYTHONPATH runs in each)."""
    block = tmp_path / "block"
    block.mkdir(exist_ok=True)
    (block / "sitecustomize.py").write_text(BLOCKER.format(names=ABSENT_THERE))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": f"{block}:{ROOT}",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "workers.loop", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_loop_commits_what_a_ray_trial_would_without_ray_or_pydantic(tmp_path):
    spec_path = tiny_spec(tmp_path, "noray", treatments=["base", "selffer", "transfer"], layers=[2, 4],
                          directions=["A->B", "B->A"])
    plan = make_plan(load_spec(spec_path))
    assert len(plan) == 2 + 2 * 2 * 2
    exported = tmp_path / "noray.json"
    proc = cli("plan", str(spec_path), "--export", str(exported))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {exported}: 10 trials of sweep noray, bases first" in proc.stderr
    sweep, trials = load_trials(exported.read_bytes(), str(exported))
    assert sweep == "noray" and [t.key for t in trials] == [t.key for t in plan.trials]

    # the block is real: none of those can be imported there
    probe = loop(tmp_path, "--help")
    assert probe.returncode == 0, probe.stderr
    store_dir = tmp_path / "store"
    for name in ABSENT_THERE:
        blocked = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                                 env={"PYTHONPATH": f"{tmp_path / 'block'}:{ROOT}"})
        assert blocked.returncode == 1 and f"import of {name} halted" in blocked.stderr, blocked.stderr

    proc = loop(tmp_path, str(exported), "--store", str(store_dir), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"loop noray: 10 trials, 0 already committed, 10 to run, 2 at once; store {store_dir}"
    assert lines[-1].startswith("loop noray: 10/10 committed (10 trained now, 0 before) in ")
    assert sum(line.startswith("ok    ") for line in lines) == 10
    store = open_store(str(store_dir))
    rows = {r["key"]: r for r in read_results(store).to_pylist()}
    assert sorted(rows) == sorted(t.key for t in plan.trials)

    # the same settings through run_trial in this process (what the Ray trainable calls): equal rows
    from workers.trial import run_trial
    other = open_store(str(tmp_path / "store-direct"))
    for t in plan.trials[:3]:  # both bases and a transfer that copies one
        direct = run_trial(t.settings, other)
        assert {m: direct[m] for m in MEASURED} == {m: rows[t.key][m] for m in MEASURED}, t.name
        assert direct["weights_sha256"] == rows[t.key]["weights_sha256"]
        assert json.loads(direct["settings_json"]) == json.loads(rows[t.key]["settings_json"])

    again = loop(tmp_path, str(exported), "--store", str(store_dir))
    assert again.returncode == 0 and "10 already committed, 0 to run" in again.stdout, again.stdout + again.stderr


def test_a_slice_and_bad_input(tmp_path):
    spec_path = tiny_spec(tmp_path, "slice", treatments=["base", "selffer"], layers=[2], seeds=[0, 1])
    exported = tmp_path / "slice.json"
    assert cli("plan", str(spec_path), "--export", str(exported)).returncode == 0
    store_dir = tmp_path / "store"
    proc = loop(tmp_path, str(exported), "--store", str(store_dir), "--unit", "random:0,1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith("loop slice: 2 trials, 0 already committed, 2 to run")
    assert {(r["seed"], r["treatment"]) for r in read_results(open_store(str(store_dir))).to_pylist()} == \
        {(1, "base"), (1, "selffer")}

    doc = json.loads(exported.read_text())
    doc["trials"][0]["train"]["lr"] = 0.5  # edited by hand: its key no longer names it
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    for args, message in (
            ((str(edited),), f"workers.loop: error: {edited}: trials[0]: settings.rng_root "),
            ((str(tmp_path / "none.json"),), f"workers.loop: error: {tmp_path / 'none.json'}: cannot read the "
                                            "trials file (No such file or directory)"),
            ((str(exported), "--unit", "random:7,0"), "workers.loop: error: --unit random:7,0: no trial of the "
                                                      "file has split random:7 and seed 0")):
        bad = loop(tmp_path, *args, "--store", str(store_dir))
        assert bad.returncode == 2 and bad.stderr.startswith(message) and bad.stderr.count("\n") == 1, bad.stderr
