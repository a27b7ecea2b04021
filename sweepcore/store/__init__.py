"""The store: one root URI (local folder or s3://bucket/prefix) holding datasets, checkpoints and results.

`open_store(uri)` picks the backend (local.py or s3.py, both behind base.Store's byte API) and applies
the URI and credential policy: secrets are never accepted in a URI or an endpoint, only from the
standard AWS chain. Where things live inside a store is sweepcore/layout.py; what the objects mean is
sweepcore/records.py. Layout and row schema for users: docs/contracts.md.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from sweepcore.store.base import Store, StoreError, clean_path, redact, retry_seconds
from sweepcore.store.local import LocalStore, open_local
from sweepcore.store.s3 import S3Store

__all__ = ["LocalStore", "S3Store", "Store", "StoreError", "StoreRef", "absolute_uri", "check_store_uri", "open_store",
           "redact", "retry_seconds"]

_SECRET_QUERY = re.compile(r"(key|secret|token|password|credential)", re.IGNORECASE)


def absolute_uri(uri: str) -> str:
    """A plain local path made absolute (Ray workers do not share the driver's working directory);
    URIs with a scheme are returned as given."""
    return uri if "://" in uri else os.path.abspath(os.path.expanduser(uri))


def _credentials_error(scheme: str, bucket_or_path: str) -> StoreError:
    return StoreError(f"store URI must not contain credentials: {scheme}://{bucket_or_path}...; "
                      "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead")


def _s3_endpoint(endpoint: str | None) -> str | None:
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "@" in urlsplit(endpoint).netloc:
        raise StoreError("S3 endpoint must not contain credentials; "
                         "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead")
    return endpoint or None


def check_store_uri(uri: str) -> str:
    """Apply the URI policy without opening anything; return the scheme ('' for a plain path, 'file' or
    's3') or raise StoreError naming what is wrong (credentials, query parameters, scheme, bucket)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if len(scheme) <= 1:  # a plain path (or a Windows drive letter)
        return ""
    if "@" in parts.netloc or any(_SECRET_QUERY.search(k) for k, _ in parse_qsl(parts.query)):
        host = parts.netloc.rsplit("@", 1)[-1]
        raise _credentials_error(scheme, host)
    if parts.query:
        raise StoreError(f"store URI {scheme}://{parts.netloc}{parts.path} must not have query "
                         "parameters: pass endpoint= or set AWS_ENDPOINT_URL")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"file URI must name a local path (file:///abs/path): {uri}")
        return scheme
    if scheme != "s3":
        raise StoreError(f"unsupported store URI scheme '{scheme}': use a folder or s3://bucket/prefix")
    if not parts.netloc:
        raise StoreError(f"S3 store URI needs a bucket: s3://bucket/prefix (got {uri})")
    return scheme


def open_store(uri: str, endpoint: str | None = None, check: bool = True) -> Store:
    """Open the store at `uri`; with `check`, prove it is reachable and writable or raise StoreError.

    `uri`: a local folder, file:///abs/path or s3://bucket/prefix. The S3 endpoint is `endpoint`,
    else env AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS. A failed check writes nothing;
    a missing local folder is created (first run) when its parent is writable.
    """
    uri = str(uri)
    parts = urlsplit(uri)
    scheme = check_store_uri(uri)
    if scheme == "":
        return open_local(uri, uri, check)
    if scheme == "file":
        return open_local(uri, parts.path, check)
    store = S3Store(uri, parts.netloc, clean_path(parts.path.lstrip("/"), allow_empty=True),
                    _s3_endpoint(endpoint))
    if check:
        store.check()
    return store


@dataclass(frozen=True)
class StoreRef:
    """Where a store is, as a value that crosses into another process (a Ray trial's config): its
    URI and S3 endpoint, never a client or a credential. A command opens its store once (with the
    check); a process it ships work to opens the reference again, unchecked, on its own side."""

    uri: str
    endpoint: str | None = None

    def open(self, check: bool = False) -> Store:
        """The store this names (see open_store)."""
        return open_store(self.uri, self.endpoint, check)
