"""What a plan will cost before anything runs: CPU seconds per trial from measured per-step costs.

A trial costs ``steps x step_seconds(n frozen) + evaluations x test images x eval_seconds_per_image``.
The reference costs below were measured with `bench/step_costs.py` (one thread, the small network at
its default widths, batch 128, the fashion-animals halves) on the CPU named in ``REFERENCE_CPU``;
CPUs differ (the same demo ran 3x slower on an AVX2-only core), so when the store already holds
committed trials of the same network and batch size, their measured wall times calibrate the
reference (``calibration``: measured / predicted over those trials). Committed trials cost nothing.

Pure: no I/O; the CLI passes the committed rows it read from the store.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Optional

from orchestrator.spec.plan import Plan
from sweepcore.settings import TrialSettings
from sweepcore.vocabulary import ALL_HALF, DATASETS, dataset_info

REFERENCE_CPU = "AMD EPYC (2 vCPUs, AVX2, no AVX-512), torch 2.13.0+cpu, 1 thread per trial"
# seconds per SGD step at batch 128 by the number of frozen leading layers (0 = every layer trains)
# (bench/step_costs.py, 2026-12-01, augmentation on, one process alone; a step includes its batch's
# gather and augmentation)
REFERENCE_STEP_SECONDS = {0: 0.0876, 1: 0.0674, 2: 0.0553, 3: 0.0449, 4: 0.0451, 5: 0.0369, 6: 0.0359,
                          7: 0.0439}
REFERENCE_EVAL_SECONDS_PER_IMAGE = 2.24e-4
# A sweep is slower than the bench's lone process: two trials share the machine under Ray, and each
# writes checkpoints, progress and its curve to the store. Measured on the same machine: the 132
# trials of sweeps/converged.yaml took this many times the bench's prediction in total.
SWEEP_OVERHEAD = 1.39
REFERENCE_MODEL = {"arch": "small", "widths": (16, 32, 48, 48, 32), "fc_width": 256}
REFERENCE_BATCH = 128


@dataclass(frozen=True)
class Estimate:
    """CPU time of the trials still to run, and the wall time on `slots` concurrent trials."""

    trials: int                 # trials still to run
    committed: int              # trials already committed (cost nothing)
    cpu_seconds: float          # trial-thread seconds of the trials to run
    wall_seconds: float         # on `slots` concurrent trials, bases before their dependents
    slots: int
    calibration: float          # measured / reference, from committed trials (1.0 without any)
    calibrated_on: int          # committed trials behind the calibration
    note: str = ""              # why there is no estimate (another network, a GPU), else ""

    def text(self) -> str:
        """Two lines for `transfer-sweep plan`."""
        if self.note:
            return f"estimated CPU time: not available ({self.note})"
        cal = (f"calibrated x{self.calibration:.2f} from {self.calibrated_on} committed trial(s) in the store"
               if self.calibrated_on else f"measured on {REFERENCE_CPU}; other CPUs differ")
        return (f"estimated CPU time: {self.cpu_seconds / 3600:.1f} trial-thread hours for {self.trials} "
                f"training(s) ({self.committed} already committed); about {self.wall_seconds / 60:.0f} min "
                f"of wall time at {self.slots} trial(s) at once\n"
                f"  from per-step costs {cal}")


def _classes(settings: TrialSettings) -> int:
    total = dataset_info(settings.dataset).num_classes
    return total if settings.target_half == ALL_HALF else total // 2


def steps_of(settings: TrialSettings) -> int:
    """SGD iterations of a trial: `iterations`, or epochs of its target half's training images."""
    train = settings.train
    if train.iterations is not None:
        return int(train.iterations)
    per_class = dataset_info(settings.dataset).train_per_class
    return math.ceil(float(train.epochs or 0) * _classes(settings) * per_class / train.batch_size)


def evaluations_of(settings: TrialSettings) -> int:
    """Evaluations of a trial: every eval_every steps and at the last step."""
    steps, every = steps_of(settings), settings.train.eval_every
    return steps // every + (1 if steps % every else 0)


def reference_seconds(settings: TrialSettings) -> Optional[float]:
    """Predicted single-thread seconds of a trial from the reference table; None when the table does not
    apply (another network, a GPU trial)."""
    model = {k: getattr(settings.model, k) for k in REFERENCE_MODEL}
    if model != REFERENCE_MODEL or settings.runtime.device != "cpu" or settings.dataset not in DATASETS:
        return None
    frozen = settings.n if settings.frozen else 0
    batch = settings.train.batch_size / REFERENCE_BATCH
    step = REFERENCE_STEP_SECONDS[frozen] * batch
    test_images = _classes(settings) * dataset_info(settings.dataset).test_per_class
    return SWEEP_OVERHEAD * (steps_of(settings) * step + evaluations_of(settings) * test_images
                             * REFERENCE_EVAL_SECONDS_PER_IMAGE)


def calibration(committed_rows: Iterable[dict]) -> tuple[float, int]:
    """measured / predicted wall seconds over committed rows whose settings the reference covers (any
    sweep: a row's settings_json is enough), and how many rows that is; (1.0, 0) without any."""
    measured = predicted = 0.0
    count = 0
    for row in committed_rows:
        try:
            settings = TrialSettings.from_dict(json.loads(row["settings_json"]))
            ref = reference_seconds(settings)
        except (KeyError, TypeError, ValueError):
            continue  # a row this table does not describe: it cannot calibrate
        wall = row.get("wall_seconds")
        if ref and wall and wall > 0 and settings.runtime.threads == 1:
            measured, predicted, count = measured + float(wall), predicted + ref, count + 1
    return (measured / predicted, count) if count else (1.0, 0)


def estimate(plan: Plan, committed: set[str], slots: int, committed_rows: Iterable[dict] = ()) -> Estimate:
    """The cost of the plan's trials not in `committed`, on `slots` concurrent single-thread trials."""
    todo = [t for t in plan.trials if t.key not in committed]
    done = len(plan) - len(todo)
    seconds = {t.key: reference_seconds(t.settings) for t in todo}
    if any(s is None for s in seconds.values()):
        return Estimate(len(todo), done, math.nan, math.nan, slots, 1.0, 0,
                        note="per-step costs are measured for the small network on CPU only")
    factor, count = calibration(committed_rows)
    cost = {key: (s or 0.0) * factor for key, s in seconds.items()}
    slots = max(1, slots)
    total = sum(cost.values())
    # bases run first; a dependent cannot finish before its base: the wall time is at least the longest
    # base plus its longest dependent
    chain = max((cost.get(t.base_key or "", 0.0) + cost[t.key] for t in todo), default=0.0)
    return Estimate(len(todo), done, total, max(total / slots, chain), slots, factor, count)
