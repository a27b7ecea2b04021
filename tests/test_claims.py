"""The statistics and the eight claims of PAPER.md on synthetic result tables built from the paper's table."""
import math

import pandas as pd
import pytest

from orchestrator.claims import (
    FALLBACK_NOISE_SD, FAILS, HOLDS, NO_DATA, PAPER_REFERENCE, TOL_SIGMAS, check_claims, describe,
    noise_level, paper_results, prepare, t_critical)


def by_id(claims):
    return {c.id: c for c in claims}


def with_value(column, n, value):
    """The paper's column with the value at layer n replaced."""
    values = list(PAPER_REFERENCE[column])
    values[n] = value
    return {column: tuple(values)}


# ---------------------------------------------------------------- statistics
def test_t_table_and_describe():
    assert t_critical(1) == 12.706
    assert t_critical(35) == 2.042       # between tabulated df: the smaller df (wider interval)
    assert t_critical(500) == 1.96
    assert math.isnan(t_critical(0))
    s = describe([1.0, 2.0, 3.0])
    assert (s["count"], s["mean"], s["sd"]) == (3, 2.0, 1.0)
    assert s["ci_high"] - s["mean"] == pytest.approx(4.303 / math.sqrt(3))
    one = describe([0.7])
    assert one["count"] == 1 and one["mean"] == 0.7 and math.isnan(one["sd"]) and math.isnan(one["ci_low"])


def test_prepare_pairs_each_trial_with_its_own_base_and_drops_failed_rows():
    df = pd.DataFrame([
        dict(dataset="d", split="random:0", target_half="A", n=0, treatment="base", top1_paper=0.8, status="ok"),
        dict(dataset="d", split="random:0", target_half="B", n=0, treatment="base", top1_paper=0.6, status="ok"),
        dict(dataset="d", split="random:0", target_half="B", n=3, treatment="transfer", top1_paper=0.54, status="ok"),
        dict(dataset="d", split="random:1", target_half="A", n=3, treatment="transfer", top1_paper=0.63, status="ok"),
        dict(dataset="d", split="natman", target_half="A", n=3, treatment="transfer", top1_paper=0.5, status="ok"),
        dict(dataset="d", split="random:0", target_half="A", n=3, treatment="selffer", top1_paper=0.1,
             status="failed"),
    ])
    p = prepare(df)
    assert len(p) == 5
    t = p[p.treatment == "transfer"].set_index("split")
    assert t.loc["random:0", "drop"] == pytest.approx(0.1)        # own base 0.6
    assert t.loc["random:1", "base"] == pytest.approx(0.7)        # no own base: mean of random-split bases
    assert math.isnan(t.loc["natman", "base"])                    # natman never borrows a base


def test_prepare_names_missing_columns():
    with pytest.raises(ValueError, match="results lack column\\(s\\) treatment, top1_paper"):
        prepare(pd.DataFrame({"dataset": [], "split": [], "target_half": [], "n": []}))


def test_noise_level_sources():
    paper = noise_level(prepare(paper_results()))
    assert paper.sd == pytest.approx(0.0055) and paper.tol == pytest.approx(TOL_SIGMAS * 0.0055)
    assert paper.source.startswith("sd across 8 random-split bases")
    one = noise_level(prepare(paper_results().head(1)))
    assert (one.sd, one.tol) == (FALLBACK_NOISE_SD, TOL_SIGMAS * FALLBACK_NOISE_SD)
    two_seeds = pd.DataFrame([dict(dataset="d", split="random:0", target_half="A", n=0, treatment="base",
                                   seed=s, top1_paper=v) for s, v in enumerate((0.80, 0.82, 0.84))])
    pooled = noise_level(prepare(two_seeds))
    assert pooled.sd == pytest.approx(0.02) and "within 1 target task" in pooled.source


# ---------------------------------------------------------------- the paper's own numbers
def test_paper_table_satisfies_every_claim_with_the_deciding_numbers():
    claims = by_id(check_claims(paper_results()))
    assert [c.verdict for c in claims.values()] == [HOLDS] * 8
    assert claims[1].numbers["AnB(1)-base"] == pytest.approx(0.003)
    assert claims[2].numbers["n_min"] == 5 and claims[2].numbers["dip_from_low"] == pytest.approx(0.033)
    assert claims[3].numbers["BnB+(1)-base"] == pytest.approx(-0.007)   # inside the 0.011 tolerance
    assert claims[3].tolerance == pytest.approx(0.011)
    assert claims[4].numbers["gap(7)"] == pytest.approx(0.080)
    assert claims[5].numbers["AnB+(2)-base"] == pytest.approx(0.011) and claims[5].tolerance == 0.0
    assert claims[6].numbers["AnB+(1)-BnB+(1)"] == pytest.approx(0.019)
    assert claims[7].numbers["drop natural←man-made(3)"] == pytest.approx(1 - 0.625 / 0.653)
    assert claims[8].numbers["drop random(3)"] == pytest.approx(1 - 0.001 / 0.576)
    assert all(c.dataset == "imagenet" for c in claims.values())


# ---------------------------------------------------------------- each claim made to fail
@pytest.mark.parametrize("claim_id, values, needle", [
    (1, with_value("AnB", 1, 0.600), "outside: AnB(1)-base"),
    (2, {"BnB": (0.625,) * 8}, "dip below n=1: +0.0000"),
    (3, with_value("BnB+", 4, 0.600), "lowest at n = 4: -0.0250"),
    (4, with_value("AnB", 7, 0.590), "AnB(7) lowest: no"),
    (4, with_value("AnB", 4, 0.640), "AnB ≤ BnB + 0.0110: no"),
    (5, with_value("AnB+", 1, 0.624), "n=1: -0.0010"),
    (6, with_value("BnB+", 3, 0.650), "n=3: -0.0070"),
    (7, with_value("natural←man-made", 3, 0.650), "fails at natural←man-made n=3"),
    (8, with_value("random (all classes)", 1, 0.580), "fails at n = [1]"),
])
def test_each_claim_fails_when_its_inequality_is_broken(claim_id, values, needle):
    claims = by_id(check_claims(paper_results(values)))
    assert claims[claim_id].verdict == FAILS
    assert needle in claims[claim_id].detail
    others = [c.verdict for i, c in claims.items() if i != claim_id]
    # Changing one point may also move a neighbouring claim; it never hides the failure itself.
    assert NO_DATA not in others


def test_only_base_and_selffer_leaves_other_claims_without_data():
    df = paper_results()
    claims = by_id(check_claims(df[df.treatment.isin(["base", "selffer"])]))
    assert claims[1].verdict == HOLDS and set(claims[1].numbers) == {"BnB(1)-base", "BnB(2)-base"}
    assert "absent: AnB(1), AnB(2)" in claims[1].detail
    assert claims[2].verdict == HOLDS
    assert [claims[i].verdict for i in range(3, 9)] == [NO_DATA] * 6
    assert claims[4].detail == "needs AnB and BnB (with bases) at 2 or more common n ≥ 3"


def test_no_results_at_all_gives_not_enough_data_everywhere():
    claims = check_claims(paper_results().head(0))
    assert [c.verdict for c in claims] == [NO_DATA] * 8 and [c.id for c in claims] == list(range(1, 9))


def test_distance_with_one_natman_direction_says_which_is_absent():
    df = paper_results()
    one = df[~((df.split == "natman") & (df.target_half == "A"))]
    c = by_id(check_claims(one))[7]
    assert c.verdict == HOLDS and "direction absent: man-made←natural" in c.detail
    assert len(c.numbers) == 10  # 5 layers x (natman drop, random-split drop)


def test_random_control_without_its_base_compares_absolute_accuracy():
    df = paper_results()
    c = by_id(check_claims(df[~((df.split == "all") & (df.treatment == "base"))]))[8]
    assert c.verdict == HOLDS and "absolute top-1 of random < AnB" in c.detail
    assert c.numbers["random(3)"] == pytest.approx(0.001) and c.numbers["AnB(3)"] == pytest.approx(0.619)


def test_final_metric_and_several_datasets():
    df = paper_results()
    df["top1_final"] = df["top1_paper"] - 0.01 * (df["treatment"] == "transfer+") * 2  # AnB+ now below base
    assert by_id(check_claims(df, metric="top1_final"))[5].verdict == FAILS
    both = pd.concat([paper_results(dataset="a"), paper_results(dataset="b")])
    with pytest.raises(ValueError, match="pass dataset="):
        check_claims(both)
    assert [c.verdict for c in check_claims(both, dataset="b")] == [HOLDS] * 8
