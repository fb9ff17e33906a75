"""Shared CLI plumbing: printing errors and diagnostics. Only the cli package prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batchops.config import parse_duration
from batchops.errors import BatchopsError, InvalidInputError
from batchops.textsafe import inert, json_text


def duration(text: str) -> float:
    """argparse type of every duration flag: ``30``, ``30s``, ``2m``...; zero and less refused."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def delay(text: str) -> float:
    """argparse type of a delay, where zero means none: a duration that may be 0."""
    try:
        return parse_duration(text, allow_zero=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (workers, concurrency)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def print_error(exc: BatchopsError, args: argparse.Namespace) -> None:
    if getattr(args, "output", "text") == "json":
        body: dict[str, object] = {"error": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, InvalidInputError):
            body["diagnostics"] = [d.__dict__ for d in exc.diagnostics]
        print(json_text(body), file=sys.stdout)
        return
    if isinstance(exc, InvalidInputError):
        for diagnostic in exc.diagnostics:
            print(inert(diagnostic), file=sys.stderr)
        _annotate(exc)
    print(f"error: {inert(exc)}", file=sys.stderr)  # messages quote servers and datasets


def _annotate(exc: InvalidInputError) -> None:
    """Under GitHub Actions, invalid input stops plan and apply with the same ``::error``
    annotations as `batchops validate`, so the problems show on the pull request's diff."""
    from batchops.config import load_settings
    from batchops.render.diagnostics import github_annotations

    if load_settings().github_actions and exc.diagnostics:
        print(github_annotations(exc.diagnostics), file=sys.stderr)


def append_step_summary(path: Path, markdown: str) -> None:
    """Append Markdown to $GITHUB_STEP_SUMMARY (GitHub renders the file after the step)."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(markdown + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small file whole or not at all (temp beside it, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
