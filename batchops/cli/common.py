"""Shared CLI plumbing: printing errors and diagnostics. Only the cli package prints."""

from __future__ import annotations

import argparse
import json
import sys

from batchops.errors import BatchopsError, InvalidInputError


def print_error(exc: BatchopsError, args: argparse.Namespace) -> None:
    if getattr(args, "output", "text") == "json":
        body: dict[str, object] = {"error": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, InvalidInputError):
            body["diagnostics"] = [d.__dict__ for d in exc.diagnostics]
        print(json.dumps(body), file=sys.stdout)
        return
    if isinstance(exc, InvalidInputError):
        for diagnostic in exc.diagnostics:
            print(str(diagnostic), file=sys.stderr)
    print(f"error: {exc}", file=sys.stderr)
