"""`python tests/store_open_counter.py COUNT_FILE ARGS...`: the `transfer-sweep` CLI with every store
it opens in this process counted, one line per open appended to COUNT_FILE (a file, not a counter
printed at exit: a command that leaves Ray ends with os._exit). The processes it ships work to are
not counted: they open the store's reference on their own side."""
from __future__ import annotations

import sys
from pathlib import Path

from sweepcore.store import LocalStore, S3Store

COUNT_FILE = Path(sys.argv[1])


def _counted(cls):
    init = cls.__init__

    def __init__(self, *args, **kwargs):
        with open(COUNT_FILE, "a") as fh:
            fh.write(f"{cls.__name__}\n")
        init(self, *args, **kwargs)
    cls.__init__ = __init__


for store_class in (LocalStore, S3Store):
    _counted(store_class)

from orchestrator.cli.main import main  # noqa: E402 (after the patch: nothing opens a store at import)

sys.exit(main(sys.argv[2:]))
