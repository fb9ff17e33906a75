"""Validate a big dataset on every core: helper processes (``batchops.rowscan``) take its bytes
a chunk at a time from one queue (``batchops.chunkpool``) while this process hashes its files.

Called by ``batchops.datasets.inspect_dataset`` for a dataset of at least ``PART_MIN`` bytes per
helper on a machine with two cores or more. Each helper runs the same fast checks as the
in-process read, on whole lines. The helpers hash custom_ids under one PYTHONHASHSEED chosen
here, so their digests merge into one ``CompactIds`` and a custom_id repeated across two chunks
is still found. This module only answers "all good" (with rows, hashes, format and digests) or
None: on None - a block the fast path refuses, formats that differ between chunks, a chunk not
answered exactly once, a helper that failed - the caller reads the dataset itself, precisely,
and reports every problem exactly as it always does.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from batchops import chunkpool
from batchops.chunkpool import Taken
from batchops.idset import CompactIds

HASH_BLOCK = 8 * 2**20

_Answer = tuple[str | None, Taken]  # a helper's format, and the rows of each range it took


@dataclass(frozen=True)
class PoolScan:
    """What the helpers found, every row of the dataset being good."""

    format: str | None  # None: every chunk took it from its first row, and they agreed
    rows: tuple[int, ...]  # per file, in the order given
    sha256: tuple[str, ...]  # per file
    seen: CompactIds


def scan(files: Sequence[tuple[Path, int]], fmt: str | None, helpers: int) -> PoolScan | None:
    """Validate ``files`` (path, size) with ``helpers`` processes; None: read it precisely."""
    chunks = chunkpool.chunks_of(files)
    seed = str(1 + int.from_bytes(os.urandom(4), "little") % (2**32 - 2))  # PYTHONHASHSEED
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = {"PYTHONHASHSEED": seed}
        procs = chunkpool.start("batchops.rowscan", [fmt or "-"], chunks, helpers, env)
        sha256 = tuple(_sha256(path) for path, _ in files)  # meanwhile, on this core
        seen = CompactIds()
        answers = [_answer(proc, seen) for proc in procs]
    except OSError:
        return None
    finally:
        for proc in procs:
            chunkpool.stop(proc)
    return _combine(files, chunks, answers, sha256, seen)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(HASH_BLOCK))  # one buffer: no second block while reading
    with path.open("rb", buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(buffer[:size])
    return digest.hexdigest()


def _answer(proc: subprocess.Popen[bytes], seen: CompactIds) -> _Answer | None:
    """A helper's clean answer (its digests merged into ``seen``), or None for anything else.
    The digests are read from the pipe a range at a time, never held whole as bytes."""
    facts = chunkpool.facts(proc)
    if facts is None or facts.get("format") not in ("CHAT", "COMPLETION", None):
        return None
    assert proc.stdout is not None
    try:
        seen.read(proc.stdout)
    except ValueError:
        return None
    return (facts["format"], facts["taken"]) if proc.wait() == 0 else None


def _combine(
    files: Sequence[tuple[Path, int]],
    chunks: list[chunkpool.Chunk],
    answers: list[_Answer | None],
    sha256: tuple[str, ...],
    seen: CompactIds,
) -> PoolScan | None:
    """One answer from the helpers': every chunk answered exactly once, all in one format."""
    clean = [answer for answer in answers if answer is not None]
    if len(clean) != len(answers):
        return None
    formats = {fmt for fmt, taken in clean if taken}  # a helper that took no chunk saw none
    by_file = chunkpool.gather(chunks, [taken for _, taken in clean])
    if by_file is None or len(formats) != 1:
        return None  # a problem, two formats, or a chunk lost: say it precisely
    rows = []
    for path, _ in files:
        counts = by_file.get(path, [])
        if not all(type(count) is int and count >= 0 for count in counts):
            return None
        rows.append(sum(counts))
    return PoolScan(formats.pop(), tuple(rows), sha256, seen)
