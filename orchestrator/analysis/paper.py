"""The paper's numbers: Yosinski et al. 2014, top-1 on ImageNet val, and the same table as result rows.

The claims (orchestrator/analysis/claims.py) check a sweep against the paper's inequalities; this module holds
what the paper measured, for the report's side-by-side table, for the power of a claim's test (the
paper's effect scaled to a study's error rate) and for self-checks: the paper's own table must satisfy
every claim.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

PAPER_BASE_ERROR = 1 - 0.625
# The paper's effect behind each directional claim, in top-1 points on its 37.5 % error base: claim 2
# the smaller of the dip's drop (BnB(1) .627 -> BnB(5) .594) and recovery (-> BnB(7) .623); claim 5
# the smallest AnB+ − BnB+ (n = 4: .640 − .629); claim 6 the same.
PAPER_EFFECT = {2: 0.029, 5: 0.011, 6: 0.011}
# Top-1 by n (n = 0: base of the target task), from the paper's Figure 2 and its released logs.
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


# (split, target_half, source_half, treatment) of each reference column; random halves are expanded below.
# The random-split columns: which treatment each is; the others: (split, target, source, treatment).
_RANDOM_SPLIT_ROWS = {"BnB": "selffer", "AnB": "transfer", "BnB+": "selffer+", "AnB+": "transfer+"}
_OTHER_ROWS: dict[str, tuple[str, str, Optional[str], str]] = {
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
            treatment = _RANDOM_SPLIT_ROWS[column]
            source = target if treatment.startswith("selffer") else other
            for n in range(1, 8):
                add(split, target, source, treatment, n, table[column][n])
    for column in ("natural←man-made", "man-made←natural", "random (all classes)"):
        split, target, other_source, treatment = _OTHER_ROWS[column]
        add(split, target, None, "base", 0, table[column][0])
        for n in range(1, 8):
            add(split, target, other_source, treatment, n, table[column][n])
    df = pd.DataFrame(rows)
    df.insert(0, "key", [f"k{i:04d}" for i in range(len(df))])
    df.insert(1, "name", [f"{t} n={n} {s} {h}" for t, n, s, h in
                          zip(df.treatment, df.n, df.split, df.target_half)])
    return df
