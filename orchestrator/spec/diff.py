"""`plan SPEC --diff`: what a plan will train against what a store already holds, before any training.

Pure: the CLI reads the committed rows; this compares them with the plan. A planned key with a
committed row exists (it trains nothing); a planned key without one is new. A new trial is matched
to the stored row of the same sweep and name, if any, and the settings fields that differ are named,
so that a user who edits one field sees exactly which networks it changes. Stored rows of the sweep
that the plan does not make are left alone (never deleted, still found by their keys); among them,
rows of another protocol or another factory fingerprint are stale: the code that made them is gone.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional

from orchestrator.spec.plan import Plan, PlannedTrial
from sweepcore.settings import PROTOCOL_VERSION, UNHASHED

# Fields that say nothing about the network (keys, provenance): never reported as a change.
NOT_A_CHANGE = (*UNHASHED, "base_key")


@dataclass(frozen=True)
class StoredRow:
    """What the diff needs of one committed row."""

    key: str
    sweep: str
    name: str
    protocol: int
    settings: Optional[dict]  # settings_json parsed; None when it does not parse

    @classmethod
    def from_row(cls, row: dict) -> "StoredRow":
        try:
            settings = json.loads(row["settings_json"])
        except (TypeError, ValueError):
            settings = None
        return cls(row["key"], row["sweep"], row["name"], int(row["protocol"]),
                   settings if isinstance(settings, dict) else None)


@dataclass(frozen=True)
class PlanDiff:
    """Planned keys split into existing and new; the sweep's other stored rows split into stale and kept."""

    sweep: str
    existing: tuple[PlannedTrial, ...]
    new: tuple[PlannedTrial, ...]
    changes: dict[str, tuple[str, tuple[str, ...]]]  # new key -> (stored key of the same name, changes)
    stale: tuple[tuple[StoredRow, str], ...]  # (row, why) for rows of another protocol or fingerprint
    left_alone: tuple[StoredRow, ...]  # the sweep's other rows of the current code: other networks

    def summary(self) -> dict[str, Any]:
        """The JSON of `plan --diff --format json`."""
        return {"sweep": self.sweep, "existing": sorted(t.key for t in self.existing),
                "new": sorted(t.key for t in self.new),
                "changes": {k: {"replaces": old, "fields": list(fields)} for k, (old, fields) in
                            sorted(self.changes.items())},
                "stale": [{"key": r.key, "name": r.name, "why": why} for r, why in self.stale],
                "left_alone": sorted(r.key for r in self.left_alone)}


def diff_plan(plan: Plan, rows: list[dict]) -> PlanDiff:
    """Compare `plan` with the committed `rows` of a store (any sweep's: keys are sweep-independent)."""
    stored = [StoredRow.from_row(r) for r in rows]
    keys = {r.key for r in stored}
    planned = plan.by_key()
    existing = tuple(t for t in plan.trials if t.key in keys)
    new = tuple(t for t in plan.trials if t.key not in keys)
    mine = [r for r in stored if r.sweep == plan.sweep and r.key not in planned]
    by_name = {r.name: r for r in mine}
    changes = {}
    for t in new:
        old = by_name.get(t.name)
        if old is not None and old.settings is not None:
            changes[t.key] = (old.key, tuple(changed_fields(old.settings, t.settings.to_dict())))
    fingerprints = {t.settings.model.factory: t.settings.model.factory_sha256 for t in plan.trials}
    stale, kept = [], []
    for r in sorted(mine, key=lambda r: (r.name, r.key)):
        why = stale_because(r, fingerprints)
        if why:
            stale.append((r, why))
        else:
            kept.append(r)
    return PlanDiff(plan.sweep, existing, new, changes, tuple(stale), tuple(kept))


def stale_because(row: StoredRow, fingerprints: dict[Optional[str], Optional[str]]) -> str:
    """Why a stored row was made by code this version no longer runs ('' when it was not)."""
    if row.protocol != PROTOCOL_VERSION:
        return f"protocol {row.protocol} (this code: {PROTOCOL_VERSION})"
    model = (row.settings or {}).get("model") or {}
    factory = model.get("factory")
    if factory is not None and factory in fingerprints and model.get("factory_sha256") != fingerprints[factory]:
        return f"factory {factory} source changed (sha256 {str(model.get('factory_sha256'))[:12]} -> " \
               f"{str(fingerprints[factory])[:12]})"
    return ""


def changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'field: old -> new' for every hashed setting that differs (nested sections dotted)."""
    out = []
    for name in sorted(set(old) | set(new)):
        if not prefix and name in NOT_A_CHANGE:
            continue
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name}: {_show(a)} -> {_show(b)}")
    return out


def _show(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value)


def change_groups(diff: PlanDiff) -> list[tuple[str, list[str]]]:
    """New trials grouped by what changed: [(changes, [names])], the largest group first; trials with
    no stored row of their name are grouped as 'no stored row of this name'."""
    groups: dict[str, list[str]] = defaultdict(list)
    for t in diff.new:
        if t.key in diff.changes:
            fields = diff.changes[t.key][1]
            groups["; ".join(fields) or "only bookkeeping fields"].append(t.name)
        else:
            groups["no stored row of this name"].append(t.name)
    return sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))
