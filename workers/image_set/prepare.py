"""Prepare an image set's shards (pure functions; orchestrator/prepare.py runs them as Ray tasks).

- `prepare_shard(job, store)`: decode every image of the shard with Pillow, convert it to L or RGB and
  resize it to size x size, commit <stem>.npy (uint8 N x size x size x channels) and <stem>.labels.npy,
  then <stem>.json last as the shard's commit marker. An unreadable image is reported (file + reason)
  and skipped, never fatal. A shard whose .json is in the store is not redone.
- `merge_shards(store, source, jobs)`: the shards' metas -> manifest.json (committed last: it marks
  the version complete), refusing a set in which some class has no readable train or test image.

numpy, Pillow and pyarrow only: no torch.
"""
from __future__ import annotations

import io
import json
import os
import re
from typing import Any

import numpy as np

from sweepcore.layout import dataset_prefix
from sweepcore.store import Store
from workers.image_set import CHANNEL_MODES, MANIFEST, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, SPLITS, recipe
from workers.image_set.scan import ShardJob, Source, SourceError
from workers.imagenet.prepare import _commit, _npy


def decode(data: bytes, size: int, channels: int) -> np.ndarray:
    """One image's bytes as a size x size x channels uint8 array (warped: no aspect preservation)."""
    from PIL import Image  # noqa: PLC0415 (Pillow only on the workers that decode)
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"{len(data)} bytes, more than the {MAX_IMAGE_BYTES} allowed for one image")
    with Image.open(io.BytesIO(data)) as im:  # reads the header only
        im.draft(CHANNEL_MODES[channels], (size, size))  # JPEG: decode at the smallest DCT scale >= size
        width, height = im.size
        if width * height > MAX_IMAGE_PIXELS:  # before a single pixel is decoded
            raise ValueError(f"{width}x{height} pixels, more than the {MAX_IMAGE_PIXELS} allowed for one image")
        pixels = im.convert(CHANNEL_MODES[channels]).resize((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(pixels, dtype=np.uint8)
    return a.reshape(size, size, channels)


def _image_bytes(job: ShardJob) -> list[tuple[str, int, Any]]:
    """(name shown in reports, class, bytes or the exception that stopped reading them) per image."""
    if job.kind == "folder":
        out: list[tuple[str, int, Any]] = []
        for rel, label in job.refs:
            try:
                with open(os.path.join(job.root, rel), "rb") as fh:
                    out.append((rel, label, fh.read()))
            except OSError as exc:
                out.append((rel, label, exc))
        return out
    import pyarrow as pa  # noqa: PLC0415 (pyarrow only for Parquet image sets)
    import pyarrow.compute as pc  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    rows = [int(ref) for ref, _ in job.refs]
    pf = pq.ParquetFile(job.root)
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    groups = sorted({int(np.searchsorted(starts, r, side="right")) - 1 for r in rows})
    column = pf.read_row_groups(groups, columns=[job.image_column]).column(0).combine_chunks()
    if pa.types.is_struct(column.type):  # Hugging Face's image struct {bytes, path}
        column = column.field("bytes")
    lengths = pc.binary_length(column).to_pylist()  # an oversized cell is never copied into Python
    first = {g: int(starts[g]) for g in groups}
    offset, position = 0, {}
    for g in groups:  # row r of the file is element position[r] of the groups read
        for r in range(first[g], int(starts[g + 1])):
            position[r] = offset + r - first[g]
        offset += int(starts[g + 1]) - first[g]
    out = []
    for (ref, label), r in zip(job.refs, rows):
        nbytes = lengths[position[r]]
        if nbytes is None:
            out.append((f"row {r}", label, ValueError("no image bytes")))
        elif nbytes > MAX_IMAGE_BYTES:
            out.append((f"row {r}", label, ValueError(f"{nbytes} bytes, more than the {MAX_IMAGE_BYTES} allowed "
                                                      "for one image")))
        else:
            out.append((f"row {r}", label, column[position[r]].as_py()))
    return out


def prepare_shard(job: ShardJob, store: Store) -> dict:
    """Decode, resize and commit one shard; return its meta (read back if committed before)."""
    stem = job.stem(dataset_prefix(job.kind, job.digest))
    meta_path = f"{stem}.json"
    if store.exists(meta_path):
        return {**json.loads(store.read_bytes(meta_path)), "reused": True}
    images, labels, skipped = [], [], []
    for name, label, data in _image_bytes(job):
        try:
            if isinstance(data, Exception):
                raise data
            images.append(decode(data, job.size, job.channels))
            labels.append(label)
        except Exception as exc:  # noqa: BLE001 (any decoder failure: report and skip the image)
            text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", name, f"{type(exc).__name__}: {exc}")
            reason = " ".join(text.replace(job.root, "").split())[:300]
            skipped.append({"split": job.split, "file": name, "reason": reason, "class": label})
    x = np.stack(images) if images else np.zeros((0, job.size, job.size, job.channels), np.uint8)
    y = np.asarray(labels, dtype=np.int32)
    present = sorted(set(labels))
    meta: dict[str, Any] = {"split": job.split, "index": job.index, "count": len(labels),
                            "class_counts": [[c, labels.count(c)] for c in present], "skipped": skipped,
                            "sha256": {"images": _commit(store, f"{stem}.npy", _npy(x)),
                                       "labels": _commit(store, f"{stem}.labels.npy", _npy(y))}}
    store.commit_bytes(meta_path, json.dumps(meta, sort_keys=True).encode())  # last: marks the shard done
    return {**meta, "reused": False}


def merge_shards(store: Store, source: Source, jobs: list[ShardJob]) -> dict:
    """The manifest of the prepared version (committed now, or read back if it was before)."""
    job0 = jobs[0]
    prefix = dataset_prefix(job0.kind, job0.digest)
    if store.exists(f"{prefix}/{MANIFEST}"):
        return json.loads(store.read_bytes(f"{prefix}/{MANIFEST}"))
    k = len(source.classes)
    counts = {split: [0] * k for split in SPLITS}
    unreadable = {split: [0] * k for split in SPLITS}
    shards: dict[str, list] = {split: [] for split in SPLITS}
    skipped = list(source.skipped)
    for job in jobs:
        meta = json.loads(store.read_bytes(f"{job.stem(prefix)}.json"))
        for c, n in meta["class_counts"]:
            counts[job.split][c] += n
        for item in meta["skipped"]:
            unreadable[job.split][item["class"]] += 1
        skipped += meta["skipped"]
        rel = job.stem(prefix)[len(prefix) + 1:]
        shards[job.split].append({"index": job.index, "images": f"{rel}.npy", "labels": f"{rel}.labels.npy",
                                  "count": meta["count"], "classes": [c for c, _ in meta["class_counts"]],
                                  "sha256": meta["sha256"]})
    for split in SPLITS:
        for c in range(k):
            if counts[split][c] == 0:
                first = next((s for s in skipped if s.get("class") == c and s["split"] == split), None)
                why = f" (first: {first['file']}: {first['reason']})" if first else ""
                raise SourceError(f"images.src {source.root}: class {source.classes[c]!r} has no readable {split} "
                                  f"image: {unreadable[split][c]} could not be decoded{why}")
    manifest = {"name": job0.kind, "hash": job0.digest, "recipe": recipe(job0.size, job0.channels),
                "size": job0.size, "channels": job0.channels, "source": source.root,
                "classes": list(source.classes), "num_classes": k,
                "counts": {s: sum(c) for s, c in counts.items()}, "class_counts": counts,
                "shards": shards, "skipped": skipped}
    store.commit_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest
