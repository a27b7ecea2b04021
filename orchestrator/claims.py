"""The paper's eight claims, as pure functions of a results table (prepared by orchestrator/stats.py).

Every comparison between treatments uses each trial's accuracy relative to the base of its own target
task (stats.prepare: delta, drop). "Within noise" comparisons use ``TOL_SIGMAS * noise_sd``; strict
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

from orchestrator.stats import (
    NATMAN, RANDOM_SPLIT, Noise, Point, contrast, deciding_point, noise_level, prepare,
    significance)

HOLDS, FAILS, NO_DATA = "holds", "fails", "not enough data"
# Yosinski et al. 2014, top-1 on ImageNet val by n (n = 0: base of the target task); PAPER.md.
PAPER_REFERENCE = {
    "BnB": (.625, .627, .624, .621, .605, .594, .619, .623),
    "AnB": (.625, .628, .624, .619, .600, .578, .581, .543),
    "BnB+": (.625, .618, .622, .631, .629, .630, .628, .627),
    "AnB+": (.625, .637, .636, .643, .640, .645, .646, .647),
    "natural←man-made": (.653, .657, .651, .625, .582, .522, .485, .399),
    "man-made←natural": (.537, .539, .521, .501, .462, .410, .374, .291),
    "random (all classes)": (.576, .492, .403, .001, .019, .050, .015, .015),
}
PAPER_BASE_SD = 0.0055  # sd of the paper's 8 random-half bases


@dataclass(frozen=True)
class Claim:
    """One claim of PAPER.md checked on a sweep: verdict is 'holds', 'fails' or 'not enough data'."""

    id: int
    title: str
    verdict: str
    detail: str
    numbers: dict
    tolerance: float
    dataset: str = ""
    points: tuple = ()                 # a Point (difference with its 95% CI, rule) per compared quantity
    deciding: Optional[Point] = None   # the point with the smallest margin to its rule

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


def _claim(cid, title, verdict, detail, numbers, tol, points=()) -> Claim:
    points = tuple(points)
    deciding = deciding_point(points)
    return Claim(cid, title, verdict, detail + _ci_text(points, deciding),
                 {k: float(v) for k, v in numbers.items()}, float(tol), points=points, deciding=deciding)


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
def claim_general(p: pd.DataFrame, noise: Noise) -> Claim:
    """1. AnB and BnB within noise of base at n = 1, 2: |mean delta| <= tol at each point present."""
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
    return _claim(1, title, FAILS if bad else HOLDS, detail, nums, noise.tol, points)


def claim_dip(p: pd.DataFrame, noise: Noise) -> Claim:
    """2. BnB has an interior minimum: min over lo<n<hi of BnB is below BnB(lo) - tol and BnB(hi) - tol.

    lo and hi are the smallest and largest n present (1 and 7 in a full sweep).
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
    nums = {f"BnB({lo})-base": by_n[lo], f"BnB({n_min})-base": m, f"BnB({hi})-base": by_n[hi],
            "dip_from_low": by_n[lo] - m, "recovery_to_top": by_n[hi] - m, "n_min": n_min}
    ok = m < by_n[lo] - noise.tol and m < by_n[hi] - noise.tol
    detail = (f"interior minimum at n = {n_min}; rule: BnB({n_min}) < BnB({lo}) − tol and < BnB({hi}) − tol "
              f"with tol {noise.tol:.4f}; dip below n={lo}: {_f(by_n[lo] - m)}, recovery to n={hi}: "
              f"{_f(by_n[hi] - m)}")
    points = [Point(f"BnB({end}) − BnB({n_min})", contrast([(1, _at(rows, end)), (-1, _at(rows, n_min))],
                                                            "pdelta"), ">", noise.tol) for end in (lo, hi)]
    return _claim(2, title, HOLDS if ok else FAILS, detail, nums, noise.tol, points)


def claim_finetune(p: pd.DataFrame, noise: Noise) -> Claim:
    """3. BnB+ >= base - tol at every n present."""
    title = "Fine-tuning removes the dip: BnB+ ≥ base at every n"
    rows = _rows(p, "selffer+")
    by_n = _by_n(rows)
    if not by_n:
        return _no_data(3, title, "needs random-split BnB+ with a base", noise.tol)
    nums = {f"BnB+({n})-base": v for n, v in sorted(by_n.items())}
    worst = min(by_n, key=by_n.get)
    ok = by_n[worst] >= -noise.tol
    detail = (f"rule BnB+(n) − base ≥ −{noise.tol:.4f} at n = {', '.join(map(str, sorted(by_n)))}; "
              f"lowest at n = {worst}: {_f(by_n[worst])}")
    points = [_vs_base(_at(rows, n), f"BnB+({n})", "≥", -noise.tol) for n in sorted(by_n)]
    return _claim(3, title, HOLDS if ok else FAILS, detail, nums, noise.tol, points)


def claim_specificity(p: pd.DataFrame, noise: Noise) -> Claim:
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


def claim_boost(p: pd.DataFrame, noise: Noise) -> Claim:
    """5. AnB+ > base of the same target at every n (mean of delta > 0, margin 0)."""
    title = "Generalisation boost: AnB+ > base of the same target at every n"
    rows = _rows(p, "transfer+")
    by_n = _by_n(rows)
    if not by_n:
        return _no_data(5, title, "needs random-split AnB+ with a base")
    nums = {f"AnB+({n})-base": v for n, v in sorted(by_n.items())}
    ok = all(v > 0 for v in by_n.values())
    detail = ("rule AnB+(n) − base > 0 (strict, margin 0): " + ", ".join(f"n={n}: {_f(v)}" for n, v in
                                                                         sorted(by_n.items()))
              + _noise_note(by_n.values(), noise.tol))
    points = [_vs_base(_at(rows, n), f"AnB+({n})", ">") for n in sorted(by_n)]
    return _claim(5, title, HOLDS if ok else FAILS, detail, nums, 0.0, points)


def claim_plus_order(p: pd.DataFrame, noise: Noise) -> Claim:
    """6. AnB+ > BnB+ with both trained into the same target task: per (split, target, n) difference of
    means, averaged over targets; > 0 at every n that has a pair."""
    title = "AnB+ > BnB+ in the same target half"
    keys = ["split", "target_half", "n"]
    a_rows, b_rows = _rows(p, "transfer+"), _rows(p, "selffer+")
    a = a_rows.groupby(keys)["value"].mean()
    b = b_rows.groupby(keys)["value"].mean()
    both = (a - b).dropna()
    if both.empty:
        return _no_data(6, title, "needs AnB+ and BnB+ in the same split and target half")
    by_n = both.groupby(level="n").mean()
    pairs = both.groupby(level="n").size()
    nums = {f"AnB+({n})-BnB+({n})": float(v) for n, v in by_n.items()}
    ok = bool((by_n > 0).all())
    detail = ("rule mean over target tasks of AnB+ − BnB+ > 0 (strict, margin 0): "
              + ", ".join(f"n={n}: {_f(v)} ({pairs[n]} task(s))" for n, v in by_n.items())
              + _noise_note(by_n.to_numpy(), noise.tol))
    paired = set(both.index)  # only the (split, target, n) that hold both, as the verdict

    def within(rows, n):
        keep = [(s, t, m) in paired and m == n for s, t, m in zip(rows.split, rows.target_half, rows.n)]
        return rows[np.asarray(keep, dtype=bool)]
    points = [Point(f"AnB+({n}) − BnB+({n})", contrast([(1, within(a_rows, n)), (-1, within(b_rows, n))],
                                                       "pdelta"), ">") for n in by_n.index]
    return _claim(6, title, HOLDS if ok else FAILS, detail, nums, 0.0, points)


NATMAN_DIRECTIONS = {"B": "natural←man-made", "A": "man-made←natural"}


def claim_distance(p: pd.DataFrame, noise: Noise) -> Claim:
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


def claim_random(p: pd.DataFrame, noise: Noise) -> Claim:
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


CLAIM_CHECKS: tuple[Callable[[pd.DataFrame, Noise], Claim], ...] = (
    claim_general, claim_dip, claim_finetune, claim_specificity, claim_boost, claim_plus_order,
    claim_distance, claim_random)


def check_claims(results: pd.DataFrame, metric: str = "top1_paper", dataset: str = "") -> list[Claim]:
    """All eight claims on one dataset's results (raw result rows; prepared here)."""
    p = prepare(results, metric)
    if not dataset and p["dataset"].nunique() > 1:
        raise ValueError(f"results hold datasets {sorted(p['dataset'].unique())}: pass dataset=")
    if dataset:
        p = p[p.dataset == dataset]
    elif len(p):
        dataset = str(p["dataset"].iloc[0])
    noise = noise_level(p)
    claims = [check(p, noise) for check in CLAIM_CHECKS]
    return [replace(c, dataset=dataset) for c in claims]


# (split, target_half, source_half, treatment) of each reference column; random halves are expanded below.
_REFERENCE_ROWS = {
    "BnB": "selffer", "AnB": "transfer", "BnB+": "selffer+", "AnB+": "transfer+",
    "natural←man-made": ("natman", "B", "A", "transfer"), "man-made←natural": ("natman", "A", "B", "transfer"),
    "random (all classes)": ("all", "all", None, "random"),
}


def paper_results(values: Optional[dict] = None, dataset: str = "imagenet") -> pd.DataFrame:
    """The paper's table as result rows (one trial per point), for self-checks and tests.

    Random halves: 4 splits x 2 target halves, one base each at 0.625 + sd 0.0055 (mean exactly 0.625),
    and every BnB/AnB/BnB+/AnB+ value in each of the 8 target tasks. `values` replaces columns of
    PAPER_REFERENCE (same names, 8 values for n = 0..7; n = 0 is used only for the natman/random bases).
    """
    table = {**PAPER_REFERENCE, **(values or {})}
    rows = []

    def add(split, target, source, treatment, n, value):
        rows.append({"dataset": dataset, "split": split, "target_half": target, "source_half": source,
                     "n": n, "treatment": treatment, "seed": 0, "top1_paper": float(value),
                     "top1_final": float(value), "status": "ok"})

    z = np.array([-3, -2, -1, 0, 0, 1, 2, 3]) / 2.0  # mean 0, sample sd 1
    tasks = [(f"random:{s}", t) for s in range(4) for t in ("A", "B")]
    for (split, target), zi in zip(tasks, z):
        add(split, target, None, "base", 0, PAPER_REFERENCE["BnB"][0] + PAPER_BASE_SD * zi)
        other = "A" if target == "B" else "B"
        for column in ("BnB", "AnB", "BnB+", "AnB+"):
            treatment = _REFERENCE_ROWS[column]
            source = target if treatment.startswith("selffer") else other
            for n in range(1, 8):
                add(split, target, source, treatment, n, table[column][n])
    for column in ("natural←man-made", "man-made←natural", "random (all classes)"):
        split, target, source, treatment = _REFERENCE_ROWS[column]
        add(split, target, None, "base", 0, table[column][0])
        for n in range(1, 8):
            add(split, target, source, treatment, n, table[column][n])
    df = pd.DataFrame(rows)
    df.insert(0, "key", [f"k{i:04d}" for i in range(len(df))])
    df.insert(1, "name", [f"{t} n={n} {s} {h}" for t, n, s, h in
                          zip(df.treatment, df.n, df.split, df.target_half)])
    return df
