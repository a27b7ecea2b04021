"""A user's labelled image set: a folder tree (one folder per class) or a Parquet file of (image bytes,
label), prepared once into the store as shards of uint8 arrays, read by trials as in-memory halves.

- scan.py: list the source (names, sizes, labels; no decoding), hold out a test part when the source
  has none, cut the list into shards and name the prepared version by a content hash.
- prepare.py: decode and resize each shard (a Ray task each, run by the driver before a sweep's first
  trial), then merge the shards' metas into the manifest, checking every class can be trained and tested.
- load.py: read a version's shards of a half's classes into a TensorHalf (workers/data.py).

The store layout is ImageNet's: datasets/<folder|parquet>/<hash>/{train,test}/shard-<i>.{npy,labels.npy,json}
and manifest.json, committed last.
"""
from __future__ import annotations

MANIFEST = "manifest.json"
SPLITS = ("train", "test")
DEFAULT_SHARD_SIZE = 2000  # images per shard: 6 MB at 32x32x3
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_SIZE = 512  # pixels a side: a half is held in memory
CHANNEL_MODES = {1: "L", 3: "RGB"}
# What one image may cost, checked before it is decoded: a small compressed file can claim a huge canvas
# (a 420 KB PNG decodes to 1.16 GB), and one Parquet cell is read whole into memory.
MAX_IMAGE_PIXELS = 64_000_000  # after JPEG draft: a 48 MP photo decodes at a reduced scale anyway
MAX_IMAGE_BYTES = 64 << 20


def recipe(size: int, channels: int) -> dict:
    """What the prepared bytes depend on besides the source: bump `version` when decoding changes."""
    if size < 1 or size > MAX_SIZE or channels not in CHANNEL_MODES:
        raise ValueError(f"image size {size} must be 1..{MAX_SIZE} and channels 1 or 3 (got {channels})")
    return {"version": 1, "size": size, "channels": channels,
            "decode": f"Pillow open + draft + convert {CHANNEL_MODES[channels]} + resize {size}x{size} bilinear, "
                      "no aspect preservation", "dtype": "uint8 N x size x size x channels"}
