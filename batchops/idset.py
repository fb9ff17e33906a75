"""The custom_ids a dataset scan has seen, kept compactly: 8 bytes an ID, not a string in a set.

Used by ``batchops.datasets`` (DESIGN.md section 10). At 2.45M rows a ``set[str]`` of custom_ids
held 200+ MB and kept the garbage collector busy; ``CompactIds`` keeps a 64-bit digest of each ID
(the string's own hash) in flat arrays, partitioned by the digest's top bits so that the final
check needs only one small set at a time. It does not answer
"seen before?" per ID: blocks are added whole, and ``doubtful()`` says at the end whether any
digest repeats. A repeat (a duplicate ID, or rarely two IDs with one digest) sends the caller to
scan again with ``ExactIds``, the plain set, which words every problem exactly; so the compact
form changes the memory and time of a scan, never its answer.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Set
from io import BytesIO
from typing import IO

_PARTS = 64  # a digest's part is its top 6 bits: digest >> _SHIFT, -32..31, a list index
_SHIFT = 58


class ExactIds:
    """Every ID as a string: exact answers, for small scans and for re-scanning with problems."""

    def __init__(self, ids: Set[str] = frozenset()) -> None:
        self._ids = set(ids)

    def add_rows(self, ids: Iterable[str], count: int) -> bool:
        """Record the ``count`` IDs of a block, all or none: False if any repeats."""
        block = set(ids)
        if len(block) != count or not self._ids.isdisjoint(block):
            return False
        self._ids |= block
        return True

    def add(self, custom_id: str) -> bool:
        """Record one ID; False if it was already seen (a duplicate)."""
        if custom_id in self._ids:
            return False
        self._ids.add(custom_id)
        return True

    def doubtful(self) -> bool:
        return False

    def copy(self) -> ExactIds:
        return ExactIds(self._ids)


class CompactIds:
    """64-bit digests in ``_PARTS`` arrays by their top bits; see the module's docstring."""

    def __init__(self) -> None:
        self._parts = [array("q") for _ in range(_PARTS)]
        self._singles: set[str] = set()  # IDs added one by one (lines of a block with problems)

    def add_rows(self, ids: Iterable[str], count: int) -> bool:
        """Record a block's IDs; a repeat is found by doubtful(), so this always succeeds."""
        self._add(map(hash, ids))
        return True

    def _add(self, digests: Iterable[int]) -> None:
        """Append each digest to the array of its top bits. A plain loop: 1.5x faster than
        sorting each block and cutting it into ranges (bench/validate.py)."""
        appends = [part.append for part in self._parts]
        for digest in digests:
            appends[digest >> _SHIFT](digest)

    def add(self, custom_id: str) -> bool:
        """Record one ID; False if it repeats one added this way (others: see doubtful())."""
        if custom_id in self._singles:
            return False
        self._singles.add(custom_id)
        self._add([hash(custom_id)])
        return True

    def doubtful(self) -> bool:
        """Whether any digest was added twice: a duplicate ID, or a digest collision."""
        return any(len(set(part)) != len(part) for part in self._parts)

    def dump(self) -> bytes:
        """The digests as bytes, for ``merge`` in another process (``batchops.rowscan``): the
        count of each range, then each range's digests (native int64). Singles are not kept:
        a helper process only adds whole blocks."""
        out = BytesIO()
        self.write(out)
        return out.getvalue()

    def write(self, stream: IO[bytes]) -> None:
        """Write ``dump()`` to ``stream`` a range at a time, with no copy of the whole."""
        stream.write(array("q", (len(part) for part in self._parts)))
        for part in self._parts:
            stream.write(part)

    def merge(self, data: bytes | memoryview) -> None:
        """Add the digests of a ``dump`` made with the same string hash (PYTHONHASHSEED).
        Raises ValueError when ``data`` is not such a dump."""
        counts = array("q")
        counts.frombytes(data[: 8 * _PARTS])
        if len(counts) != _PARTS or min(counts) < 0 or 8 * (_PARTS + sum(counts)) != len(data):
            raise ValueError("not a dump of CompactIds")
        start = 8 * _PARTS
        for part, count in zip(self._parts, counts, strict=True):
            part.frombytes(data[start : start + 8 * count])
            start += 8 * count

    def read(self, stream: IO[bytes]) -> None:
        """``merge`` the dump ``stream`` holds up to its end, read a range at a time (no copy of
        the whole). Raises ValueError when it is not such a dump; digests read before the
        fault stay added, so the caller then throws this set away."""
        counts = array("q")
        head = stream.read(8 * _PARTS)
        if len(head) != 8 * _PARTS:
            raise ValueError("not a dump of CompactIds")
        counts.frombytes(head)
        if min(counts) < 0:
            raise ValueError("not a dump of CompactIds")
        try:
            for part, count in zip(self._parts, counts, strict=True):
                part.fromfile(stream, count)
        except EOFError:
            raise ValueError("not a dump of CompactIds") from None
        if stream.read(1):
            raise ValueError("not a dump of CompactIds")

    def copy(self) -> CompactIds:
        other = CompactIds()
        other._parts = [array("q", part) for part in self._parts]
        other._singles = set(self._singles)
        return other


SeenIds = ExactIds | CompactIds
