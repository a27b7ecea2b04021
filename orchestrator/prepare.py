"""Prepare datasets in the store: ImageNet as parallel Ray tasks (one per shard), fashion-animals.

ImageNet: the driver scans the source folder (names and sizes only), skips every shard whose commit
marker is already in the store, runs the rest as `ray.remote(num_cpus=1)` tasks (retried on a lost
worker), then one more task merges the per-class pixel sums into the mean image and commits the
manifest. The source folder must be readable at the same path on every Ray node (one machine, or a
shared file system); the shards go to the store, which every node reaches.

The decoding itself is workers/imagenet.py, imported lazily: this module never imports torch (and
workers.imagenet does not either).
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional

from orchestrator.store import dataset_prefix, open_store

SHARD_RETRIES = 3


class PrepareError(Exception):
    """A user-facing one-line problem with a `data prepare` command (bad source folder, missing data)."""


def _shard_task(job, store_uri: str, endpoint: Optional[str]) -> dict:
    from workers.imagenet import prepare_shard  # noqa: PLC0415 (runs on a Ray worker)
    return prepare_shard(job, open_store(store_uri, endpoint, check=False))


def _finish_task(source, jobs, store_uri: str, endpoint: Optional[str]) -> dict:
    from workers.imagenet import finish  # noqa: PLC0415 (runs on a Ray worker)
    return finish(open_store(store_uri, endpoint, check=False), source, jobs)


def _connect(address: Optional[str]) -> bool:
    """Connect to `address` (or start a local Ray); True when this call started the connection."""
    import ray
    if ray.is_initialized():
        return False
    kwargs = dict(log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(include_dashboard=False, _temp_dir=os.environ.get("TRANSFER_SWEEP_RAY_TMP"), **kwargs)
    return True


def _run_on_ray(todo, source, jobs, store_uri, endpoint, address, echo) -> tuple[list[dict], list[str], dict]:
    import ray
    started = _connect(address)
    try:
        shard = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES)(_shard_task)
        pending = {shard.remote(job, store_uri, endpoint): job for job in todo}
        metas, errors = [], []
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
            merge = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES)(_finish_task)
            manifest = ray.get(merge.remote(source, jobs, store_uri, endpoint))
        return metas, errors, manifest
    finally:
        if started:
            ray.shutdown()


def _run_inline(todo, source, jobs, store_uri, endpoint, echo) -> tuple[list[dict], list[str], dict]:
    metas = []
    for job in todo:
        metas.append(_shard_task(job, store_uri, endpoint))
        echo(_progress(job, metas[-1], len(metas), len(todo)))
    return metas, [], _finish_task(source, jobs, store_uri, endpoint)


def _progress(job, meta: dict, done: int, total: int) -> str:
    bad = f", {len(meta['skipped'])} skipped" if meta["skipped"] else ""
    return f"[{done}/{total}] {job.split} shard {job.index:05d}: {meta['count']} images{bad}"


def prepare_imagenet(src: str, store_uri: str, endpoint: Optional[str] = None, shard_size: int = 1000,
                     address: Optional[str] = None, inline: bool = False,
                     echo: Callable[[str], None] = lambda line: None) -> dict:
    """Prepare ImageNet from `src` into the store; resumable (committed shards are not redone).

    Returns {"hash", "shards", "prepared", "reused", "failed": [lines], "manifest": dict or None}.
    `inline` runs the shards in this process instead of on Ray (tests, debugging).
    """
    from workers import imagenet  # noqa: PLC0415 (numpy + Pillow only: no torch)

    try:
        source = imagenet.scan_source(src)
        jobs = imagenet.shard_jobs(source, shard_size)
    except imagenet.SourceError as exc:
        raise PrepareError(str(exc)) from None
    store = open_store(store_uri, endpoint)
    prefix = dataset_prefix(imagenet.NAME, jobs[0].digest)
    committed = set(store.list(prefix))
    todo = [job for job in jobs if f"{job.stem}.json" not in committed]
    echo(f"imagenet {jobs[0].digest}: {len(source.classes)} classes, {len(source.items)} images in "
         f"{len(jobs)} shards; {len(jobs) - len(todo)} already in {store.uri()}, {len(todo)} to prepare")
    done_before = not todo and f"{prefix}/{imagenet.MANIFEST}" in committed
    if inline or done_before:  # nothing to decode or merge: no reason to start Ray
        metas, errors, manifest = _run_inline(todo, source, jobs, store.root, endpoint, echo)
    else:
        metas, errors, manifest = _run_on_ray(todo, source, jobs, store.root, endpoint, address, echo)
    return {"hash": jobs[0].digest, "shards": len(jobs), "prepared": sum(not m["reused"] for m in metas),
            "reused": len(jobs) - len(todo) + sum(m["reused"] for m in metas), "failed": errors,
            "manifest": manifest}


def prepare_fashion_animals(store_uri: str, endpoint: Optional[str] = None) -> dict:
    """Build (or reuse) the fashion-animals arrays and make sure the store holds them.

    `prepared_arrays` commits only when it builds; when this machine's cache already had them the
    store may still lack them, so they are committed here (create-only, identical bytes).
    """
    from workers import data  # noqa: PLC0415 (numpy only: no torch)

    store = open_store(store_uri, endpoint)
    name = "fashion-animals"
    try:
        arrays = data.prepared_arrays(name, store)
    except (FileNotFoundError, ValueError) as exc:
        raise PrepareError(str(exc)) from None
    prefix = dataset_prefix(name, data.dataset_spec(name).content_hash())
    created = 0
    if not store.exists(f"{prefix}/{data.MANIFEST}"):
        for n in data.ARRAY_NAMES:
            created += store.commit_bytes(f"{prefix}/{n}.npy", data._npy_bytes(arrays[n]))
        created += store.commit_bytes(f"{prefix}/{data.MANIFEST}", data._manifest(arrays))
    return {"prefix": prefix, "uri": store.uri(prefix), "committed_now": created,
            "train": int(arrays["train_x"].shape[0]), "test": int(arrays["test_x"].shape[0])}
