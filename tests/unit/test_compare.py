"""`transfer-sweep compare`: two studies on their common cells, paired, with one figure and a table."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchestrator.analysis.compare import compare
from orchestrator.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "results" / "converged" / "results.parquet"


def test_a_study_compared_with_itself_differs_by_exactly_zero(tmp_path):
    results = pd.read_parquet(PUBLISHED)
    info = compare(results, results, ("one", "two"), tmp_path)
    arms = [r["arm"] for r in info["rows"]]
    assert arms == ["BnB(1)", "BnB(2)", "BnB(3)", "BnB(4)", "BnB(5)", "BnB(6)", "BnB(7)", "AnB(1)", "BnB+(7)",
                    "AnB+(7)"]
    assert all(r["difference"].mean == 0 and r["difference"].k == 6 for r in info["rows"])
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    assert "| BnB(4) |" in (tmp_path / "compare.md").read_text()


def test_only_cells_both_studies_hold_are_compared_and_a_shift_shows_exactly(tmp_path):
    first = pd.read_parquet(PUBLISHED)
    second = first[first.split == "random:0"].copy()  # 3 of the 6 units
    bumped = (second.treatment == "selffer") & (second.n == 3)
    second.loc[bumped, "top1_paper"] += 0.01
    info = compare(first, second, ("all", "half"), tmp_path)
    row = next(r for r in info["rows"] if r["arm"] == "BnB(3)")
    assert row["difference"].mean == pytest.approx(0.01, abs=1e-12) and row["difference"].k == 3
    assert row["first"].k == row["second"].k == 3  # the first study cut to the same cells
    md = (tmp_path / "compare.md").read_text()
    assert "random:0, seeds [0, 1, 2]" in md
    assert "Every interval is conditional on split random:0" in md   # one split left: it says so
    assert f"The table holds {len(info['rows'])} intervals, each at 95% and none adjusted for multiplicity" in md


def test_directions_that_disagree_are_named(tmp_path):
    first = pd.read_parquet(PUBLISHED)
    second = first.copy()
    anb = (second.treatment == "transfer") & (second.n == 1)
    second.loc[anb & (second.target_half == "A"), "top1_paper"] += 0.02
    second.loc[anb & (second.target_half == "B"), "top1_paper"] -= 0.01
    md_path = tmp_path / "compare.md"
    compare(first, second, ("one", "two"), tmp_path)
    assert ("the two directions disagree in sign on two − one at AnB(1) (target A +2.00, target B -1.00)"
            in md_path.read_text())
    assert "conditional on split" not in md_path.read_text()          # two splits


def test_several_inputs_are_one_study_with_each_trial_once():
    from orchestrator.analysis.compare import paired
    from orchestrator.cli.report import StudyReader
    once, curves = StudyReader("./store", None).studies(str(PUBLISHED))
    twice, curves2 = StudyReader("./store", None).studies(f"{PUBLISHED},{PUBLISHED}")
    assert len(paired(twice)) == len(paired(once)) == 132 and sorted(paired(twice).key) == sorted(paired(once).key)
    assert curves is not None and curves2 is not None and len(curves2) == len(curves)


def test_two_rows_of_one_key_that_disagree_are_refused_naming_both(tmp_path):
    """A key names one network: a second run of the same trials elsewhere with other numbers is not a
    second opinion to drop silently (compare once kept the first input's row)."""
    first = pd.read_parquet(PUBLISHED)
    r0 = first[first.split == "random:0"]
    elsewhere = r0[r0.treatment.isin(["base", "transfer"])].copy()
    elsewhere["top1_paper"] -= 0.02
    first.attrs["source"], elsewhere.attrs["source"] = "converged/results.parquet", "elsewhere.parquet"
    with pytest.raises(UsageError) as err:
        compare([first, elsewhere], first, ("a", "b"), tmp_path)
    base = elsewhere.iloc[0]  # the first row of the second input that disagrees
    assert str(err.value) == (
        f"key {base.key} ({base['name']}) has two rows that disagree: top1_paper {base.top1_paper + 0.02:.6g} in "
        f"converged/results.parquet, {base.top1_paper:.6g} in elsewhere.parquet; a key names one network: "
        "leave out the input whose row is wrong (`transfer-sweep verify` retrains a row to tell), or retrain it "
        "under a new key")
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_compare_never_writes_through_a_symlink_planted_in_its_folder(tmp_path):
    results = pd.read_parquet(PUBLISHED)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "compare.md").symlink_to(victim)
    (out / "compare.png").symlink_to(victim)
    compare(results, results, ("one", "two"), out)
    assert victim.read_text() == "keep me"  # the links were replaced as links, their target untouched
    assert not (out / "compare.md").is_symlink() and "| BnB(4) |" in (out / "compare.md").read_text()
    linked = tmp_path / "linked"
    linked.symlink_to(out)
    with pytest.raises(UsageError, match="is a symbolic link"):
        compare(results, results, ("one", "two"), linked)
