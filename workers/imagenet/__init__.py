"""ImageNet (ILSVRC-2012): shards of 256x256 warped images, prepared once into the store, read by trials.

- prepare.py: ImageNet's reader over the shard pipeline of workers/shards.py: list the source
  folder, warp each shard (a Ray task each, run by the driver's `data prepare imagenet`), merge the
  per-class sums into the mean image and the manifest.
- load.py: memory-map the shards of a half's classes and crop batches (the HalfLoader of data.py).
- jpeg.py: the JPEG shard format (encode, pack, decode on CPU or with nvJPEG on the GPU).

Two shard formats (docs/performance.md says which suits which node): "jpeg" (quality-90 JPEG,
~1/7 of the bytes, decoded per batch; the default) and "raw" (uint8 arrays, no decoding).

This module holds what both sides agree on: names, sizes and the recipe the shard bytes depend on.
"""
from __future__ import annotations

from sweepcore.layout import data_pointer_path

NAME = "imagenet"
IMAGE_SIZE, CROP = 256, 227
CENTRE = (IMAGE_SIZE - CROP) // 2  # Caffe's test-time offset: 14
POINTER = data_pointer_path(NAME)  # the prepared version new sweeps read
# What the shard bytes depend on. Bump the version when the decoding or the layout changes.
FORMATS = ("jpeg", "raw")
DEFAULT_FORMAT = "jpeg"
JPEG_QUALITY = 90
RECIPE = {"version": 1, "size": IMAGE_SIZE, "warp": "Pillow draft(RGB, 256) + convert RGB + "
          "resize 256x256 bilinear, no aspect preservation", "order": "class index, then file name"}


def recipe(fmt: str) -> dict:
    """What the shard bytes of format `fmt` depend on (raw: RECIPE itself, so raw versions keep their hash)."""
    if fmt == "raw":
        return RECIPE
    if fmt == "jpeg":
        return {**RECIPE, "version": 2, "format": "jpeg", "quality": JPEG_QUALITY,
                "encoder": "Pillow JPEG, 4:2:0; class sums and mean from the decoded pixels"}
    raise ValueError(f"unknown shard format {fmt!r}: expected one of {', '.join(FORMATS)}")
