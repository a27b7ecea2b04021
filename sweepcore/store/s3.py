"""The S3 backend: s3://bucket/prefix through boto3.

boto3 rather than pyarrow.fs, because commits need `put_object(IfNoneMatch="*")` and retries need
structured error codes (pyarrow.fs reports errors as free text). `filesystem()` still hands users a
pyarrow filesystem for direct dataset reads. Every call is retried on transient errors.
"""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from sweepcore.store.base import Store, StoreError, clean_path, one_line, refuse_secrets

CHECK_RETRY_SECONDS = 3.0  # open_store's probe: an unreachable endpoint must fail fast
CONNECT_TIMEOUT = 3  # seconds per connection attempt


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
        import botocore.exceptions as be
        if isinstance(exc, (be.ConnectionError, be.HTTPClientError, ConnectionError)):
            return True
        if isinstance(exc, be.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return code in self._RETRY_CODES or status >= 500
        return False

    def _translate(self, exc, op, path):
        import botocore.exceptions as be
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
        """Prove the endpoint answers, the credentials are accepted and the bucket exists (no write)."""
        probe = lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key("", True),
                                                    MaxKeys=1)
        self._call("check", "", probe, budget=CHECK_RETRY_SECONDS)

    def read_bytes(self, path):
        key = self._key(path)

        def read():
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except Exception as exc:
                if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                    raise FileNotFoundError(self.uri(path)) from None
                raise
        return self._call("read", path, read)

    def exists(self, path):
        key = self._key(path)

        def head():
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                return True
            except Exception as exc:
                if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                    return False
                raise
        return self._call("exists", path, head)

    def write_bytes(self, path, data):
        key, data = self._key(path), bytes(data)
        refuse_secrets(path, data)
        self._call("write", path, lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def commit_bytes(self, path, data):
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
        return self._call("commit", path, commit)

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
        import pyarrow.fs as pafs
        options = {"region": self.client.meta.region_name or "us-east-1"}
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            options.update(endpoint_override=parts.netloc or self.endpoint,
                           scheme=parts.scheme or "https")
        # no key arguments: pyarrow reads the same standard AWS chain as boto3
        return pafs.S3FileSystem(**options), self.uri(path)[len("s3://"):]


def _make_s3_client(endpoint: str | None) -> Any:
    import boto3
    from botocore.config import Config
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
