"""JPEG shards: packed JPEGs a fraction of raw, decoded pixels and mean as raw's, bad offsets refused, the
cache's bound; all in this process."""
import hashlib
import json
import os
import time

import numpy as np
import pytest
import torch
from jpeg_shards import WNIDS

from orchestrator.spec import parse_spec
from orchestrator.spec.plan import make_plan
from sweepcore.store import open_store
from workers import cache
from workers.imagenet import RECIPE, jpeg
from workers.imagenet import load as imagenet_load
from workers.imagenet import prepare as imagenet_prepare
from workers.trial import run_trial


def test_jpeg_shards_are_packed_jpegs_a_fraction_of_raw_and_the_raw_hash_is_unchanged(stores, source):
    store, manifest = stores["jpeg"]
    raw_manifest = stores["raw"][1]
    assert (manifest["format"], raw_manifest["format"]) == ("jpeg", "raw")
    assert manifest["counts"] == raw_manifest["counts"] == {"train": 20, "val": 8}
    assert [s["file"] for s in manifest["skipped"]] == [f"train/{WNIDS[2]}/broken.JPEG"]
    first = manifest["shards"]["train"][0]
    assert (first["images"], first["offsets"]) == ("train/shard-00000.jpgs", "train/shard-00000.offsets.npy")
    prefix = f"datasets/imagenet/{manifest['hash']}"
    packed = store.read_bytes(f"{prefix}/{first['images']}")
    offsets = np.load(store.uri(f"{prefix}/{first['offsets']}"))
    assert offsets[0] == 0 and offsets[-1] == len(packed) and len(offsets) == first["count"] + 1 == 5
    assert hashlib.sha256(packed).hexdigest() == first["sha256"]["images"]
    assert all(packed[a:a + 2] == b"\xff\xd8" for a in offsets[:-1])  # each slice starts a JPEG
    assert len(packed) / first["count"] < 196_608 / 4  # smooth images: far below raw
    # raw versions prepared before the JPEG format keep their hash (the recipe they were made with)
    scanned = imagenet_prepare.scan_source(source)
    h = hashlib.sha256(json.dumps({"recipe": RECIPE, "shard_size": 4, "classes": scanned.classes},
                                  sort_keys=True).encode())
    for split, rel, label, size in scanned.items:
        h.update(f"\n{split}\t{rel}\t{label}\t{size}".encode())
    assert raw_manifest["hash"] == h.hexdigest()[:16] != manifest["hash"]


def test_trials_see_the_decoded_pixels_and_the_mean_is_theirs(stores):
    store, manifest = stores["jpeg"]
    half = imagenet_load.load_imagenet_half("random:0", "A", store)
    raw_half = imagenet_load.load_imagenet_half("random:0", "A", stores["raw"][0])
    assert (half.decoder, raw_half.decoder) == ("pillow", "raw")
    assert half.num_train == raw_half.num_train and half.train.labels.tolist() == raw_half.train.labels.tolist()
    decoded = jpeg.decode_cpu(half.train.blobs(np.arange(half.num_train)))
    warped = raw_half.train.gather(np.arange(half.num_train)).astype(np.int16)
    assert 0 < np.abs(decoded - warped).mean() < 3  # JPEG is lossy, quality 90 barely so
    assert np.allclose(half.mean_np, decoded.astype(np.float64).mean(axis=0), atol=1e-3)
    x, y = half.train_batch(torch.tensor([1, 0]), None, augment=False)
    expected = (decoded[[1, 0]].astype(np.float32) - half.mean_np)[:, 14:241, 14:241].transpose(0, 3, 1, 2)
    assert np.allclose(x.numpy(), expected, atol=1e-4) and y.tolist() == half.train.labels[[1, 0]].tolist()
    a, _ = half.train_batch(torch.arange(4), torch.Generator().manual_seed(3), augment=True)
    b, _ = half.train_batch(torch.arange(4), torch.Generator().manual_seed(3), augment=True)
    assert torch.equal(a, b)


def test_a_short_training_runs_from_jpeg_shards(stores):
    store, manifest = stores["jpeg"]
    spec = parse_spec({
        "name": "t", "dataset": "imagenet", "splits": ["random:0"], "treatments": ["base"],
        "data_version": manifest["hash"],
        "model": {"arch": "caffenet", "widths": [8, 8, 8, 8, 8], "fc_width": 16},
        "train": {"iterations": 2, "batch_size": 4, "lr": 0.01, "lr_schedule": "step", "lr_step_every": 100000,
                  "warmup_fraction": 0.0, "eval_every": 2, "checkpoint_every": 2, "top_k": 1}})
    settings = {t.name: t.settings for t in make_plan(spec).trials}["baseA random:0 s0"]
    row = run_trial(settings, store)
    assert (row["steps"], row["status"]) == (2, "ok")


@pytest.mark.parametrize("mutate,message", [
    (lambda o: o[::-1].copy(), "offsets do not cut the"),
    (lambda o: o[:-1].copy(), "expected 5 integer offsets"),
    (lambda o: o.astype(np.float64), "expected 5 integer offsets"),
])
def test_offsets_that_do_not_cut_the_shard_are_one_line_errors(stores, tmp_path, mutate, message):
    store, manifest = stores["jpeg"]
    bad = open_store(str(tmp_path / "bad"))
    prefix = f"datasets/imagenet/{manifest['hash']}"
    for path in store.list(prefix):
        bad.write_bytes(path, store.read_bytes(path))
    entry = manifest["shards"]["train"][0]
    offsets = mutate(np.load(store.uri(f"{prefix}/{entry['offsets']}")))
    path = bad.uri(f"{prefix}/{entry['offsets']}")
    np.save(path, offsets)
    m = json.loads(bad.read_bytes(f"{prefix}/manifest.json"))
    m["shards"]["train"][0]["sha256"]["offsets"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    bad.write_bytes(f"{prefix}/manifest.json", json.dumps(m).encode())
    with pytest.raises(ValueError, match=message) as err:
        imagenet_load.shard_set(bad, manifest["hash"], m, "train", [0, 1, 2, 3])
    assert "\n" not in str(err.value) and entry["offsets"] in str(err.value)


def test_a_manifest_with_an_unknown_format_is_refused(stores, tmp_path):
    store, manifest = stores["jpeg"]
    with pytest.raises(ValueError, match="format: 'webp' is not one of jpeg, raw"):
        imagenet_load._check_manifest({**manifest, "format": "webp"}, manifest["hash"])
    entry = dict(manifest["shards"]["train"][0])
    del entry["offsets"]
    broken = {**manifest, "shards": {**manifest["shards"], "train": [entry]}}
    with pytest.raises(ValueError, match=r"shards.train\[0\].offsets"):
        imagenet_load._check_manifest(broken, manifest["hash"])


# --- the node cache ------------------------------------------------------------------------------


def test_the_cache_evicts_least_recently_used_files_within_its_bound(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_LIMIT_ENV, str(2500 / 1e9))  # 2.5 KB
    for i, name in enumerate(("a", "b")):
        cache.fetch_once(root, f"d/{name}", 1000, lambda: b"x" * 1000)
        t = time.time() - 100 + i
        os.utime(root / "d" / name, (t, t))
    cache.fetch_once(root, "d/a", 1000, lambda: pytest.fail("a is cached"))  # a use: now the newest
    cache.fetch_once(root, "d/c", 1000, lambda: b"y" * 1000)
    assert sorted(p.name for p in cache.cached_files(root)) == ["a", "c"]  # b was the least recently used
    keep = frozenset({(root / "d" / "a").resolve(), (root / "d" / "c").resolve()})
    with pytest.raises(ValueError, match=r"node cache .* may hold 0.0 GB .* raise TRANSFER_SWEEP_CACHE_GB"):
        cache.fetch_once(root, "d/e", 1000, lambda: b"z" * 1000, keep)
    assert sorted(p.name for p in cache.cached_files(root)) == ["a", "c"]  # nothing lost to a refusal
    monkeypatch.setenv(cache.CACHE_LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match="TRANSFER_SWEEP_CACHE_GB='lots': expected a positive number of GB"):
        cache.limit_bytes(root)
