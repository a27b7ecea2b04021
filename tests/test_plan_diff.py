"""`plan SPEC --diff`: which keys a store holds, which are new and why, which stored rows are left alone
or stale. Store tier: a real local store holding the demo's rows (committed as a sweep commits them,
numbers made up: the diff reads keys and settings only)."""
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from orchestrator.plan import make_plan
from orchestrator.plan_diff import diff_plan
from orchestrator.spec import load_spec
from sweepcore import records
from sweepcore.settings import PROTOCOL_VERSION
from sweepcore.store import open_store

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "sweeps" / "demo.yaml"


def row_of(trial, protocol=PROTOCOL_VERSION) -> dict:
    s = trial.settings
    row = {"sweep": s.sweep, "key": s.key, "name": s.name, "dataset": s.dataset, "split": s.split,
           "source_half": s.source_half, "target_half": s.target_half, "n": s.n, "treatment": s.treatment,
           "seed": s.seed, "base_key": s.base_key, "top1_final": 0.5, "top1_paper": 0.5, "steps": 10,
           "wall_seconds": 1.0, "status": "ok", "error": None, "protocol": protocol,
           "finished_at": dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc),
           "settings_json": json.dumps({**s.to_dict(), "protocol": protocol}, sort_keys=True),
           "weights_sha256": "a" * 64 if s.treatment == "base" else None, "data_version": s.data,
           "final_loss": 0.7, "state_sha256": "b" * 64, "environment_json": "{}"}
    return {name: row.get(name) for name in records.RESULT_SCHEMA.names}


def plan_diff_cli(store: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(DEMO), "--diff", "--store",
                           str(store), *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_store_holding_the_demo_trains_nothing_and_an_lr_change_names_what_it_invalidates(tmp_path):
    store = open_store(str(tmp_path / "store"))
    plan = make_plan(load_spec(DEMO))
    for trial in plan.trials:
        assert records.commit_result(store, row_of(trial))

    same = plan_diff_cli(tmp_path / "store")
    assert same.returncode == 0, same.stderr
    assert same.stdout.splitlines()[0] == (f"sweep demo against store {tmp_path / 'store'}: 23 planned: 23 exist "
                                           "(train nothing), 0 new")
    assert "left alone" not in same.stdout and "stale" not in same.stdout

    changed = plan_diff_cli(tmp_path / "store", "--set", "train.lr=0.02", "--format", "json")
    assert changed.returncode == 0, changed.stderr
    diff = json.loads(changed.stdout)
    assert diff["existing"] == [] and len(diff["new"]) == 23
    assert diff["left_alone"] == sorted(t.key for t in plan.trials)  # kept: other networks now
    assert diff["stale"] == []
    assert {tuple(c["fields"]) for c in diff["changes"].values()} == {("train.lr: 0.05 -> 0.02",)}
    assert {c["replaces"] for c in diff["changes"].values()} == {t.key for t in plan.trials}
    assert diff["estimate"]["trials_to_run"] == 23

    table = plan_diff_cli(tmp_path / "store", "--set", "train.lr=0.02")
    assert "  new because train.lr: 0.05 -> 0.02: 23 (" in table.stdout
    assert "stored rows of sweep demo this plan does not make: 23, left alone" in table.stdout
    assert sorted(p.name for p in (tmp_path / "store" / "results").iterdir()) == \
        sorted(f"{t.key}.parquet" for t in plan.trials)  # read only: nothing added, nothing removed


def test_rows_of_another_protocol_are_stale_and_the_rest_exist():
    plan = make_plan(load_spec(DEMO))
    old = []
    for t in plan.trials[:2]:  # the same trials as an older protocol keyed them
        row = row_of(t, protocol=PROTOCOL_VERSION - 1)
        row["key"], row["name"] = t.key[::-1], t.name + " old"
        old.append(row)
    diff = diff_plan(plan, old + [row_of(t) for t in plan.trials[2:]])
    assert len(diff.existing) == 21 and [t.key for t in diff.new] == [t.key for t in plan.trials[:2]]
    assert sorted((r.key, why) for r, why in diff.stale) == sorted(
        (r["key"], f"protocol {PROTOCOL_VERSION - 1} (this code: {PROTOCOL_VERSION})") for r in old)
    assert diff.left_alone == ()
