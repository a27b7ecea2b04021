"""The payload of the checkpoint-safety tests (tests/unit/test_checkpoint_safety.py) is live: the same
bytes run their shell command under a full unpickler. Store tier: the command is a process."""
import io

import torch
from tampered_checkpoint import tampered


def test_the_payload_is_live_when_loaded_without_weights_only(tmp_path):
    # Proves the unit tests can fail: the same bytes run the command under a full unpickler.
    marker = tmp_path / "pwned"
    torch.load(io.BytesIO(tampered(marker)), weights_only=False)
    assert marker.exists()
