"""JPEG shards for the tests of every tier: a small source prepared raw and as JPEG into two stores."""
import time

import numpy as np
import pytest
from PIL import Image

from sweepcore.store import open_store
from workers import cache
from workers.imagenet import prepare as imagenet_prepare

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]


def photo_like(rng, h, w):
    """A smooth image with some texture: compresses like a photograph, unlike uniform noise."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + rng.uniform(0, 6)), np.cos(5 * yy + rng.uniform(0, 6)),
                     np.sin(4 * (xx + yy) + rng.uniform(0, 6))], axis=-1)
    return np.clip(128 + 90 * base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """4 classes x 5 train images (one corrupt file more) and 2 val images per class, per-class folders."""
    root = tmp_path_factory.mktemp("jpeg-src")
    rng = np.random.default_rng(0)
    for wnid in WNIDS:
        for split, count in (("train", 5), ("val", 2)):
            (root / split / wnid).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(photo_like(rng, 300, 400)).save(root / split / wnid / f"{wnid}_{i}.JPEG", quality=95)
    (root / "train" / WNIDS[2] / "broken.JPEG").write_bytes(b"\xff\xd8 not a JPEG")
    return root


def prepare(src, store, fmt):
    scanned = imagenet_prepare.scan_source(src)
    jobs = imagenet_prepare.shard_jobs(scanned, 4, fmt)
    for job in jobs:
        imagenet_prepare.prepare_shard(job, store)
    return imagenet_prepare.merge_shards(store, scanned, jobs)


@pytest.fixture(scope="module")
def stores(source, tmp_path_factory):
    out = {}
    for fmt in ("jpeg", "raw"):
        store = open_store(str(tmp_path_factory.mktemp(f"store-{fmt}")))
        out[fmt] = (store, prepare(source, store, fmt))
    return out


def _slow_download(counter_path):
    with open(counter_path, "a") as fh:
        fh.write("x")
    time.sleep(0.3)
    return b"shard bytes"


def _fetch_in_process(root, counter_path):
    cache.fetch_once(root, "datasets/x/shard.bin", None, lambda: _slow_download(counter_path))


