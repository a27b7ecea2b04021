"""The paper's eight claims, as pure functions of a results table (prepared by orchestrator/stats.py).

Verdicts: 'holds', 'fails', 'confounded' (the rule's outcome cannot be trusted because the study's
convergence check failed: orchestrator/convergence.py) and 'not identified' (the study lacks the arm
that would decide it). Claims 1, 2 and 3 compare a low n or a fine-tuned selffer with the base, so an
under-trained study makes them confounded; claim 5 needs the BnB+ arm, the control for extra training.

Every comparison between treatments uses each trial's accuracy relative to the base of its own target
task (stats.pair_with_bases: delta, drop). "Within noise" comparisons use ``TOL_SIGMAS * noise_sd``; strict
inequalities of the paper (claims 5-8) are checked on the means with margin 0 and the detail says
whether the margin exceeds the noise.

Confidence: every compared quantity is a ``Point`` with the 95% CI of its per-replicate difference
(paired by (split, target half, seed), Welch across splits); each claim names its deciding point (the
smallest margin to its rule) and whether that margin's CI excludes 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional

import numpy as np
import pandas as pd

from orchestrator.convergence import Convergence, check_convergence
from orchestrator.paper import PAPER_BASE_ERROR, PAPER_EFFECT
from orchestrator.stats import (
    NATMAN,
    RANDOM_SPLIT,
    Noise,
    Point,
    contrast,
    deciding_point,
    detectable,
    noise_level,
    pair_with_bases,
    significance,
)

HOLDS, FAILS, CONFOUNDED, NOT_IDENTIFIED = "holds", "fails", "confounded", "not identified"
NO_DATA = NOT_IDENTIFIED  # the study lacks what would decide the claim


@dataclass(frozen=True)
class Claim:
    """One claim of the paper checked on a sweep: verdict 'holds', 'fails', 'confounded' or 'not identified'."""

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
           power=None) -> Claim:
    """A Claim with its deciding point (the smallest margin unless given) and the power of its test
    (`power`: the interval whose detectable effect is reported; the deciding point's by default)."""
    points = tuple(points)
    deciding = deciding or deciding_point(points)
    power = power if power is not None else (deciding.diff if deciding else None)
    claim = Claim(cid, title, verdict, detail + _ci_text(points, deciding),
                  {k: float(v) for k, v in numbers.items()}, float(tol), points=points, deciding=deciding,
                  detectable=detectable(power) if power is not None else math.nan, paper_effect=paper_effect)
    tail = claim.power_text() if verdict != HOLDS else ""
    return replace(claim, detail=claim.detail + (f"; {tail}" if tail else ""))


def _confound(claim: Claim, conv: Convergence, also_fails: bool = True) -> Claim:
    """The claim marked confounded when the convergence check failed (its rule's outcome kept in the detail)."""
    if not conv.confounding or claim.verdict == NOT_IDENTIFIED or (claim.verdict == FAILS and not also_fails):
        return claim
    return replace(claim, verdict=CONFOUNDED,
                   detail=f"the rule alone gives '{claim.verdict}', but the convergence check failed "
                          f"({'; '.join(conv.problems)}): {claim.detail}")


def _scaled(p: pd.DataFrame, effect: float) -> float:
    """The paper's effect scaled from its 37.5 % error base to this study's random-split base error."""
    bases = p[(p.treatment == "base") & (p.family == RANDOM_SPLIT)]["value"]
    return effect * (1.0 - float(bases.mean())) / PAPER_BASE_ERROR if len(bases) else math.nan


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
    """1. AnB and BnB within noise of base at n = 1, 2: |mean delta| <= tol at each point present; judged
    only on converged networks (confounded when the convergence check failed)."""
    title = "Low layers are general: AnB, BnB within noise of base at n = 1, 2"
    nums, points = {}, []
    for treatment, label in (("transfer", "AnB"), ("selffer", "BnB")):
        rows = _rows(p, treatment)
        by_n = _by_n(rows)
        nums.update({f"{label}({n})-base": by_n[n] for n in (1, 2) if n in by_n})
        points += [_vs_base(_at(rows, n), f"{label}({n})", "|≤|", noise.tol) for n in (1, 2) if n in by_n]
    if not nums:
        return _no_data(1, title, "needs random-split base and AnB or BnB at n = 1 or 2", noise.tol)
    bad = {k: v for k, v in nums.items() if abs(v) > noise.tol}
    absent = [f"{t}({n})" for t in ("AnB", "BnB") for n in (1, 2) if f"{t}({n})-base" not in nums]
    detail = (f"rule |x − base| ≤ {noise.tol:.4f}; " + ", ".join(f"{k} = {_f(v)}" for k, v in nums.items())
              + (f"; outside: {', '.join(bad)}" if bad else "") + (f"; absent: {', '.join(absent)}" if absent else ""))
    return _confound(_claim(1, title, FAILS if bad else HOLDS, detail, nums, noise.tol, points), conv)


def claim_dip(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """2. BnB has an interior minimum: at the n (strictly between the smallest and largest n present) where
    the mean of BnB is lowest, the drop BnB(lo) − BnB(n_min) and the recovery BnB(hi) − BnB(n_min) both
    have 95% lower bounds above 0 (paired over units). When it fails, the detail gives the smallest dip the
    study could detect and the paper's dip scaled to this error rate. Confounded when not converged:
    extra training of the low-n selffers makes a monotone decline that hides a small dip.

    n_min is chosen from the same means that are tested, so each bound is conditional on that choice.
    """
    title = "Co-adaptation dip: BnB has an interior minimum and recovers at the top"
    rows = _rows(p, "selffer")
    by_n = _by_n(rows)
    if len(by_n) < 3:
        return _no_data(2, title, "needs BnB (with a base) at 3 or more n", noise.tol)
    ns = sorted(by_n)
    lo, hi = ns[0], ns[-1]
    n_min = min(ns[1:-1], key=lambda n: by_n[n])
    m = by_n[n_min]
    drop, recovery = (Point(f"BnB({end}) − BnB({n_min})",
                            contrast([(1, _at(rows, end)), (-1, _at(rows, n_min))], "pdelta"), ">")
                      for end in (lo, hi))
    nums = {f"BnB({lo})-base": by_n[lo], f"BnB({n_min})-base": m, f"BnB({hi})-base": by_n[hi],
            "dip_from_low": drop.diff.mean, "recovery_to_top": recovery.diff.mean, "n_min": n_min}
    ok = drop.diff.low > 0 and recovery.diff.low > 0
    weakest = min((drop, recovery), key=lambda pt: pt.diff.low if pt.diff.has_ci else -math.inf)
    # the dip is seen only if both sides are: the power is that of the weaker (noisier) side
    power = max((drop, recovery), key=lambda pt: detectable(pt.diff) if pt.diff.has_ci else math.inf).diff
    detail = (f"interior minimum of the BnB means at n = {n_min}; rule: the 95% lower bounds of the drop "
              f"BnB({lo}) − BnB({n_min}) ({drop.diff.text()}) and of the recovery BnB({hi}) − BnB({n_min}) "
              f"({recovery.diff.text()}) are both above 0")
    return _confound(_claim(2, title, HOLDS if ok else FAILS, detail, nums, 0.0, (drop, recovery),
                            deciding=weakest, paper_effect=_scaled(p, PAPER_EFFECT[2]), power=power), conv)


def claim_finetune(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """3. BnB+ >= base - tol at every n present; a pass is confounded when the study is under-trained
    (BnB+ then gains from extra training)."""
    title = "Fine-tuning removes the dip: BnB+ ≥ base at every n"
    rows = _rows(p, "selffer+")
    by_n = _by_n(rows)
    if not by_n:
        return _no_data(3, title, "needs random-split BnB+ with a base", noise.tol)
    nums = {f"BnB+({n})-base": v for n, v in sorted(by_n.items())}
    worst = min(by_n, key=lambda n: by_n[n])
    ok = by_n[worst] >= -noise.tol
    detail = (f"rule BnB+(n) − base ≥ −{noise.tol:.4f} at n = {', '.join(map(str, sorted(by_n)))}; "
              f"lowest at n = {worst}: {_f(by_n[worst])}")
    points = [_vs_base(_at(rows, n), f"BnB+({n})", "≥", -noise.tol) for n in sorted(by_n)]
    return _confound(_claim(3, title, HOLDS if ok else FAILS, detail, nums, noise.tol, points), conv,
                     also_fails=False)


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
    return _claim(4, title, HOLDS if below and growing and lowest else FAILS, "; ".join(parts), nums,
                  noise.tol, _specificity_points(anb_rows, bnb_rows, ns, anb, noise.tol))


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


def claim_boost(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """5. Generalisation boost: AnB+ > base of the same target at every n, AND AnB+ > BnB+ in the same
    target half at every n (strict, on the means). Only the second comparison separates the transferred
    features from extra training: without BnB+ beside AnB+ the claim is not identified."""
    title = "Generalisation boost: AnB+ > base and AnB+ > BnB+ (same target) at every n"
    rows = _rows(p, "transfer+")
    by_n = _by_n(rows)
    if not by_n:
        return _no_data(5, title, "needs random-split AnB+ with a base")
    a_pair, b_pair, both = _plus_pairs(p)
    vs_base = [_vs_base(_at(rows, n), f"AnB+({n})", ">") for n in sorted(by_n)]
    nums = {f"AnB+({n})-base": v for n, v in sorted(by_n.items())}
    base_text = "AnB+(n) − base: " + ", ".join(f"n={n}: {_f(v)}" for n, v in sorted(by_n.items()))
    if both.empty:
        return _claim(5, title, NOT_IDENTIFIED, "AnB+ > base alone cannot separate transferred features from "
                      "extra training, and the study has no BnB+ in the same split and target half as its "
                      f"AnB+ (the control); {base_text}", nums, 0.0, vs_base,
                      paper_effect=_scaled(p, PAPER_EFFECT[5]))
    plus_ns = sorted(int(n) for n in both.index.get_level_values("n").unique())
    vs_plus = [Point(f"AnB+({n}) − BnB+({n})", contrast([(1, _at(a_pair, n)), (-1, _at(b_pair, n))], "pdelta"), ">")
               for n in plus_ns]
    nums.update({pt.label.replace(" − ", "-"): pt.diff.mean for pt in vs_plus})
    over_base = all(v > 0 for v in by_n.values())
    over_plus = all(pt.diff.mean > 0 for pt in vs_plus)
    why = "" if over_base and over_plus else (
        "; AnB+ above base but not above BnB+: extra training explains the gain" if over_base else
        "; AnB+ not above base at every n")
    detail = (f"rule AnB+(n) − base > 0 and AnB+(n) − BnB+(n) > 0 (same target, strict, margin 0); {base_text}; "
              "AnB+(n) − BnB+(n): " + ", ".join(f"n={n}: {_f(pt.diff.mean)}" for n, pt in zip(plus_ns, vs_plus)) + why)
    return _claim(5, title, HOLDS if over_base and over_plus else FAILS, detail, nums, 0.0, vs_base + vs_plus,
                  paper_effect=_scaled(p, PAPER_EFFECT[5]))


def claim_plus_order(p: pd.DataFrame, noise: Noise, conv: Convergence) -> Claim:
    """6. AnB+ > BnB+ with both trained into the same target task: per (split, target, n) difference of
    means, averaged over targets; > 0 at every n that has a pair."""
    title = "AnB+ > BnB+ in the same target half"
    a_pair, b_pair, both = _plus_pairs(p)
    if both.empty:
        return _no_data(6, title, "needs AnB+ and BnB+ in the same split and target half")
    by_n = both.groupby(level="n").mean()
    pairs = both.groupby(level="n").size()
    nums = {f"AnB+({n})-BnB+({n})": float(v) for n, v in by_n.items()}
    ok = bool((by_n > 0).all())
    detail = ("rule mean over target tasks of AnB+ − BnB+ > 0 (strict, margin 0): "
              + ", ".join(f"n={n}: {_f(v)} ({pairs[n]} task(s))" for n, v in by_n.items())
              + _noise_note(by_n.to_numpy(), noise.tol))
    points = [Point(f"AnB+({n}) − BnB+({n})", contrast([(1, _at(a_pair, n)), (-1, _at(b_pair, n))], "pdelta"), ">")
              for n in by_n.index]
    return _claim(6, title, HOLDS if ok else FAILS, detail, nums, 0.0, points,
                  paper_effect=_scaled(p, PAPER_EFFECT[6]))


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
    return _claim(7, title, FAILS if bad else HOLDS, detail, nums, 0.0, points)


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
    return _claim(8, title, FAILS if bad else HOLDS, detail, nums, 0.0, points)


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
