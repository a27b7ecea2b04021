"""A user's labelled image set: a folder tree (one folder per class) or a Parquet file of (image bytes,
label), prepared once into the store as shards of uint8 arrays, read by trials as in-memory halves.

- scan.py: list the source (names, sizes, labels; no decoding) and hold out a test part when the
  source has none.
- prepare.py: the image set's reader over the shard pipeline of workers/shards.py (the one ImageNet
  goes through too): read and resize each shard (a Ray task each, run by the driver before a sweep's
  first trial), then merge the shards' metas into the manifest, checking every class can be trained
  and tested; `shard_jobs` cuts the listing into shards and names the version by a content hash.
- load.py: read a version's shards of a half's classes into a TensorHalf (workers/data.py).

The store layout is ImageNet's: datasets/<folder|parquet>/<hash>/{train,test}/shard-<i>.{npy,labels.npy,json}
and manifest.json, committed last. Failures are the pipeline's: a source that cannot be a study is a
one-line SourceError (exit 2), an unreadable image is skipped and listed, a failed shard exits 1.
"""
from __future__ import annotations

from workers.shards import CHANNEL_MODES

SPLITS = ("train", "test")
DEFAULT_SHARD_SIZE = 2000  # images per shard: 6 MB at 32x32x3
MAX_SIZE = 512  # pixels a side: a half is held in memory


def recipe(size: int, channels: int) -> dict:
    """What the prepared bytes depend on besides the source: bump `version` when decoding changes."""
    if size < 1 or size > MAX_SIZE or channels not in CHANNEL_MODES:
        raise ValueError(f"image size {size} must be 1..{MAX_SIZE} and channels 1 or 3 (got {channels})")
    return {"version": 1, "size": size, "channels": channels,
            "decode": f"Pillow open + draft + convert {CHANNEL_MODES[channels]} + resize {size}x{size} bilinear, "
                      "no aspect preservation", "dtype": "uint8 N x size x size x channels"}
