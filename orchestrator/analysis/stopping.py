"""Replicate until decided: after each round, whether the named claims call for more units.

The claims are judged by the same code as `report` (claims.check_study); only *undecided* asks for
more units: holds, fails and excluded are answers, and confounded or not identified are not cured by
more replicates of the same design (an under-trained study, or an arm the spec does not run). The
round's units and what the next round would add come from orchestrator/spec/replicate.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from orchestrator.analysis.claims import UNDECIDED, Claim


@dataclass(frozen=True)
class Decision:
    """After a round: go on or stop, the one line that says why, and the named claims as judged."""

    go_on: bool
    why: str
    claims: tuple[Claim, ...]

    def record(self, round_number: int, units: int, max_units: int, history: Sequence[str]) -> dict:
        """The rounds record the driver writes for `status` (sweepcore/record_schema.RoundsRecord)."""
        return {"round": round_number, "units": units, "max_units": max_units, "go_on": self.go_on,
                "why": self.why, "history": list(history),
                "claims": [{"id": c.id, "verdict": c.verdict, "test": c.test, "deciding": claim_ci(c),
                            "low": _finite(c.ci_low), "high": _finite(c.ci_high)} for c in self.claims]}


def decide(claims: Sequence[Claim], named: Sequence[int], round_number: int, units: int,
           next_added: Optional[str], next_units: Optional[int]) -> Decision:
    """Go on while a named claim is undecided and the budget holds a next round (`next_added`: what it
    would add, e.g. 'split random:4'; None when max_units is reached)."""
    judged = tuple(c for c in claims if c.id in set(named))
    open_claims = [c for c in judged if c.verdict == UNDECIDED]
    states = "; ".join(f"claim {c.id} {c.verdict}: {claim_ci(c)}" for c in judged)
    head = f"round {round_number} ({units} units): {states}"
    if not open_claims:
        return Decision(False, f"{head}: every named claim is decided, stopping", judged)
    which = ", ".join(str(c.id) for c in open_claims)
    if next_added is None:
        return Decision(False, f"{head}: claim {which} still undecided, but max_units is reached "
                               f"({units} units): stopping", judged)
    return Decision(True, f"{head}: claim {which} undecided, so round {round_number + 1} adds {next_added} "
                          f"({next_units} units)", judged)


def claim_ci(claim: Claim) -> str:
    """'BnB curvature over n = 2..7 +0.0010 [-0.0001, +0.0020] (k=4 splits, clustered)', or why none."""
    if claim.deciding is None:
        return "no deciding point"
    return f"{claim.deciding.label} {claim.deciding.diff.text()}"


def _finite(x: float) -> Optional[float]:
    return x if x == x and abs(x) != float("inf") else None
