"""Where a command's sweep comes from: its spec (the YAML file plus --set overrides, or the copy the
store keeps) and its store, opened once, here, into the `Sweep` the command passes down (what
crosses into a Ray process is the store's `StoreRef`, opened again on that side).

`run` and `submit` record the effective spec in the store (sweeps/<name>/spec.yaml) and its digest on
this machine; `resume`, `status`, `report` and `logs` read it back, so they need only the sweep's name
and the store, and verify it against that digest (trust.py): a shared store has other writers.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Optional

import yaml

from orchestrator.errors import UsageError
from orchestrator.spec.loading import MAX_SPEC_BYTES, load_spec, parse_spec, read_spec_mapping
from orchestrator.spec.schema import DEFAULT_STORE, SweepSpec
from orchestrator.spec.sweep import Sweep
from orchestrator.trust import record_path, recorded, remember, submitted_digest, trusted_fields_line, verify
from sweepcore.layout import SPEC_FILE, SWEEPS, spec_path
from sweepcore.records import read_data_version
from sweepcore.store import Store, StoreRef, absolute_uri, open_store
from sweepcore.terminal import for_terminal
from sweepcore.vocabulary import FACTORY_ENTRY_POINTS

SPEC_SUFFIXES = (".yaml", ".yml")


def command_store(store_uri: str | None, endpoint: str | None) -> StoreRef:
    """The store a command names: --store (default ./store) made absolute, and --endpoint."""
    return StoreRef(absolute_uri(store_uri or DEFAULT_STORE), endpoint)


def open_command_store(store_uri: str | None, endpoint: str | None, check: bool = True) -> Store:
    """The one store a command opens (command_store)."""
    return command_store(store_uri, endpoint).open(check)


def sweep_from_args(args: argparse.Namespace, check: bool = True) -> Sweep:
    """The spec file with its overrides (spec_from_args), its store opened and its data version fixed
    (`check=False`: read only, no probe written)."""
    spec = spec_from_args(args)
    store = open_store(spec.store, spec.endpoint, check)
    return Sweep(with_data_version(spec, store), store)


def stored_sweep(sweep: str, store_uri: str | None, endpoint: str | None,
                 check: StoredSpecCheck | None = None, store: Store | None = None) -> Sweep:
    """Sweep `sweep` as the store recorded it (stored_spec), in the store given, else in the one
    --store names (opened here, once)."""
    if store is None:
        store = open_command_store(store_uri, endpoint)
    return Sweep(stored_spec(sweep, store, command_store(store_uri, endpoint).uri, endpoint, check), store)


def is_spec_file(argument: str) -> bool:
    """Whether a command's argument names a spec file rather than a sweep (names have no '.' or '/')."""
    return argument.endswith(SPEC_SUFFIXES) or "/" in argument or "." in argument


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
    from orchestrator.execution.prepare import scan_image_set  # noqa: PLC0415 (pyarrow listing only for image sets)
    source, digest = scan_image_set(spec)
    if spec.data_version and spec.data_version != digest:
        raise UsageError(f"{where}: images.src {spec.images.src} has changed since data_version {spec.data_version} "
                         f"was prepared (its listing hashes to {digest} now): remove data_version to study it as "
                         "it is now")
    raw = spec.model_dump(mode="json")
    # the resolved path: a Ray Job's driver and the workers do not share the submitting shell's directory
    raw["images"]["src"], raw["images"]["classes"], raw["data_version"] = source.root, list(source.classes), digest
    return parse_spec(raw, source=str(where))


PROBE_TIMEOUT = 300  # seconds: importing a user's model library (timm, say) can take a while


def with_factory_cut_points(spec: SweepSpec, where: object = "spec") -> SweepSpec:
    """The spec with its factory model's cut points filled in, asked from the factory itself in a
    subprocess (`python -P -m workers.factory probe`: the driver never imports torch). A factory that
    cannot be imported, fails, or declares cut points that are not its submodules is a UsageError
    (one line); so are `layers` beyond its cut points."""
    model = spec.model
    if model.factory is None or (model.cut_points and model.factory_sha256):
        return spec
    info = spec.dataset_info()
    # -P: the working directory is not on the probe's path, as it is not for the workers' check
    command = [sys.executable, "-P", "-m", "workers.factory", "probe", model.factory,
               "--num-outputs", str(model.num_outputs or info.num_classes), "--in-channels", str(info.channels)]
    if "://" not in spec.store:
        command += ["--refuse-under", spec.store]
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
        found = json.loads(proc.stdout)
        cut_points, source = found["cut_points"], found["source_sha256"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{where}: model.factory {model.factory}: the probe printed no cut points") from None
    raw = spec.model_dump(mode="json")
    raw["model"]["cut_points"], raw["model"]["factory_sha256"] = cut_points, source
    return parse_spec(raw, source=str(where))


@dataclass(frozen=True)
class StoredSpecCheck:
    """How a command checks the spec it reads back from the store (trust.py says why).

    digest: the full sha256 the spec was submitted with (`resume --spec-digest`, from a Ray Job);
    trust: take the stored spec as it is (`--trust-stored-spec`), its code, host and path fields shown;
    runs: the command trains (resume): with nothing to verify against, it refuses unless `trust`.
    """

    digest: Optional[str] = None
    trust: bool = False
    runs: bool = False


def stored_spec(sweep: str, store: Store, store_uri: str, endpoint: str | None,
                check: StoredSpecCheck | None = None) -> SweepSpec:
    """The spec sweep `sweep` was last run with, read back from `store` (opened from `store_uri`) and
    verified against what the user submitted (the digest given, else this machine's record)."""
    check = check or StoredSpecCheck()
    path = spec_path(sweep)
    try:
        # bounded before it is all in memory: a shared store is input
        raw = read_spec_mapping(store.read_bytes(path, MAX_SPEC_BYTES), store.uri(path))
    except FileNotFoundError:
        raise UsageError(f"no sweep named {for_terminal(sweep, 80)!r} in store {store_uri} "
                         f"(it has: {for_terminal(', '.join(recorded_sweeps(store)) or 'none', 200)})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{store.uri(path)}: the stored spec is not a mapping of fields")
    # where signed requests go is decided here, never by a file a shared store hands back
    raw["store"], raw["endpoint"] = store_uri, endpoint
    spec = parse_spec(raw, source=store.uri(path))
    if spec.name != sweep:
        raise UsageError(f"{store.uri(path)}: the stored spec names sweep {for_terminal(spec.name, 80)!r}, "
                         f"not {sweep!r}")
    submitted = submitted_digest(check.digest) if check.digest else recorded(store_uri, sweep)
    if submitted is not None and not (check.trust and not check.digest):
        verify(spec, submitted, store.uri(path))
    elif check.trust:
        _check_trusted_factory(spec, store.uri(path))
        print(f"transfer-sweep: {trusted_fields_line(spec)}", file=sys.stderr)
    elif check.runs:
        raise UsageError(f"{store.uri(path)}: this machine has no record of submitting sweep {sweep} to store "
                         f"{store_uri} ({record_path(store_uri, sweep)}), so the stored spec cannot be "
                         "verified: give your spec file (`transfer-sweep resume SPEC.yaml`), or "
                         "--trust-stored-spec to run what the store holds")
    else:  # a read-only command: it runs no code the spec names and contacts no host it names
        print(f"transfer-sweep: note: the stored spec of sweep {sweep} is not verified (no record of "
              "submitting it from this machine)", file=sys.stderr)
    return spec


def _check_trusted_factory(spec: SweepSpec, where: str) -> None:
    """A factory from a spec nobody vouches for must be one an installed package declares."""
    factory = spec.model.factory
    if factory is not None and factory not in installed_factories():
        raise UsageError(f"{where}: model.factory {for_terminal(factory, 80)} is not declared by an installed "
                         f"package (entry point group {FACTORY_ENTRY_POINTS}): a stored spec that nobody "
                         "vouches for cannot name code; give your spec file")


def installed_factories() -> set[str]:
    """The 'module:function' values installed packages declare as factories (entry points)."""
    return {ep.value for ep in entry_points(group=FACTORY_ENTRY_POINTS)}


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


def recorded_sweeps(store: Store) -> list[str]:
    """Names of the sweeps whose spec the store holds."""
    return sorted({p.split("/")[1] for p in store.list(SWEEPS) if p.endswith(f"/{SPEC_FILE}")})


def record_spec(spec: SweepSpec, store: Store) -> None:
    """Write the effective spec where `stored_spec` finds it (without the endpoint: see stored_spec),
    and its digest on this machine (trust.remember), where a store writer cannot change it."""
    raw = {**spec.model_dump(mode="json"), "endpoint": None}
    store.write_bytes(spec_path(spec.name), yaml.safe_dump(raw, sort_keys=False).encode())
    remember(spec)
