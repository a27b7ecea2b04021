"""Image-set studies on Ray: a folder and a Parquet study end to end, an unreadable class, `data
prepare` once, failed shards exit 1."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from image_set_specs import image_spec, resolved
from image_trees import write_parquet, write_tree
from sweep_helpers import assert_one_failed_shard, cli, env_with

from sweepcore.store import open_store


def test_a_folder_study_runs_end_to_end_and_skips_the_corrupt_file(ray_head, tmp_path):

    from sweepcore.records import read_results
    root = write_tree(tmp_path / "tree", corrupt=("dog/broken.jpg",))
    raw = image_spec(root, splits=["random:0", "groups"], images={"groups": {"A": ["ant", "bee"], "B": ["eel", "fox"]}})
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = cli("run", str(path), "--address", ray_head.address, env=env_with(ray_head))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "1 image(s) skipped" in proc.stderr and "dog/broken.jpg" in proc.stderr
    rows = read_results(open_store(raw["store"])).to_pylist()
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"} and {r["dataset"] for r in rows} == {"folder"}
    assert sorted({r["split"] for r in rows}) == ["groups", "random:0"]
    again = cli("run", str(path), "--address", ray_head.address, env=env_with(ray_head))
    assert again.returncode == 0 and "12 already committed, 0 to run" in again.stderr
    assert len(read_results(open_store(raw["store"])).to_pylist()) == 12


def test_a_parquet_study_runs_end_to_end_on_s3(ray_head, s3_server, tmp_path, monkeypatch):

    from sweepcore.records import read_results
    uri = f"s3://{s3_server.make_bucket()}/study"
    raw = image_spec(write_parquet(tmp_path / "set.parquet", hf_struct=True), "parquet", store=None,
                     images={"channels": 1}, treatments=["base", "transfer+"], layers=[2])
    raw["store"] = uri
    path = tmp_path / "parquet.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = cli("run", str(path), "--address", ray_head.address, env=env_with(ray_head, s3_server.env()))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(uri, s3_server.endpoint)
    rows = read_results(store).to_pylist()
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}
    assert any(p.endswith("/manifest.json") for p in store.list("datasets/parquet"))


def test_run_of_a_class_whose_images_cannot_be_read_exits_2_with_one_line(ray_head, tmp_path):
    root = write_tree(tmp_path / "tree", classes=("a", "b", "c"), per_class=4)
    for f in (root / "c").iterdir():
        f.write_bytes(b"junk")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(image_spec(root)))
    proc = cli("run", str(path), "--address", ray_head.address, env=env_with(ray_head))
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"transfer-sweep: error: images.src {root}: class 'c' has no readable train image: "
                           "3 could not be decoded (first: c/"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store" / "results").exists()  # nothing trained on a broken set


def test_data_prepare_of_an_image_set_spec_commits_its_version_once(ray_head, tmp_path):
    raw = image_spec(write_tree(tmp_path / "tree", corrupt=("eel/x.png",)))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    args = ("data", "prepare", "folder", "--spec", str(path), "--store", raw["store"], "--address", ray_head.address)
    proc = cli(*args, env=env_with(ray_head))
    assert proc.returncode == 0, proc.stderr[-3000:]
    version = resolved(raw).data_version
    store = open_store(raw["store"])
    manifest = json.loads(store.read_bytes(f"datasets/folder/{version}/manifest.json"))
    counts = {"train": 48, "test": 12} if manifest["skipped"][0]["split"] == "train" else {"train": 49, "test": 11}
    assert manifest["counts"] == counts  # eel lists 11 images, 2 held out; the corrupt one is not counted
    assert proc.stdout.strip() == (f"folder {version}: 6 classes, {counts['train']} train + {counts['test']} test "
                                   "images, 1 skipped (listed in manifest.json)")
    assert "eel/x.png: UnidentifiedImageError: cannot identify image file eel/x.png" in proc.stderr
    objects = {p: store.read_bytes(p) for p in store.list("datasets")}
    again = cli(*args, env=env_with(ray_head))
    assert again.returncode == 0 and {p: store.read_bytes(p) for p in store.list("datasets")} == objects


def test_failed_shards_of_an_image_set_exit_1_like_imagenet_s_and_the_same_command_finishes_them(ray_head, tmp_path):
    raw = image_spec(write_tree(tmp_path / "tree"), images={"shard_size": 20})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    version = resolved(raw).data_version
    prefix = Path(raw["store"]) / "datasets" / "folder" / version
    blocked = prefix / "train" / "shard-00001.npy"
    blocked.mkdir(parents=True)  # a folder where the shard's images go: its task fails, the others do not
    args = ("data", "prepare", "folder", "--spec", str(path), "--store", raw["store"], "--address", ray_head.address)
    proc = cli(*args, env=env_with(ray_head))
    assert_one_failed_shard(proc, 4, "folder")
    assert not (prefix / "manifest.json").exists() and len(list(prefix.glob("*/shard-*.json"))) == 3
    blocked.rmdir()
    again = cli(*args, env=env_with(ray_head))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip() == (f"folder {version}: 6 classes, 48 train + 12 test images, 0 skipped "
                                    "(listed in manifest.json)")
