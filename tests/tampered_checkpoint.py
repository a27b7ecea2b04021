"""The tampered checkpoint of the checkpoint-safety tests: a checkpoint-shaped dict with real weights
and a pickle payload that runs a shell command when unpickled. tests/unit/test_checkpoint_safety.py
proves the workers never unpickle it; tests/store/test_checkpoint_payload.py that the same bytes run
the command under a full unpickler (so the unit tests can fail)."""
from __future__ import annotations

import io
import posix

import torch
from plan_helpers import planned_settings

TRAIN = {"iterations": 8, "epochs": None, "eval_every": 4, "checkpoint_every": 4, "top_k": 2, "augment": False}
RESOURCES = {"channels_last": False}
SETTINGS = planned_settings("baseA random:0 s0", dataset="tiny-safety", train=TRAIN, resources=RESOURCES)
KEY = SETTINGS.key


class Payload:
    """Runs a shell command when unpickled: what a tampered checkpoint would carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        # os.system itself, pickled as posix.system either way; named through posix so that the unit
        # tier's guard, which replaces os.system while a test runs, leaves these bytes as they are
        return posix.system, (f"touch '{self.marker}'",)


def tampered(marker) -> bytes:
    """A checkpoint of KEY with real weights and the payload (touching `marker`) tucked inside."""
    blob = io.BytesIO()
    torch.save({"key": KEY, "step": 4, "model": {"fc8.weight": torch.zeros(20, 16)}, "note": Payload(marker)}, blob)
    return blob.getvalue()
