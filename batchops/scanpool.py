"""Validate a big dataset on every core: helper processes (``batchops.rowscan``) each take a
share of its bytes while this process hashes its files.

Called by ``batchops.datasets.inspect_dataset`` for a dataset of at least ``PART_MIN`` bytes per
helper on a machine with two cores or more. Decoding rows holds the GIL, so only processes can
share it out; each helper runs the same fast checks as the in-process read, on whole lines. The
helpers hash custom_ids under one PYTHONHASHSEED chosen here, so their digests merge into one
``CompactIds`` and a custom_id repeated across two shares is still found. This module only
answers "all good" (with rows, hashes, format and digests) or None: on None - a block the fast
path refuses, formats that differ between shares, a helper that failed - the caller reads the
dataset itself, precisely, and reports every problem exactly as it always does.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from batchops.idset import CompactIds

PART_MIN = 32 * 2**20  # bytes a helper is worth starting for (one costs ~0.1 s to start)
MAX_HELPERS = 4
HASH_BLOCK = 8 * 2**20
_NEWLINE_SEARCH = 2**20  # read at a time while looking for the line start after a cut
_MAX_SEARCH = 16 * 2**20  # no newline this far after a cut: do not cut there
_MAX_FACTS = 2**20  # the longest first line of a helper's answer read

Range = tuple[Path, int, int]  # a file, and the bytes [start, end) of it a helper reads
_Answer = tuple[str | None, list[int]]  # a helper's format, and its rows per range


@dataclass(frozen=True)
class PoolScan:
    """What the helpers found, every row of the dataset being good."""

    format: str | None  # None: every share took it from its first row, and they agreed
    rows: tuple[int, ...]  # per file, in the order given
    sha256: tuple[str, ...]  # per file
    seen: CompactIds


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def helpers_for(sizes: Sequence[int]) -> int:
    """How many helpers a dataset of files of ``sizes`` bytes is worth; below 2, none."""
    if not sizes or min(sizes) == 0 or not sys.executable:  # an empty file: say so precisely
        return 0
    count = min(_cpus(), MAX_HELPERS, sum(sizes) // max(PART_MIN, 1))
    return count if count >= 2 else 0


def scan(files: Sequence[tuple[Path, int]], fmt: str | None, helpers: int) -> PoolScan | None:
    """Validate ``files`` (path, size) with ``helpers`` processes; None: read it precisely."""
    shares = split(files, helpers)
    seed = str(1 + int.from_bytes(os.urandom(4), "little") % (2**32 - 2))  # PYTHONHASHSEED
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = [_start(share, fmt, seed) for share in shares]
        sha256 = tuple(_sha256(path) for path, _ in files)  # meanwhile, on this core
        seen = CompactIds()
        answers = [_answer(proc, seen) for proc in procs]
    except OSError:
        return None
    finally:
        for proc in procs:
            _stop(proc)
    return _combine(files, shares, answers, sha256, seen)


def split(files: Sequence[tuple[Path, int]], count: int) -> list[list[Range]]:
    """The files' bytes in ``count`` shares of about equal size, cut at line starts."""
    total = sum(size for _, size in files)
    targets = [total * k // count for k in range(1, count)]
    shares: list[list[Range]] = [[] for _ in range(count)]
    base = 0
    for path, size in files:
        cuts = {_line_start(path, t - base, size) for t in targets if base < t < base + size}
        edges = sorted({0, size} | {c for c in cuts if c is not None})
        for start, end in itertools.pairwise(edges):
            shares[sum(1 for t in targets if t <= base + start)].append((path, start, end))
        base += size
    return [share for share in shares if share]


def _line_start(path: Path, offset: int, size: int) -> int | None:
    """The start of the first line after ``offset``, or None when none begins near it."""
    with path.open("rb") as f:
        f.seek(offset)
        for start in range(offset, min(size, offset + _MAX_SEARCH), _NEWLINE_SEARCH):
            found = f.read(_NEWLINE_SEARCH).find(b"\n")
            if found >= 0:
                cut = start + found + 1
                return cut if cut < size else None
    return None


def _start(share: list[Range], fmt: str | None, seed: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-P", "-m", "batchops.rowscan", fmt or "-"]
    for path, start, end in share:
        args += [str(path), str(start), str(end)]
    env = {**os.environ, "PYTHONHASHSEED": seed}
    devnull = subprocess.DEVNULL
    return subprocess.Popen(args, stdin=devnull, stdout=subprocess.PIPE, stderr=devnull, env=env)


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
    assert proc.stdout is not None
    try:
        facts = json.loads(proc.stdout.readline(_MAX_FACTS))
        fmt, rows = facts["format"], facts["rows"]
        seen.read(proc.stdout)
    except (ValueError, TypeError, KeyError):
        return None
    if proc.wait() != 0 or fmt not in ("CHAT", "COMPLETION", None) or not isinstance(rows, list):
        return None
    return fmt, rows


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:  # interrupted: its answer is no longer wanted
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _combine(
    files: Sequence[tuple[Path, int]],
    shares: list[list[Range]],
    answers: list[_Answer | None],
    sha256: tuple[str, ...],
    seen: CompactIds,
) -> PoolScan | None:
    formats = {a[0] for a in answers if a is not None}
    if None in answers or len(formats) != 1:  # a problem, or two formats: say it precisely
        return None
    rows = dict.fromkeys((path for path, _ in files), 0)
    for share, answer in zip(shares, answers, strict=True):
        if answer is None or len(answer[1]) != len(share):
            return None
        for (path, _, _), count in zip(share, answer[1], strict=True):
            rows[path] += count
    return PoolScan(formats.pop(), tuple(rows[path] for path, _ in files), sha256, seen)
