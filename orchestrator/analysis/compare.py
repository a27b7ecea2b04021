"""`transfer-sweep compare`: two studies of the same design side by side, layer by layer, on one figure.

Each input is a results file (`results.parquet`, as `report --out` writes it; `base_curves.parquet`
beside it is read when there) or a sweep name in `--store`. Only the (split, target half, seed) cells
both studies hold are compared, so the two networks are judged on the same tasks, splits and seeds.
Every trial is paired with the base of its own target half and seed (`stats.pair_with_bases`), found
in the same input it came from. Inputs may share trials (a base both studies used) only with the same
numbers: a key names one network, and two rows of one key that disagree are refused, naming both. Per
arm and n the report gives each study's mean difference to its base with a 95% CI over units (split,
seed), and the paired difference between the studies. Each study's convergence check heads the
report: a comparison is only as good as the convergence of both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import matplotlib

matplotlib.use("Agg")  # no display: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from orchestrator.analysis.convergence import check_convergence  # noqa: E402
from orchestrator.analysis.stats import CELL, RANDOM_SPLIT, Interval, contrast, pair_with_bases  # noqa: E402
from orchestrator.errors import UsageError  # noqa: E402
from orchestrator.output_files import output_folder, replacing, write_text  # noqa: E402
from sweepcore.records import MEASURED  # noqa: E402
from sweepcore.vocabulary import TREATMENT_LABEL  # noqa: E402

ARMS = ("selffer", "transfer", "selffer+", "transfer+")
COLOURS = ("tab:blue", "tab:red")
MARKERS = {"selffer": "o", "transfer": "s", "selffer+": "^", "transfer+": "D"}


def paired(parts: Union[pd.DataFrame, list[pd.DataFrame]]) -> pd.DataFrame:
    """One prepared table of a study's inputs, each paired with its own bases, each trial's row once.
    Two inputs may hold the same trial (a shared base) only with the same numbers: a key names one
    network, so rows that disagree are a UsageError naming both, never one of them kept silently."""
    frames = [parts] if isinstance(parts, pd.DataFrame) else list(parts)
    check_one_row_per_key(frames)
    return pd.concat([pair_with_bases(f) for f in frames], ignore_index=True).drop_duplicates("key")


def check_one_row_per_key(frames: list[pd.DataFrame]) -> None:
    """UsageError (one line, both rows named) when two rows of one key disagree in what they measured
    (records.MEASURED; a column one of them lacks, or holds null in, is not compared)."""
    seen: dict[str, tuple[str, dict]] = {}
    for i, frame in enumerate(frames):
        source = str(frame.attrs.get("source", f"input {i + 1}"))
        for row in frame[["key", "name", *[c for c in MEASURED if c in frame.columns]]].to_dict("records"):
            first = seen.setdefault(row["key"], (source, row))
            if first[1] is row:
                continue
            differing = [c for c in MEASURED if not (pd.isna(first[1].get(c)) or pd.isna(row.get(c)))
                         and first[1][c] != row[c]]
            if differing:
                c = differing[0]
                raise UsageError(
                    f"key {row['key']} ({row['name']}) has two rows that disagree: {c} {_shown(first[1][c])} in "
                    f"{first[0]}, {_shown(row[c])} in {source}; a key names one network: leave out the input whose "
                    "row is wrong (`transfer-sweep verify` retrains a row to tell), or retrain it under a new key")


def _shown(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)[:12]


def common_cells(first: pd.DataFrame, second: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both prepared tables cut to the random-split (split, target half, seed) cells both hold."""
    def cells(df: pd.DataFrame) -> set:
        return set(map(tuple, df[df.family == RANDOM_SPLIT][list(CELL)].drop_duplicates().to_numpy()))
    both = cells(first) & cells(second)

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        return df[[tuple(r) in both for r in df[list(CELL)].to_numpy()]]
    return keep(first), keep(second)


def arm_rows(df: pd.DataFrame) -> list[tuple[str, int]]:
    """(treatment, n) of every arm a table holds, in arm order."""
    pairs = {(t, int(n)) for t, n in df[df.treatment.isin(ARMS)][["treatment", "n"]].drop_duplicates().to_numpy()}
    return sorted(pairs, key=lambda p: (ARMS.index(p[0]), p[1]))


def _pp(interval: Interval) -> str:
    if not interval.has_ci:
        return f"{interval.mean * 100:+.2f}"
    return f"{interval.mean * 100:+.2f} [{interval.low * 100:+.2f}, {interval.high * 100:+.2f}]"


def compare(first: Union[pd.DataFrame, list[pd.DataFrame]], second: Union[pd.DataFrame, list[pd.DataFrame]],
            labels: tuple[str, str], out: Path,
            curves: tuple[Optional[pd.DataFrame], Optional[pd.DataFrame]] = (None, None)) -> dict[str, Any]:
    """Write compare.png and compare.md to `out`; return the rows of the table."""
    a, b = common_cells(paired(first), paired(second))
    if a.empty:
        raise UsageError("the two studies share no random-split (split, target half, seed) cell: nothing to compare")
    arms = [arm for arm in arm_rows(a) if arm in set(arm_rows(b))]
    rows: list[dict] = []
    for treatment, n in arms:
        # each arm on the cells both studies hold for it: the two columns are the same tasks
        ra, rb = common_cells(a[(a.treatment == treatment) & (a.n == n)], b[(b.treatment == treatment) & (b.n == n)])
        rows.append({"arm": f"{TREATMENT_LABEL[treatment]}({n})", "treatment": treatment, "n": n,
                     "first": contrast([(1, ra)], "pdelta"), "second": contrast([(1, rb)], "pdelta"),
                     "difference": contrast([(1, rb), (-1, ra)], "pdelta")})
    out = output_folder(out)  # a real folder: never written through a symlink (output_files.py)
    with replacing(out / "compare.png") as tmp:
        _plot(a, b, rows, labels, tmp)
    units = a[list(CELL)].drop_duplicates()
    bases = [(label, df[df.treatment == "base"]["value"]) for label, df in zip(labels, (a, b))]
    lines = [f"# {labels[0]} vs {labels[1]}, layer by layer", "",
             f"The same {len(units)} target tasks (split, target half, seed) in both: "
             f"{', '.join(sorted(units['split'].unique()))}, seeds {sorted(units['seed'].unique().tolist())}. "
             "Each trial minus the base of its own target and seed, in percentage points; 95% CI over units "
             "(split, seed); the last column is the paired difference between the networks.", ""]
    for (label, base), df, curve in zip(bases, (a, b), curves):
        conv = check_convergence(df, curve)
        lines += [f"- **{label}**: base top-1 {base.mean():.4f} (sd {base.std(ddof=1):.4f}, {len(base)} bases); "
                  f"{conv.headline()}"]
    lines += ["", f"| arm | {labels[0]} − base | {labels[1]} − base | {labels[1]} − {labels[0]} |", "|---|---|---|---|"]
    lines += [f"| {r['arm']} | {_pp(r['first'])} | {_pp(r['second'])} | {_pp(r['difference'])} |" for r in rows]
    notes = _caveats(a, b, rows, labels)
    lines += ["", *[part for note in notes for part in (note, "")], "![compare](compare.png)", ""]
    write_text(out / "compare.md", "\n".join(lines))
    return {"rows": rows, "files": [str(out / "compare.png"), str(out / "compare.md")]}


def direction_split(a: pd.DataFrame, b: pd.DataFrame, treatment: str, n: int) -> dict[str, float]:
    """The second-minus-first difference of one arm within each direction (target half), in pp."""
    out = {}
    for half in sorted(set(a.target_half) & set(b.target_half)):
        ra, rb = (df[(df.treatment == treatment) & (df.n == n) & (df.target_half == half)] for df in (a, b))
        if len(ra) and len(rb):
            out[half] = contrast([(1, rb), (-1, ra)], "pdelta").mean * 100
    return out


def _caveats(a: pd.DataFrame, b: pd.DataFrame, rows: list[dict], labels: tuple[str, str]) -> list[str]:
    """What the table's intervals cannot say: one split, many cells, directions that disagree."""
    notes = []
    splits = sorted(a["split"].unique())
    if len(splits) == 1:
        notes.append(f"Every interval is conditional on split {splits[0]} (its halves and test sets): the seeds are "
                     "nested in it, so split-to-split variation is in none of them.")
    notes.append(f"The table holds {len(rows)} intervals, each at 95% and none adjusted for multiplicity: about one "
                 f"in twenty excludes 0 by chance.")
    disagree = []
    for r in rows:
        if r["treatment"] != "transfer":
            continue
        by_half = direction_split(a, b, r["treatment"], r["n"])
        if len(by_half) == 2 and min(by_half.values()) < 0 < max(by_half.values()):
            disagree.append(f"{r['arm']} (" + ", ".join(f"target {h} {v:+.2f}" for h, v in by_half.items()) + ")")
    if disagree:
        notes.append(f"AnB is compared within each direction (each trial against the base of its own target); "
                     f"the two directions disagree in sign on {labels[1]} − {labels[0]} at " + "; ".join(disagree)
                     + ": read those rows as the mean of two different tasks, not one effect.")
    return notes


def _plot(a: pd.DataFrame, b: pd.DataFrame, rows: list[dict], labels: tuple[str, str], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    max_n = max(r["n"] for r in rows) if rows else 7
    for side, (label, colour) in enumerate(zip(labels, COLOURS)):
        df = (a, b)[side]
        base = float(df[df.treatment == "base"]["value"].mean())
        for treatment in ARMS:
            mine = [r for r in rows if r["treatment"] == treatment]
            if not mine:
                continue
            xs = [r["n"] + (side - 0.5) * 0.12 for r in mine]
            ivs = [r[("first", "second")[side]] for r in mine]
            means = [iv.mean * 100 for iv in ivs]
            err = [[(iv.mean - iv.low) * 100 if iv.has_ci else 0 for iv in ivs],
                   [(iv.high - iv.mean) * 100 if iv.has_ci else 0 for iv in ivs]]
            style = "-" if len(mine) > 1 else "none"
            right.errorbar(xs, means, yerr=err, color=colour, marker=MARKERS[treatment], linestyle=style, capsize=3,
                           markeredgecolor="black", markeredgewidth=0.5,
                           label=f"{label} {TREATMENT_LABEL[treatment]}")
            left.plot([0] + [r["n"] for r in mine] if len(mine) > 1 else [r["n"] for r in mine],
                      ([base] if len(mine) > 1 else []) + [base + iv.mean for iv in ivs],
                      color=colour, marker=MARKERS[treatment], linestyle=style, markeredgecolor="black",
                      markeredgewidth=0.5, label=f"{label} {TREATMENT_LABEL[treatment]}")
        left.axhline(base, color=colour, linestyle="--", linewidth=1, label=f"{label} base {base:.3f}")
    right.axhline(0, color="black", linewidth=1)
    for ax in (left, right):
        ax.set_xticks(range(max_n + 1))
        ax.set_xticklabels(["0\n(base)"] + [str(n) for n in range(1, max_n + 1)])
        ax.set_xlabel("layer n: cut points 1..n copied from a base")
        ax.grid(True, axis="y", alpha=0.3)
    left.set_ylabel("top-1 (mean of the paper's top-k metric)")
    left.set_title("accuracy, each network against its own base")
    right.set_ylabel("trial − its own base (pp), 95% CI over (split, seed)")
    right.set_title("the same as paired differences")
    handles, names = right.get_legend_handles_labels()
    lines, line_names = left.get_legend_handles_labels()
    extra = [(h, n) for h, n in zip(lines, line_names) if " base " in n]
    fig.legend(handles + [h for h, _ in extra], names + [n for _, n in extra], loc="lower center",
               ncol=5, fontsize=8, frameon=False)
    fig.suptitle(f"{labels[0]} vs {labels[1]}: the same splits, seeds and target tasks", fontsize=12)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
