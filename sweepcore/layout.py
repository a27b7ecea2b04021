"""Where everything lives inside a store. Keys, not counters: every trial path derives from the
trial's key (a content hash of its settings), every dataset path from its content hash.

    results/<key>.parquet            one committed row per trial (create-only)
    curves/<key>.parquet             its evaluation curve
    bases/<key>/model-<sha256>.pt    a base's final weights, named by their sha256; the base's result
                                     row names the one its dependents read (column weights_sha256)
    trials/<key>/ckpt/step-*.pt      checkpoints (+ .sha256 sidecars), deleted once the row is in
    trials/<key>/progress.json       the last progress a running attempt wrote (at each checkpoint)
    trials/<key>/heartbeat.json      a running attempt's heartbeat (every few seconds)
    trials/<key>/failures/*.json     one record per failed attempt
    trials/<key>/attempts/*.json     one record per started attempt
    datasets/<name>/<hash>/...       prepared data
    sweeps/<name>/spec.yaml          the spec a sweep was last run with
"""
from __future__ import annotations

import re

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_BASE_WEIGHTS_RE = re.compile(r"/model-([0-9a-f]{64})\.pt$")
RESULTS = "results"
SPEC_FILE = "spec.yaml"


def check_key(key: str) -> str:
    """`key` if it is a valid trial key (no separators, no dot first); ValueError otherwise."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"invalid trial key {key!r}")
    return key


def result_path(key: str) -> str:
    return f"{RESULTS}/{check_key(key)}.parquet"


def curve_path(key: str) -> str:
    return f"curves/{check_key(key)}.parquet"


def base_weights_prefix(key: str) -> str:
    return f"bases/{check_key(key)}"


def base_weights_path(key: str, sha256: str) -> str:
    """Where the base weights of `key` whose bytes hash to `sha256` (64 lowercase hex) live."""
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise ValueError(f"invalid sha256 {sha256!r} for the weights of base {key!r}: expected 64 lowercase hex")
    return f"{base_weights_prefix(key)}/model-{sha256}.pt"


def base_weights_sha256(path: str) -> str | None:
    """The sha256 a base weights path (from base_weights_path) is named by; None for any other path."""
    match = _BASE_WEIGHTS_RE.search(path)
    return match.group(1) if match else None


def checkpoint_prefix(key: str) -> str:
    return f"trials/{check_key(key)}/ckpt"


def checkpoint_path(key: str, step: int) -> str:
    return f"{checkpoint_prefix(key)}/step-{int(step):09d}.pt"


def progress_path(key: str) -> str:
    return f"trials/{check_key(key)}/progress.json"


def heartbeat_path(key: str) -> str:
    return f"trials/{check_key(key)}/heartbeat.json"


def failures_prefix(key: str) -> str:
    return f"trials/{check_key(key)}/failures"


def attempts_prefix(key: str) -> str:
    return f"trials/{check_key(key)}/attempts"


def dataset_prefix(name: str, content_hash: str) -> str:
    return f"datasets/{name}/{content_hash}"


def sweep_prefix(name: str) -> str:
    return f"sweeps/{name}"


def spec_path(name: str) -> str:
    return f"{sweep_prefix(name)}/{SPEC_FILE}"
