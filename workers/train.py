"""The training loop: SGD schedule, evaluation, checkpoint/resume through the store, metrics.

Resume is exact: a checkpoint holds everything the next step depends on (weights, momentum, step,
torch RNG state for dropout, the data generator state and the current epoch's order, the running
loss), so on CPU with a fixed thread count an interrupted-then-resumed training ends bitwise equal
to an uninterrupted one. Checkpoints hold only tensors, numbers, strings, lists and dicts: they
load with torch.load(weights_only=True).

The loop never waits on the store: a checkpoint (and the progress record that goes with it) is a host
snapshot handed to a background writer (workers/store_writer.py), at most one in flight. Training
ends only when its final checkpoint is in the store.
"""
from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import torch
import torch.nn.functional as F

from sweepcore import records
from sweepcore.settings import TrainSettings, TrialSettings
from sweepcore.store import Store
from workers.data import HalfLoader
from workers.store_writer import BackgroundWriter, host_copy

EVAL_BATCH = 500
DATA_SEED_OFFSET = 0x9E3779B97F4A7C15  # keeps the data stream distinct from the dropout stream


class TrainingInterrupted(Exception):
    """Raised by train(stop_after=k) after step k (and its checkpoint, if one was due): a test's crash."""

    def __init__(self, step: int):
        super().__init__(f"training interrupted after step {step} (stop_after)")
        self.step = step


class TrainingDiverged(ValueError):
    """The loss stopped being a number: the network that follows means nothing, so it is never
    committed as a result (the trial fails, saying at which steps and with which learning rate)."""

    def __init__(self, first_step: int, step: int, loss: float, lr: float):
        super().__init__(f"training diverged: the mean loss over steps {first_step}-{step} is {loss} (lr {lr:g} at "
                         f"step {step}); lower train.lr, or lengthen train.warmup_fraction")


CHECKPOINT_FIELDS = ("key", "step", "model", "optimizer", "curve", "wall_seconds", "rng", "data_rng", "perm",
                     "loss_sum", "loss_count")


def _decode_checkpoint(blob: bytes, key: str, model: torch.nn.Module) -> dict:
    """A checkpoint of trial `key` for `model`, or ValueError: what does not load (weights_only), is
    another trial's, or does not fit the network is not this trial's checkpoint (records skips it)."""
    ckpt = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or any(name not in ckpt for name in CHECKPOINT_FIELDS):
        raise ValueError("not a checkpoint dict")
    if ckpt["key"] != key:
        raise ValueError("another trial's checkpoint")
    own = model.state_dict()
    state = ckpt["model"]
    if not isinstance(state, dict) or set(state) != set(own) or any(
            not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape for k in own):
        raise ValueError("weights that do not fit this network")
    return ckpt


@dataclass
class TrainOutcome:
    """What a finished training produced."""

    steps: int
    curve: list[dict]  # one dict per evaluation: step, top1, loss, lr, seconds
    wall_seconds: float  # training wall time summed over attempts
    top1_final: float
    top1_paper: float
    state_dict: dict = field(repr=False)  # final weights (CPU tensors)


def total_iterations(train_settings: TrainSettings, num_train: int) -> int:
    """`iterations` if set, else ceil(epochs * num_train / batch_size)."""
    if train_settings.iterations is not None:
        return int(train_settings.iterations)
    if train_settings.epochs is None:
        raise ValueError("train settings give neither iterations nor epochs")
    return math.ceil(float(train_settings.epochs) * num_train / int(train_settings.batch_size))


def learning_rate(train_settings: TrainSettings, step: int, total: int) -> float:
    """Learning rate of iteration `step` (0-based): linear warm-up, then cosine or step decay."""
    base = float(train_settings.lr)
    warmup = int(round(float(train_settings.warmup_fraction) * total))
    schedule = train_settings.lr_schedule
    if schedule == "cosine":
        if step < warmup:
            return base * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        every = train_settings.lr_step_every
        if every is None:
            raise ValueError("lr_schedule 'step' needs lr_step_every")
        lr = base * float(train_settings.lr_gamma) ** (step // int(every))
        return lr * (step + 1) / warmup if step < warmup else lr
    raise ValueError(f"unknown lr_schedule {schedule!r}: expected 'cosine' or 'step'")


def paper_metric(top1s: list[float], top_k: int) -> float:
    """Mean of the top_k best evaluations (of all of them if there are fewer)."""
    best = sorted(top1s, reverse=True)[:top_k]
    return sum(best) / len(best)


def make_optimizer(model: torch.nn.Module, train_settings: TrainSettings) -> torch.optim.SGD:
    """SGD with momentum over trainable parameters only (frozen ones get neither steps nor decay).

    Two param groups: weights (lr x1, weight decay) and biases (lr x bias_lr_mult, decay only if
    bias_decay). Each group's 'lr_mult' scales the scheduled lr.
    """
    decay = float(train_settings.weight_decay)
    weights: list[torch.nn.Parameter] = []
    biases: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (biases if name.endswith(".bias") else weights).append(param)
    groups = [{"params": weights, "lr_mult": 1.0, "weight_decay": decay},
              {"params": biases, "lr_mult": float(train_settings.bias_lr_mult),
               "weight_decay": decay if train_settings.bias_decay else 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=float(train_settings.lr),
                           momentum=float(train_settings.momentum))


def evaluate(model: torch.nn.Module, data, batch_size: int, device: str, channels_last: bool,
             autocast) -> float:
    """Top-1 accuracy on the data's test set (model in eval mode, no augmentation)."""
    model.eval()
    correct = total = 0
    with torch.no_grad(), autocast():
        for x, y in data.test_batches(batch_size):
            x = _to_device(x, device, channels_last)
            correct += int((model(x).argmax(dim=1) == y.to(device)).sum())
            total += int(y.shape[0])
    model.train()
    return correct / total


def _to_device(x: torch.Tensor, device: str, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _rng_states(device: str) -> dict:
    states = {"torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict, device: str) -> None:
    torch.set_rng_state(states["torch"])
    if device.startswith("cuda") and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def train(model: torch.nn.Module, data: HalfLoader, settings: TrialSettings, store: Store, *, seed: int,
          report: Callable[[dict], None] | None = None, stop_after: int | None = None) -> TrainOutcome:
    """Train `model` (already built and transplanted) on `data`, resuming from the store's newest
    valid checkpoint of settings.key if there is one.

    `seed` seeds dropout (torch's global RNG) and the data order/augmentation generator.
    `report(metrics)` is called after each evaluation (and after that step's checkpoint is handed to
    the writer) with step, total_steps, top1, loss (mean training loss since the previous
    evaluation), lr, images_per_second (since the previous report, evaluation included),
    checkpoint_step and checkpoint_unix (the newest checkpoint in the store: resumed from or written
    by this attempt, None before the first; the write of this step's may still be in flight, except
    at the last step). `stop_after=k` raises
    TrainingInterrupted after step k, after that step's checkpoint if one was due.
    """
    key, tr, rt = settings.key, settings.train, settings.runtime
    device, channels_last = rt.device, rt.channels_last
    torch.set_num_threads(rt.threads)
    batch_size, total = tr.batch_size, total_iterations(tr, data.num_train)
    eval_every, ckpt_every = tr.eval_every, tr.checkpoint_every
    augment = tr.augment
    if total < 1:
        raise ValueError(f"trial {key}: {total} iterations; a training needs at least one")
    use_bf16 = tr.bf16 and device.startswith("cuda")

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    data = data.to(device)
    optimizer = make_optimizer(model, tr)
    forward = model
    if rt.data_parallel > 1:
        forward = torch.nn.DataParallel(model, device_ids=list(range(rt.data_parallel)))

    # two streams from one seed: dropout (torch's global RNG) and data order + augmentation
    generator = torch.Generator().manual_seed((seed + DATA_SEED_OFFSET) % 2**64)
    torch.manual_seed(seed)
    step, curve, prior_wall, perm = 0, [], 0.0, None
    loss_sum, loss_count = torch.zeros((), dtype=torch.float64, device=device), 0
    found = records.load_latest_checkpoint(store, key, lambda blob: _decode_checkpoint(blob, key, model))
    if found is not None:
        ckpt = found[1]
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, curve, prior_wall, perm = ckpt["step"], ckpt["curve"], ckpt["wall_seconds"], ckpt["perm"]
        generator.set_state(ckpt["data_rng"])
        _set_rng_states(ckpt["rng"], device)
        loss_sum.fill_(ckpt["loss_sum"])
        loss_count = ckpt["loss_count"]

    started = time.perf_counter()

    def wall() -> float:
        return prior_wall + (time.perf_counter() - started)

    # for report(): throughput since the previous report, and the newest checkpoint (None: none yet)
    reported = (step, time.perf_counter())
    last_checkpoint: list[tuple[int | None, float | None]] = [(step if found is not None else None,
                                                               time.time() if found is not None else None)]

    def checkpoint() -> None:
        snapshot = host_copy({"key": key, "step": step, "total_steps": total, "model": model.state_dict(),
                              "optimizer": optimizer.state_dict(), "curve": list(curve), "wall_seconds": wall(),
                              "rng": _rng_states(device), "data_rng": generator.get_state(), "perm": perm,
                              "loss_sum": float(loss_sum.item()), "loss_count": loss_count})
        progress = {"step": step, "total_steps": total, "wall_seconds": snapshot["wall_seconds"],
                    "top1": curve[-1]["top1"] if curve else None}

        def write() -> None:
            blob = io.BytesIO()
            torch.save(snapshot, blob)
            records.save_checkpoint(store, key, progress["step"], blob.getvalue())
            last_checkpoint[0] = (progress["step"], time.time())
            records.write_progress(store, key, {**progress, "updated_at": datetime.now(timezone.utc).isoformat()})
        writer.submit(write)

    writer = BackgroundWriter(key)
    model.train()
    try:
        steps_per_epoch = max(1, data.num_train // batch_size)  # the epoch's last partial batch is dropped
        while step < total:
            pos = step % steps_per_epoch
            if pos == 0 or perm is None:
                perm = torch.randperm(data.num_train, generator=generator)
            x, y = data.train_batch(perm[pos * batch_size:(pos + 1) * batch_size], generator, augment)
            x, y = _to_device(x, device, channels_last), y.to(device)
            lr = learning_rate(tr, step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_mult"]
            with autocast():
                loss = F.cross_entropy(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double()
            loss_count += 1
            step += 1
            evaluated = step % eval_every == 0 or step == total
            if evaluated:
                mean_loss = float(loss_sum.item()) / max(1, loss_count)
                if not math.isfinite(mean_loss):  # checked where the loss is read anyway: no extra sync
                    raise TrainingDiverged(step - loss_count + 1, step, mean_loss, lr)
                top1 = evaluate(forward, data, EVAL_BATCH, device, channels_last, autocast)
                row = {"step": step, "top1": top1, "loss": mean_loss, "lr": lr, "seconds": wall()}
                curve.append(row)
                loss_sum.zero_()
                loss_count = 0
            if step % ckpt_every == 0 or step == total:
                checkpoint()  # the final one too: a crash before the result commit then resumes at the end
            if step == total or (stop_after is not None and step >= stop_after):
                writer.wait()  # the last checkpoint is in the store before the result (or the interruption)
            if evaluated and report is not None:
                now = time.perf_counter()
                report({"step": step, "total_steps": total, "top1": top1, "loss": row["loss"], "lr": lr,
                        "images_per_second": (step - reported[0]) * batch_size / max(now - reported[1], 1e-9),
                        "checkpoint_step": last_checkpoint[0][0], "checkpoint_unix": last_checkpoint[0][1]})
                reported = (step, now)
            if stop_after is not None and step >= stop_after:
                raise TrainingInterrupted(step)
    except BaseException:
        writer.close(quiet=True)  # the training's own error is the one to report
        raise
    writer.close()

    top1s = [row["top1"] for row in curve]
    return TrainOutcome(steps=step, curve=curve, wall_seconds=wall(), top1_final=top1s[-1],
                        top1_paper=paper_metric(top1s, tr.top_k),
                        state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
