"""`transfer-sweep verify SWEEP_OR_FOLDER --sample K`: retrain K committed rows, drawn at random, in a
scratch store and say of each whether it is bitwise equal to what was committed.

A key names one network: a row's settings (settings_json, with its rng_root) must produce its numbers
again. Each sampled row is retrained from its recorded settings alone (bases first: a dependent's base
is retrained too, since published folders carry no weights), by the same entry point a worker runs
(`python -m workers.trial`), in a temporary store that is deleted afterwards; nothing is written to the
store or folder verified. What is compared: top-1 (final and the paper's), the final loss, the step
count and the sha256 of the final weights. Bits also depend on the environment a row records (torch
version, device, CPU instruction set): a row that differs where the environment matches is a
reproduction failure (exit 1); one that differs where it does not is reported with the environment
differences and does not decide the exit code. Rows planned before draws came from rng_root
(protocol < 3) do not reproduce from their key and are reported as such (exit 1).
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from orchestrator.errors import UsageError
from orchestrator.spec.replicate import reached_plan
from orchestrator.spec.sweep import Sweep
from sweepcore import records
from sweepcore.layout import dataset_prefix
from sweepcore.settings import RNG_ROOT_FROM
from sweepcore.store import Store, open_store
from sweepcore.terminal import for_terminal

# What the bits depend on beyond the settings (a retrained row must reproduce records.MEASURED).
ENVIRONMENT = ("torch", "device", "cpu_isa")
RESULTS_FILE = "results.parquet"
# Datasets this machine can prepare from nothing but the installed packages: a results folder of
# another dataset needs the store that holds its data (--store).
PREPARABLE = ("fashion-animals",)


@dataclass(frozen=True)
class Rows:
    """The committed rows verify draws from, and where they came from."""

    where: str
    rows: list[dict]
    store: Optional[Store] = None  # the store they were read from (its data is copied), None for a folder


@dataclass
class Verdict:
    """One retrained row against its committed one."""

    row: dict
    outcome: str  # "equal", "differs", "not comparable" (another environment), "stale", "failed"
    differences: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    needed_by: Optional[str] = None  # a base retrained for a sampled dependent

    @property
    def fails(self) -> bool:
        return self.outcome in ("differs", "stale", "failed")


def folder_rows(source: str) -> Rows:
    """The rows of a results folder (its results.parquet), every row checked."""
    path = Path(source)
    file = path / RESULTS_FILE
    if not file.is_file():
        raise UsageError(f"{source}: no {RESULTS_FILE} (verify reads a results folder as `report --out` "
                         "writes it, or a sweep's name with --store)")
    with open(file, "rb") as fh:
        data = fh.read(records.MAX_RESULTS_FILE_BYTES + 1)
    table = records.read_results_file(data, str(file))  # a RecordError is a one-line error
    rows = [r for r in table.to_pylist() if r["status"] == "ok"]
    return Rows(str(file), _one_row_per_key(rows, str(file)))


def sweep_rows(sweep: Sweep) -> Rows:
    """The committed rows of a sweep's planned trials, from its store."""
    plan = reached_plan(sweep.spec, records.committed_keys(sweep.store))
    rows = [r for r in records.read_results(sweep.store, set(plan.by_key())).to_pylist()
            if r["status"] == "ok"]
    return Rows(sweep.store.uri(f"results (sweep {sweep.spec.name})"), rows, sweep.store)


def _one_row_per_key(rows: list[dict], where: str) -> list[dict]:
    seen: dict[str, dict] = {}
    for row in rows:
        first = seen.setdefault(row["key"], row)
        if first is not row:
            raise UsageError(f"{where}: key {row['key']} has two rows ({for_terminal(first['name'], 40)}): a key "
                             "names one network; keep the row that verify reproduces")
    return rows


def sample(rows: Rows, k: int, seed: int) -> list[dict]:
    """K rows drawn without replacement by a seeded generator (the same seed: the same rows)."""
    if k < 1:
        raise UsageError(f"--sample {k}: give a number of rows from 1 to {len(rows.rows)}")
    if k > len(rows.rows):
        raise UsageError(f"--sample {k}: {rows.where} holds {len(rows.rows)} ok row(s); give at most that")
    ordered = sorted(rows.rows, key=lambda r: r["key"])  # the draw depends on the rows, not their file order
    return random.Random(seed).sample(ordered, k)


def with_bases(chosen: list[dict], rows: Rows) -> tuple[list[dict], list[dict], dict[str, str]]:
    """(the bases to retrain first, then the rest, {base key: the sampled row that needs it})."""
    by_key = {r["key"]: r for r in rows.rows}
    bases: dict[str, dict] = {r["key"]: r for r in chosen if r["base_key"] is None}
    needed_by: dict[str, str] = {}
    for row in chosen:
        base_key = row["base_key"]
        if base_key is None or base_key in bases:
            continue
        if base_key not in by_key:
            raise UsageError(f"{rows.where}: {row['name']} ({row['key']}) copies base {base_key}, which has no row "
                             "there: verify retrains a dependent from its base")
        bases[base_key], needed_by[base_key] = by_key[base_key], row["name"]
    return list(bases.values()), [r for r in chosen if r["base_key"] is not None], needed_by


def compare_rows(committed: dict, retrained: dict) -> Verdict:
    """The verdict of one retrained row: equal, differs, or not comparable (another environment)."""
    differences = [_difference(name, committed.get(name), retrained.get(name))
                   for name in records.MEASURED if committed.get(name) != retrained.get(name)]
    environment = environment_differences(committed.get("environment_json"), retrained.get("environment_json"))
    if not differences:
        return Verdict(committed, "equal", [], environment)
    return Verdict(committed, "not comparable" if environment else "differs", differences, environment)


def environment_differences(committed: Optional[str], here: Optional[str]) -> list[str]:
    """'name committed -> here' for each of ENVIRONMENT that differs (a row without one: 'unrecorded')."""
    def parse(text: Optional[str]) -> dict:
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    a, b = parse(committed), parse(here)
    return [f"{name} {for_terminal(a.get(name, 'unrecorded'), 30)} -> {for_terminal(b.get(name, 'unrecorded'), 30)}"
            for name in ENVIRONMENT if a.get(name) != b.get(name)]


def _difference(name: str, committed: Any, retrained: Any) -> str:
    if name == "state_sha256":
        return f"weights sha256 {str(committed)[:12]} -> {str(retrained)[:12]}"
    if isinstance(committed, float) and isinstance(retrained, float):
        scale = " pp" if name.startswith("top1") else ""
        delta = (retrained - committed) * (100 if scale else 1)
        return f"{name} {committed:.6g} -> {retrained:.6g} ({delta:+.3g}{scale})"
    return f"{name} {committed} -> {retrained}"


def prepare_data(rows: list[dict], source: Rows, scratch: Store) -> None:
    """Put the data every row trained on into the scratch store: copied from the source store, or
    prepared here for a results folder (fashion-animals only; anything else needs the store)."""
    for dataset, version in sorted({(r["dataset"], r["data_version"]) for r in rows}):
        if source.store is not None:
            prefix = dataset_prefix(dataset, version)
            for path in source.store.list(prefix):
                scratch.write_bytes(path, source.store.read_bytes(path))
        elif dataset in PREPARABLE:
            from orchestrator.execution.prepare import prepare_fashion_animals  # noqa: PLC0415 (builds arrays: only here)
            prepare_fashion_animals(scratch)
        else:
            raise UsageError(f"{source.where}: rows of dataset {dataset!r} need the store that holds its data: "
                             f"verify the sweep by name with --store (a folder alone prepares {', '.join(PREPARABLE)})")


def retrain(row: dict, scratch_root: str, work: Path) -> Optional[str]:
    """Train one row's recorded settings into the scratch store, on this machine's CPU; None, or the
    one line the trial failed with."""
    settings = json.loads(row["settings_json"])
    settings["runtime"] = {**settings["runtime"], "device": "cpu"}  # runtime: not part of key or draws
    file = work / f"{row['key']}.json"
    file.write_text(json.dumps(settings))
    proc = subprocess.run([sys.executable, "-m", "workers.trial", str(file), "--store", scratch_root],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return for_terminal(lines[-1] if lines else f"exit {proc.returncode}", 300)


def verify_rows(chosen: list[dict], rows: Rows, jobs: int, say: Callable[[str], None]) -> list[Verdict]:
    """Retrain `chosen` (and the bases they need) in a scratch store; one Verdict per retrained row."""
    bases, dependents, needed_by = with_bases(chosen, rows)
    verdicts: list[Verdict] = []
    stale = [r for r in bases + dependents if r["protocol"] < RNG_ROOT_FROM or r["rng_root"] is None]
    for row in stale:
        verdicts.append(Verdict(row, "stale", [f"protocol {row['protocol']}, planned before draws came from rng_root: "
                                               "republish the sweep"]))
    skip = {r["key"] for r in stale}
    work = Path(tempfile.mkdtemp(prefix="transfer-sweep-verify-"))
    try:
        scratch = open_store(str(work / "store"))
        prepare_data([r for r in bases + dependents if r["key"] not in skip], rows, scratch)
        for what, stage in (("base", bases), ("dependent", dependents)):
            for row in stage:
                if row["key"] not in skip and row["base_key"] in skip:  # its base is stale or failed
                    verdicts.append(Verdict(row, "failed", [f"not retrained: its base {row['base_key']} was not"]))
                    skip.add(row["key"])
            todo = [r for r in stage if r["key"] not in skip]
            if todo:
                say(f"retraining {len(todo)} {what} row(s), {min(jobs, len(todo))} at a time")
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                errors = list(pool.map(lambda r: retrain(r, scratch.root, work), todo))
            for row, error in zip(todo, errors):
                if error is not None:
                    verdicts.append(Verdict(row, "failed", [f"could not retrain: {error}"]))
                    skip.add(row["key"])
                    continue
                retrained = records.read_result(scratch, row["key"])
                verdict = compare_rows(row, retrained or {})
                verdict.needed_by = needed_by.get(row["key"])
                verdicts.append(verdict)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return verdicts


def verdict_lines(verdicts: list[Verdict]) -> list[str]:
    """One line per row (and one per environment difference), then the summary line."""
    lines = []
    label = {"equal": "bitwise equal", "differs": "DIFFERS", "not comparable": "differs (another environment)",
             "stale": "does not reproduce from its key", "failed": "FAILED"}
    for v in verdicts:
        name = for_terminal(v.row["name"], 40) + (f" (base of {v.needed_by})" if v.needed_by else "")
        lines.append(f"  {name:<44} {v.row['key']}  {label[v.outcome]}"
                     + (": " + "; ".join(v.differences) if v.differences else ""))
        if v.environment:
            lines.append(f"  {'':<44} {'':<16}  environment (committed -> here): {', '.join(v.environment)}")
    equal = sum(v.outcome == "equal" for v in verdicts)
    failing = sum(v.fails for v in verdicts)
    other = sum(v.outcome == "not comparable" for v in verdicts)
    retrained = sum(v.outcome in ("equal", "differs", "not comparable") for v in verdicts)
    lines.append(f"verify: {equal} of {retrained} retrained row(s) bitwise equal, {failing} failing"
                 + (f", {other} differ in another environment (not decided here)" if other else ""))
    return lines
