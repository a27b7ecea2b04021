"""`transfer-sweep data prepare {imagenet,fashion-animals}`: the parser block and its command.

Kept out of cli.py (which calls `add_data_parser` once) so the data commands grow without touching
the sweep commands. Errors are one line on stderr: exit 2 for a bad command line or source folder
(a PrepareError, which cli.main reports like every other usage error), exit 1 when some shards
failed (rerun the same command to resume).
"""
from __future__ import annotations

import argparse
import sys

from orchestrator.errors import EXIT_FAILED
from orchestrator.spec import DEFAULT_STORE
from sweepcore.store import absolute_uri


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """Add `data prepare ...` to the CLI's sub-parsers."""
    data = sub.add_parser("data", help="prepare datasets in the store")
    actions = data.add_subparsers(dest="data_command", required=True)
    sp = actions.add_parser("prepare", help="prepare a dataset once into the store (resumable)",
                            description="imagenet: warp ILSVRC-2012 to 256x256 shards + mean image, as Ray "
                            "tasks; fashion-animals: publish the 28x28 arrays for workers without the data")
    sp.add_argument("dataset", choices=("imagenet", "fashion-animals", "folder", "parquet"))
    sp.add_argument("--spec", help="folder, parquet: the sweep spec whose images section to prepare (the same "
                    "listing and version its run would read; a run prepares it too when it is missing)")
    sp.add_argument("--src", help="imagenet: folder with train/<wnid>/*.JPEG and val/ (per-class folders, "
                    "or flat + LOC_val_solution.csv / val_labels.txt); readable at this path on every node")
    sp.add_argument("--store", default=DEFAULT_STORE,
                    help=f"store root: folder or s3://bucket/prefix (default {DEFAULT_STORE})")
    sp.add_argument("--endpoint", help="S3 endpoint URL (default: AWS_ENDPOINT_URL)")
    sp.add_argument("--shard-size", type=int, default=1000,
                    help="images per shard (default 1000: ~30 MB as JPEG, ~196 MB raw)")
    sp.add_argument("--format", choices=("jpeg", "raw"), default="jpeg",
                    help="imagenet shard format: jpeg (quality 90, ~1/7 of the bytes, decoded per batch; "
                    "default) or raw uint8 (no decoding; for nodes whose RAM holds both halves raw: "
                    "see docs/performance.md)")
    sp.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    sp.set_defaults(func=cmd_data_prepare)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_data_prepare(args: argparse.Namespace) -> int:
    """Run `data prepare`; usage problems raise PrepareError (exit 2), failed shards exit 1."""
    from orchestrator.prepare import PrepareError, describe, prepare_fashion_animals, prepare_imagenet  # noqa: PLC0415 (Ray and Pillow only for `data prepare`)

    store = absolute_uri(args.store)
    if args.dataset in ("folder", "parquet"):
        return _prepare_image_set(args, store)
    if args.spec:
        raise PrepareError(f"--spec is for folder and parquet image sets ({args.dataset} is built in)")
    if args.dataset == "fashion-animals":
        if args.format != "jpeg":
            raise PrepareError("--format is only for imagenet (fashion-animals is published as arrays)")
        if args.src:
            raise PrepareError("--src is only for imagenet (fashion-animals reads its installed sources)")
        info = prepare_fashion_animals(store, args.endpoint)
        print(f"fashion-animals: {info['train']} train + {info['test']} test images in {info['uri']} "
              f"({info['committed_now']} objects committed now)")
        return 0
    if not args.src:
        raise PrepareError("data prepare imagenet needs --src DIR (the ILSVRC-2012 folder)")
    summary = prepare_imagenet(args.src, store, args.endpoint, args.shard_size, args.address, echo=_say,
                               fmt=args.format)
    if summary["failed"]:
        _say(f"{len(summary['failed'])} shards failed (first: {summary['failed'][0]}); the others are "
             f"committed: run the same command again to finish")
        return EXIT_FAILED
    d = describe(summary["manifest"])
    print(f"imagenet {d['hash']}: {d['classes']} classes, {d['train']} train + {d['val']} val images in "
          f"{d['shards']['train']} + {d['shards']['val']} shards ({summary['prepared']} prepared now, "
          f"{summary['reused']} reused), {d['skipped']} files skipped (listed in manifest.json)")
    for item in summary["manifest"]["skipped"][:20]:
        print(f"  skipped {item['file']}: {item['reason']}")
    return 0


def _prepare_image_set(args: argparse.Namespace, store: str) -> int:
    from orchestrator.prepare import PrepareError, prepare_image_set  # noqa: PLC0415 (Ray and Pillow only here)
    from orchestrator.spec import load_spec  # noqa: PLC0415
    from orchestrator.spec_source import with_image_set  # noqa: PLC0415

    if not args.spec:
        raise PrepareError(f"data prepare {args.dataset} needs --spec SPEC (the sweep spec with the images section)")
    spec = load_spec(args.spec)
    if spec.dataset != args.dataset:
        raise PrepareError(f"{args.spec}: dataset is {spec.dataset}, not {args.dataset}")
    spec = with_image_set(spec.model_copy(update={"store": store, "endpoint": args.endpoint}), args.spec)
    manifest = prepare_image_set(spec, args.address, echo=_say)
    print(f"{spec.dataset} {spec.data_version}: {manifest['num_classes']} classes, {manifest['counts']['train']} "
          f"train + {manifest['counts']['test']} test images, {len(manifest['skipped'])} skipped (listed in "
          f"manifest.json)")
    return 0
