"""Image-set specs for the tests of every tier: a spec dict around a folder or Parquet source, the
spec resolved (listed), opened as a command would, and `plan` run as a process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from orchestrator.sources import with_image_set
from orchestrator.spec import Sweep, parse_spec
from sweepcore.store import open_store

ROOT = Path(__file__).resolve().parents[1]
RESNET = {"arch": "resnet", "widths": [4, 8], "blocks": [1, 1], "dropout": 0.0}
TRAIN = {"iterations": 8, "batch_size": 16, "lr": 0.05, "eval_every": 4, "checkpoint_every": 4, "top_k": 2,
         "warmup_fraction": 0.1}


def image_spec(src: Path, dataset: str = "folder", store: Path | None = None, **over) -> dict:
    images = {"src": str(src), "size": 16, "channels": 3, **over.pop("images", {})}
    raw = {"name": f"{dataset}-study", "dataset": dataset, "images": images, "splits": ["random:0"],
           "treatments": ["base", "selffer", "transfer"], "layers": [1, 2], "directions": ["A->B"],
           "model": dict(RESNET), "train": dict(TRAIN), "resources": {"cpus": 1},
           "store": str(store or src.parent / "store")}
    raw.update(over)
    return raw


def resolved(raw: dict):
    return with_image_set(parse_spec(raw), "spec.yaml")


def plan_cli(tmp_path: Path, raw: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


# --- listing ---------------------------------------------------------------------------------------
def as_sweep(spec) -> Sweep:
    """The spec with its store opened, as a command hands it down."""
    return Sweep(spec, open_store(spec.store))


