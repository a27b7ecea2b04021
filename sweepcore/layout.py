"""Where everything lives inside a store. Keys, not counters: every trial path derives from the
trial's key (a content hash of its settings), every dataset path from its content hash.

    results/<key>.parquet            one committed row per trial (create-only)
    curves/<key>.parquet             its evaluation curve
    bases/<key>/model-<sha256>.safetensors
                                     a base's final weights, named by their sha256; the base's result
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
from pathlib import Path

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_BASE_WEIGHTS_RE = re.compile(r"/model-([0-9a-f]{64})\.safetensors$")
RESULTS = "results"
SPEC_FILE = "spec.yaml"


def check_key(key: str) -> str:
    """`key` if it is a valid trial key (no separators, no dot first); ValueError otherwise."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
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
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise ValueError(f"invalid sha256 {sha256!r} for the weights of base {key!r}: expected 64 lowercase hex")
    return f"{base_weights_prefix(key)}/model-{sha256}.safetensors"


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


def data_pointer_path(name: str) -> str:
    """The object naming the prepared version of a dataset that new sweeps read (ImageNet)."""
    return f"datasets/{name}/LATEST"


def sweep_prefix(name: str) -> str:
    return f"sweeps/{name}"


def spec_path(name: str) -> str:
    return f"{sweep_prefix(name)}/{SPEC_FILE}"


# --- names read back from the store --------------------------------------------------------------
# Everything read back from a store is untrusted (a shared bucket has other writers): a name from a
# pointer or a manifest passes one of these before it becomes part of a store path or a local path.
_HASH_RE = re.compile(r"[0-9a-f]{16,64}")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
MAX_NAME = 200  # characters in a relative name read back from the store


def shown(value: object, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters: an error message stays one short line whatever it quotes."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_hash(value: object) -> str:
    """`value` if it is a dataset content hash (16 to 64 lowercase hex digits); ValueError otherwise."""
    if not isinstance(value, str) or not _HASH_RE.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a dataset hash (16 to 64 lowercase hex digits)")
    return value


def check_sha256(value: object) -> str:
    """`value` if it is a sha256 hex digest (64 lowercase hex digits); ValueError otherwise."""
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a sha256 (64 lowercase hex digits)")
    return value


def check_relative_name(value: object) -> str:
    """`value` if it is a safe relative name: segments of [A-Za-z0-9._-] (none starting with a dot, so
    no '.' or '..') joined by single '/', no leading or trailing '/', at most MAX_NAME characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or \
            not all(_SEGMENT_RE.fullmatch(part) for part in value.split("/")):
        raise ValueError(f"{shown(value)} is not a relative name (segments of [A-Za-z0-9._-], none starting "
                         f"with '.', joined by '/', at most {MAX_NAME} characters)")
    return value


def inside(root: Path, rel: str) -> Path:
    """root/rel for a safe relative name `rel` whose resolved path (symlinks followed) stays strictly
    below the resolved root; ValueError otherwise. The only way to turn a name from the store into a
    local path."""
    base = Path(root).resolve()
    target = (base / check_relative_name(rel)).resolve()
    if base not in target.parents:
        raise ValueError(f"{shown(rel)} leads outside {root} (to {shown(str(target))})")
    return target
