"""The `transfer-sweep` command line: one module per command family, each thin (parse the arguments,
build the sweep, call the spec, execution or analysis code, print). main.py holds the parser and the
one place a one-line error becomes exit code 2."""
from orchestrator.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
