"""write_report and its tables on synthetic sweeps: files, claims table, partial results, missing trials."""
import json
import re

import pandas as pd
import pytest
from matplotlib.figure import Figure

from orchestrator.analysis.claims import CONFOUNDED, HOLDS, NO_DATA, UNDECIDED
from orchestrator.analysis.paper import paper_results
from orchestrator.analysis.report import (
    metric_label,
    missing_md,
    missing_trials,
    plot_distance,
    plot_transfer,
    reference_table_md,
    results_table_md,
    summarize,
    top_ks,
    write_report,
)
from orchestrator.analysis.stats import pair_with_bases

PLANNED_COLUMNS = ["key", "name", "dataset", "split", "source_half", "target_half", "n", "treatment", "seed"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_sweep():
    """Two random splits (bases 0.625 on average), both directions, n = 1..7, plus both natman directions
    and the random control."""
    df = paper_results()
    keep = df.split.isin(["random:0", "random:3", "natman", "all"])
    return df[keep].reset_index(drop=True)


def test_summarize_pools_random_halves_and_keeps_natman_directions():
    s = summarize(paper_results())
    anb7 = s[(s.series == "AnB") & (s.n == 7)].iloc[0]
    assert (anb7["count"], round(anb7["mean"], 6), anb7["sd"]) == (8, 0.543, 0.0)
    base = s[(s.family == "random-split") & (s.treatment == "base")].iloc[0]
    assert base["count"] == 8 and base["sd"] == pytest.approx(0.0055)
    assert base["ci_high"] - base["mean"] == pytest.approx(2.364624252 * 0.0055 / 8 ** 0.5)
    natman = s[(s.family == "natman") & (s.treatment == "transfer")]
    assert list(dict.fromkeys(natman.series)) == ["natural←man-made", "man-made←natural"]


def test_results_table_cells_and_reference_table():
    s = summarize(paper_results())
    table = results_table_md(s).splitlines()
    assert table[0] == ("| n | BnB | BnB+ | AnB | AnB+ | natural←man-made | man-made←natural | "
                        "random (all classes) |")
    assert table[2].startswith("| 0 | 0.625 ± 0.005 (8) | ")
    assert table[9] == ("| 7 | 0.623 ± 0.000 (8) | 0.627 ± 0.000 (8) | 0.543 ± 0.000 (8) | 0.647 ± 0.000 (8) "
                        "| 0.399 (1) | 0.291 (1) | 0.015 (1) |")
    only_bnb = summarize(paper_results().query("treatment in ['base', 'selffer']"))
    ref = reference_table_md(only_bnb).splitlines()
    assert ref[3] == "| 1 | 0.627 / 0.627 | — / 0.628 | — / 0.618 | — / 0.637 | — / 0.657 | — / 0.539 | — / 0.492 |"


def test_write_report_writes_both_figures_and_the_claims_table(tmp_path):
    df = small_sweep()
    out = write_report(df, tmp_path / "rep", title="Small sweep")
    names = [p.split("/")[-1] for p in out["files"]]
    assert names == ["transfer.png", "distance.png", "report.md"]
    for name in ("transfer.png", "distance.png"):
        data = (tmp_path / "rep" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 20_000
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.startswith("# Small sweep\n")
    assert ("| # | claim | verdict | key difference, 95% CI | margin to the rule, 95% CI | power: detectable "
            "effect / paper's effect scaled | deciding numbers | tolerance |") in md
    # Claim 1 decides at AnB(1): 2 units (splits 0 and 3, one seed, both halves averaged), each
    # 0.003 − 0.0055·z̄ with z̄ = ∓1.25: sd 0.0055·1.25·√2, half-width t(1)·sd/√2 = 12.706·0.0055·1.25
    # = 0.0874, worked out by hand: the report must print exactly this interval; on 2 units no TOST can
    # show equivalence at ±1.62 pp (its 90% CI is ±3.5 pp wide), so claim 1 is undecided, not 'holds'.
    ci = "+0.0030 [-0.0844, +0.0904]"
    assert (f"| 1 | Low layers are general: AnB, BnB within noise of base at n = 1, 2 | **undecided** | "
            f"AnB(1) − base: {ci} (k=2) | ") in md
    assert "1. **undecided**: test: TOST (two one-sided 5% tests) at ±0.0162; equivalence |x − base| ≤ 0.0162" in md
    assert ("### Convergence\n\nConvergence not shown: plateau not checked (no base curves); BnB(1) − base "
            "unresolved") in md
    assert "Convergence check passed" not in md
    assert "Metric: `top1_paper`: top-1 accuracy, paper metric. " in md   # no settings_json column
    rows = [line for line in md.splitlines() if re.match(r"\| [1-8] \| .* \| \*\*", line)]
    # 8 cells each: claim 1's rule |x| ≤ tol is escaped inside its cell
    assert len(rows) == 8 and all(len(re.split(r"(?<!\\)\|", row)) == 10 for row in rows)
    assert r"(\|x\| ≤ 0.0162): " in rows[0]
    assert "| 4 | Specificity: AnB ≤ BnB for n ≥ 3, gap growing with n, AnB lowest at the top | **holds** |" in md
    assert "ImageNet-scale reference, Yosinski et al. 2014" in md
    assert "![transfer](transfer.png)" in md and "![distance](distance.png)" in md
    # Bases 0.625 + 0.0055 * (-1.5, -1, 1, 1.5): sd 0.0081, tolerance 2 sd.
    assert "base sd = 0.0081 (sd across 4 random-split bases; tolerance = 2 × sd) → tolerance 0.0162" in md
    assert [c.verdict for c in out["claims"]] == [UNDECIDED, HOLDS, UNDECIDED, HOLDS, CONFOUNDED, CONFOUNDED, HOLDS,
                                                 HOLDS] and out["missing"] == []


def test_partial_results_list_the_missing_trials(tmp_path):
    df = small_sweep()
    planned = df[PLANNED_COLUMNS]
    gone = (df.treatment == "transfer+") | ((df.treatment == "transfer") & (df.split == "natman"))
    out = write_report(df[~gone], tmp_path, planned=planned)
    assert sorted(out["missing"]) == sorted(df.loc[gone, "key"])
    assert len(out["missing"]) == 28 + 14
    md = (tmp_path / "report.md").read_text()
    assert f"42 of {len(df)} planned trials have no result yet." in md
    assert "| transfer | 14 |" in md and "| transfer+ | 28 |" in md
    assert "- transfer+ n=1 random:0 A" in md
    claims = {c.id: c.verdict for c in out["claims"]}
    assert claims[5] == NO_DATA and claims[7] == NO_DATA and claims[4] == HOLDS


def test_results_outside_the_plan_are_ignored_and_said(tmp_path):
    df = small_sweep()
    planned = df[df.split != "all"][PLANNED_COLUMNS]
    out = write_report(df, tmp_path, planned=planned)
    md = (tmp_path / "report.md").read_text()
    assert "8 result row(s) of trials outside the plan were ignored." in md
    assert {c.id: c.verdict for c in out["claims"]}[8] == NO_DATA and out["missing"] == []


def test_only_base_and_selffer_still_draws_transfer_and_says_distance_is_absent(tmp_path):
    df = small_sweep()
    out = write_report(df[df.treatment.isin(["base", "selffer"]) & df.split.str.startswith("random")], tmp_path)
    assert [p.split("/")[-1] for p in out["files"]] == ["transfer.png", "report.md"]
    assert not (tmp_path / "distance.png").exists()
    assert "distance figure not written" in (tmp_path / "report.md").read_text()
    assert "distance data is absent" in (tmp_path / "report.md").read_text()


def test_no_results_writes_only_the_report(tmp_path):
    planned = small_sweep()[PLANNED_COLUMNS]
    out = write_report(small_sweep().head(0), tmp_path, planned=planned)
    assert [p.split("/")[-1] for p in out["files"]] == ["report.md"]
    assert len(out["missing"]) == len(planned) and out["claims"] == []
    assert "No results yet" in (tmp_path / "report.md").read_text()
    bare = write_report(pd.DataFrame(), tmp_path / "bare", planned=planned)  # empty store: no columns at all
    assert len(bare["missing"]) == len(planned) and bare["claims"] == []


def test_missing_names_are_capped_and_matched_by_coordinates_without_keys():
    planned = pd.DataFrame({"name": [f"t{i}" for i in range(45)], "treatment": ["selffer"] * 45,
                            "dataset": "d", "split": "random:0", "target_half": "A", "source_half": "A",
                            "n": list(range(45)), "seed": 0})
    results = planned.drop(columns=["name"]).head(3)
    missing = missing_trials(results, planned)
    assert list(missing["name"][:2]) == ["t3", "t4"] and len(missing) == 42
    text = missing_md(missing, len(planned), cap=40)
    assert "42 of 45 planned trials" in text and "- t42" in text and "- t43" not in text
    assert text.endswith("- … and 2 more")


def test_several_datasets_get_one_section_and_figure_pair_each(tmp_path):
    both = pd.concat([paper_results(dataset="fashion-animals").query("split != 'natman'"),
                      paper_results(dataset="imagenet").query("treatment in ['base', 'selffer']")])
    out = write_report(both, tmp_path)
    names = [p.split("/")[-1] for p in out["files"]]
    assert names == ["transfer-fashion-animals.png", "distance-fashion-animals.png",
                     "transfer-imagenet.png", "report.md"]
    assert [c.dataset for c in out["claims"]] == ["fashion-animals"] * 8 + ["imagenet"] * 8


def with_top_k(df, ks):
    settings = [json.dumps({"train": {"top_k": k}}) for k in ks]
    return df.assign(settings_json=[settings[i % len(settings)] for i in range(len(df))])


def test_metric_label_names_top_k_from_the_settings():
    df = paper_results()
    assert metric_label(with_top_k(df, [5]), "top1_paper") == "top-1 accuracy, mean of the 5 best evals"
    assert metric_label(with_top_k(df, [10, 5]), "top1_paper") == \
        "top-1 accuracy, mean of the top-k best evals (k = 5, 10)"
    assert metric_label(df, "top1_paper") == "top-1 accuracy, paper metric"
    assert metric_label(df.assign(settings_json="not json"), "top1_paper") == "top-1 accuracy, paper metric"
    assert top_ks(df.assign(settings_json=json.dumps({"train": {}}))) == []
    assert metric_label(with_top_k(df, [5]), "top1_final") == "top-1 at the last evaluation"


def test_report_text_and_figure_axes_use_the_derived_label(tmp_path, monkeypatch):
    df = with_top_k(paper_results(), [5])
    write_report(df, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Metric: `top1_paper`: top-1 accuracy, mean of the 5 best evals. " in md and "10 best" not in md
    labels = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: labels.append([ax.get_ylabel() for ax in fig.axes]))
    p = pair_with_bases(df, "top1_final")
    assert plot_transfer(p, tmp_path / "t.png", "t", "top1_final") and plot_distance(p, tmp_path / "d.png", "d",
                                                                                     "top1_paper")
    assert labels == [["top-1 at the last evaluation"] * 2,
                      ["relative drop 1 − acc/base of own target\n(top-1 accuracy, mean of the 5 best evals)"]]


# --- files: written atomically, symlinks replaced and never followed, stale figures removed ----------
def test_a_symlinked_report_md_is_replaced_and_its_target_left_alone(tmp_path):
    outside = tmp_path / "dotfile"
    outside.write_text("precious\n")
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "report.md").symlink_to(outside)
    (rep / "transfer.png").symlink_to(tmp_path / "nowhere.png")  # dangling: replaced, not created there
    out = write_report(small_sweep(), rep, title="Small sweep")
    assert outside.read_text() == "precious\n" and not (tmp_path / "nowhere.png").exists()
    for name in ("report.md", "transfer.png"):
        assert not (rep / name).is_symlink() and (rep / name).is_file()
    assert (rep / "report.md").read_text().startswith("# Small sweep\n")
    assert [p.split("/")[-1] for p in out["files"]] == ["transfer.png", "distance.png", "report.md"]
    assert sorted(p.name for p in rep.iterdir()) == ["distance.png", "report.md", "transfer.png"]  # no temp


def test_figures_of_an_earlier_report_are_removed_and_nothing_else(tmp_path):
    write_report(small_sweep(), tmp_path)
    assert (tmp_path / "distance.png").is_file()
    (tmp_path / "notes.md").write_text("mine")
    (tmp_path / "distance-notes.png").write_bytes(b"mine too")
    df = small_sweep()
    no_natman = df[df.treatment.isin(["base", "selffer"]) & df.split.str.startswith("random")]
    assert not (no_natman.split == "natman").any()
    out = write_report(no_natman, tmp_path)
    assert [p.split("/")[-1] for p in out["files"]] == ["transfer.png", "report.md"]
    assert not (tmp_path / "distance.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distance-notes.png", "notes.md", "report.md",
                                                          "transfer.png"]
    # per-dataset figures of an earlier two-dataset report go too; a stale figure that is a symlink
    # is removed as a link, its target kept
    both = pd.concat([paper_results(dataset="fashion-animals").query("split != 'natman'"),
                      paper_results(dataset="imagenet").query("treatment in ['base', 'selffer']")])
    write_report(both, tmp_path)
    (tmp_path / "distance-fashion-animals.png").unlink()
    (tmp_path / "distance-fashion-animals.png").symlink_to(tmp_path / "notes.md")
    write_report(no_natman, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distance-notes.png", "notes.md", "report.md",
                                                          "transfer.png"]
    assert (tmp_path / "notes.md").read_text() == "mine"


def _recorded_sweep(tmp_path):
    from orchestrator.sources import record_spec
    from orchestrator.spec import parse_spec
    from sweepcore.store import open_store

    spec = parse_spec({"name": "src", "dataset": "fashion-animals", "splits": ["random:0"],
                       "treatments": ["base"], "train": {"epochs": 1}, "store": str(tmp_path / "store")})
    record_spec(spec, open_store(spec.store))
    return spec


def test_report_out_that_is_a_symlink_is_refused_in_one_line(tmp_path, capsys):
    from orchestrator.cli import main
    from orchestrator.errors import UsageError

    spec = _recorded_sweep(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    code = main(["report", "src", "--store", spec.store, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is a symbolic link" in err and str(tmp_path / "out") in err
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(UsageError, match="symbolic link"):
        write_report(small_sweep(), tmp_path / "out")
    assert list(elsewhere.iterdir()) == []
    # the default folder in the store may not lead out of the store through a linked component
    (tmp_path / "store" / "sweeps" / "src" / "report").symlink_to(elsewhere, target_is_directory=True)
    assert main(["report", "src", "--store", spec.store]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and list(elsewhere.iterdir()) == []


def test_report_writes_its_tables_atomically_and_drops_stale_curves(tmp_path, capsys):
    from orchestrator.cli import main

    spec = _recorded_sweep(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.parquet"
    outside.write_bytes(b"keep")
    (out / "results.parquet").symlink_to(outside)
    (out / "base_curves.parquet").write_bytes(b"an earlier report's curves")
    assert main(["report", "src", "--store", spec.store, "--out", str(out)]) == 0, capsys.readouterr().err
    assert outside.read_bytes() == b"keep" and not (out / "results.parquet").is_symlink()
    assert pd.read_parquet(out / "results.parquet").empty
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "results.parquet"]
    # the default folder, inside the store, is fine
    assert main(["report", "src", "--store", spec.store]) == 0, capsys.readouterr().err
    assert (tmp_path / "store" / "sweeps" / "src" / "report" / "report.md").is_file()
