"""Image sets (dataset: folder | parquet): listing, specs, preparation into shards and the halves read
back; all in this process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from image_set_specs import as_sweep, image_spec, resolved
from image_trees import CLASSES, write_parquet, write_tree

from orchestrator.errors import UsageError
from orchestrator.execution.prepare import PrepareError, prepare_image_set
from orchestrator.sources import record_spec, stored_sweep
from orchestrator.spec import SpecError
from orchestrator.spec.plan import make_plan
from sweepcore.store import open_store
from workers.image_set.scan import SourceError, scan_folder, scan_parquet


def test_a_flat_folder_holds_out_a_fifth_of_each_class_by_name_hash(tmp_path):
    source = scan_folder(write_tree(tmp_path / "t"), 0.2)
    assert source.classes == CLASSES
    assert source.counts() == {"train": 48, "test": 12}
    test = {ref for split, ref, _, _ in source.items if split == "test"}
    (tmp_path / "t" / "ant" / "new.png").write_bytes((tmp_path / "t" / "ant" / "000.png").read_bytes())
    again = scan_folder(tmp_path / "t", 0.2)
    moved = {ref for split, ref, _, _ in again.items if split == "test"} ^ test
    assert moved <= {"ant/new.png"} or len(moved) == 2 and all(r.startswith("ant/") for r in moved)


def test_a_train_and_test_folder_is_used_as_it_is(tmp_path):
    source = scan_folder(write_tree(tmp_path / "t", per_class=8, layout="split"), 0.2)
    assert source.counts() == {"train": 36, "test": 12}
    assert all(ref.startswith(f"{split}/") for split, ref, _, _ in source.items)


@pytest.mark.parametrize("make,message", [
    (lambda root: write_tree(root, classes=("cats",)),
     "a study needs at least 2 classes, found 1 (cats); expected one folder per class: <class>/<image>"),
    (lambda root: root / "nowhere", "no such directory"),
    (lambda root: (write_tree(root, classes=("a", "b")), (root / "c").mkdir(),
                   (root / "c" / "x.txt").write_text(""))[0], "class folder 'c' has no image files"),
    (lambda root: write_tree(root, classes=("a", "b"), per_class=1),
     "class 'a' has 1 image; each class needs at least 2 (one to train on, one to test)"),
])
def test_folders_that_cannot_be_a_study_are_one_line_errors(tmp_path, make, message):
    with pytest.raises(SourceError) as err:
        scan_folder(make(tmp_path / "t"), 0.2)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_parquet_split_column_decides_train_and_test_and_other_values_are_skipped(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pq.read_table(write_parquet(tmp_path / "s.parquet"))
    splits = ["test" if i % 5 == 0 else "train" for i in range(len(table))]
    splits[1] = "holdout"
    pq.write_table(table.append_column("part", pa.array(splits)), tmp_path / "split.parquet")
    source = scan_parquet(tmp_path / "split.parquet", 0.2, split_column="part")
    assert source.counts() == {"train": 47, "test": 12}
    assert source.skipped == ({"split": "train", "file": "row 1", "reason": "part is 'holdout', not train or test"},)


def test_a_relative_src_is_recorded_as_the_absolute_path_it_lists(tmp_path, monkeypatch):
    write_tree(tmp_path / "t")
    monkeypatch.chdir(tmp_path)
    spec = resolved(image_spec(Path("t"), store=tmp_path / "store"))
    assert spec.images.src == str(tmp_path / "t")


def test_a_parquet_file_lists_its_rows_and_reads_hugging_face_image_structs(tmp_path):
    for hf in (False, True):
        source = scan_parquet(write_parquet(tmp_path / f"s{hf}.parquet", hf_struct=hf), 0.2)
        assert source.classes == CLASSES and source.counts() == {"train": 48, "test": 12}
    with pytest.raises(SourceError, match=r"^images.label_column: .* has no column 'class' \(columns: image, label\)$"):
        scan_parquet(tmp_path / "sFalse.parquet", 0.2, label_column="class")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="not a Parquet file"):
        scan_parquet(tmp_path / "junk.parquet", 0.2)


# --- the spec --------------------------------------------------------------------------------------


def test_loading_fills_in_the_classes_and_the_data_version_and_resume_needs_no_source(tmp_path):
    spec = resolved(image_spec(write_tree(tmp_path / "t")))
    assert spec.images.classes == CLASSES and spec.data_version and len(spec.data_version) == 16
    plan = make_plan(spec)
    assert len(plan) == 6 and {t.settings.model.in_channels for t in plan.trials} == {3}
    assert {t.settings.model.num_outputs for t in plan.trials} == {6}
    store = open_store(spec.store)
    record_spec(spec, store)
    shutil.rmtree(tmp_path / "t")  # resume, status and report plan from the stored spec alone
    again = stored_sweep(spec.name, spec.store, None).spec
    assert [t.key for t in make_plan(again).trials] == [t.key for t in plan.trials]


def test_split_groups_hands_each_trial_its_half_s_classes(tmp_path):
    raw = image_spec(write_tree(tmp_path / "t"), splits=["groups"], directions=["A->B", "B->A"],
                     images={"groups": {"A": ["fox", "ant"], "B": ["bee", "cat", "dog"]}})
    plan = make_plan(resolved(raw))
    by_half = {t.target_half: t.settings.classes for t in plan.trials}
    assert by_half == {"A": (0, 5), "B": (1, 2, 3)}
    plain = make_plan(resolved(image_spec(tmp_path / "t")))
    assert {t.settings.classes for t in plain.trials} == {None}  # random splits derive them: not in the key


@pytest.mark.parametrize("over,message", [
    ({"splits": ["natman"]}, "splits[0]: split 'natman' is the man-made/natural split of fashion-animals and "
                             "imagenet; for an image set give images.groups and use split 'groups'"),
    ({"splits": ["groups"]}, "splits[0]: split 'groups' needs images.groups (two lists of class names, A and B)"),
    ({"images": {"groups": {"A": ["ant"], "B": ["ant", "bee"]}}}, "groups: class 'ant' is in both A and B"),
    ({"images": {"groups": {"A": ["ant"], "B": ["wolf"]}}}, "groups: 'wolf' is not a class of images.src"),
    ({"model": {"arch": "small"}}, "model.arch small takes 1x28x28 images: set images.size 28 and images.channels 1"),
    ({"images": {"channels": 2}}, "images.channels"),
    ({"images": {"label_column": "y"}}, "images.label_column is for dataset parquet"),
])
def test_bad_image_set_specs_are_one_line_errors(tmp_path, over, message):
    raw = image_spec(write_tree(tmp_path / "t"), **over)
    with pytest.raises((SpecError, UsageError)) as err:
        resolved(raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_preparing_reports_and_skips_a_corrupt_image_and_halves_read_back(tmp_path):
    import torch

    from workers.data import clear_memo, load_half
    spec = resolved(image_spec(write_tree(tmp_path / "t", corrupt=("cat/bad.png",)), images={"shard_size": 20}))
    said: list[str] = []
    manifest = prepare_image_set(as_sweep(spec), echo=said.append, inline=True)
    assert [s["file"] for s in manifest["skipped"]] == ["cat/bad.png"]
    # cat lists 11 images, 2 of them held out; its corrupt one, wherever it fell, is not counted
    bad_in = manifest["skipped"][0]["split"]
    assert manifest["counts"] == ({"train": 48, "test": 12} if bad_in == "train" else {"train": 49, "test": 11})
    assert said[-1].startswith("1 image(s) skipped") and "cat/bad.png: UnidentifiedImageError" in said[-1]
    store = open_store(spec.store)
    clear_memo()
    half = load_half("folder", "random:0", "B", store, spec.data_version)
    assert half.train_x.shape[1:] == (3, 16, 16) and half.train_x.dtype == torch.uint8
    assert sorted(set(half.train_y.tolist())) == [0, 1, 2] and sorted(set(half.test_y.tolist())) == [0, 1, 2]
    assert len(half.classes) == 3 and half.num_train + len(half.test_y) == 30  # 10 readable images a class
    objects = {p: store.read_bytes(p) for p in store.list("datasets")}
    assert prepare_image_set(as_sweep(spec), inline=True) == manifest  # done before: nothing rewritten
    assert {p: store.read_bytes(p) for p in store.list("datasets")} == objects


def test_a_class_whose_images_are_all_unreadable_is_refused_with_one_line(tmp_path):
    root = write_tree(tmp_path / "t", classes=("a", "b"), per_class=4)
    for f in (root / "b").iterdir():
        f.write_bytes(b"junk")
    spec = resolved(image_spec(root))
    with pytest.raises(PrepareError) as err:
        prepare_image_set(as_sweep(spec), inline=True)
    assert str(err.value).startswith(f"images.src {root}: class 'b' has no readable train image: 3 could not be "
                                     "decoded (first: b/")
    assert "\n" not in str(err.value)


def test_a_three_channel_half_shifts_and_mirrors_every_channel_alike():
    import torch

    from workers.data import tensor_half
    x = np.stack([np.stack([np.full((6, 6), 10 * c + i, np.uint8) for c in range(3)], -1) for i in range(4)])
    x[:, 2, 3, :] = 200  # one bright pixel per image, in every channel
    half = tensor_half(x, np.arange(4), x, np.arange(4), [0, 1, 2, 3])
    images, labels = half.train_batch(torch.arange(4), torch.Generator().manual_seed(0), augment=True)
    assert images.shape == (4, 3, 6, 6) and labels.tolist() == [0, 1, 2, 3]
    bright = images * 255 + half.mean
    where = [(bright[i, c] > 150).nonzero().tolist() for i in range(4) for c in range(3)]
    assert all(w == where[3 * (k // 3)] for k, w in enumerate(where))  # the same place in each channel


# --- whole sweeps on the tests' Ray head ---------------------------------------------------------


def test_tampered_shard_metas_and_manifests_read_back_are_one_line_errors(tmp_path):
    spec = resolved(image_spec(write_tree(tmp_path / "t")))
    store = open_store(spec.store)
    prefix = f"datasets/folder/{spec.data_version}"
    store.commit_bytes(f"{prefix}/train/shard-00000.json", b'{"split": "train", "class_counts": "lots"}')
    with pytest.raises(PrepareError) as err:
        prepare_image_set(as_sweep(spec), inline=True)
    assert "a shard's meta is not what prepare writes" in str(err.value) and "\n" not in str(err.value)
    other = resolved(image_spec(tmp_path / "t", store=tmp_path / "store2"))
    store2 = open_store(other.store)
    tampered = json.dumps({"hash": other.data_version, "num_classes": 1}).encode()
    store2.commit_bytes(f"{prefix}/manifest.json", tampered)
    with pytest.raises(PrepareError, match=r"manifest.json: num_classes: 1 is not an integer in \[2, 100000\]$"):
        prepare_image_set(as_sweep(other), inline=True)


def test_unusable_tree_entries_are_skipped_with_a_reason_never_followed_or_dropped_silently(tmp_path):
    import os

    from workers.image_set.scan import scan_folder
    root = write_tree(tmp_path / "t")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not yours")
    (root / "cat" / "leak.png").symlink_to(outside)
    (root / "dog-link").symlink_to(tmp_path, target_is_directory=True)  # a class folder leading out
    os.mkfifo(root / "cat" / "pipe.png")
    (root / os.fsdecode(b"cat") / os.fsdecode(b"bad-\xff.png")).write_bytes(b"x")
    source = scan_folder(root, 0.2)
    reasons = sorted((s["file"], s["reason"]) for s in source.skipped)
    assert reasons == [("cat/bad-\\xff.png", "its name is not UTF-8"),
                       ("cat/leak.png", "a symbolic link that leads outside images.src"),
                       ("cat/pipe.png", "not a regular file"),
                       ("dog-link/", "a symbolic link that leads outside images.src")]
    assert len(source.classes) == len(CLASSES)
    assert not any("leak" in ref or "pipe" in ref or "bad-" in ref for _, ref, _, _ in source.items)


def test_an_image_claiming_a_huge_canvas_is_refused_before_it_is_decoded(tmp_path):
    import io

    from PIL import Image

    from workers.shards import MAX_IMAGE_PIXELS
    from workers.shards import decode_image as decode
    buffer = io.BytesIO()
    Image.new("L", (10_000, 7_000)).save(buffer, "PNG")  # 70 MP of zeros: a few tens of KB compressed
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(ValueError, match=f"^10000x7000 pixels, more than the {MAX_IMAGE_PIXELS} allowed"):
        decode(buffer.getvalue(), 16, 1)


def test_an_oversized_parquet_cell_is_skipped_with_its_size_never_read_into_python(tmp_path, monkeypatch):
    from workers.image_set import prepare as preparing
    from workers.image_set.prepare import shard_jobs
    from workers.image_set.scan import scan_parquet
    source = scan_parquet(write_parquet(tmp_path / "set.parquet"), 0.2)
    job = shard_jobs(source, 16, 3)[0]
    sizes = sorted(len(v) for _, _, v in job.reader.read(job) if isinstance(v, bytes))
    monkeypatch.setattr(preparing, "MAX_IMAGE_BYTES", sizes[len(sizes) // 2])
    read = job.reader.read(job)
    refused = [v for _, _, v in read if isinstance(v, ValueError)]
    assert refused and all(str(v).endswith(f"more than the {sizes[len(sizes) // 2]} allowed for one image")
                           for v in refused)
