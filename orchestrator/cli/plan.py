"""`transfer-sweep plan SPEC [--diff]`: the trial counts and the estimated cost, before anything runs.

Planning stays offline: only `--diff` reads the store (read only, no probe written), and a local
store's committed rows, when there are some, calibrate the estimate.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from orchestrator.cli import args as options
from orchestrator.cli.args import SPEC_STORE
from orchestrator.errors import UsageError
from orchestrator.sources import spec_from_args, sweep_from_args
from orchestrator.spec import Plan, Sweep, SweepSpec, counts, make_plan
from sweepcore.store import StoreError, open_store


def add_parsers(sub) -> None:
    """Register `plan`."""
    sp = sub.add_parser("plan", help="expand a spec and print the trial counts and the estimated CPU time")
    options.add_spec(sp)
    options.add_store(sp, SPEC_STORE)
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--diff", action="store_true", help="compare with the store before any training: which keys "
                    "exist, which are new (and what changed), which stored rows are stale, what the new ones cost")
    sp.add_argument("--export", metavar="FILE", help="also write every trial's complete settings to FILE (JSON, "
                    "bases first) for `python -m workers.loop FILE --store STORE`, which trains them with no Ray "
                    "(a replicating spec: its first round)")
    sp.set_defaults(func=cmd_plan)


def plan_estimate(spec: SweepSpec, plan: Plan, rows: Optional[list[dict]] = None):
    """The plan's cost on this machine: committed trials count as done and calibrate the per-step
    costs. Without `rows`, those of a local store; a remote store is not contacted (planning stays
    offline unless --diff asks for the store)."""
    from orchestrator.spec.estimate import estimate  # noqa: PLC0415 (estimates only for `plan`)
    from sweepcore.records import read_results  # noqa: PLC0415 (estimates only for `plan`)
    if rows is not None:
        pass
    elif "://" not in spec.store and Path(spec.store, "results").is_dir():
        try:
            table = read_results(open_store(spec.store, check=False))
            rows = table.to_pylist() if table is not None else []
        except (StoreError, OSError, ValueError):
            rows = []  # an unreadable store only costs the calibration: planning never depends on it
    else:
        rows = []
    slots = max(1, int((os.cpu_count() or 1) // max(1.0, spec.resources.cpus)))
    if spec.max_concurrent:
        slots = min(slots, spec.max_concurrent)
    return estimate(plan, {r["key"] for r in rows}, slots, rows)


def cmd_plan(args) -> int:
    """Print the plan's counts by treatment, n and split, and its estimated cost."""
    if args.diff:
        return plan_diff(sweep_from_args(args, check=False), args.format)  # read only: a check writes a probe
    spec = spec_from_args(args)
    plan = make_plan(spec)
    if args.export:
        export_trials(plan, Path(args.export))
    c = counts(plan)
    cost = plan_estimate(spec, plan)
    if args.format == "json":
        c["estimate"] = {"trials_to_run": cost.trials, "committed": cost.committed,
                         "cpu_seconds": None if cost.note else round(cost.cpu_seconds, 1),
                         "wall_seconds": None if cost.note else round(cost.wall_seconds, 1),
                         "slots": cost.slots, "calibration": round(cost.calibration, 3), "note": cost.note}
        if spec.replicate is not None:
            c["replicate"] = replicate_summary(spec)
        print(json.dumps(c, indent=2))
        return 0
    console = Console()
    console.print(f"sweep {plan.sweep}: {c['total']} trainings, {c['bases']} distinct bases", soft_wrap=True)
    table = Table()
    table.add_column("treatment")
    ns = sorted(int(n) for n in c["by_n"])
    for n in ns:
        table.add_column(f"n={n}", justify="right")
    table.add_column("total", justify="right")
    for treatment, total in c["by_treatment"].items():
        per_n = [sum(1 for t in plan.trials if t.treatment == treatment and t.n == n) for n in ns]
        table.add_row(treatment, *[str(x) if treatment != "base" else "-" for x in per_n], str(total))
    console.print(table)
    console.print("by split: " + ", ".join(f"{k} {v}" for k, v in c["by_split"].items()))
    console.print(cost.text(), soft_wrap=True, markup=False)
    if spec.replicate is not None:
        console.print(worst_case_line(spec), soft_wrap=True, markup=False)
    return 0


def replicate_summary(spec: SweepSpec) -> dict:
    """`plan --format json`'s replicate section: the claims, the budget and every round's units,
    trainings and what it adds (round 1 is this plan; the last is the worst case)."""
    from orchestrator.spec.replicate import rounds  # noqa: PLC0415 (only for replicating sweeps)

    assert spec.replicate is not None
    return {"until": spec.replicate.until, "claims": list(spec.replicate.claims),
            "max_units": spec.replicate.max_units,
            "rounds": [{"round": r.number, "units": r.units, "trainings": len(make_plan(r.spec)), "adds": r.added}
                       for r in rounds(spec)]}


def worst_case_line(spec) -> str:
    """'replicate until claim(s) 2 are decided: this is round 1 (8 units); worst case round 2, 10 units,
    180 trainings (+36), about 105 min of wall time' (the budget spent, no claim ever decided)."""
    from orchestrator.spec.replicate import rounds  # noqa: PLC0415 (only for replicating sweeps)

    all_rounds = list(rounds(spec))
    first, last = all_rounds[0], all_rounds[-1]
    first_plan, last_plan = make_plan(first.spec), make_plan(last.spec)
    cost = plan_estimate(last.spec, last_plan)
    added = ", ".join(r.added for r in all_rounds[1:]) or "nothing (no round fits in max_units)"
    assert spec.replicate is not None
    return (f"replicate until claim(s) {', '.join(map(str, spec.replicate.claims))} are decided: this is round 1 "
            f"({first.units} units, {len(first_plan)} trainings); worst case round {last.number} ({last.units} of "
            f"max_units {spec.replicate.max_units}, {len(last_plan)} trainings, +{len(last_plan) - len(first_plan)}"
            f"; adds {added}); at worst: {cost.text()}")


def export_trials(plan: Plan, path: Path) -> None:
    """Write the plan's trials file (sweepcore/trial_list.py), atomically; a folder that cannot take it
    is a UsageError."""
    from orchestrator.output_files import write_text  # noqa: PLC0415 (only for --export)
    from sweepcore.trial_list import dump_trials  # noqa: PLC0415 (only for --export)

    try:
        write_text(path, dump_trials(plan.sweep, [t.settings for t in plan.trials]).decode())
    except OSError as exc:
        raise UsageError(f"--export {path}: cannot write it ({exc.strerror or type(exc).__name__})") from None
    print(f"wrote {path}: {len(plan)} trials of sweep {plan.sweep}, bases first", file=sys.stderr)


def plan_diff(sweep: Sweep, fmt: str) -> int:
    """`plan --diff`: the plan against the rows the store holds (read only; nothing is written)."""
    from orchestrator.spec.diff import change_groups, diff_plan  # noqa: PLC0415 (only for --diff)
    from sweepcore.records import read_results  # noqa: PLC0415 (only for --diff)

    spec, store = sweep.spec, sweep.store
    plan = make_plan(spec)
    rows = read_results(store).to_pylist()
    diff = diff_plan(plan, rows)
    cost = plan_estimate(spec, plan, rows)
    if fmt == "json":
        print(json.dumps({**diff.summary(), "estimate": {"trials_to_run": cost.trials, "note": cost.note,
                          "cpu_seconds": None if cost.note else round(cost.cpu_seconds, 1)}}, indent=2))
        return 0
    console = Console(soft_wrap=True)
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    say(f"sweep {plan.sweep} against store {store.uri()}: {len(plan)} planned: {len(diff.existing)} exist "
        f"(train nothing), {len(diff.new)} new")
    for fields, names in change_groups(diff):
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        say(f"  new because {fields}: {len(names)} ({shown})")
    if diff.left_alone:
        say(f"stored rows of sweep {plan.sweep} this plan does not make: {len(diff.left_alone)}, left alone "
            "(other networks: kept, and found again by their keys if planned again)")
    for why in sorted({w for _, w in diff.stale}):
        n = sum(1 for _, w in diff.stale if w == why)
        say(f"stale rows of sweep {plan.sweep}: {n}, {why}: left alone, but this code does not reproduce them")
    say(cost.text())
    return 0
