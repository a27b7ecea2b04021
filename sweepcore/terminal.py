"""The one escaper for text that came from a store (or any other input) on its way to a terminal.

A shared store has other writers: a failure record, a trial's error or a spec value can carry escape
sequences that move the cursor, rewrite earlier lines or set the window title, and newlines that
forge a line of output. Every command shows such text through `for_terminal`, which keeps it on one
line and makes every control character visible.
"""
from __future__ import annotations

import re

# C0 controls (tab and newline included: one value stays on one line), DEL, C1 controls, and the
# Unicode bidi overrides that reorder what a reader sees
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: object, limit: int | None = None) -> str:
    """`text` as one printable line: control characters shown as \\xNN (\\uNNNN for bidi controls),
    cut to `limit` characters with an ellipsis."""
    line = _CONTROL.sub(_visible, str(text))
    if limit is not None and len(line) > limit:
        return line[: max(0, limit - 3)] + "..."
    return line


def lines_for_terminal(text: object, limit: int | None = None) -> list[str]:
    """A multi-line text (a traceback) as lines, each escaped as `for_terminal` does."""
    return [for_terminal(line, limit) for line in str(text).splitlines()]
