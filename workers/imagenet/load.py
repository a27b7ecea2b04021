"""Read prepared ImageNet: `load_imagenet_half` -> `ImageNetHalf`, the HalfLoader of workers/data.py.

Memory-maps the shards of the half's classes (straight from a local store, else from the node's
bounded cache, downloaded once per node and verified), labels re-indexed 0..k-1 within the half. The
half stays in the node's page cache, shared by every trial on the node. A batch becomes uint8 images
on the device: raw shards are gathered on the host and copied; JPEG shards are sliced out of the
shard files and decoded (nvJPEG on a CUDA device when torchvision is there, else Pillow threads).
On the device the random 227x227 crop + mirror (centre crop at test) and the mean subtraction
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

from sweepcore.layout import (
    check_hash,
    check_relative_name,
    check_sha256,
    dataset_folder,
    dataset_prefix,
    inside,
    manifest_path,
    shown,
)
from sweepcore.records import read_data_version
from workers.cache import cache_dir, fetch_once
from workers.imagenet import CENTRE, CROP, FORMATS, IMAGE_SIZE, NAME, jpeg
from workers.splits import half_classes

_GATHER_THREADS = 8  # parallel page faults when a batch comes from cold memory-mapped shards
# Bounds on what a manifest read back from the store may say (it is untrusted: a shared bucket has other writers)
MAX_CLASSES = 100_000
MAX_SHARDS = 1_000_000  # per split
MAX_COUNT = 1_000_000_000  # images per class


def resolve_digest(store) -> str:
    """The prepared version trials read: the hash in datasets/imagenet/LATEST (checked: 16-64 hex)."""
    try:
        return read_data_version(store, NAME)
    except FileNotFoundError:
        raise FileNotFoundError(f"ImageNet is not prepared in store {store.uri()}: run `transfer-sweep data "
                                f"prepare imagenet --src DIR --store {store.uri()}` first") from None


def _digest(store, digest: object) -> str:
    try:
        return check_hash(digest)
    except ValueError as exc:
        raise ValueError(f"{store.uri(dataset_folder(NAME))}: version {exc}") from None


class _Bad(ValueError):
    """A manifest field that is not what the loader expects; str() is 'field: problem'."""


def read_manifest(store, digest: str) -> dict:
    """The committed manifest of a prepared version, its structure checked once (types, bounds, names,
    sha256s): a manifest that passes names only files below its version's folder."""
    return checked_manifest(store, manifest_path(NAME, _digest(store, digest)), lambda m: _check_manifest(m, digest))


def checked_manifest(store, path: str, check) -> dict:
    """The JSON object at `path`, passed through `check` (which raises _Bad 'field: problem'); any
    problem is a one-line ValueError naming the object."""
    where = store.uri(path)
    try:
        manifest = json.loads(store.read_bytes(path))
    except ValueError as exc:  # not UTF-8, not JSON
        raise ValueError(f"{where}: not a JSON manifest ({type(exc).__name__})") from None
    try:
        check(manifest)
    except _Bad as exc:
        raise ValueError(f"{where}: {exc}") from None
    return manifest


def _field(check, value: object, field: str):
    try:
        return check(value)
    except ValueError as exc:
        raise _Bad(f"{field}: {exc}") from None


def _int(value: object, field: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:  # bool is not a count
        raise _Bad(f"{field}: {shown(value)} is not an integer in [{low}, {high}]")
    return value


def _dict(value: object, field: str) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{field}: expected an object, found {type(value).__name__}")
    return value


def _list(value: object, field: str, longest: int) -> list:
    if not isinstance(value, list) or len(value) > longest:
        raise _Bad(f"{field}: expected a list of at most {longest} items, found {shown(value, 40)}")
    return value


def _check_manifest(manifest: object, digest: str) -> None:
    """Raise _Bad ('field: problem') unless `manifest` is a prepared ImageNet manifest the loader can
    follow: every file name a safe relative name, every sha256 64 hex, every count and class bounded."""
    m = _dict(manifest, "manifest")
    if "hash" in m and m["hash"] != digest:
        raise _Bad(f"hash: {shown(m['hash'])} is not this version's {digest}")
    k = _int(m.get("num_classes"), "num_classes", 1, MAX_CLASSES)
    fmt = m.get("format", "raw")  # versions prepared before JPEG shards say nothing: raw
    if fmt not in FORMATS:
        raise _Bad(f"format: {shown(fmt)} is not one of {', '.join(FORMATS)}")
    files = ("images", "labels", "offsets") if fmt == "jpeg" else ("images", "labels")
    for name in ("class_sums", "mean"):
        _field(check_relative_name, m.get(name), name)
    sums = _dict(m.get("sha256"), "sha256")
    for name in ("class_sums", "mean"):
        _field(check_sha256, sums.get(name), f"sha256.{name}")
    counts = _dict(m.get("class_counts"), "class_counts")
    train_counts = _list(counts.get("train"), "class_counts.train", k)
    if len(train_counts) != k:
        raise _Bad(f"class_counts.train: {len(train_counts)} counts for {k} classes")
    for c, n in enumerate(train_counts):
        _int(n, f"class_counts.train[{c}]", 0, MAX_COUNT)
    shards = _dict(m.get("shards"), "shards")
    for split in ("train", "val"):
        for i, entry in enumerate(_list(shards.get(split), f"shards.{split}", MAX_SHARDS)):
            at = f"shards.{split}[{i}]"
            entry = _dict(entry, at)
            for name in files:
                _field(check_relative_name, entry.get(name), f"{at}.{name}")
            hashes = _dict(entry.get("sha256"), f"{at}.sha256")
            for name in files:
                _field(check_sha256, hashes.get(name), f"{at}.sha256.{name}")
            _int(entry.get("count"), f"{at}.count", 0, MAX_COUNT)
            for j, c in enumerate(_list(entry.get("classes"), f"{at}.classes", k)):
                _int(c, f"{at}.classes[{j}]", 0, k - 1)


def local_file(store, digest: str, rel: str, sha256: str | None, keep: frozenset = frozenset(),
               name: str = NAME) -> str:
    """A local path to a prepared file: the store's own file when it is a folder, else a cached copy
    (downloaded once per node, checked against its sha256, published atomically; the cache evicts
    its least recently used files, never those in `keep`, to stay under its bound: workers/cache.py).
    `rel` must be a safe relative name, and the cached copy lands below this version's cache folder
    or nowhere."""
    prefix = dataset_prefix(name, _digest(store, digest))
    try:
        check_relative_name(rel)
        if sha256 is not None:
            check_sha256(sha256)
    except ValueError as exc:
        raise ValueError(f"{store.uri(prefix)}: {exc}") from None
    path = f"{prefix}/{rel}"
    in_place = store.local_path(path)
    if in_place is not None:
        return in_place
    root = cache_dir()
    try:  # the cached copy must land below this version's folder (a symlink could lead out)
        inside(root / "datasets" / name / digest, rel)
    except ValueError as exc:
        raise ValueError(f"{store.uri(path)}: {exc}") from None

    def download() -> bytes:
        data = store.read_bytes(path)
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{store.uri(path)}: sha256 does not match the manifest")
        return data
    return str(fetch_once(root, f"{dataset_prefix(name, digest)}/{rel}", None, download, keep))


@dataclass
class ShardSet:
    """The images of some classes across memory-mapped shards, labels re-indexed within a half.
    Raw shards: `arrays` holds the N_i x 256 x 256 x 3 uint8 arrays. JPEG shards: `arrays` holds each
    shard's .jpgs bytes (uint8, 1-D) and `offsets` where each image starts in them."""

    arrays: list[np.ndarray]  # memory-mapped
    shard: np.ndarray  # shard of each image
    row: np.ndarray  # row of each image in its shard
    labels: np.ndarray  # int64 labels 0..k-1
    offsets: list[np.ndarray] | None = None  # JPEG shards only: int64, count + 1 per shard

    @property
    def fmt(self) -> str:
        return "raw" if self.offsets is None else "jpeg"

    def blobs(self, idx: np.ndarray) -> list[memoryview]:
        """JPEG shards: the bytes of images idx (views into the memory-mapped shard files)."""
        assert self.offsets is not None, "blobs() reads JPEG shards"
        out = []
        for i in idx:
            s, r = self.shard[i], self.row[i]
            out.append(memoryview(self.arrays[s][self.offsets[s][r]:self.offsets[s][r + 1]]))
        return out

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


def _labels(path: str, num_classes: int) -> np.ndarray:
    """A shard's labels as int64, each a class index below num_classes (the file is as untrusted as
    the manifest that vouched for it)."""
    y = np.load(path)
    if y.ndim != 1 or y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= num_classes)):
        raise ValueError(f"{path}: not a list of class indices below {num_classes} "
                         f"({y.dtype} array of shape {y.shape})")
    return y.astype(np.int64)


def _array(path: str, shape: tuple, dtype: type) -> np.ndarray:
    """The memory-mapped array at `path`, refused unless it has this shape and dtype."""
    a = np.load(path, mmap_mode="r")
    if a.shape != shape or a.dtype != dtype:
        raise ValueError(f"{path}: {a.dtype} array of shape {a.shape}, expected {np.dtype(dtype)} {shape}")
    return a


def _shard_files(manifest: dict, split: str, classes: list[int]) -> list[tuple[dict, tuple[str, ...]]]:
    """The shard entries of `split` that hold any of `classes`, each with the files it needs."""
    names = ("labels", "images", "offsets") if manifest.get("format", "raw") == "jpeg" else ("labels", "images")
    wanted = set(classes)
    return [(entry, names) for entry in manifest["shards"][split] if wanted & set(entry["classes"])]


def fetch_files(store, digest: str, manifest: dict, classes: list[int]) -> dict[str, str]:
    """Local paths of every file a half needs (both splits, the class sums), fetched in parallel
    (one download per node; the half's own files are never evicted to make room for each other)."""
    prefix = dataset_prefix(NAME, digest)
    wanted = [(manifest["class_sums"], manifest["sha256"]["class_sums"])]
    for split in ("train", "val"):
        for entry, names in _shard_files(manifest, split, classes):
            wanted += [(entry[n], entry["sha256"][n]) for n in names]
    keep = frozenset((cache_dir() / prefix / rel).resolve() for rel, _ in wanted)
    with ThreadPoolExecutor(max(1, getattr(store, "parallel_reads", 1))) as pool:
        paths = list(pool.map(lambda w: local_file(store, digest, w[0], w[1], keep), wanted))
    return {rel: path for (rel, _), path in zip(wanted, paths)}


def shard_set(store, digest: str, manifest: dict, split: str, classes: list[int],
              paths: dict[str, str] | None = None) -> ShardSet:
    """The images of `classes` in one split, from the shards that hold any of them (`paths`: local
    paths fetch_files already found; the rest are fetched here)."""
    def path(entry: dict, name: str) -> str:
        rel = entry[name]
        return (paths or {}).get(rel) or local_file(store, digest, rel, entry["sha256"][name])
    jpegs = manifest.get("format", "raw") == "jpeg"
    lookup = np.full(manifest["num_classes"], -1, np.int64)
    lookup[np.asarray(sorted(classes), dtype=np.int64)] = np.arange(len(classes))
    arrays, offsets, shard, row, labels = [], [], [], [], []
    for entry, _ in _shard_files(manifest, split, classes):
        y = _labels(path(entry, "labels"), len(lookup))
        if len(y) != entry["count"]:
            raise ValueError(f"{path(entry, 'labels')}: {len(y)} labels, the manifest says {entry['count']}")
        keep = np.flatnonzero(lookup[y] >= 0)
        if jpegs:
            data = np.memmap(path(entry, "images"), np.uint8, "r") if entry["count"] else np.zeros(0, np.uint8)
            offsets.append(jpeg.check_offsets(np.load(path(entry, "offsets")), len(y), len(data),
                                              path(entry, "offsets")))
            arrays.append(data)
        else:
            arrays.append(_array(path(entry, "images"), (len(y), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8))
        shard.append(np.full(len(keep), len(arrays) - 1, np.int32))
        row.append(keep)
        labels.append(lookup[y[keep]])

    def cat(parts: list, dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)
    return ShardSet(arrays, cat(shard, np.int32), cat(row, np.int64), cat(labels, np.int64),
                    offsets if jpegs else None)


def half_mean(store, digest: str, manifest: dict, classes: list[int], paths: dict[str, str] | None = None
              ) -> np.ndarray:
    """Per-pixel mean (256x256x3 float32) of the half's training images, from the per-class sums."""
    sums_path = (paths or {}).get(manifest["class_sums"]) or local_file(
        store, digest, manifest["class_sums"], manifest["sha256"]["class_sums"])
    sums = _array(sums_path,
                  (manifest["num_classes"], IMAGE_SIZE, IMAGE_SIZE, 3), np.uint32)
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
        if train.fmt == "raw":
            self.decoder = "raw"
        else:
            self.decoder = "nvjpeg" if str(device).startswith("cuda") and jpeg.cuda_decoder_available() else "pillow"

    def _images(self, shards: ShardSet, idx: np.ndarray):
        """Images idx of `shards` as a B x 256 x 256 x 3 uint8 tensor on the device."""
        import torch  # noqa: PLC0415 (torch only in the loader, not in preparation)
        if self.decoder == "raw":
            return torch.from_numpy(shards.gather(idx)).to(self.device, non_blocking=True)
        if self.decoder == "nvjpeg":
            return jpeg.decode_cuda(shards.blobs(idx), self.device)
        return torch.from_numpy(jpeg.decode_cpu(shards.blobs(idx))).to(self.device, non_blocking=True)

    @property
    def num_train(self) -> int:
        return len(self.train)

    def to(self, device: str) -> "ImageNetHalf":
        """The same half producing batches on `device` (images stay memory-mapped on the host)."""
        return ImageNetHalf(self.train, self.test, self.mean_np, self.classes, str(device))

    def _batch(self, x, oy, ox, flip):
        """Crop 227x227 at (oy, ox) of the B x 256 x 256 x 3 uint8 device tensor x, mirror where flip,
        subtract the mean: one gather on the device. Returns B x 3 x 227 x 227 float32 (channels-last
        strides: a free permute of the HWC gather)."""
        import torch  # noqa: PLC0415 (torch only in the loader, not in preparation)
        dev = self.device
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
        x = self._batch(self._images(self.train, idx), oy, ox, flip)
        return x, torch.from_numpy(self.train.labels[idx]).to(self.device)

    def test_batches(self, batch_size: int) -> Iterator:
        """(centre-cropped images, labels) over the half's val images, in order."""
        import torch  # noqa: PLC0415 (torch only in the loader, not in preparation)
        for start in range(0, len(self.test), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self.test)))
            centre = torch.full((len(idx),), CENTRE, dtype=torch.int64)
            x = self._batch(self._images(self.test, idx), centre, centre, torch.zeros(len(idx), dtype=torch.bool))
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
        paths = fetch_files(store, digest, manifest, classes)
        loaded = ImageNetHalf(shard_set(store, digest, manifest, "train", classes, paths),
                              shard_set(store, digest, manifest, "val", classes, paths),
                              half_mean(store, digest, manifest, classes, paths), classes)
        while len(_HALVES) >= _HALVES_SIZE:
            _HALVES.pop(next(iter(_HALVES)))
        _HALVES[key] = loaded
    return _HALVES[key]
