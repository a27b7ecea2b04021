"""The spec's `images` section: a user's labelled image set (`dataset: folder` or `dataset: parquet`).

```yaml
dataset: folder
images:
  src: /data/flowers       # <class>/<image>, or train/<class>/... + test/<class>/...; Parquet: a file
  size: 32                 # every image is warped to size x size
  channels: 3              # 3 = RGB, 1 = grayscale
  groups:                  # split 'groups': the study's own two-group split (like man-made/natural)
    A: [daisy, dandelion]
    B: [rose, tulip]
```

`classes` is filled in when a command loads the spec (from the source's listing), and the content hash
of the listing becomes the spec's `data_version`: the stored spec names exactly the data its trials
read, so `resume`, `status` and `report` never need the source again.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sweepcore.vocabulary import GROUPS_SPLIT, IMAGE_SETS

PARQUET_FIELDS = ("image_column", "label_column", "split_column")
# the CaffeNet shapes take one input size; resnet and factories take any
FIXED_INPUTS = {"small": (28, 1), "caffenet": (227, 3)}


class ImagesSpec(BaseModel):
    """Where a user's image set comes from and how its images are prepared."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    src: str = Field(min_length=1, description="folder: one sub-folder per class (or train/ and test/ with one per "
                     "class); parquet: a file of image bytes and labels; readable at this path on every Ray node")
    size: int = Field(32, ge=8, le=512, description="images are warped to size x size pixels")
    channels: Literal[1, 3] = Field(3, description="3 = RGB, 1 = grayscale")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of each class held out for testing when the "
                                 "source has no test part (by a hash of each image's name)")
    groups: Optional[dict[Literal["A", "B"], tuple[str, ...]]] = Field(
        None, description="split 'groups': the two groups of class names, A and B (like man-made/natural)")
    image_column: str = Field("image", description="parquet: the column of image bytes")
    label_column: str = Field("label", description="parquet: the column of class names or numbers")
    split_column: Optional[str] = Field(None, description="parquet: a column of 'train'/'test' (default: hold out "
                                        "test_fraction)")
    shard_size: int = Field(2000, ge=1, le=1_000_000, description="images per prepared shard")
    classes: Optional[tuple[str, ...]] = Field(
        None, description="the class names in index order: filled in from the source when the spec is loaded")

    @model_validator(mode="after")
    def _groups(self):
        if self.groups is None:
            return self
        if set(self.groups) != {"A", "B"} or not all(self.groups.values()):
            raise ValueError("groups: give two non-empty lists of class names, A and B")
        both = set(self.groups["A"]) & set(self.groups["B"])
        if both:
            raise ValueError(f"groups: class {sorted(both)[0]!r} is in both A and B")
        for half, names in self.groups.items():
            if len(set(names)) != len(names):
                raise ValueError(f"groups.{half}: a class is listed twice")
        if self.classes is not None:
            unknown = [n for names in self.groups.values() for n in names if n not in self.classes]
            if unknown:
                shown = ", ".join(self.classes[:12]) + (" ..." if len(self.classes) > 12 else "")
                raise ValueError(f"groups: {unknown[0]!r} is not a class of images.src (classes: {shown})")
        return self

    def group_classes(self, half: str) -> tuple[int, ...]:
        """The original class indices of group `half` (A or B), ascending."""
        if self.groups is None or self.classes is None:
            raise ValueError("images.groups and images.classes are needed for split 'groups'")
        index = {name: i for i, name in enumerate(self.classes)}
        return tuple(sorted(index[name] for name in self.groups[half]))  # type: ignore[index]


def check_image_set(dataset: str, images: Optional[ImagesSpec], splits: Any, arch: str, factory: Any) -> None:
    """ValueError (one line, naming the field) for an image-set spec that cannot run."""
    if dataset not in IMAGE_SETS:
        if images is not None:
            raise ValueError(f"images is for datasets {' and '.join(IMAGE_SETS)} (dataset is {dataset})")
        used = [i for i, e in enumerate(splits) if e.split == GROUPS_SPLIT]
        if used:
            raise ValueError(f"splits[{used[0]}]: split 'groups' is for image sets (dataset folder or parquet "
                             "with images.groups)")
        return
    if images is None:
        raise ValueError(f"dataset {dataset} needs an images section (images.src: the "
                         f"{'folder, one sub-folder per class' if dataset == 'folder' else 'Parquet file'})")
    if dataset == "folder":
        # by value, not by what was written: a spec read back from the store has every field written
        given = [name for name in PARQUET_FIELDS if getattr(images, name) != ImagesSpec.model_fields[name].default]
        if given:
            raise ValueError(f"images.{given[0]} is for dataset parquet")
    for i, entry in enumerate(splits):
        if entry.split == "natman":
            raise ValueError(f"splits[{i}]: split 'natman' is the man-made/natural split of fashion-animals and "
                             "imagenet; for an image set give images.groups and use split 'groups'")
        if entry.split == GROUPS_SPLIT and images.groups is None:
            raise ValueError(f"splits[{i}]: split 'groups' needs images.groups (two lists of class names, A and B)")
    if factory is None and arch in FIXED_INPUTS:
        size, channels = FIXED_INPUTS[arch]
        if (images.size, images.channels) != (size, channels):
            raise ValueError(f"model.arch {arch} takes {channels}x{size}x{size} images: set images.size {size} and "
                             f"images.channels {channels}, or use arch resnet or a model.factory")
