"""The statistics of a sweep: each trial paired with its base, the noise level, and 95% CIs.

Every comparison between treatments uses each trial's accuracy *relative to the base of its own target
task* (same dataset, split and target half): ``delta = acc - base`` and ``drop = 1 - acc / base``.
Pairing with the own base removes the difference in difficulty between halves, so a partial sweep (a
half whose transfers are not all in yet) does not bias a comparison. A random-split trial whose own
base is absent falls back to the mean of all random-split bases of the dataset (the paper's 0.625).

Noise: the spread of base replicates (pooled within a target task when some task has two or more base
seeds, else across the random-split bases as the paper computes its sd 0.0055, else the fixed
``FALLBACK_NOISE_SD``); the claims' tolerance is ``TOL_SIGMAS`` times it.

Confidence intervals: a *replicate* is one (split, seed). The two directions of a random split with
one seed share their two bases crosswise (AnB->B copies baseA, BnA->A copies baseB), so they are not
independent: a contrast is first computed per cell (split, target half, seed), on the cells that hold
every term, each trial paired with the base of its own target and seed (pbase, pdelta, pdrop); the cells
of a replicate are averaged; the CI is a Student t interval over replicates. Replicates of different
random splits sit in one sample, so split-to-split variance enters the CI. When fewer than two
replicates hold every term (different splits, as man-made/natural against the random halves), the
difference of the terms' replicate means gets the Welch–Satterthwaite CI.

Power: `detectable(interval)` is the smallest true effect the interval's test would find (95 % CI
excluding 0) with 80 % probability: (t(0.975, df) + t(0.80, df)) x standard error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

RANDOM_SPLIT, NATMAN, ALL, OTHER = "random-split", "natman", "all", "other"
# The paper's spread between random splits (0.5 pp); used as sd when fewer than 2 bases exist.
FALLBACK_NOISE_SD = 0.005
# Means of a few networks compared with a base mean: a two-sigma band. The paper's own claim 3 needs
# it (its BnB+ at n=1 is 0.007 below base, 1.3 sd).
TOL_SIGMAS = 2.0
REQUIRED = ("dataset", "split", "target_half", "n", "treatment")
CI_METHOD = "95% CI = mean ± t·sd/√k with t = t(0.975, k−1), the Student t quantile (scipy); none for k = 1"
CONTRAST_METHOD = (
    "CIs of the claims (95%, Student t): the unit of replication is one (split, seed). "
    "Each trial is paired with the base of its own target half and seed; a difference of treatments is "
    "taken per (split, target half, seed) cell that holds every term, the cells of a unit (the two "
    "directions of a split, which share their bases crosswise) are averaged, and the interval is a "
    "one-sample t interval over units ('k=6': 6 units, df 5). Units of two random splits are one sample; "
    "with 3 or more splits and several seeds in a split, the interval is over split means instead "
    "('k=4 splits, clustered'), so that seeds nested in a split are not counted as independent; with one "
    "split every interval is conditional on that split (its halves and test sets). Where fewer than 2 "
    "units hold every term "
    "(different splits, as man-made/natural against the random halves), the terms' unit means are "
    "compared with the Welch standard error and Welch–Satterthwaite df, rounded down ('k=3 vs 6, "
    "Welch'). The margin is the distance of the difference to its rule's threshold, positive where the "
    "rule is met; the deciding point of a claim is the one with the smallest margin, and 'significant at "
    "95%' means the margin's CI excludes 0 (either side). Detectable effect: the smallest true "
    "difference the test finds with 80% power, (t(0.975, df) + t(0.80, df)) × standard error.")
UNIT = ("split", "seed")
CELL = ("split", "target_half", "seed")
PAIRED, CLUSTERED, WELCH, NONE = "paired", "clustered", "Welch", "none"


def t_quantile(p: float, df: int) -> float:
    """The p quantile of Student's t with df degrees of freedom (nan for df < 1)."""
    return float(student_t.ppf(p, df)) if df >= 1 else math.nan


def t_critical(df: int) -> float:
    """Two-sided 95% Student t quantile for df degrees of freedom (nan for df < 1)."""
    return t_quantile(0.975, df)


def t_power(df: int) -> float:
    """One-sided 80% Student t quantile for df degrees of freedom (nan for df < 1)."""
    return t_quantile(0.80, df)


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
    """A mean with its 95% CI. k: replicates (units when paired, splits when clustered, the smallest
    group when Welch); sizes: the group sizes (Welch) or (k,); method: 'paired', 'clustered', 'Welch' or
    'none' (no CI); se and df: the standard error and degrees of freedom behind the interval; splits:
    the random splits its units come from (one split: the interval is conditional on it)."""

    mean: float
    low: float
    high: float
    k: int
    method: str
    sizes: tuple = ()
    se: float = math.nan   # standard error of the mean (nan without a CI)
    df: int = 0            # degrees of freedom of the t quantile (0 without a CI)
    splits: tuple = ()

    @property
    def has_ci(self) -> bool:
        return self.low == self.low and self.high == self.high

    @property
    def conditional_on(self) -> str:
        """The one split an interval with a CI rests on ('' when its units span several)."""
        return str(self.splits[0]) if self.has_ci and len(self.splits) == 1 else ""

    def bounds(self, level: float) -> tuple[float, float]:
        """The interval at another confidence level (0.90 for TOST), from the same se and df."""
        if not self.has_ci:
            return math.nan, math.nan
        if self.se == 0:
            return self.mean, self.mean
        half = t_quantile(0.5 + level / 2, self.df) * self.se
        return self.mean - half, self.mean + half

    def excludes_zero(self) -> Optional[bool]:
        """True when the CI lies on one side of 0; None without a CI."""
        return (self.low > 0 or self.high < 0) if self.has_ci else None

    def text_at(self, level: float) -> str:
        """'[-0.0065, +0.0007]': the interval at another level (0.90 for TOST); '—' without a CI."""
        if not self.has_ci:
            return "—"
        low, high = self.bounds(level)
        return f"[{low:+.4f}, {high:+.4f}]"

    def text(self, size: bool = True) -> str:
        """'+0.1623 [+0.1410, +0.1830] (k=6)', '... (k=3 vs 6, Welch)', '+0.0100 (k=1, no CI)';
        size=False leaves out the parenthesis."""
        k = {WELCH: f"k={' vs '.join(map(str, self.sizes))}, Welch",
             CLUSTERED: f"k={self.k} splits, clustered"}.get(self.method, f"k={self.k}")
        ci = f" [{_signed(self.low)}, {_signed(self.high)}]" if self.has_ci else ""
        where = f", conditional on split {self.conditional_on}" if self.conditional_on else ""
        tail = f" ({k}{where})" if self.has_ci else f" ({k}, no CI)"
        return f"{_signed(self.mean)}{ci}{tail if size else ''}"


MIN_CLUSTERS = 3  # with fewer splits a split-level variance cannot be estimated


def _welch(groups: list[tuple[float, np.ndarray]], splits: tuple = ()) -> Interval:
    """sum c·mean(v) over groups with the Welch–Satterthwaite CI; no CI when a group has one value."""
    sizes = tuple(len(v) for _, v in groups)
    mean = float(sum(c * v.mean() for c, v in groups)) if min(sizes) else math.nan
    if min(sizes) < 2:
        return Interval(mean, math.nan, math.nan, min(sizes), NONE, sizes, splits=splits)
    parts = [c * c * v.var(ddof=1) / len(v) for c, v in groups]
    se = math.sqrt(sum(parts))
    if se == 0:  # every group constant: the difference is exact
        return Interval(mean, mean, mean, min(sizes), WELCH, sizes, 0.0, sum(sizes) - len(sizes), splits)
    df = int(math.floor(se ** 4 / sum(q * q / (len(v) - 1) for q, (_, v) in zip(parts, groups)) + 1e-9))
    half = t_critical(df) * se
    return Interval(mean, mean - half, mean + half, min(sizes), WELCH, sizes, se, df, splits)


def interval_of(values: np.ndarray, method: str = PAIRED, splits: tuple = ()) -> Interval:
    """The one-sample Student t interval of the mean of some replicate values (no CI for one value)."""
    s = describe(values)
    k = s["count"]
    se = s["sd"] / math.sqrt(k) if k >= 2 else math.nan
    return Interval(s["mean"], s["ci_low"], s["ci_high"], k, method if k >= 2 else NONE, (k,), se,
                    k - 1 if k >= 2 else 0, splits)


def contrast(terms: Sequence[tuple[float, pd.DataFrame]], column: str,
             unit: Sequence[str] = UNIT, cell: Sequence[str] = CELL) -> Interval:
    """The 95% CI of sum coef·mean(rows[column]) over terms (coef, rows).

    Paired when at least 2 units hold every term: the contrast per cell (only cells present in every
    term), averaged over the cells of each unit, then a Student t interval over units, or over split
    means when the units come from MIN_CLUSTERS or more splits and some split holds several (seeds are
    nested in splits). Otherwise Welch on each term's unit means. A single term is the CI of its mean
    over units. The interval records the splits behind it.
    """
    cleaned = [(float(c), rows[rows[column].notna()]) for c, rows in terms]
    per_cell = [rows.groupby(list(cell), dropna=False)[column].mean() for _, rows in cleaned]
    joined = pd.concat(per_cell, axis=1, join="inner") if per_cell else pd.DataFrame()
    split_level = list(unit).index("split") if "split" in unit else None
    if len(joined):
        values = pd.Series(joined.to_numpy() @ np.array([c for c, _ in cleaned]), index=joined.index)
        by_unit = values.groupby(level=[list(cell).index(u) for u in unit], dropna=False).mean()
        if len(by_unit) >= 2:
            if split_level is None:
                return interval_of(by_unit.to_numpy())
            splits = tuple(sorted({str(s) for s in by_unit.index.get_level_values(split_level)}))
            per_split = by_unit.groupby(level=split_level)
            if len(splits) >= MIN_CLUSTERS and per_split.size().max() >= 2:
                return interval_of(per_split.mean().to_numpy(), CLUSTERED, splits)
            return interval_of(by_unit.to_numpy(), PAIRED, splits)
    splits = tuple(sorted({str(s) for _, rows in cleaned for s in rows["split"]})) if split_level is not None \
        and all("split" in rows.columns for _, rows in cleaned) else ()
    return _welch([(c, rows.groupby(list(unit), dropna=False)[column].mean().to_numpy(dtype=float))
                   for c, rows in cleaned], splits)


def curvature_weights(ns: Sequence[int]) -> np.ndarray:
    """The quadratic orthogonal-polynomial contrast over the layers ns: orthogonal to a constant and to
    a linear trend, positive at the ends (a U shape is positive), scaled so its positive weights sum to
    1 (n = 2..7: +.5, −.1, −.4, −.4, −.1, +.5). Needs 3 or more distinct n."""
    x = np.asarray(sorted(ns), float)
    if len(set(x)) < 3:
        raise ValueError("a curvature contrast needs 3 or more distinct n")
    q, _ = np.linalg.qr(np.vander(x - x.mean(), 3, increasing=True))
    w = q[:, 2] * (1.0 if q[0, 2] > 0 else -1.0)
    w[np.abs(w) < 1e-12] = 0.0
    return w / w[w > 0].sum()


def split_icc(prepared: pd.DataFrame) -> tuple[float, int]:
    """The intraclass correlation of random-split base accuracy by split (one-way ANOVA estimator,
    ICC(1), clipped at 0), and the number of splits; nan with fewer than MIN_CLUSTERS splits or no
    split holding two bases. How much of the bases' spread is between splits rather than seeds."""
    bases = prepared[(prepared.treatment == "base") & (prepared.family == RANDOM_SPLIT)]
    groups = [g.to_numpy(float) for _, g in bases.groupby("split")["value"]]
    if len(groups) < MIN_CLUSTERS or max(len(g) for g in groups) < 2:
        return math.nan, len(groups)
    sizes = np.array([len(g) for g in groups], float)
    grand = np.concatenate(groups).mean()
    msb = sum(n * (g.mean() - grand) ** 2 for n, g in zip(sizes, groups)) / (len(groups) - 1)
    msw = sum(((g - g.mean()) ** 2).sum() for g in groups) / (sizes.sum() - len(groups))
    n0 = (sizes.sum() - (sizes ** 2).sum() / sizes.sum()) / (len(groups) - 1)
    denom = msb + (n0 - 1) * msw
    if denom <= 1e-18:  # every base equal (to rounding): no variance to apportion
        return math.nan, len(groups)
    return max(0.0, float((msb - msw) / denom)), len(groups)


def detectable(interval: Interval) -> float:
    """The smallest true effect a 95% test on this interval detects with 80% power (nan without a CI)."""
    if not interval.has_ci or interval.se != interval.se or interval.df < 1:
        return math.nan
    return (t_critical(interval.df) + t_power(interval.df)) * interval.se


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


def pair_with_bases(results: pd.DataFrame, metric: str = "top1_paper") -> pd.DataFrame:
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
