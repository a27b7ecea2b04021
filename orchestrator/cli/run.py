"""`transfer-sweep run SPEC` and `resume SPEC_OR_NAME`: train whatever of a sweep is not committed.

Both build the sweep once (its spec and its store, opened once) and hand it to the schedule; a run
holds the sweep's lease from before anything is written until it ends, so that two drivers never
train the same sweep.
"""
from __future__ import annotations

import contextlib
import os
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from rich.console import Console

from orchestrator.cli import args as options
from orchestrator.cli.args import SPEC_STORE
from orchestrator.errors import EXIT_FAILED, EXIT_INTERRUPTED, UsageError, print_error
from orchestrator.execution.driver_job import is_jobs_address
from orchestrator.execution.lease import acquire as acquire_lease
from orchestrator.sources import StoredSpecCheck, is_spec_file, record_spec, stored_sweep, sweep_from_args
from orchestrator.spec import DEFAULT_STORE, Plan, Sweep, make_plan, resume_command
from orchestrator.spec.replicate import Round, worst_case
from sweepcore.layout import manifest_path
from sweepcore.records import committed_keys, read_rounds, write_rounds
from sweepcore.store import Store

if TYPE_CHECKING:
    from orchestrator.analysis.stopping import Decision
    from orchestrator.cli.rounds import RoundsOutcome
    from orchestrator.execution.schedule import RunSummary


def add_parsers(sub) -> None:
    """Register `run` and `resume`."""
    sp = sub.add_parser("run", help="run a sweep on Ray (local by default)")
    options.add_spec(sp)
    options.add_store(sp, SPEC_STORE)
    options.add_ray_address(sp)
    options.add_force(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("resume", help="finish a sweep: run whatever is not committed, from your spec file "
                        "or from the spec the store recorded (verified against what you submitted)")
    sp.add_argument("sweep", help="your spec file (SPEC.yaml), or the sweep's name: its stored spec, verified "
                    "against this machine's record of what was submitted")
    options.add_spec(sp, positional=False)
    options.add_store(sp, f"the spec file's store; with a sweep name, {DEFAULT_STORE}")
    options.add_ray_address(sp)
    options.add_force(sp)
    sp.add_argument("--spec-digest", metavar="SHA256", help="refuse to run unless the stored spec has this full "
                    "sha256 (what `submit` puts in the job it starts)")
    sp.add_argument("--trust-stored-spec", action="store_true", help="run the spec the store holds without a "
                    "record to verify it against (its code, host and path fields are shown; a factory must "
                    "be an installed entry point)")
    sp.set_defaults(func=cmd_resume)


def cmd_run(args) -> int:
    """Run the spec file's sweep on this machine's Ray, or the cluster --address names."""
    if is_jobs_address(args.address):
        raise UsageError(f"--address {args.address} is a dashboard (Jobs API) URL: `transfer-sweep submit` "
                         "runs the driver there; `run --address` takes a Ray address such as host:6379")
    return run_sweep(sweep_from_args(args), args.address, args.verbose, args.force)


def cmd_resume(args) -> int:
    """Run what is not committed, from the user's spec file or from the spec the store recorded."""
    if is_spec_file(args.sweep):  # the normal path: the user's own word
        if args.spec_digest or args.trust_stored_spec:
            raise UsageError("--spec-digest and --trust-stored-spec are for a stored spec: a spec file needs "
                             "neither")
        args.spec = args.sweep
        sweep = sweep_from_args(args)
    else:
        if args.set:
            raise UsageError("--set needs a spec file: `transfer-sweep resume SPEC.yaml --set FIELD=VALUE`")
        digest = args.spec_digest
        if digest is None and not args.trust_stored_spec and is_jobs_address(args.address):
            from orchestrator.cli.submit import submitted_sha256  # noqa: PLC0415 (Jobs API only for a dashboard URL)
            digest = submitted_sha256(args.sweep, args.store, args.address)  # the job's metadata vouches
        sweep = stored_sweep(args.sweep, args.store, args.endpoint,
                             StoredSpecCheck(digest=digest, trust=args.trust_stored_spec, runs=True))
    if is_jobs_address(args.address):  # a dashboard URL: run the driver on the cluster, as `submit` does
        from orchestrator.cli.submit import submit_sweep  # noqa: PLC0415 (Jobs API only for a dashboard URL)
        return submit_sweep(sweep, args.address)
    return run_sweep(sweep, args.address, args.verbose, args.force)


class _Driver:
    """The live parts of one run, brought up when Ray is (progress display, the sweep's Ray metrics)
    and taken down on every way out, including the two that must exit the process from another
    thread at once (the cluster is lost; another driver took the lease over)."""

    def __init__(self, sweep: Sweep, console: Console, stack: contextlib.ExitStack, events):
        """`events`: the run's schedule.ProgressCallback, whose trial events go to the display once it is up.
        `plan` is the round being run (set before each round)."""
        self.sweep, self.console, self.stack, self.events = sweep, console, stack, events
        self.plan: Optional[Plan] = None
        self.progress = None
        self.publish: Optional[Callable[[dict], None]] = None  # the sweep's Ray metrics, once Ray is up
        self.rounds: dict = {}  # a replicating sweep's round and claims, for those metrics
        self.log_file: Optional[Path] = None

    def on_start(self, to_run: int, already: int, dashboard: Optional[str]) -> None:
        from orchestrator.cli.progress import SweepProgress  # noqa: PLC0415 (Rich live display only for runs)
        from orchestrator.execution.schedule import tune_storage  # noqa: PLC0415 (imports Ray)

        spec, say = self.sweep.spec, lambda line: self.console.print(line, markup=False)
        assert self.plan is not None
        self.console.print(f"sweep [bold]{spec.name}[/]: {len(self.plan)} trials, {already} already committed, "
                           f"{to_run} to run; store {self.sweep.store.uri()}")
        if dashboard and self.publish is None:
            say(f"Ray dashboard: {dashboard}")
        if to_run and self.publish is None:  # Ray is up: the counts are also the sweep's Ray metrics
            from orchestrator.execution.metrics import TrialCountMetrics  # noqa: PLC0415 (imports Ray)
            if self.log_file is not None:
                say(f"Ray and Tune logs: {self.log_file} (--verbose shows them here)")
            say(f"learning curves: tensorboard --logdir {tune_storage(spec)}")
            metrics = TrialCountMetrics(spec.name, self.rounds)
            self.stack.callback(metrics.close)
            self.publish = metrics
        self._stop_display()  # a later round: its own bar over its own plan
        self.progress = self.stack.enter_context(SweepProgress(self.console, len(self.plan), already, spec.name,
                                                               self.publish))
        self.events.listener = self.progress

    def on_lost(self, line: str) -> None:
        """The watchdog's thread, while Tune's loop hangs: say it, release the lease, exit."""
        self._stop_display()
        print_error(f"{line}; committed results are kept: run `{resume_command(self.sweep.spec)}` once the "
                    "cluster is back")
        self.stack.close()  # releases the lease
        os._exit(EXIT_FAILED)

    def on_taken_over(self, line: str) -> None:
        """The lease's heartbeat thread: the other driver runs the sweep now; two would race."""
        self._stop_display()
        print_error(f"{line}; this driver stops (committed results are kept, and the other driver trains the "
                    "rest)")
        os._exit(EXIT_FAILED)

    def _stop_display(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_sweep(sweep: Sweep, address: Optional[str], verbose: bool = False, force: bool = False) -> int:
    """Train the sweep's uncommitted trials, round by round where the spec replicates until decided,
    and print what happened; the exit code says how it ended."""
    from orchestrator.cli.rounds import judge_round, run_rounds  # noqa: PLC0415 (pandas only for commands that run)
    from orchestrator.execution.schedule import ProgressCallback, RunHooks, run_plan, tune_storage  # noqa: PLC0415 (Ray only for commands that run)

    spec, store = sweep.spec, sweep.store
    console = Console(stderr=True, soft_wrap=True)  # paths and commands stay on one line, copyable
    say = lambda line: console.print(line, markup=False)  # noqa: E731
    with contextlib.ExitStack() as stack:
        events = ProgressCallback(None, store)  # Tune's trial events: to the display, once it is up
        driver = _Driver(sweep, console, stack, events)
        # before anything is written: a second driver changes nothing; one that takes over stops this one
        stack.enter_context(acquire_lease(store, spec.name, force, on_lost=driver.on_taken_over))
        record_spec(spec, store)
        if not verbose:
            driver.log_file = Path(tune_storage(spec)) / f"driver-{time.strftime('%Y%m%d-%H%M%S')}.log"
        if spec.images is not None:  # a user's image set: decoded into the store once, by Ray tasks
            prepare_images(sweep, address, driver.log_file, say)
        hooks = RunHooks(callbacks=[events], on_start=driver.on_start, on_lost=driver.on_lost, say=say,
                         log_file=driver.log_file)

        def run_round(r: Round):
            driver.plan = make_plan(r.spec)
            if spec.replicate is not None:
                driver.rounds.update(round=r.number, units=r.units, max_units=spec.replicate.max_units)
                say(f"round {r.number} of at most {worst_case(spec).number}: {r.units} units"
                    + (f" (added {r.added})" if r.added else ""))
            return run_plan(driver.plan, Sweep(r.spec, store), address, hooks)

        earlier = read_rounds(store, spec.name) if spec.replicate else None
        history: list[str] = list(earlier["history"]) if earlier else []  # an earlier driver's judgements

        def report(r: Round, decision: Decision) -> None:
            assert spec.replicate is not None  # only a replicating sweep's rounds are judged
            say(decision.why)
            history[:] = [line for line in history if round_of(line) < r.number] + [decision.why]
            record = decision.record(r.number, r.units, spec.replicate.max_units, history)
            driver.rounds["claims"] = record["claims"]
            write_rounds(store, spec.name, record)

        def judge(r: Round):
            assert driver.plan is not None  # the plan run_round just ran: this round's
            return judge_round(Sweep(r.spec, store), driver.plan)

        outcome = run_rounds(spec, committed_keys(store), run_round, judge, report)
    summary = merged(outcome)
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


def round_of(line: str) -> int:
    """The round a judgement line is about ('round 2 (10 units): ...'); 0 for anything else."""
    match = re.match(r"round (\d+) ", line)
    return int(match.group(1)) if match else 0


def merged(outcome: RoundsOutcome) -> RunSummary:
    """One summary of every round this driver ran: the last round's plan and what is missing from it,
    everything trained in any round, what was committed before the first."""
    first, last = outcome.ran[0][1], outcome.ran[-1][1]
    trained = sorted({k for _, s in outcome.ran for k in s.trained})
    return replace(last, already_done=first.already_done, completed=sum(s.completed for _, s in outcome.ran),
                   trained=trained, wall_seconds=sum(s.wall_seconds for _, s in outcome.ran))


def prepare_images(sweep: Sweep, address: Optional[str], log_file: Optional[Path], say) -> None:
    """Prepare the spec's image set in the store unless it is there (Ray stays up for the sweep)."""
    from orchestrator.execution.prepare import prepare_image_set  # noqa: PLC0415 (Ray only for commands that run)
    from orchestrator.execution.session import connect  # noqa: PLC0415 (Ray only for commands that run)

    spec = sweep.spec
    if not sweep.store.exists(manifest_path(spec.dataset, str(spec.data_version))):
        connect(address, log_file=log_file)  # the sweep's own Ray session: run_plan joins it
        prepare_image_set(sweep, address, say)


def training_times_line(store: Store, keys: list[str], local: bool) -> str:
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
