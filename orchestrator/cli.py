"""`transfer-sweep`: plan, run, resume, status and report layer-wise transfer sweeps.

Every user mistake ends as one line on stderr and exit code 2 (no traceback); failed trials end a run
with exit code 1 after everything else has finished (orchestrator/errors.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from orchestrator.data_cli import add_data_parser
from orchestrator.driver_job import is_jobs_address
from orchestrator.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from orchestrator.lease import acquire as acquire_lease
from orchestrator.plan import Plan, counts, make_plan
from orchestrator.spec import DEFAULT_STORE, SpecError, SweepSpec
from orchestrator.spec_source import (
    StoredSpecCheck,
    is_spec_file,
    record_spec,
    resume_command,
    spec_from_args,
    stored_spec,
    with_data_version,
)
from orchestrator.submit import add_submit_parsers
from sweepcore.layout import dataset_prefix, sweep_prefix
from sweepcore.store import StoreError, open_store


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the `transfer-sweep` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The CLI reports store problems as one line when retries run out; the per-retry warnings are for
    # worker logs (and for --verbose), not for a terminal.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sweepcore.store").setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        code = int(args.func(args) or 0)
        if "ray" in sys.modules:  # only commands that ran something import Ray
            from orchestrator.ray_session import disconnect  # noqa: PLC0415
            if disconnect():
                _exit_now(code)
        return code
    except (SpecError, StoreError, UsageError) as exc:
        print(f"transfer-sweep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `transfer-sweep plan ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("transfer-sweep: interrupted; committed results are kept, run `resume` to finish",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit_now(code: int) -> None:
    """Exit once everything is said and Ray is left: skip the interpreter's teardown of Ray's and
    Tune's modules and threads (~1.3 s measured), which saves nothing a user needs."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


ADDRESS_HELP = ("Ray cluster address, or auto for the cluster running on this machine "
                "(default: start a private local Ray)")
FORCE_HELP = "take the sweep over from another driver that still holds its lease (default: refuse)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="transfer-sweep", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log store retries and Ray details")
    sub = p.add_subparsers(dest="command", required=True)

    def spec_args(sp):
        sp.add_argument("spec", help="sweep spec YAML (see sweeps/)")
        sp.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a spec field, e.g. --set train.epochs=1 (repeatable)")

    def store_arg(sp, default="the spec's store"):
        sp.add_argument("--store", help=f"store root: folder or s3://bucket/prefix (default: {default})")
        sp.add_argument("--endpoint", help="S3 endpoint URL (default: AWS_ENDPOINT_URL)")

    sp = sub.add_parser("plan", help="expand a spec and print the trial counts and the estimated CPU time")
    spec_args(sp)
    store_arg(sp)
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--diff", action="store_true", help="compare with the store before any training: which keys "
                    "exist, which are new (and what changed), which stored rows are stale, what the new ones cost")
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("run", help="run a sweep on Ray (local by default)")
    spec_args(sp)
    store_arg(sp)
    sp.add_argument("--address", help=ADDRESS_HELP)
    sp.add_argument("--force", action="store_true", help=FORCE_HELP)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("resume", help="finish a sweep: run whatever is not committed, from your spec file "
                        "or from the spec the store recorded (verified against what you submitted)")
    sp.add_argument("sweep", help="your spec file (SPEC.yaml), or the sweep's name: its stored spec, verified "
                    "against this machine's record of what was submitted")
    sp.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="with a spec file: override a spec field (repeatable)")
    store_arg(sp, f"the spec file's store; with a sweep name, {DEFAULT_STORE}")
    sp.add_argument("--address", help=ADDRESS_HELP)
    sp.add_argument("--force", action="store_true", help=FORCE_HELP)
    sp.add_argument("--spec-digest", metavar="SHA256", help="refuse to run unless the stored spec has this full "
                    "sha256 (what `submit` puts in the job it starts)")
    sp.add_argument("--trust-stored-spec", action="store_true", help="run the spec the store holds without a "
                    "record to verify it against (its code, host and path fields are shown; a factory must "
                    "be an installed entry point)")
    sp.set_defaults(func=cmd_resume)

    sp = sub.add_parser("status", help="done / running / failed / pending, from the store only")
    sp.add_argument("sweep", help="sweep name")
    store_arg(sp, DEFAULT_STORE)
    sp.add_argument("--address", metavar="URL", help="Ray Jobs API (dashboard) URL: also show the driver job")
    sp.set_defaults(func=cmd_status)

    add_submit_parsers(sub)  # submit, logs (orchestrator/submit.py)

    sp = sub.add_parser("report", help="figures and the paper's claims, from the results")
    sp.add_argument("sweep", help="sweep name")
    store_arg(sp, DEFAULT_STORE)
    sp.add_argument("--out", help="output folder (default: <store>/sweeps/<name>/report when local, "
                    "else ./report-<name>)")
    sp.add_argument("--metric", choices=("top1_paper", "top1_final"), default="top1_paper")
    sp.set_defaults(func=cmd_report)
    add_data_parser(sub)  # `data prepare ...`
    from orchestrator.compare import add_compare_parser  # noqa: PLC0415 (matplotlib and pandas only when asked)
    add_compare_parser(sub)
    from orchestrator.verify import add_verify_parser  # noqa: PLC0415
    add_verify_parser(sub)
    from orchestrator.import_folder import add_import_parser  # noqa: PLC0415
    add_import_parser(sub)

    return p


# --- commands ------------------------------------------------------------------------------------
def plan_estimate(spec: SweepSpec, plan: Plan, rows: Optional[list[dict]] = None):
    """The plan's cost on this machine: committed trials count as done and calibrate the per-step
    costs. Without `rows`, those of a local store; a remote store is not contacted (planning stays
    offline unless --diff asks for the store)."""
    from orchestrator.estimate import estimate  # noqa: PLC0415 (estimates only for `plan`)
    from sweepcore.records import read_results  # noqa: PLC0415 (estimates only for `plan`)
    if rows is not None:
        pass
    elif "://" not in spec.store and Path(spec.store, "results").is_dir():
        try:
            table = read_results(open_store(spec.store))
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
    spec = spec_from_args(args)
    if args.diff:
        return plan_diff(spec, args.format)
    plan = make_plan(spec)
    c = counts(plan)
    cost = plan_estimate(spec, plan)
    if args.format == "json":
        c["estimate"] = {"trials_to_run": cost.trials, "committed": cost.committed,
                         "cpu_seconds": None if cost.note else round(cost.cpu_seconds, 1),
                         "wall_seconds": None if cost.note else round(cost.wall_seconds, 1),
                         "slots": cost.slots, "calibration": round(cost.calibration, 3), "note": cost.note}
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
    return 0


def plan_diff(spec: SweepSpec, fmt: str) -> int:
    """`plan --diff`: the plan against the rows the store holds (read only; nothing is written)."""
    from orchestrator.plan_diff import change_groups, diff_plan  # noqa: PLC0415 (only for --diff)
    from sweepcore.records import read_results  # noqa: PLC0415 (only for --diff)

    store = open_store(spec.store, spec.endpoint, check=False)  # read only: a check would write a probe
    spec = with_data_version(spec, store)
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


def cmd_run(args) -> int:
    if is_jobs_address(args.address):
        raise UsageError(f"--address {args.address} is a dashboard (Jobs API) URL: `transfer-sweep submit` "
                         "runs the driver there; `run --address` takes a Ray address such as host:6379")
    return _run(spec_from_args(args), args.address, args.verbose, args.force)


def cmd_resume(args) -> int:
    if is_spec_file(args.sweep):  # the normal path: the user's own word
        if args.spec_digest or args.trust_stored_spec:
            raise UsageError("--spec-digest and --trust-stored-spec are for a stored spec: a spec file needs "
                             "neither")
        args.spec = args.sweep
        spec = spec_from_args(args)
    else:
        if args.set:
            raise UsageError("--set needs a spec file: `transfer-sweep resume SPEC.yaml --set FIELD=VALUE`")
        digest = args.spec_digest
        if digest is None and not args.trust_stored_spec and is_jobs_address(args.address):
            from orchestrator.submit import submitted_sha256  # noqa: PLC0415 (Jobs API only for a dashboard URL)
            digest = submitted_sha256(args.sweep, args.store, args.address)  # the job's metadata vouches
        spec = stored_spec(args.sweep, args.store, args.endpoint,
                           StoredSpecCheck(digest=digest, trust=args.trust_stored_spec, runs=True))
    if is_jobs_address(args.address):  # a dashboard URL: run the driver on the cluster, as `submit` does
        from orchestrator.submit import submit_spec  # noqa: PLC0415 (Jobs API only for a dashboard URL)
        return submit_spec(spec, args.address)
    return _run(spec, args.address, args.verbose, args.force)


def _run(spec: SweepSpec, address: Optional[str], verbose: bool = False, force: bool = False) -> int:
    from orchestrator.progress import SweepProgress  # noqa: PLC0415 (Rich live display only for commands that run)
    from orchestrator.schedule import ProgressCallback, run_plan, tune_storage  # noqa: PLC0415 (Ray only for commands that run)

    store = open_store(spec.store, spec.endpoint)
    spec = with_data_version(spec, store)  # the data version is part of every key: fixed before planning
    plan = make_plan(spec)
    # before anything is written: a second driver changes nothing; one that takes over stops this one
    lease = acquire_lease(store, spec.name, force, on_lost=lambda line: on_taken_over(line))
    record_spec(spec, store)
    console = Console(stderr=True, soft_wrap=True)  # paths and commands stay on one line, copyable
    holder: dict = {}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_file = None if verbose else Path(tune_storage(spec, spec.store)) / f"driver-{stamp}.log"

    def on_start(to_run: int, already: int, dashboard: Optional[str]) -> None:
        console.print(f"sweep [bold]{spec.name}[/]: {len(plan)} trials, {already} already committed, "
                      f"{to_run} to run; store {store.uri()}")
        if dashboard:
            console.print(f"Ray dashboard: {dashboard}")
        if log_file is not None and to_run:
            console.print(f"Ray and Tune logs: {log_file} (--verbose shows them here)", markup=False)
        if to_run:
            console.print(f"learning curves: tensorboard --logdir {tune_storage(spec, spec.store)}", markup=False)
        publish = None
        if to_run:  # Ray is up: the counts are also the sweep's Ray metrics
            from orchestrator.metrics import TrialCountMetrics  # noqa: PLC0415 (Ray only for commands that run)
            publish = holder["metrics"] = TrialCountMetrics(spec.name)
        holder["progress"] = SweepProgress(console, len(plan), already, spec.name, publish).__enter__()

    class Listener:
        def __getattr__(self, name):
            return getattr(holder["progress"], name)

    def on_lost(line: str) -> None:
        # called from the watchdog's thread while Tune's loop hangs: say it, keep the lease honest, exit
        if "progress" in holder:
            holder["progress"].__exit__(None, None, None)
        print(f"transfer-sweep: error: {line}; committed results are kept: run `{resume_command(spec)}` "
              "once the cluster is back", file=sys.stderr, flush=True)
        lease.release()
        os._exit(EXIT_FAILED)

    def on_taken_over(line: str) -> None:
        # called from the lease's heartbeat thread: the other driver runs the sweep now; two would race
        if "progress" in holder:
            holder["progress"].__exit__(None, None, None)
        print(f"transfer-sweep: error: {line}; this driver stops (committed results are kept, and the "
              "other driver trains the rest)", file=sys.stderr, flush=True)
        os._exit(EXIT_FAILED)

    try:
        if spec.images is not None:  # a user's image set: decoded into the store once, by Ray tasks
            prepare_images(spec, address, log_file, lambda line: console.print(line, markup=False))
        summary = run_plan(plan, spec, spec.store, spec.endpoint, address,
                           callbacks=[ProgressCallback(Listener(), spec.store, spec.endpoint)], on_start=on_start,
                           log_file=log_file, on_lost=on_lost, say=lambda line: console.print(line, markup=False))
    finally:
        if "progress" in holder:
            holder["progress"].__exit__(None, None, None)
        if "metrics" in holder:
            holder["metrics"].close()
        lease.release()
    console.print(f"sweep {spec.name}: {summary.already_done + summary.completed}/{summary.planned} "
                  f"committed ({summary.completed} trained now, {summary.already_done} before) in "
                  f"{summary.wall_seconds:.0f} s; results: {store.uri('results')}")
    if summary.trained:
        local = not (address or os.environ.get("RAY_ADDRESS"))
        console.print(training_times_line(store, summary.trained, local), markup=False)
    if summary.failed or summary.blocked:
        console.print(f"{len(summary.failed)} failed, {len(summary.blocked)} blocked by a failed base"
                      + (f", {len(summary.stopped)} not run (stopped)" if summary.stopped else "")
                      + f": `transfer-sweep status {spec.name} --store {spec.store}` shows the errors; "
                      f"`{resume_command(spec)}` retries them", style="red", markup=False)
        return EXIT_FAILED
    if summary.stopped:
        console.print(f"stopped: {len(summary.stopped)} trials not run, none failed; committed results are "
                      f"kept: `{resume_command(spec)}` runs the rest", style="yellow", markup=False)
        return EXIT_INTERRUPTED
    return 0


def prepare_images(spec: SweepSpec, address: Optional[str], log_file: Optional[Path], say) -> None:
    """Prepare the spec's image set in the store unless it is there (Ray stays up for the sweep)."""
    from orchestrator.prepare import prepare_image_set  # noqa: PLC0415 (Ray only for commands that run)
    from orchestrator.ray_session import connect  # noqa: PLC0415 (Ray only for commands that run)

    store = open_store(spec.store, spec.endpoint)
    if not store.exists(f"{dataset_prefix(spec.dataset, str(spec.data_version))}/manifest.json"):
        connect(address, log_file=log_file)  # the sweep's own Ray session: run_plan joins it
        prepare_image_set(spec, address, say)


def training_times_line(store, keys: list[str], local: bool) -> str:
    """'trainings: N, median X s each (min-max), T s of training in all[, on <CPU>]': what users
    compare across machines (`local`: the trainings ran on this machine, so its CPU is named)."""
    from orchestrator.machine import cpu_line  # noqa: PLC0415 (only where trainings ran)
    from sweepcore.records import read_results  # noqa: PLC0415 (Arrow only once something trained)

    seconds = sorted(float(s) for s in read_results(store, set(keys)).column("wall_seconds").to_pylist())
    if not seconds:
        return "trainings: none read back"
    median = statistics.median(seconds)
    where = f", on {cpu_line()}" if local else ""
    return (f"trainings: {len(seconds)}, {median:.1f} s each (median; {seconds[0]:.1f}-{seconds[-1]:.1f} s), "
            f"{sum(seconds):.0f} s of training in all{where}")


def cmd_status(args) -> int:
    from orchestrator.status import print_status  # noqa: PLC0415 (status only)

    spec = stored_spec(args.sweep, args.store, args.endpoint)
    code = print_status(spec, make_plan(spec), open_store(spec.store, spec.endpoint), Console())
    if args.address:
        from orchestrator.submit import print_job_state  # noqa: PLC0415 (Jobs API only with --address)
        print_job_state(spec, args.address, Console())
    return code


def cmd_report(args) -> int:
    import pandas as pd  # noqa: PLC0415 (pandas only for `report`)

    from orchestrator.report import write_report, write_tables  # noqa: PLC0415 (matplotlib only for `report`)
    from sweepcore.records import read_base_curves, read_results  # noqa: PLC0415 (Arrow only for `report`)

    spec = stored_spec(args.sweep, args.store, args.endpoint)
    plan: Plan = make_plan(spec)
    store = open_store(spec.store, spec.endpoint)
    table = read_results(store, set(plan.by_key()))
    results = table.to_pandas()
    planned = pd.DataFrame([{k: getattr(t, k) for k in ("key", "name", "split", "source_half", "target_half",
                                                          "n", "treatment", "seed")} | {"dataset": spec.dataset}
                            for t in plan.trials])
    out = Path(args.out) if args.out else (
        Path(store.uri(f"{sweep_prefix(spec.name)}/report")) if "://" not in spec.store
        else Path(f"report-{spec.name}"))
    within = store.local_path() if not args.out and "://" not in spec.store else None  # default: stays in the store
    curves = read_base_curves(store, results)
    info = write_report(results, out, planned=planned, title=f"sweep {spec.name} ({spec.dataset})",
                        metric=args.metric, curves=curves.to_pandas() if curves is not None else None,
                        within=within)
    # the sweep's rows in one file, to share or commit beside the figures; the bases' curves let a
    # reader recompute the convergence check (no curves: an earlier report's file is removed)
    written = write_tables(out, {"results.parquet": table, "base_curves.parquet": curves}, within=within)
    console = Console()
    for f in [*info["files"], *written]:
        console.print(f"wrote {f}")
    for claim in info["claims"]:
        print(f"claim {claim.id}: {claim.verdict:<16} {claim.title}")
    if info["missing"]:
        console.print(f"[yellow]{len(info['missing'])} planned trials have no result yet[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
