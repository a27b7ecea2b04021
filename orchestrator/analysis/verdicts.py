"""The verdict vocabulary and the decision rules behind it: what a 95% interval can and cannot say.

Every claim of the paper is one of three kinds of statement about a difference x (a contrast over
units of replication, orchestrator/stats.contrast):

- directional, "x > 0" (the dip's curvature, the boost): *holds* when the 95% CI lies above 0, *fails*
  when it lies below 0, *excluded* when it lies below the paper's effect scaled to this study's error
  rate (the paper's effect is ruled out, though a smaller one may remain), else *undecided* (the CI
  covers both 0 and the scaled effect);
- equivalence, "|x| ≤ margin" (low layers are general): two one-sided tests at 5% each (TOST), i.e.
  *holds* when the 90% CI lies inside ±margin; *fails* when the 95% CI lies wholly outside; else
  *undecided*. A mean inside the margin is not evidence of equivalence;
- non-inferiority, "x ≥ −margin" (fine-tuning removes the dip): *holds* when the 90% CI's lower bound
  is above −margin (one-sided 5%); *fails* when the 95% CI lies below −margin; else *undecided*.

Two verdicts come from outside the interval: *confounded* (a named check failed, so the interval
measures something else: under-training, orchestrator/analysis/convergence.py) and *not identified* (the study
lacks the arms, or its replication gives no interval: one unit is not a sample).
"""
from __future__ import annotations

import math

from orchestrator.analysis.stats import Interval

HOLDS, FAILS, EXCLUDED, UNDECIDED = "holds", "fails", "excluded", "undecided"
CONFOUNDED, NOT_IDENTIFIED = "confounded", "not identified"
VERDICTS = (HOLDS, FAILS, EXCLUDED, UNDECIDED, CONFOUNDED, NOT_IDENTIFIED)
MEANING = {
    HOLDS: "the interval shows the claim",
    FAILS: "the interval shows the opposite",
    EXCLUDED: "the interval rules out the paper's effect at its scaled size (a smaller one may remain)",
    UNDECIDED: "the interval covers both no effect and the paper's scaled effect (or the margin's edge)",
    CONFOUNDED: "a named check failed, so the interval measures something else",
    NOT_IDENTIFIED: "the study lacks the arms or the replication that would decide it",
}
EQUIVALENCE_LEVEL = 0.90  # TOST at 5% per side: the 90% interval inside the margin
# Below this a bound is 0: a contrast of exact values (no spread between units) lands within rounding
# of 0 (1e-18), and a sign decided by rounding is no evidence.
ZERO = 1e-12


def directional(interval: Interval, scaled_effect: float) -> str:
    """The verdict on 'x > 0' from the 95% CI of x and the paper's effect scaled to this study."""
    if not interval.has_ci:
        return NOT_IDENTIFIED
    if interval.low > ZERO:
        return HOLDS
    if interval.high < -ZERO:
        return FAILS
    if scaled_effect == scaled_effect and interval.high < scaled_effect:
        return EXCLUDED
    return UNDECIDED


def equivalence(interval: Interval, margin: float) -> str:
    """The TOST verdict on '|x| ≤ margin': holds when the 90% CI is inside ±margin."""
    if not interval.has_ci or not margin == margin:
        return NOT_IDENTIFIED
    low90, high90 = interval.bounds(EQUIVALENCE_LEVEL)
    if -margin < low90 and high90 < margin:
        return HOLDS
    if interval.low > margin or interval.high < -margin:
        return FAILS
    return UNDECIDED


def non_inferiority(interval: Interval, margin: float) -> str:
    """The one-sided verdict on 'x ≥ −margin': holds when the 90% CI's lower bound is above −margin."""
    if not interval.has_ci or not margin == margin:
        return NOT_IDENTIFIED
    if interval.bounds(EQUIVALENCE_LEVEL)[0] > -margin:
        return HOLDS
    if interval.high < -margin:
        return FAILS
    return UNDECIDED


def upper_bounded(interval: Interval, bound: float) -> str:
    """The one-sided verdict on 'x ≤ bound' (the convergence check's BnB+ − base): holds when the 90%
    CI's upper bound is below it, fails when the mean is above it (the point estimate already says the
    extra training bought more than the bound), else undecided."""
    if not interval.has_ci:
        return NOT_IDENTIFIED if interval.mean != interval.mean or interval.mean <= bound else FAILS
    if interval.bounds(EQUIVALENCE_LEVEL)[1] < bound:
        return HOLDS
    return FAILS if interval.mean > bound else UNDECIDED


def combine(verdicts: list[str]) -> str:
    """One verdict from the verdicts of a claim's points ('at every n'): fails if any point fails; holds
    if every point holds; not identified if none has an interval; excluded if every decided point is
    excluded or holds and one is excluded; else undecided."""
    if not verdicts or all(v == NOT_IDENTIFIED for v in verdicts):
        return NOT_IDENTIFIED
    if FAILS in verdicts:
        return FAILS
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if EXCLUDED in verdicts:
        return EXCLUDED
    return UNDECIDED


def scaled(effect: float, base_accuracy: float, paper_base_error: float) -> float:
    """The paper's effect scaled from its error rate to a study's: effect × (1 − base) / paper error."""
    if base_accuracy != base_accuracy or paper_base_error <= 0:
        return math.nan
    return effect * (1.0 - base_accuracy) / paper_base_error
