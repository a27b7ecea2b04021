"""The statistics of a sweep and the paper's eight claims, as pure functions of a results table.

Every comparison between treatments uses each trial's accuracy *relative to the base of its own target
task* (same dataset, split and target half): ``delta = acc - base`` and ``drop = 1 - acc / base``.
Pairing with the own base removes the difference in difficulty between halves, so a partial sweep (a
half whose transfers are not all in yet) does not bias a comparison. A random-split trial whose own
base is absent falls back to the mean of all random-split bases of the dataset (the paper's 0.625).

Noise: ``noise_sd`` is the spread of base replicates (pooled within a target task when some task has
two or more base seeds, else across the random-split bases as the paper computes its sd 0.0055, else
the fixed ``FALLBACK_NOISE_SD``). "Within noise" comparisons use ``TOL_SIGMAS * noise_sd``; strict
inequalities of the paper (claims 5-8) are checked on the means with margin 0 and the detail says
whether the margin exceeds the noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np
import pandas as pd

HOLDS, FAILS, NO_DATA = "holds", "fails", "not enough data"
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
CI_METHOD = ("95% CI = mean ± t·sd/√k with t = t(0.975, k−1) from a built-in Student-t table "
             "(k−1 > 30 uses the next smaller tabulated df, k−1 > 120 the normal 1.96); none for k = 1")


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


@dataclass(frozen=True)
class Noise:
    """The noise level of a sweep: sd of base replicates, the tolerance derived from it, and why."""

    sd: float
    tol: float
    source: str


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


def family_of(split: str) -> str:
    """The group a split belongs to: random-split (random:<seed>), natman, all (1000-class), other."""
    if str(split).startswith("random:"):
        return RANDOM_SPLIT
    return {"natman": NATMAN, "all": ALL}.get(str(split), OTHER)


def prepare(results: pd.DataFrame, metric: str = "top1_paper") -> pd.DataFrame:
    """The ok rows with columns family, value (the metric), base (own target's base mean), delta, drop."""
    missing = [c for c in (*REQUIRED, metric) if c not in results.columns]
    if missing:
        raise ValueError(f"results lack column(s) {', '.join(missing)}")
    df = results
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    df = df.copy()
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


def _claim(cid, title, verdict, detail, numbers, tol) -> Claim:
    return Claim(cid, title, verdict, detail, {k: float(v) for k, v in numbers.items()}, float(tol))


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
    nums = {}
    for treatment, label in (("transfer", "AnB"), ("selffer", "BnB")):
        by_n = _by_n(_rows(p, treatment))
        nums.update({f"{label}({n})-base": by_n[n] for n in (1, 2) if n in by_n})
    if not nums:
        return _no_data(1, title, "needs random-split base and AnB or BnB at n = 1 or 2", noise.tol)
    bad = {k: v for k, v in nums.items() if abs(v) > noise.tol}
    absent = [f"{t}({n})" for t in ("AnB", "BnB") for n in (1, 2) if f"{t}({n})-base" not in nums]
    detail = (f"rule |x − base| ≤ {noise.tol:.4f}; " + ", ".join(f"{k} = {_f(v)}" for k, v in nums.items())
              + (f"; outside: {', '.join(bad)}" if bad else "") + (f"; absent: {', '.join(absent)}" if absent else ""))
    return _claim(1, title, FAILS if bad else HOLDS, detail, nums, noise.tol)


def claim_dip(p: pd.DataFrame, noise: Noise) -> Claim:
    """2. BnB has an interior minimum: min over lo<n<hi of BnB is below BnB(lo) - tol and BnB(hi) - tol.

    lo and hi are the smallest and largest n present (1 and 7 in a full sweep).
    """
    title = "Co-adaptation dip: BnB has an interior minimum and recovers at the top"
    by_n = _by_n(_rows(p, "selffer"))
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
    return _claim(2, title, HOLDS if ok else FAILS, detail, nums, noise.tol)


def claim_finetune(p: pd.DataFrame, noise: Noise) -> Claim:
    """3. BnB+ >= base - tol at every n present."""
    title = "Fine-tuning removes the dip: BnB+ ≥ base at every n"
    by_n = _by_n(_rows(p, "selffer+"))
    if not by_n:
        return _no_data(3, title, "needs random-split BnB+ with a base", noise.tol)
    nums = {f"BnB+({n})-base": v for n, v in sorted(by_n.items())}
    worst = min(by_n, key=by_n.get)
    ok = by_n[worst] >= -noise.tol
    detail = (f"rule BnB+(n) − base ≥ −{noise.tol:.4f} at n = {', '.join(map(str, sorted(by_n)))}; "
              f"lowest at n = {worst}: {_f(by_n[worst])}")
    return _claim(3, title, HOLDS if ok else FAILS, detail, nums, noise.tol)


def claim_specificity(p: pd.DataFrame, noise: Noise) -> Claim:
    """4. For n >= 3: AnB <= BnB + tol; gap BnB - AnB grows (least-squares slope > 0 and gap at the
    largest n >= gap at the smallest n >= 3); AnB at its largest n is its lowest point (over all n)."""
    title = "Specificity: AnB ≤ BnB for n ≥ 3, gap growing with n, AnB lowest at the top"
    anb, bnb = _by_n(_rows(p, "transfer")), _by_n(_rows(p, "selffer"))
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
             f"gap BnB − AnB " + ", ".join(f"n={n}: {_f(gap[n])}" for n in ns)
             + f"; slope {_f(slope)}/layer, growing: {'yes' if growing else 'no'}",
             f"AnB({top}) lowest: {'yes' if lowest else 'no'}"]
    return _claim(4, title, HOLDS if below and growing and lowest else FAILS, "; ".join(parts), nums,
                  noise.tol)


def claim_boost(p: pd.DataFrame, noise: Noise) -> Claim:
    """5. AnB+ > base of the same target at every n (mean of delta > 0, margin 0)."""
    title = "Generalisation boost: AnB+ > base of the same target at every n"
    by_n = _by_n(_rows(p, "transfer+"))
    if not by_n:
        return _no_data(5, title, "needs random-split AnB+ with a base")
    nums = {f"AnB+({n})-base": v for n, v in sorted(by_n.items())}
    ok = all(v > 0 for v in by_n.values())
    detail = ("rule AnB+(n) − base > 0 (strict, margin 0): " + ", ".join(f"n={n}: {_f(v)}" for n, v in
                                                                         sorted(by_n.items()))
              + _noise_note(by_n.values(), noise.tol))
    return _claim(5, title, HOLDS if ok else FAILS, detail, nums, 0.0)


def claim_plus_order(p: pd.DataFrame, noise: Noise) -> Claim:
    """6. AnB+ > BnB+ with both trained into the same target task: per (split, target, n) difference of
    means, averaged over targets; > 0 at every n that has a pair."""
    title = "AnB+ > BnB+ in the same target half"
    keys = ["split", "target_half", "n"]
    a = _rows(p, "transfer+").groupby(keys)["value"].mean()
    b = _rows(p, "selffer+").groupby(keys)["value"].mean()
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
    return _claim(6, title, HOLDS if ok else FAILS, detail, nums, 0.0)


NATMAN_DIRECTIONS = {"B": "natural←man-made", "A": "man-made←natural"}


def claim_distance(p: pd.DataFrame, noise: Noise) -> Claim:
    """7. For n >= 3: relative drop of AnB on man-made/natural (each direction present) > relative drop of
    AnB on the random halves."""
    title = "Task distance: man-made/natural drop > random-split drop for n ≥ 3"
    rnd = _by_n(_rows(p, "transfer"), "drop")
    nat = {t: _by_n(_rows(p, "transfer", NATMAN, t), "drop") for t in NATMAN_DIRECTIONS}
    nums, margins, bad = {}, [], []
    for t, by_n in nat.items():
        for n in sorted(n for n in by_n if n in rnd and n >= 3):
            name = NATMAN_DIRECTIONS[t]
            nums[f"drop {name}({n})"], nums[f"drop random({n})"] = by_n[n], rnd[n]
            margins.append(by_n[n] - rnd[n])
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
    return _claim(7, title, FAILS if bad else HOLDS, detail, nums, 0.0)


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
        margins = {n: rnd[n] - anb[n] for n in ns}
        rule = "relative drop 1 − acc/base of random > that of AnB (each against its own base)"
    else:    # worse = lower accuracy
        margins = {n: anb[n] - rnd[n] for n in ns}
        rule = "no base for one of them: absolute top-1 of random < AnB"
    what = "drop " if rel else ""
    nums = {**{f"{what}random({n})": rnd[n] for n in ns}, **{f"{what}AnB({n})": anb[n] for n in ns}}
    bad = [n for n in ns if margins[n] <= 0]
    detail = (f"rule {rule} (strict); compared on {column} at n = {', '.join(map(str, ns))}; smallest margin "
              f"{_f(min(margins.values()))}" + (f"; fails at n = {bad}" if bad else "")
              + _noise_note(margins.values(), _relative_tol(p, noise) if rel else noise.tol,
                            " relative" if rel else ""))
    return _claim(8, title, FAILS if bad else HOLDS, detail, nums, 0.0)


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
    return [Claim(c.id, c.title, c.verdict, c.detail, c.numbers, c.tolerance, dataset) for c in claims]


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
