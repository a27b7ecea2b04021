"""`transfer-sweep data prepare {imagenet,fashion-animals,folder,parquet}`: the parser block and its command.

One failure policy for every source (imagenet, folder, parquet; see orchestrator/execution/prepare.py):
a bad command line, spec or source is one line on stderr and exit 2 (a PrepareError); shards that
failed are one line (how many, the first) and exit 1 (ShardsFailed, a WorkFailed), with the others
committed: the same command again prepares only the missing shards. cli/main.py says both.
"""
from __future__ import annotations

import argparse
import sys

from orchestrator.cli import args as options
from orchestrator.sources import command_store
from sweepcore.store import StoreRef


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    options.add_store(sp)
    sp.add_argument("--shard-size", type=int, default=1000,
                    help="images per shard (default 1000: ~30 MB as JPEG, ~196 MB raw)")
    sp.add_argument("--format", choices=("jpeg", "raw"), default="jpeg",
                    help="imagenet shard format: jpeg (quality 90, ~1/7 of the bytes, decoded per batch; "
                    "default) or raw uint8 (no decoding; for nodes whose RAM holds both halves raw: "
                    "see docs/performance.md)")
    options.add_ray_address(sp)
    sp.set_defaults(func=cmd_data_prepare)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_data_prepare(args: argparse.Namespace) -> int:
    """Run `data prepare`; usage problems raise PrepareError (exit 2), failed shards ShardsFailed (exit 1)."""
    store = command_store(args.store, args.endpoint)
    if args.dataset in ("folder", "parquet"):
        return _prepare_image_set(args, store)
    return _prepare_built_in(args, store)


def _prepare_built_in(args: argparse.Namespace, store: StoreRef) -> int:
    from orchestrator.execution.prepare import PrepareError, describe, prepare_fashion_animals, prepare_imagenet  # noqa: PLC0415 (Ray and Pillow only for `data prepare`)

    if args.spec:
        raise PrepareError(f"--spec is for folder and parquet image sets ({args.dataset} is built in)")
    if args.dataset == "fashion-animals":
        if args.format != "jpeg":
            raise PrepareError("--format is only for imagenet (fashion-animals is published as arrays)")
        if args.src:
            raise PrepareError("--src is only for imagenet (fashion-animals reads its installed sources)")
        info = prepare_fashion_animals(store.open(check=True))
        print(f"fashion-animals: {info['train']} train + {info['test']} test images in {info['uri']} "
              f"({info['committed_now']} objects committed now)")
        return 0
    if not args.src:
        raise PrepareError("data prepare imagenet needs --src DIR (the ILSVRC-2012 folder)")
    summary = prepare_imagenet(args.src, store, args.shard_size, args.address, echo=_say, fmt=args.format)
    d = describe(summary["manifest"])
    print(f"imagenet {d['hash']}: {d['classes']} classes, {d['train']} train + {d['val']} val images in "
          f"{d['shards']['train']} + {d['shards']['val']} shards ({summary['prepared']} prepared now, "
          f"{summary['reused']} reused), {d['skipped']} files skipped (listed in manifest.json)")
    for item in summary["manifest"]["skipped"][:20]:
        print(f"  skipped {item['file']}: {item['reason']}")
    return 0


def _prepare_image_set(args: argparse.Namespace, store: StoreRef) -> int:
    from orchestrator.execution.prepare import PrepareError, prepare_image_set  # noqa: PLC0415 (Ray and Pillow only here)
    from orchestrator.sources import with_image_set  # noqa: PLC0415
    from orchestrator.spec import Sweep, load_spec  # noqa: PLC0415

    if not args.spec:
        raise PrepareError(f"data prepare {args.dataset} needs --spec SPEC (the sweep spec with the images section)")
    spec = load_spec(args.spec)
    if spec.dataset != args.dataset:
        raise PrepareError(f"{args.spec}: dataset is {spec.dataset}, not {args.dataset}")
    spec = with_image_set(spec.model_copy(update={"store": store.uri, "endpoint": store.endpoint}), args.spec)
    manifest = prepare_image_set(Sweep(spec, store.open(check=True)), args.address, echo=_say)
    print(f"{spec.dataset} {spec.data_version}: {manifest['num_classes']} classes, {manifest['counts']['train']} "
          f"train + {manifest['counts']['test']} test images, {len(manifest['skipped'])} skipped (listed in "
          f"manifest.json)")
    return 0
