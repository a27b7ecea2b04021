"""Where everything lives inside a store. Keys, not counters: every trial path derives from the
trial's key (a content hash of its settings), every dataset path from its content hash.

    results/<key>.parquet            one committed row per trial (create-only)
    curves/<key>.parquet             its evaluation curve
    bases/<key>/model.pt             a base's final weights (read by the trials that copy it)
    trials/<key>/ckpt/step-*.pt      checkpoints (+ .sha256 sidecars), deleted once the row is in
    trials/<key>/progress.json       the last progress a running attempt wrote
    trials/<key>/failures/*.json     one record per failed attempt
    trials/<key>/attempts/*.json     one record per started attempt
    datasets/<name>/<hash>/...       prepared data
    sweeps/<name>/spec.yaml          the spec a sweep was last run with
"""
from __future__ import annotations

import re

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
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


def base_model_path(key: str) -> str:
    return f"bases/{check_key(key)}/model.pt"


def checkpoint_prefix(key: str) -> str:
    return f"trials/{check_key(key)}/ckpt"


def checkpoint_path(key: str, step: int) -> str:
    return f"{checkpoint_prefix(key)}/step-{int(step):09d}.pt"


def progress_path(key: str) -> str:
    return f"trials/{check_key(key)}/progress.json"


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
