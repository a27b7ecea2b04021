"""Datasets by name: prepared uint8 arrays and the in-memory loaders the training loop reads.

- registry: `DatasetSpec` per name (class count, the recipe that names its prepared arrays, how to
  build or load it); ImageNet brings its own loader (workers/imagenet/load.py);
- prepared arrays: `prepared_arrays(name, store)` builds a dataset once from its sources into uint8
  arrays, commits them to the store under datasets/<name>/<recipe hash>/ and keeps a local cache and
  a process memo (reused Ray actors do not reload);
- loaders: `load_half(...)` -> a `HalfLoader` (`num_train`, `train_batch`, `test_batches`, `to`):
  `TensorHalf` for small in-memory datasets (fashion-animals, a user's image set prepared into the
  store: workers/image_set/), `ImageNetHalf` for prepared ImageNet shards.

torch is imported lazily inside the loader code so that the preparation code can run in processes
that never import torch (the driver's `data prepare` command).
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from sweepcore.layout import MANIFEST, check_sha256, dataset_prefix, shown
from sweepcore.store import Store
from sweepcore.vocabulary import DATASETS as DATASET_INFO
from sweepcore.vocabulary import FASHION_ANIMALS_RECIPE, recipe_hash
from workers.cache import cache_dir, publish_local
from workers.fashion_animals import build_fashion_animals
from workers.image_set.load import read_manifest, split_arrays
from workers.imagenet.load import load_imagenet_half
from workers.splits import half_classes, select_classes

ARRAY_NAMES = ("train_x", "train_y", "test_x", "test_y")
PIXEL_SCALE = 255.0  # fixed divisor after mean subtraction: inputs in [-1, 1] (trained better than 64)
SHIFT_PIXELS = 2  # training augmentation: random shift by up to this many pixels (pad + crop)


# --- dataset registry --------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its class count, the recipe that identifies its prepared arrays, a builder."""

    name: str
    num_classes: int
    recipe: dict
    build: Callable[[], dict[str, np.ndarray]] | None = None  # None: no in-memory loader yet
    loader: Callable[..., Any] | None = None  # (split, half, store, version, classes) -> HalfLoader of its own

    def content_hash(self) -> str:
        """Hash of the recipe: same recipe, same prepared arrays, same store path."""
        return recipe_hash(self.name, self.recipe)


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> None:
    """Make a dataset available by name (tests register small ones; new datasets register here)."""
    DATASETS[spec.name] = spec


register_dataset(DatasetSpec(
    name="fashion-animals", num_classes=DATASET_INFO["fashion-animals"].num_classes, build=build_fashion_animals,
    recipe=dict(FASHION_ANIMALS_RECIPE)))


# ImageNet halves come from shards prepared in the store (workers/imagenet/).
register_dataset(DatasetSpec(name="imagenet", num_classes=DATASET_INFO["imagenet"].num_classes,
                             loader=load_imagenet_half,
                             recipe={"version": 1, "sources": ["ILSVRC-2012"]}))


def load_image_set_half(name: str, split: str, half: str, store, version: str | None,
                        classes: list[int] | None = None) -> "TensorHalf":
    """One half of a user's image set prepared into the store (version = its content hash)."""
    if store is None or version is None:
        raise ValueError(f"dataset {name!r} is read from the store at the version the plan names: run_trial "
                         "must be given both")
    memo_key = (name, version, split, half, tuple(classes or ()), store.uri())
    if memo_key not in _HALF_MEMO:
        manifest = read_manifest(store, name, version)
        chosen = list(classes) if classes else half_classes(split, int(manifest["num_classes"]), half)
        if any(not 0 <= c < manifest["num_classes"] for c in chosen):
            raise ValueError(f"classes {chosen[:8]} are not all classes of {name} version {version}")
        train = split_arrays(store, name, version, manifest, "train", chosen)
        test = split_arrays(store, name, version, manifest, "test", chosen)
        _remember(memo_key, tensor_half(*train, *test, chosen))
    return _HALF_MEMO[memo_key]


for _image_set in ("folder", "parquet"):
    register_dataset(DatasetSpec(name=_image_set, num_classes=0, recipe={"version": 1, "sources": ["images.src"]},
                                 loader=lambda *a, _n=_image_set, **k: load_image_set_half(_n, *a, **k)))


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset `name`, or a ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: known datasets are {sorted(DATASETS)}")
    return DATASETS[name]


# --- prepared arrays: memo -> local cache -> store -> build ------------------------------------
_ARRAY_MEMO: dict[tuple[str, str], dict[str, np.ndarray]] = {}
_HALF_MEMO: dict[tuple, Any] = {}
_HALF_MEMO_SIZE = 4


def clear_memo() -> None:
    """Forget arrays and halves held by this process (tests; memory)."""
    _ARRAY_MEMO.clear()
    _HALF_MEMO.clear()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and raw bytes (not of its .npy file, whose header varies)."""
    head = f"{a.dtype.str}{a.shape}".encode()
    return hashlib.sha256(head + np.ascontiguousarray(a).tobytes()).hexdigest()


def _manifest(arrays: dict[str, np.ndarray]) -> bytes:
    return json.dumps({n: _array_digest(arrays[n]) for n in ARRAY_NAMES}, sort_keys=True).encode()


def _check_manifest(manifest: bytes, where: str) -> dict[str, str]:
    """The manifest as {array name: digest}: exactly ARRAY_NAMES, each a sha256 (64 lowercase hex).
    It is read back from the store or the cache, so it is untrusted; a bad one is a one-line ValueError."""
    try:
        expected = json.loads(manifest)
    except ValueError as exc:  # not UTF-8, not JSON
        raise ValueError(f"{where}/{MANIFEST}: not a JSON manifest ({type(exc).__name__})") from None
    if not isinstance(expected, dict) or set(expected) != set(ARRAY_NAMES):
        found = sorted(map(str, expected))[:8] if isinstance(expected, dict) else type(expected).__name__
        raise ValueError(f"{where}/{MANIFEST}: expected an object of {list(ARRAY_NAMES)}, found {shown(found)}")
    for n in ARRAY_NAMES:
        try:
            check_sha256(expected[n])
        except ValueError as exc:
            raise ValueError(f"{where}/{MANIFEST}: {n}: {exc}") from None
    return expected


def _decode(blobs: dict[str, bytes], manifest: bytes, where: str) -> dict[str, np.ndarray]:
    """Arrays from .npy bytes, each checked against the (checked) manifest."""
    expected = _check_manifest(manifest, where)
    arrays = {n: np.load(io.BytesIO(blobs[n]), allow_pickle=False) for n in ARRAY_NAMES}
    for n in ARRAY_NAMES:
        if _array_digest(arrays[n]) != expected.get(n):
            raise ValueError(f"prepared array {where}/{n}.npy does not match its manifest")
    return arrays


def _read_local(folder: Path) -> dict[str, np.ndarray] | None:
    try:
        blobs = {n: (folder / f"{n}.npy").read_bytes() for n in ARRAY_NAMES}
        return _decode(blobs, (folder / MANIFEST).read_bytes(), str(folder))
    except (OSError, ValueError):
        return None  # absent or damaged: fall through to the store or a rebuild


def _write_local(folder: Path, blobs: dict[str, bytes], manifest: bytes) -> None:
    for name, data in {**{f"{n}.npy": blobs[n] for n in ARRAY_NAMES}, MANIFEST: manifest}.items():
        publish_local(folder / name, data)


def _read_store(store, prefix: str) -> tuple[dict[str, bytes], bytes] | None:
    """(array blobs, manifest) of a committed prepared dataset, None if not committed. The manifest is
    checked before any array is read: it is untrusted (a shared bucket has other writers)."""
    if not store.exists(f"{prefix}/{MANIFEST}"):  # the manifest is committed last: it marks completeness
        return None
    manifest = store.read_bytes(f"{prefix}/{MANIFEST}")
    _check_manifest(manifest, store.uri(prefix))
    return {n: store.read_bytes(f"{prefix}/{n}.npy") for n in ARRAY_NAMES}, manifest


def _check_content(spec: DatasetSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Refuse arrays built from sources other than the pinned ones (they would hide under its hash)."""
    for n, expected in spec.recipe.get("content", {}).items():
        found = hashlib.sha256(np.ascontiguousarray(arrays[n]).tobytes()).hexdigest()[:16]
        if found != expected:
            raise ValueError(f"dataset {spec.name!r}: prepared {n} has sha256 {found}, expected {expected}: "
                             f"its sources or its stored copy differ from the pinned content")
    return arrays


def prepared_arrays(name: str, store=None) -> dict[str, np.ndarray]:
    """The dataset's uint8 arrays train_x, train_y, test_x, test_y, prepared once and reused.

    Looks in the process memo, then the local cache, then the store (datasets/<name>/<hash>/), and
    only then builds from the sources and commits to the store (create-only: first writer wins,
    every writer writes the same content).
    """
    spec = dataset_spec(name)
    digest = spec.content_hash()
    if (name, digest) in _ARRAY_MEMO:
        return _ARRAY_MEMO[(name, digest)]
    local = cache_dir() / "datasets" / name / digest
    arrays = _read_local(local)
    if arrays is not None:
        arrays = _check_content(spec, arrays)  # a cache is a place other processes write too
    if arrays is None:
        prefix = dataset_prefix(name, digest)
        committed = _read_store(store, prefix) if store is not None else None
        if committed is not None:
            blobs, manifest = committed
            arrays = _check_content(spec, _decode(blobs, manifest, store.uri(prefix)))  # a store has other writers
        else:
            if spec.build is None:
                raise NotImplementedError(f"dataset {name!r} has no in-memory loader yet")
            arrays = _check_content(spec, spec.build())
            blobs, manifest = {n: _npy_bytes(arrays[n]) for n in ARRAY_NAMES}, _manifest(arrays)
            if store is not None:
                _commit_arrays(store, prefix, blobs, manifest)
        _write_local(local, blobs, manifest)
    _ARRAY_MEMO[(name, digest)] = arrays
    return arrays


def _commit_arrays(store: Store, prefix: str, blobs: dict[str, bytes], manifest: bytes) -> int:
    """Commit the arrays, then the manifest that marks them complete; how many objects were new."""
    created = sum(store.commit_bytes(f"{prefix}/{n}.npy", blobs[n]) for n in ARRAY_NAMES)
    return created + store.commit_bytes(f"{prefix}/{MANIFEST}", manifest)


def publish_arrays(name: str, store: Store) -> dict[str, Any]:
    """Build (or reuse) a dataset's arrays and make sure the store holds them.

    `prepared_arrays` commits only when it builds; when this machine's cache already had them the
    store may still lack them, so they are committed here (create-only, identical bytes). Returns
    prefix, uri, committed_now, train and test image counts.
    """
    arrays = prepared_arrays(name, store)
    prefix = dataset_prefix(name, dataset_spec(name).content_hash())
    created = 0
    if not store.exists(f"{prefix}/{MANIFEST}"):
        created = _commit_arrays(store, prefix, {n: _npy_bytes(arrays[n]) for n in ARRAY_NAMES}, _manifest(arrays))
    return {"prefix": prefix, "uri": store.uri(prefix), "committed_now": created,
            "train": int(arrays["train_x"].shape[0]), "test": int(arrays["test_x"].shape[0])}


# --- loaders -------------------------------------------------------------------------------------
class HalfLoader(Protocol):
    """What the training loop needs from one half of a dataset (TensorHalf now; ImageNet shards later:
    random 227 crop + mirror in train_batch, centre crop in test_batches)."""

    @property
    def num_train(self) -> int: ...

    def to(self, device: str) -> "HalfLoader": ...

    def train_batch(self, indices, generator, augment: bool): ...

    def test_batches(self, batch_size: int) -> Iterator: ...


@dataclass
class TensorHalf:
    """One half of a small-image dataset held in memory as uint8 tensors (N x C x H x W).

    The training loop uses only `num_train`, `train_batch`, `test_batches` and `to`; an ImageNet
    shard loader provides the same members.
    """

    train_x: Any  # torch.uint8, N x C x H x W
    train_y: Any  # torch.int64, N
    test_x: Any
    test_y: Any
    mean: Any  # torch.float32, C x H x W: per-pixel mean of this half's training images
    classes: list[int] = field(default_factory=list)  # original class indices, label i = classes[i]

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    def to(self, device: str) -> "TensorHalf":
        """A copy living on `device` (uint8 stays uint8: moving it is cheap, converting is per batch)."""
        return TensorHalf(self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
                          self.test_y.to(device), self.mean.to(device), self.classes)

    def _normalise(self, x_uint8):
        return (x_uint8.float() - self.mean) / PIXEL_SCALE

    def train_batch(self, indices, generator, augment: bool):
        """(float images, int64 labels) for `indices`; augmentation draws only from `generator`.

        Augmentation = random shift by up to SHIFT_PIXELS (zero pad + crop) and horizontal mirror,
        done as one gather so a whole batch costs a single indexing op.
        """
        import torch  # noqa: PLC0415 (torch only in loaders: the driver prepares data without it)
        dev = self.train_x.device
        idx = indices.to(dev)
        x = self.train_x[idx]
        if augment:
            b, c, h, w = x.shape
            p = SHIFT_PIXELS
            dy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
            flip = torch.randint(0, 2, (b,), generator=generator).bool()
            ar_h, ar_w = torch.arange(h), torch.arange(w)
            rows = dy[:, None] + ar_h[None, :]
            cols = dx[:, None] + torch.where(flip[:, None], (w - 1 - ar_w)[None, :], ar_w[None, :])
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            # zero padding is shifted in as black pixels, like the images' own background
            x = padded[torch.arange(b, device=dev)[:, None, None, None],
                       torch.arange(c, device=dev)[None, :, None, None],
                       rows[:, None, :, None].to(dev), cols[:, None, None, :].to(dev)]
        return self._normalise(x), self.train_y[idx]

    def test_batches(self, batch_size: int) -> Iterator:
        """(float images, labels) over the whole test set in order, no augmentation."""
        for start in range(0, int(self.test_x.shape[0]), batch_size):
            sl = slice(start, start + batch_size)
            yield self._normalise(self.test_x[sl]), self.test_y[sl]


def tensor_half(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                classes: list[int]) -> TensorHalf:
    """A TensorHalf from uint8 images (N x H x W, or N x H x W x C) and labels already re-indexed."""
    import torch  # noqa: PLC0415 (torch only in loaders: the driver prepares data without it)

    def images(x: np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
    train = images(train_x)
    return TensorHalf(train_x=train, train_y=torch.from_numpy(train_y.astype(np.int64)), test_x=images(test_x),
                      test_y=torch.from_numpy(test_y.astype(np.int64)), mean=train.float().mean(dim=0),
                      classes=list(classes))


def half_from_arrays(arrays: dict[str, np.ndarray], classes: list[int]) -> TensorHalf:
    """A TensorHalf of `classes` from prepared arrays (labels re-indexed, mean from its training set)."""
    trx, tr_y = select_classes(arrays["train_x"], arrays["train_y"].astype(np.int64), classes)
    tex, te_y = select_classes(arrays["test_x"], arrays["test_y"].astype(np.int64), classes)
    return tensor_half(trx, tr_y, tex, te_y, classes)


def _remember(memo_key: tuple, loaded: Any) -> None:
    while len(_HALF_MEMO) >= _HALF_MEMO_SIZE:
        _HALF_MEMO.pop(next(iter(_HALF_MEMO)))
    _HALF_MEMO[memo_key] = loaded


def load_half(dataset: str, split: str, half: str, store=None, version: str | None = None,
              classes: list[int] | None = None) -> HalfLoader:
    """The loader for one half of a dataset split (memoised per process). `version`: the content hash
    the trial's settings name; a worker refuses to train on any other version of the data. `classes`:
    the half's original classes when the plan resolved them (split 'groups'), else the split's rule."""
    spec = dataset_spec(dataset)
    if spec.loader is not None:  # a dataset with its own loader (ImageNet shards, image sets) memoises itself
        if classes:
            return spec.loader(split, half, store, version, classes)
        return spec.loader(split, half, store, version)
    if version is not None and version != spec.content_hash():
        raise ValueError(f"the trial reads {dataset} version {version}, but this worker's code prepares version "
                         f"{spec.content_hash()}: plan the sweep with the code the workers run")
    memo_key = (dataset, spec.content_hash(), split, half, tuple(classes or ()))
    if memo_key not in _HALF_MEMO:
        chosen = list(classes) if classes else half_classes(split, spec.num_classes, half)
        _remember(memo_key, half_from_arrays(prepared_arrays(dataset, store), chosen))
    return _HALF_MEMO[memo_key]
