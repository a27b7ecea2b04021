"""A command's sweep: the effective spec and its store, held together once the command has opened it
(orchestrator/sources.py builds it); and the one command that finishes a sweep."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.spec.schema import SweepSpec
from sweepcore.store import Store, StoreRef


@dataclass(frozen=True)
class Sweep:
    """The spec (store made absolute, data version fixed) and the store it names, opened once by the
    command and passed down to everything it calls."""

    spec: SweepSpec
    store: Store

    @property
    def ref(self) -> StoreRef:
        """The store as a value another process can open (a Ray trial's config)."""
        return StoreRef(self.spec.store, self.spec.endpoint)


def resume_command(spec: SweepSpec) -> str:
    """The exact command that finishes this sweep (what `run`, `status` and the watchdog tell users)."""
    endpoint = f" --endpoint {spec.endpoint}" if spec.endpoint else ""
    return f"transfer-sweep resume {spec.name} --store {spec.store}{endpoint}"
