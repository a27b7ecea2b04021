"""Rounds of a sweep that replicates until decided: which units each round adds, as a pure function of
the spec (no store, no verdicts: orchestrator/analysis/stopping.py decides whether to go on).

A unit of replication is one (split, seed). Round 1 is the spec as written. Each later round adds a
new random split, modelled on the spec's first random split (its entries, with their treatments,
layers and directions) and run with every seed, when its units fit in `max_units`; otherwise a new
seed for every split, when those fit; otherwise there is no further round. A new split comes first
because with 3 or more splits the claims' CIs are over split means (orchestrator/analysis/stats.py):
a split adds a cluster, where a seed only shrinks the noise within the splits already there.

Each round's spec is an ordinary spec whose plan holds the previous round's trials under the same
keys, so a round's trials are keyed, reused and committed exactly as any sweep's: a driver stopped
between or inside rounds and started again trains nothing twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

from orchestrator.spec.plan import Plan, make_plan
from orchestrator.spec.schema import SweepSpec, first_round_units

RANDOM = re.compile(r"^random:(\d+)$")
SPLIT_ADDED, SEED_ADDED = "split", "seed"


@dataclass(frozen=True)
class Round:
    """One round: its number (1 = the spec as written), its spec, its units, and what it added to the
    round before ('' for round 1; 'split random:4' or 'seed 2')."""

    number: int
    spec: SweepSpec
    units: int
    added: str = ""


def rounds(spec: SweepSpec) -> Iterator[Round]:
    """Every round the spec's replicate section allows, first to worst case (one round without it)."""
    current = Round(1, spec, first_round_units(spec))
    yield current
    if spec.replicate is None:
        return
    budget = spec.replicate.max_units
    while True:
        grown = _grow(current.spec, budget - current.units)
        if grown is None:
            return
        grown_spec, added = grown
        current = Round(current.number + 1, grown_spec, first_round_units(grown_spec), added)
        yield current


def round_spec(spec: SweepSpec, number: int) -> Round:
    """Round `number` (1-based), or the last round when the budget ends before it."""
    last = None
    for last in rounds(spec):
        if last.number == number:
            break
    assert last is not None
    return last


def worst_case(spec: SweepSpec) -> Round:
    """The last round the budget allows: what the sweep costs if no named claim is ever decided."""
    return list(rounds(spec))[-1]


def round_reached(spec: SweepSpec, started: Iterable[str]) -> Round:
    """The latest round any of whose own trials has started (a key in `started`: committed or running),
    else round 1: where a driver that stopped goes on."""
    keys = set(started)
    reached: Optional[Round] = None
    seen: set[str] = set()
    for r in rounds(spec):
        own = set(make_plan(r.spec).by_key()) - seen
        seen |= own
        if reached is None or own & keys:
            reached = r
    assert reached is not None
    return reached


def reached_plan(spec: SweepSpec, committed: Iterable[str]) -> Plan:
    """The plan of the round a sweep's committed rows reach (the spec's own plan without `replicate`):
    what status, report and verify read."""
    return make_plan(round_reached(spec, committed).spec) if spec.replicate else make_plan(spec)


def _grow(spec: SweepSpec, room: int):
    """(the spec with one more split, or one more seed, and what was added), or None when neither fits."""
    seeds, splits = len(spec.seeds), len({e.split for e in spec.splits})
    if seeds <= room:
        template = _first_random(spec)
        used = {int(m.group(1)) for e in spec.splits if (m := RANDOM.match(e.split))}
        new = f"random:{max(used) + 1}"
        entries = tuple(e.model_copy(update={"split": new}) for e in spec.splits if e.split == template)
        return spec.model_copy(update={"splits": spec.splits + entries}), f"{SPLIT_ADDED} {new}"
    if splits <= room:
        seed = max(spec.seeds) + 1
        return spec.model_copy(update={"seeds": spec.seeds + (seed,)}), f"{SEED_ADDED} {seed}"
    return None


def _first_random(spec: SweepSpec) -> str:
    return next(e.split for e in spec.splits if RANDOM.match(e.split))
