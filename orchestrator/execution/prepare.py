"""Prepare datasets in the store: ImageNet and image sets through the one shard pipeline of
workers/shards.py, as parallel Ray tasks (one per shard); fashion-animals.

Both sources go the same way. The driver lists the source (names and sizes only, no decoding),
skips every shard whose commit marker is already in the store, runs the rest as
`ray.remote(num_cpus=1)` tasks (retried on a lost worker; `inline` runs them in this process), then
merges the shards' metas into the manifest. ImageNet's merge also sums every train shard's per-class
pixels (~1 GB for the full set), so it is one more Ray task; an image set's reads only the metas, so
the driver does it. The source must be readable at the same path on every Ray node (one machine, or
a shared file system); the shards go to the store, which every node reaches.

ImageNet is prepared by `data prepare imagenet` (`prepare_imagenet`). An image set (`dataset: folder`
or `parquet`) is listed when its spec is loaded (`scan_image_set`) and prepared by `prepare_image_set`,
which `run` calls before the sweep's first trial (and `data prepare folder|parquet` on its own).

Failures, the same for both sources:
- a source that cannot be prepared (missing, wrong layout, a class without readable images, a listing
  that no longer matches the planned version, a tampered shard meta) is a PrepareError: one line,
  exit 2;
- a failed shard (its task raised, or its worker was lost past SHARD_RETRIES) is echoed as
  'FAILED <split> shard <i>: <error>' while the others finish and stay committed; nothing is merged
  and ShardsFailed is raised (one line: how many, the first): `data prepare` exits 1 (EXIT_FAILED),
  and the same command again prepares only the missing shards.

The boundary to `workers`: this module imports it only inside functions (lazily: the driver never
imports torch). The Ray tasks, what Ray runs on a worker, are `_shard_task` and `_merge_task`
(ImageNet's merge; an image set's and `inline` runs call it here); `_source_errors`, `_scan_imagenet`,
`_scan_image_set`, `_read_image_set_manifest` and `prepare_fashion_animals` run on the driver and
import only listing and manifest code (numpy, pyarrow; no Pillow, no torch).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

from orchestrator.errors import OneLineError, UsageError, WorkFailed
from orchestrator.spec.sweep import Sweep
from sweepcore.layout import manifest_path
from sweepcore.store import Store, StoreRef

SHARD_RETRIES = 3
IMAGENET = "imagenet"


class PrepareError(UsageError):
    """A user-facing one-line problem with a `data prepare` command (bad source folder, missing data)."""


class ShardsFailed(WorkFailed):
    """Some shards failed, the others are committed, nothing was merged: exit 1, like failed trials."""

    def __init__(self, name: str, failed: list[str], total: int) -> None:
        super().__init__(f"{len(failed)} of {total} shards of {name} failed (first: {failed[0]}); the others are "
                         "committed: run the same command again to finish")
        self.failed = failed


# --- the Ray tasks (each opens the store's reference on its own side) and what they run -------------
def _shard_task(job: Any, store: StoreRef) -> dict:
    return _shard(job, store.open())


def _merge_task(source: Any, jobs: list, store: StoreRef) -> dict:
    return _merge(source, jobs, store.open())


def _shard(job: Any, store: Store) -> dict:
    from workers.shards import prepare_shard  # noqa: PLC0415 (on a Ray worker, or here inline: the boundary)
    return prepare_shard(job, store)


def _merge(source: Any, jobs: list, store: Store) -> dict:
    from workers.shards import SourceError, merge_shards  # noqa: PLC0415 (on a Ray worker, or here)
    try:
        return merge_shards(store, source, jobs)
    except SourceError as exc:
        raise PrepareError(str(exc)) from None
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:  # a meta read back is untrusted
        raise PrepareError(f"{store.uri(jobs[0].prefix)}: a shard's meta is not what prepare writes "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None


# --- the shared flow ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _ray_session(address: Optional[str], keep: bool) -> Iterator[None]:
    """Ray joined or started for the tasks (shut down after unless `keep` or it was up already)."""
    import ray  # noqa: PLC0415 (Ray only when shards are prepared on it)

    from orchestrator.execution.session import connect  # noqa: PLC0415 (imports Ray)
    started, _ = connect(address, dashboard=False) if not ray.is_initialized() else (False, None)
    try:
        yield
    finally:
        if started and not keep:
            ray.shutdown()


def _on_ray(task: Callable, *args: Any) -> Any:
    """One Ray task's result; a one-line error it raised is raised here as itself."""
    import ray  # noqa: PLC0415 (Ray only when shards are prepared on it)
    try:
        return ray.get(ray.remote(num_cpus=1, max_retries=SHARD_RETRIES)(task).remote(*args))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, OneLineError):
            raise exc.cause from None
        raise


def _todo(store: Store, source: Any, jobs: list, echo: Callable[[str], None]) -> list:
    """The jobs whose shard is not committed yet, said in one line."""
    committed = set(store.list(jobs[0].prefix))
    todo = [job for job in jobs if f"{job.stem}.json" not in committed]
    echo(f"{source.name} {jobs[0].digest}: {len(source.classes)} classes, {len(source.items)} images in "
         f"{len(jobs)} {jobs[0].reader.fmt} shards; {len(jobs) - len(todo)} already in {store.uri()}, "
         f"{len(todo)} to prepare")
    return todo


def _finished(todo: list, store: Store, ref: StoreRef, on_ray: bool) -> Iterator[tuple[Any, Callable]]:
    """(job, a call returning its meta or raising its error) for each shard of `todo` as it finishes:
    as Ray tasks when `on_ray`, else here, one after the other."""
    if not on_ray:
        for job in todo:
            yield job, lambda job=job: _shard(job, store)
        return
    import ray  # noqa: PLC0415 (Ray only when shards are prepared on it)
    task = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES)(_shard_task)
    pending = {task.remote(job, ref): job for job in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(ready[0]), lambda ref=ready[0]: ray.get(ref)


def _error_line(exc: BaseException) -> str:
    """A failed shard's error in one line: the task's own exception when Ray wraps it."""
    cause = getattr(exc, "cause", None)  # a RayTaskError's
    cause = cause if isinstance(cause, BaseException) else exc
    return " ".join(f"{type(cause).__name__}: {cause}".split())[:300]


def _prepare_shards(todo: list, store: Store, ref: StoreRef, echo: Callable[[str], None], on_ray: bool) -> list[dict]:
    """Prepare every shard of `todo` and return their metas; a failed one is echoed and the others
    finish, then ShardsFailed if any failed (the one failure policy of both sources)."""
    metas: list[dict] = []
    failed: list[str] = []
    first: Optional[BaseException] = None
    for job, result in _finished(todo, store, ref, on_ray):
        try:
            metas.append(result())
        except Exception as exc:  # noqa: BLE001 (a failed shard: report it, finish the others)
            failed.append(f"{job.split} shard {job.index}: {_error_line(exc)}")
            first = first or exc
            echo(f"FAILED {failed[-1]}")
        else:
            echo(_progress(job, metas[-1], len(metas) + len(failed), len(todo)))
    if failed:
        raise ShardsFailed(todo[0].reader.name, failed, len(todo)) from first
    return metas


def _progress(job, meta: dict, done: int, total: int) -> str:
    bad = f", {len(meta['skipped'])} skipped" if meta["skipped"] else ""
    return f"[{done}/{total}] {job.split} shard {job.index:05d}: {meta['count']} images{bad}"


@contextlib.contextmanager
def _source_errors(field: str, src: str) -> Iterator[None]:
    """A listing's problems as one-line PrepareErrors: its SourceError, or a folder or file that
    vanished or cannot be read while it was listed."""
    from workers.shards import SourceError  # noqa: PLC0415 (the boundary to workers: see module doc)
    try:
        yield
    except SourceError as exc:
        raise PrepareError(str(exc)) from None
    except OSError as exc:
        raise PrepareError(f"{field} {src}: {exc.strerror or type(exc).__name__}: {exc.filename or src}") from None


# --- ImageNet ----------------------------------------------------------------------------------------
def _scan_imagenet(src: str, shard_size: int, fmt: str) -> tuple[Any, list]:
    from workers.imagenet.prepare import scan_source, shard_jobs  # noqa: PLC0415 (listing only: no Pillow)
    with _source_errors("--src", src):
        source = scan_source(src)
        jobs = shard_jobs(source, shard_size, fmt)
    return source, jobs


def prepare_imagenet(src: str, store: StoreRef, shard_size: int = 1000, address: Optional[str] = None,
                     inline: bool = False, echo: Callable[[str], None] = lambda line: None, fmt: str = "jpeg") -> dict:
    """Prepare ImageNet from `src` into the store as `fmt` shards ("jpeg" or "raw"); resumable
    (committed shards are not redone). ShardsFailed when some shards failed (nothing merged). The
    source is listed before the store is opened (once, here; the tasks open its reference).

    Returns {"hash", "shards", "prepared", "reused", "manifest"}.
    `inline` runs the shards and the merge in this process instead of on Ray (tests, debugging).
    """
    source, jobs = _scan_imagenet(src, shard_size, fmt)
    opened = store.open(check=True)
    todo = _todo(opened, source, jobs, echo)
    done_before = not todo and opened.exists(manifest_path(IMAGENET, jobs[0].digest))
    on_ray = not (inline or done_before)  # nothing to decode or merge: no reason to start Ray
    with _ray_session(address, keep=False) if on_ray else contextlib.nullcontext():
        metas = _prepare_shards(todo, opened, store, echo, on_ray)
        manifest = _on_ray(_merge_task, source, jobs, store) if on_ray else _merge(source, jobs, opened)
    return {"hash": jobs[0].digest, "shards": len(jobs), "prepared": sum(not m["reused"] for m in metas),
            "reused": len(jobs) - len(todo) + sum(m["reused"] for m in metas), "manifest": manifest}


def describe(manifest: dict) -> dict[str, Any]:
    """A short summary of a prepared ImageNet manifest: hash, classes, counts, shards, skipped."""
    return {"hash": manifest["hash"], "classes": manifest["num_classes"], "train": manifest["counts"]["train"],
            "val": manifest["counts"]["val"], "shards": {s: len(v) for s, v in manifest["shards"].items()},
            "skipped": len(manifest["skipped"])}


# --- fashion-animals ---------------------------------------------------------------------------------
def prepare_fashion_animals(store: Store) -> dict:
    """Build (or reuse) the fashion-animals arrays and make sure the store holds them.
    Returns prefix, uri, committed_now, train and test image counts."""
    from workers.data import publish_arrays  # noqa: PLC0415 (numpy only: no torch)
    try:
        return publish_arrays("fashion-animals", store)
    except (FileNotFoundError, ValueError) as exc:
        raise PrepareError(str(exc)) from None


# --- image sets (dataset: folder | parquet) ---------------------------------------------------------
def _scan_image_set(kind: str, images: Any) -> tuple[Any, list]:
    from workers.image_set import scan  # noqa: PLC0415 (listing only: no Pillow)
    from workers.image_set.prepare import shard_jobs  # noqa: PLC0415
    with _source_errors("images.src", images.src):
        if kind == "folder":
            source = scan.scan_folder(images.src, images.test_fraction)
        else:
            source = scan.scan_parquet(images.src, images.test_fraction, images.image_column, images.label_column,
                                       images.split_column)
        jobs = shard_jobs(source, images.size, images.channels, images.shard_size)
    return source, jobs


def _read_image_set_manifest(store: Store, name: str, version: str) -> dict:
    from workers.image_set.load import read_manifest  # noqa: PLC0415 (the manifest's checks live with its reader)
    try:
        return read_manifest(store, name, version)
    except ValueError as exc:
        raise PrepareError(str(exc)) from None


def scan_image_set(spec: Any) -> tuple[Any, str]:
    """(the listing of the spec's image set, its content hash: the data version its trials read)."""
    source, jobs = _scan_image_set(spec.dataset, spec.images)
    return source, jobs[0].digest


def prepare_image_set(sweep: Sweep, address: Optional[str] = None, echo: Callable[[str], None] = lambda line: None,
                      inline: bool = False) -> dict:
    """Make sure the store holds the spec's image set at its data version: decode the shards not yet
    committed as Ray tasks (Ray stays up for the sweep), then commit the manifest. Returns the manifest.

    A source that no longer lists to that version, or that leaves a class without readable images,
    is a PrepareError (one line); failed shards are ShardsFailed; committed shards are kept either way."""
    spec, store, images = sweep.spec, sweep.store, sweep.spec.images
    if images is None:
        raise PrepareError(f"sweep {spec.name} has no images section: dataset {spec.dataset} is built in")
    version = str(spec.data_version)
    if store.exists(manifest_path(spec.dataset, version)):
        return _read_image_set_manifest(store, spec.dataset, version)
    source, jobs = _scan_image_set(spec.dataset, images)
    if jobs[0].digest != spec.data_version:
        raise PrepareError(f"images.src {images.src} lists to version {jobs[0].digest} now, not the "
                           f"{spec.data_version} this sweep was planned with: it changed since; run the spec "
                           "file again to study it as it is now")
    todo = _todo(store, source, jobs, echo)
    on_ray = not inline and bool(todo)
    with _ray_session(address, keep=True) if on_ray else contextlib.nullcontext():
        _prepare_shards(todo, store, sweep.ref, echo, on_ray)
    # the merge reads only the shards' small metas: the driver does it
    _merge(source, jobs, store)
    manifest = _read_image_set_manifest(store, spec.dataset, version)
    skipped = manifest["skipped"]
    if skipped:
        first = skipped[0]
        echo(f"{len(skipped)} image(s) skipped (listed in {store.uri(manifest_path(spec.dataset, version))}); "
             f"first: {first['file']}: {first['reason']}")
    return manifest
