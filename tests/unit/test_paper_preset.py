"""sweeps/paper.yaml is the released study (yosinski/convnet_transfer) trial for trial, with the paper's
solver and network; docs/paper-mapping.md explains every count asserted here."""
from collections import Counter
from pathlib import Path

from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "sweeps" / "paper.yaml"
LAYERS = range(1, 8)
# The release's natman halves are named the other way round: its A is natural (our B).
RELEASE_NATMAN = {"A": "B", "B": "A"}


def released_networks() -> set[str]:
    """The release's network folders that the preset must train: 163 listed - 12 reduced-volume nets
    - 22 fine-tuned nets without logs, + the 7 random-weight nets (nolearn_1_n)."""
    nets = {f"half{s}{h}" for s in range(4) for h in "AB"} | {"halfnatmanA", "halfnatmanB", "netbase"}
    for s in range(4):
        for n in LAYERS:
            nets |= {f"transfer{s}A{s}A_1_{n}", f"transfer{s}A{s}B_1_{n}", f"transfer{s}B{s}A_1_{n}"}
    for n in LAYERS:
        nets |= {f"transfer-ft0A0A_1_{n}", f"transfer-ft0A0B_1_{n}", f"transfernatmanAB_1_{n}",
                 f"transfernatmanBA_1_{n}", f"nolearn_1_{n}"}
    nets |= {f"transfer-ft1A1A_1_{n}" for n in (3, 5, 6)} | {f"transfer-ft1A1B_1_{n}" for n in (2, 3, 4)}
    return nets


def release_name(t) -> str:
    """The release folder a planned trial reproduces."""
    if t.split == "all":
        return "netbase" if t.treatment == "base" else f"nolearn_1_{t.n}"
    if t.split == "natman":
        tgt = RELEASE_NATMAN[t.target_half]
        return f"halfnatman{tgt}" if t.treatment == "base" else \
            f"transfernatman{RELEASE_NATMAN[t.source_half]}{tgt}_1_{t.n}"
    s = t.split.split(":")[1]
    if t.treatment == "base":
        return f"half{s}{t.target_half}"
    head = "transfer-ft" if t.treatment.endswith("+") else "transfer"
    return f"{head}{s}{t.source_half}{s}{t.target_half}_1_{t.n}"


def test_every_trial_is_one_released_network_and_every_released_network_is_planned():
    plan = make_plan(load_spec(PRESET))
    names = [release_name(t) for t in plan.trials]
    assert Counter(names).most_common(1)[0][1] == 1  # no two trials reproduce the same network
    assert set(names) == released_networks()
    assert len(released_networks()) == 163 - 12 - 22 + 7


def test_transfers_copy_from_the_base_of_their_source_half_in_the_same_split():
    plan = make_plan(load_spec(PRESET))
    bases = {(t.split, t.target_half): t.key for t in plan.bases}
    for t in plan.trials:
        if t.treatment == "random":
            assert (t.base_key, t.split, t.settings.frozen) == (None, "all", True)
        elif t.treatment != "base":
            assert t.base_key == bases[(t.split, t.source_half)], t.name
            assert t.settings.frozen == (not t.treatment.endswith("+")), t.name


def test_every_network_uses_the_papers_solver_and_caffenet():
    plan = make_plan(load_spec(PRESET))
    solver = {"epochs": None, "iterations": 450000, "batch_size": 256, "lr": 0.01, "lr_schedule": "step",
              "lr_step_every": 100000, "lr_gamma": 0.1, "warmup_fraction": 0.0, "momentum": 0.9,
              "weight_decay": 0.0005, "bias_lr_mult": 2.0, "bias_decay": False, "eval_every": 1000,
              "checkpoint_every": 5000, "top_k": 10, "augment": True, "bf16": False}
    model = {"arch": "caffenet", "num_outputs": 1000, "widths": [96, 256, 384, 384, 256], "fc_width": 4096,
             "dropout": 0.5, "init": "caffe", "cut_points": None, "blocks": None, "in_channels": None,
             "factory": None, "frozen_bn": None, "factory_sha256": None}
    for t in plan.trials:
        assert t.settings.to_dict()["train"] == solver and t.settings.to_dict()["model"] == model, t.name
        assert t.settings.dataset == "imagenet"
        assert t.settings.to_dict()["runtime"] == {"device": "cuda", "threads": 8, "channels_last": True,
                                             "data_parallel": 1}
