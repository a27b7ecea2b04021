"""Where a command's spec comes from: the YAML file plus --set overrides, or the copy the store keeps.

`run` and `submit` record the effective spec in the store (sweeps/<name>/spec.yaml); `resume`,
`status`, `report` and `logs` read it back, so they need only the sweep's name and the store.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import yaml

from orchestrator.errors import UsageError
from orchestrator.spec import SpecError, SweepSpec, load_spec, parse_spec, read_spec_mapping
from sweepcore.layout import SPEC_FILE, spec_path
from sweepcore.records import read_data_version
from sweepcore.store import Store, absolute_uri, open_store

DEFAULT_STORE = "./store"


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    """The spec file with --set overrides, its store made absolute and --store/--endpoint applied."""
    spec = load_spec(args.spec, tuple(args.set))
    spec = spec.model_copy(update={"store": absolute_uri(getattr(args, "store", None) or spec.store)})
    if getattr(args, "endpoint", None):
        spec = spec.model_copy(update={"endpoint": args.endpoint})
    return with_factory_cut_points(with_image_set(spec, args.spec), args.spec)


def with_image_set(spec: SweepSpec, where: object = "spec") -> SweepSpec:
    """An image-set spec with its classes and data version filled in from a listing of images.src (no
    decoding). A source that cannot be a study (missing, one class, a class without images, a
    Parquet file without its columns) is a UsageError (one line); so is a source whose listing no
    longer matches the data version a spec names."""
    if spec.images is None:
        return spec
    from orchestrator.prepare import scan_image_set  # noqa: PLC0415 (pyarrow listing only for image sets)
    source, digest = scan_image_set(spec)
    if spec.data_version and spec.data_version != digest:
        raise UsageError(f"{where}: images.src {spec.images.src} has changed since data_version {spec.data_version} "
                         f"was prepared (its listing hashes to {digest} now): remove data_version to study it as "
                         "it is now")
    raw = spec.model_dump(mode="json")
    # the resolved path: a Ray Job's driver and the workers do not share the submitting shell's directory
    raw["images"]["src"], raw["images"]["classes"], raw["data_version"] = source.root, list(source.classes), digest
    try:
        return parse_spec(raw, source=str(where))
    except SpecError as exc:
        raise UsageError(str(exc)) from None


PROBE_TIMEOUT = 300  # seconds: importing a user's model library (timm, say) can take a while


def with_factory_cut_points(spec: SweepSpec, where: object = "spec") -> SweepSpec:
    """The spec with its factory model's cut points filled in, asked from the factory itself in a
    subprocess (`python -m workers.factory probe`: the driver never imports torch). A factory that
    cannot be imported, fails, or declares cut points that are not its submodules is a UsageError
    (one line); so are `layers` beyond its cut points."""
    model = spec.model
    if model.factory is None or model.cut_points:
        return spec
    info = spec.dataset_info()
    command = [sys.executable, "-m", "workers.factory", "probe", model.factory,
               "--num-outputs", str(model.num_outputs or info.num_classes), "--in-channels", str(info.channels)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{where}: model.factory {model.factory} did not build a network within "
                         f"{PROBE_TIMEOUT} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise UsageError(f"{where}: model.factory {model.factory}: "
                         f"{lines[-1] if lines else f'the probe exited {proc.returncode}'}")
    try:
        cut_points = json.loads(proc.stdout)["cut_points"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{where}: model.factory {model.factory}: the probe printed no cut points") from None
    raw = spec.model_dump(mode="json")
    raw["model"]["cut_points"] = cut_points
    try:
        return parse_spec(raw, source=str(where))
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def stored_spec(sweep: str, store_uri: str | None, endpoint: str | None) -> SweepSpec:
    """The spec sweep `sweep` was last run with, read back from the store (default ./store)."""
    store_uri = absolute_uri(store_uri or DEFAULT_STORE)
    store = open_store(store_uri, endpoint)
    path = spec_path(sweep)
    try:
        raw = read_spec_mapping(store.read_bytes(path), store.uri(path))  # bounded: a shared store is input
    except FileNotFoundError:
        raise UsageError(f"no sweep named {sweep!r} in store {store_uri} "
                         f"(it has: {', '.join(recorded_sweeps(store)) or 'none'})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{store.uri(path)}: the stored spec is not a mapping of fields")
    # where signed requests go is decided here, never by a file a shared store hands back
    raw["store"], raw["endpoint"] = store_uri, endpoint
    return parse_spec(raw, source=store.uri(path))


def with_data_version(spec: SweepSpec, store: Store) -> SweepSpec:
    """The spec with the data version its trials will read: as given, the dataset's pinned version, or
    (ImageNet) the version prepared into the store now, read from datasets/<name>/LATEST. A run
    records the spec with it, so status, report and resume keep reading that version."""
    if spec.data_version or spec.dataset_info().pinned_version:
        return spec
    try:
        return spec.model_copy(update={"data_version": read_data_version(store, spec.dataset)})
    except FileNotFoundError:
        raise UsageError(f"{spec.dataset} is not prepared in store {store.uri()}: run `transfer-sweep data "
                         f"prepare {spec.dataset} --src DIR --store {store.uri()}` first") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def resume_command(spec: SweepSpec) -> str:
    """The exact command that finishes this sweep (what `run`, `status` and the watchdog tell users)."""
    endpoint = f" --endpoint {spec.endpoint}" if spec.endpoint else ""
    return f"transfer-sweep resume {spec.name} --store {spec.store}{endpoint}"


def recorded_sweeps(store: Store) -> list[str]:
    """Names of the sweeps whose spec the store holds."""
    return sorted({p.split("/")[1] for p in store.list("sweeps") if p.endswith(f"/{SPEC_FILE}")})


def record_spec(spec: SweepSpec, store: Store) -> None:
    """Write the effective spec where `stored_spec` finds it (without the endpoint: see stored_spec)."""
    raw = {**spec.model_dump(mode="json"), "endpoint": None}
    store.write_bytes(spec_path(spec.name), yaml.safe_dump(raw, sort_keys=False).encode())
