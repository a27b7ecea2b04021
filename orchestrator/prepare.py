"""Prepare datasets in the store: ImageNet as parallel Ray tasks (one per shard), fashion-animals.

ImageNet: the driver scans the source folder (names and sizes only), skips every shard whose commit
marker is already in the store, runs the rest as `ray.remote(num_cpus=1)` tasks (retried on a lost
worker), then one more task merges the per-class pixel sums into the mean image and commits the
manifest. The source folder must be readable at the same path on every Ray node (one machine, or a
shared file system); the shards go to the store, which every node reaches.

The decoding itself is workers/imagenet/prepare.py (numpy and Pillow, no torch). Like the trainable
of schedule.py, the `_*_task` functions below are the only places this module reaches into `workers`:
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


def _run_on_ray(todo, source, jobs, store_uri, endpoint, address,
                echo) -> tuple[list[dict], list[str], Optional[dict]]:
    import ray  # noqa: PLC0415 (Ray only when shards are prepared on it)

    from orchestrator.ray_session import connect  # noqa: PLC0415 (imports Ray)
    started, _ = connect(address, dashboard=False)
    try:
        shard = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES)(_shard_task)
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
        if not errors:
            merge = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES)(_merge_task)
            manifest = ray.get(merge.remote(source, jobs, store_uri, endpoint))
        return metas, errors, manifest
    finally:
        if started:
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
