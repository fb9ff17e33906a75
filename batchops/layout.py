"""File names batchops derives from a job's ``output.path``, and the folders it never writes into.

Used by ``batchops.manifest`` (to refuse output paths that would overwrite a file the user owns)
and by ``batchops.results`` (to write them): one rule in one place, so validation checks exactly
the files that are later written.
"""

from __future__ import annotations

from pathlib import Path

from batchops.config import STATE_DIR

# Anything under these (at any depth, as written or through a symlink) is never a results path.
RESERVED_DIRS = (".git", STATE_DIR)


def errors_path(output: Path) -> Path:
    """The sibling errors file: ``<stem>.errors.jsonl``."""
    return output.with_name(f"{output.stem}.errors.jsonl")


def derived_paths(output: Path, table: Path | None = None) -> tuple[Path, ...]:
    """Every file batchops writes for a job whose output path is ``output``: the results, their
    errors file and, with ``spec.output.table``, the flattened table at ``table``."""
    return (output, errors_path(output)) if table is None else (output, errors_path(output), table)
