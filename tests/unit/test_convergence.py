"""The convergence check and the claim rules that depend on it, on synthetic tables where each rule must
hold, must fail, and must come out 'confounded' or 'not identified'."""
import math

import pandas as pd
import pytest

from orchestrator.analysis.claims import (
    CONFOUNDED,
    EXCLUDED,
    FAILS,
    HOLDS,
    NOT_IDENTIFIED,
    UNDECIDED,
    check_claims,
    check_study,
)
from orchestrator.analysis.convergence import (
    CONVERGED,
    FINETUNE_TOL,
    NOT_CHECKED,
    NOT_SHOWN,
    SELFFER_TOL,
    UNDER_TRAINED,
    UNRESOLVED,
    check_convergence,
    convergence_md,
    late_gain,
)
from orchestrator.analysis.paper import PAPER_REFERENCE, paper_results
from orchestrator.analysis.stats import contrast, detectable, pair_with_bases, split_icc


def by_id(claims):
    return {c.id: c for c in claims}


def paper(**columns):
    """The paper's table with some columns replaced (n = 0..7 values)."""
    return paper_results({k.replace("_plus", "+"): v for k, v in columns.items()})


def shifted(column, delta, ns=range(1, 8)):
    values = list(PAPER_REFERENCE[column])
    for n in ns:
        values[n] += delta
    return tuple(values)


def curve(key, gains):
    """A learning curve of 10 evaluations over 1000 steps, flat at 0.9 then rising by `gains` at the end."""
    steps = list(range(100, 1001, 100))
    top1 = [0.9 + (gains * (s - 800) / 200 if s > 800 else 0.0) for s in steps]
    return pd.DataFrame({"key": key, "step": steps, "top1": top1})


# ---------------------------------------------------------------- plateau
def test_late_gain_is_the_least_squares_rise_over_the_last_fifth():
    steps = list(range(0, 1001, 50))
    linear = pd.DataFrame({"step": steps, "top1": [0.5 + 1e-5 * s for s in steps]})
    gain, se, count = late_gain(linear)
    assert gain == pytest.approx(0.002) and se == pytest.approx(0.0, abs=1e-12) and count == 5  # 800..1000
    assert math.isnan(late_gain(linear.head(2))[0])


def test_bases_still_rising_make_the_study_under_trained():
    df = paper_results()
    keys = df[(df.treatment == "base") & df.split.str.startswith("random:")]["key"]
    flat = pd.concat([curve(k, 0.0) for k in keys])
    assert check_convergence(pair_with_bases(df), flat).verdict == NOT_SHOWN   # plateaus alone show nothing
    rising = pd.concat([curve(k, 0.02 if i == 0 else 0.0) for i, k in enumerate(keys)])
    conv = check_convergence(pair_with_bases(df), rising)
    assert conv.verdict == UNDER_TRAINED
    assert conv.problems[0].startswith("1 of 8 random-split bases still rising over the last 20% of training")
    assert "**no**" in convergence_md(conv)
    claims = by_id(check_claims(df, curves=rising))
    # a pass of 2 is confounded (extra training's convex gain can draw a U); 3 is undecided on the paper's
    # 4 units (a pass would be confounded); 5 and 6 need convergence shown
    assert claims[2].detail.startswith("the test alone gives 'holds', but the convergence check failed")
    assert [claims[i].verdict for i in range(1, 9)] == [CONFOUNDED, CONFOUNDED, UNDECIDED, HOLDS, CONFOUNDED,
                                                       CONFOUNDED, HOLDS, HOLDS]


# ---------------------------------------------------------------- selffer checks
def test_the_papers_four_splits_cannot_show_convergence_on_intervals():
    conv = check_convergence(pair_with_bases(paper_results()))
    assert conv.verdict == NOT_SHOWN and conv.problems == () and not conv.confounding and not conv.shown
    assert conv.selffer.diff.mean == pytest.approx(0.002)    # inside ±0.5 pp, but its 90% CI is not
    assert [(c.name, c.outcome) for c in conv.checks] == [("plateau", NOT_CHECKED), ("BnB(1) − base", UNRESOLVED),
                                                          ("BnB+ − base", UNRESOLVED)]
    assert [pt.label for pt in conv.finetune] == [f"BnB+({n}) − base" for n in range(1, 8)]
    assert max(pt.diff.mean for pt in conv.finetune) == pytest.approx(0.006)
    assert conv.headline().startswith("Convergence not shown: plateau not checked (no base curves); BnB(1) − base "
                                      "unresolved (+0.0020 [")
    md = convergence_md(conv)
    assert "| BnB(1) − base | +0.0020 [" in md and "not shown (90% CI crosses the margin)" in md
    assert "Convergence check passed" not in md


def test_converged_only_when_every_interval_is_inside_its_margin():
    table = units_table(lambda sp, s, n: 0.0, plus=lambda sp, s, n: 0.003 + (0.001 if s == 1 else 0.0))
    conv = check_convergence(pair_with_bases(table))
    assert conv.verdict == CONVERGED and conv.shown
    assert conv.headline().startswith("Convergence check passed: base curves not checked; the 90% CI of BnB(1) − "
                                      "base inside ±0.5 pp (TOST)")
    # the same means with seeds spread ±1 pp: inside the margins on average, not on the intervals
    wide = units_table(lambda sp, s, n: 0.0, plus=lambda sp, s, n: 0.003 + 0.01 * (s - 1))
    assert check_convergence(pair_with_bases(wide)).verdict == NOT_SHOWN


def test_selffer_above_base_is_under_training():
    conv = check_convergence(pair_with_bases(paper(BnB=shifted("BnB", 0.01))))
    assert conv.verdict == UNDER_TRAINED
    assert conv.problems == (f"BnB(1) − base = +1.20 pp, outside ±{SELFFER_TOL * 100:.1f} pp",)
    conv = check_convergence(pair_with_bases(paper(BnB_plus=shifted("BnB+", 0.009))))
    assert conv.problems == (f"BnB+ − base above {FINETUNE_TOL * 100:.1f} pp at 5 of 7 n (largest BnB+(3) − base "
                             "= +1.50 pp)",)


def test_no_selffers_and_no_curves_is_not_checked():
    df = paper_results()
    conv = check_convergence(pair_with_bases(df[df.treatment.isin(["base", "transfer"])]))
    assert conv.verdict == NOT_CHECKED and not conv.confounding


# ---------------------------------------------------------------- claim 1
def test_claim_1_holds_fails_and_is_confounded_by_under_training():
    assert by_id(check_claims(paper_results()))[1].verdict == HOLDS
    assert by_id(check_claims(paper(AnB=shifted("AnB", -0.03, [1]))))[1].verdict == FAILS
    # BnB(1) 1.2 pp above base: inside the 2-sd tolerance (1.1 pp? no: the paper's sd gives 1.1 pp), but
    # the convergence check says the bases were still learning, so the claim is not judged
    under = by_id(check_claims(paper(BnB=shifted("BnB", 0.008))))[1]
    assert under.verdict == CONFOUNDED
    assert under.detail.startswith("the test alone gives 'undecided', but the convergence check failed "
                                   "(BnB(1) − base = +1.00 pp, outside ±0.5 pp)")


# ---------------------------------------------------------------- claim 2
def units_table(bnb, seeds=(0, 1, 2), splits=("random:0", "random:1"), base=0.9, plus=None, anb_plus=None):
    """Bases and BnB at n = 1..7 for every (split, half, seed); bnb(split, seed, n) is BnB − base, and
    plus / anb_plus (if given) BnB+ − base / AnB+ − base the same way."""
    rows = []
    arms = [("selffer", bnb, True), ("selffer+", plus, True), ("transfer+", anb_plus, False)]
    for split in splits:
        for seed in seeds:
            for half in "AB":
                rows.append(dict(split=split, target_half=half, source_half=None, n=0, treatment="base",
                                 seed=seed, top1_paper=base))
                for treatment, delta, own in arms:
                    for n in range(1, 8) if delta else ():
                        rows.append(dict(split=split, target_half=half, source_half=half if own else
                                         "AB".replace(half, ""), n=n, treatment=treatment, seed=seed,
                                         top1_paper=base + delta(split, seed, n)))
    return pd.DataFrame(rows).assign(dataset="d", status="ok")


DIP = {1: 0.0, 2: 0.0, 3: -0.002, 4: -0.006, 5: -0.004, 6: -0.001, 7: 0.0}


def test_claim_2_holds_on_a_paired_dip_smaller_than_the_noise_of_one_network():
    # a 0.6 pp dip, replicate noise ±0.2 pp per unit: the old rule (2 sd of one network) could never see it
    wobble = {0: -0.002, 1: 0.0, 2: 0.002}
    c = by_id(check_claims(units_table(lambda sp, s, n: DIP[n] + (wobble[s] if n == 4 else 0.0))))[2]
    # .1·.002 + .4·.006 + .4·.004 + .1·.001: the curvature over n = 2..7, the wobble at weight .4
    assert c.verdict == HOLDS and c.deciding.label == "BnB curvature over n = 2..7"
    assert c.deciding.diff.mean == pytest.approx(0.0043) and c.deciding.diff.low > 0 and c.deciding.diff.k == 6
    assert c.numbers["n_min (description)"] == 4


def test_a_monotone_decline_is_no_dip_and_excludes_the_scaled_paper_dip():
    noise = {(sp, s): 0.003 * (-1) ** (s + (sp == "random:1")) for sp in ("random:0", "random:1") for s in (0, 1, 2)}
    c = by_id(check_claims(units_table(lambda sp, s, n: 0.0008 * (7 - n) + (noise[(sp, s)] if n == 7 else 0.0))))[2]
    # the contrast is orthogonal to a linear trend: a decline from under-training contributes 0
    assert c.deciding.diff.mean == pytest.approx(0.0, abs=1e-12)
    assert c.paper_effect == pytest.approx(0.0199 * 0.1 / 0.375)   # the paper's curvature, base error 10 %
    assert c.deciding.diff.high < c.paper_effect and c.verdict == EXCLUDED
    assert c.detectable == pytest.approx(detectable(c.deciding.diff)) and c.detectable > 0
    assert "scaled to this error rate +0.0053" in c.detail and "the study had the power to see it" in c.detail


def test_an_inverted_u_fails_the_dip():
    c = by_id(check_claims(units_table(lambda sp, s, n: -DIP[n] + 0.0002 * s)))[2]
    assert c.verdict == FAILS and c.deciding.diff.high < 0


def test_claim_2_names_a_failed_convergence_check_and_is_not_identified_with_two_layers():
    # BnB(1) 1 pp above base: selffers gain from extra training, which slopes the curve; a slope is no dip
    c = by_id(check_claims(units_table(lambda sp, s, n: 0.01 - 0.001 * n)))[2]
    assert c.verdict == EXCLUDED and "the convergence check failed, but that cannot make this verdict" in c.detail
    df = units_table(lambda sp, s, n: 0.0)
    c = by_id(check_claims(df[df.n.isin([0, 1, 7])]))[2]
    assert c.verdict == NOT_IDENTIFIED and c.detail == "needs BnB (with a base) at 3 or more n ≥ 2"


# ---------------------------------------------------------------- claim 3
def test_claim_3_passes_only_on_converged_bases():
    # the paper's BnB+(1) is 0.7 pp below base: with 4 units not shown non-inferior at 1.1 pp
    assert by_id(check_claims(paper_results()))[3].verdict == UNDECIDED
    assert by_id(check_claims(paper(BnB_plus=shifted("BnB+", -0.03, [4]))))[3].verdict == FAILS
    assert by_id(check_claims(paper(BnB_plus=shifted("BnB+", 0.02))))[3].verdict == CONFOUNDED


# ---------------------------------------------------------------- claims 5 and 6
def boost_table(anb_plus, bnb_plus=0.003):
    """A converged study (BnB(1) = base, BnB+ = base + 0.3 pp ± 0.1 pp) with AnB+ − base = anb_plus(n, seed)."""
    return units_table(lambda sp, s, n: 0.0, plus=lambda sp, s, n: bnb_plus + 0.001 * (s - 1),
                       anb_plus=lambda sp, s, n: anb_plus(n, s))


def test_claim_5_holds_only_where_anb_plus_also_beats_bnb_plus():
    holds = by_id(check_claims(boost_table(lambda n, s: 0.01 + 0.001 * s)))
    assert holds[5].verdict == HOLDS and holds[6].verdict == HOLDS
    # AnB+ above base but only as high as BnB+: the gain is extra training, and the scaled boost is ruled out
    equal = by_id(check_claims(boost_table(lambda n, s: 0.003 + 0.001 * (s - 1))))
    assert equal[5].verdict == EXCLUDED and equal[6].verdict == EXCLUDED
    assert "AnB+ above base but not above BnB+: extra training explains the gain" in equal[5].detail
    below = by_id(check_claims(boost_table(lambda n, s: -0.01 + 0.001 * s)))[5]
    assert below.verdict == FAILS and "AnB+ not above base at every n" in below.detail


def test_claims_5_and_6_are_confounded_unless_convergence_is_shown():
    claims = by_id(check_claims(paper_results()))          # the paper's 4 units: convergence not shown
    assert claims[5].verdict == claims[6].verdict == CONFOUNDED
    assert claims[6].detail.startswith("the test alone gives 'holds', but convergence is not shown (plateau not "
                                       "checked, BnB(1) − base unresolved, BnB+ − base unresolved)")


def test_claim_5_without_the_bnb_plus_control_is_not_identified():
    df = paper_results()
    c = by_id(check_claims(df[df.treatment != "selffer+"]))[5]
    assert c.verdict == NOT_IDENTIFIED
    assert "no BnB+ in the same split and target half as its AnB+ (the control)" in c.detail
    assert by_id(check_claims(df[df.treatment != "transfer+"]))[5].verdict == NOT_IDENTIFIED


# ---------------------------------------------------------------- the unit of replication
def test_both_directions_of_a_split_and_seed_are_one_unit():
    df = units_table(lambda sp, s, n: 0.01 if (sp, s) == ("random:0", 0) else 0.0)
    p = pair_with_bases(df)
    iv = contrast([(1, p[(p.treatment == "selffer") & (p.n == 1)])], "pdelta")
    assert (iv.k, iv.df, iv.method) == (6, 5, "paired")           # 2 splits x 3 seeds, not 12 cells
    assert iv.mean == pytest.approx(0.01 / 6)


def test_split_to_split_variance_is_in_the_interval():
    # split 0 gains 1 pp, split 1 loses 1 pp, seeds agree within a split: the CI must span both
    df = units_table(lambda sp, s, n: 0.01 if sp == "random:0" else -0.01)
    p = pair_with_bases(df)
    iv = contrast([(1, p[(p.treatment == "selffer") & (p.n == 3)])], "pdelta")
    assert iv.mean == pytest.approx(0.0) and iv.low < -0.009 and iv.high > 0.009 and iv.conditional_on == ""
    one_split = pair_with_bases(units_table(lambda sp, s, n: 0.01 + 0.001 * s, splits=("random:0",)))
    single = contrast([(1, one_split[(one_split.treatment == "selffer") & (one_split.n == 3)])], "pdelta")
    assert single.k == 3 and single.conditional_on == "random:0"   # no split variance to see with one split
    assert single.text().endswith("(k=3, conditional on split random:0)")
    claim = by_id(check_claims(units_table(lambda sp, s, n: DIP[n] + 0.001 * s, splits=("random:0",))))[2]
    assert "every CI is conditional on split random:0 (its halves and test sets)" in claim.detail


def test_seeds_nested_in_three_or_more_splits_are_clustered_by_split():
    splits = ("random:0", "random:1", "random:2")
    shift = {"random:0": 0.004, "random:1": 0.0, "random:2": -0.001}
    p = pair_with_bases(units_table(lambda sp, s, n: shift[sp] + 0.001 * s, splits=splits))
    iv = contrast([(1, p[(p.treatment == "selffer") & (p.n == 3)])], "pdelta")
    assert (iv.method, iv.k, iv.df) == ("clustered", 3, 2)   # 3 split means, not 9 units
    assert iv.mean == pytest.approx(0.001 + 0.001) and iv.text().endswith("(k=3 splits, clustered)")
    # base accuracy by split: 0.9 in every split and seed, then split 0 raised
    bases = p[p.treatment == "base"].copy()
    assert math.isnan(split_icc(bases)[0])                    # no spread at all: undefined
    bases.loc[bases.split == "random:0", "value"] += 0.01
    bases.loc[bases.seed == 1, "value"] += 0.001
    icc, k = split_icc(bases)
    assert k == 3 and 0.9 < icc < 1.0


def test_check_study_returns_the_check_beside_the_claims():
    conv, claims = check_study(paper_results())
    assert conv.verdict == NOT_SHOWN and len(claims) == 8
