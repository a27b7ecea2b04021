"""Whether a spec read back from the store is the one the user submitted.

A store is shared: anyone who can write the bucket (or the folder) can rewrite
sweeps/<name>/spec.yaml. So `run` and `submit` keep the full sha256 of the spec they submitted on the
user's side, where a store writer cannot reach it: a local record (one small JSON file per store and
sweep under $TRANSFER_SWEEP_STATE, default ~/.local/state/transfer-sweep) and, for a Ray Job, the
job's entrypoint and metadata. Every command that acts on a stored spec compares it with that digest;
a mismatch is refused with the fields that changed. The endpoint is never part of the comparison: it
is never stored, always the caller's (sources.stored_spec).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from orchestrator.errors import UsageError
from orchestrator.spec.schema import SweepSpec
from sweepcore.terminal import for_terminal

STATE_ENV = "TRANSFER_SWEEP_STATE"
RECORD_DIR = "specs"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_FIELDS_SHOWN = 6  # changed fields a refusal names; the rest are counted
MAX_VALUE_SHOWN = 60  # characters of one value a refusal shows
MAX_RECORD_BYTES = 1 << 20  # a local record holds one spec: anything larger is not ours

LATER_SPEC_FIELDS = ("mlflow", "images", "replicate")
# model fields added later, with the value that means "not used": left out of digests at that value
LATER_MODEL_FIELDS = {"factory": None, "blocks": None, "cut_points": None, "frozen_bn": "frozen",
                      "factory_sha256": None}
# fields whose value selects code that runs, a host that is contacted or a path that is read: shown
# whenever a stored spec is trusted without a digest to compare it with
CODE_HOST_PATH_FIELDS = ("model.factory", "mlflow.tracking_uri", "mlflow.experiment", "images.src", "store")


def canonical_fields(spec: SweepSpec, *, endpoint: bool = True) -> dict[str, Any]:
    """The spec as JSON-able fields, without fields added later while they are unset (so digests of
    specs written before them stay put) and, with endpoint=False, without the endpoint."""
    unset_later: dict = {name: True for name in LATER_SPEC_FIELDS if getattr(spec, name) is None}
    unset_model = {name for name, unused in LATER_MODEL_FIELDS.items() if getattr(spec.model, name) == unused}
    if unset_model:
        unset_later["model"] = unset_model
    if not endpoint:
        unset_later["endpoint"] = True
    return spec.model_dump(mode="json", exclude=unset_later)


def _sha256(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def spec_sha256(spec: SweepSpec) -> str:
    """The full sha256 (64 hex) of what a spec runs: every field but the endpoint, which is the
    caller's and never stored. What every command verifies a stored spec against."""
    return _sha256(canonical_fields(spec, endpoint=False))


def spec_id(spec: SweepSpec) -> str:
    """A short name (10 hex) for the effective spec, endpoint included: what Ray Job ids are made of.
    An id, not an integrity check (40 bits): spec_sha256 is the check."""
    return _sha256(canonical_fields(spec))[:10]


# --- the local record ------------------------------------------------------------------------------
def state_dir() -> Path:
    """Where this user's records live: $TRANSFER_SWEEP_STATE, else $XDG_STATE_HOME/transfer-sweep,
    else ~/.local/state/transfer-sweep."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "transfer-sweep"


def record_path(store_uri: str, sweep: str) -> Path:
    """The local record of sweep `sweep` in the store at `store_uri` (an absolute URI)."""
    name = hashlib.sha256(f"{store_uri}\n{sweep}".encode()).hexdigest()[:32]
    return state_dir() / RECORD_DIR / f"{name}.json"


def remember(spec: SweepSpec) -> Path:
    """Record, on this machine, the spec just submitted for sweep `spec.name` in `spec.store`
    (atomically, readable by this user only). The last one submitted is the user's word."""
    path = record_path(spec.store, spec.name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"sweep": spec.name, "store": spec.store, "sha256": spec_sha256(spec),
                       "spec": canonical_fields(spec, endpoint=False)}, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Submitted:
    """What the user submitted for a sweep: its sha256, and its fields where a local record has them."""

    sha256: str
    where: str  # where the digest came from, for messages
    fields: Optional[dict[str, Any]] = None


def recorded(store_uri: str, sweep: str) -> Optional[Submitted]:
    """This machine's record of what was submitted for `sweep` in `store_uri`, or None. A record that is
    not one (damaged, another sweep's) is a UsageError naming its file: it cannot vouch for anything."""
    path = record_path(store_uri, sweep)
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise UsageError(f"{path}: the local record of sweep {sweep} is larger than "
                             f"{MAX_RECORD_BYTES} bytes: not a record; remove it and give the spec file")
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: the local record of sweep {sweep} is unreadable ({type(exc).__name__}); "
                         "remove it and give the spec file") from None
    if (not isinstance(raw, dict) or raw.get("sweep") != sweep or raw.get("store") != store_uri
            or not isinstance(raw.get("sha256"), str) or not SHA256_HEX.fullmatch(raw["sha256"])
            or not isinstance(raw.get("spec"), dict)):
        raise UsageError(f"{path}: not the local record of sweep {sweep} in {store_uri}; remove it and give "
                         "the spec file")
    return Submitted(raw["sha256"], f"the local record {path}", raw["spec"])


def submitted_digest(value: str) -> Submitted:
    """A digest given on the command line (`resume --spec-digest`, what `submit` puts in the job)."""
    if not SHA256_HEX.fullmatch(value):
        raise UsageError(f"--spec-digest {for_terminal(value, MAX_VALUE_SHOWN)}: expected the spec's full sha256 "
                         "(64 lowercase hex digits, what `submit` puts in the job)")
    return Submitted(value, "the digest the job was submitted with")


# --- verification ----------------------------------------------------------------------------------
def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def field_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """'field: old -> new' for every field that differs (dotted names, values shortened and escaped)."""
    old, new = _flat(before), _flat(after)
    shown = lambda v: for_terminal(json.dumps(v), MAX_VALUE_SHOWN) if v is not None else "(unset)"  # noqa: E731
    return [f"{name}: {shown(old.get(name))} -> {shown(new.get(name))}"
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]


def verify(spec: SweepSpec, submitted: Submitted, where: str) -> None:
    """Refuse (UsageError, one line) a stored `spec` that is not what was submitted."""
    actual = spec_sha256(spec)
    if actual == submitted.sha256:
        return
    if submitted.fields is not None:
        changes = field_diff(submitted.fields, canonical_fields(spec, endpoint=False))
        more = f"; and {len(changes) - MAX_FIELDS_SHOWN} more" if len(changes) > MAX_FIELDS_SHOWN else ""
        what = "; ".join(changes[:MAX_FIELDS_SHOWN]) + more if changes else "no field, but its digest"
    else:
        what = f"its sha256 is {actual[:16]}..., not {submitted.sha256[:16]}..."
    raise UsageError(f"{where}: the stored spec of sweep {spec.name} is not the one submitted ({submitted.where}); "
                     f"changed: {what}; refusing it: give your spec file (`transfer-sweep resume SPEC.yaml`)")


def trusted_fields_line(spec: SweepSpec) -> str:
    """What a spec trusted without a digest selects (code, hosts, paths), for the user to read."""
    flat = _flat(canonical_fields(spec, endpoint=False))
    parts = [f"{name}={for_terminal(json.dumps(flat[name]), MAX_VALUE_SHOWN)}"
             for name in CODE_HOST_PATH_FIELDS if flat.get(name) is not None]
    return "trusting the stored spec of sweep " + spec.name + " (no digest to check it against): " + ", ".join(parts)
