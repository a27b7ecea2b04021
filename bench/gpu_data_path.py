"""The whole GPU input path, measured: prepared shards -> decode -> augment -> CaffeNet step.

Run by bench/gpu_check.sh (which makes the source, prepares it twice and passes the two stores):

    python bench/gpu_data_path.py source DIR [--classes 20 --train 64 --val 8]
    python bench/gpu_data_path.py measure --jpeg-store DIR --raw-store DIR [--batch 256 ...]

`source` writes a synthetic ImageNet folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) whose images are
larger than 256x256 and not square, so that preparation's warp does real work. `measure` loads half
A of split random:0 from each store with the trainings' own loader and prints images/s, each with
its ratio to the 15k images/s per GPU the full path should reach: the data path alone (JPEG and raw
shards), then the full training step on the JPEG shards for fp32 NCHW, fp32 channels_last,
bf16 channels_last and bf16 channels_last + torch.compile. The last line is
`RATIO best_full_path=<x> of 15000 img/s`.

DRY_RUN=1: CPU, no GPU needed (the script's sizes are tiny then); bf16 autocast runs on the CPU
and torch.compile uses a tracing-only backend (COMPILE_BACKEND, default aot_eager), so the same
code runs end to end in a few seconds. The figures mean nothing then; that they are printed does.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

TARGET = 15_000  # images/s per GPU that the whole path should sustain
SPLIT, HALF = "random:0", "A"
DRY_RUN = os.environ.get("DRY_RUN", "0") not in ("", "0")


# --- a synthetic source folder -------------------------------------------------------------------
# ILSVRC's typical shapes (landscape, portrait, wider, square): all warp to 256x256, aspect not kept
SIZES = [(400, 300), (300, 400), (500, 375), (320, 320)]


def _write_class(root: Path, c: int, train: int, val: int, seed: int) -> int:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng([seed, c])
    wnid = f"n{c + 1:08d}"
    tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)  # a class colour, so the images are not all alike
    # one noise field per class, cut at random offsets: drawing fresh noise per image was most of the cost
    noise = rng.normal(0, 12, (640, 640, 3)).astype(np.float32)
    count = 0
    for split, n in (("train", train), ("val", val)):
        folder = root / split / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = SIZES[(c + i) % len(SIZES)]
            # smooth gradients plus noise: JPEG sizes and decode costs near a photo's, not a flat
            # image's (which compresses to nothing) nor white noise's (which never does)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            phase = rng.uniform(0, 2 * np.pi, 3)
            fx, fy = rng.uniform(0.005, 0.03, 2)
            base = np.stack([np.sin(xx * fx + yy * fy + p) for p in phase], axis=-1)
            oy, ox = rng.integers(0, 640 - h), rng.integers(0, 640 - w)
            img = 127.5 * (1 + base) * tint + noise[oy:oy + h, ox:ox + w]
            Image.fromarray(img.clip(0, 255).astype(np.uint8), "RGB").save(
                folder / f"{wnid}_{i:05d}.JPEG", "JPEG", quality=90)
            count += 1
    return count


def make_source(root: Path, classes: int, train: int, val: int, seed: int = 0) -> int:
    """Write classes x (train + val) JPEGs in ImageNet's layout (one process per class); return how many."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(classes, os.cpu_count() or 1)) as pool:
        return sum(pool.map(_write_class, [root] * classes, range(classes), [train] * classes,
                            [val] * classes, [seed] * classes))


# --- measurements --------------------------------------------------------------------------------
def figure(name: str, ips: float, extra: str = "") -> str:
    return f"{name:<30} {ips:9.0f} images/s  = {ips / TARGET:.2f}x of 15k{extra}"


def measure(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F

    from sweepcore.records import read_data_version
    from sweepcore.settings import ModelSettings
    from sweepcore.store import open_store
    from workers.imagenet.load import load_imagenet_half
    from workers.models import build_model

    if DRY_RUN:
        dev = torch.device("cpu")
        print(f"DRY_RUN: on the CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"figures are for the code path only")
    else:
        assert torch.cuda.is_available(), "no CUDA device visible to torch"
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
              f"bf16 supported {torch.cuda.is_bf16_supported()}, "
              f"cudnn.allow_tf32 {torch.backends.cudnn.allow_tf32}, "
              f"matmul.allow_tf32 {torch.backends.cuda.matmul.allow_tf32}")
    figures: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        figures.append(line)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def load(store_dir: str):
        store = open_store(store_dir)
        digest = read_data_version(store, "imagenet")  # each store holds one prepared version
        t0 = time.perf_counter()
        half = load_imagenet_half(SPLIT, HALF, store, digest).to(str(dev))
        print(f"{store_dir}: version {digest}, half {HALF} of {SPLIT}: {len(half.classes)} classes, "
              f"{half.num_train} train images, decoder {half.decoder} (loaded in "
              f"{time.perf_counter() - t0:.1f} s)")
        return half

    jpeg, raw = load(args.jpeg_store), load(args.raw_store)
    if dev.type == "cuda" and jpeg.decoder != "nvjpeg":
        print(f"WARNING: JPEG shards decode with {jpeg.decoder} on this GPU (torchvision missing?): "
              f"the figures below are not nvJPEG's")
    assert jpeg.num_train >= args.batch, f"{jpeg.num_train} training images, fewer than one batch"
    batch = args.batch

    def batches(half, seed: int = 0):
        """Batches of indices in the training loop's order: a fresh permutation every epoch."""
        gen = torch.Generator().manual_seed(seed)
        per_epoch = half.num_train // batch
        i = 0
        while True:
            if i % per_epoch == 0:
                perm = torch.randperm(half.num_train, generator=gen)
            pos = i % per_epoch
            yield perm[pos * batch:(pos + 1) * batch], gen
            i += 1

    def timed(run_one, warmup: int, steps: int) -> float:
        for _ in range(warmup):
            run_one()
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            run_one()
        sync()
        return batch * steps / (time.perf_counter() - t0)

    # (a) the data path alone: gather (and decode) + crop + mirror + mean, on the device
    alone = {}
    for fmt, half in (("jpeg", jpeg), ("raw", raw)):
        order = batches(half)

        def data_only(half=half, order=order):
            idx, gen = next(order)
            x, y = half.train_batch(idx, gen, augment=True)
            assert x.shape == (batch, 3, 227, 227) and x.device.type == dev.type, (x.shape, x.device)
        alone[fmt] = timed(data_only, args.warmup, args.steps)
        say(figure(f"data path {fmt} ({half.decoder})", alone[fmt]))
    say(f"data path jpeg / raw: {alone['jpeg'] / alone['raw']:.2f}x (what decoding per batch costs)")
    say(f"full step on the jpeg shards ({jpeg.decoder}), batch {batch}:")

    # (b) the full step on the JPEG shards: loader + CaffeNet forward/backward/SGD, as workers/train.py
    # build_model takes ModelSettings (a bare dict fails on .arch: the throughput step this replaces did)
    CAFFENET = {"arch": "caffenet", "num_outputs": len(jpeg.classes), "widths": (96, 256, 384, 384, 256),
                "fc_width": 4096, "dropout": 0.5, "init": "caffe"}
    SETTINGS = ModelSettings(**CAFFENET)
    assert SETTINGS.num_outputs == args.classes // 2, SETTINGS  # a half of random:0 holds half the classes

    def full_path(bf16: bool, channels_last: bool, compiled: bool) -> float:
        torch.manual_seed(0)
        model = build_model(SETTINGS).to(dev)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        forward = model
        if compiled:
            backend = os.environ.get("COMPILE_BACKEND") or ("aot_eager" if DRY_RUN else "inductor")
            forward = torch.compile(model, backend=backend)
        order = batches(jpeg, seed=1)
        loss = None

        def one_step():
            nonlocal loss
            idx, gen = next(order)
            x, y = jpeg.train_batch(idx, gen, augment=True)
            # the loader's batch has channels-last strides: NCHW makes it contiguous, or the
            # convolutions would follow the input into channels_last and this arm would not be NCHW
            x = x.contiguous(memory_format=fmt)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        if compiled:  # the first steps compile: timed apart, so the figure is the steady state
            t0 = time.perf_counter()
            one_step()
            sync()
            print(f"  torch.compile ({backend}): first step {time.perf_counter() - t0:.1f} s")
        ips = timed(one_step, args.warmup, args.steps)
        assert loss is not None and torch.isfinite(loss).item(), f"loss is {loss}"
        return ips

    arms = [("fp32 NCHW", False, False, False), ("fp32 channels_last", False, True, False),
            ("bf16 channels_last", True, True, False), ("bf16 channels_last compile", True, True, True)]
    results: dict[str, float] = {}
    for name, bf16, cl, compiled in arms:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            ips = full_path(bf16, cl, compiled)
        except Exception as exc:  # noqa: BLE001 (compile can fail many ways; the eager arms still count)
            if not compiled:
                raise
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            say(f"{name:<30} FAILED: {reason}")
            continue
        results[name] = ips
        peak = f"   peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if dev.type == "cuda" else ""
        say(figure(name, ips, peak))

    base = results["fp32 NCHW"]
    for name, ips in results.items():
        if name != "fp32 NCHW":
            print(f"{name} / fp32 NCHW: {ips / base:.2f}x")
    best = max(results, key=results.get)
    say(f"best full path: {best}, {results[best]:.0f} images/s = {results[best] * 3600 / 645e3:.1f} epochs/h "
        f"of one ImageNet half (~645k images)")
    say(f"RATIO best_full_path={results[best] / TARGET:.2f} of {TARGET} img/s ({best}, batch {batch}, "
        f"decoder {jpeg.decoder})")
    if args.figures:
        with open(args.figures, "a") as fh:
            fh.write("\n".join(figures) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("source", help="write a synthetic ImageNet source folder")
    sp.add_argument("dir", type=Path)
    sp.add_argument("--classes", type=int, default=20)
    sp.add_argument("--train", type=int, default=64, help="training images per class")
    sp.add_argument("--val", type=int, default=8, help="validation images per class")
    sp = sub.add_parser("measure", help="images/s of the data path and of the full training step")
    sp.add_argument("--jpeg-store", required=True)
    sp.add_argument("--raw-store", required=True)
    sp.add_argument("--classes", type=int, default=20, help="classes of the prepared source (checked)")
    sp.add_argument("--batch", type=int, default=256)
    sp.add_argument("--warmup", type=int, default=5)
    sp.add_argument("--steps", type=int, default=30)
    sp.add_argument("--figures", help="also append the figure lines to this file")
    args = p.parse_args(argv)
    if args.command == "source":
        t0 = time.perf_counter()
        n = make_source(args.dir, args.classes, args.train, args.val)
        print(f"{n} JPEGs ({args.classes} classes x {args.train} train + {args.val} val) in {args.dir} "
              f"({time.perf_counter() - t0:.1f} s)")
        return 0
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
