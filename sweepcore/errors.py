"""The one kind of error a user sees as one line: every problem they can fix (a spec field, a store, a
file, a command line, a data source) is a `OneLineError` that names the field or file and what is
allowed. The command line catches it in one place and prints `transfer-sweep: error: <message>`,
no traceback, exit 2 (exit 1 for work that failed while the rest is committed: orchestrator/errors.py);
a worker records it in the trial's failure record.
Defined in the shared layer because the store, the records, the workers' data sources and the
orchestrator all raise it.
"""
from __future__ import annotations


class OneLineError(Exception):
    """A user-facing problem stated in one line (the message is what the user reads): whitespace and
    line breaks in it are folded into single spaces."""

    def __init__(self, message: object) -> None:
        super().__init__(" ".join(str(message).split()))
