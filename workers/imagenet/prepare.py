"""Prepare ImageNet shards (pure functions; orchestrator/prepare.py runs them as Ray tasks, one per shard).

- `scan_source(src)`: the folder layout -> classes (sorted wnids: class index = position) and the
  image list. train/<wnid>/*.JPEG; val/<wnid>/*.JPEG, or a flat val/ plus LOC_val_solution.csv or
  val_labels.txt (`<filename> <wnid>` lines) in SRC or SRC/val.
- `shard_jobs(source, shard_size)`: images sorted by (class, file name) and cut into shards, so a
  shard holds one or two classes and a half's loader reads only the shards of its classes.
- `prepare_shard(job, store)`: decode with Pillow, warp to 256x256 RGB (the paper's preprocessing:
  no aspect preservation), commit the images of datasets/imagenet/<hash>/<split>/shard-<i> (format
  "jpeg": .jpgs + .offsets.npy, quality-90 JPEG; format "raw": .npy, uint8 N x 256 x 256 x 3),
  .labels.npy and, for train, .sums.npy (per-class pixel sums of the pixels a trial will see, i.e.
  after JPEG decoding), then .json last as the shard's commit marker. An
  unreadable image is reported (file + reason) and skipped, never fatal. A shard whose .json is in
  the store is not redone: <hash> covers the recipe, the shard size and every file's name and size.
- `merge_shards(store, source, jobs)`: merge the per-class sums into class_sums.npy and the train-set
  mean image mean.npy (256x256x3 float32), commit manifest.json, then point datasets/imagenet/LATEST
  at <hash>.

numpy and Pillow only: the driver runs the scan without torch.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweepcore.layout import dataset_prefix
from sweepcore.store import Store
from workers.imagenet import DEFAULT_FORMAT, FORMATS, IMAGE_SIZE, MANIFEST, NAME, POINTER, jpeg, recipe

DEFAULT_SHARD_SIZE = 1000
IMAGE_EXTENSIONS = {".jpeg", ".jpg", ".png"}
VAL_LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt")


class SourceError(ValueError):
    """The source folder is not an ImageNet layout we can read; str() is one line."""


# --- the source folder ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A scanned source folder: classes in index order and every usable image as (split, rel, label, size)."""

    root: str
    classes: tuple[str, ...]
    items: tuple[tuple[str, str, int, int], ...]
    skipped: tuple[dict, ...]  # listing-time skips (val image without a usable label)


def _images(folder: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")
                   and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS), key=lambda e: e.name)


def read_val_labels(root: Path) -> dict[str, str] | None:
    """Val file stem -> wnid from LOC_val_solution.csv or val_labels.txt (in SRC or SRC/val), or None."""
    for folder in (root, root / "val"):
        for name in VAL_LABEL_FILES:
            path = folder / name
            if not path.is_file():
                continue
            labels = {}
            with open(path, newline="") as fh:
                if name.endswith(".csv"):  # ImageId,PredictionString ("wnid x0 y0 x1 y1 wnid ...")
                    for row in csv.DictReader(fh):
                        tokens = (row.get("PredictionString") or "").split()
                        if row.get("ImageId") and tokens:
                            labels[Path(row["ImageId"]).stem] = tokens[0]
                else:
                    for line in fh:
                        parts = line.split()
                        if len(parts) >= 2 and not parts[0].startswith("#"):
                            labels[Path(parts[0]).stem] = parts[1]
            return labels
    return None


def scan_source(src: str | Path) -> Source:
    """List an ImageNet folder; SourceError (one line) when the layout is wrong."""
    root = Path(src)
    if not root.is_dir():
        raise SourceError(f"--src {src}: no such directory")
    train = root / "train"
    if not train.is_dir():
        raise SourceError(f"{root} has no train/ folder (expected train/<wnid>/*.JPEG)")
    classes = tuple(sorted(e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith(".")))
    if not classes:
        raise SourceError(f"{train} has no class folders (expected train/<wnid>/*.JPEG)")
    index = {wnid: i for i, wnid in enumerate(classes)}
    items = [("train", f"train/{wnid}/{e.name}", i, e.stat().st_size)
             for wnid, i in index.items() for e in _images(train / wnid)]
    val = root / "val"
    if not val.is_dir():
        raise SourceError(f"{root} has no val/ folder (expected val/<wnid>/*.JPEG, or val/*.JPEG with "
                          f"{' or '.join(VAL_LABEL_FILES)})")
    skipped = []
    val_dirs = sorted(e.name for e in os.scandir(val) if e.is_dir() and not e.name.startswith("."))
    if val_dirs:
        for wnid in val_dirs:
            for e in _images(val / wnid):
                if wnid in index:
                    items.append(("val", f"val/{wnid}/{e.name}", index[wnid], e.stat().st_size))
                else:
                    skipped.append({"split": "val", "file": f"val/{wnid}/{e.name}",
                                    "reason": f"class {wnid} is not a train/ class"})
    else:
        flat = _images(val)
        labels = read_val_labels(root)
        if flat and labels is None:
            raise SourceError(f"{val} has images but no labels file ({' or '.join(VAL_LABEL_FILES)} "
                              f"in {root} or {val})")
        for e in flat:
            label = (labels or {}).get(Path(e.name).stem)
            if label is not None and label in index:
                items.append(("val", f"val/{e.name}", index[label], e.stat().st_size))
            else:
                reason = "no label in the labels file" if label is None else f"class {label} is not a train/ class"
                skipped.append({"split": "val", "file": f"val/{e.name}", "reason": reason})
    if not any(s == "val" for s, *_ in items):
        raise SourceError(f"{val} has no labelled images of the train/ classes")
    order = {"train": 0, "val": 1}
    items.sort(key=lambda it: (order[it[0]], it[2], it[1]))
    return Source(str(root.resolve()), classes, tuple(items), tuple(skipped))


# --- shards ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardJob:
    """One shard to prepare: where its images are and where it goes in the store."""

    digest: str
    split: str
    index: int
    root: str
    files: tuple[tuple[str, int], ...]  # (relative path, class index)
    fmt: str = DEFAULT_FORMAT  # "jpeg" or "raw" (workers.imagenet.FORMATS)

    @property
    def stem(self) -> str:
        return f"{dataset_prefix(NAME, self.digest)}/{self.split}/shard-{self.index:05d}"


def content_hash(source: Source, shard_size: int, fmt: str = DEFAULT_FORMAT) -> str:
    """sha256 (16 hex) of the format's recipe, the shard size, the classes and every file's name and size."""
    h = hashlib.sha256(json.dumps({"recipe": recipe(fmt), "shard_size": shard_size, "classes": source.classes},
                                  sort_keys=True).encode())
    for split, rel, label, size in source.items:
        h.update(f"\n{split}\t{rel}\t{label}\t{size}".encode())
    return h.hexdigest()[:16]


def shard_jobs(source: Source, shard_size: int = DEFAULT_SHARD_SIZE, fmt: str = DEFAULT_FORMAT) -> list[ShardJob]:
    """The shards of a source in format `fmt`, train then val, each of at most shard_size images."""
    if shard_size < 1 or shard_size > 16_000_000:  # per-class uint32 sums: 255 * n must fit
        raise SourceError(f"--shard-size {shard_size}: must be between 1 and 16000000")
    if fmt not in FORMATS:
        raise SourceError(f"--format {fmt}: must be one of {', '.join(FORMATS)}")
    digest = content_hash(source, shard_size, fmt)
    jobs = []
    for split in ("train", "val"):
        files = [(rel, label) for s, rel, label, _ in source.items if s == split]
        for i, start in enumerate(range(0, len(files), shard_size)):
            jobs.append(ShardJob(digest, split, i, source.root, tuple(files[start:start + shard_size]), fmt))
    return jobs


def warp(path: str | Path) -> np.ndarray:
    """Decode one image and warp it to 256x256x3 RGB uint8 (no aspect preservation)."""
    from PIL import Image  # noqa: PLC0415 (Pillow only on the workers that decode)
    with Image.open(path) as im:
        im.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))  # JPEG: decode at the smallest DCT scale >= 256
        rgb = im.convert("RGB")  # grayscale and CMYK JPEGs exist in ILSVRC-2012
    return np.asarray(rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR), dtype=np.uint8)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _commit(store, path: str, data: bytes) -> str:
    """Commit create-only; the sha256 of what the store holds (an earlier attempt's bytes if it won)."""
    if store.commit_bytes(path, data):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha256(store.read_bytes(path)).hexdigest()


def prepare_shard(job: ShardJob, store) -> dict:
    """Decode, warp and commit one shard; return its meta (read back if the shard was committed before)."""
    meta_path = f"{job.stem}.json"
    if store.exists(meta_path):
        return {**json.loads(store.read_bytes(meta_path)), "reused": True}
    images, labels, skipped = [], [], []
    for rel, label in job.files:
        full = os.path.join(job.root, rel)
        try:
            images.append(warp(full))
            labels.append(label)
        except Exception as exc:  # noqa: BLE001 (any decoder failure: report and skip the file)
            reason = " ".join(f"{type(exc).__name__}: {exc}".replace(full, rel).split())[:300]
            skipped.append({"split": job.split, "file": rel, "reason": reason})
    x = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    y = np.asarray(labels, dtype=np.int16)
    present = sorted(set(labels))
    meta: dict[str, Any] = {"split": job.split, "index": job.index, "count": len(labels), "format": job.fmt,
            "class_counts": [[c, labels.count(c)] for c in present], "skipped": skipped, "sha256": {}}
    if job.fmt == "jpeg":
        blobs = [jpeg.encode(image) for image in x]
        packed, offsets = jpeg.pack(blobs)
        x = jpeg.decode_cpu(blobs) if blobs else x  # the sums (mean image) are of what trials decode
        meta["sha256"]["images"] = _commit(store, f"{job.stem}.jpgs", packed)
        meta["sha256"]["offsets"] = _commit(store, f"{job.stem}.offsets.npy", _npy(offsets))
    else:
        meta["sha256"]["images"] = _commit(store, f"{job.stem}.npy", _npy(x))
    meta["sha256"]["labels"] = _commit(store, f"{job.stem}.labels.npy", _npy(y))
    if job.split == "train":
        sums = np.stack([x[y == c].sum(axis=0, dtype=np.uint32) for c in present]) if present else \
            np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint32)
        meta["sha256"]["sums"] = _commit(store, f"{job.stem}.sums.npy", _npy(sums))
    store.commit_bytes(meta_path, json.dumps(meta, sort_keys=True).encode())  # last: marks the shard done
    return {**meta, "reused": False}


def merge_shards(store: Store, source: Source, jobs: list[ShardJob]) -> dict:
    """Merge the shards' metas and sums: commit class_sums.npy, mean.npy, manifest.json; set LATEST."""
    digest = jobs[0].digest
    prefix = dataset_prefix(NAME, digest)
    if not store.exists(f"{prefix}/{MANIFEST}"):  # else done before: don't re-read ~1 GB of sums
        _merge(store, source, jobs, prefix)
    manifest = json.loads(store.read_bytes(f"{prefix}/{MANIFEST}"))
    current = store.read_bytes(POINTER).decode().strip() if store.exists(POINTER) else None
    if current != digest:
        store.write_bytes(POINTER, digest.encode())  # the only rewritten object: which version trials read
    return manifest


def _merge(store, source: Source, jobs: list[ShardJob], prefix: str) -> None:
    """Per-class counts and pixel sums of every shard -> class_sums.npy, mean.npy, manifest.json."""
    digest = jobs[0].digest
    k = len(source.classes)
    class_sums = np.zeros((k, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint32)
    counts = {"train": [0] * k, "val": [0] * k}
    shards: dict[str, list] = {"train": [], "val": []}
    skipped = list(source.skipped)
    for job in jobs:
        meta = json.loads(store.read_bytes(f"{job.stem}.json"))
        rel = job.stem[len(prefix) + 1:]
        present = [c for c, _ in meta["class_counts"]]
        for c, n in meta["class_counts"]:
            counts[job.split][c] += n
        skipped += meta["skipped"]
        entry = {"index": job.index, "images": f"{rel}.npy", "labels": f"{rel}.labels.npy",
                 "count": meta["count"], "classes": present, "sha256": meta["sha256"]}
        if job.fmt == "jpeg":
            entry.update(images=f"{rel}.jpgs", offsets=f"{rel}.offsets.npy")
        shards[job.split].append(entry)
        if job.split == "train" and present:
            class_sums[present] += np.load(io.BytesIO(store.read_bytes(f"{job.stem}.sums.npy")))
    total = sum(counts["train"])
    if total == 0:
        raise SourceError(f"{source.root}: no readable training images")
    mean = (class_sums.sum(axis=0, dtype=np.float64) / total).astype(np.float32)
    hashes = {"class_sums": _commit(store, f"{prefix}/class_sums.npy", _npy(class_sums)),
              "mean": _commit(store, f"{prefix}/mean.npy", _npy(mean))}
    manifest = {"name": NAME, "hash": digest, "recipe": recipe(jobs[0].fmt), "format": jobs[0].fmt,
                "image_size": IMAGE_SIZE,
                "source": source.root, "classes": list(source.classes), "num_classes": k,
                "counts": {s: sum(c) for s, c in counts.items()}, "class_counts": counts,
                "shards": shards, "mean": "mean.npy", "class_sums": "class_sums.npy",
                "sha256": hashes, "skipped": skipped}
    store.commit_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=1, sort_keys=True).encode())
