"""Files as batchops wrote or read them: enough to tell later, by stat or by hash, if they moved.

``FileStamp`` is how a results record (``batchops.results``) remembers the files it wrote and the
input files it answered (``InputsUsed``); ``batchops results`` compares the latter with the input
as it is now, to join answers to the rows that really asked them. Imports nothing of ours.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec


class FileStamp(msgspec.Struct, frozen=True, gc=False):
    """A file as we wrote it: enough to tell by stat (or, if needed, a hash) whether it moved."""

    path: str
    size: int
    mtime_ns: int
    sha256: str


class InputsUsed(msgspec.Struct, frozen=True, gc=False):
    """The input the merged results answer: its files as they were at the merge (``sha256`` from
    the datasets' stat cache, "" when it had none), and, for a rendered dataset, the path of
    its input rows kept under ``.batchops/inputs/`` (``batchops.sources.kept``), which outlive
    the artifact. ``batchops results`` joins the answers to these rows when the input changed."""

    files: tuple[FileStamp, ...]
    kept: str | None = None


def file_sha256(path: Path) -> str:
    """A file's SHA-256, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stamp_matches(stamp: FileStamp, path: Path | str) -> bool:
    """Same size and mtime: trusted without reading. Same size, new mtime (a touch): hash it."""
    try:
        stat = os.stat(path)  # noqa: PTH116 (str paths: see load_record)
    except OSError:
        return False
    if stat.st_size != stamp.size:
        return False
    return stat.st_mtime_ns == stamp.mtime_ns or file_sha256(Path(path)) == stamp.sha256


def inputs_used(files: Sequence[Path], sha256: Callable[[Path, os.stat_result], str]) -> InputsUsed:
    """``InputsUsed`` of ``files`` as they are now (``sha256``: the known digest, or "")."""
    stamps = []
    for file in files:
        st = file.stat()
        stamps.append(FileStamp(str(file), st.st_size, st.st_mtime_ns, sha256(file, st)))
    return InputsUsed(tuple(stamps))


def inputs_unchanged(used: InputsUsed, files: Sequence[Path]) -> bool:
    """The same files with the same bytes as at the merge: by stat, or by hash after a touch."""
    if [s.path for s in used.files] != [str(f) for f in files]:
        return False
    return all(stamp_matches(stamp, stamp.path) for stamp in used.files)


def same_inputs(a: InputsUsed, b: InputsUsed) -> bool:
    """Two merges answered the same input (two jobs on one dataset, side by side)."""
    if len(a.files) != len(b.files):
        return False
    for x, y in zip(a.files, b.files, strict=True):
        if (x.path, x.size) != (y.path, y.size):
            return False
        if x.mtime_ns != y.mtime_ns and not (x.sha256 and x.sha256 == y.sha256):
            return False
    return True
