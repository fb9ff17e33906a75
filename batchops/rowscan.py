"""A helper process that validates chunks of dataset files on the fast path alone.

Run by ``batchops.scanpool`` (never imported by batchops itself), one process per core, all on
one big dataset: ``python -P -m batchops.rowscan FORMAT CHUNK PATH START END [CHUNK PATH START
END ...]`` (FORMAT is ``CHAT``, ``COMPLETION`` or ``-`` for "from the first row"; a chunk is one
or more ranges, each starting at the beginning of a line and ending after a newline or at the
end of its file). The helper takes chunk numbers from its stdin, a queue it shares with the
other helpers, until the queue is empty.

The checks are exactly those of ``batchops.rowcheck`` (its ``Lines`` and ``fast_block``, UTF-8
included): this process only says "every row of my chunks is good", never what is wrong. On
success it prints one JSON line (``{"format": ..., "taken": {chunk: [rows per range]}}``) and
then the custom_ids' digests (``CompactIds.dump``, hashed under the PYTHONHASHSEED its caller
chose, so that all helpers' digests can be merged); anything else - a block the fast path
refuses, a line too long, a short read, a malformed queue record - exits with ``NEEDS_PRECISE``
and the caller reads the dataset itself, precisely, to say where.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from batchops import chunkpool
from batchops.idset import CompactIds
from batchops.rowcheck import FileProblems, Lines, Scan, fast_block

NEEDS_PRECISE = 3
# Smaller than datasets.BLOCK (no hashing thread to keep busy here): the rows decoded from a block
# are held until it is done, and several helpers run at once.
BLOCK = 2 * 2**20


class _NeedsPrecise(Exception):
    """A block the fast path refuses: the caller must read the dataset precisely."""


class _FastLines(Lines):
    """``Lines`` that stops at the first block the fast path refuses."""

    def _segment(self, data: bytes, start: int, end: int) -> None:
        if start >= end:
            return
        lines = data.count(b"\n", start, end) + (data[end - 1] != 0x0A)
        if not fast_block(data, start, end, lines, self.scan):
            raise _NeedsPrecise
        self.rows += lines
        self.line += lines


def scan_range(path: Path, start: int, end: int, scan: Scan) -> int:
    """The rows of ``path[start:end]``, every one good; raises _NeedsPrecise otherwise."""
    problems = FileProblems(str(path))
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
    scan = Scan(Path("/"), fmt, seen=CompactIds())
    try:
        taken = chunkpool.take_chunks(
            argv[1:], lambda path, start, end: scan_range(path, start, end, scan)
        )
    except (_NeedsPrecise, OSError, ValueError, IndexError):
        return NEEDS_PRECISE
    assert isinstance(scan.seen, CompactIds)
    out = sys.stdout.buffer
    out.write(json.dumps({"format": scan.format, "taken": taken}).encode() + b"\n")
    scan.seen.write(out)  # a range at a time: no copy of the digests
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
