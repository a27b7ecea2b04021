"""fashion-animals: the laptop-sized stand-in for ImageNet, built from two installed sources.

20 balanced classes of 28x28 grey images: Fashion-MNIST's 10 clothing classes (Debian package
dataset-fashion-mnist) as 0..9, then Animal-MNIST's 10 animal classes (PyPI animal-mnist==0.4, data
files only) as 10..19; 800 training and 200 test images per class. `build_fashion_animals` returns
the uint8 arrays; data.py pins their content hashes and stores them.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from sweepcore.vocabulary import DATASETS

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_INSTALL = "apt-get install dataset-fashion-mnist"
ANIMAL_INSTALL = "pip install --no-deps animal-mnist==0.4"
PER_CLASS_TRAIN = DATASETS["fashion-animals"].train_per_class
PER_CLASS_TEST = DATASETS["fashion-animals"].test_per_class


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
