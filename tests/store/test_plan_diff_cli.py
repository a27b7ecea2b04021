"""`plan SPEC --diff` as a process: which keys a store holds, which are new and why. Store tier: a real
local store holding the demo's rows (committed as a sweep commits them, numbers made up: the diff reads
keys and settings only); the rows of another protocol: tests/unit/test_plan_diff.py."""
import json
import subprocess
import sys
from pathlib import Path

from result_rows import row_of

from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan
from sweepcore import records
from sweepcore.store import open_store

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sweeps" / "demo.yaml"


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
