"""Base reuse: how many trainings a second sweep runs when it shares every base with the first.

Three `transfer-sweep run` subprocesses (each with its own local Ray) on ONE fresh local store, tiny
real trainings on fashion-animals (the solver and model of sweeps/standard.yaml, shrunk):
  sweep 1  base, selffer, transfer at layer 2 (A->B): 2 bases + 2 dependents;
  sweep 2  base, selffer+, transfer+ at layers 1 and 3: the same 2 bases + 4 new dependents;
  sweep 2 again: everything is committed, nothing may train (and Ray is not even started).
Trainings are counted from the store: one attempt record is committed each time a training starts
(orchestrator.records.read_attempts), per key. Last line:
    RATIO base_retrained=<n> (target 0) sweep2_trainings=<t>/<plan> (target <plan - shared bases>) rerun=<r>
Usage: python bench/reuse.py
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.overhead import bench_spec, run_cli, write_spec  # noqa: E402
from orchestrator.spec import Plan, make_plan  # noqa: E402
from sweepcore.records import committed_keys, read_attempts  # noqa: E402
from sweepcore.store import open_store  # noqa: E402

TINY = ("model.widths=[8,8,8,8,8]", "model.fc_width=32", "train.batch_size=32", "train.eval_every=4",
        "train.checkpoint_every=4", "train.top_k=2", "train.warmup_fraction=0.1")


def attempts(store, keys) -> dict[str, int]:
    return {k: len(read_attempts(store, k)) for k in keys}


def run_and_count(spec_path: Path, plan: Plan, store_uri: str, all_keys: set[str]) -> dict:
    """Run one sweep with the CLI; count the trainings it started, by kind, from attempt records."""
    store = open_store(store_uri)
    before = attempts(store, all_keys)
    out = run_cli(["run", str(spec_path), "--store", store_uri])
    if out["rc"] != 0:
        raise RuntimeError(f"transfer-sweep run failed (exit {out['rc']}):\n" + "\n".join(out["output"][-30:]))
    after = attempts(store, all_keys)
    started = {k: after[k] - before[k] for k in all_keys if after[k] > before[k]}
    bases = {t.key for t in plan.bases}
    return {"plan": len(plan), "plan_bases": len(bases), "trainings": sum(started.values()),
            "base_trainings": sum(n for k, n in started.items() if k in bases),
            "committed": len(committed_keys(store) & set(plan.by_key())), "wall": out["wall"],
            "ray": "no" if out["ray_up"] is None else "yes"}


def main() -> None:
    sweep1 = bench_spec("reuse1", 12, layers=(2,), treatments=("base", "selffer", "transfer"), extra=TINY)
    sweep2 = bench_spec("reuse2", 12, layers=(1, 3), treatments=("base", "selffer+", "transfer+"), extra=TINY)
    plan1, plan2 = make_plan(sweep1), make_plan(sweep2)
    shared = {t.key for t in plan1.bases} & {t.key for t in plan2.bases}
    all_keys = set(plan1.by_key()) | set(plan2.by_key())
    print(f"sweep 1: {len(plan1)} trainings ({len(plan1.bases)} bases); sweep 2: {len(plan2)} trainings "
          f"({len(plan2.bases)} bases, {len(shared)} of them shared with sweep 1); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-reuse-"))
    store_uri = str(work / "store")
    rows = []
    try:
        p1, p2 = write_spec(sweep1, work), write_spec(sweep2, work)
        for label, path, plan in (("sweep 1", p1, plan1), ("sweep 2", p2, plan2), ("sweep 2 again", p2, plan2)):
            rows.append((label, run_and_count(path, plan, store_uri, all_keys)))
            print(f"{label} done in {rows[-1][1]['wall']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'':<16}{'planned':>8}{'bases':>7}{'trainings':>11}{'of them bases':>15}{'committed':>11}"
          f"{'Ray started':>13}{'wall':>9}")
    for label, r in rows:
        print(f"{label:<16}{r['plan']:>8}{r['plan_bases']:>7}{r['trainings']:>11}{r['base_trainings']:>15}"
              f"{r['committed']:>11}{r['ray']:>13}{r['wall']:>7.1f} s")
    second, again = rows[1][1], rows[2][1]
    expected = len(plan2) - len(shared)
    print(f"RATIO base_retrained={second['base_trainings']} (target 0) sweep2_trainings="
          f"{second['trainings']}/{second['plan']} (target {expected}/{second['plan']}) "
          f"rerun_trainings={again['trainings']} (target 0)")


if __name__ == "__main__":
    main()
