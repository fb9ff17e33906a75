"""The command line: parses flags, calls the library, prints, and exits. Nothing else prints.

Each command lives in its own module (``batchops.cli.<command>``) exposing ``register(subparsers,
parents)``; ``main`` maps errors to the exit codes of DESIGN.md section 6.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from batchops import __version__
from batchops.errors import EXIT_INTERRUPTED, BatchopsError

EXIT_BROKEN_PIPE = 141  # what a shell reports for a program stopped by SIGPIPE (128 + 13)

COMMANDS = (
    "init", "validate", "schema", "plan", "apply", "status", "results", "describe", "cancel",
    "delete", "watch", "serve",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    import importlib

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--output", "-o", choices=("text", "json"), default="text", help="output format"
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="more detail")
    parser = argparse.ArgumentParser(
        prog="batchops",
        description="Declarative batch inference on Fireworks: manifests in, results out.",
        epilog="With no FIREWORKS_API_KEY, commands run against an embedded local backend.",
    )
    parser.add_argument("--version", action="version", version=f"batchops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"batchops.cli.{name}")
        module.register(sub, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A reader that goes away (``batchops plan -o json | head``) ends it
    quietly: no traceback, and no "Exception ignored" when Python flushes stdout at exit."""
    try:
        return _main(argv)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a file: nothing to flush
        pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BatchopsError as exc:
        from batchops.cli.common import print_error

        print_error(exc, args)
        return exc.exit_code
    return code


def run() -> None:  # pragma: no cover - console entry when used as `python -m batchops`
    sys.exit(main())
