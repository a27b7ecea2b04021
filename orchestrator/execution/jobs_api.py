"""The Ray Jobs API (the dashboard's REST interface) as a client whose failures are one-line errors.

Token auth: with RAY_AUTH_MODE=token in the environment, Ray's JobSubmissionClient sends the token
from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token with every request (Ray 2.60:
ray/_private/authentication/http_token_authentication.get_auth_headers_if_auth_enabled). Nothing
secret is ever put in a job (no runtime_env env_vars: the dashboard shows them).

Ray is imported inside functions only: `status` without --address must not pay for it.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time

from orchestrator.errors import UsageError
from orchestrator.execution.driver_job import ACTIVE, is_jobs_address


def _api_error(address: str, exc: BaseException) -> Exception:
    """One line for what went wrong talking to the Jobs API (never a traceback, never the token)."""
    from ray.exceptions import AuthenticationError  # noqa: PLC0415 (Ray only when the Jobs API is used)

    if isinstance(exc, AuthenticationError):
        return UsageError(
            f"the Ray Jobs API at {address} refused the request ({(str(exc).splitlines() or ['no token'])[0]}): "
            "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
            "~/.ray/auth_token; `ray get-auth-token` on the head prints it)")
    if isinstance(exc, ConnectionError):
        return UsageError(f"cannot reach the Ray Jobs API at {address}: is the cluster up and "
                            "`ray dashboard cluster.yaml` (the SSH tunnel) running?")
    return UsageError(f"Ray Jobs API at {address}: {' '.join(str(exc).split())[:300]}")


class JobsApi:
    """A JobSubmissionClient whose failures become one-line CLI errors."""

    def __init__(self, address: str):
        if not is_jobs_address(address):
            raise UsageError(f"--address {address!r}: expected the dashboard URL of the cluster, "
                               "e.g. http://127.0.0.1:8265")
        from ray.job_submission import JobSubmissionClient  # noqa: PLC0415 (Ray only when the Jobs API is used)

        self.address = address.rstrip("/")
        self.client = self._call(JobSubmissionClient, self.address)

    def _call(self, fn, *args, **kwargs):
        from ray.exceptions import RayError  # AuthenticationError is one  # noqa: PLC0415 (Ray only when the Jobs API is used)

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
