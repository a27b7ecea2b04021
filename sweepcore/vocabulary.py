"""The study's words, each defined once: treatments and their labels, directions, cut points, datasets.

The spec validates against these, the plan expands them, workers check what they are handed, and the
report labels its figures with them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, get_args

# A network's treatment, in the order tables and figures list them.
Treatment = Literal["base", "selffer", "selffer+", "transfer", "transfer+", "random"]
TREATMENTS: tuple[Treatment, ...] = get_args(Treatment)
# Treatments whose copied (or random) layers 1..n are frozen; the '+' ones fine-tune every layer.
FROZEN_TREATMENTS = frozenset({"selffer", "transfer", "random"})
# Treatments that copy from a base network (random copies nothing; a base is trained from scratch).
COPYING_TREATMENTS = frozenset({"selffer", "selffer+", "transfer", "transfer+"})
# Treatments that copy from the other half, so they need a split with two halves.
CROSS_HALF_TREATMENTS = frozenset({"transfer", "transfer+"})
# Short labels in the paper's notation (B is the target half, A the other one).
TREATMENT_LABEL = {"base": "base", "selffer": "BnB", "selffer+": "BnB+", "transfer": "AnB",
                   "transfer+": "AnB+", "random": "random"}
# A trial's name in the paper's notation, <source>n<target>, filled with the actual halves.
NAMED_LABEL = {"selffer": "{t}n{t}", "selffer+": "{t}n{t}+", "transfer": "{s}n{t}", "transfer+": "{s}n{t}+"}

Direction = Literal["A->B", "B->A"]  # source half -> target half
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
LAYERS = tuple(range(1, 8))  # cut points n: layers 1..n are copied (conv1..fc7)
SPLIT_HELP = "random:<seed>, natman, groups, all"
GROUPS_SPLIT = "groups"  # an image set's own two-group split: the spec's images.groups, A and B
ALL_HALF = "all"  # the one half of split 'all'


def other_half(half: str) -> str:
    """The half a transfer copies from: A for B, B for A; 'all' has only itself."""
    return {"A": "B", "B": "A"}.get(half, half)


@dataclass(frozen=True)
class DatasetInfo:
    """What must be known about a dataset without touching its data."""

    name: str
    num_classes: int
    arch: str  # the network family its images fit
    train_per_class: int  # images per class (ImageNet: the average), for cost estimates
    test_per_class: int
    # What the prepared arrays are, when that is fixed in code (fashion-animals: built from pinned
    # sources, with each array's content hash); None when a version is whatever was prepared into the
    # store (ImageNet: the digest in datasets/imagenet/LATEST).
    recipe: Optional[dict[str, Any]] = field(default=None, compare=False)
    channels: int = 3  # of its images: what a resnet's or a factory's first layer takes

    @property
    def pinned_version(self) -> Optional[str]:
        """The content hash of the recipe (the version every trial of this dataset reads), or None."""
        return recipe_hash(self.name, self.recipe) if self.recipe is not None else None


def recipe_hash(name: str, recipe: dict[str, Any]) -> str:
    """sha256 (16 hex) of a dataset's name and recipe: same recipe, same prepared arrays, same name."""
    text = json.dumps({"name": name, **recipe}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FASHION_ANIMALS_RECIPE = {
    "version": 1, "sources": ["Fashion-MNIST idx (Zalando, 60k+10k)", "animal-mnist==0.4 version_3"],
    "rule": "fashion 0..9 then animals 10..19; 800 train + 200 test per class; fashion: first 800 "
            "of the train file + first 200 of t10k per class; animals: first 800 / last 200",
    # sha256 (16 hex) of each array's raw bytes: pins the content, so the hash names it
    "content": {"train_x": "8eb4b92939aad97f", "train_y": "b856f3a1733fdb20",
                "test_x": "d52912622aeb5e3d", "test_y": "8a7a104d8e9f0ffb"}}

DATASETS = {
    "fashion-animals": DatasetInfo("fashion-animals", 20, "small", 800, 200, FASHION_ANIMALS_RECIPE, channels=1),
    "imagenet": DatasetInfo("imagenet", 1000, "caffenet", 1281, 50),
}


# A user's labelled image set, prepared into the store from a folder tree (one folder per class) or a
# Parquet file of (image bytes, label). Its classes, channels and version come from the spec's
# `images` section, resolved when the spec is loaded, not from code.
IMAGE_SETS = ("folder", "parquet")
DATASET_NAMES = (*DATASETS, *IMAGE_SETS)


def dataset_info(name: str) -> DatasetInfo:
    """The built-in dataset called `name`, or a ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (allowed: {', '.join(DATASET_NAMES)})")
    return DATASETS[name]


def image_set_info(name: str, num_classes: int, channels: int, train_images: int = 0,
                   test_images: int = 0) -> DatasetInfo:
    """What the plan needs to know of an image set (its classes and channels, from the spec)."""
    per = max(1, num_classes)
    return DatasetInfo(name, num_classes, "resnet", train_images // per, test_images // per, channels=channels)


def display_name(treatment: str, split: str, target: str, source: Optional[str], n: int, seed: int) -> str:
    """Readable trial name for the Ray dashboard and logs, e.g. 'AnB+ n=5 random:0 s0'."""
    if treatment == "base":
        head = f"base{target}" if target != ALL_HALF else "base"
        return f"{head} {split} s{seed}"
    if treatment == "random":
        head = "random" if target == ALL_HALF else f"random{target}"
        return f"{head} n={n} {split} s{seed}"
    head = treatment if target == ALL_HALF else NAMED_LABEL[treatment].format(t=target, s=source)
    return f"{head} n={n} {split} s{seed}"


# The entry point group installed packages declare model factories in (`name = "pkg.module:function"`):
# the factories a stored spec that nobody vouches for may name (docs/models.md)
FACTORY_ENTRY_POINTS = "transfer_sweep.factories"
