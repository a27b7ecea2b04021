"""The S3 backend: s3://bucket/prefix through boto3.

boto3 rather than pyarrow.fs, because commits need `put_object(IfNoneMatch="*")` and retries need
structured error codes (pyarrow.fs reports errors as free text). `filesystem()` still hands users a
pyarrow filesystem for direct dataset reads. Every call is retried on transient errors.

Some servers (older MinIO/Ceph/SeaweedFS versions, gateways) accept `If-None-Match` and ignore it: every
commit then "succeeds" and overwrites. `check()` (open_store's check=True) therefore proves, once per
endpoint and bucket per process, that a second commit of the same object is refused.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from sweepcore.store.base import Store, StoreError, clean_path, one_line, refuse_secrets

CHECK_RETRY_SECONDS = 3.0  # open_store's probe: an unreachable endpoint must fail fast
CONNECT_TIMEOUT = 3  # seconds per connection attempt
# The create-only probe's objects: under the store's prefix, outside every folder layout.py names
# (no listing of results/, curves/, trials/, sweeps/ or datasets/ can see them); deleted at once.
PROBE_PREFIX = "_probe/create-only-"

log = logging.getLogger(__name__)


class S3Store(Store):
    """s3://bucket/prefix through boto3; every call retried on transient errors (see _transient)."""

    _AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                   "InvalidToken", "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed"}
    _RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                    "ServiceUnavailable", "RequestLimitExceeded", "ConditionalRequestConflict",
                    "OperationAborted", "500", "502", "503", "504"}

    parallel_reads = 16

    def __init__(self, root: str, bucket: str, prefix: str, endpoint: str | None):
        self.root, self.bucket, self.prefix, self.endpoint = root, bucket, prefix, endpoint
        self._client: Any = None

    def __getstate__(self):  # picklable for Ray workers: the client (and its credentials) stays here
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    @property
    def client(self):
        if self._client is None:
            self._client = _make_s3_client(self.endpoint)
        return self._client

    @property
    def endpoint_name(self) -> str:
        return self.endpoint or self.client.meta.endpoint_url

    def _key(self, path: str, allow_empty: bool = False) -> str:
        clean = clean_path(path, allow_empty)
        return "/".join(p for p in (self.prefix, clean) if p)

    def _transient(self, exc):
        import botocore.exceptions as be  # noqa: PLC0415 (boto only where an S3 store is used)
        if isinstance(exc, (be.ConnectionError, be.HTTPClientError, ConnectionError)):
            return True
        if isinstance(exc, be.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return code in self._RETRY_CODES or status >= 500
        return False

    def _translate(self, exc, op, path):
        import botocore.exceptions as be  # noqa: PLC0415 (boto only where an S3 store is used)
        where = self.uri(path) if path else f"s3://{self.bucket}"
        if self._transient(exc):
            return StoreError(f"S3 endpoint {self.endpoint_name} unreachable ({op} {where}): "
                              f"{one_line(exc)}")
        if isinstance(exc, be.NoCredentialsError):
            return StoreError(f"no AWS credentials found for {self.endpoint_name}: "
                              "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        if isinstance(exc, be.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket" or (op == "check" and code in ("404", "NotFound")):
                return StoreError(f"bucket '{self.bucket}' does not exist at {self.endpoint_name}")
            if code in self._AUTH_CODES:
                return StoreError(f"credentials rejected by {self.endpoint_name} ({code} on {op} "
                                  f"{where}): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
            msg = exc.response.get("Error", {}).get("Message", "")
            return StoreError(f"S3 {op} {where} at {self.endpoint_name} failed: {code} {msg}")
        if isinstance(exc, be.BotoCoreError):
            return StoreError(f"S3 {op} {where} failed: {one_line(exc)}")
        return exc

    @staticmethod
    def _code(exc) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def check(self) -> None:
        """Prove the endpoint answers, the credentials are accepted, the bucket exists and the server
        honours create-only commits (see _check_create_only). All of it within CHECK_RETRY_SECONDS."""
        deadline = time.monotonic() + CHECK_RETRY_SECONDS
        def probe():
            return self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key("", True), MaxKeys=1)
        self._call("check", "", probe, budget=CHECK_RETRY_SECONDS)
        self._check_create_only(deadline)

    def _check_create_only(self, deadline: float) -> None:
        """Commit a fresh probe object twice through commit_bytes' own path: the first must create it,
        the second must be refused (412). A server that lets the second through ignores
        If-None-Match, and exactly-once is impossible there: StoreError. The probe is deleted either
        way (best effort). A command opens its store once (orchestrator/sources.py), so this runs once
        per command; the processes it ships work to open the store unchecked."""
        path = f"{PROBE_PREFIX}{uuid.uuid4().hex}"

        def budget() -> float:  # retries share the check's budget
            return max(0.0, deadline - time.monotonic())
        try:
            created = self._commit(path, b"create-only probe: first", budget())
        except StoreError as exc:
            if self._code(exc.__cause__) in ("AccessDenied", "403"):
                # credentials that may read but not write cannot overwrite a result either (their
                # commits fail loudly): status/report still work; a writer's open proves it
                log.info("store: create-only commits not checked at %s: writes are denied (%s)",
                         self.endpoint_name, one_line(exc))
                return
            self._delete_probe(path, budget())  # the request may have stored it before failing
            raise
        try:
            if not created and not self._call("check", path, lambda: self._head(path), budget()):
                verdict = (f"S3 endpoint {self.endpoint_name} refused a create-only commit of a new "
                           "object and did not store it, so commits cannot succeed there; use an S3 "
                           "server/version that supports conditional writes")
            elif self._commit(path, b"create-only probe: second", budget()):
                verdict = (f"S3 endpoint {self.endpoint_name} ignores If-None-Match: a second create-only "
                           "commit of the same object succeeded, so exactly-once commits are impossible "
                           "there; use an S3 server/version that supports conditional writes "
                           "(PutObject with If-None-Match: * answered 412 PreconditionFailed)")
            else:
                verdict = None
        finally:
            self._delete_probe(path, budget())
        if verdict is not None:
            raise StoreError(verdict)

    def _delete_probe(self, path: str, budget: float) -> None:
        key = self._key(path)
        try:
            self._call("check", path, lambda: self.client.delete_object(Bucket=self.bucket, Key=key),
                       budget)
        except Exception as exc:  # noqa: BLE001 - best effort: the probe is invisible to every listing
            log.warning("store: could not delete the create-only probe %s (%s); delete it by hand",
                        self.uri(path), one_line(exc))

    def _head(self, path: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(path))
            return True
        except Exception as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise

    def read_bytes(self, path, limit=None):
        key = self._key(path)

        def read():
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
                if limit is None:
                    return body.read()
                try:
                    return body.read(limit + 1)  # the rest is never downloaded
                finally:
                    body.close()
            except Exception as exc:
                if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                    raise FileNotFoundError(self.uri(path)) from None
                raise
        return self._call("read", path, read)

    def exists(self, path):
        self._key(path)  # a bad path is a ValueError here, not inside the retry loop
        return self._call("exists", path, lambda: self._head(path))

    def write_bytes(self, path, data):
        key, data = self._key(path), bytes(data)
        refuse_secrets(path, data)
        self._call("write", path, lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def commit_bytes(self, path, data):
        return self._commit(path, data)

    def _commit(self, path: str, data: bytes, budget: float | None = None) -> bool:
        """commit_bytes, with a retry budget (check() spends only its own)."""
        key, data = self._key(path), bytes(data)
        refuse_secrets(path, data)

        def commit():
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
                return True
            except Exception as exc:
                if self._code(exc) in ("PreconditionFailed", "412"):
                    return False  # someone committed first: that is the exactly-once guarantee
                raise
        return self._call("commit", path, commit, budget)

    def list(self, prefix):
        base = self._key(prefix, allow_empty=True)
        strip = len(self.prefix) + 1 if self.prefix else 0

        def listing():
            found: list[str] = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + "/" if base else "")
            for page in pages:
                found.extend(o["Key"][strip:] for o in page.get("Contents", [])
                             if not o["Key"].endswith("/"))
            return sorted(found)
        return self._call("list", prefix, listing)

    def delete(self, path):
        key = self._key(path)
        self._call("delete", path, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def uri(self, path=""):
        key = self._key(path, allow_empty=True)
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"

    def filesystem(self, path=""):
        import pyarrow.fs as pafs  # noqa: PLC0415 (Arrow only where a file system is asked for)
        options = {"region": self.client.meta.region_name or "us-east-1"}
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            options.update(endpoint_override=parts.netloc or self.endpoint,
                           scheme=parts.scheme or "https")
        # no key arguments: pyarrow reads the same standard AWS chain as boto3
        return pafs.S3FileSystem(**options), self.uri(path)[len("s3://"):]


def _make_s3_client(endpoint: str | None) -> Any:
    import boto3  # noqa: PLC0415 (boto only where an S3 store is used)
    from botocore.config import Config  # noqa: PLC0415
    config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=30,
                    retries={"total_max_attempts": 1},  # our own loop retries, and logs each retry
                    max_pool_connections=32,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"addressing_style": "path"} if endpoint else {})
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    try:
        return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config,
                                              region_name=region or ("us-east-1" if endpoint else None))
    except ValueError as exc:
        raise StoreError(f"invalid S3 endpoint {endpoint!r}: {exc}") from None
