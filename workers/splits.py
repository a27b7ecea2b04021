"""Class splits: which original classes make up each half. Pure numpy, the paper's exact rules.

A half's labels are its classes re-indexed 0..k-1 in ascending original index, so the same split
gives the same labels in every process, for every dataset loader.
"""
from __future__ import annotations

import numpy as np

from sweepcore.vocabulary import ALL_HALF


def _natural_imagenet() -> list[int]:
    """The paper's natural classes: 0..397, 936..958, 970, 972..998 (449 of 1000)."""
    return list(range(0, 398)) + list(range(936, 959)) + [970] + list(range(972, 999))


def class_halves(split: str, num_classes: int) -> dict[str, list[int]]:
    """Original class indices of each half: {'A': [...], 'B': [...]} sorted, or {'all': [...]}.

    `random:<s>` is the paper's rule exactly: a RandomState seeded with the LIST [s] (an int seed
    gives a different split), A = sorted(choice(arange(C), C // 2, replace=False)), B = the rest.
    `natman`: A = man-made, B = natural (ImageNet: the paper's ranges; fashion-animals: clothing
    0..9 vs animals 10..19).
    """
    everything = list(range(num_classes))
    if split == ALL_HALF:
        return {ALL_HALF: everything}
    if split.startswith("random:"):
        seed_text = split.split(":", 1)[1]
        if not seed_text.isdigit():
            raise ValueError(f"split {split!r}: the seed after 'random:' must be a non-negative integer")
        rng = np.random.RandomState([int(seed_text)])
        a = sorted(int(i) for i in rng.choice(np.arange(num_classes), num_classes // 2, replace=False))
    elif split == "natman":
        if num_classes == 1000:
            natural = set(_natural_imagenet())
            a = [i for i in everything if i not in natural]
        elif num_classes == 20:
            a = list(range(10))
        else:
            raise ValueError(f"split 'natman' is defined for 1000 (ImageNet) or 20 (fashion-animals) "
                             f"classes, not {num_classes}")
    else:
        raise ValueError(f"unknown split {split!r}: expected 'random:<seed>', 'natman' or 'all'")
    chosen = set(a)
    return {"A": a, "B": [i for i in everything if i not in chosen]}


def half_classes(split: str, num_classes: int, half: str) -> list[int]:
    """The sorted original classes of one half; a half's labels are these re-indexed 0..k-1."""
    halves = class_halves(split, num_classes)
    if half not in halves:
        raise ValueError(f"half {half!r} does not exist in split {split!r} (halves: {sorted(halves)})")
    return halves[half]


def select_classes(x: np.ndarray, y: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The images of `classes` with labels re-indexed 0..k-1 in ascending original index."""
    lookup = np.full(int(max(int(y.max()), max(classes))) + 1, -1, dtype=np.int64)
    lookup[np.asarray(sorted(classes))] = np.arange(len(classes))
    keep = lookup[y] >= 0
    return x[keep], lookup[y[keep]]
