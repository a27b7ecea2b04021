"""`transfer-sweep report NAME` and `compare A B`: figures, tables and the paper's claims from a sweep's
committed rows, and two studies side by side. Reading the store is here; what the rows say is
orchestrator/analysis/, which only sees data frames.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from rich.console import Console

from orchestrator.cli import args as options
from orchestrator.errors import UsageError
from orchestrator.sources import open_command_store, stored_sweep
from orchestrator.spec import Plan, Sweep
from orchestrator.spec.replicate import reached_plan
from sweepcore.layout import report_prefix
from sweepcore.store import Store


def add_parsers(sub) -> None:
    """Register `report` and `compare`."""
    sp = sub.add_parser("report", help="figures and the paper's claims, from the results")
    sp.add_argument("sweep", help="sweep name")
    options.add_store(sp)
    sp.add_argument("--out", help="output folder (default: <store>/sweeps/<name>/report when local, "
                    "else ./report-<name>)")
    sp.add_argument("--metric", choices=("top1_paper", "top1_final"), default="top1_paper")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("compare", help="two studies side by side, layer by layer (one figure + a table)")
    sp.add_argument("first", help="a results.parquet (as `report --out` writes) or a sweep name in --store; "
                    "several joined by ',' are one study (a trial in two of them counted once; its rows must agree)")
    sp.add_argument("second", help="the same, for the study to compare with")
    sp.add_argument("--labels", help="two names for the figure, comma-separated (default: the inputs)")
    options.add_store(sp)
    sp.add_argument("--out", required=True, help="folder for compare.png and compare.md")
    sp.set_defaults(func=cmd_compare)


def sweep_frames(sweep: Sweep, plan: Plan):
    """(the rows of the plan's trials as an Arrow table and as a data frame, their bases' curves as an
    Arrow table or None)."""
    from sweepcore.records import read_base_curves, read_results  # noqa: PLC0415 (Arrow only where rows are read)

    table = read_results(sweep.store, set(plan.by_key()))
    results = table.to_pandas()
    return table, results, read_base_curves(sweep.store, results)


def cmd_report(args) -> int:
    """Write the sweep's report (figures, report.md, the tables) and print each claim's verdict."""
    import pandas as pd  # noqa: PLC0415 (pandas only for `report`)

    from orchestrator.analysis import write_report, write_tables  # noqa: PLC0415 (matplotlib only for `report`)
    from sweepcore.records import committed_keys, read_rounds  # noqa: PLC0415 (Arrow only where rows are read)

    sweep = stored_sweep(args.sweep, args.store, args.endpoint)
    spec, store = sweep.spec, sweep.store
    plan = reached_plan(spec, committed_keys(store))
    record = read_rounds(store, spec.name) if spec.replicate else None
    table, results, curves = sweep_frames(sweep, plan)
    planned = pd.DataFrame([{k: getattr(t, k) for k in ("key", "name", "split", "source_half", "target_half",
                                                          "n", "treatment", "seed")} | {"dataset": spec.dataset}
                            for t in plan.trials])
    local = "://" not in spec.store
    out = Path(args.out) if args.out else (
        Path(store.uri(report_prefix(spec.name))) if local else Path(f"report-{spec.name}"))
    within = store.local_path() if local and not args.out else None  # default: it stays inside the store
    info = write_report(results, out, planned=planned, title=f"sweep {spec.name} ({spec.dataset})",
                        metric=args.metric, curves=curves.to_pandas() if curves is not None else None,
                        within=within, rounds=record["history"] if record else ())
    # the sweep's rows in one file, to share or commit beside the figures; the bases' curves let a
    # reader recompute the convergence check (no curves: an earlier report's file is removed)
    written = write_tables(out, {"results.parquet": table, "base_curves.parquet": curves}, within=within)
    console = Console()
    for f in [*info["files"], *written]:
        console.print(f"wrote {f}")
    for claim in info["claims"]:
        print(f"claim {claim.id}: {claim.verdict:<16} {claim.title}")
    if info["missing"]:
        console.print(f"[yellow]{len(info['missing'])} planned trials have no result yet[/]")
    return 0


class StudyReader:
    """Reads the studies `compare` is given: results files as they are, sweep names from the one store
    --store names, opened on the first name and then reused."""

    def __init__(self, store_uri: Optional[str], endpoint: Optional[str]):
        self.store_uri, self.endpoint = store_uri, endpoint
        self._store: Optional[Store] = None

    def studies(self, refs: str):
        """(the results of each of one or more comma-separated refs, their base curves or None)."""
        import pandas as pd  # noqa: PLC0415 (pandas only where studies are read)

        refs_given = [ref for ref in refs.split(",") if ref]
        parts = [self.study(ref) for ref in refs_given]
        if not parts:
            raise UsageError(f"{refs!r}: name a results file or a sweep")
        for ref, (results, _) in zip(refs_given, parts):
            results.attrs["source"] = ref  # named when two inputs disagree about one key
        curves = [c for _, c in parts if c is not None]
        return [r for r, _ in parts], (pd.concat(curves, ignore_index=True).drop_duplicates(["key", "step"])
                                       if curves else None)

    def study(self, ref: str):
        """(results, base curves or None) of a results file or of a sweep in the store."""
        import pandas as pd  # noqa: PLC0415 (pandas only where studies are read)

        path = Path(ref)
        if ref.endswith(".parquet"):
            if not path.is_file():
                raise UsageError(f"{ref}: no such results file")
            try:
                results = pd.read_parquet(path)
                curves_path = path.with_name("base_curves.parquet")
                curves = pd.read_parquet(curves_path) if curves_path.is_file() else None
            except (OSError, ValueError) as exc:
                raise UsageError(f"{ref}: not a results file ({' '.join(str(exc).split())[:120]})") from None
            return results, curves
        if self._store is None:
            self._store = open_command_store(self.store_uri, self.endpoint)
        sweep = stored_sweep(ref, self.store_uri, self.endpoint, store=self._store)
        from sweepcore.records import committed_keys  # noqa: PLC0415 (Arrow only where rows are read)
        _, results, base_curves = sweep_frames(sweep, reached_plan(sweep.spec, committed_keys(self._store)))
        return results, base_curves.to_pandas() if base_curves is not None else None


def cmd_compare(args: argparse.Namespace) -> int:
    """Run `compare`; bad inputs are UsageErrors (one line, exit 2)."""
    from orchestrator.analysis.compare import compare  # noqa: PLC0415 (matplotlib only for `compare`)

    labels = tuple(args.labels.split(",")) if args.labels else (args.first, args.second)
    if len(labels) != 2 or not all(labels):
        raise UsageError(f"--labels {args.labels}: give two names separated by a comma")
    reader = StudyReader(args.store, args.endpoint)
    (ra, ca), (rb, cb) = (reader.studies(refs) for refs in (args.first, args.second))
    info = compare(ra, rb, (labels[0], labels[1]), Path(args.out), (ca, cb))
    for f in info["files"]:
        print(f"wrote {f}")
    return 0
