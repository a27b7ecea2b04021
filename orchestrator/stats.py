"""The statistics of a sweep: each trial paired with its base, the noise level, and 95% CIs.

Every comparison between treatments uses each trial's accuracy *relative to the base of its own target
task* (same dataset, split and target half): ``delta = acc - base`` and ``drop = 1 - acc / base``.
Pairing with the own base removes the difference in difficulty between halves, so a partial sweep (a
half whose transfers are not all in yet) does not bias a comparison. A random-split trial whose own
base is absent falls back to the mean of all random-split bases of the dataset (the paper's 0.625).

Noise: the spread of base replicates (pooled within a target task when some task has two or more base
seeds, else across the random-split bases as the paper computes its sd 0.0055, else the fixed
``FALLBACK_NOISE_SD``); the claims' tolerance is ``TOL_SIGMAS`` times it.

Confidence intervals: a *replicate* is one (split, target half, seed): the trials of different
treatments that share it were trained into the same target task with the same replicate seed, and each
is paired with the base of that target and seed (pbase, pdelta, pdrop). A difference of treatments is
computed per replicate when at least two replicates hold every term (paired); otherwise (different
splits, as man-made/natural against the random halves) from the group means with the Welch–Satterthwaite
standard error and degrees of freedom.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

RANDOM_SPLIT, NATMAN, ALL, OTHER = "random-split", "natman", "all", "other"
# The paper's spread between random splits (0.5 pp); used as sd when fewer than 2 bases exist.
FALLBACK_NOISE_SD = 0.005
# Means of a few networks compared with a base mean: a two-sigma band. The paper's own claim 3 needs
# it (its BnB+ at n=1 is 0.007 below base, 1.3 sd).
TOL_SIGMAS = 2.0
REQUIRED = ("dataset", "split", "target_half", "n", "treatment")
# Two-sided 95% Student t quantiles t(0.975, df). df beyond the table uses the next smaller entry
# (conservative); df > 120 uses the normal 1.96.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
         26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
CI_METHOD = ("95% CI = mean ± t·sd/√k with t = t(0.975, k−1) from a built-in Student-t table "
             "(k−1 > 30 uses the next smaller tabulated df, k−1 > 120 the normal 1.96); none for k = 1")
CONTRAST_METHOD = (
    "CIs of the claims (95%, Student t from a built-in table): a replicate is one (split, target half, seed) and each "
    "trial is paired with the base of the same target and seed (the target's base mean when that seed has "
    "no base). Differences of treatments are taken per replicate when at least 2 replicates hold every "
    "term ('k=6': 6 paired differences); otherwise (different splits) from the group means with the Welch "
    "standard error and Welch–Satterthwaite df, rounded down ('k=3 vs 6, Welch'). The margin is the "
    "distance of the difference to its rule's threshold, positive where the rule is met; the deciding "
    "point of a claim is the one with the smallest margin, and 'significant at 95%' means the margin's CI "
    "excludes 0 (either side).")
UNIT = ("split", "target_half", "seed")
PAIRED, WELCH, NONE = "paired", "Welch", "none"


def t_critical(df: int) -> float:
    """Two-sided 95% Student t quantile for df degrees of freedom (nan for df < 1)."""
    if df < 1:
        return math.nan
    if df > 120:
        return 1.96
    return _T975[max(k for k in _T975 if k <= df)]


def describe(values: Iterable[float]) -> dict:
    """count, mean, sd (ddof 1) and the 95% CI bounds of some values; nan where undefined."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    k = len(v)
    mean = float(v.mean()) if k else math.nan
    sd = float(v.std(ddof=1)) if k >= 2 else math.nan
    half = t_critical(k - 1) * sd / math.sqrt(k) if k >= 2 else math.nan
    return {"count": k, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def _signed(x: float) -> str:
    """Four decimals, more when that would hide the sign of a bound near 0 (+0.000024, not +0.0000)."""
    return f"{x:+.6f}" if 5e-7 <= abs(x) < 5e-5 else f"{x:+.4f}"


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% CI. k: replicates (pairs when paired, the smallest group when Welch);
    sizes: the group sizes (Welch) or (k,) (paired); method: 'paired', 'Welch' or 'none' (no CI)."""

    mean: float
    low: float
    high: float
    k: int
    method: str
    sizes: tuple = ()

    @property
    def has_ci(self) -> bool:
        return self.low == self.low and self.high == self.high

    def excludes_zero(self) -> Optional[bool]:
        """True when the CI lies on one side of 0; None without a CI."""
        return (self.low > 0 or self.high < 0) if self.has_ci else None

    def text(self, size: bool = True) -> str:
        """'+0.1623 [+0.1410, +0.1830] (k=6)', '... (k=3 vs 6, Welch)', '+0.0100 (k=1, no CI)';
        size=False leaves out the parenthesis."""
        k = f"k={self.k}" if self.method != WELCH else f"k={' vs '.join(map(str, self.sizes))}, Welch"
        ci = f" [{_signed(self.low)}, {_signed(self.high)}]" if self.has_ci else ""
        tail = f" ({k})" if self.has_ci else f" ({k}, no CI)"
        return f"{_signed(self.mean)}{ci}{tail if size else ''}"


def _welch(groups: list[tuple[float, np.ndarray]]) -> Interval:
    """sum c·mean(v) over groups with the Welch–Satterthwaite CI; no CI when a group has one value."""
    sizes = tuple(len(v) for _, v in groups)
    mean = float(sum(c * v.mean() for c, v in groups)) if min(sizes) else math.nan
    if min(sizes) < 2:
        return Interval(mean, math.nan, math.nan, min(sizes), NONE, sizes)
    parts = [c * c * v.var(ddof=1) / len(v) for c, v in groups]
    se = math.sqrt(sum(parts))
    if se == 0:  # every group constant: the difference is exact
        return Interval(mean, mean, mean, min(sizes), WELCH, sizes)
    df = se ** 4 / sum(q * q / (len(v) - 1) for q, (_, v) in zip(parts, groups))
    half = t_critical(int(math.floor(df + 1e-9))) * se
    return Interval(mean, mean - half, mean + half, min(sizes), WELCH, sizes)


def contrast(terms: Sequence[tuple[float, pd.DataFrame]], column: str,
             unit: Sequence[str] = UNIT) -> Interval:
    """The 95% CI of sum coef·mean(rows[column]) over terms (coef, rows).

    Paired when at least 2 replicates (unit) appear in every term: the per-replicate value of the
    contrast, then a Student t interval of those (rows of a replicate absent from a term are left out).
    Otherwise Welch on all rows of each term. A single term is the CI of its mean (paired = per replicate).
    """
    cleaned = [(float(c), rows[rows[column].notna()]) for c, rows in terms]
    per_unit = [rows.groupby(list(unit), dropna=False)[column].mean() for _, rows in cleaned]
    joined = pd.concat(per_unit, axis=1, join="inner") if per_unit else pd.DataFrame()
    if len(joined) >= 2:
        values = joined.to_numpy() @ np.array([c for c, _ in cleaned])
        s = describe(values)
        return Interval(s["mean"], s["ci_low"], s["ci_high"], s["count"], PAIRED, (s["count"],))
    return _welch([(c, rows[column].to_numpy(dtype=float)) for c, rows in cleaned])


@dataclass(frozen=True)
class Noise:
    """The noise level of a sweep: sd of base replicates, the tolerance derived from it, and why."""

    sd: float
    tol: float
    source: str


def family_of(split: str) -> str:
    """The group a split belongs to: random-split (random:<seed>), natman, all (1000-class), other."""
    if str(split).startswith("random:"):
        return RANDOM_SPLIT
    return {"natman": NATMAN, "all": ALL}.get(str(split), OTHER)


def prepare(results: pd.DataFrame, metric: str = "top1_paper") -> pd.DataFrame:
    """The ok rows with columns family, value (the metric), base (own target's base mean), delta, drop,
    and pbase (the base of the same target and seed, else base), pdelta, pdrop: the per-replicate pairing
    the confidence intervals use. A table without a seed column counts every row as seed 0."""
    missing = [c for c in (*REQUIRED, metric) if c not in results.columns]
    if missing:
        raise ValueError(f"results lack column(s) {', '.join(missing)}")
    df = results
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    df = df.copy()
    if "seed" not in df.columns:
        df["seed"] = 0
    df["n"] = df["n"].astype(int)
    df["value"] = df[metric].astype(float)
    df = df[df["value"].notna()]
    df["family"] = [family_of(s) for s in df["split"]]
    own = df[df.treatment == "base"].groupby(["dataset", "split", "target_half"])["value"].mean()
    pooled = df[(df.treatment == "base") & (df.family == RANDOM_SPLIT)].groupby("dataset")["value"].mean()
    base = [own.get((d, s, t), pooled.get(d, math.nan) if f == RANDOM_SPLIT else math.nan)
            for d, s, t, f in zip(df["dataset"], df["split"], df["target_half"], df["family"])]
    df["base"] = np.asarray(base, dtype=float)
    df["delta"] = df["value"] - df["base"]
    df["drop"] = 1.0 - df["value"] / df["base"]
    same = df[df.treatment == "base"].groupby(["dataset", "split", "target_half", "seed"])["value"].mean()
    df["pbase"] = [same.get(key, b) for key, b in
                   zip(zip(df["dataset"], df["split"], df["target_half"], df["seed"]), df["base"])]
    df["pdelta"] = df["value"] - df["pbase"]
    df["pdrop"] = 1.0 - df["value"] / df["pbase"]
    return df


def noise_level(prepared: pd.DataFrame) -> Noise:
    """Base-replicate sd of a prepared table (see module docstring) and the tolerance it implies."""
    bases = prepared[prepared.treatment == "base"]
    groups = [g.to_numpy() for _, g in bases.groupby(["split", "target_half"])["value"] if len(g) >= 2]
    if groups:
        ss = sum(((g - g.mean()) ** 2).sum() for g in groups)
        dof = sum(len(g) - 1 for g in groups)
        sd, src = math.sqrt(ss / dof), f"pooled sd of base seeds within {len(groups)} target task(s)"
    else:
        rs = bases[bases.family == RANDOM_SPLIT]["value"]
        if len(rs) >= 2:
            sd, src = float(rs.std(ddof=1)), f"sd across {len(rs)} random-split bases"
        else:
            sd, src = FALLBACK_NOISE_SD, "fewer than 2 bases: the paper's 0.5 pp split spread"
    return Noise(sd, TOL_SIGMAS * sd, f"{src}; tolerance = {TOL_SIGMAS:g} × sd")


RULE_TEXT = {">": "x > {t}", "≥": "x ≥ {t}", "≤": "x ≤ {t}", "|≤|": "|x| ≤ {t}"}


@dataclass(frozen=True)
class Point:
    """One compared quantity of a claim: label (e.g. 'AnB+(3) − base'), its interval, and the rule
    'x <op> threshold' its mean must meet (op '>', '≥', '≤', or '|≤|' for |x| ≤ threshold)."""

    label: str
    diff: Interval
    op: str
    threshold: float = 0.0

    @property
    def rule(self) -> str:
        return RULE_TEXT[self.op].format(t=_signed(self.threshold) if self.op != "|≤|" else
                                         f"{self.threshold:.4f}")

    @property
    def margin(self) -> Interval:
        """Distance of the difference to its threshold, positive where the rule is met (|x| ≤ t: the side
        of the mean)."""
        d, t = self.diff, self.threshold
        upper = self.op == "≤" or (self.op == "|≤|" and d.mean >= 0)
        if self.op == "|≤|" and not upper:
            t = -t
        if upper:
            return replace(d, mean=t - d.mean, low=t - d.high, high=t - d.low)
        return replace(d, mean=d.mean - t, low=d.low - t, high=d.high - t)


def deciding_point(points: Sequence[Point]) -> Optional[Point]:
    """The point with the smallest margin (weakest where the claim holds, worst where it fails)."""
    defined = [p for p in points if p.margin.mean == p.margin.mean]
    return min(defined, key=lambda p: p.margin.mean) if defined else None


def significance(point: Point) -> str:
    """'significant at 95%' when the margin's CI excludes 0, 'not significant', or 'no CI (k=1)'."""
    excl = point.margin.excludes_zero()
    if excl is None:
        return f"no CI (k={point.diff.k})"
    return "significant at 95%" if excl else "not significant"
