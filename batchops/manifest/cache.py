"""Parsed manifests kept by file and re-used while the file's stat is unchanged.

The watch daemon keeps one ``ManifestCache`` for its life and hands it to ``load_desired`` every
pass (DESIGN.md section 10): an unchanged file then costs a ``stat``, not a read and a parse, and
a pass after one file changed re-reads that file only. The key is what git's index uses: device,
inode, size, modification and change times (nanoseconds). As in git, a file modified (or its
inode changed) within ``RACY_NS`` of being read is not kept: a second edit in the same clock
tick, with the same size, would otherwise look unchanged. It is read again on the next pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batchops.errors import Diagnostic

if TYPE_CHECKING:
    from batchops.manifest.loader import Parsed, Unchecked

RACY_NS = 2_000_000_000  # coarser than any file system's timestamps (FAT: 2 s)
StatKey = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class _Entry:
    key: StatKey
    parsed: tuple[Parsed, ...]
    diags: tuple[Diagnostic, ...]
    unchecked: tuple[Unchecked, ...] = ()  # its invalid documents, for cross-file checks


class ManifestCache:
    """File -> its validated documents and their problems. Not thread-safe: one per loader."""

    def __init__(self, *, racy_ns: int = RACY_NS) -> None:
        self._racy_ns = racy_ns
        self._entries: dict[Path, _Entry] = {}
        self.reads: list[Path] = []  # the files the last load read and parsed
        # Digests of responseFormat schemas found valid (``templated.schema_verdicts``).
        self.schemas: dict[str, None] = {}

    def start(self, files: Iterable[Path]) -> None:
        """A new load of ``files``: forget every other file."""
        keep = set(files)
        self._entries = {f: e for f, e in self._entries.items() if f in keep}
        self.reads = []

    def get(self, file: Path) -> tuple[StatKey | None, _Entry | None]:
        """The file's stat key (None if it cannot be stat'ed or is too new to trust) and the
        entry recorded under that same key, if any."""
        try:
            st = file.stat()
        except OSError:
            return None, None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        entry = self._entries.get(file)
        if entry is not None and entry.key == key:
            return key, entry
        racy = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < self._racy_ns
        return (None if racy else key), None

    def finish(self) -> None:
        """The load is over (a cache kept on disk writes itself here; this one is in memory)."""

    def put(
        self,
        file: Path,
        key: StatKey | None,
        parsed: list[Parsed],
        diags: list[Diagnostic],
        unchecked: Sequence[Unchecked] = (),
    ) -> None:
        self.reads.append(file)
        if key is not None:
            self._entries[file] = _Entry(key, tuple(parsed), tuple(diags), tuple(unchecked))
        else:
            self._entries.pop(file, None)
