"""`transfer-sweep submit` and `logs`: run a sweep's driver on a Ray cluster as a Ray Job, and watch it.

`submit` records the effective spec in the store (sweeps/<name>/spec.yaml) and submits
`transfer-sweep resume <name> --store <uri>` as the job's entrypoint; `resume` on the head reads the
spec back, so nothing is uploaded: the cluster image has the package installed, and the store is the
only thing both sides share. Ray sets RAY_ADDRESS for a job's driver, so the driver joins the cluster
it runs on. Whether to submit, and under which id, is driver_job.py; the Jobs API client, jobs_api.py.
Cluster nodes have their own credentials: nothing secret goes into the job.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Optional

from rich.console import Console

from orchestrator.cli import args as options
from orchestrator.cli.args import SPEC_STORE
from orchestrator.errors import EXIT_FAILED, EXIT_INTERRUPTED, UsageError
from orchestrator.execution.driver_job import (
    ACTIVE,
    META_SHA256,
    dashboard_link,
    decide,
    driver_entrypoint,
    is_jobs_address,
    job_metadata,
    sweep_jobs,
)
from orchestrator.execution.jobs_api import JobsApi
from orchestrator.execution.lease import JOB_META
from orchestrator.sources import command_store, record_spec, stored_sweep, sweep_from_args
from orchestrator.spec import Sweep, SweepSpec, make_plan
from orchestrator.trust import recorded
from sweepcore.records import committed_keys, read_failures
from sweepcore.store import absolute_uri
from sweepcore.terminal import for_terminal, lines_for_terminal

__all__ = ["add_parsers", "is_jobs_address", "print_failures", "print_job_state", "submit_sweep",
           "submitted_sha256"]


def add_parsers(sub) -> None:
    """Register `submit` and `logs`."""
    sp = sub.add_parser("submit", help="run a sweep on a Ray cluster as a Ray job (returns at once)")
    options.add_spec(sp)
    options.add_jobs_address(sp, "where the driver runs, e.g. http://127.0.0.1:8265 via `ray dashboard cluster.yaml`",
                             required=True)
    options.add_store(sp, SPEC_STORE)
    sp.add_argument("--follow", action="store_true", help="stream the driver's log until the sweep ends")
    sp.set_defaults(func=cmd_submit)

    sp = sub.add_parser("logs", help="the driver's log (with --address), or the failed attempts in the store")
    sp.add_argument("sweep", help="sweep name")
    options.add_store(sp)
    options.add_jobs_address(sp, "print the driver's log")
    sp.add_argument("--follow", action=argparse.BooleanOptionalAction, default=False,
                    help="with --address: keep streaming until the driver ends")
    sp.set_defaults(func=cmd_logs)


# --- commands --------------------------------------------------------------------------------------
def cmd_submit(args: argparse.Namespace) -> int:
    """Submit the spec file's sweep (its store is opened here: an unreachable one fails here, not on the head)."""
    return submit_sweep(sweep_from_args(args), args.address, follow=args.follow)


def submit_sweep(sweep: Sweep, address: str, follow: bool = False, console: Optional[Console] = None) -> int:
    """Submit the sweep's driver to the cluster at `address` unless one is already running (see module doc)."""
    console = console or Console(soft_wrap=True)
    spec, store = sweep.spec, sweep.store
    api = JobsApi(address)
    decision = decide(api.jobs(), spec)
    job_id, previous = decision.submission_id, decision.previous
    if decision.action == "conflict":
        raise UsageError(
            f"sweep {spec.name} is already running on {api.address} as Ray job {job_id} with a different "
            f"spec (store {spec.store}); wait for it to finish or stop it (`ray job stop {job_id} "
            f"--address {api.address}`), or give this spec another name")
    if decision.action == "running":
        console.print(f"sweep {spec.name}: already running as Ray job {job_id} ({previous.status}); "
                      "not submitted again")
    else:
        plan = make_plan(spec)
        done = len(committed_keys(store) & set(plan.by_key()))
        if done == len(plan):
            console.print(f"sweep {spec.name}: all {len(plan)} trials are already committed in {store.uri()}; "
                          f"nothing to submit. Figures: transfer-sweep report {spec.name} --store {spec.store}")
            return 0
        record_spec(spec, store)  # what `resume` on the head will read
        metadata = {**job_metadata(spec), JOB_META: job_id}  # the driver's lease names its job
        if not api.submit(entrypoint=driver_entrypoint(spec), submission_id=job_id, metadata=metadata):
            # Another `submit` of the same spec won the race for this id: that driver is the one.
            console.print(f"sweep {spec.name}: already submitted as Ray job {job_id}; not submitted again")
        else:
            console.print(f"submitted sweep {spec.name} as Ray job {job_id}: {len(plan) - done} of "
                          f"{len(plan)} trials to train, store {store.uri()}")
            if previous is not None:
                console.print(f"(a new attempt: the previous driver {previous.submission_id} ended "
                              f"{previous.status}; committed trials are not trained again)")
            if "://" not in spec.store:
                console.print(f"note: the store is a local folder: the head and every worker must see "
                              f"{spec.store} (one machine, or a shared mount); a cluster uses s3://")
    console.print(f"dashboard: {dashboard_link(api.address, job_id)}")
    console.print(f"follow: transfer-sweep logs {spec.name} --address {api.address} --follow; "
                  f"progress: transfer-sweep status {spec.name} --store {spec.store}")
    if not follow:
        return 0
    return _follow(api, job_id)


def _exit_code(status: str) -> int:
    return 0 if status == "SUCCEEDED" else EXIT_FAILED


def _follow(api: JobsApi, job_id: str) -> int:
    """Stream the job's log; exit code 0 when it succeeded. Ctrl-C stops following, not the job."""
    try:
        status = api.follow(job_id)
    except KeyboardInterrupt:
        print(f"== stopped following; Ray job {job_id} keeps running on the cluster ==", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"== Ray job {job_id}: {status} ==", file=sys.stderr)
    return _exit_code(status)


def latest_job(api: JobsApi, name: str, store: Optional[str]):
    """The newest job submitted for sweep `name` (in `store`, when given), or None."""
    mine = sweep_jobs(api.jobs(), name, store)
    return mine[-1] if mine else None


def submitted_sha256(sweep: str, store: Optional[str], address: str) -> Optional[str]:
    """The full digest the newest Ray job of `sweep` in `store` was submitted with (its metadata: the
    cluster is the user's side), where this machine has no record of its own; None otherwise."""
    store_uri = command_store(store, None).uri
    if recorded(store_uri, sweep) is not None:
        return None
    job = latest_job(JobsApi(address), sweep, store_uri)
    value = (job.metadata or {}).get(META_SHA256) if job is not None else None
    return value if isinstance(value, str) else None


def cmd_logs(args: argparse.Namespace) -> int:
    """The driver job's log (with --address), else the failed attempts the store records."""
    if not args.address:
        return print_failures(stored_sweep(args.sweep, args.store, args.endpoint), Console(soft_wrap=True))
    api = JobsApi(args.address)
    store = absolute_uri(args.store) if args.store else None
    job = latest_job(api, args.sweep, store)
    if job is None:
        where = f" for store {store}" if store else ""
        raise UsageError(f"no Ray job for sweep {args.sweep!r}{where} on {api.address} "
                           "(`transfer-sweep submit` starts one)")
    print(f"== driver of sweep {args.sweep}: Ray job {job.submission_id} ({job.status}) ==", file=sys.stderr)
    if args.follow:
        return _follow(api, job.submission_id)
    sys.stdout.write(api.logs(job.submission_id))
    status = api.status(job.submission_id)
    print(f"== Ray job {job.submission_id}: {status} ==", file=sys.stderr)
    return _exit_code(status) if status not in ACTIVE else 0


def print_failures(sweep: Sweep, console: Console) -> int:
    """Every failed attempt of the sweep's trials recorded in the store: error, where, traceback."""
    spec, store = sweep.spec, sweep.store
    plan = make_plan(spec)
    count = 0
    for trial in plan.trials:
        for record in read_failures(store, trial.key):
            count += 1
            console.print(f"{for_terminal(record.get('at'))} {trial.name} ({trial.key}): "
                          f"{for_terminal(record.get('error'))}", markup=False)
            console.print(f"  where: {for_terminal(record.get('where'))}", markup=False)
            for line in lines_for_terminal((record.get("traceback") or "").rstrip()):
                console.print(f"  {line}", markup=False, highlight=False)
    if not count:
        console.print(f"sweep {spec.name}: no failed attempts recorded in {store.uri()} ({len(plan)} trials)")
    console.print(f"the driver's own log: transfer-sweep logs {spec.name} --address http://127.0.0.1:8265",
                  markup=False)
    return 0


def print_job_state(spec: SweepSpec, address: str, console: Console) -> None:
    """One line for `status --address`: the sweep's newest driver job; a warning if the API is unreachable."""
    try:
        api = JobsApi(address)
        job = latest_job(api, spec.name, spec.store)
    except UsageError as exc:
        console.print(f"driver: state unknown ({exc})", style="yellow", markup=False, soft_wrap=True)
        return
    if job is None:
        console.print(f"driver: no Ray job for sweep {spec.name} on {api.address}", soft_wrap=True)
        return
    started = datetime.fromtimestamp(job.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S") if job.start_time else "?"
    console.print(f"driver: Ray job {job.submission_id} {job.status} (submitted {started}); "
                  f"{dashboard_link(api.address, job.submission_id)}", soft_wrap=True)
