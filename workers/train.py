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
import functools
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


@dataclass(eq=False)
class _Run:
    """One attempt's training state: everything a step reads or writes, hence everything a
    checkpoint holds (snapshot) and a resume puts back (restore)."""

    key: str
    total: int  # iterations of the whole training, not of this attempt
    device: str
    use_bf16: bool
    model: torch.nn.Module
    optimizer: torch.optim.SGD
    generator: torch.Generator  # data order + augmentation; dropout uses torch's global RNG
    loss_sum: torch.Tensor  # on the device: summing there costs no host sync per step
    step: int = 0
    curve: list[dict] = field(default_factory=list)
    perm: torch.Tensor | None = None  # the current epoch's order
    loss_count: int = 0
    prior_wall: float = 0.0  # wall time of earlier attempts
    started: float = 0.0  # perf_counter() when this attempt's training began
    # the newest checkpoint in the store as (step, unix time), (None, None) before the first. Set by
    # write() on the writer thread: one attribute replaced whole, so report() never reads a torn pair.
    last_checkpoint: tuple[int | None, float | None] = (None, None)

    def restore(self, ckpt: dict) -> None:
        """Put back the state a checkpoint (from _decode_checkpoint) holds."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.curve, self.perm = ckpt["step"], ckpt["curve"], ckpt["perm"]
        self.prior_wall, self.loss_count = ckpt["wall_seconds"], ckpt["loss_count"]
        self.loss_sum.fill_(ckpt["loss_sum"])
        self.generator.set_state(ckpt["data_rng"])
        _set_rng_states(ckpt["rng"], self.device)
        self.last_checkpoint = (self.step, time.time())  # the one resumed from is the store's newest

    def snapshot(self) -> dict:
        """The checkpoint of the state now: CHECKPOINT_FIELDS plus total_steps, in host memory, so
        that the steps that follow cannot change it while the writer saves it."""
        return host_copy({"key": self.key, "step": self.step, "total_steps": self.total,
                          "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                          "curve": list(self.curve), "wall_seconds": self.wall(), "rng": _rng_states(self.device),
                          "data_rng": self.generator.get_state(), "perm": self.perm,
                          "loss_sum": float(self.loss_sum.item()), "loss_count": self.loss_count})

    def write(self, store: Store, snapshot: dict) -> None:
        """Save `snapshot` and its progress record to the store (on the writer thread)."""
        blob = io.BytesIO()
        torch.save(snapshot, blob)
        records.save_checkpoint(store, self.key, snapshot["step"], blob.getvalue())
        self.last_checkpoint = (snapshot["step"], time.time())
        curve, progress = snapshot["curve"], {name: snapshot[name] for name in ("step", "total_steps", "wall_seconds")}
        records.write_progress(store, self.key, {**progress, "top1": curve[-1]["top1"] if curve else None,
                                                 "updated_at": datetime.now(timezone.utc).isoformat()})

    def wall(self) -> float:
        """Training wall time so far, earlier attempts included."""
        return self.prior_wall + (time.perf_counter() - self.started)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when the trial asks for it, else nothing."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_bf16 else contextlib.nullcontext()

    def log_evaluation(self, forward: torch.nn.Module, data: HalfLoader, lr: float, channels_last: bool) -> dict:
        """Evaluate, append the curve row (returned) and restart the running loss; TrainingDiverged
        if the mean loss since the previous evaluation is not a number."""
        mean_loss = float(self.loss_sum.item()) / max(1, self.loss_count)
        if not math.isfinite(mean_loss):  # checked where the loss is read anyway: no extra sync
            raise TrainingDiverged(self.step - self.loss_count + 1, self.step, mean_loss, lr)
        top1 = evaluate(forward, data, EVAL_BATCH, self.device, channels_last, self.autocast)
        row = {"step": self.step, "top1": top1, "loss": mean_loss, "lr": lr, "seconds": self.wall()}
        self.curve.append(row)
        self.loss_sum.zero_()
        self.loss_count = 0
        return row


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
    at the last step). `stop_after=k` raises TrainingInterrupted after step k, after that step's
    checkpoint if one was due.
    """
    key, tr, rt = settings.key, settings.train, settings.runtime
    device, channels_last, batch_size = rt.device, rt.channels_last, tr.batch_size
    torch.set_num_threads(rt.threads)
    total = total_iterations(tr, data.num_train)
    if total < 1:
        raise ValueError(f"trial {key}: {total} iterations; a training needs at least one")

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    data = data.to(device)
    optimizer = make_optimizer(model, tr)
    forward = model if rt.data_parallel <= 1 else torch.nn.DataParallel(model, device_ids=list(range(rt.data_parallel)))
    # two streams from one seed: dropout (torch's global RNG) and data order + augmentation
    run = _Run(key=key, total=total, device=device, use_bf16=tr.bf16 and device.startswith("cuda"), model=model,
               optimizer=optimizer, generator=torch.Generator().manual_seed((seed + DATA_SEED_OFFSET) % 2**64),
               loss_sum=torch.zeros((), dtype=torch.float64, device=device))
    torch.manual_seed(seed)
    found = records.load_latest_checkpoint(store, key, lambda blob: _decode_checkpoint(blob, key, model))
    if found is not None:
        run.restore(found[1])
    run.started = time.perf_counter()
    reported = (run.step, time.perf_counter())  # for report()'s throughput since the previous report

    writer = BackgroundWriter(key)
    model.train()
    try:
        steps_per_epoch = max(1, data.num_train // batch_size)  # the epoch's last partial batch is dropped
        while run.step < total:
            pos = run.step % steps_per_epoch
            if pos == 0 or run.perm is None:
                run.perm = torch.randperm(data.num_train, generator=run.generator)
            x, y = data.train_batch(run.perm[pos * batch_size:(pos + 1) * batch_size], run.generator, tr.augment)
            x, y = _to_device(x, device, channels_last), y.to(device)

            lr = learning_rate(tr, run.step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_mult"]
            with run.autocast():
                loss = F.cross_entropy(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.loss_sum += loss.detach().double()
            run.loss_count += 1
            run.step += 1

            last, stopping = run.step == total, stop_after is not None and run.step >= stop_after
            row = None  # the curve row, when this step is evaluated
            if run.step % tr.eval_every == 0 or last:
                row = run.log_evaluation(forward, data, lr, channels_last)
            if run.step % tr.checkpoint_every == 0 or last:
                # the final one too: a crash before the result commit then resumes at the end
                writer.submit(functools.partial(run.write, store, run.snapshot()))
            if last or stopping:
                writer.wait()  # the last checkpoint is in the store before the result (or the interruption)
            if row is not None and report is not None:
                now = time.perf_counter()
                report({"step": run.step, "total_steps": total, "top1": row["top1"], "loss": row["loss"], "lr": lr,
                        "images_per_second": (run.step - reported[0]) * batch_size / max(now - reported[1], 1e-9),
                        "checkpoint_step": run.last_checkpoint[0], "checkpoint_unix": run.last_checkpoint[1]})
                reported = (run.step, now)
            if stopping:
                raise TrainingInterrupted(run.step)
    except BaseException:
        writer.close(quiet=True)  # the training's own error is the one to report
        raise
    writer.close()

    top1s = [point["top1"] for point in run.curve]
    return TrainOutcome(steps=run.step, curve=run.curve, wall_seconds=run.wall(), top1_final=top1s[-1],
                        top1_paper=paper_metric(top1s, tr.top_k),
                        state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
