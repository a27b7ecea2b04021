"""Per-step training cost by cut point, and per-image evaluation cost: the table `plan` estimates from.

One thread, the spec's network and batch size, the real fashion-animals half (random:0, B): for a
full training (base, and every '+' treatment) and for a network whose layers 1..n are frozen (n = 1..7),
the median seconds per SGD step over --steps steps (after a warm-up), measured in alternating order;
then the seconds per test image of one evaluation. Prints the table as a Python literal for
orchestrator/spec/estimate.py, with the CPU it ran on; the last line is the ratio frozen(7) / full.

    python bench/step_costs.py sweeps/converged.yaml
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.machine import cpu_name  # noqa: E402
from orchestrator.spec import load_spec, make_plan  # noqa: E402
from sweepcore.settings import TrialSettings  # noqa: E402
from workers.data import load_half  # noqa: E402
from workers.models import build_model  # noqa: E402
from workers.surgery import transplant  # noqa: E402
from workers.train import EVAL_BATCH, evaluate, make_optimizer  # noqa: E402


def step_seconds(settings: TrialSettings, data, n_frozen: int, steps: int) -> float:
    model = build_model(settings.model, torch.Generator().manual_seed(0))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    transplant(model, base if n_frozen else None, n_frozen, n_frozen > 0, torch.Generator().manual_seed(1))
    model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, settings.train)
    gen = torch.Generator().manual_seed(2)
    batch = int(settings.train.batch_size)
    times = []
    for i in range(steps + 5):
        t0 = time.perf_counter()  # the batch's gather and augmentation are part of a step's cost
        idx = torch.randint(0, data.num_train, (batch,), generator=gen)
        x, y = data.train_batch(idx, gen, bool(settings.train.augment))
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = load_spec(args.spec)
    trial = make_plan(spec).bases[0]
    data = load_half(spec.dataset, trial.split, trial.target_half)
    costs = {n: [] for n in range(8)}
    for order in (range(8), reversed(range(8))):   # A B ... B A: drift cancels in the medians
        for n in order:
            costs[n].append(step_seconds(trial.settings, data, n, args.steps // 2))
    table = {n: statistics.median(v) for n, v in costs.items()}
    model = build_model(trial.settings.model, torch.Generator().manual_seed(0)).to(
        memory_format=torch.channels_last)
    t0 = time.perf_counter()
    for _ in range(3):
        evaluate(model, data, EVAL_BATCH, "cpu", True, lambda: torch.autocast("cpu", enabled=False))
    per_image = (time.perf_counter() - t0) / 3 / int(data.test_x.shape[0])
    print(f"# {cpu_name()}, 1 thread, torch {torch.__version__}, batch {trial.settings.train.batch_size}, "
          f"augment {trial.settings.train.augment}")
    print("STEP_SECONDS = {" + ", ".join(f"{n}: {v:.5f}" for n, v in table.items()) + "}  # 0 = full training")
    print(f"EVAL_SECONDS_PER_IMAGE = {per_image:.3e}")
    print(f"RATIO frozen7_over_full={table[7] / table[0]:.2f} frozen1_over_full={table[1] / table[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
