"""How commands end: the exit codes, and the error every command turns into one line on stderr.

Exit codes: 0 everything committed (or nothing to do); 1 some trials (or shards) failed, everything
else finished; 2 a usage error (bad spec, store, address or command line: nothing was run);
130 interrupted (committed results are kept).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A user-facing one-line problem with the command line, a spec, a store or a cluster address."""
