"""Every subcommand's --help says what it does in a paragraph, not only its usage and flags."""

from __future__ import annotations

import argparse

import pytest

from batchops.cli import COMMANDS, build_parser


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()  # every command registered in full
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_description(command: str) -> None:
    description = subparsers()[command].description or ""
    assert len(description.split()) >= 12, f"`batchops {command} --help` has no description"
