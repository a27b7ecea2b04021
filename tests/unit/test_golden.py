"""Golden values of the built-in models and the training loop: a few steps of each from a fixed key
must reproduce what tests/golden/built_in_models.json recorded.

A change to what a training computes (the loop, the schedule, the data order, augmentation, surgery,
a model's layers or init) changes these numbers. If that change is meant, it changes what every
stored row means, so it must come with a protocol bump (`PROTOCOL_VERSION` in sweepcore/settings.py:
every key changes, no old row is reused) and new golden values:

    .venv/bin/python tests/unit/test_golden.py --write

Bitwise where the recorded environment (torch version, device, CPU instruction set) matches this
machine's; elsewhere every loss on the curve within a relative LOSS_TOLERANCE (float reductions
differ between instruction sets in the last bits, which a few steps keep small). Accuracies are
compared only bitwise: on 10 test images one flipped prediction is 10 pp.

Unit tier: in-memory data registered here (seeded NumPy draws), a local folder store, no Ray.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: plan_helpers, when run as a script

from plan_helpers import noise_arrays, planned_settings  # noqa: E402

from sweepcore import records  # noqa: E402
from sweepcore.settings import PROTOCOL_VERSION, RNG_VERSION  # noqa: E402
from sweepcore.store import open_store  # noqa: E402
from workers import data  # noqa: E402
from workers.trial import environment, run_trial  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "built_in_models.json"
LOSS_TOLERANCE = 1e-4
TRAIN = {"iterations": 6, "epochs": None, "batch_size": 8, "eval_every": 3, "checkpoint_every": 3, "top_k": 2}
SMALL = {"arch": "small", "widths": [4, 4, 4, 4, 4], "fc_width": 16}
CAFFENET = {"arch": "caffenet", "widths": [4, 4, 4, 4, 4], "fc_width": 16}  # 227x227 geometry, narrow
RESNET = {"arch": "resnet", "widths": [4, 8, 8], "blocks": [1, 1, 1], "dropout": 0.0}
# (case, trial name, dataset, model): run in this order, so a transfer finds its base in the store
CASES = [
    ("small base", "baseA random:0 s0", "golden-gray", SMALL),
    ("small AnB n=3 (frozen copy)", "AnB n=3 random:0 s0", "golden-gray", SMALL),
    ("small AnB+ n=5 (fine-tuned copy)", "AnB+ n=5 random:0 s0", "golden-gray", SMALL),
    ("caffenet base", "baseA random:0 s0", "golden-rgb", CAFFENET),
    ("resnet base", "baseA random:0 s0", "golden-gray", RESNET),
]


def _register() -> None:
    data.register_dataset(data.DatasetSpec("golden-gray", 20, {"version": 1}, lambda: noise_arrays(2014, 2, 1)))
    data.register_dataset(data.DatasetSpec("golden-rgb", 20, {"version": 1},
                                           lambda: noise_arrays(2014, 2, 1, (227, 227, 3))))
    data.clear_memo()


def measure(store_root: Path) -> dict:
    """Train every case into a fresh store; what each produced, keyed by case."""
    _register()
    store = open_store(str(store_root))
    out = {}
    for case, name, dataset, model in CASES:
        settings = planned_settings(name, dataset=dataset, model=model, train=TRAIN,
                                    resources={"channels_last": False})
        row = run_trial(settings, store)
        curve = records.read_curve(store, settings.key).to_pylist()
        out[case] = {"key": settings.key, "rng_root": settings.rng_root, "steps": row["steps"],
                     "top1_final": row["top1_final"], "top1_paper": row["top1_paper"],
                     "final_loss": row["final_loss"], "state_sha256": row["state_sha256"],
                     "losses": [point["loss"] for point in curve]}
    return out


def _remedy() -> str:
    return (f"If the training's arithmetic changed on purpose, bump PROTOCOL_VERSION in sweepcore/settings.py "
            f"(now {PROTOCOL_VERSION}; a change to how draws derive from rng_root: RNG_VERSION, now {RNG_VERSION}) "
            f"and write new golden values: .venv/bin/python tests/unit/test_golden.py --write")


@pytest.fixture(scope="module")
def measured(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield measure(tmp_path_factory.mktemp("golden") / "store")
    for name in ("golden-gray", "golden-rgb"):
        data.DATASETS.pop(name, None)
    data.clear_memo()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_a_few_steps_of_each_built_in_model_reproduce_the_golden_values(measured, case):
    golden = json.loads(GOLDEN.read_text())
    want, got = golden["cases"][case], measured[case]
    assert got["key"] == want["key"], (
        f"{case}: the settings plan to key {got['key']}, the golden values were recorded for {want['key']} "
        f"(protocol {golden['protocol']}, this code: {PROTOCOL_VERSION}). After a protocol bump, write new golden "
        "values: .venv/bin/python tests/unit/test_golden.py --write")
    if golden["environment"] == environment():
        differing = [f"{name} {want[name]!r} -> {got[name]!r}" for name in want if want[name] != got[name]]
        assert not differing, f"{case} (key {want['key']}) no longer trains bitwise what it did: " \
                              f"{'; '.join(differing)}. {_remedy()}"
        return
    assert got["steps"] == want["steps"], f"{case}: {want['steps']} steps recorded, {got['steps']} now. {_remedy()}"
    far = [(i, a, b) for i, (a, b) in enumerate(zip(want["losses"], got["losses"]))
           if not math.isclose(a, b, rel_tol=LOSS_TOLERANCE)]
    assert len(want["losses"]) == len(got["losses"]) and not far, (
        f"{case} (key {want['key']}), recorded in {golden['environment']}, here {environment()}: losses beyond "
        f"a relative {LOSS_TOLERANCE:g}: {far}. {_remedy()}")


def write_golden() -> None:
    """Measure on this machine and record the values with the environment they hold bitwise for."""
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFER_SWEEP_CACHE"] = str(Path(tmp) / "cache")
        cases = measure(Path(tmp) / "store")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"protocol": PROTOCOL_VERSION, "rng_version": RNG_VERSION,
                                  "environment": environment(), "cases": cases}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}: {len(cases)} cases, environment {environment()}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/unit/test_golden.py --write")
    write_golden()
