"""What the help says a command defaults to is what it does: the store a name-only command reads."""
from __future__ import annotations

import argparse

import pytest

from orchestrator.cli import build_parser
from orchestrator.spec import DEFAULT_STORE


def _store_help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if "--store" in a.option_strings)
    return " ".join(action.help.split())


@pytest.mark.parametrize("command", ["status", "report", "logs", "verify", "compare"])
def test_commands_that_take_a_sweep_name_say_they_default_to_the_local_store(command):
    assert f"default {DEFAULT_STORE})" in _store_help(command).replace("default: ", "default ")


def test_resume_and_run_say_whose_store_they_default_to():
    assert _store_help("run").endswith("(default: the spec's store)")
    assert _store_help("resume").endswith(f"(default: the spec file's store; with a sweep name, {DEFAULT_STORE})")
