"""The image set's reader over the shard pipeline of workers/shards.py (orchestrator/execution/prepare.py
runs the pipeline's shards as Ray tasks).

What an image set provides the pipeline besides its listing (scan.py), as `ImageSetReader`:
- how to read a shard: a folder's files, or a Parquet file's cells read by row group (an oversized
  cell is refused by its length, never copied into Python);
- what it is decoded to: size x size, L or RGB (workers.shards.decode_image), committed as raw shards
  <stem>.npy (uint8 N x size x size x channels) and <stem>.labels.npy (int32);
- its manifest: size and channels, refused (SourceError, one line) when some class has no readable
  train or test image.
`shard_jobs(source, size, channels, shard_size)` gives the pipeline's shards for that reader.

Failures are the pipeline's: an unreadable image is reported (file + reason) and skipped, never fatal;
a failed shard exits `transfer-sweep data prepare` with 1.

numpy, Pillow and pyarrow only (the latter two where images are read): no torch.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.image_set import DEFAULT_SHARD_SIZE, SPLITS, recipe
from workers.shards import MAX_IMAGE_BYTES, Merged, Reader, ShardJob, Source, SourceError
from workers.shards import shard_jobs as pipeline_jobs


@dataclass(frozen=True)
class ImageSetReader(Reader):
    """A folder's or a Parquet file's images, resized to size x size x channels, in raw shards."""

    name: str  # "folder" or "parquet"
    size: int
    channels: int
    image_column: str = "image"  # Parquet: the column of image bytes
    fmt: str = field(default="raw", init=False)

    def recipe(self) -> dict:
        return recipe(self.size, self.channels)

    def hash_fields(self, source: Source) -> dict:
        return {"kind": self.name, "file_sha256": source.file_sha256}

    def read(self, job: ShardJob) -> list[tuple[str, int, Any]]:
        """(name shown in reports, class, bytes or the exception that stopped reading them) per image."""
        return _folder_bytes(job) if self.name == "folder" else _parquet_bytes(job, self.image_column)

    def hide_paths(self, job: ShardJob, name: str, text: str) -> str:
        return re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", name, text).replace(job.root, "")

    def manifest_fields(self, store, source: Source, prefix: str, merged: Merged) -> dict:
        """Size and channels, once every class has a readable train and test image."""
        k = len(source.classes)
        unreadable = {split: [0] * k for split in SPLITS}
        for item in merged.skipped:
            if "class" in item:  # a shard's skip (the listing's name no class)
                unreadable[item["split"]][item["class"]] += 1
        for split in SPLITS:
            for c in range(k):
                if merged.counts[split][c] == 0:
                    first = next((s for s in merged.skipped if s.get("class") == c and s["split"] == split), None)
                    why = f" (first: {first['file']}: {first['reason']})" if first else ""
                    raise SourceError(f"images.src {source.root}: class {source.classes[c]!r} has no readable "
                                      f"{split} image: {unreadable[split][c]} could not be decoded{why}")
        return {"size": self.size, "channels": self.channels}


def shard_jobs(source: Source, size: int, channels: int, shard_size: int = DEFAULT_SHARD_SIZE) -> list[ShardJob]:
    """The shards of a listed image set decoded to size x size x channels, train then test, each of at
    most shard_size images in listing order."""
    return pipeline_jobs(source, ImageSetReader(source.name, size, channels, source.image_column), shard_size)


def _folder_bytes(job: ShardJob) -> list[tuple[str, int, Any]]:
    out: list[tuple[str, int, Any]] = []
    for rel, label in job.items:
        try:
            with open(os.path.join(job.root, rel), "rb") as fh:
                out.append((rel, label, fh.read()))
        except OSError as exc:
            out.append((rel, label, exc))
    return out


def _parquet_bytes(job: ShardJob, image_column: str) -> list[tuple[str, int, Any]]:
    import pyarrow as pa  # noqa: PLC0415 (pyarrow only for Parquet image sets)
    import pyarrow.compute as pc  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    rows = [int(ref) for ref, _ in job.items]
    pf = pq.ParquetFile(job.root)
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    groups = sorted({int(np.searchsorted(starts, r, side="right")) - 1 for r in rows})
    column = pf.read_row_groups(groups, columns=[image_column]).column(0).combine_chunks()
    if pa.types.is_struct(column.type):  # Hugging Face's image struct {bytes, path}
        column = column.field("bytes")
    lengths = pc.binary_length(column).to_pylist()  # an oversized cell is never copied into Python
    first = {g: int(starts[g]) for g in groups}
    offset, position = 0, {}
    for g in groups:  # row r of the file is element position[r] of the groups read
        for r in range(first[g], int(starts[g + 1])):
            position[r] = offset + r - first[g]
        offset += int(starts[g + 1]) - first[g]
    out: list[tuple[str, int, Any]] = []
    for (ref, label), r in zip(job.items, rows):
        nbytes = lengths[position[r]]
        if nbytes is None:
            out.append((f"row {r}", label, ValueError("no image bytes")))
        elif nbytes > MAX_IMAGE_BYTES:
            out.append((f"row {r}", label, ValueError(f"{nbytes} bytes, more than the {MAX_IMAGE_BYTES} allowed "
                                                      "for one image")))
        else:
            out.append((f"row {r}", label, column[position[r]].as_py()))
    return out
