"""Which Ray Job drives a sweep: pure rules over the cluster's job list (no Ray, no I/O).

One driver per sweep: the job's submission id is derived from the effective spec
(`transfer-sweep-<name>-<sha256 prefix>`), and the Jobs API refuses a second job with an existing id.
Submitting again while that job is pending or running submits nothing. After it ended, a new attempt
(`...-2`, `...-3`) trains only what is not committed; when everything is committed nothing is submitted.

The driver is `transfer-sweep resume <name> --store <uri>` on the head: `submit` first writes the
effective spec to the store and `resume` reads it back, so nothing is uploaded.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Any, Optional

from orchestrator.spec.schema import SweepSpec
from orchestrator.trust import spec_id, spec_sha256

ACTIVE = ("PENDING", "RUNNING")
# The command that starts transfer-sweep on the head. The image puts `transfer-sweep` on PATH; a head
# started from a virtualenv that is not on PATH (the tests) sets e.g. "/venv/bin/python -m orchestrator.cli".
DRIVER_ENV = "TRANSFER_SWEEP_DRIVER"
DEFAULT_DRIVER = "transfer-sweep"
# Job metadata (shown on the dashboard; no secrets: store URIs with credentials are refused by open_store).
META_SWEEP, META_SPEC, META_STORE = "transfer_sweep", "transfer_sweep_spec", "transfer_sweep_store"
META_SHA256 = "transfer_sweep_spec_sha256"  # the full digest the driver verifies the stored spec against


def spec_digest(spec: SweepSpec) -> str:
    """The spec's short id (10 hex): what submission ids are made of (trust.spec_id)."""
    return spec_id(spec)


def submission_base(spec: SweepSpec) -> str:
    """The submission id of a sweep's first driver job; later attempts append -2, -3, ..."""
    return f"transfer-sweep-{spec.name}-{spec_digest(spec)}"


def driver_entrypoint(spec: SweepSpec, driver: Optional[str] = None) -> str:
    """The shell command the job runs on the head: `resume` re-reads the spec from the store."""
    command = shlex.split(driver or os.environ.get(DRIVER_ENV) or DEFAULT_DRIVER)
    command += ["resume", spec.name, "--store", spec.store]
    if spec.endpoint:
        command += ["--endpoint", spec.endpoint]
    # the driver refuses a stored spec that is not the one submitted (a shared bucket has other writers)
    command += ["--spec-digest", spec_sha256(spec)]
    return shlex.join(command)


def is_jobs_address(address: Optional[str]) -> bool:
    """A dashboard/Jobs API URL (http[s]://), as opposed to a Ray GCS address for ray.init."""
    return address is not None and address.split("://", 1)[0].lower() in ("http", "https")


def job_metadata(spec: SweepSpec) -> dict[str, str]:
    """What a sweep's job carries: its name, store, short id, and the full digest of what was submitted
    (where a store writer cannot change it: `resume --address` verifies against it)."""
    return {META_SWEEP: spec.name, META_SPEC: spec_digest(spec), META_STORE: spec.store,
            META_SHA256: spec_sha256(spec)}


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
