"""The cost estimate `plan` prints: steps and evaluations per trial, frozen layers cost less, committed
trials cost nothing, committed wall times calibrate the reference."""
import json
import math
from pathlib import Path

import pytest

from orchestrator.spec import parse_spec
from orchestrator.spec.estimate import (
    REFERENCE_EVAL_SECONDS_PER_IMAGE,
    REFERENCE_STEP_SECONDS,
    SWEEP_OVERHEAD,
    estimate,
    evaluations_of,
    reference_seconds,
    steps_of,
)
from orchestrator.spec.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]


def plan_of(**over):
    raw = {"name": "t", "dataset": "fashion-animals", "splits": ["random:0", {"split": "all",
           "treatments": ["base", "random"]}], "treatments": ["base", "selffer", "transfer+"], "layers": [1, 7],
           "directions": ["A->B"], "train": {"epochs": 2, "eval_every": 25, "batch_size": 128}}
    raw.update(over)
    return make_plan(parse_spec(raw))


def by_name(plan):
    return {t.name: t.settings for t in plan.trials}


def test_steps_evaluations_and_seconds_of_each_trial():
    t = by_name(plan_of())
    assert steps_of(t["baseB random:0 s0"]) == 125            # 2 epochs x 8,000 images / 128
    assert steps_of(t["base all s0"]) == 250                    # the 20-class task has 16,000
    assert evaluations_of(t["baseB random:0 s0"]) == 5          # steps 25, 50, ..., 125
    base = reference_seconds(t["baseB random:0 s0"])
    assert base == pytest.approx(SWEEP_OVERHEAD * (125 * REFERENCE_STEP_SECONDS[0]
                                                   + 5 * 2000 * REFERENCE_EVAL_SECONDS_PER_IMAGE))
    frozen7, plus7 = reference_seconds(t["BnB n=7 random:0 s0"]), reference_seconds(t["AnB+ n=7 random:0 s0"])
    assert frozen7 < reference_seconds(t["BnB n=1 random:0 s0"]) < base == plus7


def test_committed_trials_cost_nothing_and_calibrate():
    plan = plan_of()
    first = plan.trials[0]
    row = {"key": first.key, "name": first.name, "treatment": first.treatment, "split": first.split,
           "target_half": first.target_half, "source_half": None, "n": 0, "seed": 0, "base_key": None,
           "settings_json": json.dumps(first.settings.to_dict()),
           "wall_seconds": 2 * reference_seconds(first.settings)}
    cold = estimate(plan, set(), slots=2)
    warm = estimate(plan, {first.key}, slots=2, committed_rows=[row])
    assert (cold.trials, cold.committed, warm.trials, warm.committed) == (len(plan), 0, len(plan) - 1, 1)
    assert (warm.calibration, warm.calibrated_on) == (pytest.approx(2.0), 1)
    todo = sum(reference_seconds(t.settings) for t in plan.trials[1:])
    assert warm.cpu_seconds == pytest.approx(2 * todo)
    assert cold.wall_seconds == pytest.approx(cold.cpu_seconds / 2)
    assert "calibrated x2.00 from 1 committed trial(s)" in warm.text()


def test_no_estimate_for_networks_the_table_does_not_cover():
    e = estimate(plan_of(model={"arch": "small", "fc_width": 512}), set(), slots=2)
    assert math.isnan(e.cpu_seconds) and e.text() == (
        "estimated CPU time: not available (per-step costs are measured for the small network on CPU only)")


def test_the_reference_predicts_the_published_study_it_was_measured_against():
    """The converged study's 132 committed wall times calibrate the reference: SWEEP_OVERHEAD was measured
    on its first run (AVX2 EPYC: 1.00); republished under protocol 3 on a 2-vCPU AVX-512 EPYC, the same
    132 trainings took 0.59 of the AVX2 reference's time. A change to the cost model that moves this
    must re-measure."""
    import pyarrow.parquet as pq

    from orchestrator.spec.estimate import calibration
    rows = pq.read_table(ROOT / "docs" / "results" / "converged" / "results.parquet").to_pylist()
    factor, count = calibration(rows)
    assert count == 132 and factor == pytest.approx(0.593, abs=0.01)
