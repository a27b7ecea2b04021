"""`plan SPEC --diff` on stored rows: rows of another protocol are stale, the rest exist (rows as a sweep
commits them, numbers made up: the diff reads keys and settings only). The command as a process on a
real local store: tests/store/test_plan_diff_cli.py."""
from pathlib import Path

from result_rows import row_of

from orchestrator.spec import load_spec
from orchestrator.spec.diff import diff_plan
from orchestrator.spec.plan import make_plan
from sweepcore.settings import PROTOCOL_VERSION

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sweeps" / "demo.yaml"


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
