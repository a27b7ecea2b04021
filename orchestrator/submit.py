"""`transfer-sweep submit` and `logs`: run a sweep's driver on a Ray cluster as a Ray Job, and watch it.

The driver is `transfer-sweep resume <name> --store <uri>` on the head. `submit` first writes the
effective spec to the store (sweeps/<name>/spec.yaml) and `resume` reads it back, so nothing is
uploaded: the cluster image has the package installed, and the store is the only thing both sides
share. Ray sets RAY_ADDRESS for a job's driver, so the driver joins the cluster it runs on.

One driver per sweep: the job's submission id is derived from the effective spec
(`transfer-sweep-<name>-<sha256 prefix>`), and the Jobs API refuses a second job with an existing id.
Submitting again while that job is pending or running submits nothing. After it ended, a new attempt
(`...-2`, `...-3`) trains only what is not committed; when everything is committed nothing is submitted.

Token auth: with RAY_AUTH_MODE=token in the environment, Ray's JobSubmissionClient sends the token
from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token with every request (Ray 2.60:
ray/_private/authentication/http_token_authentication.get_auth_headers_if_auth_enabled). Nothing
secret is ever put in the job (no runtime_env env_vars: the dashboard shows them); cluster nodes
have their own credentials.

Ray is imported inside functions only: `status` without --address must not pay for it.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from rich.console import Console

from orchestrator.plan import make_plan
from orchestrator.spec import SweepSpec
from orchestrator.store import open_store
from orchestrator.records import committed_keys, read_failures

ACTIVE = ("PENDING", "RUNNING")
# The command that starts transfer-sweep on the head. The image puts `transfer-sweep` on PATH; a head
# started from a virtualenv that is not on PATH (the tests) sets e.g. "/venv/bin/python -m orchestrator.cli".
DRIVER_ENV = "TRANSFER_SWEEP_DRIVER"
DEFAULT_DRIVER = "transfer-sweep"
# Job metadata (shown on the dashboard; no secrets: store URIs with credentials are refused by open_store).
META_SWEEP, META_SPEC, META_STORE = "transfer_sweep", "transfer_sweep_spec", "transfer_sweep_store"
EXIT_FAILED = 1


def add_submit_parsers(sub) -> None:
    """Register `submit` and `logs` on the CLI's sub-command parsers."""
    sp = sub.add_parser("submit", help="run a sweep on a Ray cluster as a Ray job (returns at once)")
    sp.add_argument("spec", help="sweep spec YAML (see sweeps/)")
    sp.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a spec field, e.g. --set resources.gpus=0.5 (repeatable)")
    sp.add_argument("--address", required=True, metavar="URL",
                    help="Ray Jobs API (dashboard) URL, e.g. http://127.0.0.1:8265 via `ray dashboard cluster.yaml`")
    _store_args(sp, "the spec's store")
    sp.add_argument("--follow", action="store_true", help="stream the driver's log until the sweep ends")
    sp.set_defaults(func=cmd_submit)

    sp = sub.add_parser("logs", help="the driver's log (with --address), or the failed attempts in the store")
    sp.add_argument("sweep", help="sweep name")
    _store_args(sp, "./store")
    sp.add_argument("--address", metavar="URL", help="Ray Jobs API (dashboard) URL: print the driver's log")
    sp.add_argument("--follow", action=argparse.BooleanOptionalAction, default=False,
                    help="with --address: keep streaming until the driver ends")
    sp.set_defaults(func=cmd_logs)


def _store_args(sp, default: str) -> None:
    sp.add_argument("--store", help=f"store root: folder or s3://bucket/prefix (default: {default})")
    sp.add_argument("--endpoint", help="S3 endpoint URL (default: AWS_ENDPOINT_URL)")


# --- pure parts ----------------------------------------------------------------------------------
def spec_digest(spec: SweepSpec) -> str:
    """First 10 hex chars of the sha256 of the effective spec (store and overrides included)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def submission_base(spec: SweepSpec) -> str:
    """The submission id of a sweep's first driver job; later attempts append -2, -3, ..."""
    return f"transfer-sweep-{spec.name}-{spec_digest(spec)}"


def driver_entrypoint(spec: SweepSpec, driver: Optional[str] = None) -> str:
    """The shell command the job runs on the head: `resume` re-reads the spec from the store."""
    command = shlex.split(driver or os.environ.get(DRIVER_ENV) or DEFAULT_DRIVER)
    command += ["resume", spec.name, "--store", spec.store]
    if spec.endpoint:
        command += ["--endpoint", spec.endpoint]
    return shlex.join(command)


def is_jobs_address(address: Optional[str]) -> bool:
    """A dashboard/Jobs API URL (http[s]://), as opposed to a Ray GCS address for ray.init."""
    return bool(address) and address.split("://", 1)[0].lower() in ("http", "https")


def job_metadata(spec: SweepSpec) -> dict[str, str]:
    return {META_SWEEP: spec.name, META_SPEC: spec_digest(spec), META_STORE: spec.store}


def sweep_jobs(jobs: list, name: str, store: Optional[str] = None) -> list:
    """The jobs submitted for sweep `name` (and `store`, when given), oldest first."""
    mine = [j for j in jobs if (j.metadata or {}).get(META_SWEEP) == name
            and (store is None or (j.metadata or {}).get(META_STORE) == store)]
    return sorted(mine, key=lambda j: (j.start_time or 0, j.submission_id or ""))


@dataclass(frozen=True)
class Decision:
    """What `submit` does: 'running' (a driver for this spec is pending/running: nothing to do),
    'conflict' (a driver for another spec of the same sweep and store is active: refuse), or
    'submit' under `submission_id`. `previous` is the job that decided it, if any."""

    action: str
    submission_id: str
    previous: Any = None


def decide(jobs: list, spec: SweepSpec) -> Decision:
    """Pure: given the cluster's jobs, decide whether and under which id to submit `spec`."""
    mine = sweep_jobs(jobs, spec.name, spec.store)
    active = [j for j in mine if str(j.status) in ACTIVE]
    digest = spec_digest(spec)
    same = [j for j in active if (j.metadata or {}).get(META_SPEC) == digest]
    if same:
        return Decision("running", same[-1].submission_id, same[-1])
    if active:
        return Decision("conflict", active[-1].submission_id, active[-1])
    base = submission_base(spec)
    used = {j.submission_id for j in jobs}
    attempt = 1
    while (f"{base}-{attempt}" if attempt > 1 else base) in used:
        attempt += 1
    return Decision("submit", f"{base}-{attempt}" if attempt > 1 else base, mine[-1] if mine else None)


def dashboard_link(address: str, submission_id: str) -> str:
    return f"{address.rstrip('/')}/#/jobs/{submission_id}"


# --- the Jobs API ----------------------------------------------------------------------------------
def _usage_error(message: str) -> Exception:
    from orchestrator.cli import UsageError  # lazily: cli imports this module
    return UsageError(message)


def _api_error(address: str, exc: BaseException) -> Exception:
    """One line for what went wrong talking to the Jobs API (never a traceback, never the token)."""
    from ray.exceptions import AuthenticationError

    if isinstance(exc, AuthenticationError):
        return _usage_error(
            f"the Ray Jobs API at {address} refused the request ({(str(exc).splitlines() or ['no token'])[0]}): "
            "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
            "~/.ray/auth_token; `ray get-auth-token` on the head prints it)")
    if isinstance(exc, ConnectionError):
        return _usage_error(f"cannot reach the Ray Jobs API at {address}: is the cluster up and "
                            "`ray dashboard cluster.yaml` (the SSH tunnel) running?")
    return _usage_error(f"Ray Jobs API at {address}: {' '.join(str(exc).split())[:300]}")


class JobsApi:
    """A JobSubmissionClient whose failures become one-line CLI errors."""

    def __init__(self, address: str):
        if not is_jobs_address(address):
            raise _usage_error(f"--address {address!r}: expected the dashboard URL of the cluster, "
                               "e.g. http://127.0.0.1:8265")
        from ray.job_submission import JobSubmissionClient

        self.address = address.rstrip("/")
        self.client = self._call(JobSubmissionClient, self.address)

    def _call(self, fn, *args, **kwargs):
        from ray.exceptions import RayError  # AuthenticationError is one

        try:
            return fn(*args, **kwargs)
        except (ConnectionError, RuntimeError, OSError, ValueError, RayError) as exc:
            raise _api_error(self.address, exc) from None

    def jobs(self) -> list:
        return self._call(self.client.list_jobs)

    def status(self, submission_id: str) -> str:
        return str(self._call(self.client.get_job_status, submission_id))

    def logs(self, submission_id: str) -> str:
        return self._call(self.client.get_job_logs, submission_id)

    def submit(self, **kwargs) -> bool:
        """Submit a job; False when its submission id is taken (a concurrent `submit` won the race)."""
        try:
            self.client.submit_job(**kwargs)
        except RuntimeError as exc:
            if "already exists" in str(exc):
                return False
            raise _api_error(self.address, exc) from None
        except Exception as exc:  # noqa: BLE001 (connection and auth errors: one line, see _api_error)
            raise _api_error(self.address, exc) from None
        return True

    def follow(self, submission_id: str, out=None) -> str:
        """Stream the job's log to `out` until the job ends; return its final status."""
        out = out or sys.stdout

        async def pump():
            async for chunk in self.client.tail_job_logs(submission_id):
                out.write(chunk)
                out.flush()

        logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "WebSocket closed"
        try:
            asyncio.run(pump())
        except Exception as exc:  # noqa: BLE001 (aiohttp errors have no common base worth naming)
            raise _api_error(self.address, exc) from None
        return self.wait(submission_id)

    def wait(self, submission_id: str, timeout: float = 30.0) -> str:
        """The job's status once terminal (the log stream can close a moment before the state moves)."""
        deadline = time.monotonic() + timeout
        status = self.status(submission_id)
        while status in ACTIVE and time.monotonic() < deadline:
            time.sleep(0.5)
            status = self.status(submission_id)
        return status


# --- commands --------------------------------------------------------------------------------------
def cmd_submit(args) -> int:
    from orchestrator.cli import _load

    return submit_spec(_load(args), args.address, follow=args.follow)


def submit_spec(spec: SweepSpec, address: str, follow: bool = False, console: Optional[Console] = None) -> int:
    """Submit `spec`'s driver to the cluster at `address` unless one is already running (see module doc)."""
    from orchestrator.cli import _record_spec

    console = console or Console(soft_wrap=True)
    store = open_store(spec.store, spec.endpoint)  # an unreachable store fails here, not on the head
    api = JobsApi(address)
    decision = decide(api.jobs(), spec)
    job_id, previous = decision.submission_id, decision.previous
    if decision.action == "conflict":
        raise _usage_error(
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
        _record_spec(spec, store)  # what `resume` on the head will read
        if not api.submit(entrypoint=driver_entrypoint(spec), submission_id=job_id, metadata=job_metadata(spec)):
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
        return 130
    print(f"== Ray job {job_id}: {status} ==", file=sys.stderr)
    return _exit_code(status)


def latest_job(api: JobsApi, name: str, store: Optional[str]):
    """The newest job submitted for sweep `name` (in `store`, when given), or None."""
    mine = sweep_jobs(api.jobs(), name, store)
    return mine[-1] if mine else None


def cmd_logs(args) -> int:
    from orchestrator.cli import _absolute, _stored_spec

    if not args.address:
        spec = _stored_spec(args)
        return print_failures(spec, Console(soft_wrap=True))
    api = JobsApi(args.address)
    store = _absolute(args.store) if args.store else None
    job = latest_job(api, args.sweep, store)
    if job is None:
        where = f" for store {store}" if store else ""
        raise _usage_error(f"no Ray job for sweep {args.sweep!r}{where} on {api.address} "
                           "(`transfer-sweep submit` starts one)")
    print(f"== driver of sweep {args.sweep}: Ray job {job.submission_id} ({job.status}) ==", file=sys.stderr)
    if args.follow:
        return _follow(api, job.submission_id)
    sys.stdout.write(api.logs(job.submission_id))
    status = api.status(job.submission_id)
    print(f"== Ray job {job.submission_id}: {status} ==", file=sys.stderr)
    return _exit_code(status) if status not in ACTIVE else 0


def print_failures(spec: SweepSpec, console: Console) -> int:
    """Every failed attempt of the sweep's trials recorded in the store: error, where, traceback."""
    store = open_store(spec.store, spec.endpoint)
    plan = make_plan(spec)
    count = 0
    for trial in plan.trials:
        for record in read_failures(store, trial.key):
            count += 1
            console.print(f"{record.get('at')} {trial.name} ({trial.key}): {record.get('error')}", markup=False)
            console.print(f"  where: {record.get('where')}", markup=False)
            for line in (record.get("traceback") or "").rstrip().splitlines():
                console.print(f"  {line}", markup=False, highlight=False)
    if not count:
        console.print(f"sweep {spec.name}: no failed attempts recorded in {store.uri()} ({len(plan)} trials)")
    console.print(f"the driver's own log: transfer-sweep logs {spec.name} --address http://127.0.0.1:8265",
                  markup=False)
    return 0


def print_job_state(spec: SweepSpec, address: str, console: Console) -> None:
    """One line for `status --address`: the sweep's newest driver job; a warning if the API is unreachable."""
    from orchestrator.cli import UsageError

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
