"""`transfer-sweep`: plan, run, resume, status and report layer-wise transfer sweeps.

Every user mistake ends as one line on stderr and exit code 2 (no traceback): each is a OneLineError,
caught here and nowhere else; work that failed for good while the rest is committed (trials, shards)
ends with exit code 1 after everything else has finished (orchestrator/errors.py). The commands live
one family per module beside this one.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional

from orchestrator.cli import data, import_folder, plan, report, run, status, submit, verify
from orchestrator.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, OneLineError, WorkFailed, print_error

COMMAND_FAMILIES = (plan, run, status, submit, report, data, verify, import_folder)  # the order of --help


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the `transfer-sweep` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The CLI reports store problems as one line when retries run out; the per-retry warnings are for
    # worker logs (and for --verbose), not for a terminal.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sweepcore.store").setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        code = int(args.func(args) or 0)
        if "ray" in sys.modules:  # only commands that ran something import Ray
            from orchestrator.execution.session import disconnect  # noqa: PLC0415
            if disconnect():
                _exit_now(code)
        return code
    except WorkFailed as exc:
        print_error(str(exc))
        return EXIT_FAILED
    except OneLineError as exc:
        print_error(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:  # `transfer-sweep plan ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("transfer-sweep: interrupted; committed results are kept, run `resume` to finish",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit_now(code: int) -> None:
    """Exit once everything is said and Ray is left: skip the interpreter's teardown of Ray's and
    Tune's modules and threads (~1.3 s measured), which saves nothing a user needs."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each command family adds its own sub-commands."""
    p = argparse.ArgumentParser(prog="transfer-sweep", description=(__doc__ or "").splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log store retries and Ray details")
    sub = p.add_subparsers(dest="command", required=True)
    for family in COMMAND_FAMILIES:
        family.add_parsers(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())
