"""A helper process that validates byte ranges of dataset files on the fast path alone.

Run by ``batchops.scanpool`` (never imported by batchops itself), one process per core, each on
its share of a big dataset: ``python -P -m batchops.rowscan FORMAT PATH START END [PATH START
END ...]`` (FORMAT is ``CHAT``, ``COMPLETION`` or ``-`` for "from the first row"). Every range
starts at the beginning of a line and ends after a newline or at the end of its file.

The checks are exactly those of ``batchops.datasets`` (its ``_Lines`` and ``_fast_block``, UTF-8
included): this process only says "every row of my ranges is good", never what is wrong. On
success it prints one JSON line (``{"format": ..., "rows": [rows per range]}``) and then the
custom_ids' digests (``CompactIds.dump``, hashed under the PYTHONHASHSEED its caller chose, so
that all helpers' digests can be merged); anything else - a block the fast path refuses, a line
too long, a short read - exits with ``NEEDS_PRECISE`` and the caller reads the dataset itself,
precisely, to say where.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from batchops.datasets import _fast_block, _FileProblems, _Lines, _Scan
from batchops.idset import CompactIds

NEEDS_PRECISE = 3
# Smaller than datasets.BLOCK (no hashing thread to keep busy here): the rows decoded from a block
# are held until it is done, and several helpers run at once.
BLOCK = 2 * 2**20


class _NeedsPrecise(Exception):
    """A block the fast path refuses: the caller must read the dataset precisely."""


class _FastLines(_Lines):
    """``_Lines`` that stops at the first block the fast path refuses."""

    def _segment(self, data: bytes, start: int, end: int) -> None:
        if start >= end:
            return
        lines = data.count(b"\n", start, end) + (data[end - 1] != 0x0A)
        if not _fast_block(data, start, end, lines, self.scan):
            raise _NeedsPrecise
        self.rows += lines
        self.line += lines


def scan_range(path: Path, start: int, end: int, scan: _Scan) -> int:
    """The rows of ``path[start:end]``, every one good; raises _NeedsPrecise otherwise."""
    problems = _FileProblems(str(path))
    lines = _FastLines(scan, problems)
    with path.open("rb", buffering=0) as f:
        f.seek(start)
        while start < end:
            block = f.read(min(BLOCK, end - start))
            if not block:  # the file shrank since it was measured
                raise _NeedsPrecise
            start += len(block)
            lines.feed(block)
        lines.finish()
    if problems.all():  # a line longer than MAX_ROW_BYTES
        raise _NeedsPrecise
    return lines.rows


def main(argv: list[str]) -> int:
    gc.disable()  # a short-lived process whose rows make no cycles
    fmt = None if argv[0] == "-" else argv[0]
    scan = _Scan(Path("/"), fmt, seen=CompactIds())
    ranges = argv[1:]
    try:
        rows = [
            scan_range(Path(ranges[i]), int(ranges[i + 1]), int(ranges[i + 2]), scan)
            for i in range(0, len(ranges), 3)
        ]
    except (_NeedsPrecise, OSError):
        return NEEDS_PRECISE
    assert isinstance(scan.seen, CompactIds)
    out = sys.stdout.buffer
    out.write(json.dumps({"format": scan.format, "rows": rows}).encode() + b"\n")
    scan.seen.write(out)  # a range at a time: no copy of the digests
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
