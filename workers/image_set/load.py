"""Read a prepared image set: the manifest (checked: it comes from a shared store) and the arrays of
some classes, labels re-indexed 0..k-1 in ascending original index, ready for workers/data.py's
TensorHalf. Shards come straight from a local store, else from the node's bounded cache (downloaded
once per node, checked against the manifest's sha256).
"""
from __future__ import annotations

import numpy as np

from sweepcore.layout import check_relative_name, check_sha256, dataset_prefix, manifest_path, shown
from workers.image_set import MAX_SIZE, SPLITS
from workers.imagenet.load import (
    MAX_CLASSES,
    MAX_COUNT,
    MAX_SHARDS,
    _Bad,
    _dict,
    _field,
    _int,
    _list,
    checked_manifest,
    local_file,
)


def read_manifest(store, name: str, digest: str) -> dict:
    """The committed manifest of image set `name` version `digest`, its structure checked."""
    path = manifest_path(name, digest)
    try:
        return checked_manifest(store, path, lambda m: _check_manifest(m, digest))
    except FileNotFoundError:
        raise FileNotFoundError(f"{store.uri(path)}: the image set is not prepared (a sweep's run prepares it "
                                "from images.src before its first trial)") from None


def _check_manifest(manifest: object, digest: str) -> None:
    m = _dict(manifest, "manifest")
    if m.get("hash") != digest:
        raise _Bad(f"hash: {shown(m.get('hash'))} is not this version's {digest}")
    k = _int(m.get("num_classes"), "num_classes", 2, MAX_CLASSES)
    _int(m.get("size"), "size", 1, MAX_SIZE)
    if m.get("channels") not in (1, 3):
        raise _Bad(f"channels: {shown(m.get('channels'))} is not 1 or 3")
    if len(_list(m.get("classes"), "classes", k)) != k:
        raise _Bad(f"classes: expected {k} class names")
    shards = _dict(m.get("shards"), "shards")
    for split in SPLITS:
        for i, entry in enumerate(_list(shards.get(split), f"shards.{split}", MAX_SHARDS)):
            at = f"shards.{split}[{i}]"
            entry = _dict(entry, at)
            hashes = _dict(entry.get("sha256"), f"{at}.sha256")
            for name in ("images", "labels"):
                _field(check_relative_name, entry.get(name), f"{at}.{name}")
                _field(check_sha256, hashes.get(name), f"{at}.sha256.{name}")
            _int(entry.get("count"), f"{at}.count", 0, MAX_COUNT)
            for j, c in enumerate(_list(entry.get("classes"), f"{at}.classes", k)):
                _int(c, f"{at}.classes[{j}]", 0, k - 1)


def split_arrays(store, name: str, digest: str, manifest: dict, split: str, classes: list[int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(images N x size x size x channels uint8, labels 0..k-1 int64) of `classes` in one split."""
    size, channels, k = manifest["size"], manifest["channels"], manifest["num_classes"]
    lookup = np.full(k, -1, np.int64)
    lookup[np.asarray(sorted(classes), dtype=np.int64)] = np.arange(len(classes))
    xs, ys = [], []
    for entry in manifest["shards"][split]:
        if not set(classes) & set(entry["classes"]):
            continue
        paths = {n: local_file(store, digest, entry[n], entry["sha256"][n], name=name) for n in ("images", "labels")}
        y = np.load(paths["labels"])
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != entry["count"] or \
                (y.size and (y.min() < 0 or y.max() >= k)):
            raise ValueError(f"{paths['labels']}: not {entry['count']} class indices below {k}")
        x = np.load(paths["images"], mmap_mode="r")
        if x.shape != (len(y), size, size, channels) or x.dtype != np.uint8:
            raise ValueError(f"{paths['images']}: {x.dtype} array of shape {x.shape}, expected uint8 "
                             f"{(len(y), size, size, channels)}")
        keep = np.flatnonzero(lookup[y.astype(np.int64)] >= 0)
        xs.append(np.asarray(x[keep]))
        ys.append(lookup[y[keep].astype(np.int64)])
    if not xs or not sum(len(y) for y in ys):
        raise ValueError(f"{store.uri(dataset_prefix(name, digest))}: no {split} images of classes {classes[:5]}")
    return np.concatenate(xs), np.concatenate(ys)
