"""Whether a study's networks were trained long enough for its claims to mean anything.

A selffer (BnB) re-trains layers n+1.. of its base with the same schedule, and BnB+ re-trains every
layer starting from the base's weights: if the bases were still learning when their schedule ended,
both simply get more training, sit above their base, and every comparison of a "+" arm or of a low n
against the base measures that extra training instead of the features. Three checks, on the
random-split family (the one claims 1, 2, 3, 5 and 6 use):

- plateau: each base's curve gains at most ``PLATEAU_GAIN`` (or no more than twice its own noise) over
  the last ``LATE_FRACTION`` of its steps (least-squares slope of the evaluations there);
- BnB(1) − base within ±``SELFFER_TOL`` (the paper: +0.2 pp), by TOST: its 90% CI inside the margin;
- BnB+(n) − base at most ``FINETUNE_TOL`` at every n present (the paper: −0.7 .. +0.6 pp): its 90% CI's
  upper bound below it.

Each check passes only on its interval, never on a mean; it *fails* when its mean is already outside
(the point estimate says extra training bought more than the margin), and is *unresolved* otherwise.
The study is *converged* only when both selffer checks pass (and no base is still rising), *under-trained*
when any check fails (claim 1 and a pass of 2 or 3 are then confounded), *not shown* when a check is unresolved or
missing (claims 5 and 6 are confounded unless converged), and *not checked* when nothing could run.

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

from orchestrator.analysis.stats import RANDOM_SPLIT, Point, contrast, family_of
from orchestrator.analysis.verdicts import EQUIVALENCE_LEVEL, FAILS, HOLDS, equivalence, upper_bounded

PLATEAU_GAIN = 0.003    # 0.3 pp over the last 20 % of training: the length-choice criterion
LATE_FRACTION = 0.2
SELFFER_TOL = 0.005     # |BnB(1) − base|: the paper's BnB(1) is +0.2 pp
FINETUNE_TOL = 0.007    # BnB+(n) − base: the paper's range is −0.7 .. +0.6 pp
CONVERGED, UNDER_TRAINED, NOT_SHOWN, NOT_CHECKED = "converged", "under-trained", "not shown", "not checked"
PASSED, FAILED, UNRESOLVED = "passed", "failed", "unresolved"  # one check's outcome (or NOT_CHECKED)


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
class Check:
    """One of the three checks: what it tests, its outcome (passed, failed, unresolved, not checked)
    and one line that says why."""

    name: str
    outcome: str
    why: str


@dataclass(frozen=True)
class Convergence:
    """The study's convergence check: the per-base plateaus, the selffer points and the verdict."""

    verdict: str                                   # converged, under-trained, not shown, or not checked
    problems: tuple[str, ...]                      # one line per failed check
    bases: tuple[BaseCurve, ...] = ()
    selffer: Optional[Point] = None                # BnB(1) − base, |x| ≤ SELFFER_TOL
    finetune: tuple[Point, ...] = field(default=())  # BnB+(n) − base, x ≤ FINETUNE_TOL
    checks: tuple[Check, ...] = ()

    @property
    def confounding(self) -> bool:
        """True when the check failed: claims that compare a low n or a '+' arm with base are confounded."""
        return self.verdict == UNDER_TRAINED

    @property
    def shown(self) -> bool:
        """True only when convergence was shown on intervals (claims 5 and 6 need it)."""
        return self.verdict == CONVERGED

    def ran(self) -> str:
        """'plateau passed, BnB(1) − base unresolved, BnB+ − base not checked': what the check did."""
        return ", ".join(f"{c.name} {c.outcome}" for c in self.checks) or "no check ran"

    def headline(self) -> str:
        """One line for the top of a report."""
        if self.verdict == CONVERGED:
            plateau = ("every random-split base on a plateau" if self.bases else "base curves not checked")
            return (f"Convergence check passed: {plateau}; the 90% CI of BnB(1) − base inside ±"
                    f"{SELFFER_TOL * 100:.1f} pp (TOST) and that of BnB+(n) − base below "
                    f"{FINETUNE_TOL * 100:.1f} pp at every n.")
        if self.verdict == NOT_CHECKED:
            return ("Convergence not checked: the study has no random-split BnB(1), BnB+ or base curves; "
                    "claims 1, 2 and 3 are judged without it, claims 5 and 6 are confounded.")
        if self.verdict == NOT_SHOWN:
            return ("Convergence not shown: " + "; ".join(f"{c.name} {c.outcome} ({c.why})" for c in self.checks)
                    + ". Claims 5 and 6 are marked confounded: without it AnB+ − BnB+ may measure how much "
                    "the extra training still buys rather than the transferred features.")
        return ("**Bases under-trained**: " + "; ".join(self.problems) + ". Claim 1, a pass of claims 2 and 3, "
                "and claims 5 and 6 are marked confounded: a selffer or a fine-tuned network gains from extra "
                "training. A longer schedule (`--set train.epochs=...`, a new key for every trial) is needed; "
                "`bench/plateau.py` measures how the bases' accuracy grows with the length, and "
                "`transfer-sweep plan` what a length costs.")


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
    problems, checks = [], []
    curves_ = base_curves(prepared, curves)
    random_bases = [b for b in curves_ if family_of(b.split) == RANDOM_SPLIT]
    rising = [b for b in random_bases if b.plateau is False]
    if rising:
        worst = max(rising, key=lambda b: b.gain)
        problems.append(f"{len(rising)} of {len(random_bases)} random-split "
                        f"bases still rising over the last {LATE_FRACTION:.0%} of training (largest gain "
                        f"{worst.gain * 100:+.2f} pp, {worst.name})")
    checks.append(Check("plateau", (FAILED if rising else PASSED) if random_bases else NOT_CHECKED,
                        f"{len(rising)} of {len(random_bases)} bases rising" if random_bases else "no base curves"))
    bnb1 = rs[(rs.treatment == "selffer") & (rs.n == 1)]
    selffer = None
    if not bnb1.empty and bnb1["pbase"].notna().any():
        selffer = Point("BnB(1) − base", contrast([(1, bnb1)], "pdelta"), "|≤|", SELFFER_TOL)
        outcome = point_outcome(selffer)
        if outcome == FAILED:
            below = (" (below: the re-initialised layers 2..8 did not reach the base in the same schedule)"
                     if selffer.diff.mean < 0 else "")
            problems.append(f"BnB(1) − base = {selffer.diff.mean * 100:+.2f} pp, outside ±{SELFFER_TOL * 100:.1f} pp"
                            + below)
        checks.append(Check("BnB(1) − base", outcome, f"{selffer.diff.text()}, TOST at ±{SELFFER_TOL * 100:.1f} pp"))
    else:
        checks.append(Check("BnB(1) − base", NOT_CHECKED, "no random-split BnB(1)"))
    plus = rs[(rs.treatment == "selffer+") & rs["pbase"].notna()]
    finetune = tuple(Point(f"BnB+({n}) − base", contrast([(1, plus[plus.n == n])], "pdelta"), "≤", FINETUNE_TOL)
                     for n in sorted(plus["n"].unique()))
    outcomes = [point_outcome(pt) for pt in finetune]
    above = [pt for pt, v in zip(finetune, outcomes) if v == FAILED]
    if above:
        largest = max(above, key=lambda pt: pt.diff.mean)
        problems.append(f"BnB+ − base above {FINETUNE_TOL * 100:.1f} pp at {len(above)} of {len(finetune)} n "
                        f"(largest {largest.label} = {largest.diff.mean * 100:+.2f} pp)")
    if finetune:
        outcome = FAILED if above else PASSED if all(v == PASSED for v in outcomes) else UNRESOLVED
        checks.append(Check("BnB+ − base", outcome, f"90% upper bounds below {FINETUNE_TOL * 100:.1f} pp at "
                            f"{outcomes.count(PASSED)} of {len(finetune)} n"))
    else:
        checks.append(Check("BnB+ − base", NOT_CHECKED, "no random-split BnB+"))
    by_name = {c.name: c.outcome for c in checks}
    if all(c.outcome == NOT_CHECKED for c in checks):
        verdict = NOT_CHECKED
    elif problems:
        verdict = UNDER_TRAINED
    elif by_name["BnB(1) − base"] == PASSED and by_name["BnB+ − base"] == PASSED:
        verdict = CONVERGED
    else:
        verdict = NOT_SHOWN
    return Convergence(verdict, tuple(problems), curves_, selffer, finetune, tuple(checks))


def point_outcome(pt: Point) -> str:
    """One convergence point on its interval: PASSED when the 90% CI is inside its margin (TOST for
    |x| ≤ tol, the upper bound for x ≤ tol), FAILED when the mean is already outside (or the 95% CI
    wholly is), else UNRESOLVED."""
    if pt.op == "|≤|":
        v, outside = equivalence(pt.diff, pt.threshold), abs(pt.diff.mean) > pt.threshold
    else:
        v, outside = upper_bounded(pt.diff, pt.threshold), pt.diff.mean > pt.threshold
    return PASSED if v == HOLDS else FAILED if v == FAILS or outside else UNRESOLVED


def _met(pt: Point) -> str:
    """The convergence table's 'met' cell: the point's outcome on its interval."""
    outcome = point_outcome(pt)
    if outcome == PASSED:
        return "yes (90% CI inside)"
    if outcome == FAILED:
        return "**no**"
    return "not shown (90% CI crosses the margin)" if pt.diff.has_ci else "not shown (no CI)"


def convergence_md(conv: Convergence) -> str:
    """Markdown: the headline, the selffer points with CIs, and the late gain of every base."""
    lines = [conv.headline(), "", f"Checks that ran: {conv.ran()}.", ""]
    points = ([conv.selffer] if conv.selffer else []) + list(conv.finetune)
    if points:
        lines += ["| check | difference, 95% CI | 90% CI | rule | met |", "|---|---|---|---|---|"]
        for pt in points:
            lines.append(f"| {pt.label} | {pt.diff.text()} | {pt.diff.text_at(EQUIVALENCE_LEVEL)} | "
                         f"{pt.rule.replace('|', chr(92) + '|')} | {_met(pt)} |")
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
