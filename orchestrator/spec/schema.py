"""The sweep spec: a validated, immutable description of one transfer study (read from YAML by
loading.py).

Every model is frozen and forbids unknown fields, so a typo in a spec is an error, not a silent default.
No message echoes more than a short excerpt of the input (`excerpt`, `clip`), and every message is one
line (`SpecError`).
"""
from __future__ import annotations

import re
import reprlib
from typing import Annotated, Literal, Optional
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.spec.images import ImagesSpec, check_image_set
from sweepcore.cut_points import CAFFENET_CUT_POINTS, resnet_cut_points
from sweepcore.errors import OneLineError
from sweepcore.store import StoreError, check_store_uri
from sweepcore.vocabulary import (
    ALL_HALF,
    CROSS_HALF_TREATMENTS,
    DATASET_NAMES,
    DATASETS,
    DIRECTIONS,
    IMAGE_SETS,
    LAYERS,
    SPLIT_HELP,
    TREATMENTS,
    DatasetInfo,
    Direction,
    Treatment,
    image_set_info,
)

SPLIT_PATTERN = re.compile(r"^(random:\d+|natman|groups|all)$")
MAX_LAYER = 97  # the most blocks a resnet spec allows (6 stages x 16) + its stem

EXCERPT_CHARS = 80  # the most of any input value a message shows


DEFAULT_STORE = "./store"  # the store every command uses when neither a spec nor --store names one

class SpecError(OneLineError):
    """A one-line, user-facing description of what is wrong with a spec."""

    def __init__(self, message: str) -> None:
        super().__init__(oneline(message))


# Every integer of a spec ends in an int64 Arrow column or a torch seed, and a float must mean a number:
# a value beyond either would validate, train, then never commit (or train on nothing).
INT64_BOUND = 2**63
Int64 = Annotated[int, Field(ge=-INT64_BOUND, lt=INT64_BOUND)]
Seed = Annotated[int, Field(ge=0, lt=INT64_BOUND)]


def _check_layers(layers):
    """Cut points 1..7 (or below a factory's count, checked once it is known), each once, sorted."""
    bad = [n for n in layers if not 1 <= n <= MAX_LAYER]
    if bad:
        raise ValueError(f"layer {bad[0]} is not allowed (allowed: 1..7 for the CaffeNet shapes, 1..cut points - 1 "
                         "for others)")
    if len(set(layers)) != len(layers):
        raise ValueError("layers must not repeat")
    return tuple(sorted(layers))


# the layers a sweep or one of its splits cuts at: one rule for both
Layers = Annotated[tuple[Int64, ...], AfterValidator(_check_layers)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModelSpec(_Frozen):
    """The network. `small` is CaffeNet-shaped for 28x28 inputs; `caffenet` is the paper's network;
    `resnet` a CIFAR-style ResNet (stem, residual blocks, head: each a cut point); `factory` any
    torch module a user's function builds, with the cut points it declares."""

    arch: Literal["small", "caffenet", "resnet"] = Field("small", description="network family")
    factory: Optional[str] = Field(
        None, description="'package.module:function' returning (module, cut point names, head last); replaces arch")
    widths: Optional[tuple[Int64, ...]] = Field(
        None, description="small/caffenet: conv1..conv5 channels (default small 16/32/48/48/32, caffenet "
                          "96/256/384/384/256); resnet: channels per stage (default 16/32/64)")
    blocks: Optional[tuple[Int64, ...]] = Field(None, description="resnet: residual blocks per stage (default 2/2/2)")
    cut_points: Optional[tuple[str, ...]] = Field(
        None, description="factory: the cut points, filled in from the factory when the spec is loaded")
    factory_sha256: Optional[str] = Field(
        None, pattern=r"^[0-9a-f]{64}$",
        description="factory: sha256 of its module file, filled in from the factory when the spec is loaded "
                    "(part of every key: an edited factory trains under new keys)")
    fc_width: Optional[Int64] = Field(None, gt=0, description="fc6/fc7 width (default small 256, caffenet 4096)")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout after fc6 and fc7; resnet, factory: before the "
                                                         "head where the network has one (resnet specs usually set 0)")
    init: Optional[Literal["kaiming", "caffe"]] = Field(
        None, description="init rule (default small kaiming: Caffe's init leaves the small net at chance)")
    num_outputs: Optional[Int64] = Field(
        None, gt=0, description="fc8 width (default: the dataset's class count, as the paper used 1000 for halves)")
    frozen_bn: Literal["frozen", "adapt"] = Field(
        "frozen", description="batch norm inside frozen layers: frozen (running statistics kept, eval mode) "
                              "or adapt (statistics follow the new data)")

    @model_validator(mode="after")
    def _shape(self):
        # by value, not by what was written: a spec read back from the store has every field written
        given = {name for name in ("widths", "blocks", "fc_width", "init") if getattr(self, name) is not None}
        if self.factory is not None:
            if self.arch != "small":
                raise ValueError("give model.arch or model.factory, not both (a factory builds its own network)")
            if not FACTORY_PATTERN.match(self.factory):
                raise ValueError(f"factory {excerpt(self.factory)} is not 'package.module:function'")
            extra = sorted(given)
            if extra:
                raise ValueError(f"{extra[0]} is for the built-in networks: a factory builds its own")
            return self
        if self.cut_points is not None or self.factory_sha256 is not None:
            raise ValueError("cut_points and factory_sha256 come from a factory (model.factory): built-in networks "
                             "have their own")
        if self.arch == "resnet":
            widths, blocks = self.widths or RESNET_WIDTHS, self.blocks or (2,) * len(self.widths or RESNET_WIDTHS)
            if len(widths) != len(blocks) or not 1 <= len(widths) <= 6:
                raise ValueError(f"resnet widths and blocks give one number per stage, 1 to 6 stages "
                                 f"(got {len(widths)} widths, {len(blocks)} blocks)")
            if any(w <= 0 for w in widths) or any(not 1 <= b <= 16 for b in blocks):
                raise ValueError("resnet widths must be positive and blocks 1..16 per stage")
            extra = sorted(given & {"fc_width", "init"})
            if extra:
                raise ValueError(f"{extra[0]} is for the CaffeNet-shaped networks (resnet has one fc head and "
                                 "PyTorch's default init)")
            return self
        if self.blocks is not None:
            raise ValueError("blocks is for arch resnet")
        # conv2, conv4, conv5 use two groups, as in CaffeNet: channel counts must split in two.
        if self.widths is not None and (len(self.widths) != 5 or any(w <= 0 or w % 2 for w in self.widths)):
            raise ValueError("widths: give 5 conv widths, each a positive even number (conv layers use 2 groups)")
        return self


RESNET_WIDTHS = (16, 32, 64)
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


class TrainSpec(_Frozen):
    """The solver, the same for every network of the sweep (as in the paper)."""

    epochs: Optional[float] = Field(None, gt=0, description="epochs of the target half (or give iterations)")
    iterations: Optional[Int64] = Field(None, gt=0, description="SGD iterations (or give epochs)")
    batch_size: Int64 = Field(128, gt=0, description="images per SGD step")
    lr: float = Field(0.05, gt=0, description="base learning rate")
    lr_schedule: Literal["cosine", "step"] = Field("cosine", description="cosine, or step (divide every lr_step_every)")
    lr_step_every: Optional[Int64] = Field(None, gt=0, description="iterations between lr steps (step schedule)")
    lr_gamma: float = Field(0.1, gt=0, le=1, description="lr multiplier at each step")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="linear warm-up, as a fraction of all iterations")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay on trained weights")
    bias_lr_mult: float = Field(1.0, gt=0, description="bias lr multiplier (paper: 2)")
    bias_decay: bool = Field(True, description="apply weight decay to biases (paper: false)")
    eval_every: Int64 = Field(25, gt=0, description="iterations between test evaluations")
    checkpoint_every: Int64 = Field(50, gt=0, description="iterations between checkpoints in the store")
    top_k: Int64 = Field(10, gt=0, description="paper metric: mean of the top_k best evaluations")
    augment: bool = Field(True, description="random crop + mirror during training")
    bf16: bool = Field(False, description="bf16 autocast (GPU only)")

    @model_validator(mode="after")
    def _length(self):
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("give exactly one of epochs or iterations")
        if self.lr_schedule == "step" and self.lr_step_every is None:
            raise ValueError("lr_schedule 'step' needs lr_step_every")
        return self


class ResourcesSpec(_Frozen):
    """What one trial reserves on the cluster."""

    cpus: float = Field(1, gt=0, description="CPUs per trial (also torch threads, at least 1)")
    gpus: float = Field(0, ge=0, description="GPUs per trial: a fraction packs trials on a GPU, >1 is data-parallel")
    channels_last: bool = Field(True, description="channels-last memory format (faster on CPU and GPU)")
    scale_timeout: float = Field(900, gt=0, description="seconds to wait for the autoscaler to add a node "
                                 "that fits a trial, when no live node does")

    @field_validator("gpus")
    @classmethod
    def _whole_when_many(cls, gpus):
        if gpus > 1 and gpus != int(gpus):
            raise ValueError("more than one GPU must be a whole number")
        return gpus


MLFLOW_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "databricks")


class MlflowSpec(_Frozen):
    """Optional: every trial logged to MLflow (its settings as params, each evaluation as metrics)
    through Tune's own MLflowLoggerCallback, run by the driver."""

    tracking_uri: str = Field(description="MLflow tracking URI (http(s)://host[:port], sqlite:///path, ...); "
                              "credentials come from the driver's MLFLOW_TRACKING_USERNAME/PASSWORD or "
                              "MLFLOW_TRACKING_TOKEN")
    experiment: str = Field("transfer-sweep", min_length=1, max_length=200, description="MLflow experiment name")

    @field_validator("tracking_uri")
    @classmethod
    def _uri(cls, uri):
        parts = urlsplit(uri)
        if parts.scheme not in MLFLOW_SCHEMES:
            raise ValueError(f"tracking_uri must start with one of {', '.join(s + ':' for s in MLFLOW_SCHEMES)} "
                             f"(got {excerpt(uri)})")
        if parts.username or parts.password:
            raise ValueError("tracking_uri must not carry credentials (the spec is stored and shown): set "
                             "MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN on the driver")
        return uri


class SplitSpec(_Frozen):
    """One class split, with optional per-split overrides of the sweep's treatments/layers/directions."""

    split: str = Field(description=f"class split: {SPLIT_HELP}")
    treatments: Optional[tuple[Treatment, ...]] = Field(None, description="overrides the sweep's treatments")
    layers: Optional[Layers] = Field(None, description="overrides the sweep's layers")
    directions: Optional[tuple[Direction, ...]] = Field(None, description="overrides the sweep's directions")

    @field_validator("split")
    @classmethod
    def _split_name(cls, split):
        if not SPLIT_PATTERN.match(split):
            raise ValueError(f"unknown split {excerpt(split)} (allowed: {SPLIT_HELP})")
        return split

    @model_validator(mode="after")
    def _one_half(self):
        one_half = CROSS_HALF_TREATMENTS & set(self.treatments or ())
        if self.split == ALL_HALF and one_half:
            raise ValueError(f"split 'all' has one half, so {sorted(one_half)} cannot run on it "
                             "(allowed: base, selffer, selffer+, random)")
        return self


CLAIM_IDS = tuple(range(1, 9))  # the paper's eight claims (orchestrator/analysis/claims.py)


class ReplicateSpec(_Frozen):
    """Optional: add units of replication while a named claim is undecided (orchestrator/spec/replicate.py
    says which units a round adds)."""

    until: Literal["decided"] = Field(description="decided: stop once every named claim is decided "
                                      "(holds, fails, excluded, confounded or not identified)")
    claims: tuple[Int64, ...] = Field(description="the claims (1..8) whose verdicts decide when to stop")
    max_units: Int64 = Field(gt=0, description="the most units of replication (split, seed) the sweep may "
                             "reach, the first round's included")

    @field_validator("claims")
    @classmethod
    def _claims(cls, claims):
        if not claims:
            raise ValueError("until: decided needs the claims it waits for: give one or more of "
                             f"{', '.join(map(str, CLAIM_IDS))}")
        bad = [c for c in claims if c not in CLAIM_IDS]
        if bad:
            raise ValueError(f"unknown claim {bad[0]} (allowed: {', '.join(map(str, CLAIM_IDS))})")
        if len(set(claims)) != len(claims):
            raise ValueError("claims must not repeat")
        return tuple(sorted(claims))


class SweepSpec(_Frozen):
    """A whole study: which splits, treatments, layers and replicates, trained how, stored where."""

    name: str = Field(description="sweep name: letters, digits, '-', '_' (used in store paths and job ids)")
    dataset: str = Field(description="dataset: " + ", ".join(DATASET_NAMES) + " (folder, parquet: a user's image "
                         "set, described by the images section)")
    images: Optional[ImagesSpec] = Field(None, description="dataset folder or parquet: the image set")
    splits: tuple[SplitSpec, ...] = Field(min_length=1, description="class splits to run")
    treatments: tuple[Treatment, ...] = Field(min_length=1, description="treatments: " + ", ".join(TREATMENTS))
    layers: Layers = Field(LAYERS, min_length=1, description="layers n to cut at: subset of 1..7 for the "
                                    "CaffeNet shapes, of 1..(cut points - 1) for others (default: all of them)")
    directions: tuple[Direction, ...] = Field(DIRECTIONS, min_length=1, description="A->B (target B), B->A")
    seeds: tuple[Seed, ...] = Field((0,), min_length=1, description="replicate seeds")
    model: ModelSpec = Field(default_factory=ModelSpec, description="network")
    train: TrainSpec = Field(description="solver")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="per-trial resources")
    store: str = Field(DEFAULT_STORE, description="store root: a local folder or s3://bucket/prefix")
    endpoint: Optional[str] = Field(None, description="S3 endpoint URL (default: AWS_ENDPOINT_URL)")
    data_version: Optional[str] = Field(
        None, pattern=r"^[0-9a-f]{16,64}$",
        description="content hash of the prepared data (default: fashion-animals' pinned version; for ImageNet "
                    "the version prepared in the store when the sweep first runs, which the run records)")
    retries: Int64 = Field(2, ge=0, description="times a crashed or killed trial is retried")
    max_concurrent: Optional[Int64] = Field(None, gt=0, description="cap on trials running at once")
    mlflow: Optional[MlflowSpec] = Field(None, description="log every trial to MLflow (off by default)")
    replicate: Optional[ReplicateSpec] = Field(
        None, description="add units (a new random split, else a seed) while a named claim is undecided")

    @field_validator("name")
    @classmethod
    def _name(cls, name):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
            raise ValueError("name must be 1-64 letters, digits, '-' or '_', starting with a letter or digit "
                             f"(got {excerpt(name)})")
        return name

    @field_validator("store")
    @classmethod
    def _store(cls, store):
        # The URI policy open_store applies, checked here too: a spec is stored and shown (plan, the job's
        # metadata), so a credential in it must be refused before anything prints or stores it.
        try:
            check_store_uri(store)
        except StoreError as e:
            raise ValueError(str(e)) from None
        return store

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, endpoint):
        if endpoint is not None and "@" in urlsplit(endpoint).netloc:
            raise ValueError("endpoint must not contain credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                             "instead")
        return endpoint

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, dataset):
        if dataset not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {excerpt(dataset)} (allowed: {', '.join(DATASET_NAMES)})")
        return dataset

    @model_validator(mode="after")
    def _image_set(self):
        check_image_set(self.dataset, self.images, self.splits, self.model.arch, self.model.factory)
        return self

    @model_validator(mode="after")
    def _replicate_fits(self):
        if self.replicate is None:
            return self
        if not any(e.split.startswith("random:") for e in self.splits):
            raise ValueError("replicate: adds random splits modelled on the spec's first random split: give "
                             "a split random:K")
        first = first_round_units(self)
        if self.replicate.max_units < first:
            raise ValueError(f"replicate.max_units {self.replicate.max_units} is below the first round's "
                             f"{first} units ({len({e.split for e in self.splits})} splits x {len(self.seeds)} "
                             f"seeds): allowed {first} or more")
        return self

    def dataset_info(self) -> DatasetInfo:
        """What the plan needs of the dataset: the built-in one's, or the image set's (its classes were
        filled in from the source when the spec was loaded)."""
        if self.dataset not in IMAGE_SETS:
            return DATASETS[self.dataset]
        if self.images is None or self.images.classes is None:
            raise ValueError(f"dataset {self.dataset}: images.classes are not resolved (the CLI lists images.src "
                             "when it loads the spec)")
        return image_set_info(self.dataset, len(self.images.classes), self.images.channels)

    @field_validator("splits", mode="before")
    @classmethod
    def _split_strings(cls, splits):
        # `- random:0` is the common case; a mapping adds per-split overrides.
        if isinstance(splits, (list, tuple)):
            return [{"split": s} if isinstance(s, str) else s for s in splits]
        return splits

    @model_validator(mode="after")
    def _layers_fit_the_model(self):
        cuts = cut_count(self.model)
        if cuts is None:  # a factory before its cut points are known: checked once they are
            return self
        named = [("layers", self.layers)] if self.layers != LAYERS else []
        named += [(f"splits[{i}].layers", e.layers) for i, e in enumerate(self.splits) if e.layers]
        for where, layers in named:
            bad = [n for n in layers if n >= cuts]
            if bad:
                raise ValueError(f"{where}: layer {bad[0]} is not allowed (allowed: 1..{cuts - 1}): this model "
                                 f"has {cuts} cut points and the last, the head, is always new")
        return self

    def study_layers(self, entry_layers: Optional[tuple[int, ...]] = None) -> tuple[int, ...]:
        """The n a split entry runs: its own layers, else the spec's, where the default (1..7) means
        every cut point of the model but the head."""
        if entry_layers:
            return entry_layers
        cuts = cut_count(self.model)
        if self.layers == LAYERS and cuts is not None:
            return tuple(range(1, cuts))
        return self.layers

    @model_validator(mode="after")
    def _transfer_needs_halves(self):
        for i, entry in enumerate(self.splits):
            if entry.split == ALL_HALF and entry.treatments is None:
                bad = CROSS_HALF_TREATMENTS & set(self.treatments)
                if bad:
                    raise ValueError(f"splits[{i}]: split 'all' has one half, so {sorted(bad)} cannot run "
                                     "on it: give it its own treatments (allowed: base, selffer, selffer+, random)")
        return self


def first_round_units(spec: SweepSpec) -> int:
    """Units of replication (split, seed) of the spec as written: every split runs every seed."""
    return len({e.split for e in spec.splits}) * len(spec.seeds)


def cut_count(model: ModelSpec) -> Optional[int]:
    """How many cut points the spec's network has (the head included); None for a factory whose cut
    points are not known yet."""
    if model.factory is not None:
        return len(model.cut_points) if model.cut_points else None
    if model.arch == "resnet":
        return len(resnet_cut_points(model.blocks or (2,) * len(model.widths or RESNET_WIDTHS)))
    return len(CAFFENET_CUT_POINTS)


# --- excerpts: what a message may show of the input ------------------------------------------------
_REPR = reprlib.Repr()
_REPR.maxstring = 2 * EXCERPT_CHARS
_REPR.maxother = 2 * EXCERPT_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdict = 8
_REPR.maxlevel = 3


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`value`'s repr for a message: one line, at most `limit` characters, cut with '...'."""
    return clip(_REPR.repr(value), limit)


def clip(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` on one line (control characters escaped), at most `limit` characters, cut with '...'."""
    text = oneline(text[:4 * limit])
    return text if len(text) <= limit else text[:limit - 3] + "..."


def oneline(text: str) -> str:
    """`text` with newlines and other unprintable characters escaped as in a repr."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
