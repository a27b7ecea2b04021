"""Datasets by name, class splits, prepared uint8 arrays and in-memory loaders.

Three layers, each usable alone:
- splits: `class_halves` / `half_classes` (pure numpy; the paper's exact rules);
- prepared arrays: `prepared_arrays(name, store)` builds a dataset once from its sources into uint8
  arrays, commits them to the store under datasets/<name>/<recipe hash>/ and keeps a local cache and
  a process memo (reused Ray actors do not reload);
- loaders: `load_half(...)` -> `TensorHalf`, the interface the training loop consumes
  (`num_train`, `train_batch`, `test_batches`, `to`). A future ImageNet shard loader implements the
  same four members (random 227 crop + mirror in training, centre crop at test).

torch is imported lazily inside the loader code so that the split and preparation code can run in
processes that never import torch (the orchestrator's `data` command).
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from orchestrator.store import dataset_prefix  # workers may use the store's path helpers

ARRAY_NAMES = ("train_x", "train_y", "test_x", "test_y")
MANIFEST = "manifest.json"
PIXEL_SCALE = 255.0  # fixed divisor after mean subtraction: inputs in [-1, 1] (trained better than 64)
SHIFT_PIXELS = 2  # training augmentation: random shift by up to this many pixels (pad + crop)

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_INSTALL = "apt-get install dataset-fashion-mnist"
ANIMAL_INSTALL = "pip install --no-deps animal-mnist==0.4"
PER_CLASS_TRAIN, PER_CLASS_TEST = 800, 200


# --- splits (pure numpy) -----------------------------------------------------------------------
def _natural_imagenet() -> list[int]:
    """The paper's natural classes: 0..397, 936..958, 970, 972..998 (449 of 1000)."""
    return list(range(0, 398)) + list(range(936, 959)) + [970] + list(range(972, 999))


def class_halves(split: str, num_classes: int) -> dict[str, list[int]]:
    """Original class indices of each half: {'A': [...], 'B': [...]} sorted, or {'all': [...]}.

    `random:<s>` is the paper's rule exactly: a RandomState seeded with the LIST [s] (an int seed
    gives a different split), A = sorted(choice(arange(C), C // 2, replace=False)), B = the rest.
    `natman`: A = man-made, B = natural (ImageNet: the paper's ranges; fashion-animals: clothing
    0..9 vs animals 10..19).
    """
    everything = list(range(num_classes))
    if split == "all":
        return {"all": everything}
    if split.startswith("random:"):
        seed_text = split.split(":", 1)[1]
        if not seed_text.isdigit():
            raise ValueError(f"split {split!r}: the seed after 'random:' must be a non-negative integer")
        rng = np.random.RandomState([int(seed_text)])
        a = sorted(int(i) for i in rng.choice(np.arange(num_classes), num_classes // 2, replace=False))
    elif split == "natman":
        if num_classes == 1000:
            natural = set(_natural_imagenet())
            a = [i for i in everything if i not in natural]
        elif num_classes == 20:
            a = list(range(10))
        else:
            raise ValueError(f"split 'natman' is defined for 1000 (ImageNet) or 20 (fashion-animals) "
                             f"classes, not {num_classes}")
    else:
        raise ValueError(f"unknown split {split!r}: expected 'random:<seed>', 'natman' or 'all'")
    chosen = set(a)
    return {"A": a, "B": [i for i in everything if i not in chosen]}


def half_classes(split: str, num_classes: int, half: str) -> list[int]:
    """The sorted original classes of one half; a half's labels are these re-indexed 0..k-1."""
    halves = class_halves(split, num_classes)
    if half not in halves:
        raise ValueError(f"half {half!r} does not exist in split {split!r} (halves: {sorted(halves)})")
    return halves[half]


def select_classes(x: np.ndarray, y: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The images of `classes` with labels re-indexed 0..k-1 in ascending original index."""
    lookup = np.full(int(max(int(y.max()), max(classes))) + 1, -1, dtype=np.int64)
    lookup[np.asarray(sorted(classes))] = np.arange(len(classes))
    keep = lookup[y] >= 0
    return x[keep], lookup[y[keep]]


# --- sources -----------------------------------------------------------------------------------
def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one gzipped IDX file (MNIST format) as uint8."""
    if not path.exists():
        raise FileNotFoundError(f"Fashion-MNIST file {path} not found: install it with `{FASHION_INSTALL}` "
                                f"(or set FASHION_MNIST_DIR)")
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    found, count = struct.unpack(">II", raw[:8])
    if found != magic:
        raise ValueError(f"{path}: not an IDX file of the expected kind (magic {found}, wanted {magic})")
    if magic == 2051:
        rows, cols = struct.unpack(">II", raw[8:16])
        return np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, cols)
    return np.frombuffer(raw, np.uint8, offset=8).reshape(count)


def _first_per_class(y: np.ndarray, classes: range, count: int, last: bool = False) -> np.ndarray:
    """Indices (in file order) of the first (or last) `count` images of each class."""
    picked = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        if len(idx) < count:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than the {count} needed")
        picked.append(idx[-count:] if last else idx[:count])
    return np.sort(np.concatenate(picked))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle plain numpy arrays only: a data file must not be able to run code."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "numpy" and name in {"_reconstruct", "ndarray", "dtype", "scalar"}:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a data file")


def animal_mnist_dir() -> Path:
    """Folder holding the Animal-MNIST files of the installed animal-mnist package."""
    spec = importlib.util.find_spec("animal_mnist")  # find, don't import: its __init__ is heavy
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Animal-MNIST not installed: install it with `{ANIMAL_INSTALL}`")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"


def _read_animal(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"Animal-MNIST file {path} not found: install it with `{ANIMAL_INSTALL}`")
    with gzip.open(path, "rb") as fh:
        return np.asarray(_NumpyOnlyUnpickler(fh).load())


def build_fashion_animals() -> dict[str, np.ndarray]:
    """20 balanced classes (800 train + 200 test each): Fashion-MNIST 0..9, then Animal-MNIST as 10..19."""
    fdir = Path(os.environ.get("FASHION_MNIST_DIR", FASHION_DIR))
    f_train_x = _read_idx(fdir / "train-images-idx3-ubyte.gz", 2051)
    f_train_y = _read_idx(fdir / "train-labels-idx1-ubyte.gz", 2049)
    f_test_x = _read_idx(fdir / "t10k-images-idx3-ubyte.gz", 2051)
    f_test_y = _read_idx(fdir / "t10k-labels-idx1-ubyte.gz", 2049)
    adir = animal_mnist_dir()
    a_x = _read_animal(adir / "animal_data_version_3.gz").astype(np.uint8)
    a_y = _read_animal(adir / "animal_label_version_3.gz").astype(np.int64)
    if a_x.shape != (10000, 28, 28) or a_y.shape != (10000,):
        raise ValueError(f"Animal-MNIST arrays have shapes {a_x.shape}, {a_y.shape}: expected version 3 "
                         f"of animal-mnist==0.4 ({ANIMAL_INSTALL})")
    ftr = _first_per_class(f_train_y, range(10), PER_CLASS_TRAIN)
    fte = _first_per_class(f_test_y, range(10), PER_CLASS_TEST)
    atr = _first_per_class(a_y, range(10), PER_CLASS_TRAIN)
    ate = _first_per_class(a_y, range(10), PER_CLASS_TEST, last=True)
    return {
        "train_x": np.concatenate([f_train_x[ftr], a_x[atr]]),
        "train_y": np.concatenate([f_train_y[ftr], a_y[atr] + 10]).astype(np.uint8),
        "test_x": np.concatenate([f_test_x[fte], a_x[ate]]),
        "test_y": np.concatenate([f_test_y[fte], a_y[ate] + 10]).astype(np.uint8),
    }


# --- dataset registry --------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its class count, the recipe that identifies its prepared arrays, a builder."""

    name: str
    num_classes: int
    recipe: dict
    build: Callable[[], dict[str, np.ndarray]] | None = None  # None: no in-memory loader yet
    loader: Callable[[str, str, Any], Any] | None = None  # (split, half, store) -> HalfLoader of its own

    def content_hash(self) -> str:
        """Hash of the recipe: same recipe, same prepared arrays, same store path."""
        text = json.dumps({"name": self.name, **self.recipe}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> None:
    """Make a dataset available by name (tests register small ones; new datasets register here)."""
    DATASETS[spec.name] = spec


register_dataset(DatasetSpec(
    name="fashion-animals", num_classes=20, build=build_fashion_animals,
    recipe={"version": 1, "sources": ["Fashion-MNIST idx (Zalando, 60k+10k)", "animal-mnist==0.4 version_3"],
            "rule": "fashion 0..9 then animals 10..19; 800 train + 200 test per class; fashion: first 800 "
                    "of the train file + first 200 of t10k per class; animals: first 800 / last 200",
            # sha256 (16 hex) of each array's raw bytes: pins the content, so the hash names it
            "content": {"train_x": "8eb4b92939aad97f", "train_y": "b856f3a1733fdb20",
                        "test_x": "d52912622aeb5e3d", "test_y": "8a7a104d8e9f0ffb"}}))


def _imagenet_half(split: str, half: str, store) -> Any:
    """ImageNet halves come from shards prepared in the store (workers/imagenet.py)."""
    from workers.imagenet import load_imagenet_half  # imports this module: load it only when used
    return load_imagenet_half(split, half, store)


register_dataset(DatasetSpec(name="imagenet", num_classes=1000, loader=_imagenet_half,
                             recipe={"version": 1, "sources": ["ILSVRC-2012"]}))


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset `name`, or a ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: known datasets are {sorted(DATASETS)}")
    return DATASETS[name]


def num_classes(name: str) -> int:
    """Class count of a registered dataset."""
    return dataset_spec(name).num_classes


# --- prepared arrays: memo -> local cache -> store -> build ------------------------------------
_ARRAY_MEMO: dict[tuple[str, str], dict[str, np.ndarray]] = {}
_HALF_MEMO: dict[tuple, Any] = {}
_HALF_MEMO_SIZE = 4


def clear_memo() -> None:
    """Forget arrays and halves held by this process (tests; memory)."""
    _ARRAY_MEMO.clear()
    _HALF_MEMO.clear()


def cache_dir() -> Path:
    """Local cache root: $TRANSFER_SWEEP_CACHE or ~/.cache/transfer-sweep."""
    return Path(os.environ.get("TRANSFER_SWEEP_CACHE", Path.home() / ".cache" / "transfer-sweep"))


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


def _decode(blobs: dict[str, bytes], manifest: bytes, where: str) -> dict[str, np.ndarray]:
    """Arrays from .npy bytes, each checked against the manifest."""
    expected = json.loads(manifest)
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
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in {**{f"{n}.npy": blobs[n] for n in ARRAY_NAMES}, MANIFEST: manifest}.items():
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)  # atomic: a concurrent reader sees old or new, never a part


def _read_store(store, prefix: str) -> dict[str, bytes] | None:
    if not store.exists(f"{prefix}/{MANIFEST}"):  # the manifest is committed last: it marks completeness
        return None
    return {n: store.read_bytes(f"{prefix}/{n}.npy") for n in ARRAY_NAMES}


def _check_content(spec: DatasetSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Refuse arrays built from sources other than the pinned ones (they would hide under its hash)."""
    for n, expected in spec.recipe.get("content", {}).items():
        found = hashlib.sha256(np.ascontiguousarray(arrays[n]).tobytes()).hexdigest()[:16]
        if found != expected:
            raise ValueError(f"dataset {spec.name!r}: built {n} has sha256 {found}, expected {expected}: "
                             f"the source files differ from the pinned versions")
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
    if arrays is None:
        prefix = dataset_prefix(name, digest)
        blobs = _read_store(store, prefix) if store is not None else None
        if blobs is not None:
            manifest = store.read_bytes(f"{prefix}/{MANIFEST}")
            arrays = _decode(blobs, manifest, store.uri(prefix))
        else:
            if spec.build is None:
                raise NotImplementedError(f"dataset {name!r} has no in-memory loader yet")
            arrays = _check_content(spec, spec.build())
            blobs, manifest = {n: _npy_bytes(arrays[n]) for n in ARRAY_NAMES}, _manifest(arrays)
            if store is not None:
                for n in ARRAY_NAMES:
                    store.commit_bytes(f"{prefix}/{n}.npy", blobs[n])
                store.commit_bytes(f"{prefix}/{MANIFEST}", manifest)
        _write_local(local, blobs, manifest)
    _ARRAY_MEMO[(name, digest)] = arrays
    return arrays


# --- loaders -------------------------------------------------------------------------------------
class HalfLoader(Protocol):
    """What the training loop needs from one half of a dataset (TensorHalf now; ImageNet shards later:
    random 227 crop + mirror in train_batch, centre crop in test_batches)."""

    num_train: int

    def to(self, device: str) -> "HalfLoader": ...

    def train_batch(self, indices, generator, augment: bool): ...

    def test_batches(self, batch_size: int) -> Iterator: ...


@dataclass
class TensorHalf:
    """One half of a small-image dataset held in memory as uint8 tensors (N x 1 x H x W).

    The training loop uses only `num_train`, `train_batch`, `test_batches` and `to`; an ImageNet
    shard loader provides the same members.
    """

    train_x: Any  # torch.uint8, N x 1 x H x W
    train_y: Any  # torch.int64, N
    test_x: Any
    test_y: Any
    mean: Any  # torch.float32, 1 x H x W: per-pixel mean of this half's training images
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
        import torch
        dev = self.train_x.device
        idx = indices.to(dev)
        x = self.train_x[idx]
        if augment:
            b, _, h, w = x.shape
            p = SHIFT_PIXELS
            dy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
            flip = torch.randint(0, 2, (b,), generator=generator).bool()
            ar_h, ar_w = torch.arange(h), torch.arange(w)
            rows = dy[:, None] + ar_h[None, :]
            cols = dx[:, None] + torch.where(flip[:, None], (w - 1 - ar_w)[None, :], ar_w[None, :])
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            # zero padding is shifted in as black pixels, like the images' own background
            x = padded[torch.arange(b, device=dev)[:, None, None], 0,
                       rows[:, :, None].to(dev), cols[:, None, :].to(dev)].unsqueeze(1)
        return self._normalise(x), self.train_y[idx]

    def test_batches(self, batch_size: int) -> Iterator:
        """(float images, labels) over the whole test set in order, no augmentation."""
        for start in range(0, int(self.test_x.shape[0]), batch_size):
            sl = slice(start, start + batch_size)
            yield self._normalise(self.test_x[sl]), self.test_y[sl]


def half_from_arrays(arrays: dict[str, np.ndarray], classes: list[int]) -> TensorHalf:
    """A TensorHalf of `classes` from prepared arrays (labels re-indexed, mean from its training set)."""
    import torch
    trx, tr_y = select_classes(arrays["train_x"], arrays["train_y"].astype(np.int64), classes)
    tex, te_y = select_classes(arrays["test_x"], arrays["test_y"].astype(np.int64), classes)
    train_x = torch.from_numpy(np.ascontiguousarray(trx)).unsqueeze(1)
    return TensorHalf(
        train_x=train_x, train_y=torch.from_numpy(tr_y),
        test_x=torch.from_numpy(np.ascontiguousarray(tex)).unsqueeze(1), test_y=torch.from_numpy(te_y),
        mean=train_x.float().mean(dim=0), classes=list(classes))


def load_half(dataset: str, split: str, half: str, store=None) -> TensorHalf:
    """The loader for one half of a dataset split (memoised per process)."""
    spec = dataset_spec(dataset)
    if spec.loader is not None:  # a dataset with its own loader (ImageNet shards) memoises itself
        return spec.loader(split, half, store)
    memo_key = (dataset, spec.content_hash(), split, half)
    if memo_key not in _HALF_MEMO:
        classes = half_classes(split, spec.num_classes, half)
        loaded = half_from_arrays(prepared_arrays(dataset, store), classes)
        while len(_HALF_MEMO) >= _HALF_MEMO_SIZE:
            _HALF_MEMO.pop(next(iter(_HALF_MEMO)))
        _HALF_MEMO[memo_key] = loaded
    return _HALF_MEMO[memo_key]
