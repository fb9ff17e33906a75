"""Path rules for manifests: everything stays inside the root.

Called by ``batchops.manifest.loader``. Dataset paths are relative to the manifest file's folder;
job output paths are relative to the root. Absolute paths, ``..`` that climbs out of the root, and
symlinks that point out of it are refused. Each check returns an error message or the result.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

SHARD_SUFFIX = ".jsonl"


class PathProblem(Exception):
    """A path breaks a rule; the message is shown as a Diagnostic at the offending value."""


def display(path: Path, root: Path) -> str:
    """``path`` relative to the root, posix style, or as given when it is outside."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def inside(path: Path, root: Path) -> bool:
    """Whether the normalized absolute ``path`` is ``root`` or below it. A string prefix test on
    POSIX: ``root in path.parents`` builds every parent, a tenth of the load at 1,000 jobs."""
    if os.name == "nt":  # case-insensitive comparisons: leave them to pathlib
        return path == root or root in path.parents
    p, r = str(path), str(root)
    return p == r or p.startswith(r if r.endswith("/") else r + "/")


def resolved(path: Path) -> Path | None:
    """``path.resolve()``, or None when it is a symlink loop. Asked of ``stat`` first because
    ``resolve`` differs by version on a loop (3.11 raises RuntimeError, newer ones may return the
    path half-resolved), and an escaped RuntimeError would be a crash instead of a Diagnostic."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return None


def confine(written: str, base: Path, root: Path) -> Path:
    """``base / written``, normalized, after checking it stays in the root (lexically and via
    symlinks). ``root`` must be resolved. Does not require the path to exist."""
    if PurePosixPath(written).is_absolute() or PureWindowsPath(written).is_absolute():
        raise PathProblem(f"absolute path '{written}' is not allowed; use a relative path")
    lexical = Path(os.path.normpath(base / written))
    if not inside(lexical, root):
        raise PathProblem(f"path '{written}' points outside the root")
    real = resolved(lexical)
    if real is None:
        raise PathProblem(f"path '{written}' is a symlink loop")
    if not inside(real, root):
        raise PathProblem(f"path '{written}' is a symlink to a place outside the root")
    return lexical


def dataset_files(written: str, manifest: Path, root: Path) -> tuple[Path, tuple[Path, ...]]:
    """The dataset's path and its files: itself, or the sorted top-level shards of a folder."""
    path = confine(written, manifest.parent, root)
    if not path.exists():
        link = f" (a symlink to '{path.readlink()}')" if path.is_symlink() else ""
        raise PathProblem(f"dataset path '{display(path, root)}'{link} does not exist")
    if path.is_dir():
        return path, _shards(path, root)
    if path.suffix != SHARD_SUFFIX:
        raise PathProblem(f"dataset path '{display(path, root)}' is not a .jsonl file or a folder")
    if not path.is_file():  # a FIFO would hang the read, a device never end
        raise PathProblem(f"dataset path '{display(path, root)}' is not a regular file")
    return path, (path,)


def _shards(folder: Path, root: Path) -> tuple[Path, ...]:
    named = [p for p in folder.iterdir() if p.suffix == SHARD_SUFFIX]
    special = [p for p in named if p.exists() and not p.is_file() and not p.is_dir()]
    if special:  # a FIFO would hang the read, a device never end: refused, not skipped
        raise PathProblem(f"shard '{display(special[0], root)}' is not a regular file")
    shards = sorted(p for p in named if p.is_file())
    if not shards:
        raise PathProblem(f"dataset folder '{display(folder, root)}' has no top-level .jsonl files")
    for shard in shards:
        if not inside(shard.resolve(), root):
            raise PathProblem(f"shard '{display(shard, root)}' is a symlink outside the root")
    return tuple(shards)


def output_file(written: str, root: Path) -> Path:
    path = confine(written, root, root)
    if path.is_dir():
        raise PathProblem(f"output path '{written}' is a folder; name a file")
    return path
