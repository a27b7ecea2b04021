"""`transfer-sweep status NAME`: done / running / interrupted / failed / pending, from the store only;
with --address, also the sweep's driver job on the cluster."""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from rich.console import Console
from rich.table import Table

from orchestrator.cli import args as options
from orchestrator.cli.rounds import rounds_lines, shown_round
from orchestrator.execution.states import TrialState, eta_seconds, trial_states
from orchestrator.sources import stored_sweep
from orchestrator.spec import Sweep, make_plan, resume_command
from sweepcore.records import committed_keys, read_rounds
from sweepcore.terminal import for_terminal


def add_parsers(sub) -> None:
    """Register `status`."""
    sp = sub.add_parser("status", help="done / running / failed / pending, from the store only")
    sp.add_argument("sweep", help="sweep name")
    options.add_store(sp)
    options.add_jobs_address(sp, "also show the driver job")
    sp.set_defaults(func=cmd_status)


def cmd_status(args) -> int:
    """Print the sweep's status; exit 1 when some trial has failed."""
    sweep = stored_sweep(args.sweep, args.store, args.endpoint)
    code = print_status(sweep, Console())
    if args.address:
        from orchestrator.cli.submit import print_job_state  # noqa: PLC0415 (Jobs API only with --address)
        print_job_state(sweep.spec, args.address, Console())
    return code


def print_status(sweep: Sweep, console: Console) -> int:
    """Print the status table, bar, ETA and failures. Exit 1 when some trial has failed."""
    spec, store = sweep.spec, sweep.store
    record = read_rounds(store, spec.name) if spec.replicate else None
    shown = shown_round(spec, committed_keys(store), record)
    plan = make_plan(shown.spec)
    states = trial_states(plan, store)
    table = Table(title=f"sweep {spec.name}: {len(plan)} trials in {store.uri()}")
    for col in ("treatment", "split", *[s.value for s in TrialState]):
        table.add_column(col, justify="left" if col in ("treatment", "split") else "right")
    groups: dict[tuple, Counter] = defaultdict(Counter)
    for s in states:
        groups[(s.treatment, s.split)][s.state] += 1
    for (treatment, split), c in groups.items():
        table.add_row(treatment, split, *[str(c[s]) for s in TrialState])
    console.print(table)
    total = Counter(s.state for s in states)
    eta = eta_seconds(store, states)
    if eta is not None:
        eta_text = f"{eta / 60:.1f} min"
    elif not total[TrialState.RUNNING]:
        eta_text = f"none: nothing is running (`{resume_command(spec)}` finishes it)"
    else:
        eta_text = "unknown (nothing finished yet)"
    counts_line = " ".join(f"{s.value} {total[s]}" for s in TrialState) + f"; ETA {eta_text}"
    filled = round(50 * total[TrialState.DONE] / max(1, len(plan)))
    console.print(f"[green]{'━' * filled}[/][grey50]{'━' * (50 - filled)}[/] "
                  f"{total[TrialState.DONE]}/{len(plan)}")
    console.print(counts_line)
    for line in rounds_lines(spec, shown, record):
        console.print(line, markup=False)
    for s in states:
        if s.state is TrialState.RUNNING:
            console.print(f"running {s.name}: step {s.step}/{s.total_steps}", markup=False)
    for s in states:
        if s.state is TrialState.INTERRUPTED:
            when = datetime.fromtimestamp(s.since or 0).strftime("%Y-%m-%d %H:%M:%S")
            console.print(f"interrupted {s.name}: last alive {when} at step {s.step or 0}/{s.total_steps or '?'}",
                          markup=False)
    for s in states:
        if s.state is TrialState.FAILED:
            console.print(f"failed {s.name}: {for_terminal(s.error, 2000)}\n    log: {for_terminal(s.where, 500)}\n"
                          f"    record: {for_terminal(s.record, 500)}", markup=False, style="red")
    return 1 if total[TrialState.FAILED] else 0
