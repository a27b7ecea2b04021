"""The store: one root URI (local folder or s3://bucket/prefix) holding datasets, checkpoints and results.

Knows neither torch nor ray: everything crosses this boundary as bytes, dicts or pyarrow tables.
Layout and row schema: docs/contracts.md. Two backends behind one small byte API (`Store`):

- local folder (plain path or file:// URI): writes go to a dot-named temporary file in the target's
  folder, then `os.replace` (write) or `os.link` (create-only commit: fails if the target exists).
  Dot-named files are ignored by pyarrow/pandas dataset reads, so a crashed writer never shows up.
- S3 (s3://bucket/prefix): boto3, because commits need `put_object(IfNoneMatch="*")` and retries need
  structured error codes (pyarrow.fs reports errors as free text). `Store.filesystem()` hands users a
  pyarrow filesystem for direct dataset reads.

What is stored on top of this byte API (checkpoints, result rows, records) is in records.py.

Credentials come only from the standard AWS chain (env vars, config files, instance role); they are
never accepted in URIs, never logged and never written (writes containing them are refused).
"""
from __future__ import annotations

import errno
import logging
import os
import re
import time
import uuid
from urllib.parse import parse_qsl, urlsplit


log = logging.getLogger(__name__)

RETRY_SECONDS = 60.0  # default budget for retrying transient errors; env overrides (below)
RETRY_ENV = "TRANSFER_SWEEP_STORE_RETRY_SECONDS"
CHECK_RETRY_SECONDS = 3.0  # open_store's probe: an unreachable endpoint must fail fast
CONNECT_TIMEOUT = 3  # seconds per connection attempt
_MAX_BACKOFF = 2.0  # short enough to notice a recovered endpoint within seconds
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
_SECRET_QUERY = re.compile(r"(key|secret|token|password|credential)", re.IGNORECASE)
_TMP_PREFIX = ".tmp-"
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StoreError(Exception):
    """A store problem a user can act on; str() is one line naming the problem (never a secret)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def retry_seconds() -> float:
    """The current retry budget for transient errors (env TRANSFER_SWEEP_STORE_RETRY_SECONDS)."""
    value = os.environ.get(RETRY_ENV)
    return float(value) if value else RETRY_SECONDS


def _clean(path: str, allow_empty: bool = False) -> str:
    """Normalise a store-relative path; refuse absolute paths and '..' (no escaping the root)."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts or str(path).startswith("/"):
        raise ValueError(f"store paths are relative and stay under the root: {path!r}")
    if not parts and not allow_empty:
        raise ValueError("empty store path")
    return "/".join(parts)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"invalid trial key {key!r}")
    return key


def _refuse_secrets(path: str, data: bytes) -> None:
    """Refuse to write an object that contains a credential value from the environment."""
    for name in _SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= 8 and value.encode() in data:
            raise StoreError(f"refusing to write {path}: it contains the value of {name}")


def _redact(text: str) -> str:
    """Replace credential values from the environment by '***' (tracebacks may quote them)."""
    for name in _SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= 8:
            text = text.replace(value, "***")
    return text


def _one_line(exc: BaseException) -> str:
    """Type and message of an error, one line; connection errors cut to their cause
    ("[Errno 111] Connection refused") instead of the full request URL."""
    kwargs = getattr(exc, "kwargs", None)  # botocore keeps the underlying error there
    cause = kwargs.get("error") if isinstance(kwargs, dict) else None
    text = str(cause).rsplit(": ", 1)[-1] if cause is not None else str(exc)
    return f"{type(exc).__name__}: {' '.join(text.split())[:300]}"


class Store:
    """Byte-level access to one store root, with create-only commits and retried transient errors."""

    root: str  # the root URI as given (no secrets; URIs with secrets are rejected by open_store)

    def read_bytes(self, path: str) -> bytes:
        """Return the object at `path` (relative to the root). FileNotFoundError if absent."""
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        """Whether an object exists at `path`."""
        raise NotImplementedError

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write (or replace) `path` atomically: readers see the old or the new object, never a part."""
        raise NotImplementedError

    def commit_bytes(self, path: str, data: bytes) -> bool:
        """Create `path` only if absent. True if this call created it, False if it already existed.
        (After an S3 request whose answer was lost, a retry can see its own object and say False:
        either way the object exists with committed content.)"""
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Relative paths of all objects under `prefix` (recursive, sorted). Empty if none."""
        raise NotImplementedError

    def delete(self, path: str) -> None:
        """Remove `path` if present."""
        raise NotImplementedError

    def uri(self, path: str = "") -> str:
        """Full URI of `path`, for pandas/duckdb/pyarrow users (local path or s3://...)."""
        raise NotImplementedError

    def filesystem(self, path: str = ""):
        """(pyarrow.fs.FileSystem, path in it) for direct reads, e.g. pq.read_table(p, filesystem=fs)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    # --- shared retry loop ---------------------------------------------------------------------
    def _transient(self, exc: BaseException) -> bool:
        return False

    def _translate(self, exc: BaseException, op: str, path: str) -> BaseException:
        return exc

    def _call(self, op: str, path: str, fn, budget: float | None = None):
        """Run fn(), retrying transient errors with exponential backoff until `budget` seconds pass."""
        deadline = time.monotonic() + (retry_seconds() if budget is None else budget)
        delay, attempt = 0.25, 0
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified below, everything else re-raised
                left = deadline - time.monotonic()
                if not self._transient(exc) or left <= 0:
                    translated = self._translate(exc, op, path)
                    if translated is exc:
                        raise
                    raise translated from exc
                attempt += 1
                wait = min(delay, left)
                log.warning("store: %s %s failed (%s); retry %d in %.1f s (%.0f s left)",
                            op, self.uri(path) if path else self.root, _one_line(exc), attempt,
                            wait, left)
                time.sleep(wait)
                delay = min(delay * 2, _MAX_BACKOFF)


class LocalStore(Store):
    """A local folder: temp file + os.replace for writes, temp file + os.link for commits."""

    def __init__(self, root: str, directory: str):
        self.root = root
        self.directory = directory

    def _full(self, path: str, allow_empty: bool = False) -> str:
        clean = _clean(path, allow_empty)
        return os.path.join(self.directory, *clean.split("/")) if clean else self.directory

    def _transient(self, exc):
        return isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.EAGAIN, errno.EBUSY,
                                                          errno.ESTALE, errno.ETIMEDOUT)

    def _translate(self, exc, op, path):
        if isinstance(exc, (FileNotFoundError, ValueError, StoreError)) or not isinstance(exc, OSError):
            return exc
        return StoreError(f"local store: cannot {op} {self._full(path, True)}: "
                          f"{exc.strerror or _one_line(exc)}")

    def _write_temp(self, target: str, data: bytes) -> str:
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f"{_TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(target)}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def read_bytes(self, path):
        full = self._full(path)

        def read():
            with open(full, "rb") as f:
                return f.read()
        return self._call("read", path, read)

    def exists(self, path):
        return os.path.isfile(self._full(path))

    def write_bytes(self, path, data):
        full, data = self._full(path), bytes(data)
        _refuse_secrets(path, data)

        def write():
            tmp = self._write_temp(full, data)
            try:
                os.replace(tmp, full)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        self._call("write", path, write)

    def commit_bytes(self, path, data):
        full, data = self._full(path), bytes(data)
        _refuse_secrets(path, data)

        def commit():
            tmp = self._write_temp(full, data)
            try:
                os.link(tmp, full)  # atomic and create-only: fails if the target exists
                return True
            except FileExistsError:
                return False
            finally:
                _unlink_quietly(tmp)
        return self._call("commit", path, commit)

    def list(self, prefix):
        base = self._full(prefix, allow_empty=True)
        found = []
        for folder, _, files in os.walk(base):
            for name in files:
                if not name.startswith(_TMP_PREFIX):
                    rel = os.path.relpath(os.path.join(folder, name), self.directory)
                    found.append(rel.replace(os.sep, "/"))
        return sorted(found)

    def delete(self, path):
        _unlink_quietly(self._full(path))

    def uri(self, path=""):
        return self._full(path, allow_empty=True)

    def filesystem(self, path=""):
        import pyarrow.fs as pafs
        return pafs.LocalFileSystem(), self.uri(path)


def _unlink_quietly(full: str) -> None:
    try:
        os.remove(full)
    except FileNotFoundError:
        pass


class S3Store(Store):
    """s3://bucket/prefix through boto3; every call retried on transient errors (see _transient)."""

    _AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                   "InvalidToken", "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed"}
    _RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                    "ServiceUnavailable", "RequestLimitExceeded", "ConditionalRequestConflict",
                    "OperationAborted", "500", "502", "503", "504"}

    def __init__(self, root: str, bucket: str, prefix: str, endpoint: str | None):
        self.root, self.bucket, self.prefix, self.endpoint = root, bucket, prefix, endpoint
        self._client = None

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
        clean = _clean(path, allow_empty)
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
                              f"{_one_line(exc)}")
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
            return StoreError(f"S3 {op} {where} failed: {_one_line(exc)}")
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
        _refuse_secrets(path, data)
        self._call("write", path, lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def commit_bytes(self, path, data):
        key, data = self._key(path), bytes(data)
        _refuse_secrets(path, data)

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
            found = []
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


def _make_s3_client(endpoint: str | None):
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


def _credentials_error(scheme: str, bucket_or_path: str) -> StoreError:
    return StoreError(f"store URI must not contain credentials: {scheme}://{bucket_or_path}...; "
                      "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead")


def _s3_endpoint(endpoint: str | None) -> str | None:
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "@" in urlsplit(endpoint).netloc:
        raise StoreError("S3 endpoint must not contain credentials; "
                         "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead")
    return endpoint or None


def _open_local(uri: str, directory: str, check: bool) -> LocalStore:
    directory = os.path.abspath(os.path.expanduser(directory))
    if check:
        _prepare_local(directory)
    return LocalStore(uri, directory)


def _prepare_local(directory: str) -> None:
    """Create the store folder on first use; refuse files, unwritable folders (creating nothing)."""
    if os.path.exists(directory):
        if not os.path.isdir(directory):
            raise StoreError(f"store path {directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(f"store folder {directory} is not writable")
        return
    parent = os.path.dirname(directory)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise StoreError(f"cannot create store folder {directory}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create store folder {directory}: {parent} is not writable")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create store folder {directory}: {exc.strerror}") from None


def open_store(uri: str, endpoint: str | None = None, check: bool = True) -> Store:
    """Open the store at `uri`; with `check`, prove it is reachable and writable or raise StoreError.

    `uri`: a local folder, file:///abs/path or s3://bucket/prefix. The S3 endpoint is `endpoint`,
    else env AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS. A failed check writes nothing;
    a missing local folder is created (first run) when its parent is writable.
    """
    uri = str(uri)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if len(scheme) <= 1:  # a plain path (or a Windows drive letter)
        return _open_local(uri, uri, check)
    if "@" in parts.netloc or any(_SECRET_QUERY.search(k) for k, _ in parse_qsl(parts.query)):
        host = parts.netloc.rsplit("@", 1)[-1]
        raise _credentials_error(scheme, host)
    if parts.query:
        raise StoreError(f"store URI {scheme}://{parts.netloc}{parts.path} must not have query "
                         "parameters: pass endpoint= or set AWS_ENDPOINT_URL")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"file URI must name a local path (file:///abs/path): {uri}")
        return _open_local(uri, parts.path, check)
    if scheme != "s3":
        raise StoreError(f"unsupported store URI scheme '{scheme}': use a folder or s3://bucket/prefix")
    if not parts.netloc:
        raise StoreError(f"S3 store URI needs a bucket: s3://bucket/prefix (got {uri})")
    store = S3Store(uri, parts.netloc, _clean(parts.path.lstrip("/"), allow_empty=True),
                    _s3_endpoint(endpoint))
    if check:
        store.check()
    return store


# --- paths (keys, not counters: every path derives from a content hash) ---------------------------
def result_path(key: str) -> str:
    return f"results/{key}.parquet"


def curve_path(key: str) -> str:
    return f"curves/{key}.parquet"


def base_model_path(key: str) -> str:
    return f"bases/{key}/model.pt"


def checkpoint_prefix(key: str) -> str:
    return f"trials/{key}/ckpt"


def progress_path(key: str) -> str:
    return f"trials/{key}/progress.json"


def failures_prefix(key: str) -> str:
    return f"trials/{key}/failures"


def attempts_prefix(key: str) -> str:
    return f"trials/{key}/attempts"


def dataset_prefix(name: str, content_hash: str) -> str:
    return f"datasets/{name}/{content_hash}"


def sweep_prefix(name: str) -> str:
    return f"sweeps/{name}"
