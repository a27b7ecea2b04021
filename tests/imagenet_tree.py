"""A small ImageNet-shaped tree (4 classes, odd sizes, a corrupt file, three val layouts), its
preparation as plain function calls, and the module fixture the ImageNet tests of every tier share."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from sweepcore.store import open_store
from workers.imagenet import load as imagenet_load
from workers.imagenet import prepare as imagenet_prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
SIZES = [(40, 30), (300, 200), (64, 64), (600, 520), (100, 257), (256, 256)]  # (w, h): odd aspects
SHARD = 5


def make_imagenet(root, val_layout="flat-csv"):
    """4 classes x 6 train JPEGs of varied sizes, one corrupt train file, 2 val images per class and
    one val image with no label."""
    rng = np.random.RandomState(0)
    for wnid in WNIDS:
        (root / "train" / wnid).mkdir(parents=True)
        for i, (w, h) in enumerate(SIZES):
            Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8)).save(
                root / "train" / wnid / f"{wnid}_{i}.JPEG", quality=95)
    (root / "train" / WNIDS[1] / f"{WNIDS[1]}_broken.JPEG").write_bytes(b"\xff\xd8 this is not a JPEG")
    (root / "val").mkdir()
    lines = []
    for c, wnid in enumerate(WNIDS):
        for j in range(2):
            name = f"ILSVRC2012_val_{2 * c + j + 1:08d}.JPEG"
            folder = root / "val" / (wnid if val_layout == "per-class" else "")
            folder.mkdir(exist_ok=True)
            Image.fromarray(rng.randint(0, 256, (90, 120, 3), dtype=np.uint8)).save(folder / name)
            lines.append((name, wnid))
    if val_layout == "flat-csv":
        Image.new("RGB", (50, 50)).save(root / "val" / "ILSVRC2012_val_00000099.JPEG")  # not in the CSV
        rows = [f"{n[:-5]},{w} 10 20 30 40 {w} 1 2 3 4" for n, w in lines]
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    elif val_layout == "flat-txt":
        (root / "val" / "val_labels.txt").write_text("".join(f"{n} {w}\n" for n, w in lines))
    return root


def prepare_pure(src, store, shard_size=SHARD, fmt="raw"):
    """The preparation as plain function calls: scan, one prepare_shard per shard, finish (raw shards:
    these tests read the arrays; tests/unit/test_imagenet_jpeg.py covers the JPEG format)."""
    source = imagenet_prepare.scan_source(src)
    jobs = imagenet_prepare.shard_jobs(source, shard_size, fmt)
    metas = [imagenet_prepare.prepare_shard(job, store) for job in jobs]
    return source, jobs, metas, imagenet_prepare.merge_shards(store, source, jobs)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    src = make_imagenet(tmp_path_factory.mktemp("imagenet-src"))
    store = open_store(str(tmp_path_factory.mktemp("imagenet-store")))
    source, jobs, metas, manifest = prepare_pure(src, store)
    return {"src": src, "store": store, "source": source, "jobs": jobs, "metas": metas, "manifest": manifest}


def _snapshot(folder):
    return {os.path.relpath(os.path.join(d, f), folder): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(folder) for f in files}


# --- layouts -------------------------------------------------------------------------------------
def _image(prepared, split, pos):
    """The pos-th image of a split, from its shards (shards are in class order)."""
    manifest, store = prepared["manifest"], prepared["store"]
    arrays = [np.load(store.uri(f"datasets/imagenet/{manifest['hash']}/{s['images']}"))
              for s in manifest["shards"][split]]
    return np.concatenate(arrays)[pos]


class _RemoteLike:
    """A store that is not a local folder (like S3): the loader must download into its cache."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def local_path(self, path=""):
        return None  # what an object store answers: no file on this machine to map


def _hostile(prepared, tmp_path, monkeypatch):
    """A copy of the prepared store, read like S3 (downloads go to tmp_path/cache), and the folder
    outside both that hostile names aim at."""
    monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(imagenet_load, "_HALVES", {})
    shutil.copytree(prepared["store"].uri(), tmp_path / "store")
    store = open_store(str(tmp_path / "store"))
    return store, _RemoteLike(store), tmp_path / "outside"


def _load_both_halves(store):
    for half in ("A", "B"):  # between them, every shard is read
        imagenet_load.load_imagenet_half("random:0", half, store)


def _assert_one_line(excinfo):
    text = str(excinfo.value)
    assert "\n" not in text and len(text) < 600, text


def _abs(outside):
    return str(outside / "pwned.npy")


