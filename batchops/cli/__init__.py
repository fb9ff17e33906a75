"""The command line: parses flags, calls the library, prints, and exits. Nothing else prints.

Each command lives in its own module (``batchops.cli.<command>``) exposing ``register(subparsers,
parents)``, and has a row in ``COMMANDS``. Only the module of the command being run is imported:
the others appear in the parser as their one-line help, so start-up does not pay for every
command's dependencies (tests/test_startup.py keeps it so). ``main`` maps errors to the exit codes
of DESIGN.md section 6.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from batchops import __version__
from batchops.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, BatchopsError, Terminated

EXIT_BROKEN_PIPE = 141  # what a shell reports for a program stopped by SIGPIPE (128 + 13)

# command -> its one-line help in `batchops --help`. A new command is a module
# batchops.cli.<command> with register(sub, parents) (which sets ``func``) and a row here.
COMMANDS: dict[str, str] = {
    "init": "start a project: batchops.yaml, .gitignore, an example",
    "validate": "check manifests and datasets; report every problem with file:line:col",
    "schema": "print the JSON Schema of the manifests",
    "plan": "show what apply would do, and why",
    "apply": "make the account match the manifests",
    "status": "each declared job: state, rows, results",
    "results": "answers joined to their inputs: a table, JSON, JSONL, CSV or Parquet",
    "describe": "one job's history: attempts, continuations, states, rows, results",
    "cancel": "stop owned running jobs by name (no more billing)",
    "delete": "delete owned jobs by name (with their output datasets)",
    "watch": "reconcile continuously (the GitOps daemon)",
    "serve": "run the local Fireworks-compatible backend",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Given ``argv``, only the command it names is registered in full (its module
    imported); the rest are listed by name and help. Without ``argv``, every command is."""
    import importlib

    wanted = _command_in(argv) if argv is not None else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--output", "-o", choices=("text", "json"), default="text", help="output format"
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="more detail")
    parser = argparse.ArgumentParser(
        prog="batchops",
        description="Declarative batch inference on Fireworks and OpenAI-compatible Batch APIs: "
        "manifests in, results out.",
        epilog="With no FIREWORKS_API_KEY, commands run against an embedded local backend, "
        "except in CI (CI or GITHUB_ACTIONS set): there a missing key is an error (exit 1) "
        "unless --local is passed or batchops.yaml says backend: local.",
    )
    parser.add_argument("--version", action="version", version=f"batchops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        if argv is None or name == wanted:
            importlib.import_module(f"batchops.cli.{name}").register(sub, [common])
        else:
            sub.add_parser(name, help=summary)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word: the first argument that is not an option (the top level has only
    --version and --help, neither of which takes a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


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
    """A signal at any point, start-up (importing the commands) included, ends the command with
    130 (SIGINT) or 143 (SIGTERM, once ``run`` installed its handler), never a traceback."""
    args: argparse.Namespace | None = None
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
        code: int = args.func(args)
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BatchopsError as exc:
        from batchops.cli.common import print_error

        print_error(exc, args or argparse.Namespace(output="text"))
        return exc.exit_code
    return code


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Unwind (so that cleanups run) with KeyboardInterrupt or Terminated; but inside an import
    there is nothing of ours to clean up, and an exception raised in a C extension's start-up can
    crash the interpreter at exit: then exit at once, as before the CLI was imported."""
    term = signum == signal.SIGTERM
    if _importing(frame):  # no import inside a signal handler: write and leave
        os.write(2, b"terminated\n" if term else b"interrupted\n")
        os._exit(EXIT_TERMINATED if term else EXIT_INTERRUPTED)
    raise Terminated if term else KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def run() -> None:
    """Called by ``batchops.__main__.start`` (the console script, ``python -m batchops``) once
    the CLI is imported: SIGINT and SIGTERM unwind from here (so cleanups run), and a second
    signal while the first is handled still exits with its code, quietly."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)  # from here, unwind (cleanups run)
    try:
        code = main()
    except Terminated:
        code = EXIT_TERMINATED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    for sig in (signal.SIGINT, signal.SIGTERM):  # the command is over: its exit code stands
        signal.signal(sig, signal.SIG_IGN)  # (at exit Python resets its handlers to the default)
    sys.exit(code)
