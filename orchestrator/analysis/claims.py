"""The paper's eight claims, as pure functions of a results table (prepared by orchestrator/analysis/stats.py).

Verdicts (orchestrator/analysis/verdicts.py): holds, fails, excluded, undecided, confounded, not identified.
Pre-registered primary tests, one per claim:

1. low layers are general: TOST of AnB(n), BnB(n) − base at n = 1, 2 within ±``TOL_SIGMAS × noise sd``;
2. the co-adaptation dip: the trend-orthogonal curvature contrast of BnB over n ≥ 2 (BnB(1), which
   retrains 7 of 8 layers, is the noisiest arm and is left out) against 0 and the paper's curvature
   scaled to this study; the argmin of the means is a description, not a test (choosing the n to test
   from the same means inflates the false-positive rate);
3. fine-tuning removes the dip: non-inferiority of BnB+(n) − base at −tol at every n;
4, 7, 8 (specificity, task distance, random weights: large effects): the rule on the means, *holds*
   only where the deciding margin's CI is on the rule's side, *undecided* where it crosses 0;
5, 6 (the lingering boost): AnB+(n) − BnB+(n) > 0 at every n in the same target half, against the
   paper's boost scaled here; *confounded* unless the convergence check shows convergence, because an
   under-trained AnB+ must fine-tune away A-specific features in the same short extra schedule as BnB+.

Claim 1, and a pass of claims 2 and 3, are confounded when the convergence check fails
(orchestrator/analysis/convergence.py).
Every comparison uses each trial's accuracy relative to the base of its own target task and seed
(stats.pair_with_bases); every Point carries its 95% CI over units of replication (stats.contrast).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional

import numpy as np
import pandas as pd

from orchestrator.analysis.convergence import Convergence, check_convergence
from orchestrator.analysis.paper import PAPER_BASE_ERROR, PAPER_EFFECT, PAPER_REFERENCE
from orchestrator.analysis.stats import (
    NATMAN,
    RANDOM_SPLIT,
    Noise,
    Point,
    contrast,
    curvature_weights,
    deciding_point,
    detectable,
    noise_level,
    pair_with_bases,
    significance,
)
from orchestrator.analysis.verdicts import (
    CONFOUNDED,
    EQUIVALENCE_LEVEL,
    EXCLUDED,
    FAILS,
    HOLDS,
    NOT_IDENTIFIED,
    UNDECIDED,
    combine,
    directional,
    equivalence,
    non_inferiority,
    scaled,
)

NO_DATA = NOT_IDENTIFIED  # the study lacks what would decide the claim
__all__ = ["CONFOUNDED", "EXCLUDED", "FAILS", "HOLDS", "NOT_IDENTIFIED", "UNDECIDED", "Claim", "check_claims",
           "check_study", "judge"]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper checked on a sweep: its verdict (orchestrator/verdicts.VERDICTS), the test
    that gave it, and the detail that names the contrast, its CI, the scaled paper effect and the checks."""

    id: int
    title: str
    verdict: str
    detail: str
    numbers: dict
    tolerance: float
    dataset: str = ""
    points: tuple = ()                 # a Point (difference with its 95% CI, rule) per compared quantity
    deciding: Optional[Point] = None   # the point with the smallest margin to its rule
    detectable: float = math.nan       # smallest effect the deciding test finds with 80% power
    paper_effect: float = math.nan     # the paper's effect scaled to this study's base error rate
    test: str = ""                     # the primary test, e.g. 'TOST at ±0.0092'

    @property
    def ci_low(self) -> float:
        """Lower 95% bound of the deciding difference (nan without one)."""
        return self.deciding.diff.low if self.deciding else math.nan

    @property
    def ci_high(self) -> float:
        """Upper 95% bound of the deciding difference (nan without one)."""
        return self.deciding.diff.high if self.deciding else math.nan

    @property
    def k(self) -> int:
        """Replicates behind the deciding difference (pairs, or the smallest group for Welch)."""
        return self.deciding.diff.k if self.deciding else 0

    @property
    def powered(self) -> Optional[bool]:
        """Whether the study could detect the paper's (scaled) effect with 80% power; None if unknown."""
        if self.detectable != self.detectable or self.paper_effect != self.paper_effect:
            return None
        return self.detectable <= self.paper_effect

    def power_text(self) -> str:
        """'detectable ≥ +0.0040 (80% power); the paper's effect scaled here +0.0068: powered' or ''."""
        if self.detectable != self.detectable:
            return ""
        text = f"smallest detectable effect {self.detectable:+.4f} (80% power, 95% test)"
        if self.paper_effect == self.paper_effect:
            text += (f"; the paper's effect scaled to this error rate {self.paper_effect:+.4f}: "
                     + ("the study had the power to see it" if self.powered else "the study could not see it"))
        return text

    @property
    def significant(self) -> Optional[bool]:
        """Whether the deciding margin's 95% CI excludes 0; None without a CI."""
        return self.deciding.margin.excludes_zero() if self.deciding else None


# ---------------------------------------------------------------- helpers on a prepared table
def _rows(p: pd.DataFrame, treatment: str, family: str = RANDOM_SPLIT, target: Optional[str] = None):
    sel = p[(p.family == family) & (p.treatment == treatment)]
    return sel if target is None else sel[sel.target_half == target]


def _by_n(rows: pd.DataFrame, column: str = "delta") -> dict[int, float]:
    """Mean of a column per n, over rows where it is defined."""
    s = rows[rows[column].notna()].groupby("n")[column].mean()
    return {int(n): float(v) for n, v in s.items()}


def _f(x: float) -> str:
    return f"{x:+.4f}"


def _at(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    return rows[rows.n == n]


def _vs_base(rows: pd.DataFrame, label: str, op: str, threshold: float = 0.0) -> Point:
    """A treatment minus the base of its own target and seed, per replicate."""
    return Point(f"{label} − base", contrast([(1, rows)], "pdelta"), op, threshold)


def _ci_text(points: tuple, deciding: Optional[Point]) -> str:
    """The detail's tail: every point's 95% CI, the deciding point and whether its margin is significant."""
    if deciding is None:
        return ""
    return ("; 95% CIs: " + ", ".join(f"{pt.label} {pt.diff.text()}" for pt in points)
            + f"; deciding point {deciding.label} (smallest margin to its rule {deciding.rule}): margin "
            f"{deciding.margin.text(size=False)}, {significance(deciding)}")


def _claim(cid, title, verdict, detail, numbers, tol, points=(), deciding=None, paper_effect=math.nan,
           power=None, test="", note="") -> Claim:
    """A Claim with its deciding point (the smallest margin unless given) and the power of its test
    (`power`: the interval whose detectable effect is reported; the deciding point's by default);
    `note` goes after the CIs, before the power."""
    points = tuple(points)
    deciding = deciding or deciding_point(points)
    power = power if power is not None else (deciding.diff if deciding else None)
    head = f"test: {test}; " if test else ""
    claim = Claim(cid, title, verdict, head + detail + _ci_text(points, deciding),
                  {k: float(v) for k, v in numbers.items()}, float(tol), points=points, deciding=deciding,
                  detectable=detectable(power) if power is not None else math.nan, paper_effect=paper_effect,
                  test=test)
    tail = "; ".join(t for t in (note, claim.power_text() if verdict != HOLDS else "") if t)
    where = _conditional(points)
    return replace(claim, detail=claim.detail + (f"; {tail}" if tail else "") + where)


def _conditional(points) -> str:
    """'; every CI is conditional on split random:0 ...' when the intervals rest on one split."""
    splits = {pt.diff.conditional_on for pt in points if pt.diff.conditional_on}
    if not splits:
        return ""
    return (f"; every CI is conditional on split {', '.join(sorted(splits))} (its halves and test sets): "
            "replication across splits is not in it")


def _confound(claim: Claim, conv: Convergence, when: str = "failed", only=None) -> Claim:
    """The claim marked confounded when the convergence check failed (`when='failed'`) or did not show
    convergence (`when='not shown'`); `only`: the verdicts it applies to (all decided ones by default).
    The rule's outcome stays in the detail, with the checks that ran."""
    hit = conv.confounding if when == "failed" else not conv.shown
    if not hit or claim.verdict == NOT_IDENTIFIED or (only is not None and claim.verdict not in only):
        return replace(claim, detail=claim.detail + f"; convergence check: {conv.verdict} ({conv.ran()})")
    why = ("the convergence check failed (" + "; ".join(conv.problems) + ")" if conv.confounding else
           f"convergence is {conv.verdict} ({conv.ran()})")
    return replace(claim, verdict=CONFOUNDED, detail=f"the test alone gives '{claim.verdict}', but {why}: "
                                                     f"{claim.detail}")


def _scaled(p: pd.DataFrame, effect: float) -> float:
    """The paper's effect scaled from its 37.5 % error base to this study's random-split base error."""
    bases = p[(p.treatment == "base") & (p.family == RANDOM_SPLIT)]["value"]
    return scaled(effect, float(bases.mean()) if len(bases) else math.nan, PAPER_BASE_ERROR)


def _on_means(rule_met: bool, deciding: Optional[Point]) -> str:
    """Claims 4, 7, 8: the rule on the means, held to the deciding margin's CI: holds only when that CI
    is on the rule's side, fails when it is on the other, undecided when it crosses 0; without a CI
    (one natman split) the means decide, and the detail says so."""
    if deciding is None or not deciding.margin.has_ci:
        return HOLDS if rule_met else FAILS
    margin = deciding.margin
    exact = margin.low == margin.high  # no spread between units: the interval is the mean
    if rule_met:
        return HOLDS if margin.low > 0 or (exact and margin.low >= 0) else UNDECIDED
    return FAILS if margin.high < 0 or (exact and margin.high <= 0) else UNDECIDED


def _means_claim(cid, title, rule_met: bool, detail, numbers, tol, points) -> Claim:
    """Claims 4, 7, 8: the verdict of the rule on the means held to the deciding margin's CI (_on_means);
    without that CI the detail says the means decided."""
    deciding = deciding_point(points)
    note = ("no CI (one split of a family, or one unit): judged on the means"
            if deciding is not None and not deciding.margin.has_ci else "")
    return _claim(cid, title, _on_means(rule_met, deciding), detail, numbers, tol, points, deciding=deciding,
                  test=_MEANS_TEST, note=note)


def _no_data(cid, title, why, tol=0.0) -> Claim:
    return Claim(cid, title, NO_DATA, why, {}, float(tol))


def _noise_note(margins: Iterable[float], tol: float, unit: str = "") -> str:
    """Says how many margins of a strict comparison are no larger than the noise tolerance."""
    small = sum(abs(m) <= tol for m in margins)
    return f"; {small} of these margins are within noise (±{tol:.4f}{unit})" if small else \
        f"; every margin exceeds the noise tolerance {tol:.4f}{unit}"


def _relative_tol(p: pd.DataFrame, noise: Noise) -> float:
    """The tolerance in relative-drop units: tol / mean base (random-split bases, else all bases)."""
    bases = p[p.treatment == "base"]
    rs = bases[bases.family == RANDOM_SPLIT]["value"]
    level = rs.mean() if len(rs) else bases["value"].mean()
    return noise.tol / level if level == level and level > 0 else math.nan


# ---------------------------------------------------------------- the claims
def claim_general(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """1. AnB and BnB equivalent to base at n = 1, 2: TOST at ±tol at each point present (its 90% CI
    inside the margin); not identified without an interval (one unit); confounded when the convergence
    check failed."""
    title = "Low layers are general: AnB, BnB within noise of base at n = 1, 2"
    nums, points = {}, []
    for treatment, label in (("transfer", "AnB"), ("selffer", "BnB")):
        rows = _rows(p, treatment)
        by_n = _by_n(rows)
        nums.update({f"{label}({n})-base": by_n[n] for n in (1, 2) if n in by_n})
        points += [_vs_base(_at(rows, n), f"{label}({n})", "|≤|", noise.tol) for n in (1, 2) if n in by_n]
    if not nums:
        return _no_data(1, title, "needs random-split base and AnB or BnB at n = 1 or 2", noise.tol)
    outcomes = {pt.label: equivalence(pt.diff, noise.tol) for pt in points}
    verdict = combine(list(outcomes.values()))
    absent = [f"{t}({n})" for t in ("AnB", "BnB") for n in (1, 2) if f"{t}({n})-base" not in nums]
    ci90 = ", ".join(f"{pt.label} {pt.diff.text_at(EQUIVALENCE_LEVEL)}: {outcomes[pt.label]}"
                     if pt.diff.has_ci else f"{pt.label} {_f(pt.diff.mean)}: no CI" for pt in points)
    detail = (f"equivalence |x − base| ≤ {noise.tol:.4f} ({noise.source}) by TOST, 90% CIs: {ci90}"
              + (f"; absent: {', '.join(absent)}" if absent else "")
              + ("; one unit of replication gives no interval, and no tolerance built from it can decide"
                 if verdict == NOT_IDENTIFIED else ""))
    test = f"TOST (two one-sided 5% tests) at ±{noise.tol:.4f}"
    return _confound(_claim(1, title, verdict, detail, nums, noise.tol, points, test=test), conv)


DIP_FROM = 2  # the curvature contrast runs over n ≥ 2: BnB(1) retrains 7 of 8 layers, the noisiest arm


def claim_dip(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """2. The co-adaptation dip, by its pre-registered test: the quadratic orthogonal-polynomial contrast
    of BnB over n = DIP_FROM.. (stats.curvature_weights; orthogonal to a linear trend, so a monotone
    decline from under-training is not a dip), against 0 and against the same contrast of the paper's
    BnB scaled to this error rate: holds, fails (an inverted U), excluded or undecided. The interior
    argmin of the means and the drop and recovery around it are reported as a description only.
    When the convergence check failed only a pass is confounded: extra training gains most at low n and
    flattens, a convex shape that can only raise the curvature, so excluded and fails stand."""
    title = "Co-adaptation dip: BnB has an interior minimum and recovers at the top"
    rows = _rows(p, "selffer")
    by_n = _by_n(rows)
    ns = [n for n in sorted(by_n) if n >= DIP_FROM]
    if len(ns) < 3:
        return _no_data(2, title, f"needs BnB (with a base) at 3 or more n ≥ {DIP_FROM}", noise.tol)
    weights = curvature_weights(ns)
    label = f"BnB curvature over n = {ns[0]}..{ns[-1]}"
    curve = Point(label, contrast([(w, _at(rows, n)) for n, w in zip(ns, weights)], "pdelta"), ">")
    paper = float(sum(w * PAPER_REFERENCE["BnB"][n] for n, w in zip(ns, weights)))
    effect = _scaled(p, paper)
    verdict = directional(curve.diff, effect)
    n_min = min(ns[1:-1], key=lambda n: by_n[n])
    nums = {"curvature": curve.diff.mean, "paper curvature scaled": effect, "n_min (description)": n_min,
            **{f"BnB({n})-base": by_n[n] for n in sorted(by_n)}}
    wtext = ", ".join(f"{w:+.2f}·BnB({n})" for n, w in zip(ns, weights))
    detail = (f"curvature contrast {wtext} = {curve.diff.text()}; the paper's BnB gives {paper:+.4f}, scaled "
              f"to this error rate {_f(effect)}; rule: 95% CI above 0 (holds), below 0 (fails), below the "
              f"scaled effect (excluded); described, not tested: the means are lowest inside at n = {n_min} "
              f"(BnB({ns[0]}) − BnB({n_min}) {_f(by_n[ns[0]] - by_n[n_min])}, BnB({ns[-1]}) − BnB({n_min}) "
              f"{_f(by_n[ns[-1]] - by_n[n_min])})")
    test = f"curvature contrast over n = {ns[0]}..{ns[-1]} (orthogonal polynomial, trend-free)"
    if conv.confounding and verdict != HOLDS:
        detail += ("; the convergence check failed, but that cannot make this verdict: the contrast is "
                   "orthogonal to a linear trend in n, and the gain from extra training falls with n and "
                   "flattens (convex), which can only raise the curvature")
    claim = _claim(2, title, verdict, detail, nums, 0.0, (curve,), deciding=curve, paper_effect=effect, test=test)
    # a pass is confounded: that convex gain of the low-n selffers alone can draw a U
    return _confound(claim, conv, only=(HOLDS,))


def claim_finetune(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """3. BnB+ not below base by more than tol at every n present: non-inferiority (the 90% CI's lower
    bound above −tol, one-sided 5%) at each n; a pass is confounded when the study is under-trained
    (BnB+ then gains from extra training)."""
    title = "Fine-tuning removes the dip: BnB+ ≥ base at every n"
    rows = _rows(p, "selffer+")
    by_n = _by_n(rows)
    if not by_n:
        return _no_data(3, title, "needs random-split BnB+ with a base", noise.tol)
    nums = {f"BnB+({n})-base": v for n, v in sorted(by_n.items())}
    points = [_vs_base(_at(rows, n), f"BnB+({n})", "≥", -noise.tol) for n in sorted(by_n)]
    outcomes = [non_inferiority(pt.diff, noise.tol) for pt in points]
    worst = min(by_n, key=lambda n: by_n[n])
    detail = (f"non-inferiority BnB+(n) − base ≥ −{noise.tol:.4f} at n = {', '.join(map(str, sorted(by_n)))} "
              f"(90% lower bounds: " + ", ".join(
                  f"n={n}: {pt.diff.bounds(EQUIVALENCE_LEVEL)[0]:+.4f} {v}" if pt.diff.has_ci else f"n={n}: no CI"
                  for n, pt, v in zip(sorted(by_n), points, outcomes)) + f"); lowest mean at n = {worst}: "
              f"{_f(by_n[worst])}")
    test = f"non-inferiority at −{noise.tol:.4f} (one-sided 5%) at every n"
    return _confound(_claim(3, title, combine(outcomes), detail, nums, noise.tol, points, test=test), conv,
                     only=(HOLDS,))


_MEANS_TEST = "the rule on the means, held to the deciding margin's 95% CI"


def claim_specificity(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """4. For n >= 3: AnB <= BnB + tol; gap BnB - AnB grows (least-squares slope > 0 and gap at the
    largest n >= gap at the smallest n >= 3); AnB at its largest n is its lowest point (over all n)."""
    title = "Specificity: AnB ≤ BnB for n ≥ 3, gap growing with n, AnB lowest at the top"
    anb_rows, bnb_rows = _rows(p, "transfer"), _rows(p, "selffer")
    anb, bnb = _by_n(anb_rows), _by_n(bnb_rows)
    ns = sorted(n for n in anb if n in bnb and n >= 3)
    if len(ns) < 2:
        return _no_data(4, title, "needs AnB and BnB (with bases) at 2 or more common n ≥ 3", noise.tol)
    gap = {n: bnb[n] - anb[n] for n in ns}
    slope = float(np.polyfit(ns, [gap[n] for n in ns], 1)[0])
    top = max(anb)
    others = [v for n, v in anb.items() if n != top]
    below = all(gap[n] >= -noise.tol for n in ns)
    growing = slope > 0 and gap[ns[-1]] >= gap[ns[0]]
    lowest = all(anb[top] <= v for v in others)
    nums = {**{f"gap({n})": gap[n] for n in ns}, "gap_slope_per_layer": slope,
            f"AnB({top})-base": anb[top], "lowest other AnB(n)-base": min(others) if others else math.nan}
    parts = [f"AnB ≤ BnB + {noise.tol:.4f}: {'yes' if below else 'no'}",
             "gap BnB − AnB " + ", ".join(f"n={n}: {_f(gap[n])}" for n in ns)
             + f"; slope {_f(slope)}/layer, growing: {'yes' if growing else 'no'}",
             f"AnB({top}) lowest: {'yes' if lowest else 'no'}"]
    points = _specificity_points(anb_rows, bnb_rows, ns, anb, noise.tol)
    return _means_claim(4, title, below and growing and lowest, "; ".join(parts), nums, noise.tol, points)


def _specificity_points(anb_rows, bnb_rows, ns, anb, tol) -> list[Point]:
    """Claim 4's points: the gap BnB − AnB at each n ≥ 3 (≥ −tol), its growth from the first to the last
    n and its least-squares slope (> 0, per layer), and AnB(top) against the closest other AnB(n)."""
    def gap(n, c=1.0):
        return [(c, _at(bnb_rows, n)), (-c, _at(anb_rows, n))]
    first, last, top = ns[0], ns[-1], max(anb)
    weights = np.asarray(ns, float) - np.mean(ns)
    weights = weights / (weights ** 2).sum()  # sum w·gap(n) is the least-squares slope
    points = [Point(f"BnB({n}) − AnB({n})", contrast(gap(n), "pdelta"), "≥", -tol) for n in ns]
    points += [Point(f"gap growth ({last} vs {first})", contrast(gap(last) + gap(first, -1.0), "pdelta"), "≥"),
               Point("gap slope per layer", contrast([t for n, w in zip(ns, weights) for t in gap(n, w)],
                                                     "pdelta"), ">")]
    others = [n for n in anb if n != top]
    if others:
        near = min(others, key=anb.get)
        points.append(Point(f"AnB({near}) − AnB({top})",
                            contrast([(1, _at(anb_rows, near)), (-1, _at(anb_rows, top))], "pdelta"), "≥"))
    return points


def _plus_pairs(p: pd.DataFrame):
    """AnB+ and BnB+ rows restricted to the (split, target half, n) that hold both, and those keys."""
    keys = ["split", "target_half", "n"]
    a_rows, b_rows = _rows(p, "transfer+"), _rows(p, "selffer+")
    both = (a_rows.groupby(keys)["value"].mean() - b_rows.groupby(keys)["value"].mean()).dropna()
    paired = set(both.index)

    def within(rows):
        keep = [(s, t, m) in paired for s, t, m in zip(rows.split, rows.target_half, rows.n)]
        return rows[np.asarray(keep, dtype=bool)]
    return within(a_rows), within(b_rows), both


def _boost_points(a_pair, b_pair, both) -> dict[int, Point]:
    """AnB+(n) − BnB+(n) in the same split and target half, by n, at each n that holds both."""
    plus_ns = sorted(int(n) for n in both.index.get_level_values("n").unique())
    return {n: Point(f"AnB+({n}) − BnB+({n})", contrast([(1, _at(a_pair, n)), (-1, _at(b_pair, n))], "pdelta"),
                     ">") for n in plus_ns}


def _boost_test(effect: float) -> str:
    return (f"AnB+(n) − BnB+(n) > 0 at every n (95% CIs; {_f(effect)} is the paper's boost scaled here; "
            "intervals at several n are not adjusted for multiplicity)")


def claim_boost(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """5. Generalisation boost: AnB+ > base of the same target at every n, AND AnB+ > BnB+ in the same
    target half at every n, each by its 95% CI (stats directional verdicts, combined). Only the second
    comparison separates the transferred features from extra training: without BnB+ beside AnB+ the
    claim is not identified; confounded unless the convergence check shows convergence."""
    title = "Generalisation boost: AnB+ > base and AnB+ > BnB+ (same target) at every n"
    rows = _rows(p, "transfer+")
    by_n = _by_n(rows)
    effect = _scaled(p, PAPER_EFFECT[5])
    if not by_n:
        return _no_data(5, title, "needs random-split AnB+ with a base")
    a_pair, b_pair, both = _plus_pairs(p)
    vs_base = [_vs_base(_at(rows, n), f"AnB+({n})", ">") for n in sorted(by_n)]
    nums = {f"AnB+({n})-base": v for n, v in sorted(by_n.items())}
    base_text = "AnB+(n) − base: " + ", ".join(f"n={n}: {_f(v)}" for n, v in sorted(by_n.items()))
    if both.empty:
        return _claim(5, title, NOT_IDENTIFIED, "AnB+ > base alone cannot separate transferred features from "
                      "extra training, and the study has no BnB+ in the same split and target half as its "
                      f"AnB+ (the control); {base_text}", nums, 0.0, vs_base, paper_effect=effect)
    vs_plus = list(_boost_points(a_pair, b_pair, both).values())
    nums.update({pt.label.replace(" − ", "-"): pt.diff.mean for pt in vs_plus})
    outcomes = [directional(pt.diff, effect) for pt in vs_plus] + [directional(pt.diff, math.nan) for pt in vs_base]
    deciding = min(vs_plus, key=lambda pt: pt.diff.mean)
    over_base = all(pt.diff.mean > 0 for pt in vs_base)
    why = ("; AnB+ above base but not above BnB+: extra training explains the gain"
           if over_base and any(pt.diff.mean <= 0 for pt in vs_plus) else
           "" if over_base else "; AnB+ not above base at every n")
    detail = (f"{base_text}; AnB+(n) − BnB+(n): " + ", ".join(f"{pt.label} {pt.diff.text()}" for pt in vs_plus)
              + why)
    claim = _claim(5, title, combine(outcomes), detail, nums, 0.0, vs_base + vs_plus, deciding=deciding,
                   paper_effect=effect, test=_boost_test(effect) + " and AnB+(n) − base > 0")
    return _confound(claim, conv, when="not shown")


def claim_plus_order(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """6. AnB+ > BnB+ with both trained into the same target task, at every n that has a pair, by its
    95% CI against 0 and against the paper's boost scaled here; confounded unless convergence is shown."""
    title = "AnB+ > BnB+ in the same target half"
    a_pair, b_pair, both = _plus_pairs(p)
    if both.empty:
        return _no_data(6, title, "needs AnB+ and BnB+ in the same split and target half")
    effect = _scaled(p, PAPER_EFFECT[6])
    pairs = both.groupby(level="n").size()
    by_n = _boost_points(a_pair, b_pair, both)
    points = list(by_n.values())
    nums = {pt.label.replace(" − ", "-"): pt.diff.mean for pt in points}
    detail = ("mean over target tasks of AnB+ − BnB+: " + ", ".join(
        f"{pt.label} {pt.diff.text()} ({pairs[n]} task(s))" for n, pt in by_n.items()))
    claim = _claim(6, title, combine([directional(pt.diff, effect) for pt in points]), detail, nums, 0.0, points,
                   deciding=min(points, key=lambda pt: pt.diff.mean), paper_effect=effect, test=_boost_test(effect))
    return _confound(claim, conv, when="not shown")


NATMAN_DIRECTIONS = {"B": "natural←man-made", "A": "man-made←natural"}


def claim_distance(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """7. For n >= 3: relative drop of AnB on man-made/natural (each direction present) > relative drop of
    AnB on the random halves."""
    title = "Task distance: man-made/natural drop > random-split drop for n ≥ 3"
    rnd_rows = _rows(p, "transfer")
    rnd = _by_n(rnd_rows, "drop")
    nat = {t: _by_n(_rows(p, "transfer", NATMAN, t), "drop") for t in NATMAN_DIRECTIONS}
    nums, margins, bad, points = {}, [], [], []
    for t, by_n in nat.items():
        for n in sorted(n for n in by_n if n in rnd and n >= 3):
            name = NATMAN_DIRECTIONS[t]
            nums[f"drop {name}({n})"], nums[f"drop random({n})"] = by_n[n], rnd[n]
            margins.append(by_n[n] - rnd[n])
            diff = contrast([(1, _at(_rows(p, "transfer", NATMAN, t), n)), (-1, _at(rnd_rows, n))], "pdrop")
            points.append(Point(f"drop {name}({n}) − drop random({n})", diff, ">"))
            if by_n[n] <= rnd[n]:
                bad.append(f"{name} n={n}")
    if not margins:
        return _no_data(7, title, "needs natman AnB and random-split AnB (with their bases) at a common n ≥ 3")
    absent = [NATMAN_DIRECTIONS[t] for t, v in nat.items() if not v]
    detail = (f"rule drop = 1 − AnB/base of its own target; natman drop > random-split drop (strict) at "
              f"{len(margins)} point(s), smallest margin {_f(min(margins))}"
              + (f"; fails at {', '.join(bad)}" if bad else "")
              + (f"; direction absent: {', '.join(absent)}" if absent else "")
              + _noise_note(margins, _relative_tol(p, noise), " relative"))
    return _means_claim(7, title, not bad, detail, nums, 0.0, points)


def claim_random(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """8. Random frozen layers do worse than transferred ones at every n present in both: relative drop of
    'random' (own base, any split) > relative drop of random-split AnB; absolute top-1 when a base lacks."""
    title = "Random frozen layers do worse than transferred ones at every n"
    rand_rows = p[p.treatment == "random"]
    anb_rows = _rows(p, "transfer")
    rel = rand_rows["base"].notna().any() and anb_rows["base"].notna().any()
    column = "drop" if rel else "value"
    rnd, anb = _by_n(rand_rows, column), _by_n(anb_rows, column)
    ns = sorted(n for n in rnd if n in anb)
    if not ns:
        return _no_data(8, title, "needs 'random' and random-split AnB at a common n")
    if rel:  # worse = larger drop
        points = [Point(f"drop random({n}) − drop AnB({n})",
                        contrast([(1, _at(rand_rows, n)), (-1, _at(anb_rows, n))], "pdrop"), ">") for n in ns]
        margins = {n: rnd[n] - anb[n] for n in ns}
        rule = "relative drop 1 − acc/base of random > that of AnB (each against its own base)"
    else:    # worse = lower accuracy
        points = [Point(f"AnB({n}) − random({n})",
                        contrast([(1, _at(anb_rows, n)), (-1, _at(rand_rows, n))], "value"), ">") for n in ns]
        margins = {n: anb[n] - rnd[n] for n in ns}
        rule = "no base for one of them: absolute top-1 of random < AnB"
    what = "drop " if rel else ""
    nums = {**{f"{what}random({n})": rnd[n] for n in ns}, **{f"{what}AnB({n})": anb[n] for n in ns}}
    bad = [n for n in ns if margins[n] <= 0]
    detail = (f"rule {rule} (strict); compared on {column} at n = {', '.join(map(str, ns))}; smallest margin "
              f"{_f(min(margins.values()))}" + (f"; fails at n = {bad}" if bad else "")
              + _noise_note(margins.values(), _relative_tol(p, noise) if rel else noise.tol,
                            " relative" if rel else ""))
    return _means_claim(8, title, not bad, detail, nums, 0.0, points)


CLAIM_CHECKS: tuple[Callable[[pd.DataFrame, Noise, Convergence], Claim], ...] = (
    claim_general, claim_dip, claim_finetune, claim_specificity, claim_boost, claim_plus_order,
    claim_distance, claim_random)


def check_claims(results: pd.DataFrame, metric: str = "top1_paper", dataset: str = "",
                 curves: Optional[pd.DataFrame] = None) -> list[Claim]:
    """All eight claims on one dataset's results (raw result rows; prepared here). `curves` (curve rows
    with key, step, top1) lets the convergence check measure the bases' plateaus."""
    p, _ = _one_dataset(results, metric, dataset)
    return judge(p, check_convergence(p, curves), dataset or (str(p["dataset"].iloc[0]) if len(p) else ""))


def check_study(results: pd.DataFrame, metric: str = "top1_paper", dataset: str = "",
                curves: Optional[pd.DataFrame] = None) -> tuple[Convergence, list[Claim]]:
    """The convergence check and the eight claims of one dataset's results."""
    p, dataset = _one_dataset(results, metric, dataset)
    conv = check_convergence(p, curves)
    return conv, judge(p, conv, dataset)


def judge(p: pd.DataFrame, conv: Convergence, dataset: str) -> list[Claim]:
    """The eight claims on a prepared one-dataset table, given its convergence check."""
    noise = noise_level(p)
    return [replace(check(p, noise, conv), dataset=dataset) for check in CLAIM_CHECKS]


def _one_dataset(results: pd.DataFrame, metric: str, dataset: str) -> tuple[pd.DataFrame, str]:
    p = pair_with_bases(results, metric)
    if not dataset and p["dataset"].nunique() > 1:
        raise ValueError(f"results hold datasets {sorted(p['dataset'].unique())}: pass dataset=")
    if dataset:
        p = p[p.dataset == dataset]
    elif len(p):
        dataset = str(p["dataset"].iloc[0])
    return p, dataset
