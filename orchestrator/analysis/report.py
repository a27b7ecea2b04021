"""The sweep report: figures (matplotlib PNG), the results table, the paper's claims, missing trials.

Input is the results table (the result rows of docs/contracts.md) and, optionally, the planned trials.
Everything here draws or writes what exists: a partial sweep gives a partial report, never an error.
The claim logic and the statistics live in orchestrator/analysis/claims.py.

Files and symlinks: every file is written by orchestrator/output_files.py, which never writes through
a symlink. A file the report owns
(`owned_names`: report.md, its tables, transfer/distance figures plain or per dataset) that the new
report does not write is removed, so a folder never mixes two reports; nothing else is ever removed.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from orchestrator.analysis.claims import NATMAN_DIRECTIONS, Claim, check_claims, check_study  # noqa: E402
from orchestrator.analysis.convergence import convergence_md  # noqa: E402
from orchestrator.analysis.paper import PAPER_BASE_SD, PAPER_REFERENCE, paper_results  # noqa: E402
from orchestrator.analysis.stats import (  # noqa: E402
    ALL,
    CI_METHOD,
    CONTRAST_METHOD,
    MIN_CLUSTERS,
    NATMAN,
    RANDOM_SPLIT,
    REQUIRED,
    describe,
    noise_level,
    pair_with_bases,
    significance,
    split_icc,
)
from orchestrator.analysis.verdicts import MEANING, VERDICTS  # noqa: E402
from orchestrator.output_files import output_folder, remove_file, replacing  # noqa: E402
from sweepcore.settings import PROTOCOL_VERSION  # noqa: E402
from sweepcore.vocabulary import DATASETS, TREATMENT_LABEL, TREATMENTS  # noqa: E402

X_LABEL = "layer n at which the network is cut"
# The paper's Figure 2 colours and markers; offset = the per-treatment horizontal jitter.
STYLE: dict[str, dict[str, Any]] = {
    "base": dict(label="base, n = 0", color="white", marker="o", offset=0.0),
    "selffer": dict(label="BnB selffer, frozen", color="#1f3fbf", marker="o", offset=-0.21),
    "selffer+": dict(label="BnB+ selffer, fine-tuned", color="#7fb8ff", marker="o", offset=-0.07),
    "transfer": dict(label="AnB transfer, frozen", color="#d62020", marker="D", offset=0.07),
    "transfer+": dict(label="AnB+ transfer, fine-tuned", color="#ff8fc8", marker="D", offset=0.21),
}
# Which sweep series each reference column is compared with: (family, target, treatment).
REFERENCE_SERIES = {
    "BnB": (RANDOM_SPLIT, "", "selffer"), "AnB": (RANDOM_SPLIT, "", "transfer"),
    "BnB+": (RANDOM_SPLIT, "", "selffer+"), "AnB+": (RANDOM_SPLIT, "", "transfer+"),
    "natural←man-made": (NATMAN, "B", "transfer"), "man-made←natural": (NATMAN, "A", "transfer"),
    "random (all classes)": (ALL, "all", "random"),
}
MISSING_NAMES_CAP = 40
# What a reader must know about a dataset before reading its man-made/natural results.
DATASET_CAVEATS = {
    "fashion-animals": (
        "Man-made/natural here is Fashion-MNIST clothing against Animal-MNIST animal silhouettes: two "
        "sources that also differ in low-level statistics (15.96 % of animal pixels are saturated at 255, "
        "0.80 % of clothing pixels; measured on the training arrays). Its drop therefore mixes a domain "
        "shift into the task distance: it appears already at n = 1 (natural←man-made lost 8 pp at n = 1 "
        "in the 5-epoch standard study, where the paper shows +0.4 pp) and need not grow monotonically with "
        "n. Claim 7 compares it with the random-split drop at n ≥ 3 only, but part of the gap it finds is "
        "this shift, not the semantic distance the paper meant."),
}


# ---------------------------------------------------------------- labels
def top_ks(results: pd.DataFrame) -> list[int]:
    """The distinct settings['train']['top_k'] of the rows' settings_json, sorted; [] when the column is
    absent or no row's settings name it."""
    if "settings_json" not in results.columns:
        return []
    ks = set()
    for text in results["settings_json"].dropna().unique():
        try:
            k = json.loads(text)["train"]["top_k"]
        except (TypeError, ValueError, KeyError):
            continue
        if k is not None:
            ks.add(int(k))
    return sorted(ks)


def metric_label(results: pd.DataFrame, metric: str) -> str:
    """What the metric is, for axes and text: top1_paper names its k from settings_json (the paper's
    k = 10 is a setting, not a constant); without settings it is just 'paper metric'."""
    if metric == "top1_final":
        return "top-1 at the last evaluation"
    if metric != "top1_paper":
        return metric
    ks = top_ks(results)
    if not ks:
        return "top-1 accuracy, paper metric"
    if len(ks) == 1:
        return f"top-1 accuracy, mean of the {ks[0]} best evals"
    return f"top-1 accuracy, mean of the top-k best evals (k = {', '.join(map(str, ks))})"


# ---------------------------------------------------------------- tables
def target_key(family: str, split: str, target: str) -> str:
    """Random halves are pooled over splits and directions (''); other families keep their target."""
    if family == RANDOM_SPLIT:
        return ""
    return target if family in (NATMAN, ALL) else f"{split}/{target}"


def series_label(family: str, target: str, treatment: str) -> str:
    """Column name of a series, in paper notation (BnB, AnB+, natural←man-made, random (all classes))."""
    t = TREATMENT_LABEL.get(treatment, treatment)
    if family == RANDOM_SPLIT:
        return t
    if family == NATMAN:
        if treatment == "transfer" and target in NATMAN_DIRECTIONS:
            return NATMAN_DIRECTIONS[target]
        return f"{t} {dict(A='man-made', B='natural').get(target, target)}"
    return f"{t} (all classes)" if family == ALL else f"{t} {target}"


def summarize(results: pd.DataFrame, metric: str = "top1_paper") -> pd.DataFrame:
    """Long table: one row per (dataset, family, target, treatment, n) with count, mean, sd, 95% CI."""
    p = pair_with_bases(results, metric)
    cols = ["dataset", "family", "target", "treatment", "series", "n", "count", "mean", "sd", "ci_low",
            "ci_high"]
    if p.empty:
        return pd.DataFrame(columns=cols)
    p = p.assign(target=[target_key(f, s, t) for f, s, t in zip(p.family, p.split, p.target_half)])
    rows = []
    for (ds, fam, tgt, tr, n), g in p.groupby(["dataset", "family", "target", "treatment", "n"]):
        rows.append({"dataset": ds, "family": fam, "target": tgt, "treatment": tr,
                     "series": series_label(fam, tgt, tr), "n": int(n), **describe(g["value"])})
    out = pd.DataFrame(rows, columns=cols)
    rank = out["treatment"].map(lambda t: TREATMENTS.index(t) if t in TREATMENTS else len(TREATMENTS))
    fam_rank = out["family"].map(lambda f: {RANDOM_SPLIT: 0, NATMAN: 1, ALL: 2}.get(f, 3))
    # The paper's column order: natural<-man-made (target B) before man-made<-natural (target A).
    tgt_rank = [(-ord(t[0]) if f == NATMAN and t else 0, t) for f, t in zip(out.family, out.target)]
    return (out.assign(_f=fam_rank, _t=tgt_rank, _r=rank).sort_values(["dataset", "_f", "_t", "_r", "n"])
            .drop(columns=["_f", "_t", "_r"]).reset_index(drop=True))


def _cell(row: Optional[pd.Series]) -> str:
    if row is None:
        return "—"
    if row["count"] < 2:
        return f"{row['mean']:.3f} ({row['count']})"
    return f"{row['mean']:.3f} ± {row['sd']:.3f} ({row['count']})"


def _columns(summary: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(family, target, treatment) of each column of the wide table; base only where nothing else."""
    cols = []
    for (fam, tgt), g in summary.groupby(["family", "target"], sort=False):
        treatments = [t for t in dict.fromkeys(g["treatment"]) if t != "base"] or ["base"]
        cols += [(fam, tgt, t) for t in treatments]
    return cols


def _lookup(summary: pd.DataFrame, fam: str, tgt: str, treatment: str, n: int) -> Optional[pd.Series]:
    if n == 0:
        treatment = "base"
    hit = summary[(summary.family == fam) & (summary.target == tgt) & (summary.treatment == treatment)
                  & (summary.n == n)]
    return None if hit.empty else hit.iloc[0]


def results_table_md(summary: pd.DataFrame) -> str:
    """Markdown: rows n, a column per series, cells 'mean ± sd (count)'; n = 0 is the series' base."""
    if summary.empty:
        return "_no results_"
    cols = _columns(summary)
    ns = range(0, max(7, int(summary["n"].max())) + 1)
    lines = ["| n | " + " | ".join(series_label(*c) for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for n in ns:
        lines.append(f"| {n} | " + " | ".join(_cell(_lookup(summary, *c, n)) for c in cols) + " |")
    return "\n".join(lines)


def reference_table_md(summary: pd.DataFrame) -> str:
    """Markdown: each cell 'sweep mean / paper value' for the paper's seven columns, n = 0..7."""
    head = list(PAPER_REFERENCE)
    lines = ["| n | " + " | ".join(f"{h}: sweep / paper" for h in head) + " |", "|---|" + "---|" * len(head)]
    for n in range(8):
        cells = []
        for h in head:
            row = _lookup(summary, *REFERENCE_SERIES[h], n) if not summary.empty else None
            cells.append(f"{'—' if row is None else format(row['mean'], '.3f')} / {PAPER_REFERENCE[h][n]:.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def missing_trials(results: pd.DataFrame, planned: pd.DataFrame) -> pd.DataFrame:
    """Planned trials that have no result: by key when both tables have one, else by coordinates."""
    if "key" in planned.columns and "key" in results.columns:
        return planned[~planned["key"].isin(set(results["key"]))].reset_index(drop=True)
    coords = [c for c in ("dataset", "split", "target_half", "source_half", "n", "treatment", "seed")
              if c in planned.columns and c in results.columns]
    done = set(map(tuple, results[coords].astype(str).to_numpy()))
    have = [tuple(r) not in done for r in planned[coords].astype(str).to_numpy()]
    return planned[have].reset_index(drop=True)


def missing_md(missing: pd.DataFrame, planned_total: int, cap: int = MISSING_NAMES_CAP) -> str:
    """Markdown: how many planned trials lack a result, counts per treatment, and (up to cap) names."""
    if missing.empty:
        return f"All {planned_total} planned trials have a result."
    counts = missing["treatment"].value_counts()
    order = sorted(counts.index, key=lambda t: TREATMENTS.index(t) if t in TREATMENTS else len(TREATMENTS))
    lines = [f"{len(missing)} of {planned_total} planned trials have no result yet.", "",
             "| treatment | missing |", "|---|---|"] + [f"| {t} | {counts[t]} |" for t in order] + [""]
    label = missing["name"] if "name" in missing.columns else missing["key"]
    lines += [f"- {name}" for name in label.head(cap)]
    if len(missing) > cap:
        lines.append(f"- … and {len(missing) - cap} more")
    return "\n".join(lines)


# ---------------------------------------------------------------- figures
def _xaxis(ax, max_n: int) -> None:
    ax.set_xticks(range(max_n + 1))
    ax.set_xticklabels(["0\n(base)"] + [str(n) for n in range(1, max_n + 1)])
    ax.set_xlim(-0.5, max_n + 0.5)
    ax.grid(True, axis="y", alpha=0.3)


def _ci_errors(stats: list[dict]) -> np.ndarray:
    lo = [s["mean"] - s["ci_low"] for s in stats]
    hi = [s["ci_high"] - s["mean"] for s in stats]
    return np.nan_to_num(np.array([lo, hi]), nan=0.0)  # one trial: no bar


def plot_transfer(prepared: pd.DataFrame, path: Union[str, Path], title: str, metric: str) -> bool:
    """Figure 2 of the paper for the random halves: every trial (top), means with 95% CI (bottom).

    Returns False (and writes nothing) when the table has no random-split trials.
    """
    rs = prepared[(prepared.family == RANDOM_SPLIT) & prepared.treatment.isin(list(STYLE))]
    if rs.empty:
        return False
    max_n = max(7, int(rs["n"].max()))
    rng = np.random.default_rng(0)  # a fixed jitter: the same table draws the same picture
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 10), sharex=True)
    base = rs[rs.treatment == "base"]["value"]
    base_mean = float(base.mean()) if len(base) else math.nan
    for tr, st in STYLE.items():
        rows = rs[rs.treatment == tr]
        if rows.empty:
            continue
        x = rows["n"].to_numpy() + st["offset"] + rng.uniform(-0.025, 0.025, len(rows))
        top.scatter(x, rows["value"], marker=st["marker"], facecolor=st["color"], edgecolor="black",
                    linewidth=0.6, s=40, label=f"{st['label']} ({len(rows)})", zorder=3)
        if tr == "base":
            continue
        ns = sorted(rows["n"].unique())
        stats = [describe(rows[rows.n == n]["value"]) for n in ns]
        xs, means, err = np.array(ns, float), [s["mean"] for s in stats], _ci_errors(stats)
        if base_mean == base_mean:  # start the line at the base, as the paper draws it
            xs, means = np.r_[0.0, xs], [base_mean] + means
            err = np.c_[[0.0, 0.0], err]
        bottom.errorbar(xs + st["offset"] * 0.5, means, yerr=err, color=st["color"], marker=st["marker"],
                        markeredgecolor="black", markeredgewidth=0.5, linewidth=1.8, capsize=3,
                        label=st["label"], zorder=3)
    if base_mean == base_mean:
        bottom.axhline(base_mean, color="black", linestyle="--", linewidth=1,
                       label=f"base mean {base_mean:.3f}", zorder=2)
    ylabel = metric_label(prepared, metric)
    splits = rs["split"].nunique()
    top.set_title(f"every trial, one point each ({splits} random split(s), both directions)")
    bottom.set_title("means; error bars = 95% CI (Student t), none for a single trial")
    for ax in (top, bottom):
        ax.set_ylabel(ylabel)
        _xaxis(ax, max_n)
        ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    bottom.set_xlabel(X_LABEL)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def distance_series(prepared: pd.DataFrame) -> list[tuple[str, str, str, pd.DataFrame]]:
    """(label, colour, marker, rows with a drop) for each relative-drop series that has data."""
    candidates = [
        ("AnB, random halves", "#d62020", "D",
         prepared[(prepared.family == RANDOM_SPLIT) & (prepared.treatment == "transfer")]),
        *[(name, colour, marker, prepared[(prepared.family == NATMAN) & (prepared.treatment == "transfer")
                                          & (prepared.target_half == t)])
          for (t, name), colour, marker in zip(NATMAN_DIRECTIONS.items(), ("#2a9d2a", "#8c5a2b"), ("o", "s"))],
        ("random frozen layers (vs own base)", "#666666", "X", prepared[prepared.treatment == "random"]),
    ]
    out = []
    for label, colour, marker, rows in candidates:
        rows = rows[rows["drop"].notna()]
        if not rows.empty:
            out.append((label, colour, marker, rows))
    return out


def plot_distance(prepared: pd.DataFrame, path: Union[str, Path], title: str, metric: str) -> bool:
    """Relative top-1 drop 1 - acc/base (own target's base) vs n for each transfer-like series.

    Returns False (and writes nothing) when no AnB, man-made/natural or random trial has a base.
    """
    series = distance_series(prepared)
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(9, 6))
    rng = np.random.default_rng(1)
    max_n = max(7, max(int(rows["n"].max()) for *_, rows in series))
    for label, colour, marker, rows in series:
        ax.scatter(rows["n"] + rng.uniform(-0.08, 0.08, len(rows)), rows["drop"], color=colour,
                   marker=marker, s=14, alpha=0.35, zorder=2)
        ns = sorted(rows["n"].unique())
        stats = [describe(rows[rows.n == n]["drop"]) for n in ns]
        err = np.c_[[0.0, 0.0], _ci_errors(stats)]
        ax.errorbar(np.r_[0, ns], [0.0] + [s["mean"] for s in stats], yerr=err, color=colour,
                    marker=marker, linewidth=1.8, capsize=3, label=f"{label} ({len(rows)})", zorder=3)
    ax.axhline(0.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(f"relative drop 1 − acc/base of own target\n({metric_label(prepared, metric)})")
    _xaxis(ax, max_n)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    ax.set_title(f"{title}\nrelative top-1 drop (means, 95% CI; faint points = trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- markdown
def _number(key: str, v: float) -> str:
    """Counts and layers as integers; differences signed; accuracies and drops plain."""
    if float(v).is_integer() and abs(v) >= 1:
        return str(int(v))
    signed = ")-" in key or key.startswith(("gap", "dip", "recovery"))
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _key_cells(c: Claim) -> str:
    """The deciding point's difference with its CI, and its margin to the rule with the significance."""
    d = c.deciding
    if d is None:
        return "— | —"
    rule = d.rule.replace("|", "\\|")  # |x| ≤ tol inside a table cell
    return f"{d.label}: {d.diff.text()} | {d.margin.text(size=False)} ({rule}): {significance(d)}"


def _power_cell(c: Claim) -> str:
    if c.detectable != c.detectable:
        return "—"
    if c.paper_effect != c.paper_effect:
        return f"{c.detectable:+.4f} / —"
    return f"{c.detectable:+.4f} / {c.paper_effect:+.4f}: {'powered' if c.powered else '**underpowered**'}"


VERDICT_LEGEND = "Verdicts: " + "; ".join(f"*{v}*: {MEANING[v]}" for v in VERDICTS) + "."


def replication_text(prepared: pd.DataFrame) -> str:
    """What the study's replication lets its intervals say: conditional on one split, two splits that
    cannot show split-level variance, or split-clustered intervals with the split ICC."""
    rs = prepared[prepared.family == RANDOM_SPLIT]
    splits = sorted(rs["split"].unique())
    seeds = sorted(rs["seed"].unique()) if "seed" in rs else [0]
    if not splits:
        return "Replication: no random split."
    if len(splits) == 1:
        return (f"Replication: one random split ({splits[0]}) × {len(seeds)} seed(s): seeds are nested in it, so "
                f"every CI is conditional on split {splits[0]} (its halves and its test sets); how much the "
                "results move from split to split is not in any interval here.")
    if len(splits) < MIN_CLUSTERS:
        return (f"Replication: {len(splits)} random splits × {len(seeds)} seed(s), units (split, seed) pooled; "
                f"with fewer than {MIN_CLUSTERS} splits no split-level variance can be checked.")
    icc, k = split_icc(prepared)
    icc_text = f"{icc:.2f}" if icc == icc else "undefined (no spread within a split)"
    return (f"Replication: {len(splits)} random splits × {len(seeds)} seed(s): intervals with several seeds "
            f"per split are over split means (clustered); split ICC of base accuracy {icc_text} "
            f"(one-way ANOVA, {k} splits).")


def claims_md(claims: list[Claim], noise_text: str, replication: str = "") -> str:
    """Markdown: the claims table (verdict, deciding point with its 95% CI and margin, deciding numbers,
    tolerance) and one detail line each, with every point's CI."""
    lines = [noise_text, "", *([replication, ""] if replication else []), CONTRAST_METHOD, "", VERDICT_LEGEND, "",
             "| # | claim | verdict | key difference, 95% CI | margin to the rule, 95% CI | power: detectable "
             "effect / paper's effect scaled | deciding numbers | tolerance |", "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        nums = "; ".join(f"{k} = {_number(k, v)}" for k, v in c.numbers.items()) or "—"
        lines.append(f"| {c.id} | {c.title} | **{c.verdict}** | {_key_cells(c)} | {_power_cell(c)} | {nums} | "
                     f"{c.tolerance:.4f} |")
    lines += [""] + [f"{c.id}. **{c.verdict}**: {c.detail}" for c in claims]
    return "\n".join(lines)


def _verdict_counts(claims: list[Claim]) -> str:
    counts: dict[str, int] = {}
    for c in claims:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "dataset"


def stale_banner(results: pd.DataFrame) -> str:
    """One line when rows are of an older protocol than this code's: their settings do not reproduce
    their numbers (docs/contracts.md, "Protocol bumps"). Empty when every row is current."""
    if "protocol" not in results.columns or results.empty:
        return ""
    old = results[results["protocol"] < PROTOCOL_VERSION]
    if old.empty:
        return ""
    protocols = ", ".join(str(p) for p in sorted(old["protocol"].unique()))
    return (f"> **Stale**: {len(old)} of {len(results)} rows are of protocol {protocols} (this code: "
            f"{PROTOCOL_VERSION}); their settings do not reproduce their numbers bitwise. The numbers stand as "
            "measured; run the sweep again to republish them under the current protocol.")


# ---------------------------------------------------------------- files
REPORT_MD = "report.md"
FIGURES = ("transfer", "distance")
TABLES = ("results.parquet", "base_curves.parquet")


def owned_names(datasets: Iterable[str] = ()) -> set[str]:
    """Every file name a report may write, hence may remove: report.md, TABLES, and each figure plain
    or per dataset (each known dataset and those given)."""
    suffixes = [""] + [f"-{_slug(ds)}" for ds in (*DATASETS, *datasets)]
    return {REPORT_MD, *TABLES} | {f"{fig}{suffix}.png" for fig in FIGURES for suffix in suffixes}


def write_tables(out_dir: Union[str, Path], tables: dict[str, Any],
                 within: Union[str, Path, None] = None) -> list[str]:
    """Write each Arrow table as out_dir/<name> (Parquet), atomically; a name whose table is None is
    not part of this report, and the file an earlier report left under it is removed. Names are TABLES.
    Returns the paths written."""
    import pyarrow.parquet as pq  # noqa: PLC0415 (Arrow only where tables are written)

    out = output_folder(out_dir, within)
    written = []
    for name, table in tables.items():
        if name not in TABLES:
            raise ValueError(f"{name!r} is not a report table (one of {', '.join(TABLES)})")
        path = out / name
        if table is None:
            remove_file(path)
            continue
        with replacing(path) as tmp:
            pq.write_table(table, tmp)
        written.append(str(path))
    return written


def write_report(results: pd.DataFrame, out_dir: Union[str, Path], planned: Optional[pd.DataFrame] = None,
                 title: str = "", metric: str = "top1_paper", curves: Optional[pd.DataFrame] = None,
                 within: Union[str, Path, None] = None, rounds: Sequence[str] = ()) -> dict:
    """Write transfer.png, distance.png (when data exists) and report.md into out_dir.

    results: result rows (docs/contracts.md); rows whose status is not 'ok' are ignored, and when
    `planned` is given, so are rows whose key is not planned. planned: the plan's trials (key, name,
    dataset, split, source_half, target_half, n, treatment, seed); those without a result are listed
    under 'Missing'. Several datasets give one section and one pair of figures (-<dataset>) each.
    curves: the bases' learning curves (key, step, top1), for the convergence check's plateaus.
    within: a folder out_dir must resolve inside (see `output_folder`). rounds: one line per round the
    driver judged (a sweep that replicates until decided), shown under 'Rounds'. Files are written atomically,
    symlinks at their names replaced, never followed; figures of an earlier report that this one does
    not draw are removed (module docstring).
    Returns {'files': [paths written], 'claims': [Claim, ...], 'convergence': {dataset: Convergence},
    'missing': [missing keys]}.
    """
    out = output_folder(out_dir, within)
    title = title or "Transfer sweep report"
    if results.empty:  # an empty store may give a table without the result columns
        results = pd.DataFrame(columns=[*REQUIRED, metric, "key"])
    if "status" in results.columns:
        results = results[results["status"] == "ok"]
    notes = []
    if planned is not None and "key" in results.columns and "key" in planned.columns:
        outside = ~results["key"].isin(set(planned["key"]))
        if outside.any():
            notes.append(f"{int(outside.sum())} result row(s) of trials outside the plan were ignored.")
        results = results[~outside]
    prepared = pair_with_bases(results, metric)
    summary = summarize(results, metric)
    files, all_claims, convergence = [], [], {}
    md = [f"# {title}", "",
          f"Metric: `{metric}`: {metric_label(results, metric)}. {len(prepared)} ok trial(s)"
          + (": " + ", ".join(f"{t} {c}" for t, c in prepared['treatment'].value_counts().items())
             if len(prepared) else "") + ".",
          "Random-split results are pooled over splits, directions and seeds (each point one trial); "
          "man-made/natural keeps its two directions; the random-weights control has its own base.",
          f"Self-check of the claim definitions: the paper's own table gives "
          f"{_verdict_counts(check_claims(paper_results()))}.",
          *notes, ""]
    if rounds:
        md += ["## Rounds", "", "The driver added units of replication while a named claim was undecided "
               "(the spec's `replicate` section); each round judged with the claims below:", "",
               *[f"{i}. {line}" for i, line in enumerate(rounds, 1)], ""]
    stale = stale_banner(results)
    if stale:
        md.insert(2, stale + "\n")
    datasets = sorted(prepared["dataset"].unique())
    for ds in datasets:
        p, s = prepared[prepared.dataset == ds], summary[summary.dataset == ds]
        suffix = "" if len(datasets) == 1 else f"-{_slug(ds)}"
        conv, claims = check_study(results, metric, dataset=ds, curves=curves)
        all_claims += claims
        convergence[ds] = conv
        if not conv.shown:
            md.insert(2, f"> {'`' + ds + '`: ' if len(datasets) > 1 else ''}{conv.headline()}\n")
        noise = noise_level(p)
        md += [f"## Dataset `{ds}`", "", "### Convergence", "", convergence_md(conv),
               "### The paper's claims", "",
               claims_md(claims, f"Noise: base sd = {noise.sd:.4f} ({noise.source}) → tolerance "
                                 f"{noise.tol:.4f}. Comparisons pair every trial with the base of its "
                                 "own target task.", replication_text(p)), "",
               *([f"_Caveat: {DATASET_CAVEATS[ds]}_", ""] if ds in DATASET_CAVEATS and (p.family == NATMAN).any()
                 else []),
               "### Results: mean ± sd (count) per treatment and n", "",
               "n = 0 is the base of the series' target task; random halves pool splits, directions "
               f"and seeds. Error bars in the figures: {CI_METHOD}.", "",
               results_table_md(s), "",
               "### Beside the paper: ImageNet-scale reference, Yosinski et al. 2014", "",
               f"Paper values are ImageNet top-1 (random-half base 0.625, sd {PAPER_BASE_SD} over 8 "
               "bases); the sweep's are its own dataset and scale, so compare shapes, not levels.", "",
               reference_table_md(s), "", "### Figures", ""]
        for name, plot, caption, absent in (
                ("transfer", plot_transfer, "every trial and the means by n (paper Figure 2); the "
                 "spread pools both halves, so it includes their difference in difficulty, which the "
                 "claims remove by pairing each trial with its own base",
                 "transfer figure not written: no random-split trials."),
                ("distance", plot_distance, "relative drop by n (paper Figures 3 and 4)",
                 "distance figure not written: the sweep has no AnB, man-made/natural transfer or "
                 "random-weights trials with a base, so distance data is absent.")):
            path = out / f"{name}{suffix}.png"
            with replacing(path) as tmp:
                drawn = plot(p, tmp, title if ds in title else f"{title} ({ds})", metric)
            if drawn:
                files.append(str(path))
                md += [f"![{name}]({path.name})", "", f"_{path.name}: {caption}._", ""]
            else:
                md += [f"_{absent}_", ""]
    if not datasets:
        md += ["_No results yet: no figures and no claims._", ""]
    missing_keys: list[str] = []
    if planned is not None:
        missing = missing_trials(results, planned)
        if "key" in missing.columns:
            missing_keys = [str(k) for k in missing["key"]]
        md += ["## Missing", "", missing_md(missing, len(planned)), ""]
    report = out / REPORT_MD
    with replacing(report) as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    files.append(str(report))
    drawn_names = {Path(f).name for f in files}
    for stale in sorted(owned_names(datasets) - drawn_names - {REPORT_MD, *TABLES}):
        remove_file(out / stale)  # an earlier report's figure: a folder never mixes two reports
    return {"files": files, "claims": all_claims, "convergence": convergence, "missing": missing_keys}
