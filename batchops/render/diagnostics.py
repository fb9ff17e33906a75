"""Diagnostics as text, JSON and GitHub Actions annotations. Pure: returns strings and dicts.

Called by ``batchops.cli.validate`` (and any command that reports invalid input).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from batchops.errors import Diagnostic
from batchops.textsafe import annotation_data, annotation_property, inert


class Located(Protocol):
    """Where a declaration is (``manifest.desired.Source`` has this shape)."""

    @property
    def path(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def col(self) -> int: ...


def diagnostics_text(diags: Sequence[Diagnostic]) -> str:
    """One ``path:line:col: message`` per line, then a count."""
    count = len(diags)
    lines = [inert(d) for d in sorted(diags)]  # messages quote dataset content
    lines.append(f"{count} problem{'s' if count != 1 else ''} found")
    return "\n".join(lines)


def diagnostics_json(diags: Sequence[Diagnostic]) -> dict[str, Any]:
    return {
        "valid": not diags,
        "problems": len(diags),
        "diagnostics": [
            {"path": d.path, "line": d.line, "col": d.col, "message": d.message}
            for d in sorted(diags)
        ],
    }


def github_annotations(diags: Sequence[Diagnostic]) -> str:
    """``::error file=P,line=N,col=M::message`` lines, escaped as the Actions runner expects."""
    return "\n".join(
        f"::error file={annotation_property(d.path)},line={d.line},col={d.col}::"
        f"{annotation_data(d.message)}"
        for d in sorted(diags)
    )


def github_annotation(at: Located | None, message: str) -> str:
    """One ``::error`` line, at a file and line when something there is to blame."""
    if at is None:
        return f"::error::{annotation_data(message)}"
    return (
        f"::error file={annotation_property(at.path)},line={at.line},col={at.col}::"
        f"{annotation_data(message)}"
    )
