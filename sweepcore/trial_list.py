"""A sweep's trials as one JSON file: what `transfer-sweep plan SPEC --export FILE` writes and the
Ray-free loop (workers/loop.py) reads, on a machine that has torch but neither Ray nor pydantic.

Each entry is a trial's complete settings (`TrialSettings.to_dict`), in plan order: every base before
the trials that copy it. Reading checks everything the plan guaranteed, because the file may have
travelled or been edited: the format tag, each entry's fields, types and key (from_dict), one entry
per key, and that every copied base is listed earlier.
"""
from __future__ import annotations

import json
from typing import Iterable

from sweepcore.errors import OneLineError
from sweepcore.record_schema import bounded_json
from sweepcore.settings import TrialSettings
from sweepcore.terminal import for_terminal

FORMAT = "transfer-sweep trials"
VERSION = 1
MAX_BYTES = 64 << 20  # ~20 KB per trial at the most: far above the largest plan's file


class TrialListError(OneLineError):
    """A trials file that is not one (the message names the file and the entry)."""


def dump_trials(sweep: str, trials: Iterable[TrialSettings]) -> bytes:
    """The trials file of `sweep` (UTF-8 JSON), entries in the order given (the plan's)."""
    doc = {"format": FORMAT, "version": VERSION, "sweep": sweep, "trials": [t.to_dict() for t in trials]}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def load_trials(data: bytes, where: str) -> tuple[str, list[TrialSettings]]:
    """(sweep name, trials) of a trials file; TrialListError names what is wrong."""
    doc = bounded_json(data, MAX_BYTES, "a trials file", where, TrialListError)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise TrialListError(f"{where}: not a trials file (expected format {FORMAT!r} version {VERSION}, as "
                             "`transfer-sweep plan SPEC --export FILE` writes)")
    sweep, raw = doc.get("sweep"), doc.get("trials")
    if not isinstance(sweep, str) or not isinstance(raw, list) or not raw:
        raise TrialListError(f"{where}: not a trials file (needs a sweep name and a non-empty list of trials)")
    trials: list[TrialSettings] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise TrialListError(f"{where}: trials[{i}] is not a settings object")
        try:
            settings = TrialSettings.from_dict(entry)
        except (ValueError, TypeError) as exc:
            raise TrialListError(f"{where}: trials[{i}]: {for_terminal(exc, 200)}") from None
        if settings.key in seen:
            raise TrialListError(f"{where}: trials[{i}]: key {settings.key} is listed twice")
        if settings.base_key is not None and settings.base_key not in seen:
            raise TrialListError(f"{where}: trials[{i}] ({settings.name}) copies base {settings.base_key}, "
                                 "which is not listed before it")
        seen.add(settings.key)
        trials.append(settings)
    return sweep, trials
