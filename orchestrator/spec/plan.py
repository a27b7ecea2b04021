"""Pure expansion of a spec into trials: resolved settings, content-hash keys, base dependencies.

No I/O and no randomness: the same spec always gives the same trials with the same keys, and a trial
shared by two sweeps (a base, say) has the same key in both, which is what makes reuse and resume work.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

from orchestrator.spec.schema import RESNET_WIDTHS, SweepSpec
from sweepcore.cut_points import resnet_cut_points
from sweepcore.settings import PROTOCOL_VERSION, ModelSettings, RuntimeSettings, TrainSettings, TrialSettings, trial_key
from sweepcore.vocabulary import ALL_HALF, FROZEN_TREATMENTS, GROUPS_SPLIT, TREATMENTS, display_name, other_half

__all__ = ["PROTOCOL_VERSION", "Plan", "PlannedTrial", "counts", "make_plan", "trial_key"]

MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "small": {"widths": [16, 32, 48, 48, 32], "fc_width": 256, "init": "kaiming"},
    "caffenet": {"widths": [96, 256, 384, 384, 256], "fc_width": 4096, "init": "caffe"},
}


@dataclass(frozen=True)
class PlannedTrial:
    """One training of the plan: its key, display name, coordinates and complete settings."""

    key: str
    name: str
    treatment: str
    split: str
    target_half: str
    source_half: Optional[str]
    n: int
    seed: int
    base_key: Optional[str]  # the trial whose committed result this one waits for (its base)
    settings: TrialSettings

@dataclass(frozen=True)
class Plan:
    """All trials of a sweep, bases before their dependents, each key once."""

    sweep: str
    trials: tuple[PlannedTrial, ...]

    def __len__(self) -> int:
        return len(self.trials)

    def by_key(self) -> dict[str, PlannedTrial]:
        return {t.key: t for t in self.trials}

    @property
    def bases(self) -> tuple[PlannedTrial, ...]:
        return tuple(t for t in self.trials if t.treatment == "base")


def resolve_model(spec: SweepSpec) -> ModelSettings:
    """The model settings with every default filled in from the arch and the dataset."""
    m = spec.model
    info = spec.dataset_info()
    outputs = m.num_outputs or info.num_classes
    if m.factory is not None:
        if not m.cut_points or not m.factory_sha256:
            raise ValueError(f"model.factory {m.factory}: its cut points and source are not resolved (the CLI asks "
                             "the factory when it loads the spec)")
        return ModelSettings(arch="factory", num_outputs=outputs, widths=(), fc_width=0, dropout=m.dropout,
                             init="default", cut_points=tuple(m.cut_points), in_channels=info.channels,
                             factory=m.factory, frozen_bn=m.frozen_bn, factory_sha256=m.factory_sha256)
    if m.arch == "resnet":
        widths = tuple(m.widths or RESNET_WIDTHS)
        blocks = tuple(m.blocks or (2,) * len(widths))
        return ModelSettings(arch="resnet", num_outputs=outputs, widths=widths, fc_width=0, dropout=m.dropout,
                             init="default", cut_points=resnet_cut_points(blocks), blocks=blocks,
                             in_channels=info.channels, frozen_bn=m.frozen_bn)
    defaults = MODEL_DEFAULTS[m.arch]
    return ModelSettings(
        arch=m.arch,
        num_outputs=outputs,
        widths=tuple(m.widths) if m.widths else tuple(defaults["widths"]),
        fc_width=m.fc_width or defaults["fc_width"],
        dropout=m.dropout,
        init=m.init or defaults["init"],
    )


def resolve_runtime(spec: SweepSpec) -> RuntimeSettings:
    """How a trial runs (device, threads): not part of its key, since it does not change the result."""
    r = spec.resources
    return RuntimeSettings(
        device="cuda" if r.gpus > 0 else "cpu",
        threads=max(1, int(r.cpus)),
        channels_last=r.channels_last,
        data_parallel=int(r.gpus) if r.gpus >= 2 else 1,
    )


UNRESOLVED = "unresolved"  # the data version of a dataset prepared into the store, before a run reads it


def data_version(spec: SweepSpec) -> str:
    """The content hash of the data the sweep's trials read: the spec's `data_version` (a run records
    the one it resolved), else the dataset's pinned version, else UNRESOLVED (ImageNet before a run)."""
    return spec.data_version or spec.dataset_info().pinned_version or UNRESOLVED


def make_plan(spec: SweepSpec) -> Plan:
    """Expand a spec into its trials: bases once each, then every treatment x n x direction x seed."""
    model, train, runtime = resolve_model(spec), TrainSettings(**spec.train.model_dump()), resolve_runtime(spec)
    data = data_version(spec)
    trials: dict[str, PlannedTrial] = {}

    def add(treatment: str, split: str, target: str, source: Optional[str], n: int, seed: int,
            base_key: Optional[str]) -> PlannedTrial:
        # split 'groups' names its classes in the spec: the trial is handed its half's class indices
        classes = spec.images.group_classes(target) if split == GROUPS_SPLIT and spec.images else None
        settings = TrialSettings(
            protocol=PROTOCOL_VERSION, sweep=spec.name,
            name=display_name(treatment, split, target, source, n, seed),
            treatment=treatment, dataset=spec.dataset, data=data, split=split,
            target_half=target, source_half=source, n=n,
            frozen=treatment in FROZEN_TREATMENTS, seed=seed, base_key=base_key,
            model=model, train=train, runtime=runtime, key="", classes=classes).with_key()
        trial = PlannedTrial(settings.key, settings.name, treatment, split, target, source, n, seed,
                             base_key, settings)
        trials.setdefault(trial.key, trial)
        return trials[trial.key]

    def base(split: str, half: str, seed: int) -> PlannedTrial:
        return add("base", split, half, None, 0, seed, None)

    for entry in spec.splits:
        treatments = entry.treatments or spec.treatments
        layers = spec.study_layers(entry.layers)
        directions = entry.directions or spec.directions
        targets = [ALL_HALF] if entry.split == ALL_HALF else [d.split("->")[1] for d in directions]
        for seed in spec.seeds:
            for target in targets:
                other = other_half(target)
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


def _order(t: PlannedTrial) -> tuple:
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
