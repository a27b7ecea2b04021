"""`transfer-sweep verify`: a sample of committed rows retrained from their settings, bitwise equal or
the difference named. Store tier: a local store, real fashion-animals data, real (tiny) trainings,
the CLI as a subprocess; no Ray."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plan_helpers import planned_settings

from orchestrator.execution.prepare import prepare_fashion_animals
from sweepcore import records
from sweepcore.store import open_store
from workers.trial import run_trial

ROOT = Path(__file__).resolve().parents[2]
TRAIN = {"iterations": 6, "epochs": None, "eval_every": 3, "checkpoint_every": 3, "top_k": 2, "augment": False}
NAMES = ("baseA random:0 s0", "AnB n=2 random:0 s0")


def verify_cli(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp)}  # the scratch store lands here: the test sees it go
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "verify", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A results folder of a real tiny study: a base and one transfer network trained from it."""
    root = tmp_path_factory.mktemp("study")
    store = open_store(str(root / "store"))
    prepare_fashion_animals(store)
    base, transfer = (planned_settings(name, train=TRAIN) for name in NAMES)
    assert transfer.base_key == base.key
    for settings in (base, transfer):
        run_trial(settings, store)
    folder = root / "published"
    folder.mkdir()
    pq.write_table(records.read_results(store), folder / "results.parquet")
    return folder


def planted(folder: Path, out: Path, **changes) -> Path:
    """A copy of the published folder whose transfer row has `changes`."""
    rows = pq.read_table(folder / "results.parquet").to_pylist()
    rows = [{**r, **changes} if r["treatment"] == "transfer" else r for r in rows]
    out.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=records.RESULT_SCHEMA), out / "results.parquet")
    return out


def test_rows_retrained_from_their_settings_are_bitwise_equal(published, tmp_path):
    before = (published / "results.parquet").read_bytes()
    proc = verify_cli(str(published), "--sample", "2", "--jobs", "2", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "verify: 2 of 2 retrained row(s) bitwise equal, 0 failing"
    assert sum("bitwise equal" in line for line in lines[:-1]) == 2
    assert (published / "results.parquet").read_bytes() == before  # nothing written to what is verified
    assert list(tmp_path.iterdir()) == []  # the scratch store is gone


def test_a_planted_mismatch_is_named_with_both_values_and_fails(published, tmp_path):
    rows = {r["treatment"]: r for r in pq.read_table(published / "results.parquet").to_pylist()}
    true = rows["transfer"]["top1_paper"]
    folder = planted(published, tmp_path / "planted", top1_paper=true + 0.01, state_sha256="0" * 64)
    proc = verify_cli(str(folder), "--sample", "1", "--seed", _seed_drawing(folder, "transfer"), tmp=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    base_line, transfer_line = [line for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert base_line.split()[-2:] == ["bitwise", "equal"] and "(base of AnB n=2 random:0 s0)" in base_line
    assert "DIFFERS: " in transfer_line
    assert f"top1_paper {true + 0.01:.6g} -> {true:.6g} (-1 pp)" in transfer_line
    assert "weights sha256 000000000000 -> " in transfer_line
    assert proc.stdout.splitlines()[-1] == "verify: 1 of 2 retrained row(s) bitwise equal, 1 failing"


def test_a_row_of_another_environment_is_reported_and_does_not_decide(published, tmp_path):
    folder = planted(published, tmp_path / "other", top1_paper=0.5,
                     environment_json='{"cpu_isa": "NEON", "device": "cpu", "torch": "2.13.0+cpu"}')
    proc = verify_cli(str(folder), "--sample", "1", "--seed", _seed_drawing(folder, "transfer"), tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "differs (another environment): top1_paper 0.5 -> " in proc.stdout
    assert "environment (committed -> here): cpu_isa NEON -> " in proc.stdout


def test_rows_planned_before_rng_root_do_not_reproduce_from_their_key(published, tmp_path):
    folder = planted(published, tmp_path / "old", protocol=2, rng_root=None)
    proc = verify_cli(str(folder), "--sample", "1", "--seed", _seed_drawing(folder, "transfer"), tmp=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "does not reproduce from its key: protocol 2, planned before draws came from rng_root: " \
           "republish the sweep" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["{tmp}/empty", "--sample", "1"], "{tmp}/empty: no results.parquet (verify reads a results folder as "
                                       "`report --out` writes it, or a sweep's name with --store)"),
    (["{published}", "--sample", "3"], "--sample 3: {published}/results.parquet holds 2 ok row(s); give at most that"),
    (["{published}", "--sample", "0"], "--sample 0: give a number of rows from 1 to 2"),
    (["{tmp}/nothing/here", "--sample", "1"], "{tmp}/nothing/here: no such results folder (verify reads a folder "
                                              "holding results.parquet, or a sweep's name with --store)"),
    (["demo", "--store", "{tmp}/no-store", "--sample", "1"], "store {tmp}/no-store: no such folder (verify reads "
                                                              "a sweep from an existing store)"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(published, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    fill = {"tmp": str(tmp_path), "published": str(published)}
    proc = verify_cli(*[a.format(**fill) for a in args], tmp=scratch)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"transfer-sweep: error: {message.format(**fill)}"), line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_an_unreachable_store_is_one_line_exit_2(tmp_path):
    env_keys = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "verify", "demo", "--store", "s3://bucket/x",
                           "--endpoint", "http://127.0.0.1:9", "--sample", "1"], cwd=ROOT,
                          env={**os.environ, **env_keys, "TMPDIR": str(tmp_path)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("transfer-sweep: error: ") and "127.0.0.1:9" in line, line
    assert list(tmp_path.iterdir()) == []


def _seed_drawing(folder: Path, treatment: str) -> str:
    """A --seed whose one-row draw is the row of `treatment` (verify's own draw)."""
    from orchestrator.execution.verify import Rows, sample
    rows = Rows(str(folder), pq.read_table(folder / "results.parquet").to_pylist())
    for seed in range(100):
        if sample(rows, 1, seed)[0]["treatment"] == treatment:
            return str(seed)
    raise AssertionError("no seed draws it")


# --- import: a published folder's rows into a store -----------------------------------------------
def import_cli(folder: Path, store: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "import", str(folder), "--store", str(store)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_commits_dependents_and_leaves_bases_without_weights_to_a_bitwise_equal_retrain(published, tmp_path):
    store_dir = tmp_path / "store"
    proc = import_cli(published, store_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"import {published} into {store_dir}: 1 row(s) committed, 0 already "
                                        "there, 1 base(s) left for `resume` to retrain (no weights in the folder)"]
    store = open_store(str(store_dir))
    rows = {r["treatment"]: r for r in pq.read_table(published / "results.parquet").to_pylist()}
    assert records.read_result(store, rows["transfer"]["key"]) == rows["transfer"]
    assert records.read_result(store, rows["base"]["key"]) is None
    prepare_fashion_animals(store)
    retrained = run_trial(planned_settings(NAMES[0], train=TRAIN), store)  # what `resume` runs for it
    assert {c: retrained[c] for c in records.MEASURED} == {c: rows["base"][c] for c in records.MEASURED}
    again = import_cli(published, store_dir)
    assert again.returncode == 0 and "0 row(s) committed, 2 already there, 0 base(s) left" in again.stdout


def test_import_never_changes_a_stored_row_and_names_a_disagreeing_one(published, tmp_path):
    store = open_store(str(tmp_path / "store"))
    rows = {r["treatment"]: r for r in pq.read_table(published / "results.parquet").to_pylist()}
    assert records.commit_result(store, {**rows["transfer"], "top1_paper": 0.25})
    before = {p: store.read_bytes(p) for p in store.list("results")}
    proc = import_cli(published, tmp_path / "store")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1] == (
        f"  conflict: AnB n=2 random:0 s0 ({rows['transfer']['key']}): the store's row has top1_paper 0.25, the "
        f"folder's {rows['transfer']['top1_paper']}; the store's is kept (a key names one network: "
        "`transfer-sweep verify` retrains it to tell which reproduces)")
    assert {p: store.read_bytes(p) for p in store.list("results")} == before


def test_import_refuses_rows_that_do_not_reproduce_before_it_writes(published, tmp_path):
    folder = planted(published, tmp_path / "old", protocol=2, rng_root=None)
    proc = import_cli(folder, tmp_path / "store")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"transfer-sweep: error: {folder}: 1 of 2 rows are of protocol 2, planned before draws came from rng_root: "
        "they do not reproduce from their keys; run the sweep again instead of importing them"]
    assert not (tmp_path / "store").exists()


# --- what CI proves of the published results ------------------------------------------------------
VERIFIED_IN_CI = "standard"  # a study republished under the current protocol (docs/results/<it>)


def test_two_rows_of_a_published_study_retrain_bitwise_equal(tmp_path):
    """A silent drift of the training code cannot land: two published rows, drawn by verify's seed 0,
    retrained here from their settings (bitwise where this machine's environment is theirs)."""
    proc = verify_cli(str(ROOT / "docs" / "results" / VERIFIED_IN_CI), "--sample", "2", "--jobs", "2", tmp=tmp_path)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("verify: ") and ", 0 failing" in proc.stdout.splitlines()[-1]
