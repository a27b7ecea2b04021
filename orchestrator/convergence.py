"""Whether a study's networks were trained long enough for its claims to mean anything.

A selffer (BnB) re-trains layers n+1.. of its base with the same schedule, and BnB+ re-trains every
layer starting from the base's weights: if the bases were still learning when their schedule ended,
both simply get more training, sit above their base, and every comparison of a "+" arm or of a low n
against the base measures that extra training instead of the features. Three checks, on the
random-split family (the one claims 1, 2, 3, 5 and 6 use):

- plateau: each base's curve gains at most ``PLATEAU_GAIN`` (or no more than twice its own noise) over
  the last ``LATE_FRACTION`` of its steps (least-squares slope of the evaluations there);
- BnB(1) − base within ±``SELFFER_TOL`` (the paper: +0.2 pp);
- BnB+(n) − base at most ``FINETUNE_TOL`` at every n present (the paper: −0.7 .. +0.6 pp).

The plateau test alone is weak: a schedule that decays the learning rate to 0 flattens the end of
every curve, however short (measured: at most +0.5 pp over the last 20 % for 5- to 40-epoch bases whose
final accuracies differ by 9 pp). The selffer tests measure what extra training buys directly and are
the ones that usually fail.

All three are pure functions of a prepared results table (orchestrator/stats.pair_with_bases) and, for the
plateau, of the bases' learning curves (curve rows: key, step, top1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from orchestrator.stats import RANDOM_SPLIT, Point, contrast, family_of

PLATEAU_GAIN = 0.003    # 0.3 pp over the last 20 % of training: the length-choice criterion
LATE_FRACTION = 0.2
SELFFER_TOL = 0.005     # |BnB(1) − base|: the paper's BnB(1) is +0.2 pp
FINETUNE_TOL = 0.007    # BnB+(n) − base: the paper's range is −0.7 .. +0.6 pp
CONVERGED, UNDER_TRAINED, NOT_CHECKED = "converged", "under-trained", "not checked"


@dataclass(frozen=True)
class BaseCurve:
    """The late gain of one base's learning curve: gain ± se over its last LATE_FRACTION of steps."""

    key: str
    name: str
    split: str
    gain: float
    se: float
    evaluations: int

    @property
    def plateau(self) -> Optional[bool]:
        """True when the late gain is at most PLATEAU_GAIN or within 2 se of 0; None if unmeasured."""
        if self.gain != self.gain:
            return None
        return self.gain <= PLATEAU_GAIN or self.gain <= 2 * self.se


@dataclass(frozen=True)
class Convergence:
    """The study's convergence check: the per-base plateaus, the selffer points and the verdict."""

    verdict: str                                   # converged, under-trained, or not checked
    problems: tuple[str, ...]                      # one line per failed check
    bases: tuple[BaseCurve, ...] = ()
    selffer: Optional[Point] = None                # BnB(1) − base, |x| ≤ SELFFER_TOL
    finetune: tuple[Point, ...] = field(default=())  # BnB+(n) − base, x ≤ FINETUNE_TOL

    @property
    def confounding(self) -> bool:
        """True when the check failed: claims that compare a low n or a '+' arm with base are confounded."""
        return self.verdict == UNDER_TRAINED

    def headline(self) -> str:
        """One line for the top of a report."""
        if self.verdict == CONVERGED:
            return (f"Convergence check passed: every random-split base on a plateau, |BnB(1) − base| ≤ "
                    f"{SELFFER_TOL * 100:.1f} pp, BnB+(n) − base ≤ {FINETUNE_TOL * 100:.1f} pp at every n.")
        if self.verdict == NOT_CHECKED:
            return ("Convergence not checked: the study has no random-split BnB(1), BnB+ or base curves; "
                    "claims 1, 2 and 3 are judged without it.")
        return ("**Bases under-trained**: " + "; ".join(self.problems) + ". Claims 1, 2 and 3 are marked "
                "confounded: a selffer or a fine-tuned network gains from extra training. A longer schedule "
                "(`--set train.epochs=...`, a new key for every trial) is needed; `bench/plateau.py` measures how "
                "the bases' accuracy grows with the length, and `transfer-sweep plan` what a length costs.")


def late_gain(curve: pd.DataFrame, fraction: float = LATE_FRACTION) -> tuple[float, float, int]:
    """(gain, se, evaluations) of top-1 over the last `fraction` of a curve's steps: the least-squares
    slope of the evaluations there times the window's length. nan when fewer than 3 evaluations."""
    if curve.empty:
        return math.nan, math.nan, 0
    last = float(curve["step"].max())
    late = curve[curve["step"] >= (1.0 - fraction) * last]
    x, y = late["step"].to_numpy(float), late["top1"].to_numpy(float)
    if len(x) < 3 or np.ptp(x) == 0:
        return math.nan, math.nan, len(x)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    slope_se = math.sqrt((resid ** 2).sum() / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    span = fraction * last
    return float(slope * span), float(slope_se * span), len(x)


def base_curves(prepared: pd.DataFrame, curves: Optional[pd.DataFrame]) -> tuple[BaseCurve, ...]:
    """The late gain of every base in the table that has a curve."""
    if curves is None or curves.empty or "key" not in prepared.columns:
        return ()
    out = []
    bases = prepared[prepared.treatment == "base"]
    by_key = dict(tuple(curves.groupby("key")))
    for _, row in bases.iterrows():
        curve = by_key.get(row["key"])
        if curve is None:
            continue
        gain, se, count = late_gain(curve)
        out.append(BaseCurve(str(row["key"]), str(row.get("name", row["key"])), str(row["split"]), gain, se, count))
    return tuple(out)


def check_convergence(prepared: pd.DataFrame, curves: Optional[pd.DataFrame] = None) -> Convergence:
    """The convergence check of one dataset's prepared results (see the module docstring)."""
    rs = prepared[prepared.family == RANDOM_SPLIT]
    problems = []
    curves_ = base_curves(prepared, curves)
    random_bases = [b for b in curves_ if family_of(b.split) == RANDOM_SPLIT]
    rising = [b for b in random_bases if b.plateau is False]
    if rising:
        worst = max(rising, key=lambda b: b.gain)
        problems.append(f"{len(rising)} of {len(random_bases)} random-split "
                        f"bases still rising over the last {LATE_FRACTION:.0%} of training (largest gain "
                        f"{worst.gain * 100:+.2f} pp, {worst.name})")
    bnb1 = rs[(rs.treatment == "selffer") & (rs.n == 1)]
    selffer = None
    if not bnb1.empty and bnb1["pbase"].notna().any():
        selffer = Point("BnB(1) − base", contrast([(1, bnb1)], "pdelta"), "|≤|", SELFFER_TOL)
        if abs(selffer.diff.mean) > SELFFER_TOL:
            below = (" (below: the re-initialised layers 2..8 did not reach the base in the same schedule)"
                     if selffer.diff.mean < 0 else "")
            problems.append(f"BnB(1) − base = {selffer.diff.mean * 100:+.2f} pp, outside ±{SELFFER_TOL * 100:.1f} pp"
                            + below)
    plus = rs[(rs.treatment == "selffer+") & rs["pbase"].notna()]
    finetune = tuple(Point(f"BnB+({n}) − base", contrast([(1, plus[plus.n == n])], "pdelta"), "≤", FINETUNE_TOL)
                     for n in sorted(plus["n"].unique()))
    above = [pt for pt in finetune if pt.diff.mean > FINETUNE_TOL]
    if above:
        largest = max(above, key=lambda pt: pt.diff.mean)
        problems.append(f"BnB+ − base above {FINETUNE_TOL * 100:.1f} pp at {len(above)} of {len(finetune)} n "
                        f"(largest {largest.label} = {largest.diff.mean * 100:+.2f} pp)")
    if selffer is None and not finetune and not random_bases:
        return Convergence(NOT_CHECKED, (), curves_)
    return Convergence(UNDER_TRAINED if problems else CONVERGED, tuple(problems), curves_, selffer, finetune)


def convergence_md(conv: Convergence) -> str:
    """Markdown: the headline, the selffer points with CIs, and the late gain of every base."""
    lines = [conv.headline(), ""]
    points = ([conv.selffer] if conv.selffer else []) + list(conv.finetune)
    if points:
        lines += ["| check | difference, 95% CI | rule | met |", "|---|---|---|---|"]
        for pt in points:
            met = pt.margin.mean >= 0
            lines.append(f"| {pt.label} | {pt.diff.text()} | {pt.rule.replace('|', chr(92) + '|')} | "
                         f"{'yes' if met else '**no**'} |")
        lines.append("")
    if conv.bases:
        lines += [f"Late gain of each base (least-squares slope of its evaluations over the last "
                  f"{LATE_FRACTION:.0%} of steps × that span; plateau: gain ≤ {PLATEAU_GAIN * 100:.1f} pp or "
                  "within 2 se of 0):", "", "| base | late gain | se | evaluations | plateau |",
                  "|---|---|---|---|---|"]
        for b in sorted(conv.bases, key=lambda b: b.name):
            flag = "—" if b.plateau is None else ("yes" if b.plateau else "**no**")
            lines.append(f"| {b.name} | {b.gain * 100:+.2f} pp | {b.se * 100:.2f} pp | {b.evaluations} | {flag} |")
        lines.append("")
    return "\n".join(lines)
