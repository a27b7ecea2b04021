"""Training throughput: workers.train.train() vs a bare PyTorch loop, same model, data and batch.

All arms train the base network of sweeps/standard.yaml (workers.models.build_model with the spec's
resolved model, the same seed) on the same in-memory half (random:0, half A) with the spec's batch
size, SGD momentum/weight decay/lr and augmentation setting, on 1 thread:
  bare  forward / cross-entropy / zero_grad / backward / step, channels_last as the spec says; no
        evaluation, no checkpoint, no lr schedule;
  std   train() with eval_every / checkpoint_every as sweeps/standard.yaml sets them (every eval runs
        the half's whole test set; every checkpoint is written with fsync to a local store);
  far   train() with both intervals beyond the run (it still evaluates and checkpoints once, at the
        last step, as every training must).
Arms alternate (bare std far, far std bare, ...) and the medians are compared. Last line:
    RATIO train/bare=<far / bare> (target >= 0.95) standard_intervals=<std / bare>
Usage: python bench/train_loop.py [--steps 300] [--repeats 5]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from orchestrator.spec import load_spec, make_plan  # noqa: E402
from sweepcore.settings import TrialSettings  # noqa: E402
from sweepcore.store import open_store  # noqa: E402
from workers.data import load_half  # noqa: E402
from workers.models import build_model  # noqa: E402
from workers.train import EVAL_BATCH, evaluate, train  # noqa: E402

SEED = 1234
FAR = 10**9


def fresh_model(settings: TrialSettings) -> torch.nn.Module:
    return build_model(settings.model, torch.Generator().manual_seed(SEED))


def bare_loop(settings: TrialSettings, data, steps: int) -> float:
    """Seconds for `steps` plain SGD steps on the same batches train() would draw."""
    tr, channels_last = settings.train, bool(settings.runtime.channels_last)
    model = fresh_model(settings)
    t0 = time.perf_counter()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(tr.lr), momentum=float(tr.momentum),
                                weight_decay=float(tr.weight_decay))
    generator = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    batch, per_epoch = int(tr.batch_size), max(1, data.num_train // int(tr.batch_size))
    model.train()
    perm = None
    for step in range(steps):
        pos = step % per_epoch
        if pos == 0:
            perm = torch.randperm(data.num_train, generator=generator)
        x, y = data.train_batch(perm[pos * batch:(pos + 1) * batch], generator, bool(tr.augment))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def project_train(settings: TrialSettings, data, store, run: int) -> float:
    """Seconds for train() on a fresh key (so it never resumes from an earlier repeat's checkpoint)."""
    settings = dataclasses.replace(settings, key=f"bench{run:04d}")
    model = fresh_model(settings)
    t0 = time.perf_counter()
    outcome = train(model, data, settings, store, seed=SEED)
    seconds = time.perf_counter() - t0
    assert outcome.steps == settings.train.iterations
    return seconds


def eval_seconds(model, data, batch: int) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        evaluate(model, data, batch, "cpu", True, contextlib.nullcontext)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="SGD steps per measurement (300: a base of "
                        "standard.yaml, 5 epochs of a half, trains 313)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per arm")
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = load_spec(ROOT / "sweeps" / "standard.yaml", ("train.epochs=null", f"train.iterations={args.steps}"))
    base = next(t for t in make_plan(spec).bases if t.split.startswith("random")).settings
    assert base.runtime.threads == 1
    std = base
    far = dataclasses.replace(base, train=dataclasses.replace(base.train, eval_every=FAR, checkpoint_every=FAR))
    data = load_half(base.dataset, base.split, base.target_half)
    tr = base.train
    work = tempfile.mkdtemp(prefix="bench-train-loop-")
    store = open_store(work)
    print(f"{base.name}: model {base.model.widths} fc {base.model.fc_width}, batch "
          f"{tr.batch_size}, augment {tr.augment}, channels_last {base.runtime.channels_last}, "
          f"{data.num_train} train / {int(data.test_x.shape[0])} test images; {args.steps} steps per "
          f"measurement; standard.yaml: eval_every {tr.eval_every}, checkpoint_every "
          f"{tr.checkpoint_every}; load average {os.getloadavg()[0]:.2f}", flush=True)

    arms = {"bare": lambda i: bare_loop(base, data, args.steps),
            "std": lambda i: project_train(std, data, store, i),
            "far": lambda i: project_train(far, data, store, 1000 + i)}
    seconds: dict[str, list[float]] = {a: [] for a in arms}
    names = list(arms)
    try:
        bare_loop(base, data, 10)  # warm-up: allocator, first-call kernels
        for i in range(args.repeats):
            for arm in names if i % 2 == 0 else names[::-1]:
                seconds[arm].append(arms[arm](i))
            print(f"repeat {i + 1}: " + "  ".join(f"{a} {args.steps * tr['batch_size'] / seconds[a][-1]:6.0f} img/s"
                                              for a in names) + f"  (load {os.getloadavg()[0]:.2f})", flush=True)
        # what one evaluation costs (median of 3), at train.py's EVAL_BATCH and at batch 128
        model = fresh_model(base).to(memory_format=torch.channels_last)
        eval_s = {b: eval_seconds(model, data, b) for b in (EVAL_BATCH, 128)}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ips = {a: args.steps * tr.batch_size / statistics.median(seconds[a]) for a in names}
    step_s = statistics.median(seconds["bare"]) / args.steps
    print()
    print(f"{'median of ' + str(args.repeats):<44}{'images/s':>10}{'/bare':>8}")
    labels = {"bare": "bare PyTorch loop",
              "std": f"train(), eval/ckpt every {tr['eval_every']}/{tr['checkpoint_every']} steps",
              "far": "train(), intervals beyond the run"}
    for a in names:
        print(f"{labels[a]:<44}{ips[a]:>10.0f}{ips[a] / ips['bare']:>8.3f}")
    print(f"one evaluation of the test set: {eval_s[EVAL_BATCH]:.2f} s at EVAL_BATCH={EVAL_BATCH} = "
          f"{eval_s[EVAL_BATCH] / step_s:.1f} training steps ({eval_s[128]:.2f} s at batch 128); a bare step "
          f"takes {step_s * 1000:.0f} ms")
    print(f"RATIO train/bare={ips['far'] / ips['bare']:.3f} (target >= 0.95) "
          f"standard_intervals={ips['std'] / ips['bare']:.3f}")


if __name__ == "__main__":
    main()
