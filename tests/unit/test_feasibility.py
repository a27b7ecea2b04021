"""Impossible requests fail before training; feasible-after-scaling ones say what they wait for."""
from pathlib import Path

from orchestrator.execution.feasibility import autoscaler_node_types, judge, trial_demand

ROOT = Path(__file__).resolve().parents[2]
LAPTOP = [{"CPU": 2.0, "memory": 8e9}]


def test_a_trial_that_fits_a_live_node_runs():
    assert judge(trial_demand(1, 0), LAPTOP).kind == "ok"
    assert judge(trial_demand(2, 0), LAPTOP).kind == "ok"


def test_a_gpu_trial_on_a_cpu_cluster_is_infeasible_with_one_line_naming_the_resource():
    verdict = judge(trial_demand(1, 1), LAPTOP)
    assert verdict.kind == "infeasible"
    assert verdict.line == ("resources.gpus: a trial needs 1 GPU on one node, but the largest of the 1 live "
                            "node(s) has 0; no autoscaler node types are configured")


def test_too_many_cpus_for_any_node_is_infeasible():
    verdict = judge(trial_demand(4, 0), LAPTOP + [{"CPU": 3.0}])
    assert verdict.kind == "infeasible" and verdict.line.startswith(
        "resources.cpus: a trial needs 4 CPU on one node, but the largest of the 2 live node(s) has 3")


def test_the_cluster_launchers_node_types_make_a_gpu_trial_wait_for_scaling():
    types = autoscaler_node_types(str(ROOT / "cluster.yaml"))
    assert types["gpu4"] == {"CPU": 48.0, "GPU": 4.0} and "head" not in types  # the head adds no workers
    verdict = judge(trial_demand(8, 0.5), [{"CPU": 4.0}], types)
    assert (verdict.kind, verdict.node_type) == ("scale", "gpu4")
    assert verdict.line == "waiting for a gpu4 node from the autoscaler (a trial needs 8 CPU, 0.5 GPU)"
    assert judge(trial_demand(8, 8), [{"CPU": 4.0}], types).node_type == "gpu8"  # only the 8-GPU type fits
    too_big = judge(trial_demand(8, 16), [{"CPU": 4.0}], types)
    assert too_big.kind == "infeasible" and too_big.line.endswith("the autoscaler's node types offer at most 8")


def test_no_config_means_no_node_types(tmp_path):
    assert autoscaler_node_types(str(tmp_path / "missing.yaml")) == {}
    (tmp_path / "bad.yaml").write_text("available_node_types: [")
    assert autoscaler_node_types(str(tmp_path / "bad.yaml")) == {}
