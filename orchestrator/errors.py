"""How commands end: the exit codes, and the error every command turns into one line on stderr.

Exit codes: 0 everything committed (or nothing to do); 1 some trials (or shards) failed, everything
else finished; 2 a usage error (bad spec, store, address or command line: nothing was run);
130 interrupted (committed results are kept).
"""
from __future__ import annotations

import sys

from sweepcore.errors import OneLineError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "OneLineError", "UsageError", "WorkFailed",
           "print_error"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(OneLineError):
    """A user-facing one-line problem with the command line, a file, a store or a cluster address."""


class WorkFailed(OneLineError):
    """Some of the work failed for good and the rest is committed (shards that did not prepare): one
    line, exit 1 (EXIT_FAILED), as when trials fail; the same command again does only what is missing."""


def print_error(line: str) -> None:
    """Say a problem the way every command ends with one: `transfer-sweep: error: <line>` on stderr."""
    print(f"transfer-sweep: error: {line}", file=sys.stderr, flush=True)
