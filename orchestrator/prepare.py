"""Prepare datasets in the store: ImageNet and image sets as parallel Ray tasks (one per shard),
fashion-animals.

ImageNet: the driver scans the source folder (names and sizes only), skips every shard whose commit
marker is already in the store, runs the rest as `ray.remote(num_cpus=1)` tasks (retried on a lost
worker), then one more task merges the per-class pixel sums into the mean image and commits the
manifest. The source folder must be readable at the same path on every Ray node (one machine, or a
shared file system); the shards go to the store, which every node reaches.

An image set (`dataset: folder` or `parquet`) is listed when its spec is loaded (`scan_image_set`) and
prepared the same way by `prepare_image_set`, which `run` calls before the sweep's first trial.

The decoding itself is workers/imagenet/prepare.py and workers/image_set/ (numpy and Pillow, no torch).
Like the trainable of schedule.py, the `_*_task` functions below are the only places this module reaches into `workers`:
they are what Ray runs on a worker (or this process runs inline), and they import lazily.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from orchestrator.errors import UsageError
from sweepcore.layout import dataset_prefix
from sweepcore.store import open_store

SHARD_RETRIES = 3
IMAGENET = "imagenet"


class PrepareError(UsageError):
    """A user-facing one-line problem with a `data prepare` command (bad source folder, missing data)."""


def _scan_task(src: str, shard_size: int, fmt: str) -> tuple[Any, list]:
    from workers.imagenet import prepare  # noqa: PLC0415 (the boundary to workers: see module doc)
    try:
        source = prepare.scan_source(src)
        return source, prepare.shard_jobs(source, shard_size, fmt)
    except prepare.SourceError as exc:
        raise PrepareError(str(exc)) from None


def _shard_task(job: Any, store_uri: str, endpoint: Optional[str]) -> dict:
    from workers.imagenet.prepare import prepare_shard  # noqa: PLC0415 (runs on a Ray worker)
    return prepare_shard(job, open_store(store_uri, endpoint, check=False))


def _merge_task(source: Any, jobs: list, store_uri: str, endpoint: Optional[str]) -> dict:
    from workers.imagenet.prepare import merge_shards  # noqa: PLC0415 (runs on a Ray worker)
    return merge_shards(open_store(store_uri, endpoint, check=False), source, jobs)


def _fashion_animals_task(store_uri: str, endpoint: Optional[str]) -> dict:
    from workers.data import publish_arrays  # noqa: PLC0415 (numpy only: no torch)
    try:
        return publish_arrays("fashion-animals", open_store(store_uri, endpoint))
    except (FileNotFoundError, ValueError) as exc:
        raise PrepareError(str(exc)) from None


def _run_on_ray(todo, source, jobs, store_uri, endpoint, address, echo, shard_task: Callable = _shard_task,
                merge_task: Optional[Callable] = _merge_task,
                keep_ray: bool = False) -> tuple[list[dict], list[str], Optional[dict]]:
    import ray  # noqa: PLC0415 (Ray only when shards are prepared on it)

    from orchestrator.ray_session import connect  # noqa: PLC0415 (imports Ray)
    started, _ = connect(address, dashboard=False) if not ray.is_initialized() else (False, None)
    try:
        shard = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES)(shard_task)
        pending = {shard.remote(job, store_uri, endpoint): job for job in todo}
        metas: list[dict] = []
        errors: list[str] = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                metas.append(ray.get(ready[0]))
                echo(_progress(job, metas[-1], len(metas) + len(errors), len(todo)))
            except Exception as exc:  # noqa: BLE001 (a failed shard: report it, finish the others)
                errors.append(f"{job.split} shard {job.index}: {str(exc).strip().splitlines()[-1]}")
                echo(f"FAILED {errors[-1]}")
        manifest = None
        if not errors and merge_task is not None:
            merge = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES)(merge_task)
            manifest = ray.get(merge.remote(source, jobs, store_uri, endpoint))
        return metas, errors, manifest
    finally:
        if started and not keep_ray:
            ray.shutdown()


def _run_inline(todo, source, jobs, store_uri, endpoint, echo) -> tuple[list[dict], list[str], Optional[dict]]:
    metas = []
    for job in todo:
        metas.append(_shard_task(job, store_uri, endpoint))
        echo(_progress(job, metas[-1], len(metas), len(todo)))
    return metas, [], _merge_task(source, jobs, store_uri, endpoint)


def _progress(job, meta: dict, done: int, total: int) -> str:
    bad = f", {len(meta['skipped'])} skipped" if meta["skipped"] else ""
    return f"[{done}/{total}] {job.split} shard {job.index:05d}: {meta['count']} images{bad}"


def prepare_imagenet(src: str, store_uri: str, endpoint: Optional[str] = None, shard_size: int = 1000,
                     address: Optional[str] = None, inline: bool = False,
                     echo: Callable[[str], None] = lambda line: None, fmt: str = "jpeg") -> dict:
    """Prepare ImageNet from `src` into the store as `fmt` shards ("jpeg" or "raw"); resumable
    (committed shards are not redone).

    Returns {"hash", "shards", "prepared", "reused", "failed": [lines], "manifest": dict or None}.
    `inline` runs the shards in this process instead of on Ray (tests, debugging).
    """
    source, jobs = _scan_task(src, shard_size, fmt)
    store = open_store(store_uri, endpoint)
    prefix = dataset_prefix(IMAGENET, jobs[0].digest)
    committed = set(store.list(prefix))
    todo = [job for job in jobs if f"{job.stem}.json" not in committed]
    echo(f"imagenet {jobs[0].digest}: {len(source.classes)} classes, {len(source.items)} images in "
         f"{len(jobs)} {fmt} shards; {len(jobs) - len(todo)} already in {store.uri()}, {len(todo)} to prepare")
    done_before = not todo and f"{prefix}/manifest.json" in committed
    if inline or done_before:  # nothing to decode or merge: no reason to start Ray
        metas, errors, manifest = _run_inline(todo, source, jobs, store.root, endpoint, echo)
    else:
        metas, errors, manifest = _run_on_ray(todo, source, jobs, store.root, endpoint, address, echo)
    return {"hash": jobs[0].digest, "shards": len(jobs), "prepared": sum(not m["reused"] for m in metas),
            "reused": len(jobs) - len(todo) + sum(m["reused"] for m in metas), "failed": errors,
            "manifest": manifest}


def prepare_fashion_animals(store_uri: str, endpoint: Optional[str] = None) -> dict:
    """Build (or reuse) the fashion-animals arrays and make sure the store holds them.
    Returns prefix, uri, committed_now, train and test image counts."""
    return _fashion_animals_task(store_uri, endpoint)


def describe(manifest: dict) -> dict[str, Any]:
    """A short summary of a prepared ImageNet manifest: hash, classes, counts, shards, skipped."""
    return {"hash": manifest["hash"], "classes": manifest["num_classes"], "train": manifest["counts"]["train"],
            "val": manifest["counts"]["val"], "shards": {s: len(v) for s, v in manifest["shards"].items()},
            "skipped": len(manifest["skipped"])}


# --- image sets (dataset: folder | parquet) ---------------------------------------------------------
def _image_set_scan_task(kind: str, images: Any) -> Any:
    from workers.image_set import scan  # noqa: PLC0415 (the boundary to workers: see module doc)
    try:
        if kind == "folder":
            return scan.scan_folder(images.src, images.test_fraction)
        return scan.scan_parquet(images.src, images.test_fraction, images.image_column, images.label_column,
                                 images.split_column)
    except scan.SourceError as exc:
        raise PrepareError(str(exc)) from None
    except OSError as exc:  # a folder or file that vanished or cannot be read while it was listed
        raise PrepareError(f"images.src {images.src}: {exc.strerror or type(exc).__name__}: "
                           f"{exc.filename or images.src}") from None


def _image_set_jobs_task(source: Any, images: Any) -> list:
    from workers.image_set.scan import shard_jobs  # noqa: PLC0415 (pure listing code, no decoding)
    return shard_jobs(source, images.size, images.channels, images.shard_size)


def _image_set_shard_task(job: Any, store_uri: str, endpoint: Optional[str]) -> dict:
    from workers.image_set.prepare import prepare_shard  # noqa: PLC0415 (runs on a Ray worker)
    return prepare_shard(job, open_store(store_uri, endpoint, check=False))


def _image_set_merge_task(source: Any, jobs: list, store_uri: str, endpoint: Optional[str]) -> dict:
    from workers.image_set.prepare import merge_shards  # noqa: PLC0415 (runs on a Ray worker)
    from workers.image_set.scan import SourceError  # noqa: PLC0415
    store = open_store(store_uri, endpoint, check=False)
    try:
        merge_shards(store, source, jobs)
    except SourceError as exc:
        raise PrepareError(str(exc)) from None
    except (KeyError, TypeError, IndexError, ValueError) as exc:  # a shard's meta read back is untrusted input
        raise PrepareError(f"{store.uri(dataset_prefix(jobs[0].kind, jobs[0].digest))}: a shard's meta is not "
                           f"what prepare writes ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    return _image_set_manifest_task(store_uri, endpoint, jobs[0].kind, jobs[0].digest)


def _image_set_manifest_task(store_uri: str, endpoint: Optional[str], name: str, version: str) -> dict:
    from workers.image_set.load import read_manifest  # noqa: PLC0415 (the manifest's checks live with its reader)
    try:
        return read_manifest(open_store(store_uri, endpoint, check=False), name, version)
    except ValueError as exc:
        raise PrepareError(str(exc)) from None


def scan_image_set(spec: Any) -> tuple[Any, str]:
    """(the listing of the spec's image set, its content hash: the data version its trials read)."""
    source = _image_set_scan_task(spec.dataset, spec.images)
    jobs = _image_set_jobs_task(source, spec.images)
    return source, jobs[0].digest


def prepare_image_set(spec: Any, address: Optional[str] = None, echo: Callable[[str], None] = lambda line: None,
                      inline: bool = False) -> dict:
    """Make sure the store holds the spec's image set at its data version: decode the shards not yet
    committed as Ray tasks (Ray stays up for the sweep), then commit the manifest. Returns the manifest.

    A source that no longer lists to that version, or that leaves a class without readable images,
    is a PrepareError (one line); committed shards are kept either way."""
    store = open_store(spec.store, spec.endpoint)
    prefix = dataset_prefix(spec.dataset, spec.data_version)
    if store.exists(f"{prefix}/manifest.json"):
        return _image_set_manifest_task(store.root, spec.endpoint, spec.dataset, str(spec.data_version))
    source = _image_set_scan_task(spec.dataset, spec.images)
    jobs = _image_set_jobs_task(source, spec.images)
    if jobs[0].digest != spec.data_version:
        raise PrepareError(f"images.src {spec.images.src} lists to version {jobs[0].digest} now, not the "
                           f"{spec.data_version} this sweep was planned with: it changed since; run the spec "
                           "file again to study it as it is now")
    committed = set(store.list(prefix))
    todo = [job for job in jobs if f"{job.stem(prefix)}.json" not in committed]
    echo(f"{spec.dataset} {spec.data_version}: {len(source.classes)} classes, {len(source.items)} images in "
         f"{len(jobs)} shards; {len(jobs) - len(todo)} already in {store.uri()}, {len(todo)} to prepare")
    errors: list[str] = []
    if inline or not todo:
        for done, job in enumerate(todo, start=1):
            echo(_progress(job, _image_set_shard_task(job, store.root, spec.endpoint), done, len(todo)))
    else:
        _, errors, _ = _run_on_ray(todo, source, jobs, store.root, spec.endpoint, address, echo,
                                   _image_set_shard_task, None, keep_ray=True)
    if errors:
        raise PrepareError(f"{len(errors)} of {len(todo)} shards of {spec.dataset} failed (first: {errors[0]}); "
                           "the others are committed: run again to finish")
    # the merge reads only the shards' small metas: the driver does it, and a class left without
    # readable images is its one-line error
    manifest = _image_set_merge_task(source, jobs, store.root, spec.endpoint)
    skipped = manifest["skipped"]
    if skipped:
        first = skipped[0]
        echo(f"{len(skipped)} image(s) skipped (listed in {store.uri(prefix)}/manifest.json); first: "
             f"{first['file']}: {first['reason']}")
    return manifest
