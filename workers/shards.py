"""One shard pipeline for every image source: a source's listing and its reader go in, a prepared
version of the dataset (shards + manifest, datasets/<name>/<hash> in the store) comes out.

Two sources, each one reader over this one pipeline:
- ImageNet (workers/imagenet/prepare.py: `scan_source` lists it, `ImageNetReader`): ILSVRC-2012's
  train/ and val/ folders warped to 256x256 RGB, shards in format "jpeg" or "raw", per-class pixel
  sums for the mean image, and the LATEST pointer;
- a user's image set (workers/image_set/scan.py lists it, workers/image_set/prepare.py has
  `ImageSetReader`): a folder tree or a Parquet file resized to size x size x 1 or 3, raw shards.

What a source provides:
1. its listing, a `Source`: the classes (class index = position) and every usable item as
   (split, ref, label, size) in shard order; ref is what its reader opens again (a path below the
   root, a Parquet row number), size its bytes (part of the version's name); plus what the listing
   skipped, each {split, file, reason};
2. a `Reader`: the store folder it fills, the size and channels images are decoded to, the recipe
   the bytes depend on, `read` (each item of a shard as a path or bytes) and its own manifest fields.
   Decoding itself is shared (`decode_image`). A reader is a small frozen dataclass: it rides inside
   every ShardJob to the Ray worker that decodes the shard.

The pipeline, the same for both:
- `shard_jobs(source, reader, shard_size)`: per split (train, then the held-out split) the items in
  listing order, cut into ShardJobs of at most shard_size; <hash> (`content_hash`) covers the recipe,
  the shard size, the classes and every item;
- `prepare_shard(job, store)`: decode every item (one that cannot be read or decoded is skipped and
  recorded in the shard's meta with its reason, never fatal), commit the shard's images, its labels
  and, for a reader with class sums, a train shard's per-class pixel sums, then <stem>.json last as
  the shard's commit marker; a shard whose .json is in the store is not redone;
- `merge_shards(store, source, jobs)`: the shards' metas -> manifest.json, committed last (it marks
  the version complete), then the reader's pointer (LATEST) if it has one.

The failure policy, the same for both sources:
- a source that cannot be prepared (missing, wrong layout, a class without readable images at the
  merge) is a SourceError, one line: `transfer-sweep` prints it and exits 2;
- an image that cannot be read or decoded is skipped and listed in the manifest's "skipped";
- a shard that fails (its Ray task raised, or its worker was lost past the retries) does not stop the
  others: orchestrator/execution/prepare.py reports it as '<split> shard <i>: <error>', merges nothing
  and raises ShardsFailed, so `transfer-sweep data prepare` exits 1 (orchestrator.errors.EXIT_FAILED);
  the same command again prepares only the missing shards.

numpy at import, Pillow only inside decode_image: the driver lists sources and names versions without
decoding anything (and never imports torch).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Optional

import numpy as np

from sweepcore.errors import OneLineError
from sweepcore.layout import dataset_prefix, manifest_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # what every listing takes
CHANNEL_MODES = {1: "L", 3: "RGB"}
# What one image may cost, checked before it is decoded: a small compressed file can claim a huge canvas
# (a 420 KB PNG decodes to 1.16 GB), and one Parquet cell is read whole into memory.
MAX_IMAGE_PIXELS = 64_000_000  # after JPEG draft: a 48 MP photo decodes at a reduced scale anyway
MAX_IMAGE_BYTES = 64 << 20
REASON_CHARS = 300  # of a skipped image's reason

Item = tuple[str, str, int, int]  # (split, ref, label, size)


class SourceError(OneLineError, ValueError):
    """A source that cannot be prepared (layout, listing, a class without readable images); str() is
    one line naming the file or field."""


def is_image_name(name: str) -> bool:
    """Whether a listing takes a file of this name: not hidden, and one of IMAGE_EXTENSIONS (any case)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def decode_image(data: str | bytes, size: int, channels: int) -> np.ndarray:
    """One image (a path, or its bytes) as a size x size x channels uint8 array: Pillow open, draft,
    convert to L or RGB, resize bilinear (warped: no aspect preservation)."""
    from PIL import Image  # noqa: PLC0415 (Pillow only on the workers that decode)
    if isinstance(data, bytes) and len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"{len(data)} bytes, more than the {MAX_IMAGE_BYTES} allowed for one image")
    mode = CHANNEL_MODES[channels]
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:  # reads the header only
        im.draft(mode, (size, size))  # JPEG: decode at the smallest DCT scale >= size
        width, height = im.size
        if width * height > MAX_IMAGE_PIXELS:  # before a single pixel is decoded
            raise ValueError(f"{width}x{height} pixels, more than the {MAX_IMAGE_PIXELS} allowed for one image")
        pixels = im.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(pixels, dtype=np.uint8).reshape(size, size, channels)


def npy(a: np.ndarray) -> bytes:
    """An array as .npy bytes (no pickles)."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def commit(store, path: str, data: bytes) -> str:
    """Commit create-only; the sha256 of what the store holds (an earlier attempt's bytes if it won)."""
    if store.commit_bytes(path, data):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha256(store.read_bytes(path)).hexdigest()


# --- what a source provides ------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A listed source: its classes in index order and every usable item as (split, ref, label, size),
    in shard order. ref is a path relative to `root`, or a Parquet row number as text."""

    name: str  # the dataset's folder in the store: "imagenet", "folder" or "parquet"
    root: str  # the folder, or the Parquet file
    splits: tuple[str, str]  # train, then the held-out split ("val" or "test")
    classes: tuple[str, ...]
    items: tuple[Item, ...]
    skipped: tuple[dict, ...]  # what the listing could not use, each {split, file, reason}
    image_column: str = "image"  # Parquet: the column of image bytes
    file_sha256: Optional[str] = None  # Parquet: the file's content (its rows have no size of their own)

    def counts(self) -> dict[str, int]:
        return {split: sum(1 for s, *_ in self.items if s == split) for split in self.splits}


class Reader(ABC):
    """How a source's items become a prepared version: what a source provides besides its listing.
    Subclasses are frozen dataclasses (picklable: one rides in every ShardJob)."""

    name: str  # the dataset's folder in the store: datasets/<name>/<hash>
    size: int  # images are decoded to size x size x channels uint8
    channels: int
    fmt: str  # how a shard's images are stored: "raw" (<stem>.npy) or, ImageNet's, "jpeg"

    # The shard layout each source has always written: stored versions and published data versions
    # are named by these bytes, so they stay as they are.
    label_dtype: ClassVar[type] = np.int32  # of <stem>.labels.npy
    class_sums: ClassVar[bool] = False  # train shards also commit <stem>.sums.npy: per-class uint32 pixel sums
    skipped_class: ClassVar[bool] = True  # a skipped image's record names its class
    meta_format: ClassVar[bool] = False  # a shard's meta names its format
    pointer: ClassVar[Optional[str]] = None  # the store object merge_shards points at the new version

    @abstractmethod
    def recipe(self) -> dict:
        """What the prepared bytes depend on besides the listing (bump its version when decoding changes)."""

    def hash_fields(self, source: Source) -> dict:
        """What else the version's name covers, beyond the recipe, shard size, classes and items."""
        return {}

    @abstractmethod
    def read(self, job: ShardJob) -> Iterable[tuple[str, int, Any]]:
        """Each item of a shard as (the name reports show, its class, a path or the bytes for
        decode_image, or the exception that stopped reading it)."""

    def decode(self, data: Any) -> np.ndarray:
        """One item read by `read` as a size x size x channels uint8 array (raises if it cannot be)."""
        return decode_image(data, self.size, self.channels)

    def hide_paths(self, job: ShardJob, name: str, text: str) -> str:
        """A decoder's error text as a skipped record says it: no local paths."""
        return text.replace(os.path.join(job.root, name), name)

    def commit_images(self, store, stem: str, x: np.ndarray) -> tuple[dict[str, str], np.ndarray]:
        """Commit a shard's images: (their files' sha256 by manifest field, the pixels as trials will
        see them, which the class sums are of)."""
        return {"images": commit(store, f"{stem}.npy", npy(x))}, x

    def image_files(self, rel: str) -> dict[str, str]:
        """A shard's image files by manifest field (`rel`: the shard's stem below the version's folder)."""
        return {"images": f"{rel}.npy"}

    @abstractmethod
    def manifest_fields(self, store, source: Source, prefix: str, merged: Merged) -> dict:
        """The reader's own manifest fields (committing any file they name below `prefix`); SourceError
        when the merged version cannot be used."""


@dataclass(frozen=True)
class ShardJob:
    """One shard to prepare: which items, read and decoded by which reader, committed where."""

    reader: Reader
    digest: str
    split: str
    index: int
    root: str
    items: tuple[tuple[str, int], ...]  # (ref, class index)

    @property
    def prefix(self) -> str:
        """The version's folder: datasets/<name>/<hash>."""
        return dataset_prefix(self.reader.name, self.digest)

    @property
    def rel(self) -> str:
        """The stem of the shard's files below the version's folder."""
        return f"{self.split}/shard-{self.index:05d}"

    @property
    def stem(self) -> str:
        return f"{self.prefix}/{self.rel}"


# --- the pipeline ----------------------------------------------------------------------------------
def content_hash(source: Source, reader: Reader, shard_size: int) -> str:
    """sha256 (16 hex) of the recipe, the shard size, the classes, the reader's hash_fields and every
    item's split, ref, label and size: the prepared version's name in the store."""
    head = {"recipe": reader.recipe(), "shard_size": shard_size, "classes": source.classes,
            **reader.hash_fields(source)}
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for split, ref, label, size in source.items:
        h.update(f"\n{split}\t{ref}\t{label}\t{size}".encode())
    return h.hexdigest()[:16]


def shard_jobs(source: Source, reader: Reader, shard_size: int) -> list[ShardJob]:
    """The shards of a source, train then the held-out split, each of at most shard_size items in
    listing order."""
    digest = content_hash(source, reader, shard_size)
    jobs = []
    for split in source.splits:
        refs = [(ref, label) for s, ref, label, _ in source.items if s == split]
        for i, start in enumerate(range(0, len(refs), shard_size)):
            jobs.append(ShardJob(reader, digest, split, i, source.root, tuple(refs[start:start + shard_size])))
    return jobs


def prepare_shard(job: ShardJob, store) -> dict:
    """Decode and commit one shard; return its meta (read back if the shard was committed before)."""
    meta_path = f"{job.stem}.json"
    if store.exists(meta_path):
        return {**json.loads(store.read_bytes(meta_path)), "reused": True}
    reader = job.reader
    images, labels, skipped = [], [], []
    for name, label, data in reader.read(job):
        try:
            if isinstance(data, Exception):
                raise data
            images.append(reader.decode(data))
            labels.append(label)
        except Exception as exc:  # noqa: BLE001 (any reading or decoding failure: report and skip the image)
            reason = " ".join(reader.hide_paths(job, name, f"{type(exc).__name__}: {exc}").split())[:REASON_CHARS]
            skipped.append({"split": job.split, "file": name, "reason": reason,
                            **({"class": label} if reader.skipped_class else {})})
    shape = (reader.size, reader.size, reader.channels)
    x = np.stack(images) if images else np.zeros((0, *shape), np.uint8)
    y: np.ndarray = np.asarray(labels, dtype=reader.label_dtype)
    present = sorted(set(labels))
    sha256, seen = reader.commit_images(store, job.stem, x)
    sha256["labels"] = commit(store, f"{job.stem}.labels.npy", npy(y))
    if reader.class_sums and job.split == "train":
        sums = np.stack([seen[y == c].sum(axis=0, dtype=np.uint32) for c in present]) if present else \
            np.zeros((0, *shape), np.uint32)
        sha256["sums"] = commit(store, f"{job.stem}.sums.npy", npy(sums))
    meta: dict[str, Any] = {"split": job.split, "index": job.index, "count": len(labels),
                            "class_counts": [[c, labels.count(c)] for c in present], "skipped": skipped,
                            "sha256": sha256, **({"format": reader.fmt} if reader.meta_format else {})}
    store.commit_bytes(meta_path, json.dumps(meta, sort_keys=True).encode())  # last: marks the shard done
    return {**meta, "reused": False}


@dataclass
class Merged:
    """A version's shard metas, merged: what a reader's manifest_fields build on."""

    counts: dict[str, list[int]]  # per split, the readable images of each class
    shards: dict[str, list[dict]]  # per split, the manifest's shard entries
    skipped: list[dict]  # the listing's skips, then every shard's
    class_sums: Optional[np.ndarray]  # readers with class sums: k x size x size x channels uint32, train split


def merge_shards(store, source: Source, jobs: list[ShardJob]) -> dict:
    """The committed manifest of the version (merged and committed now unless it was before), with the
    reader's pointer set to it."""
    job0 = jobs[0]
    reader = job0.reader
    path = manifest_path(reader.name, job0.digest)
    if not store.exists(path):  # else merged before: don't re-read the shards (ImageNet's sums are ~1 GB)
        merged = _merge(store, source, jobs)
        manifest = {"name": reader.name, "hash": job0.digest, "recipe": reader.recipe(), "source": source.root,
                    "classes": list(source.classes), "num_classes": len(source.classes),
                    "counts": {s: sum(c) for s, c in merged.counts.items()}, "class_counts": merged.counts,
                    "shards": merged.shards, "skipped": merged.skipped,
                    **reader.manifest_fields(store, source, job0.prefix, merged)}
        store.commit_bytes(path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    manifest = json.loads(store.read_bytes(path))
    if reader.pointer is not None:
        current = store.read_bytes(reader.pointer).decode().strip() if store.exists(reader.pointer) else None
        if current != job0.digest:  # the only rewritten object: which version new sweeps read
            store.write_bytes(reader.pointer, job0.digest.encode())
    return manifest


def _merge(store, source: Source, jobs: list[ShardJob]) -> Merged:
    reader = jobs[0].reader
    k = len(source.classes)
    sums = np.zeros((k, reader.size, reader.size, reader.channels), np.uint32) if reader.class_sums else None
    merged = Merged({s: [0] * k for s in source.splits}, {s: [] for s in source.splits}, list(source.skipped), sums)
    for job in jobs:
        meta = json.loads(store.read_bytes(f"{job.stem}.json"))
        present = [c for c, _ in meta["class_counts"]]
        for c, n in meta["class_counts"]:
            merged.counts[job.split][c] += n
        merged.skipped += meta["skipped"]
        merged.shards[job.split].append({"index": job.index, **reader.image_files(job.rel),
                                         "labels": f"{job.rel}.labels.npy", "count": meta["count"],
                                         "classes": present, "sha256": meta["sha256"]})
        if sums is not None and job.split == "train" and present:
            sums[present] += np.load(io.BytesIO(store.read_bytes(f"{job.stem}.sums.npy")))
    return merged
