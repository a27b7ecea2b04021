"""Read prepared ImageNet: `load_imagenet_half` -> `ImageNetHalf`, the HalfLoader of workers/data.py.

Memory-maps the shards of the half's classes (straight from a local store, else from a verified local
cache), labels re-indexed 0..k-1 within the half; a batch is gathered on the host as uint8 and moved
to the device, where the random 227x227 crop + mirror (centre crop at test) and the mean subtraction
happen as one gather. The mean is the half's own training mean (the release computed one mean file
per half), and inputs are not scaled (Caffe's reference net subtracts the mean only).

torch is imported lazily, inside the loader's methods.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from sweepcore.layout import dataset_prefix
from workers.cache import cache_dir, publish_local
from workers.imagenet import CENTRE, CROP, IMAGE_SIZE, MANIFEST, NAME, POINTER
from workers.splits import half_classes

_GATHER_THREADS = 8  # parallel page faults when a batch comes from cold memory-mapped shards


def resolve_digest(store) -> str:
    """The prepared version trials read: the hash in datasets/imagenet/LATEST."""
    try:
        return store.read_bytes(POINTER).decode().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"ImageNet is not prepared in store {store.uri()}: run `transfer-sweep data "
                                f"prepare imagenet --src DIR --store {store.uri()}` first") from None


def read_manifest(store, digest: str) -> dict:
    """The committed manifest of a prepared version."""
    return json.loads(store.read_bytes(f"{dataset_prefix(NAME, digest)}/{MANIFEST}"))


def local_file(store, digest: str, rel: str, sha256: str | None) -> str:
    """A local path to a prepared file: the store's own file when it is a folder, else a cached copy
    (downloaded once, checked against its sha256, published atomically)."""
    path = f"{dataset_prefix(NAME, digest)}/{rel}"
    in_place = store.local_path(path)
    if in_place is not None:
        return in_place
    local = cache_dir() / "datasets" / NAME / digest / rel
    if not local.is_file():
        data = store.read_bytes(path)
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{store.uri(path)}: sha256 does not match the manifest")
        publish_local(local, data)
    return str(local)


@dataclass
class ShardSet:
    """The images of some classes across memory-mapped shards, labels re-indexed within a half."""

    arrays: list[np.ndarray]  # memory-mapped N_i x 256 x 256 x 3 uint8
    shard: np.ndarray  # shard of each image
    row: np.ndarray  # row of each image in its shard
    labels: np.ndarray  # int64 labels 0..k-1

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """Images idx as one B x 256 x 256 x 3 uint8 array (copies run in threads: I/O overlaps)."""
        out = np.empty((len(idx), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        shard, row = self.shard[idx], self.row[idx]

        def copy(i):
            out[i] = self.arrays[shard[i]][row[i]]
        if len(idx) >= 32:
            list(_pool().map(copy, range(len(idx))))
        else:
            for i in range(len(idx)):
                copy(i)
        return out


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_GATHER_THREADS, thread_name_prefix="imagenet-gather")
    return _POOL


def shard_set(store, digest: str, manifest: dict, split: str, classes: list[int]) -> ShardSet:
    """The images of `classes` in one split, from the shards that hold any of them."""
    lookup = np.full(manifest["num_classes"], -1, np.int64)
    lookup[np.asarray(sorted(classes), dtype=np.int64)] = np.arange(len(classes))
    wanted = set(classes)
    arrays, shard, row, labels = [], [], [], []
    for entry in manifest["shards"][split]:
        if not wanted & set(entry["classes"]):
            continue
        y = np.load(local_file(store, digest, entry["labels"], entry["sha256"]["labels"])).astype(np.int64)
        keep = np.flatnonzero(lookup[y] >= 0)
        arrays.append(np.load(local_file(store, digest, entry["images"], entry["sha256"]["images"]),
                              mmap_mode="r"))
        shard.append(np.full(len(keep), len(arrays) - 1, np.int32))
        row.append(keep)
        labels.append(lookup[y[keep]])

    def cat(parts: list, dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)
    return ShardSet(arrays, cat(shard, np.int32), cat(row, np.int64), cat(labels, np.int64))


def half_mean(store, digest: str, manifest: dict, classes: list[int]) -> np.ndarray:
    """Per-pixel mean (256x256x3 float32) of the half's training images, from the per-class sums."""
    sums = np.load(local_file(store, digest, manifest["class_sums"], manifest["sha256"]["class_sums"]),
                   mmap_mode="r")
    total = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.float64)
    for c in classes:
        total += sums[c]
    count = sum(manifest["class_counts"]["train"][c] for c in classes)
    if count == 0:
        raise ValueError(f"prepared ImageNet {digest} has no training images of classes {classes[:5]}...")
    return (total / count).astype(np.float32)


class ImageNetHalf:
    """One half of prepared ImageNet: the HalfLoader of workers/data.py for 227x227 CaffeNet inputs."""

    def __init__(self, train: ShardSet, test: ShardSet, mean: np.ndarray, classes: list[int],
                 device: str = "cpu"):
        import torch  # noqa: PLC0415 (torch only in the loader, not in preparation)
        self.train, self.test, self.classes, self.device = train, test, list(classes), device
        self.mean_np = mean
        self.mean = torch.from_numpy(mean).to(device)  # H x W x 3 float32

    @property
    def num_train(self) -> int:
        return len(self.train)

    def to(self, device: str) -> "ImageNetHalf":
        """The same half producing batches on `device` (images stay memory-mapped on the host)."""
        return ImageNetHalf(self.train, self.test, self.mean_np, self.classes, str(device))

    def _batch(self, images: np.ndarray, oy, ox, flip):
        """Crop 227x227 at (oy, ox), mirror where flip, subtract the mean: one gather on the device.
        Returns B x 3 x 227 x 227 float32 (channels-last strides: a free permute of the HWC gather)."""
        import torch  # noqa: PLC0415 (torch only in the loader, not in preparation)
        dev = self.device
        x = torch.from_numpy(images).to(dev, non_blocking=True)
        ar = torch.arange(CROP, device=dev)
        rows = oy.to(dev)[:, None] + ar
        cols = ox.to(dev)[:, None] + torch.where(flip.to(dev)[:, None], CROP - 1 - ar, ar)
        r, c = rows[:, :, None], cols[:, None, :]
        b = torch.arange(x.shape[0], device=dev)[:, None, None]
        # the mean is taken at the same source pixel as the image, as Caffe subtracts before mirroring
        return (x[b, r, c].float() - self.mean[r, c]).permute(0, 3, 1, 2)

    def train_batch(self, indices, generator, augment: bool):
        """(images, labels) for `indices`; crops and mirrors draw only from `generator` (CPU)."""
        import torch  # noqa: PLC0415 (torch only in the loader, not in preparation)
        idx = indices.cpu().numpy()
        n = len(idx)
        if augment:
            oy = torch.randint(0, IMAGE_SIZE - CROP + 1, (n,), generator=generator)
            ox = torch.randint(0, IMAGE_SIZE - CROP + 1, (n,), generator=generator)
            flip = torch.randint(0, 2, (n,), generator=generator).bool()
        else:
            oy = ox = torch.full((n,), CENTRE, dtype=torch.int64)
            flip = torch.zeros(n, dtype=torch.bool)
        x = self._batch(self.train.gather(idx), oy, ox, flip)
        return x, torch.from_numpy(self.train.labels[idx]).to(self.device)

    def test_batches(self, batch_size: int) -> Iterator:
        """(centre-cropped images, labels) over the half's val images, in order."""
        import torch  # noqa: PLC0415 (torch only in the loader, not in preparation)
        for start in range(0, len(self.test), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self.test)))
            centre = torch.full((len(idx),), CENTRE, dtype=torch.int64)
            x = self._batch(self.test.gather(idx), centre, centre, torch.zeros(len(idx), dtype=torch.bool))
            yield x, torch.from_numpy(self.test.labels[idx]).to(self.device)


_HALVES: dict[tuple, ImageNetHalf] = {}
_HALVES_SIZE = 2


def load_imagenet_half(split: str, half: str, store, digest: str | None = None) -> ImageNetHalf:
    """The loader of one half of prepared ImageNet (the version LATEST points at unless `digest`).

    The class count comes from the manifest, so a small prepared folder splits like the full 1000.
    """
    if store is None:
        raise ValueError("dataset 'imagenet' is read from the store: run_trial must be given one")
    digest = digest or resolve_digest(store)
    key = (store.uri(), digest, split, half)
    if key not in _HALVES:
        manifest = read_manifest(store, digest)
        classes = half_classes(split, int(manifest["num_classes"]), half)
        loaded = ImageNetHalf(shard_set(store, digest, manifest, "train", classes),
                              shard_set(store, digest, manifest, "val", classes),
                              half_mean(store, digest, manifest, classes), classes)
        while len(_HALVES) >= _HALVES_SIZE:
            _HALVES.pop(next(iter(_HALVES)))
        _HALVES[key] = loaded
    return _HALVES[key]
