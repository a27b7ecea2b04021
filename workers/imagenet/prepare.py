"""ImageNet's reader over the shard pipeline of workers/shards.py (orchestrator/execution/prepare.py
runs the pipeline's shards as Ray tasks, one per shard).

What ImageNet provides the pipeline:
- its listing, `scan_source(src)`: the folder layout -> classes (sorted wnids: class index = position)
  and the image list, sorted by (split, class, file name) so a shard holds one or two classes and a
  half's loader reads only the shards of its classes. train/<wnid>/*.JPEG; val/<wnid>/*.JPEG, or a
  flat val/ plus LOC_val_solution.csv or val_labels.txt (`<filename> <wnid>` lines) in SRC or SRC/val.
- its reader, `ImageNetReader(fmt)`: each file decoded with Pillow and warped to 256x256 RGB (the
  paper's preprocessing: no aspect preservation), committed as datasets/imagenet/<hash>/<split>/
  shard-<i> (format "jpeg": .jpgs + .offsets.npy, quality-90 JPEG; format "raw": .npy, uint8
  N x 256 x 256 x 3), .labels.npy (int16) and, for train, .sums.npy (per-class pixel sums of the pixels
  a trial will see, i.e. after JPEG decoding); the merge adds class_sums.npy and the train-set mean
  image mean.npy (256x256x3 float32) to the manifest, then points datasets/imagenet/LATEST at <hash>.
- `shard_jobs(source, shard_size, fmt)`: the pipeline's shards for that reader (<hash> covers the
  recipe, the shard size and every file's name and size).

Failures are the pipeline's (workers/shards.py): a bad layout or no readable training image is a
one-line SourceError (exit 2), an unreadable image is skipped and listed, a failed shard exits 1.

numpy at import, Pillow only where images are decoded: the driver runs the listing without torch.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from workers.imagenet import DEFAULT_FORMAT, FORMATS, IMAGE_SIZE, NAME, POINTER, jpeg, recipe
from workers.shards import (
    Merged,
    Reader,
    ShardJob,
    Source,
    SourceError,
    commit,
    decode_image,
    is_image_name,
    merge_shards,
    npy,
    prepare_shard,
)
from workers.shards import shard_jobs as pipeline_jobs

__all__ = ["ImageNetReader", "SourceError", "merge_shards", "prepare_shard", "scan_source", "shard_jobs", "warp"]

DEFAULT_SHARD_SIZE = 1000
SPLITS = ("train", "val")
VAL_LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt")


# --- the listing -----------------------------------------------------------------------------------
def _images(folder: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(folder) if e.is_file() and is_image_name(e.name)), key=lambda e: e.name)


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
    order = {split: i for i, split in enumerate(SPLITS)}
    items.sort(key=lambda it: (order[it[0]], it[2], it[1]))
    return Source(NAME, str(root.resolve()), SPLITS, classes, tuple(items), tuple(skipped))


# --- the reader ------------------------------------------------------------------------------------
def warp(path: str | Path) -> np.ndarray:
    """Decode one image and warp it to 256x256x3 RGB uint8 (no aspect preservation; grayscale and CMYK
    JPEGs exist in ILSVRC-2012)."""
    return decode_image(str(path), IMAGE_SIZE, 3)


@dataclass(frozen=True)
class ImageNetReader(Reader):
    """ImageNet's files warped to 256x256 RGB, in shards of format `fmt` ("jpeg" or "raw"), with the
    per-class pixel sums the mean image is made of, and LATEST pointed at each new version."""

    fmt: str = DEFAULT_FORMAT
    name: str = field(default=NAME, init=False)
    size: int = field(default=IMAGE_SIZE, init=False)
    channels: int = field(default=3, init=False)
    label_dtype = np.int16
    class_sums = True
    skipped_class = False
    meta_format = True
    pointer = POINTER

    def recipe(self) -> dict:
        return recipe(self.fmt)

    def read(self, job: ShardJob) -> Iterator[tuple[str, int, str]]:
        return ((rel, label, os.path.join(job.root, rel)) for rel, label in job.items)

    def commit_images(self, store, stem: str, x: np.ndarray) -> tuple[dict[str, str], np.ndarray]:
        if self.fmt != "jpeg":
            return super().commit_images(store, stem, x)
        blobs = [jpeg.encode(image) for image in x]
        packed, offsets = jpeg.pack(blobs)
        seen = jpeg.decode_cpu(blobs) if blobs else x  # the sums (mean image) are of what trials decode
        return {"images": commit(store, f"{stem}.jpgs", packed),
                "offsets": commit(store, f"{stem}.offsets.npy", npy(offsets))}, seen

    def image_files(self, rel: str) -> dict[str, str]:
        if self.fmt != "jpeg":
            return super().image_files(rel)
        return {"images": f"{rel}.jpgs", "offsets": f"{rel}.offsets.npy"}

    def manifest_fields(self, store, source: Source, prefix: str, merged: Merged) -> dict:
        """The mean image: class_sums.npy and mean.npy, committed here."""
        total = sum(merged.counts["train"])
        if total == 0:
            raise SourceError(f"{source.root}: no readable training images")
        assert merged.class_sums is not None  # a reader with class sums
        mean = (merged.class_sums.sum(axis=0, dtype=np.float64) / total).astype(np.float32)
        hashes = {"class_sums": commit(store, f"{prefix}/class_sums.npy", npy(merged.class_sums)),
                  "mean": commit(store, f"{prefix}/mean.npy", npy(mean))}
        return {"format": self.fmt, "image_size": IMAGE_SIZE, "mean": "mean.npy", "class_sums": "class_sums.npy",
                "sha256": hashes}


def shard_jobs(source: Source, shard_size: int = DEFAULT_SHARD_SIZE, fmt: str = DEFAULT_FORMAT) -> list[ShardJob]:
    """The shards of a source in format `fmt`, train then val, each of at most shard_size images."""
    if shard_size < 1 or shard_size > 16_000_000:  # per-class uint32 sums: 255 * n must fit
        raise SourceError(f"--shard-size {shard_size}: must be between 1 and 16000000")
    if fmt not in FORMATS:
        raise SourceError(f"--format {fmt}: must be one of {', '.join(FORMATS)}")
    return pipeline_jobs(source, ImageNetReader(fmt), shard_size)
