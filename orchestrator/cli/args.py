"""Every option the commands share, defined once: the spec and its overrides, the store, the addresses.

A command module calls these when it builds its parser, so that `--store` means the same thing, says
the same default and parses the same way in every command (tests/unit/test_cli_help.py reads them).
"""
from __future__ import annotations

import argparse

from orchestrator.spec.schema import DEFAULT_STORE

__all__ = ["DEFAULT_STORE", "JOBS_ADDRESS_HELP", "RAY_ADDRESS_HELP", "SPEC_STORE", "add_force", "add_jobs_address",
           "add_ray_address", "add_spec", "add_store"]

SPEC_STORE = "the spec's store"  # what a spec-file command's --store defaults to
RAY_ADDRESS_HELP = ("Ray cluster address, or auto for the cluster running on this machine "
                    "(default: start a private local Ray)")
JOBS_ADDRESS_HELP = "Ray Jobs API (dashboard) URL"


def add_spec(sp: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """The spec file and its repeatable --set FIELD=VALUE overrides (`positional=False`: --set only,
    for a command whose positional argument is either a spec file or a sweep name)."""
    if positional:
        sp.add_argument("spec", help="sweep spec YAML (see sweeps/)")
    sp.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a spec field, e.g. --set train.epochs=1 (repeatable)")


def add_store(sp: argparse.ArgumentParser, default: str | None = DEFAULT_STORE) -> None:
    """--store and --endpoint. `default`: what the help says the store is when --store is absent
    (None: --store is required)."""
    if default is None:
        sp.add_argument("--store", required=True, help="store root: folder or s3://bucket/prefix")
    else:
        sp.add_argument("--store", help=f"store root: folder or s3://bucket/prefix (default: {default})")
    sp.add_argument("--endpoint", help="S3 endpoint URL (default: AWS_ENDPOINT_URL)")


def add_ray_address(sp: argparse.ArgumentParser) -> None:
    """--address of the Ray cluster a command's driver joins."""
    sp.add_argument("--address", help=RAY_ADDRESS_HELP)


def add_jobs_address(sp: argparse.ArgumentParser, what: str, required: bool = False) -> None:
    """--address of a cluster's Ray Jobs API; `what` says what the command does with it."""
    sp.add_argument("--address", metavar="URL", required=required, help=f"{JOBS_ADDRESS_HELP}: {what}")


def add_force(sp: argparse.ArgumentParser) -> None:
    """--force: take a sweep over from a driver that still holds its lease."""
    sp.add_argument("--force", action="store_true",
                    help="take the sweep over from another driver that still holds its lease (default: refuse)")
