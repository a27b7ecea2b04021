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
SWEEPS = "sweeps"  # the folder of every sweep's own objects
MANIFEST = "manifest.json"


def check_key(key: str) -> str:
    """`key` if it is a valid trial key (no separators, no dot first); ValueError otherwise."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"invalid trial key {key!r}")
    return key


def result_path(key: str) -> str:
    """A trial's committed result row (one Parquet file, written create-only)."""
    return f"{RESULTS}/{check_key(key)}.parquet"


def curve_path(key: str) -> str:
    """A trial's evaluations, one row each (its learning curve)."""
    return f"curves/{check_key(key)}.parquet"


def base_weights_prefix(key: str) -> str:
    """The folder of a base's final weights (read by its dependents)."""
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


def trial_prefix(key: str) -> str:
    """The folder of one trial's working state: checkpoints, progress, heartbeat, attempts, failures."""
    return f"trials/{check_key(key)}"


def checkpoint_prefix(key: str) -> str:
    """The folder of a trial's checkpoints, one object per saved step."""
    return f"{trial_prefix(key)}/ckpt"


def checkpoint_path(key: str, step: int) -> str:
    """The checkpoint of `key` after `step` steps (zero-padded: listings sort by step)."""
    return f"{checkpoint_prefix(key)}/step-{int(step):09d}.pt"


def progress_path(key: str) -> str:
    """The step and top-1 of a trial's newest checkpoint, for `status`."""
    return f"{trial_prefix(key)}/progress.json"


def heartbeat_path(key: str) -> str:
    """A running attempt's sign of life (rewritten every few seconds)."""
    return f"{trial_prefix(key)}/heartbeat.json"


def failures_prefix(key: str) -> str:
    """One record per failed attempt: error, traceback, where its log is."""
    return f"{trial_prefix(key)}/failures"


def attempts_prefix(key: str) -> str:
    """One record per attempt: which run, from which step, warm or cold worker."""
    return f"{trial_prefix(key)}/attempts"


def dataset_folder(name: str) -> str:
    """Every prepared version of a dataset, and the pointer to the one new sweeps read."""
    return f"datasets/{name}"


def dataset_prefix(name: str, content_hash: str) -> str:
    """A prepared dataset version, named by its content hash."""
    return f"{dataset_folder(name)}/{content_hash}"


def data_pointer_path(name: str) -> str:
    """The object naming the prepared version of a dataset that new sweeps read (ImageNet)."""
    return f"{dataset_folder(name)}/LATEST"


def sweep_prefix(name: str) -> str:
    """The folder of a sweep's own objects: its spec, lease and report."""
    return f"{SWEEPS}/{name}"


def spec_path(name: str) -> str:
    """The effective spec a sweep was last run with (what `resume NAME` reads)."""
    return f"{sweep_prefix(name)}/{SPEC_FILE}"


def lease_prefix(name: str) -> str:
    """The sweep's lease generations (one create-only object per driver that took it)."""
    return f"{sweep_prefix(name)}/lease"


def rounds_path(name: str) -> str:
    """The driver's latest judgement of a sweep that replicates until decided (what `status` shows)."""
    return f"{sweep_prefix(name)}/rounds.json"


def report_prefix(name: str) -> str:
    """Where `report` writes a local store's figures and tables by default."""
    return f"{sweep_prefix(name)}/report"


def manifest_path(name: str, content_hash: str) -> str:
    """A prepared dataset version's manifest: committed last, so it marks the version complete."""
    return f"{dataset_prefix(name, content_hash)}/{MANIFEST}"


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
