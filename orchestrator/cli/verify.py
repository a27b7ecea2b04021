"""`transfer-sweep verify SWEEP_OR_FOLDER --sample K`: retrain K committed rows in a scratch store and
say of each whether it is bitwise equal (the retraining is orchestrator/execution/verify.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from orchestrator.cli import args as options
from orchestrator.errors import EXIT_FAILED, EXIT_OK, UsageError
from orchestrator.execution.verify import (
    RESULTS_FILE,
    Rows,
    folder_rows,
    sample,
    sweep_rows,
    verdict_lines,
    verify_rows,
)
from orchestrator.sources import stored_sweep
from orchestrator.spec import DEFAULT_STORE


def add_parsers(sub) -> None:
    """Register `verify`."""
    sp = sub.add_parser("verify", help="retrain K committed rows in a scratch store: bitwise equal, or the difference")
    sp.add_argument("source", help="a results folder (holding results.parquet, as `report --out` writes) or a "
                    "sweep's name in --store")
    sp.add_argument("--sample", type=int, required=True, metavar="K", help="rows to retrain (their bases too)")
    sp.add_argument("--seed", type=int, default=0, help="which rows are drawn (default 0)")
    sp.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="trainings at a time (default: CPUs)")
    options.add_store(sp)
    sp.set_defaults(func=cmd_verify)


def read_rows(source: str, store_uri: Optional[str], endpoint: Optional[str]) -> Rows:
    """The rows of a results folder, or of a sweep named by name in --store (which must exist)."""
    path = Path(source)
    if path.is_dir():
        return folder_rows(source)
    if path.suffix in (".parquet", ".yaml", ".yml") or os.sep in source:
        raise UsageError(f"{source}: no such results folder (verify reads a folder holding {RESULTS_FILE}, "
                         "or a sweep's name with --store)")
    local = store_uri or DEFAULT_STORE
    if "://" not in local and not Path(local).is_dir():  # opening a missing folder would create it
        raise UsageError(f"store {local}: no such folder (verify reads a sweep from an existing store)")
    return sweep_rows(stored_sweep(source, store_uri, endpoint))


def cmd_verify(args) -> int:
    """`transfer-sweep verify`: exit 0 iff every retrained row in a matching environment is bitwise equal."""
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give 1 or more trainings at a time")
    rows = read_rows(args.source, args.store, args.endpoint)
    chosen = sample(rows, args.sample, args.seed)
    print(f"verify {args.source}: {len(chosen)} of {len(rows.rows)} row(s) drawn (seed {args.seed}), "
          "retrained from their settings in a scratch store", flush=True)
    verdicts = verify_rows(chosen, rows, args.jobs, lambda line: print(line, flush=True))
    for line in verdict_lines(verdicts):
        print(line)
    return EXIT_FAILED if any(v.fails for v in verdicts) else EXIT_OK
