"""List a labelled image set without decoding it: classes, images and the held-out test part, as the
`Source` of the shard pipeline (workers/shards.py; prepare.py is the image set's reader over it).

No decoding (pyarrow for Parquet; no Pillow, no torch): the driver runs it when it loads a spec, so a folder
with one class or a Parquet file without its label column is a one-line SourceError before anything
starts (`transfer-sweep` exits 2).

A folder is either `<class>/<image>` (a test part is held out of each class) or `train/<class>/...`
with `test/<class>/...` (or `val/`); an image is a file named with one of IMAGE_EXTENSIONS. A Parquet
file has an image column (bytes, or a struct with a `bytes` field, as Hugging Face datasets write
images), a label column (strings or integers) and optionally a split column whose values are `train`
and `test`.

The held-out rule: within each class, images ordered by the sha256 of their name (a folder) or row
number (Parquet), the first round(test_fraction x count) (at least 1) are the test part. It depends
only on names, so adding an image to a class moves no other image between train and test.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

from workers.image_set import SPLITS
from workers.shards import IMAGE_EXTENSIONS, Source, SourceError, is_image_name

MAX_CLASSES = 100_000
TEST_FOLDERS = ("test", "val")


def _unusable(entry: os.DirEntry, root: Path, folder: bool) -> Optional[str]:
    """Why an entry of the image tree cannot be read as part of it (None: it can): a name that is not
    UTF-8, a symbolic link that leads out of the tree, or (an image) not a regular file."""
    try:
        entry.name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8"
    if entry.is_symlink() and not _within(Path(os.path.realpath(entry.path)), root):
        return "a symbolic link that leads outside images.src"
    if not folder and not entry.is_file():
        return "not a regular file"
    return None


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _shown(entry: os.DirEntry, root: Path) -> str:
    """An entry's path under the tree, printable whatever bytes its name has."""
    return os.fsencode(os.path.relpath(entry.path, root)).decode("utf-8", "backslashreplace")


def _images(folder: Path, root: Path, skipped: list[dict], split: str) -> list[os.DirEntry]:
    """The usable image files of one class folder, by name; the unusable ones go to `skipped` with why."""
    found = []
    for e in os.scandir(folder):
        if not is_image_name(e.name):
            continue
        reason = _unusable(e, root, folder=False)
        if reason is None:
            found.append(e)
        else:
            skipped.append({"split": split, "file": _shown(e, root), "reason": reason})
    return sorted(found, key=lambda e: e.name)


def _subfolders(folder: Path, root: Path, skipped: list[dict]) -> list[str]:
    names = []
    for e in os.scandir(folder):
        if e.name.startswith(".") or not e.is_dir():
            continue
        reason = _unusable(e, root, folder=True)
        if reason is None:
            names.append(e.name)
        else:
            skipped.append({"split": "train", "file": _shown(e, root) + "/", "reason": reason})
    return sorted(names)


def _held_out(names: list[str], fraction: float) -> set[str]:
    """The test part of one class: the first round(fraction x n) names (at least 1) by sha256."""
    ordered = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return set(ordered[:max(1, round(fraction * len(ordered)))])


def _check_classes(classes: list[str], where: str, what: str) -> None:
    if len(classes) < 2:
        found = f"{len(classes)} ({', '.join(classes)})" if classes else "none"
        raise SourceError(f"{where}: a study needs at least 2 classes, found {found}; {what}")
    if len(classes) > MAX_CLASSES:
        raise SourceError(f"{where}: {len(classes)} classes, more than the {MAX_CLASSES} allowed")


def scan_folder(src: str | Path, test_fraction: float) -> Source:
    """List an image folder (see the module doc); SourceError (one line) when it cannot be a study."""
    if not Path(src).is_dir():
        raise SourceError(f"images.src {src}: no such directory")
    root = Path(os.path.realpath(src))
    skipped: list[dict] = []
    top = _subfolders(root, root, [])  # what it skips is listed again where it is a class, or unused
    split_layout = "train" in top and any(t in top for t in TEST_FOLDERS)
    layout = "one folder per class: train/<class>/<image> and test/<class>/<image>" if split_layout else \
        "one folder per class: <class>/<image>"
    train_root = root / "train" if split_layout else root
    classes = _subfolders(train_root, root, skipped)
    _check_classes(classes, f"images.src {train_root}", f"expected {layout}")
    index = {name: i for i, name in enumerate(classes)}
    items: list[tuple[str, str, int, int]] = []
    for name in classes:
        files = _images(train_root / name, root, skipped, "train")
        if not files:
            raise SourceError(f"images.src {train_root / name}: class folder {name!r} has no image files "
                              f"({', '.join(IMAGE_EXTENSIONS)})")
        rel = f"train/{name}" if split_layout else name
        test = set() if split_layout else _held_out([e.name for e in files], test_fraction)
        if not split_layout and len(files) < 2:
            raise SourceError(f"images.src {train_root / name}: class {name!r} has 1 image; each class needs at "
                              "least 2 (one to train on, one to test)")
        items += [("test" if e.name in test else "train", f"{rel}/{e.name}", index[name], e.stat().st_size)
                  for e in files]
    if split_layout:
        test_dir = next(root / t for t in TEST_FOLDERS if t in top)
        for name in _subfolders(test_dir, root, skipped):
            for e in _images(test_dir / name, root, skipped, "test"):
                ref = f"{test_dir.name}/{name}/{e.name}"
                if name in index:
                    items.append(("test", ref, index[name], e.stat().st_size))
                else:
                    skipped.append({"split": "test", "file": ref, "reason": f"class {name} has no train/ folder"})
        missing = sorted(set(classes) - {classes[label] for s, _, label, _ in items if s == "test"})
        if missing:
            raise SourceError(f"images.src {test_dir}: no test images of class {missing[0]!r} "
                              f"({len(missing)} classes without any)")
    order = {s: i for i, s in enumerate(SPLITS)}
    items.sort(key=lambda it: (order[it[0]], it[2], it[1]))
    return Source("folder", str(root.resolve()), SPLITS, tuple(classes), tuple(items), tuple(skipped))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan_parquet(src: str | Path, test_fraction: float, image_column: str = "image", label_column: str = "label",
                 split_column: Optional[str] = None) -> Source:
    """List a Parquet image set (see the module doc); SourceError (one line) when it cannot be a study."""
    import pyarrow as pa  # noqa: PLC0415 (pyarrow only for Parquet image sets)
    import pyarrow.parquet as pq  # noqa: PLC0415

    path = Path(src)
    if not path.is_file():
        raise SourceError(f"images.src {src}: no such file")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"images.src {src}: not a Parquet file ({' '.join(str(exc).split())[:160]})") from None
    schema = pf.schema_arrow
    for field_name, column in (("image_column", image_column), ("label_column", label_column),
                               ("split_column", split_column)):
        if column is not None and column not in schema.names:
            raise SourceError(f"images.{field_name}: {src} has no column {column!r} (columns: "
                              f"{', '.join(schema.names[:20])})")
    kind = schema.field(image_column).type
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or
            (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0)):
        raise SourceError(f"images.image_column: column {image_column!r} of {src} holds {kind}, expected image "
                          "bytes (binary, or a struct with a 'bytes' field)")
    labels_type = schema.field(label_column).type
    if not (pa.types.is_integer(labels_type) or pa.types.is_string(labels_type) or
            pa.types.is_large_string(labels_type)):
        raise SourceError(f"images.label_column: column {label_column!r} of {src} holds {labels_type}, expected "
                          "class names (strings) or class numbers (integers)")
    columns = [label_column] + ([split_column] if split_column else [])
    table = pf.read(columns=columns)
    labels = table.column(label_column).to_pylist()
    splits = table.column(split_column).to_pylist() if split_column else [None] * len(labels)
    names = sorted({v for v in labels if v is not None})
    classes = [str(v) for v in names]
    _check_classes(classes, f"images.src {src}", f"column {label_column!r} holds the class of each image")
    index = {v: i for i, v in enumerate(names)}
    skipped: list[dict] = []
    by_class: dict[int, list[tuple[str, str]]] = {}
    for row, (label, split) in enumerate(zip(labels, splits)):
        if label is None:
            skipped.append({"split": "train", "file": f"row {row}", "reason": f"no {label_column}"})
        elif split_column and split not in SPLITS:
            skipped.append({"split": "train", "file": f"row {row}", "reason": f"{split_column} is {split!r}, "
                            "not train or test"})
        else:
            by_class.setdefault(index[label], []).append((str(row), str(split)))
    items = []
    for label, rows in sorted(by_class.items()):
        if split_column:
            items += [(split, ref, label, 0) for ref, split in rows]
            continue
        if len(rows) < 2:
            raise SourceError(f"images.src {src}: class {classes[label]!r} has 1 image; each class needs at least "
                              "2 (one to train on, one to test)")
        test = _held_out([f"{classes[label]}/{ref}" for ref, _ in rows], test_fraction)
        items += [("test" if f"{classes[label]}/{ref}" in test else "train", ref, label, 0) for ref, _ in rows]
    for split in SPLITS:
        have = {label for s, _, label, _ in items if s == split}
        if len(have) < len(classes):
            missing = next(c for i, c in enumerate(classes) if i not in have)
            raise SourceError(f"images.src {src}: no {split} images of class {missing!r}")
    items.sort(key=lambda it: int(it[1]))  # file order: a shard reads contiguous rows
    return Source("parquet", str(path.resolve()), SPLITS, tuple(classes), tuple(items), tuple(skipped), image_column,
                  _file_sha256(path))
