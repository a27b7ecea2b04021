"""Pure expansion of a spec into trials: resolved settings, content-hash keys, base dependencies.

No I/O and no randomness: the same spec always gives the same trials with the same keys, and a trial
shared by two sweeps (a base, say) has the same key in both, which is what makes reuse and resume work.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from orchestrator.spec import DATASETS, TREATMENTS, SweepSpec

# Bump when the meaning of settings changes (training code semantics): old results stop matching.
PROTOCOL_VERSION = 1
UNHASHED = ("key", "sweep", "name", "runtime")
FROZEN_TREATMENTS = {"selffer", "transfer", "random"}
# Paper notation: a treatment's name as <source>n<target>, '+' when all layers train.
LABEL = {"selffer": "{t}n{t}", "selffer+": "{t}n{t}+", "transfer": "{s}n{t}", "transfer+": "{s}n{t}+"}
MODEL_DEFAULTS = {
    "small": {"widths": [16, 32, 48, 48, 32], "fc_width": 256, "init": "kaiming"},
    "caffenet": {"widths": [96, 256, 384, 384, 256], "fc_width": 4096, "init": "caffe"},
}


@dataclass(frozen=True)
class Trial:
    """One training of the plan: its key, display name, coordinates and complete settings."""

    key: str
    name: str
    treatment: str
    split: str
    target_half: str
    source_half: Optional[str]
    n: int
    seed: int
    base_key: Optional[str]
    settings: dict = field(repr=False, compare=False, hash=False)

    @property
    def depends_on(self) -> Optional[str]:
        """The key of the trial whose committed result this one waits for (its base), or None."""
        return self.base_key


@dataclass(frozen=True)
class Plan:
    """All trials of a sweep, bases before their dependents, each key once."""

    sweep: str
    trials: tuple[Trial, ...]

    def __len__(self) -> int:
        return len(self.trials)

    def by_key(self) -> dict[str, Trial]:
        return {t.key: t for t in self.trials}

    @property
    def bases(self) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if t.treatment == "base")


def trial_key(settings: dict) -> str:
    """sha256 of the canonical JSON of the hashed settings, first 16 hex digits."""
    hashed = {k: v for k, v in settings.items() if k not in UNHASHED}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def halves(split: str) -> tuple[str, ...]:
    """Half names of a split: 'all' has one half; random and natman splits have A and B."""
    return ("all",) if split == "all" else ("A", "B")


def display_name(treatment: str, split: str, target: str, source: Optional[str], n: int, seed: int) -> str:
    """Readable trial name for the Ray dashboard and logs, e.g. 'AnB+ n=5 random:0 s0'."""
    if treatment == "base":
        head = f"base{target}" if target != "all" else "base"
        return f"{head} {split} s{seed}"
    if treatment == "random":
        head = "random" if target == "all" else f"random{target}"
        return f"{head} n={n} {split} s{seed}"
    head = treatment if target == "all" else LABEL[treatment].format(t=target, s=source)
    return f"{head} n={n} {split} s{seed}"


def resolve_model(spec: SweepSpec) -> dict[str, Any]:
    """The model settings with every default filled in from the arch and the dataset."""
    m = spec.model
    defaults = MODEL_DEFAULTS[m.arch]
    return {
        "arch": m.arch,
        "num_outputs": m.num_outputs or DATASETS[spec.dataset]["num_classes"],
        "widths": list(m.widths) if m.widths else list(defaults["widths"]),
        "fc_width": m.fc_width or defaults["fc_width"],
        "dropout": m.dropout,
        "init": m.init or defaults["init"],
    }


def resolve_runtime(spec: SweepSpec) -> dict[str, Any]:
    """How a trial runs (device, threads): not part of its key, since it does not change the result."""
    r = spec.resources
    return {
        "device": "cuda" if r.gpus > 0 else "cpu",
        "threads": max(1, int(r.cpus)),
        "channels_last": r.channels_last,
        "data_parallel": int(r.gpus) if r.gpus >= 2 else 1,
    }


def make_plan(spec: SweepSpec) -> Plan:
    """Expand a spec into its trials: bases once each, then every treatment x n x direction x seed."""
    model, train, runtime = resolve_model(spec), spec.train.model_dump(), resolve_runtime(spec)
    trials: dict[str, Trial] = {}

    def add(treatment, split, target, source, n, seed, base_key) -> Trial:
        settings = {
            "protocol": PROTOCOL_VERSION, "sweep": spec.name,
            "name": display_name(treatment, split, target, source, n, seed),
            "treatment": treatment, "dataset": spec.dataset, "split": split,
            "target_half": target, "source_half": source, "n": n,
            "frozen": treatment in FROZEN_TREATMENTS, "seed": seed, "base_key": base_key,
            "model": model, "train": train, "runtime": runtime,
        }
        settings["key"] = trial_key(settings)
        trial = Trial(settings["key"], settings["name"], treatment, split, target, source, n, seed,
                      base_key, settings)
        trials.setdefault(trial.key, trial)
        return trials[trial.key]

    def base(split, half, seed) -> Trial:
        return add("base", split, half, None, 0, seed, None)

    for entry in spec.splits:
        treatments = entry.treatments or spec.treatments
        layers = entry.layers or spec.layers
        directions = entry.directions or spec.directions
        targets = ["all"] if entry.split == "all" else [d.split("->")[1] for d in directions]
        for seed in spec.seeds:
            for target in targets:
                other = "all" if target == "all" else ("A" if target == "B" else "B")
                if "base" in treatments:
                    base(entry.split, target, seed)
                for treatment in (t for t in treatments if t != "base"):
                    for n in layers:
                        if treatment == "random":
                            add(treatment, entry.split, target, None, n, seed, None)
                            continue
                        source = target if treatment.startswith("selffer") else other
                        src_base = base(entry.split, source, seed)
                        add(treatment, entry.split, target, source, n, seed, src_base.key)
    ordered = sorted(trials.values(), key=lambda t: (t.treatment != "base", _order(t)))
    return Plan(spec.name, tuple(ordered))


def _order(t: Trial):
    return (t.seed, t.split, t.target_half, t.treatment, t.n)


def counts(plan: Plan) -> dict[str, Any]:
    """Counts for `transfer-sweep plan`: by treatment, by split, by n, distinct bases, total."""
    by_treatment = Counter(t.treatment for t in plan.trials)
    by_split = Counter(t.split for t in plan.trials)
    by_n = Counter(t.n for t in plan.trials if t.treatment != "base")
    return {
        "sweep": plan.sweep,
        "total": len(plan),
        "bases": by_treatment.get("base", 0),
        "by_treatment": {k: by_treatment[k] for k in sorted(by_treatment, key=_treatment_rank)},
        "by_split": dict(sorted(by_split.items())),
        "by_n": {str(k): v for k, v in sorted(by_n.items())},
    }


def _treatment_rank(name: str) -> int:
    return TREATMENTS.index(name)
