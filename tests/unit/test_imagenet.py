"""ImageNet: folder layouts, preparation into shards (corrupt files skipped, resumable), the half loader
(crop/mirror/mean as Caffe), training CaffeNet from the shards through run_trial; all in this process."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import safetensors.torch
import torch
from imagenet_tree import (
    SHARD,
    WNIDS,
    _abs,
    _assert_one_line,
    _hostile,
    _image,
    _load_both_halves,
    _RemoteLike,
    make_imagenet,
)
from PIL import Image

from orchestrator.execution.prepare import prepare_imagenet
from orchestrator.spec import parse_spec
from orchestrator.spec.plan import make_plan
from sweepcore import layout
from sweepcore.store import StoreRef, open_store
from workers import data, splits
from workers.data import load_half
from workers.imagenet import POINTER
from workers.imagenet import load as imagenet_load
from workers.imagenet import prepare as imagenet_prepare
from workers.trial import run_trial


def test_scan_orders_classes_by_wnid_and_reads_the_val_solution_csv(prepared):
    source = prepared["source"]
    assert source.classes == tuple(WNIDS)
    train = [it for it in source.items if it[0] == "train"]
    val = [it for it in source.items if it[0] == "val"]
    assert len(train) == 4 * 6 + 1 and len(val) == 8  # the corrupt file is listed; decoding rejects it
    assert [label for _, _, label, _ in val] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert source.skipped == ({"split": "val", "file": "val/ILSVRC2012_val_00000099.JPEG",
                               "reason": "no label in the labels file"},)


@pytest.mark.parametrize("layout", ["per-class", "flat-txt"])
def test_per_class_val_folders_and_plain_label_files_give_the_same_labels(tmp_path, layout):
    source = imagenet_prepare.scan_source(make_imagenet(tmp_path, layout))
    val = [(rel.rsplit("/", 1)[-1], label) for split, rel, label, _ in source.items if split == "val"]
    assert val == [(f"ILSVRC2012_val_{i + 1:08d}.JPEG", i // 2) for i in range(8)]
    assert source.skipped == ()


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "no such directory"),
    (lambda p: p.mkdir(), "has no train/ folder"),
    (lambda p: (p / "train").mkdir(parents=True), "has no class folders"),
    (lambda p: ((p / "train" / "n1").mkdir(parents=True), (p / "val").mkdir(),
                Image.new("RGB", (8, 8)).save(p / "val" / "x.JPEG")), "has images but no labels file"),
])
def test_bad_source_folders_are_one_line_errors(tmp_path, setup, message):
    src = tmp_path / "src"
    setup(src)
    with pytest.raises(imagenet_prepare.SourceError, match=message):
        imagenet_prepare.scan_source(src)


def test_shards_hold_warped_256px_images_and_the_corrupt_file_is_reported(prepared):
    store, manifest = prepared["store"], prepared["manifest"]
    assert manifest["counts"] == {"train": 24, "val": 8}
    assert manifest["class_counts"]["train"] == [6, 6, 6, 6]
    assert manifest["classes"] == WNIDS and manifest["num_classes"] == 4
    bad = [s for s in manifest["skipped"] if s["split"] == "train"]
    assert len(bad) == 1 and bad[0]["file"] == f"train/{WNIDS[1]}/{WNIDS[1]}_broken.JPEG"
    assert bad[0]["reason"].startswith("UnidentifiedImageError: cannot identify image file")
    assert str(prepared["src"]) not in bad[0]["reason"]  # relative names only
    assert len(manifest["shards"]["train"]) == 5 and len(manifest["shards"]["val"]) == 2  # 25 files, 8 files
    prefix = f"datasets/imagenet/{manifest['hash']}"
    first = manifest["shards"]["train"][0]
    x = np.load(store.uri(f"{prefix}/{first['images']}"))
    y = np.load(store.uri(f"{prefix}/{first['labels']}"))
    assert x.shape == (5, 256, 256, 3) and x.dtype == np.uint8
    assert y.tolist() == [0, 0, 0, 0, 0] and first["classes"] == [0]
    assert store.read_bytes(POINTER).decode() == manifest["hash"]


def test_warp_stretches_without_keeping_the_aspect_ratio(tmp_path):
    wide = np.zeros((100, 520, 3), np.uint8)
    wide[:, :260] = (255, 0, 0)
    wide[:, 260:] = (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = imagenet_prepare.warp(tmp_path / "wide.png")
    assert out.shape == (256, 256, 3)
    assert (out[:, :120] == (255, 0, 0)).all() and (out[:, 136:] == (0, 0, 255)).all()  # no letterbox


def test_mean_image_is_the_float32_mean_of_every_decoded_training_image(prepared):
    store, manifest = prepared["store"], prepared["manifest"]
    mean = np.load(store.uri(f"datasets/imagenet/{manifest['hash']}/mean.npy"))
    assert mean.shape == (256, 256, 3) and mean.dtype == np.float32
    files = [rel for split, rel, _, _ in prepared["source"].items if split == "train" and "broken" not in rel]
    expected = np.mean([imagenet_prepare.warp(prepared["src"] / rel).astype(np.float64) for rel in files], axis=0)
    assert np.allclose(mean, expected, atol=1e-4)


def test_an_interrupted_prepare_redoes_only_the_missing_shards(prepared, tmp_path):
    store = open_store(str(tmp_path / "store"))
    jobs = prepared["jobs"]
    imagenet_prepare.prepare_shard(jobs[0], store)
    imagenet_prepare.prepare_shard(jobs[2], store)  # as if the run died here
    summary = prepare_imagenet(str(prepared["src"]), StoreRef(str(tmp_path / "store")), shard_size=SHARD, inline=True,
                               fmt="raw")
    assert (summary["prepared"], summary["reused"]) == (5, 2)
    assert summary["manifest"] == prepared["manifest"]


# --- loading -------------------------------------------------------------------------------------


def test_half_loader_reindexes_labels_and_uses_the_halfs_own_mean(prepared):
    half = load_half("imagenet", "random:0", "B", prepared["store"])
    classes = splits.half_classes("random:0", 4, "B")
    assert half.classes == classes and len(classes) == 2
    assert half.num_train == 12 and len(half.test) == 4
    assert sorted(set(half.train.labels.tolist())) == [0, 1]
    rows = [i for c in classes for i in range(6 * c, 6 * c + 6)]
    expected = np.mean([_image(prepared, "train", i).astype(np.float64) for i in rows], axis=0)
    assert np.allclose(half.mean_np, expected, atol=1e-4)


def test_centre_crop_is_deterministic_and_is_the_mean_subtracted_centre(prepared):
    half = load_half("imagenet", "random:0", "A", prepared["store"])
    first = list(half.test_batches(3))
    again = list(half.test_batches(3))
    assert [x.shape for x, _ in first] == [(3, 3, 227, 227), (1, 3, 227, 227)]
    assert all(torch.equal(a, b) and torch.equal(ya, yb) for (a, ya), (b, yb) in zip(first, again))
    c = half.classes[0]
    img = _image(prepared, "val", 2 * c).astype(np.float32)
    expected = (img - half.mean_np)[14:241, 14:241].transpose(2, 0, 1)
    assert np.allclose(first[0][0][0].numpy(), expected, atol=1e-4)
    assert first[0][1].tolist() == [0, 0, 1]


def test_training_crops_are_random_mirrored_windows_drawn_from_the_generator(prepared):
    half = load_half("imagenet", "random:0", "A", prepared["store"])
    idx = torch.arange(4)
    a, ya = half.train_batch(idx, torch.Generator().manual_seed(1), True)
    b, _ = half.train_batch(idx, torch.Generator().manual_seed(1), True)
    c, _ = half.train_batch(idx, torch.Generator().manual_seed(2), True)
    assert a.shape == (4, 3, 227, 227) and a.dtype == torch.float32 and ya.tolist() == [0, 0, 0, 0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Caffe's semantics: crop at (oy, ox), mean taken at the same source pixel, then mirror
    raw = _image(prepared, "train", 6 * half.classes[0]).astype(np.float32) - half.mean_np
    one = half._batch(half._images(half.train, np.array([0])), torch.tensor([3]), torch.tensor([29]),
                      torch.tensor([True]))[0].numpy()
    assert np.allclose(one, raw[3:230, 29:256][:, ::-1].transpose(2, 0, 1), atol=1e-4)


def test_remote_stores_are_read_through_a_verified_local_cache(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(imagenet_load, "_HALVES", {})  # same root URI as the local store: no memo hits
    remote = _RemoteLike(prepared["store"])
    digest = prepared["manifest"]["hash"]
    half = imagenet_load.load_imagenet_half("random:1", "A", remote)
    cached = tmp_path / "cache" / "datasets" / "imagenet" / digest / "train" / "shard-00000.npy"
    assert cached.is_file() and half.num_train == 12
    with pytest.raises(ValueError, match="sha256 does not match the manifest"):
        imagenet_load.local_file(remote, digest, "mean.npy", "0" * 64)  # not cached yet


def test_caffenet_trains_from_the_shards_through_run_trial(prepared):
    store = prepared["store"]
    # CaffeNet's geometry (227 input, 11x11/4 conv1, groups, pools) at a width a CPU test affords
    spec = parse_spec({
        "name": "t", "dataset": "imagenet", "splits": ["random:0"], "treatments": ["base"],
        "data_version": prepared["manifest"]["hash"],  # what a run records after reading LATEST
        "model": {"arch": "caffenet", "widths": [8, 8, 8, 8, 8], "fc_width": 16},
        "train": {"iterations": 3, "batch_size": 4, "lr": 0.01, "lr_schedule": "step", "lr_step_every": 100000,
                  "warmup_fraction": 0.0, "bias_lr_mult": 2.0, "bias_decay": False, "eval_every": 3,
                  "checkpoint_every": 3, "top_k": 10}})
    settings = {t.name: t.settings for t in make_plan(spec).trials}["baseA random:0 s0"]
    row = run_trial(settings, store)
    assert (row["steps"], row["dataset"], row["status"]) == (3, "imagenet", "ok")
    assert row["top1_final"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 val images in half A
    weights = safetensors.torch.load_file(store.uri(f"bases/{settings.key}/model-{row['weights_sha256']}.safetensors"))
    assert tuple(weights["fc8.weight"].shape) == (1000, 16)
    assert tuple(weights["conv1.weight"].shape) == (8, 3, 11, 11)


def test_a_store_without_prepared_imagenet_says_how_to_prepare_it(tmp_path):
    store = open_store(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="run `transfer-sweep data prepare imagenet --src DIR"):
        imagenet_load.load_imagenet_half("random:0", "A", store)


def test_fashion_animals_are_published_to_a_store_even_when_this_machine_has_them_cached(tmp_path, monkeypatch):
    from orchestrator.execution.prepare import PrepareError, prepare_fashion_animals
    monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "cache"))
    try:
        prepare_fashion_animals(open_store(str(tmp_path / "first")))  # builds: fills the cache (and that store)
    except PrepareError as exc:
        pytest.skip(f"fashion-animals sources not installed: {exc}")
    info = prepare_fashion_animals(open_store(str(tmp_path / "second")))  # cache hit: the store must still get them
    assert info["committed_now"] == 5 and (info["train"], info["test"]) == (16000, 4000)
    names = sorted(os.listdir(info["uri"]))
    assert names == ["manifest.json", "test_x.npy", "test_y.npy", "train_x.npy", "train_y.npy"]
    assert prepare_fashion_animals(open_store(str(tmp_path / "second")))["committed_now"] == 0


# --- a hostile store: every name read back is untrusted ------------------------------------------


def test_store_name_validators_accept_what_prepare_writes_and_nothing_else(tmp_path):
    assert layout.check_hash("0123456789abcdef") == "0123456789abcdef"
    assert layout.check_relative_name("train/shard-00000.labels.npy") == "train/shard-00000.labels.npy"
    for bad in ("0123456789abcde", "0123456789ABCDEF", "a" * 65, "/tmp/x", "../0123456789abcdef", 7, None):
        with pytest.raises(ValueError, match="is not a dataset hash"):
            layout.check_hash(bad)
    for bad in ("", "/etc/passwd", "../x.npy", "a/../../x.npy", "a//b", "a/", "./a", ".hidden", "a\\b", "a b",
                "a/\n", "x" * 201, ["a"], None):
        with pytest.raises(ValueError, match="is not a relative name"):
            layout.check_relative_name(bad)
    with pytest.raises(ValueError, match=r"^'/+\.\.\. \(10002 characters\) is not a relative name") as excinfo:
        layout.check_relative_name("/" * 10000)
    _assert_one_line(excinfo)
    assert layout.inside(tmp_path, "a/b.npy") == tmp_path.resolve() / "a" / "b.npy"
    (tmp_path / "out").mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "out")
    with pytest.raises(ValueError, match="'link/x.npy' leads outside"):
        layout.inside(tmp_path / "root", "link/x.npy")


@pytest.mark.parametrize("pointer", [
    "ABSOLUTE", "../../outside", "x/../../etc", "0123456789abcdef" * 640, "0123456789ABCDEF", "0123456789abcdef\n00"])
def test_a_hostile_latest_pointer_is_refused_and_writes_nothing(prepared, tmp_path, monkeypatch, pointer):
    store, remote, outside = _hostile(prepared, tmp_path, monkeypatch)
    if pointer == "ABSOLUTE":  # LATEST = /.../outside, with a real version where the store keeps that path
        pointer = str(outside)
        versions = tmp_path / "store" / "datasets" / "imagenet"
        shutil.copytree(versions / prepared["manifest"]["hash"], versions / pointer.lstrip("/"))
    store.write_bytes(POINTER, pointer.encode())
    with pytest.raises(ValueError, match=r"datasets/imagenet/LATEST: .* is not a dataset hash") as excinfo:
        _load_both_halves(remote)
    _assert_one_line(excinfo)
    assert not outside.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("field,value", [
    ("shards.train[0].images", _abs),
    ("shards.train[0].images", "../../x.npy"),
    ("shards.train[0].images", "../../../../outside/pwned.npy"),  # from cache/datasets/imagenet/<hash>/
    ("shards.val[1].labels", _abs),
    ("shards.train[2].labels", "train//shard-00002.labels.npy"),
    ("class_sums", _abs),
    ("mean", _abs),
    ("shards.train[0].sha256.images", "0" * 63),
    ("shards.train[0].sha256.images", "F" * 64),
    ("shards.train[0].sha256.labels", "a" * 10_000),
    ("shards.val[0].sha256.images", 12345),
    ("sha256.class_sums", None),
    ("num_classes", "4"),
    ("num_classes", True),
    ("num_classes", 0),
    ("num_classes", 1_000_000),
    ("shards.train", {"0": "train/shard-00000.npy"}),
    ("shards.val[0]", "val/shard-00000.npy"),
    ("shards.train[0].classes[0]", -1),
    ("shards.train[0].classes[0]", 4),
    ("class_counts.train", [6, 6, 6]),
    ("class_counts.train[1]", "6"),
])
def test_a_hostile_manifest_is_refused_and_writes_nothing_outside_the_cache(
        prepared, tmp_path, monkeypatch, field, value):
    store, remote, outside = _hostile(prepared, tmp_path, monkeypatch)
    prefix = f"datasets/imagenet/{prepared['manifest']['hash']}"
    manifest = json.loads(store.read_bytes(f"{prefix}/manifest.json"))
    value = value(outside) if callable(value) else value
    *parents, last = field.replace("[", ".").replace("]", "").split(".")
    node = manifest
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        last = int(last)
    if str(node[last]).endswith(".npy") and str(value).endswith(".npy"):  # the store holds the real bytes there
        try:
            store.write_bytes(f"{prefix}/{value}", store.read_bytes(f"{prefix}/{node[last]}"))
        except ValueError:
            pass  # a name with '..': the store itself refuses it
    node[last] = value
    store.write_bytes(f"{prefix}/manifest.json", json.dumps(manifest).encode())
    with pytest.raises(ValueError, match=re.escape(f"{prefix}/manifest.json: {field}: ")) as excinfo:
        _load_both_halves(remote)
    _assert_one_line(excinfo)
    assert not outside.exists() and not (tmp_path / "x.npy").exists()
    assert not (tmp_path / "cache").exists()  # refused before the first download


def test_a_symlink_in_the_cache_cannot_carry_a_download_outside(prepared, tmp_path, monkeypatch):
    store, remote, outside = _hostile(prepared, tmp_path, monkeypatch)
    digest = prepared["manifest"]["hash"]
    prefix = f"datasets/imagenet/{digest}"
    manifest = json.loads(store.read_bytes(f"{prefix}/manifest.json"))
    entry = manifest["shards"]["train"][0]
    store.write_bytes(f"{prefix}/train/link/pwned.npy", store.read_bytes(f"{prefix}/{entry['images']}"))
    entry["images"] = "train/link/pwned.npy"  # a well-formed name...
    store.write_bytes(f"{prefix}/manifest.json", json.dumps(manifest).encode())
    outside.mkdir()
    version = tmp_path / "cache" / "datasets" / "imagenet" / digest / "train"
    version.mkdir(parents=True)
    (version / "link").symlink_to(outside)  # ...through a link planted on the node
    with pytest.raises(ValueError, match=rf"{prefix}/train/link/pwned\.npy: 'train/link/pwned\.npy' leads outside"
                       ) as excinfo:
        _load_both_halves(remote)
    _assert_one_line(excinfo)
    assert os.listdir(outside) == []


@pytest.mark.parametrize("manifest,message", [
    (b"not json", "not a JSON manifest"),
    (b"\xff\xfe", "not a JSON manifest"),
    (b'["train_x", "train_y", "test_x", "test_y"]', "expected an object of"),
    (b'{"train_x": "%s", "train_y": "%s", "test_x": "%s"}' % ((b"0" * 64,) * 3), "expected an object of"),
    (b'{"train_x": "%s", "train_y": "%s", "test_x": "%s", "test_y": "%s", "../x": "%s"}' % ((b"0" * 64,) * 5),
     "expected an object of"),
    (b'{"train_x": "../../x", "train_y": "%s", "test_x": "%s", "test_y": "%s"}' % ((b"0" * 64,) * 3),
     "train_x: '../../x' is not a sha256"),
    (b'{"train_x": "%s", "train_y": "%s", "test_x": "%s", "test_y": 7}' % ((b"0" * 64,) * 3),
     "test_y: 7 is not a sha256"),
    (b'{"train_x": "%s", "train_y": "%s", "test_x": "%s", "test_y": "%s"}' % ((b"A" * 64,) * 3 + (b"a" * 10_000,)),
     "train_x: 'AAAA.* is not a sha256"),
])
def test_a_hostile_prepared_arrays_manifest_is_a_one_line_error(tmp_path, monkeypatch, manifest, message):
    rng = np.random.RandomState(0)
    arrays = {"train_x": rng.randint(0, 256, (4, 28, 28)).astype(np.uint8), "train_y": np.arange(4, dtype=np.uint8),
              "test_x": rng.randint(0, 256, (2, 28, 28)).astype(np.uint8), "test_y": np.arange(2, dtype=np.uint8)}
    spec = data.DatasetSpec("tiny", 4, {"version": 1}, build=lambda: arrays)
    monkeypatch.setitem(data.DATASETS, "tiny", spec)
    monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "cache"))
    store = open_store(str(tmp_path / "store"))
    data.clear_memo()
    try:
        data.prepared_arrays("tiny", store)  # commits it
        prefix = f"datasets/tiny/{spec.content_hash()}"
        store.write_bytes(f"{prefix}/manifest.json", manifest)
        data.clear_memo()
        monkeypatch.setenv("TRANSFER_SWEEP_CACHE", str(tmp_path / "fresh-cache"))  # a fresh worker reads the store
        with pytest.raises(ValueError, match=rf"{prefix}/manifest\.json: {message}") as excinfo:
            data.prepared_arrays("tiny", store)
        _assert_one_line(excinfo)
        assert not (tmp_path / "fresh-cache").exists()  # nothing cached from a manifest that failed
    finally:
        data.clear_memo()


# --- the Ray path --------------------------------------------------------------------------------
