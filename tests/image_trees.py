"""Small labelled image sets the tests write themselves: a folder tree of PNG and JPEG files, or a
Parquet file of (image bytes, label). Each class draws its images around its own colour and stripe
orientation, so a network can tell the classes apart within a few steps."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

CLASSES = ("ant", "bee", "cat", "dog", "eel", "fox")


def class_image(label: int, index: int, size: int = 20) -> np.ndarray:
    """A size x size RGB uint8 image of class `label`: its colour, its stripes, seeded noise."""
    rng = np.random.default_rng(1000 * label + index)
    yy, xx = np.mgrid[0:size, 0:size]
    angle = np.pi * label / len(CLASSES)
    stripes = (np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 0.9) > 0).astype(np.float64)
    colour = np.array([(label * 97) % 256, (label * 53 + 80) % 256, (label * 31 + 160) % 256], np.float64)
    image = stripes[..., None] * colour + rng.normal(0, 25, (size, size, 3)) + 40
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def write_tree(root: Path, classes=CLASSES, per_class: int = 10, corrupt: tuple[str, ...] = (),
               layout: str = "flat") -> Path:
    """root/<class>/<i>.png|.jpg (half of each); `corrupt` names files ('cat/bad.png') written as junk
    bytes. layout 'split': root/train/<class>/... and root/test/<class>/... (a quarter to test)."""
    for label, name in enumerate(classes):
        for i in range(per_class):
            fmt, ext = ("PNG", "png") if i % 2 == 0 else ("JPEG", "jpg")
            part = "" if layout == "flat" else ("test/" if i % 4 == 3 else "train/")
            path = root / f"{part}{name}" / f"{i:03d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(class_image(label, i), fmt))
    for rel in corrupt:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


def write_parquet(path: Path, classes=CLASSES, per_class: int = 10, hf_struct: bool = False) -> Path:
    """A Parquet file with columns image (PNG bytes, or Hugging Face's {bytes, path} struct) and label."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    images, labels = [], []
    for i in range(per_class):  # interleaved: the file is not ordered by class
        for label, name in enumerate(classes):
            data = encode(class_image(label, i), "PNG")
            images.append({"bytes": data, "path": f"{name}/{i}.png"} if hf_struct else data)
            labels.append(name)
    pq.write_table(pa.table({"image": images, "label": labels}), path, row_group_size=16)
    return path
