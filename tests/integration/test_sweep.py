"""A whole sweep on a real local Ray cluster with real training: exact rows, bases once, no barrier."""
from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pyarrow.dataset as pads
from sweep_helpers import attempt_count, cli, env_with, result_files, tiny_spec

from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan
from sweepcore.records import read_attempts, read_results
from sweepcore.store import open_store


def test_sweep_commits_one_ok_row_per_trial_and_trains_each_base_once(ray_head, tmp_path):
    spec_path = tiny_spec(
        tmp_path, "e2e", treatments=["base", "selffer", "selffer+", "transfer", "transfer+"], layers=[1, 3],
        splits=["random:0", {"split": "all", "treatments": ["base", "random"], "layers": [2]}])
    store_dir = tmp_path / "store"
    plan = make_plan(load_spec(spec_path))
    assert len(plan) == 2 + 4 * 2 + 1 + 1  # bases A, B; 4 treatments x 2 layers; base all; random n=2

    proc = cli("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address,
               env=env_with(ray_head, {"TRANSFER_SWEEP_PROGRESS_SECONDS": "2"}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(plan)}/{len(plan)} committed" in proc.stderr
    # no terminal (as in a Ray Job's log): steady summary lines, the last one with everything done
    ticks = [line for line in proc.stderr.splitlines() if line.startswith("progress e2e: ")]
    assert len(ticks) >= 2, proc.stderr
    assert ticks[-1].startswith(f"progress e2e: done {len(plan)}/{len(plan)}, running 0, failed 0, pending 0; ")

    store = open_store(str(store_dir))
    table = read_results(store)
    assert table.num_rows == len(plan) == len(result_files(store_dir))
    assert sorted(table.column("key").to_pylist()) == sorted(t.key for t in plan.trials)
    assert set(table.column("status").to_pylist()) == {"ok"}
    for base in plan.bases:
        assert attempt_count(store, base.key) == 1, base.name
    # trials start on Ray's idle workers with the training code preloaded, not on fresh processes
    # (a fresh one imports Tune and torch first: the first cost of a short trial); the very first
    # trials may come before the pool is warm
    warm = [a["warm"] for t in plan.trials for a in read_attempts(store, t.key)]
    assert warm.count(True) >= len(plan) - 2, warm
    # users read the results folder directly
    assert pads.dataset(str(store_dir / "results"), format="parquet").count_rows() == len(plan)
    import duckdb  # the README's DuckDB query, as written there
    by_treatment = duckdb.sql(f"SELECT treatment, count(*) FROM read_parquet('{store_dir}/results/*.parquet') "
                              "GROUP BY ALL ORDER BY treatment").fetchall()
    assert by_treatment == [("base", 3), ("random", 1), ("selffer", 2), ("selffer+", 2), ("transfer", 2),
                            ("transfer+", 2)]
    frame = pd.read_parquet(store_dir / "results")
    assert len(frame) == len(plan) and frame["top1_paper"].between(0, 1).all()
    names = set(frame["name"])
    assert {"AnB+ n=3 random:0 s0", "BnB n=1 random:0 s0", "random n=2 all s0", "base all s0"} <= names

    # the report: figures, claims, the rows, and the bases' curves behind its convergence check
    out = tmp_path / "report"
    proc = cli("report", "e2e", "--store", str(store_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in out.iterdir()} == {"report.md", "transfer.png", "distance.png", "results.parquet",
                                               "base_curves.parquet"}
    curves = pd.read_parquet(out / "base_curves.parquet")
    assert set(curves["key"]) == {t.key for t in plan.bases}
    md = (out / "report.md").read_text()
    assert "### Convergence" in md and "| base | late gain | se | evaluations | plateau |" in md
    assert all(f"| {t.name} | " in md for t in plan.bases)
    assert "claim 2: " in proc.stdout


def test_transfer_starts_before_a_slow_unrelated_base_finishes(ray_head, tmp_path):
    # baseB trains on one half; 'base all' on all 20 classes: twice the iterations at the same epochs.
    # Half a CPU per trial gives the head's 2 CPUs 4 slots, so all three bases start at once and 'base
    # all' is still running when baseB ends, whatever order they were queued in (with 2 slots it could
    # start third, after baseA, and end with baseB: the race that once failed this test in CI).
    spec_path = tiny_spec(tmp_path, "nobarrier", treatments=["base", "selffer"], layers=[1],
                          splits=["random:0", {"split": "all", "treatments": ["base"]}],
                          train={"iterations": None, "epochs": 0.4, "eval_every": 10, "checkpoint_every": 20},
                          resources={"cpus": 0.5})
    store_dir = tmp_path / "store"
    proc = cli("run", str(spec_path), "--store", str(store_dir), "--address", ray_head.address,
               env=env_with(ray_head))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = make_plan(load_spec(spec_path))
    store = open_store(str(store_dir))
    by_name = {t.name: t for t in plan.trials}
    rows = {r["name"]: r for r in read_results(store).to_pylist()}
    started = {name: dt.datetime.fromisoformat(read_attempts(store, t.key)[0]["at"]) for name, t in by_name.items()}
    slow_base_done = rows["base all s0"]["finished_at"]
    assert rows["base all s0"]["steps"] == 2 * rows["baseB random:0 s0"]["steps"]
    assert started["base all s0"] < rows["baseB random:0 s0"]["finished_at"]  # the two bases overlap
    assert started["BnB n=1 random:0 s0"] >= rows["baseB random:0 s0"]["finished_at"]  # waits for its base
    assert started["BnB n=1 random:0 s0"] < slow_base_done  # ...but not for an unrelated one


def test_rerun_trains_nothing_and_a_second_sweep_reuses_bases(ray_head, tmp_path):
    store_dir = tmp_path / "store"
    first = tiny_spec(tmp_path, "first", treatments=["base", "selffer"], layers=[1])
    proc = cli("run", str(first), "--store", str(store_dir), "--address", ray_head.address, env=env_with(ray_head))
    assert proc.returncode == 0, proc.stderr
    store = open_store(str(store_dir))
    before = {p: (store_dir / p).read_bytes() for p in store.list("results")}

    t0 = time.monotonic()
    again = cli("run", str(first), "--store", str(store_dir), env=env_with(ray_head))
    assert again.returncode == 0, again.stderr
    assert "0 trained now" in again.stderr and time.monotonic() - t0 < 30
    assert {p: (store_dir / p).read_bytes() for p in store.list("results")} == before

    # a different sweep needing the same base (other layers, other treatment) trains no base
    second = tiny_spec(tmp_path, "second", treatments=["selffer", "selffer+"], layers=[2])
    proc = cli("run", str(second), "--store", str(store_dir), "--address", ray_head.address, env=env_with(ray_head))
    assert proc.returncode == 0, proc.stderr
    plan2 = make_plan(load_spec(second))
    assert len(plan2.bases) == 1
    assert attempt_count(store, plan2.bases[0].key) == 1
    assert "1 already committed" in proc.stderr and "2 trained now" in proc.stderr
    # what users compare across machines: the trainings' own seconds (a cluster's: no local CPU named)
    trained = {t.key for t in plan2.trials} - {plan2.bases[0].key}
    rows = [r for r in read_results(store).to_pylist() if r["key"] in trained]
    seconds = sorted(r["wall_seconds"] for r in rows)
    assert (f"trainings: 2, {(seconds[0] + seconds[1]) / 2:.1f} s each (median; {seconds[0]:.1f}-{seconds[1]:.1f} s), "
            f"{sum(seconds):.0f} s of training in all\n") in proc.stderr
    assert "trainings:" not in again.stderr  # nothing trained, nothing to time
