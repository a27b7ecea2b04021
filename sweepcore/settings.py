"""TrialSettings: everything one training needs, resolved at plan time, typed and frozen.

The plan produces these; workers read them (and nothing else: no defaults on the worker side); tests
build them through the plan. On the wire (Tune's config, a result row's settings_json, the debug
entry's JSON file) they travel as the plain dict of `to_dict()`, and `from_dict` refuses a dict that
lacks a field, has an unknown one, holds a value of the wrong type or whose key does not match its
content, so a drift between what the plan makes and what workers read fails loudly.

The key is the first 16 hex digits of the sha256 of the canonical JSON of every field except the
ones that do not change the result (`UNHASHED`): the same settings always get the same key, in any
sweep, which is what makes reuse and resume work.

A trial's random draws (network build, layer init, data order, dropout) come from `rng_root`: a
versioned hash of what the network *is* (data content, split, halves, n, treatment, model, solver,
seed), never of bookkeeping (`NOT_DRAWN_FROM`: the protocol number, sweep, name, runtime, the base's
key). A bookkeeping-only change, such as a protocol bump that changes no arithmetic, keeps every
draw; a semantic change changes key and draws together.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional, Union

# Bump when the meaning of settings changes (training code semantics): old results stop matching.
# 2: the prepared data's content hash (`data`) is part of the settings, so of every key.
# 3: draws come from `rng_root` (what the network is), not from the key; settings record it.
PROTOCOL_VERSION = 3
# rng_root is derived from the other fields, so hashing it would add nothing to the key.
UNHASHED = ("key", "sweep", "name", "runtime", "rng_root")
# Bump when the derivation of draws from rng_root changes (then every rng_root changes).
RNG_VERSION = 1
# The first protocol whose settings carry rng_root (older rows: None, "does not reproduce from its key").
RNG_ROOT_FROM = 3
# Bookkeeping: the base's key changes with every protocol bump; its content is fixed by this
# trial's own split, source half, seed, model and solver, which are drawn from.
NOT_DRAWN_FROM = (*UNHASHED, "protocol", "base_key")


@dataclass(frozen=True)
class ModelSettings:
    """The network: CaffeNet-shaped (`small` for 28x28 inputs, `caffenet` for 227x227), a CIFAR-style
    `resnet`, or whatever a user's `factory` builds. The fields after `init` came with models beyond
    CaffeNet: None for `small`/`caffenet`, and then left out of the key (so those keys never changed)."""

    arch: str  # "small", "caffenet", "resnet" or "factory"
    num_outputs: int
    widths: tuple[int, ...]  # small/caffenet: conv1..conv5 channels; resnet: each stage's channels
    fc_width: int  # small/caffenet: fc6 and fc7 (resnet, factory: 0)
    dropout: float
    init: str  # "kaiming" or "caffe" (resnet, factory: "default", each module's own reset_parameters)
    cut_points: Optional[tuple[str, ...]] = None  # the named submodules n counts, the head last
    blocks: Optional[tuple[int, ...]] = None  # resnet: residual blocks per stage
    in_channels: Optional[int] = None  # resnet, factory: channels of the input images
    factory: Optional[str] = None  # "package.module:function" returning (module, cut points)
    frozen_bn: Optional[str] = None  # batch norm in frozen blocks: "frozen" (eval mode) or "adapt"
    factory_sha256: Optional[str] = None  # factory: sha256 of its module file (the code is part of the key)


@dataclass(frozen=True)
class TrainSettings:
    """The solver (the spec's `train` section, every field given)."""

    epochs: Optional[float]
    iterations: Optional[int]
    batch_size: int
    lr: float
    lr_schedule: str
    lr_step_every: Optional[int]
    lr_gamma: float
    warmup_fraction: float
    momentum: float
    weight_decay: float
    bias_lr_mult: float
    bias_decay: bool
    eval_every: int
    checkpoint_every: int
    top_k: int
    augment: bool
    bf16: bool


@dataclass(frozen=True)
class RuntimeSettings:
    """How a trial runs. Not part of its key: it does not change the result."""

    device: str  # "cpu" or "cuda"
    threads: int  # torch intra-op threads
    channels_last: bool
    data_parallel: int  # GPUs one trial spreads over (1: none)


@dataclass(frozen=True)
class TrialSettings:
    """One training: what it is (treatment, halves, cut point, seed), what it copies, how it trains."""

    protocol: int
    sweep: str
    name: str  # readable, e.g. 'AnB+ n=5 random:0 s0'
    treatment: str
    dataset: str
    data: str  # content hash of the prepared data the trial reads (workers refuse any other version)
    split: str
    target_half: str
    source_half: Optional[str]
    n: int  # layers 1..n copied (0 for a base)
    frozen: bool  # whether layers 1..n are frozen
    seed: int
    base_key: Optional[str]  # the base trial whose weights are copied
    model: ModelSettings
    train: TrainSettings
    runtime: RuntimeSettings
    key: str
    # The target half's original class indices, when the split cannot derive them from the class count
    # (split 'groups': the spec's own class lists). None otherwise, and then left out of the key.
    classes: Optional[tuple[int, ...]] = None
    # 16 hex digits: the root of every random draw (see the module doc); None only in rows planned
    # before protocol 3, which do not reproduce from their key.
    rng_root: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (nested sections as dicts, tuples as lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrialSettings":
        """Rebuild settings from `to_dict()` output; ValueError names any missing, unknown or mistyped
        field, and a key or rng_root that does not match the content."""
        settings = _build(cls, raw, "settings")
        wire = settings.to_dict()
        if settings.protocol >= RNG_ROOT_FROM or settings.rng_root is not None:
            root = rng_root(wire)
            if settings.rng_root != root:
                raise ValueError(f"settings.rng_root {settings.rng_root!r} does not match its content "
                                 f"(expected {root})")
        expected = trial_key(wire)
        if settings.key != expected:
            raise ValueError(f"settings.key {settings.key!r} does not match its content (expected {expected})")
        return settings

    def with_key(self) -> "TrialSettings":
        """The same settings with `rng_root` and `key` set from their content."""
        rooted = dataclasses.replace(self, rng_root=rng_root(self.to_dict()))
        return dataclasses.replace(rooted, key=trial_key(rooted.to_dict()))


# Fields added after keys were published: hashed only when set (not None), so old keys stay.
LATER_MODEL_FIELDS = ("cut_points", "blocks", "in_channels", "factory", "frozen_bn", "factory_sha256")
LATER_TRIAL_FIELDS = ("classes", "rng_root")


def trial_key(settings: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the hashed settings, first 16 hex digits."""
    return _digest(_hashed(settings, UNHASHED))


def rng_root(settings: dict[str, Any]) -> str:
    """The root of a trial's random draws: sha256 of the canonical JSON of the RNG version and the
    settings that change the computation (all but `NOT_DRAWN_FROM`), first 16 hex digits."""
    return _digest({"rng_version": RNG_VERSION, "settings": _hashed(settings, NOT_DRAWN_FROM)})


def derive_seed(root: str, purpose: str) -> int:
    """A 64-bit torch seed for one purpose ("build", "init", "train") from a trial's rng_root."""
    return int(hashlib.sha256(f"{root}:{purpose}".encode()).hexdigest()[:16], 16)


def _hashed(settings: dict[str, Any], left_out: tuple[str, ...]) -> dict[str, Any]:
    hashed = {k: v for k, v in settings.items()
              if k not in left_out and not (k in LATER_TRIAL_FIELDS and v is None)}
    if isinstance(hashed.get("model"), dict):
        hashed["model"] = {k: v for k, v in hashed["model"].items()
                           if not (k in LATER_MODEL_FIELDS and v is None)}
    return hashed


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    later = {ModelSettings: LATER_MODEL_FIELDS, TrialSettings: LATER_TRIAL_FIELDS}.get(cls, ())
    raw = {**{n: None for n in later}, **raw}  # settings written before these fields existed: None
    missing, unknown = [n for n in names if n not in raw], sorted(set(raw) - set(names))
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown}")
    return cls(**{n: _value(hints[n], raw[n], f"{where}.{n}") for n in names})


def _value(hint: Any, value: Any, where: str) -> Any:
    """`value` checked against the field's type (nested settings rebuilt, lists made tuples)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}[hint](value)
    if not ok:
        raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
