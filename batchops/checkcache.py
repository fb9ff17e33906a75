"""What a provider's rules found in unchanged files, remembered: ``.batchops/cache/checks.json``.

Used by ``batchops.checks``. An OpenAI-compatible job's rules read every row of its dataset (each
request rendered, to measure it), and its plan reads them again for the parts and waves: ~12 s
for 1 GB, on every ``validate``, ``plan`` and ``watch`` pass. Both answers depend only on the
rows and the job's settings, so a clean verdict and a layout are kept under a key of the
provider kind, its limits, the job's model and parameters, and each file's path, size,
modification time and inode (the dataset stat cache's test of "unchanged"); a changed file or
setting is a new key. Problems are never kept: a job with any is checked again, and every
problem is reported with its place as always. Missing or corrupt: empty.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchops import __version__
from batchops.config import STATE_DIR, save_state_file

CACHE_FILE = Path(STATE_DIR, "cache", "checks.json")
VERSION = 1  # bump when a provider's row rules or layouts would find something else
MAX_ENTRIES = 4096  # the oldest are dropped beyond this


class CheckCache:
    """key -> a JSON value (``True`` for a clean check, a layout's JSON for a layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / CACHE_FILE
        self._entries: dict[str, Any] | None = None
        self._dirty = False

    @staticmethod
    def key(what: str, settings: Sequence[Any], files: Sequence[Path]) -> str | None:
        """The key of ``what`` for these settings and files; None when a file cannot be
        stat'ed (then nothing is remembered)."""
        try:
            stats = [[str(f), *_stat(f)] for f in files]
        except OSError:
            return None
        text = json.dumps([VERSION, __version__, what, *settings, stats], default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def entries(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        found = data.get("entries") if isinstance(data, dict) else None
        return found if isinstance(found, dict) and data.get("version") == VERSION else {}

    def get(self, key: str | None) -> Any:
        return None if key is None else self.entries.get(key)

    def put(self, key: str | None, value: Any) -> None:
        if key is None:
            return
        entries = self.entries
        entries.pop(key, None)  # re-inserted last: the newest
        entries[key] = value
        while len(entries) > MAX_ENTRIES:
            del entries[next(iter(entries))]
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        body = json.dumps({"version": VERSION, "entries": self.entries})
        save_state_file(self.path, body, root=self.root, prefix=".checks-")
        self._dirty = False


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino
